//! A real `redis-server` on a free loopback port for tests: no persistence, killed on drop,
//! restartable on the same port (to test reconnection).
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! let mut redis = thywill_testkit::redis::RedisServer::start().await?;
//! let url = redis.url(); // redis://127.0.0.1:<port>
//! redis.restart().await?; // same port, empty data
//! # let _ = url; Ok(()) }
//! ```

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers `PING`.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(crate::free_port()).await
    }

    /// Starts a server on `port` and waits until it answers `PING`.
    pub async fn start_on(port: u16) -> anyhow::Result<Self> {
        let mut s = Self { port, child: None };
        s.spawn().await?;
        Ok(s)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new(redis_server_binary())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (install it: scripts/install-test-deps.sh)")?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + crate::TIMEOUT;
        loop {
            if self.ping().await {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                bail!(
                    "redis-server exited at start ({status}); port {} taken?",
                    self.port
                );
            }
            if tokio::time::Instant::now() >= deadline {
                self.stop();
                bail!(
                    "redis-server on port {} did not answer PING within {:?}",
                    self.port,
                    crate::TIMEOUT
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether the server answers `PING` now (bounded by one second).
    pub async fn ping(&self) -> bool {
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .ok()?;
            s.write_all(b"PING\r\n").await.ok()?;
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf).await.ok()?;
            (&buf == b"+PONG\r\n").then_some(())
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), attempt).await,
            Ok(Some(()))
        )
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether the child process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the server (SIGKILL) and reaps it. Clients see the connection drop.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server and starts a fresh one on the same port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn().await
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
