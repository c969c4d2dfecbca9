//! Network namespaces made by a test, to partition cluster members for real (`ip netns`, veth
//! pairs, a bridge; Linux, root).
//!
//! [`Net::create`] gives every member its own namespace joined to the test's (root) namespace
//! by two links:
//!
//! - a **client link**, a veth pair with a /30 of `10.214.N.0/24`: the test's clients (in the
//!   root namespace) reach the member's web port at [`Host::client_addr`];
//! - a **cluster link**, a veth pair whose root end is enslaved to one bridge of the test,
//!   which has [`Net::hub_addr`] in `10.213.N.0/24`: Redis ([`HubRedis`]) listens there and the
//!   members reach each other at [`Host::cluster_addr`] (bridged, no IP forwarding needed).
//!
//! [`Net::cut`] sets a member's cluster link down: it still serves its clients, but reaches
//! neither Redis nor the other members (packets are dropped, connections are not reset: a
//! partition, not a crash) until [`Net::heal`]. Members run in their namespace through
//! [`Host::wrapper`] (`ip netns exec NS`, see [`crate::members::Member::start_wrapped`]).
//!
//! Names carry the test process's id (`tw-<pid>-<k>-<member>`, links `tw<pid><k>…`), so
//! parallel runs do not collide; [`Net::create`] first removes what dead runs left behind, and
//! dropping the [`Net`] (on panic too) deletes its namespaces, links and bridge. Only
//! `10.213.N.0/24` and `10.214.N.0/24` are used, with `N` chosen so that the root namespace
//! has no route into them yet.
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! use thywill_testkit::netns::{Net, HubRedis};
//! if let Err(why) = Net::available() {
//!     eprintln!("skipped: {why}");
//!     return Ok(());
//! }
//! let net = Net::create(&["alpha", "beta"])?;
//! let redis = HubRedis::start(net.hub_addr()).await?;
//! let wrapper = net.host("alpha")?.wrapper();
//! // Member::start_wrapped(&wrapper, program, "alpha", 8080, &args) ...
//! net.cut("alpha")?;
//! net.heal("alpha")?;
//! # let _ = (redis, wrapper); Ok(()) }
//! ```

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `ip` binary (`/usr/sbin/ip` or `/sbin/ip`, else from `PATH`).
pub fn ip_binary() -> String {
    for p in ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"] {
        if std::path::Path::new(p).is_file() {
            return p.to_owned();
        }
    }
    "ip".to_owned()
}

/// Runs `ip args` and returns its stdout; errs with its stderr when it fails.
fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(ip_binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the process `pid` exists.
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid in a name `tw-<pid>-…` (namespaces) or `tw<pid><letter>…` (links), if it is one of
/// ours.
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("tw")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let after = rest[digits.len()..].chars().next()?;
    if digits.is_empty() || !(after == '-' || after.is_ascii_lowercase()) {
        return None;
    }
    digits.parse().ok()
}

/// Deletes the namespaces and links of test processes that are gone.
pub fn clean_stale() {
    if let Ok(list) = ip(&["netns", "list"]) {
        for line in list.lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            if name.starts_with("tw-") && owner(name).is_some_and(|p| !alive(p)) {
                let _ = ip(&["netns", "delete", name]);
            }
        }
    }
    if let Ok(list) = ip(&["-o", "link", "show"]) {
        for line in list.lines() {
            // "12: tw123ak0r@if11: <...> ..."
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or_default();
            if owner(name).is_some_and(|p| !alive(p)) {
                let _ = ip(&["link", "delete", name]);
            }
        }
    }
}

/// A member's namespace and its two links.
#[derive(Debug, Clone)]
pub struct Host {
    /// The member id.
    pub id: String,
    /// The namespace's name.
    pub ns: String,
    /// The member's address on its client link (the test's clients connect here).
    pub client_addr: Ipv4Addr,
    /// The member's address on its cluster link (Redis and the other members are reached from
    /// here; the other members reach it here).
    pub cluster_addr: Ipv4Addr,
    /// The root end of the client link.
    pub client_link: String,
    /// The root end of the cluster link (set down by [`Net::cut`]).
    pub cluster_link: String,
}

impl Host {
    /// The command prefix that runs a program in this namespace: `ip netns exec NS`.
    pub fn wrapper(&self) -> Vec<String> {
        vec![ip_binary(), "netns".into(), "exec".into(), self.ns.clone()]
    }
}

/// The namespaces of one test (see the module docs); deleted on drop.
#[derive(Debug)]
pub struct Net {
    hosts: Vec<Host>,
    bridge: String,
    hub: Ipv4Addr,
}

impl Net {
    /// Why namespaces cannot be made here (not root, no `ip`, `ip netns add` refused), or `Ok`.
    pub fn available() -> Result<(), String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        if uid != "0" {
            return Err(format!("network namespaces need root (uid {uid:?})"));
        }
        if ip(&["-V"]).is_err() {
            return Err("the `ip` command (iproute2) is missing".into());
        }
        let probe = format!("tw-{}-probe", std::process::id());
        ip(&["netns", "add", &probe]).map_err(|e| format!("cannot create a network namespace: {e}"))?;
        let _ = ip(&["netns", "delete", &probe]);
        Ok(())
    }

    /// Makes a namespace per member (`ids`, at most 60), with its client and cluster links,
    /// and the bridge; removes first what dead test runs left.
    pub fn create(ids: &[&str]) -> anyhow::Result<Net> {
        if ids.is_empty() || ids.len() > 60 {
            bail!("1 to 60 members, not {}", ids.len());
        }
        clean_stale();
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let k = COUNT.fetch_add(1, Ordering::Relaxed);
        let letter = char::from(b'a' + (k % 26) as u8);
        let pid = std::process::id();
        let tag = format!("tw{pid}{letter}");
        let n = free_subnet(pid.wrapping_mul(7).wrapping_add(k))?;
        let hub = Ipv4Addr::new(10, 213, n, 1);
        let mut net = Net {
            hosts: Vec::new(),
            bridge: format!("{tag}br"),
            hub,
        };
        // From here on, a failure drops `net`, which deletes what was made.
        ip(&["link", "add", &net.bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{hub}/24"), "dev", &net.bridge])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        for (i, id) in ids.iter().enumerate() {
            let i8 = i as u8;
            let host = Host {
                id: (*id).to_owned(),
                ns: format!("tw-{pid}-{letter}-{id}"),
                client_addr: Ipv4Addr::new(10, 214, n, 4 * i8 + 2),
                cluster_addr: Ipv4Addr::new(10, 213, n, i8 + 2),
                client_link: format!("{tag}c{i}r"),
                cluster_link: format!("{tag}k{i}r"),
            };
            ip(&["netns", "add", &host.ns])?;
            net.hosts.push(host.clone());
            ip(&["-n", &host.ns, "link", "set", "lo", "up"])?;
            // The cluster link: root end on the bridge.
            let inner = format!("{tag}k{i}n");
            ip(&[
                "link",
                "add",
                &host.cluster_link,
                "type",
                "veth",
                "peer",
                "name",
                &inner,
            ])?;
            ip(&["link", "set", &inner, "netns", &host.ns])?;
            ip(&["link", "set", &host.cluster_link, "master", &net.bridge, "up"])?;
            ip(&[
                "-n",
                &host.ns,
                "addr",
                "add",
                &format!("{}/24", host.cluster_addr),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &host.ns, "link", "set", &inner, "up"])?;
            // The client link: a /30 between the root namespace and the member.
            let inner = format!("{tag}c{i}n");
            let root_end = Ipv4Addr::new(10, 214, n, 4 * i8 + 1);
            ip(&[
                "link",
                "add",
                &host.client_link,
                "type",
                "veth",
                "peer",
                "name",
                &inner,
            ])?;
            ip(&["link", "set", &inner, "netns", &host.ns])?;
            ip(&["addr", "add", &format!("{root_end}/30"), "dev", &host.client_link])?;
            ip(&["link", "set", &host.client_link, "up"])?;
            ip(&[
                "-n",
                &host.ns,
                "addr",
                "add",
                &format!("{}/30", host.client_addr),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &host.ns, "link", "set", &inner, "up"])?;
        }
        Ok(net)
    }

    /// The bridge's address in the root namespace: where [`HubRedis`] listens.
    pub fn hub_addr(&self) -> Ipv4Addr {
        self.hub
    }

    /// The member's namespace.
    pub fn host(&self, id: &str) -> anyhow::Result<&Host> {
        self.hosts
            .iter()
            .find(|h| h.id == id)
            .with_context(|| format!("no namespace for {id}"))
    }

    /// Every member's namespace, in the order given to [`Net::create`].
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Sets the member's cluster link down: it reaches neither Redis nor the other members.
    pub fn cut(&self, id: &str) -> anyhow::Result<()> {
        ip(&["link", "set", &self.host(id)?.cluster_link, "down"])?;
        Ok(())
    }

    /// Sets the member's cluster link up again.
    pub fn heal(&self, id: &str) -> anyhow::Result<()> {
        ip(&["link", "set", &self.host(id)?.cluster_link, "up"])?;
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends in it, and so their peers.
        for h in &self.hosts {
            let _ = ip(&["netns", "delete", &h.ns]);
            let _ = ip(&["link", "delete", &h.cluster_link]);
            let _ = ip(&["link", "delete", &h.client_link]);
        }
        let _ = ip(&["link", "delete", &self.bridge]);
    }
}

/// A third octet `N` such that the root namespace has no address or route in `10.213.N.0/24`
/// or `10.214.N.0/24`, tried from `seed`.
fn free_subnet(seed: u32) -> anyhow::Result<u8> {
    let routes = ip(&["-4", "route", "show", "table", "all"])? + &ip(&["-4", "-o", "addr", "show"])?;
    for t in 0..250u32 {
        let n = ((seed.wrapping_add(t)) % 250) as u8;
        let a = format!("10.213.{n}.");
        let b = format!("10.214.{n}.");
        if !routes.contains(&a) && !routes.contains(&b) {
            return Ok(n);
        }
    }
    bail!("no free 10.213.N.0/24 and 10.214.N.0/24")
}

/// A `redis-server` listening on an address of the test's namespaces (such as
/// [`Net::hub_addr`]), no persistence, killed on drop.
#[derive(Debug)]
pub struct HubRedis {
    addr: Ipv4Addr,
    port: u16,
    child: Child,
}

impl HubRedis {
    /// Starts a server on `addr` and a free port and waits until it answers `PING`.
    pub async fn start(addr: Ipv4Addr) -> anyhow::Result<HubRedis> {
        let port = crate::free_port();
        let child = Command::new(crate::redis::redis_server_binary())
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                &addr.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                // Bound to the test's own bridge only; protected mode would refuse every
                // client that is not on loopback.
                "--protected-mode",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (install it: scripts/install-test-deps.sh)")?;
        let mut s = HubRedis { addr, port, child };
        let deadline = tokio::time::Instant::now() + crate::TIMEOUT;
        while !s.ping().await {
            if let Ok(Some(status)) = s.child.try_wait() {
                bail!("redis-server on {addr}:{port} exited at start ({status})");
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("redis-server on {addr}:{port} did not answer PING");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(s)
    }

    /// Whether the server answers `PING` now (bounded by one second).
    pub async fn ping(&self) -> bool {
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect((self.addr, self.port))
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

    /// `redis://<addr>:<port>`.
    pub fn url(&self) -> String {
        format!("redis://{}:{}", self.addr, self.port)
    }
}

impl Drop for HubRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_of_this_module_have_an_owner() {
        assert_eq!(owner("tw-123-a-alpha"), Some(123));
        assert_eq!(owner("tw123ak0r"), Some(123));
        assert_eq!(owner("tw123abr"), Some(123));
        assert_eq!(owner("twitter"), None);
        assert_eq!(owner("tw-probe"), None);
        assert_eq!(owner("tw12"), None);
        assert_eq!(owner("eth0"), None);
    }
}
