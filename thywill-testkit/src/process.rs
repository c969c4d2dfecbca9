//! Real processes for multi-process tests: started from built binaries, their stdout read line
//! by line, killed (SIGKILL) on drop.
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! use thywill_testkit::process::Process;
//! let mut p = Process::spawn(env!("CARGO"), ["--version"])?;
//! let line = p.wait_line(|l| l.starts_with("cargo")).await?;
//! # let _ = line; Ok(()) }
//! ```

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::mpsc;

/// A child process whose stdout lines are collected; killed on drop.
#[derive(Debug)]
pub struct Process {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    program: String,
}

impl Process {
    /// Starts `program` with `args`; stdout is captured, stderr inherited (shown by the test
    /// harness on failure).
    pub fn spawn<I, S>(program: impl AsRef<OsStr>, args: I) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(program.as_ref());
        cmd.args(args);
        Self::spawn_command(cmd)
    }

    /// Starts a prepared command (stdout is replaced by a pipe).
    pub fn spawn_command(mut cmd: Command) -> anyhow::Result<Self> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        cmd.stdout(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().with_context(|| format!("starting {program}"))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        Ok(Self {
            child,
            lines,
            seen: Vec::new(),
            program,
        })
    }

    /// Starts a prepared command with stdout captured as by [`Process::spawn_command`] and
    /// stderr captured too: every stderr line is passed on to this process's stderr (shown by
    /// the test harness on failure) and kept in the returned [`Stderr`].
    pub fn spawn_command_with_stderr(mut cmd: Command) -> anyhow::Result<(Self, Stderr)> {
        cmd.stderr(Stdio::piped());
        let mut p = Self::spawn_command(cmd)?;
        let pipe = p.child.stderr.take().context("no stderr pipe")?;
        let stderr = Stderr::default();
        let log = stderr.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                eprintln!("{line}");
                log.push(line);
            }
        });
        Ok((p, stderr))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stdout line read so far (by [`Process::wait_line`] and friends).
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Reads stdout lines until one satisfies `pred`, within [`crate::TIMEOUT`].
    pub async fn wait_line(&mut self, pred: impl FnMut(&str) -> bool) -> anyhow::Result<String> {
        self.wait_line_within(crate::TIMEOUT, pred).await
    }

    /// Reads stdout lines until one satisfies `pred`, within `wait`. Lines read on the way are
    /// kept in [`Process::seen`].
    pub async fn wait_line_within(
        &mut self,
        wait: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Err(_) => bail!("{}: no matching line within {wait:?}", self.program),
                Ok(None) => bail!("{}: stdout closed (process exited?)", self.program),
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return Ok(line);
                    }
                }
            }
        }
    }

    /// Reads lines until the `listening: <url>` line the examples print, and returns the URL.
    pub async fn listening_url(&mut self) -> anyhow::Result<String> {
        let line = self.wait_line(|l| l.starts_with("listening: ")).await?;
        Ok(line.trim_start_matches("listening: ").trim().to_owned())
    }

    /// Lines already printed, without waiting.
    pub fn drain(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l.clone());
            out.push(l);
        }
        out
    }

    /// Kills the process with SIGKILL (`kill -9`) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (bounded by [`crate::TIMEOUT`]) for the process to exit; kills
    /// it if it does not. Returns whether it exited by itself.
    pub async fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = tokio::time::Instant::now() + crate::TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        false
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The stderr lines of a process started by [`Process::spawn_command_with_stderr`]: the last
/// [`Stderr::TAIL`] lines, and every line mentioning a panic.
#[derive(Clone, Debug, Default)]
pub struct Stderr(std::sync::Arc<std::sync::Mutex<StderrLines>>);

#[derive(Debug, Default)]
struct StderrLines {
    tail: std::collections::VecDeque<String>,
    panics: Vec<String>,
    count: u64,
}

impl Stderr {
    /// How many of the last lines are kept.
    pub const TAIL: usize = 200;

    fn lock(&self) -> std::sync::MutexGuard<'_, StderrLines> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, line: String) {
        let mut l = self.lock();
        l.count += 1;
        if line.contains("panicked") {
            l.panics.push(line.clone());
        }
        if l.tail.len() == Self::TAIL {
            l.tail.pop_front();
        }
        l.tail.push_back(line);
    }

    /// Every line read so far that contains `panicked` (a Rust panic message).
    pub fn panics(&self) -> Vec<String> {
        self.lock().panics.clone()
    }

    /// The last lines read.
    pub fn tail(&self) -> Vec<String> {
        self.lock().tail.iter().cloned().collect()
    }

    /// How many lines were read.
    pub fn count(&self) -> u64 {
        self.lock().count
    }
}

/// The path of a binary built in this workspace's target directory (`target/debug/<name>`),
/// found from the running test executable (`target/debug/deps/<test>`).
///
/// In a package's own integration tests prefer `env!("CARGO_BIN_EXE_<name>")`.
pub fn cargo_bin(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("current exe")?;
    let mut dir: Option<&Path> = exe.parent();
    while let Some(d) = dir {
        let candidate = d.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
        if d.file_name().is_some_and(|n| n == "target") {
            break;
        }
    }
    bail!(
        "binary {name} not found next to {}: build it first",
        exe.display()
    )
}

/// A server a fixture runs on a loopback port (`redis-server`, `nats-server`): started, probed
/// until it answers (bounded by [`TIMEOUT`](crate::TIMEOUT)), killed (SIGKILL) and reaped by
/// [`Daemon::stop`]. The fixture stops it on drop.
#[derive(Debug)]
pub(crate) struct Daemon {
    name: &'static str,
    port: u16,
    probe: Probe,
    child: Option<Child>,
}

/// How a [`Daemon`] shows that it serves: the bytes it answers a new connection with, after
/// the bytes sent first (none for a server that greets).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Probe {
    /// Sent on connecting.
    pub(crate) send: &'static [u8],
    /// The first bytes of the answer.
    pub(crate) expect: &'static [u8],
}

impl Daemon {
    /// A daemon not started yet.
    pub(crate) fn new(name: &'static str, port: u16, probe: Probe) -> Self {
        Self {
            name,
            port,
            probe,
            child: None,
        }
    }

    /// The port it binds.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Runs `cmd` (its standard streams set to null here) and waits until the server answers
    /// the probe; an error when it exits first or does not answer in time.
    pub(crate) async fn start(&mut self, mut cmd: Command) -> anyhow::Result<()> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (install it: scripts/install-test-deps.sh)",
                    self.name
                )
            })?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + crate::TIMEOUT;
        loop {
            if self.answers().await {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                bail!(
                    "{} exited at start ({status}); port {} taken?",
                    self.name,
                    self.port
                );
            }
            if tokio::time::Instant::now() >= deadline {
                self.stop();
                bail!(
                    "{} on port {} did not answer within {:?}",
                    self.name,
                    self.port,
                    crate::TIMEOUT
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether the server answers the probe now (bounded by one second).
    pub(crate) async fn answers(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Probe { send, expect } = self.probe;
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .ok()?;
            if !send.is_empty() {
                s.write_all(send).await.ok()?;
            }
            let mut buf = vec![0u8; expect.len()];
            s.read_exact(&mut buf).await.ok()?;
            (buf == expect).then_some(())
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), attempt).await,
            Ok(Some(()))
        )
    }

    /// Whether the child process runs.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the server (SIGKILL) and reaps it. Clients see the connection drop.
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
