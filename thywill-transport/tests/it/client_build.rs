//! The checked-in builds of the browser client (`client/thywill.js`, `client/thywill.d.ts`,
//! the npm package in `client/dist/`) are what `cargo xtask client-build` makes from
//! `client/src/`: this test rebuilds them into a temporary directory with the pinned toolchain
//! (`npm ci` when `client/node_modules` is missing) and fails on any difference. The build
//! itself type-checks the sources and the sample uses in `client/check/`; `npm pack` takes
//! the package with the files it needs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;

/// `npm ci` may download the toolchain; the build itself takes seconds.
const STEP_TIMEOUT: Duration = Duration::from_secs(300);

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("client")
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn run(what: &str, cmd: &mut tokio::process::Command) -> anyhow::Result<()> {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(STEP_TIMEOUT, cmd.output())
        .await
        .map_err(|_| anyhow::anyhow!("{what} did not finish within {STEP_TIMEOUT:?}"))?
        .with_context(|| format!("cannot run {what}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Every file under `dir`, by path relative to it.
fn files(dir: &Path) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else {
                let name = path.strip_prefix(root)?.to_string_lossy().into_owned();
                out.insert(name, std::fs::read(&path)?);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// Whether `dir/node_modules` was installed from the current `dir/package-lock.json` (npm
/// writes `node_modules/.package-lock.json` when it installs): else `npm ci` is due.
fn toolchain_is_current(dir: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (
        modified(&dir.join("node_modules").join(".package-lock.json")),
        modified(&dir.join("package-lock.json")),
    ) {
        (Some(installed), Some(lock)) => installed >= lock,
        _ => false,
    }
}

fn npm_installed() -> bool {
    std::process::Command::new("npm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn the_checked_in_client_builds_are_what_the_sources_make() -> anyhow::Result<()> {
    if !npm_installed() {
        println!(
            "notice: npm is not installed (scripts/install-test-deps.sh installs it); \
             skipping the rebuild of the browser client"
        );
        return Ok(());
    }
    let client = client_dir();
    if !toolchain_is_current(&client) {
        let mut ci = tokio::process::Command::new("npm");
        ci.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&client);
        run("npm ci (the client's build toolchain)", &mut ci).await?;
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let out =
        TempDir(std::env::temp_dir().join(format!("thywill-client-build-{}-{stamp}", std::process::id())));
    std::fs::create_dir_all(&out.0)?;
    let mut build = tokio::process::Command::new("node");
    build
        .arg("build.mjs")
        .arg("--out")
        .arg(&out.0)
        .current_dir(&client);
    run("node build.mjs", &mut build).await?;

    let built = files(&out.0)?;
    let mut checked_in = files(&client.join("dist"))?
        .into_iter()
        .map(|(name, bytes)| (format!("dist/{name}"), bytes))
        .collect::<BTreeMap<_, _>>();
    for name in ["thywill.js", "thywill.d.ts"] {
        checked_in.insert(name.to_owned(), std::fs::read(client.join(name))?);
    }
    let built_names: Vec<&String> = built.keys().collect();
    let checked_names: Vec<&String> = checked_in.keys().collect();
    anyhow::ensure!(
        built_names == checked_names,
        "the build makes {built_names:?}, the repository has {checked_names:?}: run `cargo xtask client-build`"
    );
    let stale: Vec<&String> = built
        .iter()
        .filter(|(name, bytes)| checked_in.get(*name) != Some(bytes))
        .map(|(name, _)| name)
        .collect();
    anyhow::ensure!(
        stale.is_empty(),
        "the checked-in builds of the client differ from what its sources make: {stale:?}; \
         run `cargo xtask client-build` and commit the result"
    );
    // The package is publishable as it is: `npm pack` takes it, with every file it needs.
    let mut pack = tokio::process::Command::new("npm");
    pack.args(["pack", "--dry-run", "--json", "--loglevel=error"])
        .current_dir(out.0.join("dist"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let packed = tokio::time::timeout(STEP_TIMEOUT, pack.output())
        .await
        .map_err(|_| anyhow::anyhow!("npm pack did not finish within {STEP_TIMEOUT:?}"))??;
    anyhow::ensure!(
        packed.status.success(),
        "npm pack failed: {}",
        String::from_utf8_lossy(&packed.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&packed.stdout).context("npm pack --json")?;
    let package = &report[0];
    assert_eq!(package["name"], "thywill-client");
    assert_eq!(package["version"], "0.1.0");
    let mut packed_files: Vec<&str> = package["files"]
        .as_array()
        .context("npm pack lists no files")?
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    packed_files.sort_unstable();
    assert_eq!(
        packed_files,
        [
            "LICENSE",
            "README.md",
            "client.d.ts",
            "emitter.d.ts",
            "index.d.ts",
            "index.js",
            "message.d.ts",
            "package.json",
            "types.d.ts"
        ]
    );
    Ok(())
}
