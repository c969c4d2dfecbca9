//! `cargo xtask release-check` (and its parts `package`, `msrv`, `deny`): what publishing the
//! crates needs, checked on every CI run so that none of it regresses.
//!
//! - `package`: every publishable workspace crate has complete metadata (description,
//!   licence, repository, homepage, documentation, readme, keywords, categories; a README and
//!   the LICENSE in the package) and packages: `cargo package` of all of them together, so
//!   that crates of the workspace resolve each other before they are on crates.io (`cargo
//!   publish --dry-run` cannot: it resolves them on crates.io, where they are not yet). Each
//!   package is then built from its unpacked `.crate` on its own (see [`PACKAGE_VERIFY`]).
//! - `msrv`: the declared `rust-version` is the true minimum, as far as it can be checked with
//!   the one toolchain this machine has (no older toolchain can be downloaded here):
//!   1. every package of the workspace (and `fuzz`) declares the same version, at least the
//!      one its edition needs;
//!   2. no dependency declares a newer `rust-version` than ours;
//!   3. no source file uses syntax stabilised after it ([`msrv_scan`]: let chains, async
//!      closures, `use<..>` bounds, …);
//!   4. std APIs stabilised later are clippy's `incompatible_msrv` lint, denied in the
//!      workspace lints and run by `cargo xtask lint`.
//! - `deny`: cargo-deny's licences, bans (duplicate versions), sources and advisories checks
//!   against `deny.toml` (advisories only where an advisory database can be had: see there).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::msrv_scan::{self, Version};
use crate::{cargo, cmd, project_root, run as run_cmd, run_all};

/// Whether CI's `cargo package` builds every package from its unpacked `.crate` (on its own:
/// its own feature resolution and profile, so a crate that uses a tokio feature it does not
/// ask for fails here). Measured on the project's 2-core machine: about 50 s when the
/// dependencies are already built in the target directory (as on CI, which keeps it between
/// runs), 12 minutes the first time (shared with other builds).
/// `cargo xtask package --no-verify` skips it.
const PACKAGE_VERIFY: bool = true;

/// `cargo xtask release-check`: package, msrv and deny; all run, then it fails if any did.
pub(crate) fn run_all_checks() -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for (name, step) in [
        (
            "package",
            (|| package(PACKAGE_VERIFY)) as fn() -> anyhow::Result<()>,
        ),
        ("msrv", msrv),
        ("deny", deny),
    ] {
        if let Err(e) = step() {
            eprintln!("xtask release-check: {name}: {e:#}");
            failed.push(name);
        }
    }
    if failed.is_empty() {
        println!("xtask release-check: ok");
        Ok(())
    } else {
        println!("xtask release-check: FAILED: {}", failed.join(", "));
        bail!("release-check: {} failed", failed.join(" and "))
    }
}

/// `cargo xtask package [--no-verify]`.
pub(crate) fn run_package(args: &[String]) -> anyhow::Result<()> {
    match args {
        [] => package(PACKAGE_VERIFY),
        [flag] if flag == "--no-verify" => package(false),
        _ => bail!("usage: cargo xtask package [--no-verify]"),
    }
}

/// `cargo metadata` of the workspace, every feature on.
pub(crate) fn metadata() -> anyhow::Result<Value> {
    let mut c = cargo();
    c.args(["metadata", "--format-version", "1", "--all-features", "--locked"])
        .stderr(Stdio::inherit());
    let out = c.output().context("cannot run `cargo metadata`")?;
    if !out.status.success() {
        bail!("`cargo metadata` failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("`cargo metadata` printed no JSON")
}

/// The workspace's own packages (members), as `cargo metadata` lists them.
pub(crate) fn members(meta: &Value) -> Vec<&Value> {
    let ids: Vec<&str> = meta["workspace_members"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    meta["packages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p["id"].as_str().is_some_and(|id| ids.contains(&id)))
                .collect()
        })
        .unwrap_or_default()
}

/// A package may be published unless it says `publish = false` (metadata: `"publish": []`).
pub(crate) fn publishable(p: &Value) -> bool {
    !p["publish"].as_array().is_some_and(Vec::is_empty)
}

pub(crate) fn name(p: &Value) -> &str {
    p["name"].as_str().unwrap_or("?")
}

/// The publishable members, dependencies first (the order `cargo publish` must follow).
fn publishable_in_order(meta: &Value) -> anyhow::Result<Vec<&Value>> {
    let mut left: Vec<&Value> = members(meta).into_iter().filter(|p| publishable(p)).collect();
    let names: Vec<String> = left.iter().map(|p| name(p).to_string()).collect();
    let mut ordered: Vec<&Value> = Vec::new();
    while !left.is_empty() {
        let done: Vec<&str> = ordered.iter().map(|p| name(p)).collect();
        let ready = left.iter().position(|p| {
            p["dependencies"].as_array().is_none_or(|deps| {
                deps.iter()
                    // Dev-dependencies are dropped or versioned separately; only the others order.
                    .filter(|d| d["kind"].as_str() != Some("dev"))
                    .filter_map(|d| d["name"].as_str())
                    .filter(|d| names.iter().any(|n| n == d))
                    .all(|d| done.contains(&d))
            })
        });
        match ready {
            Some(i) => ordered.push(left.remove(i)),
            None => bail!(
                "publishable crates depend on each other in a cycle: {}",
                left.iter().map(|p| name(p)).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    Ok(ordered)
}

/// The metadata crates.io and docs.rs show, missing from one package.
fn missing_metadata(p: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    for key in [
        "description",
        "license",
        "repository",
        "homepage",
        "documentation",
        "readme",
    ] {
        if p[key].as_str().is_none_or(str::is_empty) {
            missing.push(format!("`{key}`"));
        }
    }
    for key in ["keywords", "categories"] {
        if p[key].as_array().is_none_or(Vec::is_empty) {
            missing.push(format!("`{key}`"));
        }
    }
    if p["repository"].as_str().is_some_and(|r| r.contains(".invalid")) {
        missing.push("a real `repository` (not example.invalid)".into());
    }
    if p["metadata"]["docs"]["rs"].is_null() {
        missing.push("`[package.metadata.docs.rs]`".into());
    }
    let dir = manifest_dir(p);
    if let Some(readme) = p["readme"].as_str()
        && !dir.join(readme).is_file()
    {
        missing.push(format!("the readme file {readme}"));
    }
    if !dir.join("LICENSE").is_file() {
        missing.push("a LICENSE file (a link to the workspace's)".into());
    }
    missing
}

fn manifest_dir(p: &Value) -> PathBuf {
    p["manifest_path"]
        .as_str()
        .map(Path::new)
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// `cargo xtask package`: metadata of every publishable crate, then `cargo package` of all of
/// them in one run (crates of the workspace resolve to each other through cargo's temporary
/// local registry, since none of them is on crates.io yet).
fn package(verify: bool) -> anyhow::Result<()> {
    let meta = metadata()?;
    let crates = publishable_in_order(&meta)?;
    if crates.is_empty() {
        bail!("no publishable crate in the workspace");
    }
    let mut problems = Vec::new();
    for p in &crates {
        let missing = missing_metadata(p);
        if !missing.is_empty() {
            problems.push(format!("{}: missing {}", name(p), missing.join(", ")));
        }
    }
    println!(
        "xtask package: publishable, in publishing order: {}",
        crates.iter().map(|p| name(p)).collect::<Vec<_>>().join(", ")
    );
    forget_unpacked(&crates)?;
    let verify_target = crate::target_dir().join("package-verify");
    forget_built(&verify_target, &crates)?;
    let mut c = cargo();
    // Its own target directory: see [`forget_built`].
    c.env("CARGO_TARGET_DIR", &verify_target);
    // `--allow-dirty`: CI packages a fresh clone; locally, uncommitted work is what is checked.
    c.args(["package", "--locked", "--allow-dirty"]);
    if !verify {
        c.arg("--no-verify");
    }
    for p in &crates {
        c.args(["-p", name(p)]);
    }
    if let Err(e) = run_cmd(c) {
        problems.push(format!("{e:#}"));
    }
    if problems.is_empty() {
        println!("xtask package: ok");
        Ok(())
    } else {
        for p in &problems {
            eprintln!("xtask package: {p}");
        }
        bail!("package: {}", problems.join("; "))
    }
}

/// Removes cargo's unpacked copies of our own crates from earlier `cargo package` runs.
/// Packaging several crates puts each into a temporary local registry, and the verify build of
/// a crate that depends on another unpacks that one into `$CARGO_HOME/registry/src/-<hash>/`;
/// the version does not change between runs, so cargo would build the dependents against the
/// stale copy left by the previous run (seen: a removed `rand` dependency "came back"). Only
/// local registries (directory names starting with `-`) are touched, never crates.io's.
fn forget_unpacked(crates: &[&Value]) -> anyhow::Result<()> {
    let registry = cargo_home().join("registry");
    for kind in ["src", "cache"] {
        let Ok(dirs) = std::fs::read_dir(registry.join(kind)) else {
            continue;
        };
        for dir in dirs.filter_map(Result::ok) {
            if !dir.file_name().to_string_lossy().starts_with('-') {
                continue;
            }
            for p in crates {
                let stem = format!("{}-{}", name(p), p["version"].as_str().unwrap_or("?"));
                for path in [dir.path().join(&stem), dir.path().join(format!("{stem}.crate"))] {
                    let removed = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else if path.is_file() {
                        std::fs::remove_file(&path)
                    } else {
                        continue;
                    };
                    removed.with_context(|| format!("cannot remove the stale {}", path.display()))?;
                }
            }
        }
    }
    Ok(())
}

/// Removes what an earlier verify build compiled of our own crates from `target`, the
/// packaging's own target directory. The verify build takes our crates from cargo's temporary
/// local registry, and cargo never rebuilds a registry crate whose version it has built
/// before (registry sources are taken to be immutable): without this, a crate would be
/// verified against the previous run's build of its dependencies (seen: a type added to
/// `thywill-core` "missing" for `thywill-cluster-http`). Third-party dependencies stay built.
fn forget_built(target: &std::path::Path, crates: &[&Value]) -> anyhow::Result<()> {
    let names: Vec<String> = crates.iter().map(|p| name(p).replace('-', "_")).collect();
    for sub in ["debug/.fingerprint", "debug/deps", "debug/build"] {
        let Ok(entries) = std::fs::read_dir(target.join(sub)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let file = entry.file_name().to_string_lossy().replace('-', "_");
            let ours = names.iter().any(|n| {
                let stem = file.strip_prefix("lib").unwrap_or(&file);
                stem.strip_prefix(n.as_str())
                    .is_some_and(|rest| rest.starts_with('_') || rest.starts_with('.'))
                    && !names
                        .iter()
                        .any(|longer| longer.len() > n.len() && stem.starts_with(longer.as_str()))
            });
            if !ours {
                continue;
            }
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.with_context(|| format!("cannot remove the stale {}", path.display()))?;
        }
    }
    Ok(())
}

/// `$CARGO_HOME`, or `~/.cargo`.
fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
}

/// `cargo xtask msrv`: see the module documentation.
pub(crate) fn msrv() -> anyhow::Result<()> {
    let meta = metadata()?;
    let mut problems = Vec::new();

    // The packages and their declared version: the workspace's members, and `fuzz` (a
    // workspace of its own, read without resolving it).
    let mut packages: Vec<(String, PathBuf, Option<Version>, String)> = Vec::new();
    let mut add = |p: &Value| {
        packages.push((
            name(p).to_string(),
            manifest_dir(p),
            p["rust_version"].as_str().and_then(Version::parse),
            p["edition"].as_str().unwrap_or("2015").to_string(),
        ));
    };
    members(&meta).into_iter().for_each(&mut add);
    let fuzz = project_root().join("fuzz/Cargo.toml");
    if fuzz.is_file() {
        let mut c = cargo();
        c.args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(&fuzz);
        let out = c.output().context("cannot run `cargo metadata` for fuzz")?;
        let fuzz_meta: Value =
            serde_json::from_slice(&out.stdout).context("`cargo metadata` for fuzz printed no JSON")?;
        fuzz_meta["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .for_each(&mut add);
    }

    // 1. One declared version, at least what the edition needs.
    let mut declared: BTreeMap<Version, Vec<&str>> = BTreeMap::new();
    for (pkg, _, v, edition) in &packages {
        match v {
            None => problems.push(format!("{pkg}: no `rust-version`")),
            Some(v) => {
                declared.entry(*v).or_default().push(pkg);
                let needs = match edition.as_str() {
                    "2024" => Version(1, 85),
                    "2021" => Version(1, 56),
                    "2018" => Version(1, 31),
                    _ => Version(1, 0),
                };
                if *v < needs {
                    problems.push(format!(
                        "{pkg}: rust-version {v} is older than edition {edition} ({needs})"
                    ));
                }
            }
        }
    }
    if declared.len() > 1 {
        problems.push(format!(
            "packages declare different rust-versions: {}",
            declared
                .iter()
                .map(|(v, p)| format!("{v} ({})", p.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let Some(msrv) = declared.keys().next().copied() else {
        bail!("msrv: no package declares a rust-version");
    };

    // 2. Dependencies: none may need a newer toolchain than we say we need.
    let own: Vec<&str> = packages.iter().map(|(n, ..)| n.as_str()).collect();
    let newer = newer_dependencies(&meta, &own, msrv);
    if !newer.is_empty() {
        problems.push(format!(
            "dependencies need a newer Rust than the declared {msrv}: {}",
            newer.join(", ")
        ));
    }

    // The facade's README states it; it must say the same.
    let readme = project_root().join("thywill/README.md");
    let stated = std::fs::read_to_string(&readme)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Minimum supported Rust version:")
                .map(|v| v.trim().trim_end_matches('.').to_string())
        });
    match stated.as_deref().and_then(Version::parse) {
        Some(v) if v == msrv => {}
        _ => problems.push(format!(
            "thywill/README.md must say \"Minimum supported Rust version: {msrv}.\" (it says {stated:?})"
        )),
    }

    // 3. Syntax newer than the declared version, package by package.
    let mut files = 0;
    for (pkg, dir, v, _) in &packages {
        let Some(v) = v else { continue };
        for file in msrv_scan::rust_files(dir) {
            files += 1;
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            for hit in msrv_scan::scan(&text) {
                if hit.since > *v {
                    let shown = file
                        .strip_prefix(project_root())
                        .unwrap_or(&file)
                        .display()
                        .to_string();
                    problems.push(format!(
                        "{shown}:{}: {} needs Rust {}, but {pkg} declares rust-version {v}",
                        hit.line, hit.what, hit.since
                    ));
                }
            }
        }
    }

    if problems.is_empty() {
        println!(
            "xtask msrv: ok: rust-version {msrv} for {} packages; no dependency needs more; {files} source files use no newer syntax (std APIs: clippy's incompatible_msrv in `cargo xtask lint`)",
            packages.len()
        );
        Ok(())
    } else {
        for p in &problems {
            eprintln!("xtask msrv: {p}");
        }
        println!("xtask msrv: FAILED ({} problems)", problems.len());
        bail!("msrv: {} problems", problems.len())
    }
}

/// The packages of `meta` (but those named in `own`) whose `rust-version` is newer than `msrv`.
fn newer_dependencies(meta: &Value, own: &[&str], msrv: Version) -> Vec<String> {
    let mut newer: Vec<String> = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| !own.contains(&name(p)))
        .filter_map(|p| {
            let v = p["rust_version"].as_str().and_then(Version::parse)?;
            (v > msrv).then(|| format!("{} {} needs {v}", name(p), p["version"].as_str().unwrap_or("?")))
        })
        .collect();
    newer.sort();
    newer.dedup();
    newer
}

/// `cargo xtask deny`: cargo-deny against deny.toml. Installs cargo-deny when missing
/// (scripts/install-ci-tools.sh). Advisories: see deny.toml's header.
pub(crate) fn deny() -> anyhow::Result<()> {
    let mut install = cmd("bash");
    install.arg("scripts/install-ci-tools.sh");
    run_cmd(install)?;

    let mut steps = Vec::new();
    let mut base = cargo();
    base.args(["deny", "--color", "never", "check", "licenses", "bans", "sources"]);
    steps.push(base);

    match advisory_db() {
        AdvisoryDb::Fetched => {
            let mut adv = cargo();
            adv.args(["deny", "--color", "never", "check", "advisories"]);
            steps.push(adv);
        }
        AdvisoryDb::Local(path) => {
            eprintln!(
                "xtask deny: the advisory database cannot be fetched; using the local copy {} (refused when older than 90 days)",
                path.display()
            );
            let mut adv = cargo();
            adv.args(["deny", "--color", "never", "--offline", "check", "advisories"]);
            steps.push(adv);
        }
        AdvisoryDb::None(why) => {
            let msg = format!(
                "ADVISORIES NOT CHECKED: no RustSec advisory database on this machine and none can be fetched ({why}). \
                 Licences, bans and sources are checked. To check advisories, put a git checkout of the advisory \
                 database at {} (see deny.toml).",
                advisory_db_dir().display()
            );
            if std::env::var_os("THYWILL_REQUIRE_ADVISORIES").is_some_and(|v| v == "1") {
                bail!("deny: {msg}");
            }
            eprintln!("xtask deny: warning: {msg}");
            println!("xtask deny: warning: advisories not checked (no advisory database)");
        }
    }
    run_all("deny", steps)
}

/// Where an advisory database comes from for this run.
enum AdvisoryDb {
    /// `cargo deny fetch db` brought it up to date.
    Fetched,
    /// Fetching failed, but a checkout is there.
    Local(PathBuf),
    /// Neither; the reason.
    None(String),
}

/// cargo-deny's default database root: `$CARGO_HOME/advisory-dbs`.
fn advisory_db_dir() -> PathBuf {
    cargo_home().join("advisory-dbs")
}

fn advisory_db() -> AdvisoryDb {
    // Bounded: git gives up at once when the host does not resolve (as here); where the
    // network is slow, `timeout` stops it.
    let cargo_program = cargo().get_program().to_os_string();
    let mut fetch = cmd("timeout");
    fetch
        .arg("120")
        .arg(cargo_program)
        .args(["deny", "--color", "never", "--log-level", "off", "fetch", "db"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if fetch.status().is_ok_and(|s| s.success()) {
        return AdvisoryDb::Fetched;
    }
    let root = advisory_db_dir();
    let local = std::fs::read_dir(&root).ok().and_then(|entries| {
        entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("advisory-db-"))
                && p.join(".git").exists()
        })
    });
    match local {
        Some(path) => AdvisoryDb::Local(path),
        None => AdvisoryDb::None(format!(
            "`cargo deny fetch db` failed and {} holds no checkout",
            root.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_dependencies_newer_than_the_msrv() {
        let meta = serde_json::json!({ "packages": [
            { "name": "old", "version": "1.0.0", "rust_version": "1.70" },
            { "name": "none", "version": "1.0.0", "rust_version": null },
            { "name": "new", "version": "2.0.0", "rust_version": "1.90.1" },
            { "name": "ours", "version": "0.1.0", "rust_version": "1.95" },
        ]});
        assert_eq!(
            newer_dependencies(&meta, &["ours"], Version(1, 88)),
            vec!["new 2.0.0 needs 1.90"]
        );
        assert!(newer_dependencies(&meta, &["ours"], Version(1, 90)).is_empty());
    }

    #[test]
    fn orders_publishable_crates_dependencies_first() -> anyhow::Result<()> {
        let meta = serde_json::json!({
            "workspace_members": ["a", "b", "c", "t"],
            "packages": [
                { "id": "a", "name": "a", "publish": null, "dependencies": [
                    { "name": "b", "kind": null }, { "name": "t", "kind": "dev" } ] },
                { "id": "b", "name": "b", "publish": null, "dependencies": [
                    { "name": "c", "kind": null }, { "name": "a", "kind": "dev" } ] },
                { "id": "c", "name": "c", "publish": null, "dependencies": [] },
                { "id": "t", "name": "t", "publish": [], "dependencies": [ { "name": "c", "kind": null } ] },
            ]
        });
        let order: Vec<&str> = publishable_in_order(&meta)?.into_iter().map(name).collect();
        assert_eq!(order, vec!["c", "b", "a"]);
        Ok(())
    }
}
