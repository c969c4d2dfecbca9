//! A real `nats-server` on a free loopback port for tests, with JetStream (its store in a
//! temporary directory removed on drop): killed on drop, restartable on the same port (to test
//! reconnection), keeping what JetStream stored in files.
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! let mut nats = thywill_testkit::nats::NatsServer::start().await?;
//! let url = nats.url(); // nats://127.0.0.1:<port>
//! nats.restart().await?; // same port
//! # let _ = url; Ok(()) }
//! ```

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::process::{Daemon, Probe};

/// The `nats-server` binary used (`/usr/sbin/nats-server` on Debian, else from `PATH`).
pub fn nats_server_binary() -> String {
    let debian = "/usr/sbin/nats-server";
    if std::path::Path::new(debian).is_file() {
        debian.to_owned()
    } else {
        "nats-server".to_owned()
    }
}

/// A `nats-server` child process bound to 127.0.0.1 on its own port.
#[derive(Debug)]
pub struct NatsServer {
    daemon: Daemon,
    /// JetStream's store (removed on drop).
    dir: PathBuf,
}

impl NatsServer {
    /// Starts a server on a free loopback port and waits until it greets clients.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(crate::free_port()).await
    }

    /// Starts a server on `port` and waits until it greets clients.
    pub async fn start_on(port: u16) -> anyhow::Result<Self> {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "thywill-nats-{}-{port}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut s = Self {
            daemon: Daemon::new("nats-server", port, GREETING),
            dir,
        };
        s.spawn().await?;
        Ok(s)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let store = self.dir.to_string_lossy().into_owned();
        let mut cmd = Command::new(nats_server_binary());
        cmd.args(["--addr", "127.0.0.1", "--port", &self.port().to_string()])
            .args(["--jetstream", "--store_dir", &store]);
        self.daemon.start(cmd).await
    }

    /// Whether the server greets a new connection with its `INFO` line now (bounded by one
    /// second).
    pub async fn greets(&self) -> bool {
        self.daemon.answers().await
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.daemon.port()
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port())
    }

    /// Whether the child process runs.
    pub fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    /// Kills the server (SIGKILL) and reaps it. Clients see the connection drop.
    pub fn stop(&mut self) {
        self.daemon.stop();
    }

    /// Stops the server and starts it again on the same port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn().await
    }
}

/// A NATS server greets every connection with its `INFO` line.
const GREETING: Probe = Probe {
    send: b"",
    expect: b"INFO ",
};

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_greets_is_killed_on_drop_and_comes_back_on_its_port() -> anyhow::Result<()> {
        let mut nats = NatsServer::start().await?;
        assert!(nats.greets().await && nats.is_running());
        let port = nats.port();
        nats.restart().await?;
        assert!(nats.greets().await, "greets again after a restart");
        assert_eq!(nats.port(), port);
        drop(nats);
        let probe = NatsServer {
            daemon: Daemon::new("nats-server", port, GREETING),
            dir: std::env::temp_dir().join("thywill-nats-never-made"),
        };
        assert!(!probe.greets().await, "killed on drop");
        Ok(())
    }
}
