//! A real `redis-server` on a free loopback port for tests: no persistence (unless started with
//! [`RedisServer::start_persistent`]), killed on drop, restartable on the same port (to test
//! reconnection).
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! let mut redis = thywill_testkit::redis::RedisServer::start().await?;
//! let url = redis.url(); // redis://127.0.0.1:<port>
//! redis.restart().await?; // same port, empty data
//!
//! let mut kept = thywill_testkit::redis::RedisServer::start_persistent().await?;
//! kept.restart().await?; // same port, same data (append-only file, fsync on every write)
//! # let _ = url; Ok(()) }
//! ```

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;

use crate::process::{Daemon, Probe};

/// The `redis-server` binary used (`/usr/bin/redis-server` on Debian, else from `PATH`).
pub fn redis_server_binary() -> String {
    let debian = "/usr/bin/redis-server";
    if std::path::Path::new(debian).is_file() {
        debian.to_owned()
    } else {
        "redis-server".to_owned()
    }
}

/// A `redis-server` child process bound to 127.0.0.1 on its own port.
#[derive(Debug)]
pub struct RedisServer {
    daemon: Daemon,
    /// The data directory of a persistent server (removed on drop).
    dir: Option<PathBuf>,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers `PING`.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(crate::free_port()).await
    }

    /// Starts a server on `port` and waits until it answers `PING`.
    pub async fn start_on(port: u16) -> anyhow::Result<Self> {
        let mut s = Self {
            daemon: Daemon::new("redis-server", port, PING),
            dir: None,
        };
        s.spawn().await?;
        Ok(s)
    }

    /// Starts a server that keeps its data across [`RedisServer::restart`] (and `kill -9`): an
    /// append-only file synced on every write, in a temporary directory removed on drop.
    pub async fn start_persistent() -> anyhow::Result<Self> {
        let port = crate::free_port();
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "thywill-redis-{}-{port}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut s = Self {
            daemon: Daemon::new("redis-server", port, PING),
            dir: Some(dir),
        };
        s.spawn().await?;
        Ok(s)
    }

    /// Whether the server keeps its data across restarts.
    pub fn is_persistent(&self) -> bool {
        self.dir.is_some()
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let port = self.port().to_string();
        let mut args = vec!["--port", &port, "--bind", "127.0.0.1", "--save", ""];
        let dir = self.dir.as_ref().map(|d| d.to_string_lossy().into_owned());
        match &dir {
            None => args.extend(["--appendonly", "no"]),
            Some(dir) => args.extend(["--dir", dir, "--appendonly", "yes", "--appendfsync", "always"]),
        }
        let mut cmd = Command::new(redis_server_binary());
        cmd.args(&args);
        self.daemon.start(cmd).await
    }

    /// Whether the server answers `PING` now (bounded by one second).
    pub async fn ping(&self) -> bool {
        self.daemon.answers().await
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.daemon.port()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port())
    }

    /// Whether the child process runs.
    pub fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    /// Kills the server (SIGKILL) and reaps it. Clients see the connection drop.
    pub fn stop(&mut self) {
        self.daemon.stop();
    }

    /// Stops the server and starts it again on the same port: with empty data, or with the
    /// data it had for a persistent server.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn().await
    }
}

/// Redis answers an inline `PING` with `+PONG`.
const PING: Probe = Probe {
    send: b"PING\r\n",
    expect: b"+PONG\r\n",
};

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends one inline command and returns the first line of the reply.
    async fn command(port: u16, cmd: &str) -> anyhow::Result<String> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(format!("{cmd}\r\n").as_bytes()).await?;
        let mut buf = vec![0u8; 256];
        let n = tokio::time::timeout(crate::TIMEOUT, s.read(&mut buf)).await??;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    #[tokio::test]
    async fn a_persistent_server_keeps_its_data_across_restarts_and_a_plain_one_does_not()
    -> anyhow::Result<()> {
        let mut kept = RedisServer::start_persistent().await?;
        let dir = kept.dir.clone().context("a data directory")?;
        assert_eq!(command(kept.port(), "SET k v").await?, "+OK\r\n");
        kept.restart().await?;
        assert_eq!(command(kept.port(), "GET k").await?, "$1\r\nv\r\n");
        drop(kept);
        assert!(!dir.exists(), "the data directory is removed on drop");

        let mut plain = RedisServer::start().await?;
        assert!(!plain.is_persistent());
        assert_eq!(command(plain.port(), "SET k v").await?, "+OK\r\n");
        plain.restart().await?;
        assert_eq!(command(plain.port(), "GET k").await?, "$-1\r\n");
        Ok(())
    }
}
