//! Tidy tests (in the spirit of rust-analyzer's `tidy.rs`): the architecture, checked on the
//! source tree itself, so a change that breaks it fails `cargo xtask test`.
//!
//! - The crate graph: `thywill-core` depends on no workspace crate; every other published
//!   component crate depends on `thywill-core` and on no other component crate; only the facade
//!   `thywill` composes them.
//! - No unbounded channel in production code of the published crates.
//! - `thywill-core` does no IO and starts no runtime: it depends on serialisation and error
//!   crates only (no tokio, no client library), so its in-memory defaults stay pure.
//! - Every workspace crate says what it is for (a crate-level doc comment) and takes the
//!   workspace's lints (`missing_docs` among them, denied by `cargo xtask lint`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::project_root;
use crate::release::{members, metadata, name, publishable};

/// The facade: the one crate that may depend on every component.
const FACADE: &str = "thywill";

/// The vocabulary every component implements.
const CORE: &str = "thywill-core";

/// The component crates: each depends on [`CORE`] and on no other workspace crate. A new
/// publishable crate is added here, on purpose, or the graph test fails.
const COMPONENTS: &[&str] = &[
    "thywill-node",
    "thywill-transport",
    "thywill-tracking",
    "thywill-rpc",
    "thywill-cluster-redis",
    "thywill-cluster-http",
    "thywill-resources",
    "thywill-templates",
];

fn workspace_dependencies<'a>(p: &'a Value, workspace: &[&str]) -> Vec<&'a str> {
    p["dependencies"]
        .as_array()
        .map(|deps| {
            deps.iter()
                // Normal and build dependencies; dev-dependencies may be anything.
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .filter_map(|d| d["name"].as_str())
                .filter(|n| workspace.contains(n))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn component_crates_depend_on_the_core_only() -> anyhow::Result<()> {
    let meta = metadata()?;
    let packages = members(&meta);
    let workspace: Vec<&str> = packages.iter().map(|p| name(p)).collect();
    let mut wrong = Vec::new();
    for p in packages.iter().filter(|p| publishable(p)) {
        let deps = workspace_dependencies(p, &workspace);
        match name(p) {
            FACADE => {}
            CORE if !deps.is_empty() => wrong.push(format!("{CORE} depends on {deps:?}")),
            CORE => {}
            unlisted if !COMPONENTS.contains(&unlisted) => wrong.push(format!(
                "{unlisted} is published but is neither the facade, the core nor a listed \
                 component crate: add it to tidy.rs's COMPONENTS"
            )),
            component => {
                if !deps.contains(&CORE) {
                    wrong.push(format!("{component} does not depend on {CORE}"));
                }
                let others: Vec<_> = deps.iter().filter(|d| **d != CORE).collect();
                if !others.is_empty() {
                    wrong.push(format!(
                        "{component} depends on other component crates {others:?}: depend on \
                         {CORE}'s traits instead, and let the facade compose"
                    ));
                }
            }
        }
    }
    for listed in COMPONENTS {
        if !packages.iter().any(|p| publishable(p) && name(p) == *listed) {
            wrong.push(format!(
                "{listed} is listed as a component crate but is not published"
            ));
        }
    }
    anyhow::ensure!(
        wrong.is_empty(),
        "the crate graph is broken:\n{}",
        wrong.join("\n")
    );
    Ok(())
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The production part of a source file: everything before its first `#[cfg(test)]`
/// (test modules sit at the end of a file here).
fn production(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |at| &text[..at])
}

/// The published crates' source directories.
fn published_sources() -> anyhow::Result<Vec<(String, PathBuf)>> {
    let meta = metadata()?;
    Ok(members(&meta)
        .into_iter()
        .filter(|p| publishable(p))
        .filter_map(|p| {
            let manifest = PathBuf::from(p["manifest_path"].as_str()?);
            Some((name(p).to_owned(), manifest.parent()?.join("src")))
        })
        .collect())
}

/// Unbounded queues that are allowed, each with its reason: `(file under the root, count)`.
const UNBOUNDED_ALLOWED: &[(&str, usize, &str)] = &[];

#[test]
fn no_unbounded_channel_in_production_code() -> anyhow::Result<()> {
    let root = project_root();
    let mut wrong = Vec::new();
    for (_, src) in published_sources()? {
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file)?;
            let count = production(&text).matches("unbounded_channel").count()
                + production(&text).matches("UnboundedSender").count();
            let shown = file.strip_prefix(&root).unwrap_or(&file).display().to_string();
            let allowed = UNBOUNDED_ALLOWED
                .iter()
                .find(|(f, _, _)| *f == shown)
                .map_or(0, |(_, n, _)| *n);
            if count > allowed {
                wrong.push(format!("{shown}: {count} unbounded queue(s)"));
            }
        }
    }
    anyhow::ensure!(
        wrong.is_empty(),
        "every queue in production code is bounded (a full queue has a documented policy):\n{}",
        wrong.join("\n")
    );
    Ok(())
}

#[test]
fn every_crate_says_what_it_is_for_and_takes_the_workspace_lints() -> anyhow::Result<()> {
    let meta = metadata()?;
    let mut wrong = Vec::new();
    for p in members(&meta) {
        let Some(manifest) = p["manifest_path"].as_str().map(PathBuf::from) else {
            continue;
        };
        let dir = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
        let toml = std::fs::read_to_string(&manifest)?;
        if !toml.contains("[lints]\nworkspace = true") {
            wrong.push(format!("{}: no `[lints] workspace = true`", name(p)));
        }
        let root_file = ["src/lib.rs", "src/main.rs"]
            .iter()
            .map(|f| dir.join(f))
            .find(|f| f.exists());
        if let Some(file) = root_file {
            let text = std::fs::read_to_string(&file)?;
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if !first.starts_with("//!") && !first.starts_with("#![doc") {
                wrong.push(format!("{}: no crate-level doc comment", file.display()));
            }
        }
    }
    anyhow::ensure!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

/// What `thywill-core` may depend on (normal and build dependencies): serialisation, the
/// error derive and a hasher. Anything else (tokio, a random number generator, a client library) would bring
/// IO or a runtime into the component authors' API boundary.
const CORE_DEPENDENCIES: &[&str] = &["serde", "serde_json", "bincode", "thiserror", "foldhash"];

#[test]
fn the_core_depends_on_no_runtime_and_no_io() -> anyhow::Result<()> {
    let meta = metadata()?;
    let packages = members(&meta);
    let core = packages
        .iter()
        .find(|p| name(p) == CORE)
        .ok_or_else(|| anyhow::anyhow!("no {CORE} in the workspace"))?;
    let extra: Vec<&str> = core["dependencies"]
        .as_array()
        .map(|deps| {
            deps.iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .filter_map(|d| d["name"].as_str())
                .filter(|n| !CORE_DEPENDENCIES.contains(n))
                .collect()
        })
        .unwrap_or_default();
    anyhow::ensure!(
        extra.is_empty(),
        "{CORE} must do no IO and start no runtime; it depends on {extra:?} besides {CORE_DEPENDENCIES:?}"
    );
    Ok(())
}
