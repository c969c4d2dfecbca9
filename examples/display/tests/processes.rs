//! Real member processes. Ghost-free tracking after a crash, over a real Redis: when a
//! member is killed (`kill -9`), every survivor drops its connections from the client tracker
//! and its sessions from presence within the failure-detection time. Members asking each
//! other for their connection counts with application tasks, over Redis and over HTTP.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use thywill::protocol::ServerFrame;
use thywill_testkit::members::{Member, all_up, is, now_ms};
use thywill_testkit::redis::RedisServer;
use thywill_testkit::{TIMEOUT, WsClient, free_port};

const DISPLAY: &str = env!("CARGO_BIN_EXE_example-display");
/// Heartbeat interval and timeout given to the members.
const INTERVAL_MS: u64 = 100;
const TIMEOUT_MS: u64 = 300;
/// Heartbeat timeout + one interval: the bound on reporting a killed member down.
const DETECTION: Duration = Duration::from_millis(TIMEOUT_MS + INTERVAL_MS);
/// Scheduling slack on a loaded 2-core machine (three debug processes, Redis, the test).
const SLACK: Duration = Duration::from_millis(400);

/// A display client that keeps the presence of the display's presence channel.
struct Watcher {
    ws: WsClient,
    present: BTreeSet<String>,
    list: Option<Value>,
}

impl Watcher {
    async fn connect(url: &str) -> anyhow::Result<Watcher> {
        Ok(Watcher {
            ws: WsClient::connect(url).await?,
            present: BTreeSet::new(),
            list: None,
        })
    }

    /// Reads messages until `done(self)` holds, within `wait`.
    async fn until(&mut self, wait: Duration, done: impl Fn(&Watcher) -> bool) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + wait;
        while !done(self) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.ws.recv_within(left).await.map_err(|e| {
                anyhow::anyhow!(
                    "{e}; presence {:?}, connection list {:?}",
                    self.present,
                    self.list
                )
            })?;
            let ServerFrame::Msg { data, .. } = frame else {
                continue;
            };
            match data["presence"].as_str() {
                Some("state") => {
                    self.present = serde_json::from_value(data["sessions"].clone())?;
                }
                Some("join") => {
                    self.present
                        .insert(data["session"].as_str().unwrap_or_default().to_owned());
                }
                Some("leave") => {
                    self.present.remove(data["session"].as_str().unwrap_or_default());
                }
                _ if data["type"] == "connectionList" => self.list = Some(data["connections"].clone()),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The connection ids a fresh client of `url` is told `member` holds, and the presence it is
/// told.
async fn fresh_view(url: &str, member: &str) -> anyhow::Result<(Vec<String>, BTreeSet<String>)> {
    let mut w = Watcher::connect(url).await?;
    let me = w.ws.connection.to_string();
    w.until(TIMEOUT, |w| w.list.is_some() && w.present.contains(&me))
        .await?;
    let list = w.list.take().context("no connection list")?;
    let ids: Vec<String> =
        serde_json::from_value(list[member].clone()).context("member missing from the list")?;
    Ok((ids, w.present))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ghost_connection_or_presence_outlives_failure_detection() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let args: Vec<String> = [
        "--cluster",
        "redis",
        "--redis-url",
        &redis.url(),
        "--cluster-members",
        "alpha,beta,gamma",
        "--redis-prefix",
        "test:display:",
        "--heartbeat-interval",
        &INTERVAL_MS.to_string(),
        "--heartbeat-timeout",
        &TIMEOUT_MS.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut members = Vec::new();
    for id in ["alpha", "beta", "gamma"] {
        members.push(Member::start(DISPLAY, id, free_port(), &args).await?);
    }
    all_up(&mut members).await?;

    let mut watchers = vec![
        Watcher::connect(&members[0].ws("/display")).await?,
        Watcher::connect(&members[1].ws("/display")).await?,
    ];
    let on_gamma = [
        WsClient::connect(&members[2].ws("/display")).await?,
        WsClient::connect(&members[2].ws("/display")).await?,
    ];
    // Without session cookies every connection is its own session.
    let ghosts: Vec<String> = on_gamma.iter().map(|c| c.connection.to_string()).collect();
    for w in &mut watchers {
        w.until(TIMEOUT, |w| ghosts.iter().all(|g| w.present.contains(g)))
            .await?;
    }
    // Every survivor's tracker has them.
    for m in &members[..2] {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let (ids, _) = fresh_view(&m.ws("/display"), "gamma").await?;
            if ghosts.iter().all(|g| ids.contains(g)) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{}'s tracker lacks gamma's connections: {ids:?}", m.id);
            }
        }
    }

    let cursors: Vec<usize> = members.iter().map(Member::cursor).collect();
    let killed_at = members[2].kill();
    for (w, m) in watchers.iter_mut().zip(&members) {
        w.until(TIMEOUT, |w| !ghosts.iter().any(|g| w.present.contains(g)))
            .await?;
        let took = Duration::from_millis(now_ms().saturating_sub(killed_at));
        eprintln!("{}: gamma's sessions left presence {took:?} after the kill", m.id);
        anyhow::ensure!(
            took <= DETECTION + SLACK,
            "{}: gamma's sessions left presence after {took:?} (bound {DETECTION:?} + slack {SLACK:?})",
            m.id
        );
    }
    for (i, m) in members[..2].iter_mut().enumerate() {
        let down = m
            .wait_event(cursors[i], TIMEOUT, |v| is(v, "member_down", "gamma"))
            .await?;
        let took = down["at_ms"]
            .as_u64()
            .unwrap_or(u64::MAX)
            .saturating_sub(killed_at);
        eprintln!("{} reported gamma down after {took} ms", m.id);
        // Nothing of gamma is left in the survivor's tracker or presence.
        let (ids, present) = fresh_view(&m.ws("/display"), "gamma").await?;
        anyhow::ensure!(ids.is_empty(), "{}: ghost connections {ids:?}", m.id);
        anyhow::ensure!(
            !ghosts.iter().any(|g| present.contains(g)),
            "{}: ghost presence {present:?}",
            m.id
        );
    }
    for m in &mut members[..2] {
        anyhow::ensure!(m.proc.is_running(), "{} exited", m.id);
    }
    Ok(())
}

/// The connection counts a display client is told, by (asker, asked member): the latest
/// answer (`connections`) or refusal (`error`) of each.
struct Counts {
    ws: WsClient,
    latest: std::collections::BTreeMap<(String, String), Value>,
}

impl Counts {
    /// Reads messages until `done(latest)` holds, within `wait`.
    async fn until(
        &mut self,
        wait: Duration,
        what: &str,
        done: impl Fn(&std::collections::BTreeMap<(String, String), Value>) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + wait;
        while !done(&self.latest) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self
                .ws
                .recv_within(left)
                .await
                .map_err(|e| anyhow::anyhow!("{e} waiting for {what}; counts {:?}", self.latest))?;
            let ServerFrame::Msg { data, .. } = frame else {
                continue;
            };
            if data["type"] == "connectionCount" {
                let key = (
                    data["clusterMemberId"].as_str().unwrap_or_default().to_owned(),
                    data["member"].as_str().unwrap_or_default().to_owned(),
                );
                self.latest.insert(key, data);
            }
        }
        Ok(())
    }
}

/// Whether `asker` was last told that `member` holds `n` connections.
fn holds(
    latest: &std::collections::BTreeMap<(String, String), Value>,
    asker: &str,
    member: &str,
    n: u64,
) -> bool {
    latest
        .get(&(asker.to_owned(), member.to_owned()))
        .is_some_and(|d| d["connections"].as_u64() == Some(n))
}

/// Members ask each other for their connection counts with application tasks, around the
/// ring (alpha asks beta, beta asks gamma, gamma asks alpha), and every page is told the
/// answers; a member that went down cannot be asked, and its asker says so.
async fn members_ask_each_other(args: Vec<String>) -> anyhow::Result<()> {
    let mut members = Vec::new();
    for id in ["alpha", "beta", "gamma"] {
        members.push(Member::start(DISPLAY, id, free_port(), &args).await?);
    }
    all_up(&mut members).await?;
    let mut watcher = Counts {
        ws: WsClient::connect(&members[0].ws("/display")).await?,
        latest: Default::default(),
    };
    let on_beta = [
        WsClient::connect(&members[1].ws("/display")).await?,
        WsClient::connect(&members[1].ws("/display")).await?,
    ];
    // The watcher is alpha's one connection; beta holds two, gamma none.
    watcher
        .until(TIMEOUT, "the first counts", |l| {
            holds(l, "alpha", "beta", 2) && holds(l, "beta", "gamma", 0) && holds(l, "gamma", "alpha", 1)
        })
        .await?;
    let [one, two] = on_beta;
    one.close().await;
    watcher
        .until(TIMEOUT, "beta's count after a close", |l| {
            holds(l, "alpha", "beta", 1)
        })
        .await?;

    // gamma dies: beta can no longer ask it, and tells the pages why.
    members[2].kill();
    watcher
        .until(TIMEOUT, "beta's refused ask", |l| {
            l.get(&("beta".to_owned(), "gamma".to_owned()))
                .is_some_and(|d| d["error"].as_str().is_some_and(|e| e.contains("gamma")))
        })
        .await?;
    // The others go on.
    let _three = WsClient::connect(&members[1].ws("/display")).await?;
    watcher
        .until(TIMEOUT, "beta's count after a new connection", |l| {
            holds(l, "alpha", "beta", 2)
        })
        .await?;
    drop(two);
    for m in &mut members[..2] {
        anyhow::ensure!(m.proc.is_running(), "{} exited", m.id);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_ask_each_other_for_connection_counts_over_redis() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let args: Vec<String> = [
        "--cluster",
        "redis",
        "--redis-url",
        &redis.url(),
        "--cluster-members",
        "alpha,beta,gamma",
        "--redis-prefix",
        "test:display-counts:",
        "--heartbeat-interval",
        &INTERVAL_MS.to_string(),
        "--heartbeat-timeout",
        &TIMEOUT_MS.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    members_ask_each_other(args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_ask_each_other_for_connection_counts_over_http() -> anyhow::Result<()> {
    let list: Vec<String> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|id| format!("{id}=127.0.0.1:{}", free_port()))
        .collect();
    let args: Vec<String> = [
        "--cluster",
        "http",
        "--cluster-members",
        &list.join(","),
        "--cluster-secret",
        "a display counts test secret, long enough",
        "--heartbeat-interval",
        &INTERVAL_MS.to_string(),
        "--heartbeat-timeout",
        &TIMEOUT_MS.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    members_ask_each_other(args).await
}
