//! `cargo xtask client-build`: builds the browser client (`thywill-transport/client/src`) into
//! the npm package (`client/dist/`) and the classic script the server embeds
//! (`client/thywill.js` and `thywill.d.ts`), with the toolchain pinned in
//! `client/package.json` and `package-lock.json` (esbuild, TypeScript), installed with
//! `npm ci` into `client/node_modules` when it is missing or older than the lock file.
//!
//! The outputs are checked in, so building the crates needs no npm; the test
//! `thywill-transport` `client_build` rebuilds them and fails when they differ.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::{cmd, project_root, run};

/// The client's directory, under the project root.
pub(crate) fn client_dir() -> PathBuf {
    project_root().join("thywill-transport").join("client")
}

pub(crate) fn run_build(rest: &[String]) -> anyhow::Result<()> {
    let out = match rest {
        [] => None,
        [flag, dir] if flag == "--out" => Some(PathBuf::from(dir)),
        _ => bail!("usage: cargo xtask client-build [--out DIR]"),
    };
    let dir = client_dir();
    install_toolchain(&dir)?;
    let mut build = cmd("node");
    build.current_dir(&dir).arg("build.mjs");
    if let Some(out) = out {
        build.arg("--out").arg(out);
    }
    run(build)
}

/// `npm ci` in `dir` unless its `node_modules` is at least as new as its lock file.
pub(crate) fn install_toolchain(dir: &Path) -> anyhow::Result<()> {
    let lock = dir.join("package-lock.json");
    let installed = dir.join("node_modules").join(".package-lock.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let lock_time = modified(&lock).with_context(|| format!("no {}", lock.display()))?;
    if modified(&installed).is_some_and(|t| t >= lock_time) {
        return Ok(());
    }
    let mut ci = cmd("npm");
    ci.current_dir(dir)
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]);
    run(ci).context(
        "installing the client's build toolchain (npm ci; scripts/install-test-deps.sh installs npm)",
    )
}
