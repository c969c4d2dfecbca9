//! The two sides of a connection: application hooks that take their time never cost a healthy
//! client its connection (the IO side keeps reading, writing and pinging), frames are still
//! handled one at a time and in order, and the disconnection hooks are told why.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use thywill_core::protocol::{ServerFrame, close};
use thywill_core::{
    AppContext, Application, ApplicationId, Client, ConnectionId, DisconnectReason, DynApplication, Message,
};
use thywill_testkit::{TIMEOUT, WsClient};
use thywill_transport::TransportConfig;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::{Echo, Fixture};

/// Echoes every message. `{"hold": …}` first waits, in the hook, until the test opens the
/// gate; `{"panic": true}` panics. Every disconnection is recorded with its reason.
#[derive(Clone)]
struct Gated {
    gate: Arc<Semaphore>,
    /// Hooks that reached the gate so far.
    reached: watch::Sender<usize>,
    /// Connections gone, with their reasons, in order.
    gone: watch::Sender<Vec<(ConnectionId, DisconnectReason)>>,
}

impl Application for Gated {
    async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
        if message.data.get("panic").is_some() {
            panic!("the application was asked to panic");
        }
        if message.data.get("hold").is_some() {
            self.reached.send_modify(|n| *n += 1);
            if let Ok(permit) = self.gate.acquire().await {
                permit.forget();
            }
        }
        let _ = ctx.send_to_connection(&client.connection, message).await;
    }

    async fn disconnection(&self, _ctx: &AppContext, client: &Client, reason: DisconnectReason) {
        self.gone
            .send_modify(|gone| gone.push((client.connection.clone(), reason)));
    }
}

impl Gated {
    /// A node running a gated application (`gated`) and the support's `echo`.
    async fn start(config: TransportConfig) -> anyhow::Result<(Fixture, Gated)> {
        let gated = Gated {
            gate: Arc::new(Semaphore::new(0)),
            reached: watch::Sender::new(0),
            gone: watch::Sender::new(Vec::new()),
        };
        let apps: Vec<(ApplicationId, Arc<dyn DynApplication>)> = vec![
            ("gated".into(), Arc::new(gated.clone())),
            ("echo".into(), Arc::new(Echo)),
        ];
        Ok((Fixture::start_apps(config, None, apps).await?, gated))
    }

    /// Waits until `n` hooks have reached the gate.
    async fn reached(&self, n: usize) -> anyhow::Result<()> {
        let mut reached = self.reached.subscribe();
        tokio::time::timeout(TIMEOUT, reached.wait_for(|r| *r >= n)).await??;
        Ok(())
    }

    /// Lets one held hook go on.
    fn open(&self) {
        self.gate.add_permits(1);
    }

    /// The reason the disconnection hook was given for `conn` (waits for it).
    async fn reason(&self, conn: &ConnectionId) -> anyhow::Result<DisconnectReason> {
        let mut gone = self.gone.subscribe();
        let gone = tokio::time::timeout(TIMEOUT, gone.wait_for(|g| g.iter().any(|(c, _)| c == conn)))
            .await
            .map_err(|_| anyhow::anyhow!("no disconnection hook ran for {conn}"))??;
        gone.iter()
            .find(|(c, _)| c == conn)
            .map(|(_, reason)| *reason)
            .ok_or_else(|| anyhow::anyhow!("no reason for {conn}"))
    }
}

const INTERVAL: Duration = Duration::from_millis(50);
const KEEPALIVE: Duration = Duration::from_millis(250);

fn quick_keepalive() -> anyhow::Result<TransportConfig> {
    Ok(TransportConfig::default()
        .with_base_path("/t")?
        .with_keepalive(INTERVAL, KEEPALIVE)?)
}

/// Reads for `period`, as a live client does (its library answers the server's pings as it
/// reads): the server's pings counted, whether a pong carrying `pong` came back. Anything else
/// (a message, a close) fails.
async fn only_pings_for(c: &mut WsClient, period: Duration, pong: &[u8]) -> anyhow::Result<(usize, bool)> {
    let until = tokio::time::Instant::now() + period;
    let (mut pings, mut ponged) = (0, false);
    loop {
        match tokio::time::timeout_at(until, c.raw().next()).await {
            Err(_) => return Ok((pings, ponged)),
            Ok(Some(Ok(WsMessage::Ping(_)))) => pings += 1,
            Ok(Some(Ok(WsMessage::Pong(p)))) => ponged |= p.as_ref() == pong,
            Ok(other) => anyhow::bail!("unexpected while the hook is held: {other:?}"),
        }
    }
}

/// The reason given for a client the server closed, once the client is gone too (it does not
/// answer the close frame: the server would wait for that a moment).
async fn gone(c: WsClient, gated: &Gated) -> anyhow::Result<DisconnectReason> {
    let conn = c.connection.clone();
    drop(c);
    gated.reason(&conn).await
}

/// The data of the next application message.
async fn next_data(c: &mut WsClient) -> anyhow::Result<Value> {
    match c.recv().await? {
        ServerFrame::Msg { data, .. } => Ok(data),
        other => anyhow::bail!("expected a message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_hook_held_past_the_keepalive_timeout_does_not_cost_a_healthy_client_its_connection()
-> anyhow::Result<()> {
    let (fx, gated) = Gated::start(quick_keepalive()?).await?;
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    c.send("gated", json!({"hold": 0})).await?;
    gated.reached(1).await?;
    for n in 1..=3 {
        c.send("gated", json!(n)).await?;
    }
    // The hook waits (as on an unreachable store) for four keepalive timeouts; the IO side
    // still reads: it answers the client's ping and hears the pongs to its own.
    c.raw().send(WsMessage::Ping(b"there?".to_vec().into())).await?;
    let (pings, ponged) = only_pings_for(&mut c, 4 * KEEPALIVE, b"there?").await?;
    anyhow::ensure!(ponged, "the client's ping was not answered while a hook was held");
    anyhow::ensure!(pings >= 4, "the server sent {pings} pings while a hook was held");
    assert_eq!(fx.node.connection_count(), 1);
    gated.open();
    assert_eq!(next_data(&mut c).await?, json!({"hold": 0}));
    for n in 1..=3 {
        assert_eq!(next_data(&mut c).await?, json!(n), "handled in order");
    }
    c.send("gated", json!("still here")).await?;
    assert_eq!(next_data(&mut c).await?, json!("still here"));
    Ok(())
}

#[tokio::test]
async fn a_full_inbox_stops_reading_but_neither_drops_frames_nor_times_the_client_out() -> anyhow::Result<()>
{
    let (fx, gated) = Gated::start(quick_keepalive()?).await?;
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    c.send("gated", json!({"hold": 0})).await?;
    gated.reached(1).await?;
    // Far more than the inbox holds: the IO side holds one frame and reads no more (the rest
    // wait in the socket), while the client goes on answering pings.
    const SENT: u64 = 200;
    for n in 1..SENT {
        c.send("gated", json!(n)).await?;
    }
    let (pings, _) = only_pings_for(&mut c, 4 * KEEPALIVE, b"").await?;
    anyhow::ensure!(
        pings >= 4,
        "the server sent {pings} pings while its inbox was full"
    );
    assert_eq!(fx.node.connection_count(), 1);
    gated.open();
    assert_eq!(next_data(&mut c).await?, json!({"hold": 0}));
    for n in 1..SENT {
        assert_eq!(
            next_data(&mut c).await?,
            json!(n),
            "every frame handled, in order"
        );
    }
    Ok(())
}

#[tokio::test]
async fn disconnection_hooks_are_told_why() -> anyhow::Result<()> {
    let cfg = quick_keepalive()?.with_max_outbound_bytes(16 * 1024)?;
    let (fx, gated) = Gated::start(cfg).await?;

    let c = WsClient::connect(&fx.ws_url()).await?;
    let conn = c.connection.clone();
    c.close().await;
    assert_eq!(gated.reason(&conn).await?, DisconnectReason::ClosedByClient);

    // Never reads: cannot answer the server's pings.
    let silent = WsClient::connect(&fx.ws_url()).await?;
    assert_eq!(
        gated.reason(&silent.connection).await?,
        DisconnectReason::KeepaliveTimeout
    );

    // The hook queues more bytes at once than the connection's queue may hold.
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    c.send("echo", json!({"flood": 64, "size": 1024})).await?;
    assert_eq!(c.closed().await?, Some(close::SLOW_CONSUMER));
    assert_eq!(gone(c, &gated).await?, DisconnectReason::SlowConsumer);

    let mut c = WsClient::connect(&fx.ws_url()).await?;
    c.raw().send(WsMessage::Binary(vec![1, 2, 3].into())).await?;
    assert_eq!(c.closed().await?, Some(close::UNSUPPORTED_DATA));
    assert_eq!(gone(c, &gated).await?, DisconnectReason::ProtocolError);

    let mut c = WsClient::connect(&fx.ws_url()).await?;
    fx.edge.shutdown();
    assert_eq!(c.closed().await?, Some(close::GOING_AWAY));
    assert_eq!(gone(c, &gated).await?, DisconnectReason::Shutdown);
    Ok(())
}

#[tokio::test]
async fn a_rate_limited_client_is_disconnected_with_that_reason() -> anyhow::Result<()> {
    let cfg = TransportConfig::default()
        .with_base_path("/t")?
        .with_rate_limit(10, 10)?;
    let (fx, gated) = Gated::start(cfg).await?;
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    for n in 0..40 {
        if c.send("gated", json!(n)).await.is_err() {
            break;
        }
    }
    assert_eq!(c.closed().await?, Some(close::RATE_LIMITED));
    assert_eq!(gone(c, &gated).await?, DisconnectReason::RateLimited);
    Ok(())
}

#[tokio::test]
async fn a_panicking_hook_still_cleans_up_after_its_connection() -> anyhow::Result<()> {
    let (fx, gated) = Gated::start(TransportConfig::default().with_base_path("/t")?).await?;
    let mut witness = WsClient::connect(&fx.ws_url()).await?;
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    fx.until("both connected", |n| n.connection_count() == 2).await?;
    c.send("gated", json!({"panic": true})).await?;
    assert_eq!(c.closed().await?, Some(close::INTERNAL_ERROR));
    // Its disconnection hooks ran, it is forgotten, and the tracker no longer lists it.
    assert_eq!(gone(c, &gated).await?, DisconnectReason::InternalError);
    fx.until("only the witness left", |n| n.connection_count() == 1)
        .await?;
    let ctx = fx
        .node
        .context(&"gated".into())
        .ok_or_else(|| anyhow::anyhow!("no gated application"))?;
    let listed: Vec<ConnectionId> = ctx
        .connected_clients()
        .await?
        .into_values()
        .flat_map(|m| m.connections.into_keys())
        .collect();
    assert_eq!(listed, vec![witness.connection.clone()]);
    assert!(fx.edge.metrics_text().contains("thywill_panics_total 1"));
    witness.send("gated", json!("fine")).await?;
    assert_eq!(next_data(&mut witness).await?, json!("fine"));
    Ok(())
}

/// Relays every message to the channel `room` (nobody need listen), recording what it relayed
/// and whether the node took it; `{"hold": …}` first waits at the gate.
#[derive(Clone)]
struct Relay {
    gate: Arc<Semaphore>,
    reached: watch::Sender<usize>,
    relayed: watch::Sender<Vec<(Value, bool)>>,
}

impl Application for Relay {
    async fn received(&self, ctx: &AppContext, _client: &Client, message: Message) {
        if message.data.get("hold").is_some() {
            self.reached.send_modify(|n| *n += 1);
            if let Ok(permit) = self.gate.acquire().await {
                permit.forget();
            }
        }
        let data = message.data.clone();
        let taken = ctx
            .send_to_channel(&thywill_core::ChannelId::from("room"), message, &[])
            .await
            .is_ok();
        self.relayed.send_modify(|r| r.push((data, taken)));
    }
}

/// A node that begins shutting down while a client message is being processed: that message
/// (already counted in the tab's mark, so acknowledged) is still sent on, and the messages
/// still waiting in the inbox are neither processed nor acknowledged, so the client resends
/// them to the member it reconnects to. (Before, the waiting ones were counted and
/// acknowledged but their sends refused, and the one in progress was refused too: a rolling
/// restart lost strokes.)
#[tokio::test]
async fn at_shutdown_what_is_acknowledged_was_sent_and_the_rest_is_left_to_the_next_member()
-> anyhow::Result<()> {
    let relay = Relay {
        gate: Arc::new(Semaphore::new(0)),
        reached: watch::Sender::new(0),
        relayed: watch::Sender::new(Vec::new()),
    };
    let apps: Vec<(ApplicationId, Arc<dyn DynApplication>)> = vec![("relay".into(), Arc::new(relay.clone()))];
    let fx = Fixture::start_apps(TransportConfig::default().with_base_path("/t")?, None, apps).await?;
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    let msg = |id: u64, data: Value| {
        json!({"t": "msg", "app": "relay", "data": data, "_": {}, "id": id}).to_string()
    };
    c.send_text(json!({"t": "hello", "v": 1, "tab": "shutdown-tab-0001"}).to_string())
        .await?;
    c.send_text(msg(1, json!({"hold": 1}))).await?;
    let mut reached = relay.reached.subscribe();
    tokio::time::timeout(TIMEOUT, reached.wait_for(|r| *r >= 1)).await??;
    c.send_text(msg(2, json!(2))).await?;
    c.send_text(msg(3, json!(3))).await?;
    // The IO side reads in order: once it answers this ping, messages 2 and 3 are in the inbox.
    c.raw().send(WsMessage::Ping(b"read".to_vec().into())).await?;
    loop {
        match tokio::time::timeout(TIMEOUT, c.raw().next()).await? {
            Some(Ok(WsMessage::Pong(p))) if p.as_ref() == b"read" => break,
            Some(Ok(_)) => {}
            other => anyhow::bail!("no pong: {other:?}"),
        }
    }
    fx.edge.shutdown();
    relay.gate.add_permits(1);
    let mut acks = Vec::new();
    loop {
        match tokio::time::timeout(TIMEOUT, c.recv()).await? {
            Ok(ServerFrame::Ack { id }) => acks.push(id),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(
        acks.last(),
        Some(&1),
        "only the message in progress is acknowledged: {acks:?}"
    );
    assert_eq!(
        *relay.relayed.borrow(),
        [(json!({"hold": 1}), true)],
        "the message in progress is sent on; the waiting ones are not processed"
    );
    Ok(())
}

/// The node's count of running connection workers (its metrics page).
fn workers(edge: &thywill_transport::Edge) -> Option<u64> {
    let text = edge.metrics_text();
    text.lines()
        .find_map(|l| l.strip_prefix("thywill_connection_workers "))
        .and_then(|n| n.trim().parse().ok())
}

/// Waits until no connection worker runs (every worker parked or finished).
async fn parked(fx: &Fixture) -> anyhow::Result<()> {
    fx.until("every worker parked", |e| workers(e) == Some(0)).await
}

#[tokio::test]
async fn an_idle_connection_holds_no_worker_and_frames_after_a_park_are_handled_in_order()
-> anyhow::Result<()> {
    let (fx, _gated) = Gated::start(TransportConfig::default().with_base_path("/t")?).await?;
    let mut idle = WsClient::connect(&fx.ws_url()).await?;
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    fx.until("both connected", |e| e.connection_count() == 2).await?;
    // Their `connection` hooks ran; neither has sent anything: no worker task.
    parked(&fx).await?;
    for n in 0..3 {
        c.send("gated", json!(n)).await?;
    }
    for n in 0..3 {
        assert_eq!(next_data(&mut c).await?, json!(n));
    }
    // It parks again once nothing came for a while; the next frames start a worker, in order.
    parked(&fx).await?;
    for n in 3..8 {
        c.send("gated", json!(n)).await?;
    }
    for n in 3..8 {
        assert_eq!(next_data(&mut c).await?, json!(n));
    }
    parked(&fx).await?;
    // The one that never sent still works.
    idle.send("gated", json!("late")).await?;
    assert_eq!(next_data(&mut idle).await?, json!("late"));
    Ok(())
}

#[tokio::test]
async fn closed_while_its_worker_is_parked_a_connection_saves_its_mark_and_acknowledges_last()
-> anyhow::Result<()> {
    let (fx, _gated) = Gated::start(TransportConfig::default().with_base_path("/t")?).await?;
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    let msg = |id: u64| json!({"t": "msg", "app": "gated", "data": id, "_": {}, "id": id}).to_string();
    c.send_text(json!({"t": "hello", "v": 1, "tab": "parked-tab-0001"}).to_string())
        .await?;
    c.send_text(msg(1)).await?;
    c.send_text(msg(2)).await?;
    loop {
        if let ServerFrame::Ack { id: 2 } = c.recv().await? {
            break;
        }
    }
    parked(&fx).await?;
    fx.edge.shutdown();
    // A worker is started to finish: it saves the mark, and the close carries a last ack.
    let mut last = Vec::new();
    let code = loop {
        match c.recv().await {
            Ok(frame) => last.push(frame),
            Err(thywill_testkit::WsError::Closed(code)) => break code.map(|(code, _)| code),
            Err(e) => anyhow::bail!("{e}"),
        }
    };
    assert_eq!(code, Some(close::GOING_AWAY));
    assert!(
        matches!(
            last.as_slice(),
            [.., ServerFrame::Ack { id: 2 }, ServerFrame::Reconnect { .. }]
        ),
        "a last ack of the saved mark before the reconnect: {last:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_hook_that_panics_after_its_worker_parked_still_closes_with_1011() -> anyhow::Result<()> {
    let (fx, gated) = Gated::start(TransportConfig::default().with_base_path("/t")?).await?;
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    c.send("gated", json!("first")).await?;
    assert_eq!(next_data(&mut c).await?, json!("first"));
    parked(&fx).await?;
    c.send("gated", json!({"panic": true})).await?;
    assert_eq!(c.closed().await?, Some(close::INTERNAL_ERROR));
    assert_eq!(gone(c, &gated).await?, DisconnectReason::InternalError);
    fx.until("forgotten", |e| e.connection_count() == 0).await?;
    parked(&fx).await?;
    Ok(())
}
