//! `cargo xtask lint`: formatting, clippy and rustdoc, each with warnings as errors; the docs
//! as docs.rs builds them; then `cargo clippy -p thywill` with every feature combination its
//! README names.

use std::ffi::OsString;
use std::process::Command;

use anyhow::{Context, bail};

use crate::{cargo, project_root, run_all};

/// The README whose dependency lines are checked (`thywill = …` lines in its code blocks).
const FACADE_README: &str = "thywill/README.md";

pub(crate) fn run() -> anyhow::Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);

    // Clippy reads each package's rust-version: `incompatible_msrv` (denied in the workspace
    // lints) flags std APIs stabilised after it; `cargo xtask msrv` covers syntax.
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

    // The docs as docs.rs builds them (package.metadata.docs.rs: every feature, `--cfg docsrs`,
    // which turns on `doc(cfg)` badges) for the crates with feature-gated items.
    let mut docsrs = cargo();
    docsrs
        .env("RUSTDOC", project_root().join("scripts/rustdoc-docsrs.sh"))
        .env("RUSTDOCFLAGS", "--cfg docsrs -D warnings")
        .args([
            "doc",
            "-p",
            "thywill",
            "-p",
            "thywill-resources",
            "--all-features",
            "--no-deps",
        ]);

    let mut steps = vec![fmt, clippy, doc, docsrs];
    steps.extend(feature_checks()?);
    run_all("lint", steps)
}

/// One `cargo clippy -p thywill --lib` per dependency line of the facade's README: `-p` alone,
/// so that features resolve as they do for a user of the crate (nothing unified in from the
/// rest of the workspace), with `-D warnings` (an import unused without a feature fails).
/// Clippy rather than check: it shares the dependencies' artifacts with the workspace clippy.
fn feature_checks() -> anyhow::Result<Vec<Command>> {
    let path = project_root().join(FACADE_README);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let combos = readme_combinations(&text)?;
    if combos.is_empty() {
        bail!("{FACADE_README} names no `thywill = …` dependency line to check");
    }
    Ok(combos
        .into_iter()
        .map(|(default, features)| {
            let mut c = cargo();
            c.args(["clippy", "-p", "thywill", "--lib"]);
            if !default {
                c.arg("--no-default-features");
            }
            if !features.is_empty() {
                c.args(["--features", &features.join(",")]);
            }
            c.args(["--", "-D", "warnings"]);
            c
        })
        .collect())
}

/// The `thywill = …` lines inside the README's code blocks, as (default features on, features).
fn readme_combinations(readme: &str) -> anyhow::Result<Vec<(bool, Vec<String>)>> {
    let mut combos = Vec::new();
    let mut in_code = false;
    for line in readme.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let Some(spec) = t.strip_prefix("thywill =").map(str::trim) else {
            continue;
        };
        if !in_code {
            continue;
        }
        if spec.starts_with('"') {
            combos.push((true, Vec::new()));
            continue;
        }
        let default = !spec.replace(' ', "").contains("default-features=false");
        let features = match spec.find("features") {
            Some(_) if spec.contains('[') => {
                let list = spec
                    .split_once('[')
                    .and_then(|(_, rest)| rest.split_once(']'))
                    .map(|(list, _)| list)
                    .with_context(|| format!("cannot read the features of `{t}`"))?;
                list.split(',')
                    .map(|f| f.trim().trim_matches('"').to_string())
                    .filter(|f| !f.is_empty())
                    .collect()
            }
            _ => Vec::new(),
        };
        combos.push((default, features));
    }
    Ok(combos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_readme_lines() -> anyhow::Result<()> {
        let readme = "thywill = \"0.1\" outside code is prose\n```toml\nthywill = \"0.1\"\nthywill = { version = \"0.1\", default-features = false }\nthywill = { version = \"0.1\", default-features = false, features = [\"redis\", \"minify\"] }\nthywill = { version = \"0.1\", features = [\"http\"] }\n```\n";
        assert_eq!(
            readme_combinations(readme)?,
            vec![
                (true, vec![]),
                (false, vec![]),
                (false, vec!["redis".to_string(), "minify".to_string()]),
                (true, vec!["http".to_string()]),
            ]
        );
        Ok(())
    }

    #[test]
    fn the_facade_readme_names_combinations() -> anyhow::Result<()> {
        let text = std::fs::read_to_string(project_root().join(FACADE_README))?;
        assert!(readme_combinations(&text)?.len() >= 2);
        Ok(())
    }
}
