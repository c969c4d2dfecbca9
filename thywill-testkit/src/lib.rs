//! Test support for thywill-rs (not published).
//!
//! - [`WsClient`]: a WebSocket client that speaks protocol v1, with bounded waits.
//! - [`free_port`]: a free loopback port.
//! - [`browser`]: headless Chromium driven through chromedriver (Debian packages).
//! - [`process`]: real example processes, killed on drop.
//! - [`redis`]: a real `redis-server` on a free loopback port.
//! - [`conformance`]: the suite every cluster backend passes.
//! - [`hub`]: an in-memory cluster of several members in one process.
//! - [`members`]: cluster members as real example processes (kill -9, restart, event lines).
//! - [`netns`]: network namespaces made by a test, to partition members for real.
//! - [`reliable`]: a client that implements recovery (ordered streams, resume, resend).
//! - [`served`]: browser-test helpers (a required browser, waiting for a member to be up).
//!
//! Every wait here is bounded by a timeout; nothing sleeps to synchronise.

pub mod browser;
pub mod conformance;
pub mod hub;
pub mod members;
pub mod netns;
pub mod process;
pub mod redis;
pub mod reliable;
pub mod served;
mod ws;

pub use ws::{WsClient, WsError};

/// The default bound for waits in tests.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A loopback port that was free a moment ago.
///
/// Never returns the same port twice in one process: the kernel may hand a just-released port
/// out again, and two members of one test must not be given the same one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..1000 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no free port that was not handed out already")
}
