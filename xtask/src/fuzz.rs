//! `cargo xtask fuzz [--secs N] [TARGET…]`: runs the cargo-fuzz targets of `fuzz/` (libFuzzer
//! with AddressSanitizer), each for a bounded time, and fails when one finds a crash.
//!
//! Before each run the committed seed inputs (`fuzz/seeds/<target>/`) are copied into the
//! working corpus (`fuzz/corpus/<target>/`, not committed), which keeps what libFuzzer finds
//! between runs. A crashing input is saved under `fuzz/artifacts/<target>/`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};

use crate::flags::Args;
use crate::{cargo, project_root, run as run_cmd, show};

/// The fuzz targets (binaries of `fuzz/Cargo.toml`).
const TARGETS: &[&str] = &["envelope", "rpc_request", "node"];
/// Seconds per target unless `--secs` says otherwise.
const DEFAULT_SECS: u64 = 30;
/// Seconds one input may take before libFuzzer reports it as a hang.
const INPUT_TIMEOUT_SECS: u64 = 10;

const USAGE: &str = "\
usage: cargo xtask fuzz [--secs N] [TARGET…]

Fuzzes each TARGET (default: all) for N seconds (default 30) with cargo-fuzz, which it
installs when missing. Fails when a target finds a crash; the input is saved under
fuzz/artifacts/TARGET/.

targets: envelope (the wire-protocol decoder), rpc_request (RPC requests through a registry),
         node (a real node driven by several connections with sequences of frames)
";

pub(crate) fn run(args: Vec<String>) -> anyhow::Result<()> {
    let mut args = Args::new(args);
    if args.switch("--help") || args.switch("-h") {
        print!("{USAGE}");
        return Ok(());
    }
    let secs: u64 = args.value_or("--secs", DEFAULT_SECS)?;
    if secs == 0 {
        bail!("--secs must be at least 1");
    }
    let mut targets = Vec::new();
    while let Ok(target) = args.positional("TARGET") {
        if !TARGETS.contains(&target.as_str()) {
            bail!("unknown fuzz target {target:?} (targets: {})", TARGETS.join(", "));
        }
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    args.finish()?;
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| (*t).to_owned()).collect();
    }

    ensure_cargo_fuzz()?;
    let fuzz_dir = project_root().join("fuzz");
    let mut outcomes = Vec::new();
    for target in &targets {
        let seeded = seed_corpus(&fuzz_dir, target)?;
        eprintln!("xtask fuzz: {target}: {seeded} new seed input(s) copied into fuzz/corpus/{target}");
        outcomes.push((target.as_str(), fuzz(&fuzz_dir, target, secs)?));
    }

    println!("xtask fuzz: summary ({secs} s per target)");
    let mut failed = Vec::new();
    for (target, outcome) in &outcomes {
        println!("  {target:<12} {}", outcome.describe());
        if let Some(artifact) = &outcome.artifact {
            let shown = artifact.strip_prefix(project_root()).unwrap_or(artifact);
            println!("  {:<12} input: {}", "", shown.display());
            if let Some(preview) = preview(artifact) {
                println!("  {:<12} {preview}", "");
            }
            println!(
                "  {:<12} reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {target} {}",
                "",
                artifact.strip_prefix(&fuzz_dir).unwrap_or(artifact).display()
            );
        }
        if !outcome.success {
            failed.push(*target);
        }
    }
    if failed.is_empty() {
        println!("xtask fuzz: ok");
        Ok(())
    } else {
        println!("xtask fuzz: FAILED: {}", failed.join(", "));
        bail!("fuzz: {} found a problem", failed.join(" and "))
    }
}

/// Installs cargo-fuzz unless `cargo fuzz` already works.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let mut probe = cargo();
    probe
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if probe.status().is_ok_and(|s| s.success()) {
        return Ok(());
    }
    eprintln!("xtask fuzz: `cargo fuzz` is missing; installing cargo-fuzz");
    let mut install = cargo();
    install.args(["install", "cargo-fuzz", "--locked"]);
    run_cmd(install)
}

/// Copies the committed seeds of `target` into its working corpus (inputs already there are
/// left alone); returns how many were new.
fn seed_corpus(fuzz_dir: &Path, target: &str) -> anyhow::Result<usize> {
    let seeds = fuzz_dir.join("seeds").join(target);
    let corpus = fuzz_dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("cannot create {}", corpus.display()))?;
    let entries = std::fs::read_dir(&seeds).with_context(|| format!("cannot read {}", seeds.display()))?;
    let mut copied = 0;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", seeds.display()))?;
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        // A prefix keeps seeds apart from the inputs libFuzzer names by their SHA-1.
        let mut name = std::ffi::OsString::from("seed-");
        name.push(entry.file_name());
        let to = corpus.join(name);
        if to.exists() {
            continue;
        }
        std::fs::copy(entry.path(), &to)
            .with_context(|| format!("cannot copy {} to {}", entry.path().display(), to.display()))?;
        copied += 1;
    }
    Ok(copied)
}

/// Runs one target for `secs` seconds; its output goes to our stderr as it comes, and is read
/// for the summary.
fn fuzz(fuzz_dir: &Path, target: &str, secs: u64) -> anyhow::Result<Outcome> {
    let artifacts = fuzz_dir.join("artifacts").join(target);
    let before = list_files(&artifacts);

    let mut c = cargo();
    c.current_dir(fuzz_dir)
        // cargo-fuzz builds with unstable compiler flags (`-Zsanitizer=address`, and it refuses
        // sanitizers on a compiler it does not take for nightly). Only a stable toolchain is
        // installed here and none other can be fetched; RUSTC_BOOTSTRAP=1 lets the stable
        // compiler accept those flags (its rust-std ships the sanitizer runtimes). It is set
        // for this command only: the fuzz crate builds in its own fuzz/target, so these
        // artifacts never mix with the workspace's.
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", "--target-dir"])
        .arg(fuzz_dir.join("target"))
        .arg(target)
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg("-print_final_stats=1")
        .stderr(Stdio::piped());
    let shown = show(&c);
    eprintln!("$ {shown}");
    let mut child = c.spawn().with_context(|| format!("cannot start `{shown}`"))?;

    let mut progress = Progress::default();
    if let Some(stderr) = child.stderr.take() {
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::new();
        let mut out = std::io::stderr();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    // Echoing is best effort: a closed stderr must not stop the run.
                    let _ = out.write_all(&line);
                    progress.observe(&String::from_utf8_lossy(&line));
                }
            }
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("`{shown}` did not finish"))?;

    let artifact = progress
        .artifact
        .as_deref()
        .map(|p| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                fuzz_dir.join(p)
            }
        })
        .or_else(|| list_files(&artifacts).into_iter().find(|p| !before.contains(p)));
    let success = status.success() && artifact.is_none();
    Ok(Outcome {
        success,
        status: status.to_string(),
        progress,
        artifact,
    })
}

/// The files directly in `dir` (none when it does not exist).
fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The start of a saved input, escaped, for the summary.
fn preview(path: &Path) -> Option<String> {
    const MAX: usize = 300;
    let data = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&data[..data.len().min(MAX)]).into_owned();
    let more = if data.len() > MAX {
        format!(" … ({} bytes)", data.len())
    } else {
        String::new()
    };
    Some(format!("{text:?}{more}"))
}

/// How one target's run ended.
#[derive(Debug)]
struct Outcome {
    success: bool,
    status: String,
    progress: Progress,
    artifact: Option<PathBuf>,
}

impl Outcome {
    fn describe(&self) -> String {
        let p = &self.progress;
        let runs = p
            .runs
            .map_or_else(|| "? runs".to_owned(), |n| format!("{n} runs"));
        let mut line = match (&self.success, &p.problem) {
            (true, _) => format!("ok      {runs}"),
            (false, Some(problem)) => format!("CRASH   {runs}: {problem}"),
            (false, None) if p.runs.is_none() => {
                format!("FAILED  before fuzzing ({}; see the output above)", self.status)
            }
            (false, None) => format!("FAILED  {runs} ({})", self.status),
        };
        if let Some(cov) = p.coverage {
            line.push_str(&format!(", coverage {cov}"));
        }
        if let Some(corpus) = p.corpus {
            line.push_str(&format!(", corpus {corpus} inputs"));
        }
        if let Some(rate) = p.execs_per_sec.filter(|r| *r > 0) {
            line.push_str(&format!(", {rate} exec/s"));
        }
        line
    }
}

/// What libFuzzer's output says about a run.
#[derive(Debug, Default, PartialEq)]
struct Progress {
    /// Inputs executed (`stat::number_of_executed_units`, `Done N runs`, or the last status line).
    runs: Option<u64>,
    /// Coverage (`cov:`) of the last status line.
    coverage: Option<u64>,
    /// Corpus size (`corp: N/…`) of the last status line.
    corpus: Option<u64>,
    /// `stat::average_exec_per_sec`.
    execs_per_sec: Option<u64>,
    /// What went wrong: a panic's message or libFuzzer's `ERROR:` line.
    problem: Option<String>,
    /// `Test unit written to PATH`.
    artifact: Option<String>,
    /// A panic's location was seen; its message is the next line.
    panic_message_next: bool,
}

impl Progress {
    fn observe(&mut self, line: &str) {
        let line = line.trim_end();
        if std::mem::take(&mut self.panic_message_next) {
            if let Some(problem) = &mut self.problem {
                problem.push(' ');
                problem.push_str(line);
            }
            return;
        }
        if let Some(rest) = line.strip_prefix("stat::number_of_executed_units:") {
            self.runs = rest.trim().parse().ok().or(self.runs);
        } else if let Some(rest) = line.strip_prefix("stat::average_exec_per_sec:") {
            self.execs_per_sec = rest.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("Done ") {
            // "Done 123456 runs in 20 second(s)"
            if let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                self.runs = Some(n);
            }
        } else if let Some(status) = line.strip_prefix('#') {
            // "#12345\tNEW    cov: 812 ft: 2403 corp: 190/9201b lim: 4096 exec/s: 6172 rss: 61Mb"
            let mut words = status.split_whitespace();
            if let Some(n) = words.next().and_then(|n| n.parse().ok()) {
                self.runs = Some(n);
                let words: Vec<&str> = words.collect();
                let after = |key: &str| {
                    let i = words.iter().position(|w| *w == key)?;
                    words.get(i + 1)?.split('/').next()?.parse().ok()
                };
                self.coverage = after("cov:").or(self.coverage);
                self.corpus = after("corp:").or(self.corpus);
            }
        } else if let Some(i) = line.find("Test unit written to ") {
            self.artifact = Some(line[i + "Test unit written to ".len()..].trim().to_owned());
        } else if line.starts_with("thread '") && line.contains("panicked at") {
            // "thread '<unnamed>' panicked at src/envelope.rs:30:13:", the message on the next line.
            if self.problem.is_none() {
                self.problem = Some(line.to_owned());
                self.panic_message_next = true;
            }
        } else if let Some(i) = line.find("ERROR: libFuzzer: ") {
            self.problem
                .get_or_insert_with(|| line[i + "ERROR: ".len()..].to_owned());
        } else if let Some(i) = line.find("ERROR: AddressSanitizer: ") {
            self.problem
                .get_or_insert_with(|| line[i + "ERROR: ".len()..].to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(lines: &str) -> Progress {
        let mut p = Progress::default();
        for line in lines.lines() {
            p.observe(line);
        }
        p
    }

    #[test]
    fn reads_a_clean_run() {
        let p = observed(
            "INFO: Seed: 42\n\
             #2\tINITED cov: 500 ft: 900 corp: 20/1200b exec/s: 0 rss: 40Mb\n\
             #4096\tpulse  cov: 812 ft: 2403 corp: 190/9201b lim: 4096 exec/s: 2048 rss: 61Mb\n\
             #51234\tDONE   cov: 830 ft: 2500 corp: 201/10kb lim: 4096 exec/s: 2561 rss: 70Mb\n\
             Done 51234 runs in 20 second(s)\n\
             stat::number_of_executed_units: 51234\n\
             stat::average_exec_per_sec:     2561\n",
        );
        assert_eq!(
            p,
            Progress {
                runs: Some(51234),
                coverage: Some(830),
                corpus: Some(201),
                execs_per_sec: Some(2561),
                problem: None,
                artifact: None,
                panic_message_next: false,
            }
        );
    }

    #[test]
    fn reads_a_crash() {
        let p = observed(
            "#300\tNEW    cov: 700 ft: 800 corp: 30/2kb lim: 4096 exec/s: 0 rss: 50Mb\n\
             thread '<unnamed>' panicked at src/envelope.rs:30:13:\n\
             accepted 70000 bytes\n\
             ==1234== ERROR: libFuzzer: deadly signal\n\
             MS: 1 ChangeByte-; base unit: 0000\n\
             artifact_prefix='/work/main/fuzz/artifacts/envelope/'; Test unit written to /work/main/fuzz/artifacts/envelope/crash-abc\n\
             stat::number_of_executed_units: 301\n",
        );
        assert_eq!(p.runs, Some(301));
        assert_eq!(
            p.problem.as_deref(),
            Some("thread '<unnamed>' panicked at src/envelope.rs:30:13: accepted 70000 bytes")
        );
        assert_eq!(
            p.artifact.as_deref(),
            Some("/work/main/fuzz/artifacts/envelope/crash-abc")
        );
    }

    #[test]
    fn options_and_targets() -> anyhow::Result<()> {
        assert!(run(vec!["--secs".into(), "0".into()]).is_err());
        assert!(run(vec!["nonesuch".into()]).is_err());
        assert!(run(vec!["--bogus".into()]).is_err());
        run(vec!["--help".into()])
    }
}
