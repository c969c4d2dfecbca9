//! Times the default minifiers (swc_core for `.js`, lightningcss for `.css`) on files, for
//! `cargo xtask bench minify`:
//!
//! ```text
//! cargo run --release -p thywill-resources --example minify -- [--repeat 20] FILE...
//! ```
//!
//! Prints one JSON object per file: its kind, size before and after, the median time of
//! `--repeat` runs in milliseconds, and the gzip sizes before and after.

use std::time::Instant;

use anyhow::{Context, bail};
use thywill_resources::minify::{css, js};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut repeat = 20usize;
    let mut files = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--repeat" => repeat = args.next().context("--repeat needs a number")?.parse()?,
            _ => files.push(a),
        }
    }
    if files.is_empty() {
        bail!("usage: minify [--repeat N] FILE...");
    }
    let targets = css::default_targets();
    for file in files {
        let source = std::fs::read_to_string(&file).with_context(|| format!("cannot read {file}"))?;
        let kind = if file.ends_with(".css") { "css" } else { "js" };
        let mut times = Vec::with_capacity(repeat);
        let mut out = String::new();
        for _ in 0..repeat.max(1) {
            let start = Instant::now();
            out = if kind == "css" {
                css::minify(&file, &source, targets)?
            } else {
                js::minify(&file, &source)?
            };
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let line = serde_json::json!({
            "file": file,
            "kind": kind,
            "before": source.len(),
            "after": out.len(),
            "ms": median,
            "gzip_before": thywill_resources::gzip(source.as_bytes(), 9).len(),
            "gzip_after": thywill_resources::gzip(out.as_bytes(), 9).len(),
        });
        println!("{line}");
    }
    Ok(())
}
