//! `cargo xtask lint`: formatting, clippy and rustdoc, each with warnings as errors.

use std::ffi::OsString;

use crate::{cargo, run_all};

pub(crate) fn run() -> anyhow::Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);

    let mut clippy = cargo();
    clippy.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]);

    let mut doc = cargo();
    let mut flags = std::env::var_os("RUSTDOCFLAGS").unwrap_or_default();
    if !flags.is_empty() {
        flags.push(" ");
    }
    flags.push(OsString::from("-D warnings"));
    doc.env("RUSTDOCFLAGS", flags)
        .args(["doc", "--workspace", "--no-deps"]);

    run_all("lint", vec![fmt, clippy, doc])
}
