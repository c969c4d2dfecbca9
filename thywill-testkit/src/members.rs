//! Cluster members as real example processes: started from a built binary with `--port` and
//! `--member`, their stdout JSON event lines (see `example_support::cluster`) read, killed with
//! SIGKILL (`kill -9`) and restarted with the same arguments.
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! use thywill_testkit::members::{Member, all_up, is};
//! let args = ["--cluster", "redis"].map(String::from);
//! let mut members = vec![
//!     Member::start("target/debug/example-draw", "alpha", thywill_testkit::free_port(), &args).await?,
//!     Member::start("target/debug/example-draw", "beta", thywill_testkit::free_port(), &args).await?,
//! ];
//! all_up(&mut members).await?;
//! let cursor = members[0].cursor();
//! members[1].kill();
//! members[0].wait_event(cursor, thywill_testkit::TIMEOUT, |v| is(v, "member_down", "beta")).await?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::process::Process;

/// One member process.
#[derive(Debug)]
pub struct Member {
    /// Member id.
    pub id: String,
    /// Web port.
    pub port: u16,
    /// The process.
    pub proc: Process,
    program: PathBuf,
    args: Vec<String>,
    /// A command the member is started through (such as `ip netns exec NS`), or empty.
    wrapper: Vec<String>,
}

impl Member {
    /// Starts `program` with `--port port --member id` and `args`, and waits until it prints
    /// its `listening:` line.
    pub async fn start(
        program: impl AsRef<Path>,
        id: &str,
        port: u16,
        args: &[String],
    ) -> anyhow::Result<Member> {
        Member::start_wrapped(&[], program, id, port, args).await
    }

    /// [`Member::start`] through a wrapper command: runs `wrapper[0]` with the rest of
    /// `wrapper`, then `program --port port --member id args` (for example
    /// `["ip", "netns", "exec", "NS"]` starts the member in a network namespace, see
    /// [`crate::netns`]). An empty wrapper runs `program` itself. [`Member::restart`] starts
    /// it through the same wrapper.
    pub async fn start_wrapped(
        wrapper: &[String],
        program: impl AsRef<Path>,
        id: &str,
        port: u16,
        args: &[String],
    ) -> anyhow::Result<Member> {
        let program = program.as_ref().to_path_buf();
        let mut all: Vec<std::ffi::OsString> = wrapper.iter().skip(1).map(Into::into).collect();
        if !wrapper.is_empty() {
            all.push(program.clone().into());
        }
        for a in [
            "--port".to_owned(),
            port.to_string(),
            "--member".to_owned(),
            id.to_owned(),
        ] {
            all.push(a.into());
        }
        all.extend(args.iter().map(Into::into));
        let run: std::ffi::OsString = wrapper.first().map_or_else(|| program.clone().into(), Into::into);
        let mut proc = Process::spawn(&run, &all)?;
        proc.listening_url()
            .await
            .with_context(|| format!("{id} did not start"))?;
        Ok(Member {
            id: id.to_owned(),
            port,
            proc,
            program,
            args: args.to_vec(),
            wrapper: wrapper.to_vec(),
        })
    }

    /// Kills the process (`kill -9`) and returns the wall-clock time of the kill in ms.
    pub fn kill(&mut self) -> u64 {
        let at = now_ms();
        self.proc.kill();
        at
    }

    /// Starts the member again with the same arguments.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let again =
            Member::start_wrapped(&self.wrapper, &self.program, &self.id, self.port, &self.args).await?;
        *self = again;
        Ok(())
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The WebSocket URL of an example served under `base` (such as `/draw`).
    pub fn ws(&self, base: &str) -> String {
        format!("ws://127.0.0.1:{}{base}/ws", self.port)
    }

    /// How many stdout lines were read so far (a cursor for [`Member::wait_event`]).
    pub fn cursor(&self) -> usize {
        self.proc.seen().len()
    }

    /// Waits for a JSON event line satisfying `pred`, among lines from `since` on.
    pub async fn wait_event(
        &mut self,
        since: usize,
        wait: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        for line in self.proc.seen().iter().skip(since) {
            if let Ok(v) = serde_json::from_str::<Value>(line)
                && pred(&v)
            {
                return Ok(v);
            }
        }
        let waited = self
            .proc
            .wait_line_within(wait, |l| serde_json::from_str::<Value>(l).is_ok_and(|v| pred(&v)))
            .await;
        let line = match waited {
            Ok(l) => l,
            Err(e) => {
                let recent: Vec<&String> = self.proc.seen().iter().rev().take(8).collect();
                bail!("on {}: {e}; last lines: {recent:?}", self.id);
            }
        };
        Ok(serde_json::from_str(&line)?)
    }

    /// Every event line read so far satisfying `pred`.
    pub fn events(&mut self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.proc.drain();
        self.proc
            .seen()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| pred(v))
            .collect()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether `v` is the event `event` about `member`.
pub fn is(v: &Value, event: &str, member: &str) -> bool {
    v["event"] == event && v["member"] == member
}

/// Waits until every member reports every other one up.
pub async fn all_up(members: &mut [Member]) -> anyhow::Result<()> {
    let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
    for m in members.iter_mut() {
        let me = m.id.clone();
        for other in ids.iter().filter(|o| **o != me) {
            m.wait_event(0, crate::TIMEOUT, |v| is(v, "member_up", other))
                .await?;
        }
    }
    Ok(())
}
