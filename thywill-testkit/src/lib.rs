//! Test support for thywill-rs (not published).
//!
//! - [`WsClient`]: a WebSocket client that speaks protocol v1, with bounded waits.
//! - [`free_port`]: a free loopback port.
//! - [`browser`]: headless Chromium driven through chromedriver (Debian packages).
//! - [`process`]: real example processes, killed on drop.
//! - [`redis`]: a real `redis-server` on a free loopback port.
//! - [`nats`]: a real `nats-server` on a free loopback port.
//! - [`conformance`]: the suite every cluster backend passes.
//! - [`cache_conformance`]: the suite every cache manager passes.
//! - [`hostile`]: raw attack clients (silent sockets, raw WebSocket frames) and the memory of
//!   the attacked process.
//! - [`hub`]: an in-memory cluster of several members in one process.
//! - [`members`]: cluster members as real example processes (kill -9, restart, event lines).
//! - [`netns`]: network namespaces made by a test, to partition members for real.
//! - [`reliable`]: a client that implements recovery (ordered streams, resume, resend).
//! - [`served`]: browser-test helpers (a required browser, waiting for a member to be up).
//!
//! Every wait here is bounded by a timeout; nothing sleeps to synchronise.

pub mod browser;
pub mod cache_conformance;
pub mod conformance;
pub mod hostile;
pub mod hub;
pub mod members;
pub mod nats;
pub mod netns;
pub mod process;
pub mod redis;
pub mod reliable;
pub mod served;
pub mod store_conformance;
mod ws;

pub use ws::{WsClient, WsError};

/// The default bound for waits in tests.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A loopback port that was free a moment ago, for a server a test starts (and may restart on
/// the same port).
///
/// Drawn below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), where no
/// client socket of this or another test is ever given a port: between the probe and the
/// server's bind, only another test picking ports the same way could take it, and each
/// process starts its walk at a different place (from its pid). Never returns the same port
/// twice in one process.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(32768);
    // Below 15000 sit well-known services and ports browsers refuse (10080 among them).
    const LOW: u16 = 15000;
    if ephemeral_low > LOW + 1000 {
        let span = u32::from(ephemeral_low - LOW);
        let start = (std::process::id().wrapping_mul(7919) + given.len() as u32 * 13) % span;
        for i in 0..span {
            let port = LOW + ((start + i) % span) as u16;
            if given.contains(&port) {
                continue;
            }
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.push(port);
                return port;
            }
        }
    }
    // No room below the ephemeral range: any port the kernel hands out.
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
