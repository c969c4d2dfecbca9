//! `cargo xtask`: the project's automation, in Rust (see <https://github.com/matklad/cargo-xtask>).
//!
//! One module per task. Every subprocess is started through [`cmd`], which roots it at the
//! project root; cargo itself is `$CARGO` (the cargo that runs us), through [`cargo`].

mod bench;
mod client;
mod flags;
mod fuzz;
mod lint;
mod msrv_scan;
mod release;
mod run_example;
mod sys;
mod test;
#[cfg(test)]
mod tidy;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

const HELP: &str = "\
usage: cargo xtask <task> [options]

tasks:
  run-example  run an example (or vite-echo: Echo and Vite's dev server): NAME [--members N] [--cluster none|redis|http] [--port P] [--redis-url URL] [--release]
  test         the test command: install test dependencies, run every test (nextest), then the doc tests
  client-build build the browser client (src/) into its npm package (dist/) and the classic thywill.js: [--out DIR]
  lint         cargo fmt --check, clippy -D warnings, rustdoc -D warnings, the facade's feature combinations
  release-check  package, msrv and deny: what publishing needs
  package      metadata of every publishable crate, then `cargo package` of all of them: [--no-verify]
  msrv         the declared rust-version is the true minimum (dependencies, syntax; std APIs: clippy)
  deny         cargo-deny: licences, duplicate versions, sources, advisories (deny.toml)
  ci           lint, test and release-check (what .ci/run does)
  bench        benchmarks on release builds: bench NAME [options]; `cargo xtask bench help` lists them
  fuzz         fuzz the frame decoder, RPC requests and a whole node driven by several connections (cargo-fuzz): [--secs N] [TARGET…]; `fuzz --help`
  help         this list
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    let result = match task.as_deref() {
        None | Some("help" | "-h" | "--help") => {
            print!("{HELP}");
            Ok(())
        }
        Some("run-example") => run_example::run(rest),
        Some("test") => no_options("test", &rest).and_then(|()| test::run()),
        Some("client-build") => client::run_build(&rest),
        Some("lint") => no_options("lint", &rest).and_then(|()| lint::run()),
        Some("ci") => no_options("ci", &rest).and_then(|()| ci()),
        Some("release-check") => no_options("release-check", &rest).and_then(|()| release::run_all_checks()),
        Some("package") => release::run_package(&rest),
        Some("msrv") => no_options("msrv", &rest).and_then(|()| release::msrv()),
        Some("deny") => no_options("deny", &rest).and_then(|()| release::deny()),
        Some("bench") => bench::run(rest),
        Some("fuzz") => fuzz::run(rest),
        // Hidden: the raw tokio-tungstenite echo server `bench echo` compares against.
        Some("bench-raw-server") => bench::raw_server::run(rest),
        Some(other) => Err(anyhow::anyhow!("unknown task {other:?}\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn no_options(task: &str, rest: &[String]) -> anyhow::Result<()> {
    match rest.first() {
        None => Ok(()),
        Some(a) => bail!("`{task}` takes no arguments (got {a:?})"),
    }
}

/// `cargo xtask ci`: lint, test, then the release checks (package, msrv, deny). All run even
/// when one fails, so one CI run shows everything that is wrong.
fn ci() -> anyhow::Result<()> {
    let lint = lint::run();
    if let Err(e) = &lint {
        eprintln!("xtask ci: lint failed ({e:#}); running the tests anyway");
    }
    let test = test::run();
    if let Err(e) = &test {
        eprintln!("xtask ci: test failed ({e:#}); running the release checks anyway");
    }
    let release = release::run_all_checks();
    let failed: Vec<&str> = [("lint", &lint), ("test", &test), ("release-check", &release)]
        .into_iter()
        .filter(|(_, r)| r.is_err())
        .map(|(n, _)| n)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("ci: {} failed", failed.join(", "))
    }
}

/// The workspace root (the parent of this crate's directory).
pub(crate) fn project_root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    dir.parent().unwrap_or(dir).to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the project root, where our
/// cargo commands run) or `<root>/target`.
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => project_root().join(dir),
        _ => project_root().join("target"),
    }
}

/// A built binary of the workspace: `<target>/<debug|release>/<name>`.
pub(crate) fn binary(name: &str, release: bool) -> PathBuf {
    target_dir()
        .join(if release { "release" } else { "debug" })
        .join(name)
}

/// The one way xtask starts a process: `program` with the project root as working directory.
pub(crate) fn cmd(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    c.current_dir(project_root());
    c
}

/// `$CARGO` (the cargo running us), or `cargo`, rooted at the project root.
///
/// The variables cargo set for running xtask itself (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...)
/// are removed: build scripts track some of them (`ring`'s tracks `CARGO_MANIFEST_DIR`), so a
/// nested build that inherited them would invalidate, and be invalidated by, a plain `cargo
/// build` of the same profile.
pub(crate) fn cargo() -> Command {
    let mut c = cmd(std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")));
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_for_xtask) {
            c.env_remove(name);
        }
    }
    c
}

/// Whether `name` is a variable cargo sets for the crate it runs (here: xtask), as opposed to
/// one that configures cargo (`CARGO_HOME`, `CARGO_TARGET_DIR`, `CARGO_INCREMENTAL`, ...).
fn set_for_xtask(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_BIN_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_RUSTC_CURRENT_DIR"
        )
}

/// Runs a command to completion with inherited stdio; fails unless it exits successfully.
pub(crate) fn run(mut c: Command) -> anyhow::Result<()> {
    let shown = show(&c);
    eprintln!("$ {shown}");
    let status = c.status().with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// A command as a shell-like line, for messages.
pub(crate) fn show(c: &Command) -> String {
    let mut line: String = c.get_envs().fold(String::new(), |mut s, (k, v)| {
        if let Some(v) = v {
            s.push_str(&format!("{}={} ", k.to_string_lossy(), v.to_string_lossy()));
        }
        s
    });
    let program = c.get_program();
    line.push_str(
        &Path::new(program)
            .file_name()
            .unwrap_or(program)
            .to_string_lossy(),
    );
    for a in c.get_args() {
        line.push(' ');
        line.push_str(&a.to_string_lossy());
    }
    line
}

/// Runs every command even when some fail (like `--no-fail-fast`), then fails if any did.
pub(crate) fn run_all(task: &str, commands: Vec<Command>) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for c in commands {
        if let Err(e) = run(c) {
            eprintln!("xtask {task}: {e:#}");
            failed.push(format!("{e:#}"));
        }
    }
    if failed.is_empty() {
        println!("xtask {task}: ok");
        Ok(())
    } else {
        println!("xtask {task}: FAILED: {}", failed.join("; "));
        bail!("{task}: {} of its steps failed", failed.len())
    }
}

#[cfg(test)]
mod nested_cargo_tests {
    /// Tests run under cargo, which sets `CARGO_MANIFEST_DIR` for them as it does for xtask.
    #[test]
    fn nested_cargo_does_not_inherit_the_variables_cargo_set_for_xtask() {
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let c = super::cargo();
        let removed: Vec<_> = c
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        assert!(removed.iter().any(|n| n == "CARGO_MANIFEST_DIR"), "{removed:?}");
        assert!(removed.iter().any(|n| n.starts_with("CARGO_PKG_")), "{removed:?}");
        for kept in ["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_INCREMENTAL"] {
            assert!(!super::set_for_xtask(kept), "{kept}");
        }
    }
}
