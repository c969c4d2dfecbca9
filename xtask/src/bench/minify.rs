//! `cargo xtask bench minify`: minification of the examples' scripts and styles (and of the
//! browser client library): size before and after, gzip sizes, and the median time per file,
//! for thywill's minifiers (swc_core for JavaScript, lightningcss for CSS, through the
//! `minify` example of `thywill-resources`, release build) and, in the same run, for terser 5
//! and clean-css 5 from the npm registry when `npm` is available (installed once under
//! `target/bench-minify`, timed in-process by node, so neither side pays a process start).
//!
//! Files already named `.min.` are skipped: the pipeline appends them verbatim.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::flags::Args;
use crate::{cargo, cmd, project_root, run as run_cmd, target_dir};

/// The node side of the comparison: terser for `.js`, clean-css (level 1) for `.css`.
const NODE_SCRIPT: &str = r#"
const fs = require('fs');
const { minify } = require('terser');
const CleanCSS = require('clean-css');
(async () => {
  const repeat = Number(process.argv[2]);
  for (const file of process.argv.slice(3)) {
    const src = fs.readFileSync(file, 'utf8');
    const times = [];
    let out = '';
    for (let i = 0; i < repeat; i++) {
      const t = process.hrtime.bigint();
      if (file.endsWith('.css')) {
        out = new CleanCSS({ level: 1 }).minify(src).styles;
      } else {
        out = (await minify(src, { compress: true, mangle: { toplevel: false } })).code;
      }
      times.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    times.sort((a, b) => a - b);
    console.log(JSON.stringify({ file, after: Buffer.byteLength(out), ms: times[times.length >> 1] }));
  }
})().catch((e) => { console.error(e); process.exit(1); });
"#;

/// Scripts and styles of the examples and the client library, without `.min.` files.
fn files() -> anyhow::Result<Vec<String>> {
    let root = project_root();
    let mut found = vec![PathBuf::from("thywill-transport/client/thywill.js")];
    let examples = root.join("examples");
    for entry in std::fs::read_dir(&examples).context("cannot list examples/")? {
        let dir = entry?.path().join("static");
        if dir.is_dir() {
            walk(&root, &dir, &mut found)?;
        }
    }
    found.sort();
    found.dedup();
    Ok(found
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect())
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(root, &path, out)?;
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if (name.ends_with(".js") || name.ends_with(".css")) && !name.contains(".min.") {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

fn json_lines(text: &str) -> anyhow::Result<Vec<Value>> {
    text.lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad result line {l:?}")))
        .collect()
}

fn output(mut c: std::process::Command, what: &str) -> anyhow::Result<String> {
    c.stderr(Stdio::inherit());
    let out = c.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!("{what} failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs terser and clean-css under `target/bench-minify/node` (once) and runs them.
fn node_side(files: &[String], repeat: usize) -> anyhow::Result<Option<Vec<Value>>> {
    let npm_ok = cmd("npm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !npm_ok.is_ok_and(|s| s.success()) {
        eprintln!("xtask bench minify: npm not found: no comparison with terser");
        return Ok(None);
    }
    let dir = target_dir().join("bench-minify").join("node");
    std::fs::create_dir_all(&dir)?;
    if !dir.join("node_modules/terser").is_dir() || !dir.join("node_modules/clean-css").is_dir() {
        let mut install = cmd("npm");
        install
            .args(["install", "--no-save", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .args(["terser@5", "clean-css@5"]);
        if let Err(e) = run_cmd(install) {
            eprintln!("xtask bench minify: cannot install terser ({e:#}): no comparison");
            return Ok(None);
        }
    }
    let script = dir.join("bench.js");
    std::fs::write(&script, NODE_SCRIPT)?;
    let mut node = cmd("node");
    node.arg(&script).arg(repeat.to_string()).args(files);
    Ok(Some(json_lines(&output(node, "node (terser, clean-css)")?)?))
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let mut args = Args::new(args.iter().cloned());
    let repeat: usize = args.value("--repeat")?.unwrap_or(20);
    let no_node = args.switch("--no-node");
    args.finish()?;
    if repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    let files = files()?;
    eprintln!(
        "xtask bench minify: {} files, median of {repeat} runs each",
        files.len()
    );

    let mut ours = cargo();
    ours.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "thywill-resources",
        "--example",
        "minify",
        "--",
        "--repeat",
    ])
    .arg(repeat.to_string())
    .args(&files);
    let ours = json_lines(&output(ours, "the thywill-resources minify example")?)?;
    let theirs = if no_node { None } else { node_side(&files, repeat)? };

    println!(
        "{:<48} {:>4} {:>8} {:>8} {:>7} {:>6} {:>6} | {:>8} {:>7}",
        "file", "kind", "bytes", "thywill", "ms", "gz", "gz min", "other", "ms"
    );
    let (mut before, mut after, mut ms, mut other_after, mut other_ms) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for r in &ours {
        let file = r.get("file").and_then(Value::as_str).unwrap_or("?");
        let other = theirs.as_ref().and_then(|t| {
            t.iter()
                .find(|o| o.get("file").and_then(Value::as_str) == Some(file))
        });
        let (oa, om) = other.map_or((f64::NAN, f64::NAN), |o| (num(o, "after"), num(o, "ms")));
        println!(
            "{:<48} {:>4} {:>8} {:>8} {:>7.2} {:>6} {:>6} | {:>8} {:>7.2}",
            file,
            r.get("kind").and_then(Value::as_str).unwrap_or("?"),
            num(r, "before"),
            num(r, "after"),
            num(r, "ms"),
            num(r, "gzip_before"),
            num(r, "gzip_after"),
            oa,
            om,
        );
        before += num(r, "before");
        after += num(r, "after");
        ms += num(r, "ms");
        other_after += oa;
        other_ms += om;
    }
    println!(
        "{:<48} {:>4} {:>8} {:>8} {:>7.2} {:>6} {:>6} | {:>8} {:>7.2}",
        "total", "", before, after, ms, "", "", other_after, other_ms
    );
    println!(
        "thywill: {:.1}% of the original size; other = terser 5 (js) and clean-css 5 (css){}",
        100.0 * after / before.max(1.0),
        if theirs.is_some() {
            format!(": {:.1}%", 100.0 * other_after / before.max(1.0))
        } else {
            " (not run)".to_owned()
        }
    );
    Ok(())
}
