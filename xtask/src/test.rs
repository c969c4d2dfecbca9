//! `cargo xtask test`: the README's test command. Installs the system packages the tests need,
//! runs every test with cargo-nextest (or `cargo test` when nextest is missing), then the doc
//! tests, which nextest does not run.

use std::process::Stdio;

use crate::{cargo, cmd, run as run_cmd, run_all};

/// Features the test build turns on beyond the defaults, so that tests behind them run too (the
/// facade's axum mount).
const TEST_FEATURES: &str = "thywill/axum";

pub(crate) fn run() -> anyhow::Result<()> {
    let mut deps = cmd("bash");
    deps.arg("scripts/install-test-deps.sh");
    run_cmd(deps)?;

    let mut steps = Vec::new();
    if nextest_available() {
        let mut nextest = cargo();
        nextest.args([
            "nextest",
            "run",
            "--workspace",
            "--no-fail-fast",
            "--features",
            TEST_FEATURES,
        ]);
        // nextest reports on stderr; its summary line must reach stdout too.
        nextest.stderr(Stdio::from(std::io::stdout()));
        steps.push(nextest);
        let mut doc = cargo();
        doc.args(["test", "--workspace", "--doc", "--features", TEST_FEATURES]);
        steps.push(doc);
    } else {
        eprintln!("xtask test: cargo-nextest is not installed; falling back to `cargo test`");
        let mut test = cargo();
        test.args([
            "test",
            "--workspace",
            "--no-fail-fast",
            "--features",
            TEST_FEATURES,
        ]);
        steps.push(test);
    }
    run_all("test", steps)
}

fn nextest_available() -> bool {
    let mut c = cargo();
    c.args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.status().is_ok_and(|s| s.success())
}
