//! Hostile clients against a real member (the `example-draw` binary as a process, one member,
//! no Redis): each attack asserts the documented close code or refusal, that an ordinary client
//! is still served afterwards (connect, hello, send a stroke, receive it), and that the
//! member's peak resident memory (`VmHWM`) stays under [`MEMORY_BOUND_MIB`].
//!
//! Every test prints its figures (memory, counts, durations). A watchdog kills a member whose
//! memory passes [`MEMORY_CAP_MIB`], so a bound that does not hold fails the test instead of
//! exhausting the (shared) machine.
//!
//! A client that names a stream position the member cannot continue from (offset 2^64-1, a
//! bogus epoch) may be told `continuity_lost` and then get the stream from where it continues,
//! as `docs/PROTOCOL.md` says; anything else, a panic or a reset is a failure.
//!
//! Each member is configured through the `[limits]` (and `[replay]`, `[session]`) keys of its
//! TOML file.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use thywill_testkit::WsClient;
use thywill_testkit::hostile::{
    self, Ending, Frame, MemoryWatch, Opened, RawWs, ServerFrame, Target, Watched, handshake, hello,
    round_trip, round_trip_with,
};
use thywill_testkit::reliable::now_us;
use thywill_testkit::{TIMEOUT, WsError};
use tokio::time::Instant;

const DRAW: &str = env!("CARGO_BIN_EXE_example-draw");
const BASE: &str = "/draw";
const APP: &str = "draw";
/// The member's peak resident memory must stay below this.
const MEMORY_BOUND_MIB: f64 = 256.0;
/// The watchdog kills a member whose resident memory passes this.
const MEMORY_CAP_MIB: u64 = 640;
/// The handshake timeout the tests configure.
const HANDSHAKE_MS: u64 = 2_000;
/// Slack on top of a configured timeout before a socket must be closed.
const SLACK: Duration = Duration::from_millis(1_500);
/// Keepalive of the tests that need non-readers closed.
const KEEPALIVE: &str = "keepalive_interval_ms = 500\nkeepalive_timeout_ms = 2000\n";
/// The keepalive timeout in [`KEEPALIVE`].
const KEEPALIVE_TIMEOUT: Duration = Duration::from_millis(2_000);
/// How long closing a connection may take after its reason (the close frame's own bound).
const CLOSING: Duration = Duration::from_secs(2);

/// A valid stroke numbered `n`, stamped with the send time, padded to about `pad` bytes.
fn stroke(n: u64, pad: usize) -> Value {
    let mut v = json!({
        "segments": [{"x": (n % 500) as f64, "y": 1.0}, {"x": 2.0, "y": 3.0}],
        "n": n,
        "sent_us": now_us(),
    });
    if pad > 0 {
        v["pad"] = Value::from("x".repeat(pad));
    }
    v
}

/// A `msg` frame to Draw with a client message id.
fn msg_with_id(id: u64, data: Value) -> String {
    json!({"t": "msg", "app": APP, "data": data, "id": id}).to_string()
}

/// Starts Draw with `config` and a memory watchdog.
async fn start(config: &str) -> anyhow::Result<(Target, MemoryWatch)> {
    let target = Target::start(DRAW, BASE, config).await?;
    let watch = MemoryWatch::start(target.pid(), MEMORY_CAP_MIB);
    println!(
        "member {} at {}, VmHWM at start {:.1} MiB",
        target.pid(),
        target.addr,
        target.memory()?.hwm_mib()
    );
    Ok((target, watch))
}

/// An ordinary client is served: a stroke from one client reaches another.
async fn served(target: &Target, when: &str) -> anyhow::Result<Duration> {
    let took = round_trip(&target.ws_url(), APP, stroke(0, 0))
        .await
        .with_context(|| format!("an ordinary client was not served {when}"))?;
    println!("ordinary client served {when}: stroke delivered in {took:?}");
    Ok(took)
}

/// Prints the memory seen and checks it against the bound.
fn check_memory(watched: Watched, what: &str) -> anyhow::Result<()> {
    println!(
        "{what}: member VmHWM {:.1} MiB (bound {MEMORY_BOUND_MIB} MiB){}",
        watched.peak_mib(),
        if watched.killed {
            ", killed by the watchdog"
        } else {
            ""
        }
    );
    ensure!(
        !watched.killed && watched.peak_mib() < MEMORY_BOUND_MIB,
        "{what}: member VmHWM {:.1} MiB, bound {MEMORY_BOUND_MIB} MiB",
        watched.peak_mib()
    );
    Ok(())
}

/// Serves an ordinary client while the member is holding `sockets`, and checks that the member
/// closes every one within `within` of its last byte.
async fn attack_closed_within(
    target: &Target,
    what: &str,
    sockets: Vec<Opened>,
    within: Duration,
) -> anyhow::Result<()> {
    let n = sockets.len();
    let started = Instant::now();
    let (closing, during) = tokio::join!(
        hostile::wait_closed(sockets, within),
        served(target, "during the attack")
    );
    println!(
        "{what}: {n} sockets, {} closed by the member (slowest after {:?}, {} bytes answered), {} still open after {within:?}; checked in {:?}",
        closing.closed,
        closing.slowest,
        closing.bytes,
        closing.open,
        started.elapsed()
    );
    during?;
    ensure!(
        closing.open == 0,
        "{what}: {} of {n} sockets still open {within:?} after their last byte",
        closing.open
    );
    Ok(())
}

// 1. Silent TCP -------------------------------------------------------------------------------

#[tokio::test]
async fn silent_sockets_are_closed_after_the_handshake_timeout() -> anyhow::Result<()> {
    let (mut target, watch) = start(&format!("[limits]\nhandshake_timeout_ms = {HANDSHAKE_MS}\n")).await?;
    let n = hostile::sockets_that_fit(2_000);
    let opened = Instant::now();
    let silent = hostile::open_silent(target.addr, n).await?;
    println!("opened {n} silent sockets in {:?}", opened.elapsed());
    let within = Duration::from_millis(HANDSHAKE_MS) + SLACK;
    attack_closed_within(&target, "silent sockets", silent, within).await?;
    served(&target, "after the attack").await?;
    check_memory(watch.seen(), "silent sockets")?;
    target.check_sound()
}

#[tokio::test]
async fn sockets_beyond_max_sockets_are_closed_at_once() -> anyhow::Result<()> {
    let (mut target, watch) = start(&format!(
        "[limits]\nhandshake_timeout_ms = {HANDSHAKE_MS}\nmax_sockets = 500\n"
    ))
    .await?;
    let held = hostile::open_silent(target.addr, 500).await?;
    let excess = hostile::open_silent(target.addr, 100).await?;
    let refused = hostile::wait_closed(excess, Duration::from_secs(1)).await;
    println!(
        "sockets 501..600: {} closed at once (slowest {:?}), {} still open after 1 s",
        refused.closed, refused.slowest, refused.open
    );
    ensure!(
        refused.open == 0,
        "{} sockets beyond max_sockets = 500 were not closed within 1 s",
        refused.open
    );
    let within = Duration::from_millis(HANDSHAKE_MS) + SLACK;
    let closing = hostile::wait_closed(held, within).await;
    println!(
        "the 500 silent sockets: {} closed (slowest {:?}), {} open",
        closing.closed, closing.slowest, closing.open
    );
    ensure!(closing.open == 0, "{} held sockets still open", closing.open);
    served(&target, "after the held sockets were closed").await?;
    check_memory(watch.seen(), "max_sockets")?;
    target.check_sound()
}

// 2. Half-open requests ------------------------------------------------------------------------

#[tokio::test]
async fn a_partial_request_line_is_closed_after_the_handshake_timeout() -> anyhow::Result<()> {
    let (mut target, watch) = start(&format!("[limits]\nhandshake_timeout_ms = {HANDSHAKE_MS}\n")).await?;
    let sockets = hostile::open_sending(target.addr, 200, b"GET /draw/ws HTTP/1.").await?;
    let within = Duration::from_millis(HANDSHAKE_MS) + SLACK;
    attack_closed_within(&target, "partial request lines", sockets, within).await?;
    served(&target, "after the attack").await?;
    check_memory(watch.seen(), "partial request lines")?;
    target.check_sound()
}

#[tokio::test]
async fn a_partial_http2_preface_is_closed_after_the_handshake_timeout() -> anyhow::Result<()> {
    let (mut target, watch) = start(&format!("[limits]\nhandshake_timeout_ms = {HANDSHAKE_MS}\n")).await?;
    let sockets = hostile::open_sending(target.addr, 200, &hostile::H2C_PREFACE[..16]).await?;
    let within = Duration::from_millis(HANDSHAKE_MS) + SLACK;
    attack_closed_within(&target, "partial HTTP/2 prefaces", sockets, within).await?;
    served(&target, "after the attack").await?;
    check_memory(watch.seen(), "partial HTTP/2 prefaces")?;
    target.check_sound()
}

#[tokio::test]
async fn an_idle_h2c_connection_is_closed_after_the_idle_timeout() -> anyhow::Result<()> {
    let idle_ms = 2_000;
    let (mut target, watch) = start(&format!(
        "[limits]\nhandshake_timeout_ms = {HANDSHAKE_MS}\nidle_timeout_ms = {idle_ms}\n"
    ))
    .await?;
    let preface = hostile::h2c_preface_with_settings();
    let sockets = hostile::open_sending(target.addr, 200, &preface).await?;
    let within = Duration::from_millis(idle_ms) + SLACK;
    attack_closed_within(&target, "idle h2c connections", sockets, within).await?;
    served(&target, "after the attack").await?;
    check_memory(watch.seen(), "idle h2c connections")?;
    target.check_sound()
}

// 3. Memory in bytes ---------------------------------------------------------------------------

/// Opens `n` WebSocket subscribers with tiny receive buffers that say `hello` and never read.
async fn non_readers(target: &Target, n: usize, hello_frame: &str) -> anyhow::Result<Vec<RawWs>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let h = handshake(target.addr, &target.ws_path(), &[], Some(4096))
            .await
            .with_context(|| format!("non-reader {i}"))?;
        let mut ws =
            h.ws.with_context(|| format!("non-reader {i}: handshake answered {}", h.status))?;
        ws.send_text(hello_frame).await?;
        out.push(ws);
    }
    Ok(out)
}

/// Keeps non-readers alive by writing unsolicited pongs every 300 ms (so that only their not
/// reading can get them closed) until `stop`; returns them with the time each first failed to
/// write (closed by the member), from `since`.
fn heartbeat(
    mut sockets: Vec<RawWs>,
    since: Instant,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<(Vec<RawWs>, Vec<Option<Duration>>)> {
    tokio::spawn(async move {
        let pong = Frame::pong().encode();
        let mut failed: Vec<Option<Duration>> = vec![None; sockets.len()];
        while !*stop.borrow() {
            for (ws, failed) in sockets.iter_mut().zip(failed.iter_mut()) {
                if failed.is_none() && ws.try_send_bytes(&pong, Duration::from_millis(5)).await.is_err() {
                    *failed = Some(since.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        (sockets, failed)
    })
}

/// Reads every non-reader until the member's close: how many reached EOF, reset or a close
/// frame within `wait`, and how many were still open.
async fn closed_non_readers(sockets: Vec<RawWs>, wait: Duration) -> (usize, usize) {
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { ws.wait_close(wait).await }))
        .collect();
    let (mut closed, mut open) = (0, 0);
    for t in tasks {
        match t.await {
            Ok(Ending::Open) | Err(_) => open += 1,
            Ok(_) => closed += 1,
        }
    }
    (closed, open)
}

/// What an ordinary subscriber saw of the strokes: count, worst latency, numbers out of order.
#[derive(Debug, Default)]
struct Observed {
    strokes: u64,
    worst: Duration,
    disorder: u64,
    ended: Option<String>,
}

/// An ordinary subscriber that reads strokes until `stop`.
fn observe(mut c: WsClient, stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<Observed> {
    tokio::spawn(async move {
        let mut o = Observed::default();
        let mut last = None;
        while !*stop.borrow() {
            match c.recv_within(Duration::from_millis(200)).await {
                Ok(ServerFrame::Msg { data, .. }) => {
                    let (Some(n), Some(sent)) = (data["n"].as_u64(), data["sent_us"].as_u64()) else {
                        continue;
                    };
                    o.strokes += 1;
                    o.worst = o.worst.max(Duration::from_micros(now_us().saturating_sub(sent)));
                    if last.is_some_and(|l| n <= l) {
                        o.disorder += 1;
                    }
                    last = Some(n);
                }
                Ok(_) | Err(WsError::Timeout) => {}
                Err(e) => {
                    o.ended = Some(e.to_string());
                    break;
                }
            }
        }
        o
    })
}

/// Sends `count` strokes of `pad` bytes (or until `until`), at most `per_sec` a second,
/// reading (and dropping) whatever the member sends back. Returns how many were sent and the
/// stream position of the last `skip` frame seen (epoch, offset).
async fn send_strokes(
    sender: &mut WsClient,
    count: u64,
    pad: usize,
    per_sec: u64,
    until: Duration,
) -> anyhow::Result<(u64, Option<(String, String, u64)>)> {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_sec));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_skip = None;
    let mut sent = 0;
    while sent < count && started.elapsed() < until {
        tick.tick().await;
        let text = json!({"t": "msg", "app": APP, "data": stroke(sent + 1, pad)}).to_string();
        tokio::time::timeout(Duration::from_secs(5), sender.send_text(text))
            .await
            .context("the member stopped reading the sender")?
            .map_err(|e| anyhow::anyhow!("send: {e}"))?;
        sent += 1;
        drain(sender, &mut last_skip)?;
    }
    Ok((sent, last_skip))
}

/// Reads (and drops) the frames that are ready, keeping the position of the last `skip`.
fn drain(sender: &mut WsClient, last_skip: &mut Option<(String, String, u64)>) -> anyhow::Result<()> {
    while let Some(f) = sender.recv_ready() {
        match f {
            Ok(ServerFrame::Skip { stream, epoch, off }) => *last_skip = Some((stream, epoch, off)),
            Ok(_) => {}
            Err(e) => bail!("the sender was cut off: {e}"),
        }
    }
    Ok(())
}

// Two workers: the ordinary subscriber must answer the member's pings (every 500 ms) while a
// thousand heartbeats and the sender share this process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_that_never_read_cost_bounded_bytes_and_are_closed() -> anyhow::Result<()> {
    let (mut target, watch) = start(&format!("[limits]\n{KEEPALIVE}")).await?;
    let n = hostile::sockets_that_fit(1_000);
    let opened = Instant::now();
    let readers = non_readers(&target, n, &hello(None, json!({}))).await?;
    println!("{n} non-reading subscribers connected in {:?}", opened.elapsed());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let attack = Instant::now();
    let beats = heartbeat(readers, attack, stop.clone());

    let mut observer = WsClient::connect(&target.ws_url())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    observer
        .send_text(hello(None, json!({})))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (observer_stop_tx, observer_stop) = tokio::sync::watch::channel(false);
    let observed = observe(observer, observer_stop);
    let mut sender = WsClient::connect(&target.ws_url())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Under the default rate limit (200 frames a second).
    let sending = send_strokes(&mut sender, u64::MAX, 60 * 1024, 150, Duration::from_secs(10)).await;
    let sent_for = attack.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = observer_stop_tx.send(true);
    let observed = observed.await?;
    let during = watch.seen();
    println!(
        "sent {:?} strokes of 60 KiB in {sent_for:?}; the ordinary subscriber got {} (worst latency {:?}, {} out of order, ended: {:?}); VmHWM {:.1} MiB",
        sending.as_ref().map(|s| s.0),
        observed.strokes,
        observed.worst,
        observed.disorder,
        observed.ended,
        during.peak_mib()
    );
    // Non-readers must be closed within the keepalive timeout of stalling (and the closing
    // time): by the end of sending plus that, at the latest.
    tokio::time::sleep(KEEPALIVE_TIMEOUT + CLOSING + SLACK).await;
    let _ = stop_tx.send(true);
    let (readers, failed) = beats.await?;
    let mut failed_at: Vec<Duration> = failed.iter().flatten().copied().collect();
    failed_at.sort();
    let (closed, open) = closed_non_readers(readers, Duration::from_secs(3)).await;
    println!(
        "non-readers: {closed} closed, {open} open {:?} after sending ended; writes to {} failed (median at {:?}, last at {:?} after the attack began){}",
        KEEPALIVE_TIMEOUT + CLOSING + SLACK,
        failed_at.len(),
        failed_at.get(failed_at.len() / 2),
        failed_at.last(),
        if watch.seen().killed {
            " (the member was killed by the watchdog)"
        } else {
            ""
        }
    );
    check_memory(watch.seen(), "1,000 non-readers and 60 KiB strokes")?;
    let (sent, _) = sending?;
    ensure!(open == 0, "{open} of {n} non-reading subscribers were not closed");
    ensure!(
        observed.ended.is_none() && observed.disorder == 0,
        "the ordinary subscriber: {observed:?}"
    );
    ensure!(
        observed.strokes * 10 >= sent * 9,
        "the ordinary subscriber got {} of {sent} strokes",
        observed.strokes
    );
    // Served, if slowly: the member writes 60 KiB to a thousand sockets per stroke until the
    // non-readers' buffers fill and they are cut off, on two cores it shares with this test.
    ensure!(
        observed.worst < Duration::from_secs(10),
        "the ordinary subscriber waited up to {:?} for a stroke",
        observed.worst
    );
    served(&target, "after the attack").await?;
    target.check_sound()
}

#[tokio::test]
async fn replays_of_a_full_history_to_non_readers_cost_bounded_bytes() -> anyhow::Result<()> {
    const STROKES: u64 = 3_000;
    const PAD: usize = 32 * 1024;
    let (mut target, watch) = start(&format!(
        "[limits]\n{KEEPALIVE}rate_per_sec = 5000\nrate_burst = 5000\n[replay]\nmax_entries = {STROKES}\n"
    ))
    .await?;
    let mut sender = WsClient::connect(&target.ws_url())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    let (sent, mut last) = send_strokes(&mut sender, STROKES, PAD, 2_000, Duration::from_secs(60)).await?;
    // The sender's own strokes come back as `skip` frames: the last one says all are logged.
    let deadline = Instant::now() + TIMEOUT;
    while last.as_ref().is_none_or(|(_, _, off)| *off < sent) && Instant::now() < deadline {
        match sender.recv_within(deadline - Instant::now()).await {
            Ok(ServerFrame::Skip { stream, epoch, off }) => last = Some((stream, epoch, off)),
            Ok(_) => {}
            Err(e) => bail!("the sender: {e}"),
        }
    }
    let (stream, epoch, off) = last.context("no skip frame for the sender's strokes")?;
    let logged = watch.seen();
    println!(
        "{sent} strokes of {} KiB logged in {:?} (stream {stream}, last offset {off}); VmHWM {:.1} MiB",
        PAD / 1024,
        started.elapsed(),
        logged.peak_mib()
    );
    let from_zero = hello(None, json!({ stream.clone(): {"epoch": epoch, "off": 0} }));
    let replayed = Instant::now();
    let readers = non_readers(&target, 6, &from_zero).await?;
    // The replays are being written to clients that do not read: give them the time to stall
    // and be closed.
    tokio::time::sleep(KEEPALIVE_TIMEOUT + CLOSING).await;
    let during = watch.seen();
    let took = served(&target, "during the replays").await;
    let (closed, open) = closed_non_readers(readers, Duration::from_secs(5)).await;
    println!(
        "6 hellos from offset 0: VmHWM {:.1} MiB after {:?}; non-readers {closed} closed, {open} open",
        during.peak_mib(),
        replayed.elapsed()
    );
    check_memory(watch.seen(), "replays of a full history to 6 non-readers")?;
    took?;
    ensure!(open == 0, "{open} non-readers still open");
    target.check_sound()
}

// 4. Absurd offsets ----------------------------------------------------------------------------

#[tokio::test]
async fn absurd_offsets_and_bogus_epochs_neither_panic_nor_leak_connections() -> anyhow::Result<()> {
    let (mut target, watch) = start("").await?;
    // A stroke, so that the draw stream exists and has an epoch.
    let mut observer = WsClient::connect(&target.ws_url())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut sender = WsClient::connect(&target.ws_url())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let stream = format!("c:{APP}@alpha");
    // Strokes until the observer (subscribed after its welcome) gets one.
    let deadline = Instant::now() + TIMEOUT;
    let epoch = 'found: loop {
        ensure!(Instant::now() < deadline, "the observer got no stroke");
        sender
            .send(APP, stroke(1, 0))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        while let Ok(f) = observer.recv_within(Duration::from_millis(200)).await {
            if let ServerFrame::Msg { epoch: Some(e), .. } = f {
                break 'found e;
            }
        }
    };
    sender.close().await;
    observer.close().await;
    let max = u64::MAX;
    let epochs = [
        epoch.clone(),
        String::new(),
        "bogus".to_owned(),
        "x".repeat(4096),
        "\u{1F4A3}\u{0000}".to_owned(),
    ];
    let mut frames = Vec::new();
    for e in &epochs {
        let streams = json!({ stream.clone(): {"epoch": e, "off": max} });
        frames.push(hello(Some("hostile-tab"), streams.clone()));
        frames.push(json!({"t": "resume", "streams": streams}).to_string());
    }
    // Also a session stream and an unknown stream at the end of the numbers.
    frames.push(json!({"t": "resume", "streams": {"s:nobody": {"epoch": epoch, "off": max}, "c:nowhere": {"epoch": "", "off": max}}}).to_string());
    frames.push(hello(
        None,
        json!({ stream.clone(): {"epoch": epoch, "off": max - 1} }),
    ));
    let mut answers: Vec<String> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for (i, frame) in frames.iter().cycle().take(20.max(frames.len())).enumerate() {
        let mut c = WsClient::connect(&target.ws_url())
            .await
            .map_err(|e| anyhow::anyhow!("client {i}: {e}"))?;
        c.send_text(frame.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // `continuity_lost` may be followed by the replay from where the stream continues.
        let mut lost: Vec<(String, u64)> = Vec::new();
        let answer = loop {
            match c.recv_within(Duration::from_millis(300)).await {
                Ok(ServerFrame::ContinuityLost { stream, next, .. }) => lost.push((stream, next)),
                Ok(ServerFrame::Msg {
                    stream: Some(s),
                    off: Some(off),
                    ..
                }) if lost.iter().any(|(l, next)| *l == s && off >= *next) => {}
                Ok(other) => break format!("answered {other:?}"),
                Err(WsError::Timeout) if !lost.is_empty() => break "continuity_lost".to_owned(),
                Err(WsError::Timeout) => break "nothing".to_owned(),
                Err(e) => break format!("{e}"),
            }
        };
        if answer != "continuity_lost" && answer != "nothing" {
            problems.push(format!("client {i} sent {frame:.100}…: {answer}"));
        }
        answers.push(answer);
        c.close().await;
    }
    let mut tally = std::collections::BTreeMap::<&str, usize>::new();
    for a in &answers {
        *tally.entry(a.as_str()).or_default() += 1;
    }
    println!(
        "{} clients with offsets 2^64-1 and bogus epochs: {tally:?}",
        answers.len()
    );
    if let Err(e) = target.check_sound() {
        problems.push(e.to_string());
    }
    // Every connection ends: the count goes back to zero.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (alive, gauge) = loop {
        let alive = target.alive().await?["connections"].as_u64();
        let gauge = hostile::metric(&target.metrics().await?, "thywill_connections");
        if (alive == Some(0) && gauge == Some(0.0)) || Instant::now() > deadline {
            break (alive, gauge);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("connections after the clients closed: alive says {alive:?}, thywill_connections {gauge:?}");
    if alive != Some(0) || gauge != Some(0.0) {
        problems.push(format!(
            "connections not back to 0: alive {alive:?}, gauge {gauge:?}"
        ));
    }
    if let Err(e) = served(&target, "after the attack").await {
        problems.push(format!("{e:#}"));
    }
    ensure!(problems.is_empty(), "{problems:#?}");
    check_memory(watch.seen(), "absurd offsets")?;
    target.check_sound()
}

// 5. Ping flood --------------------------------------------------------------------------------

#[tokio::test]
async fn a_ping_flood_is_closed_as_rate_limited() -> anyhow::Result<()> {
    let (mut target, watch) = start("").await?;
    let mut ws = RawWs::connect(target.addr, &target.ws_path(), &[]).await?;
    ws.send_text(&hello(None, json!({}))).await?;
    let ping = Frame::ping(vec![b'p'; 125]).encode();
    let batch: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 100).collect();
    let started = Instant::now();
    let mut pings = 0u64;
    let mut write_error = None;
    while started.elapsed() < Duration::from_secs(2) {
        match ws.try_send_bytes(&batch, Duration::from_millis(100)).await {
            Ok(true) => pings += 100,
            Ok(false) => {}
            Err(e) => {
                write_error = Some(e.to_string());
                break;
            }
        }
    }
    let flooded = started.elapsed();
    let ending = ws.wait_close(Duration::from_secs(5)).await;
    println!(
        "ping flood: {pings} pings of 125 bytes in {flooded:?} (write error: {write_error:?}); then {} frames read before {ending:?}",
        ws.skipped
    );
    check_memory(watch.seen(), "ping flood")?;
    // A flooder that never stops writing may see its connection reset before it reads the
    // close frame (unread data resets a TCP connection); the member still closed it for the
    // rate limit, which its metrics say.
    let metrics = target.metrics().await?;
    let rate_limited = metrics.lines().any(|l| {
        l.starts_with("thywill_connections_closed_total")
            && l.contains("rate limit exceeded")
            && !l.ends_with(" 0")
    });
    ensure!(
        ending == Ending::Close(Some(4429)) || (ending != Ending::Open && rate_limited),
        "a ping flood must be closed as rate limited (4429), got {ending:?}"
    );
    served(&target, "after the attack").await?;
    target.check_sound()
}

// 6. Origin and Host ---------------------------------------------------------------------------

/// What a handshake is, its headers, and the status it must get.
type OriginCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);

#[tokio::test]
async fn foreign_origins_and_rebound_hosts_are_refused() -> anyhow::Result<()> {
    let (mut target, _watch) = start("").await?;
    let here = target.addr.to_string();
    let https_here = format!("https://{here}");
    let http_here = format!("http://{here}");
    let cases: [OriginCase<'_>; 4] = [
        (
            "DNS rebinding (Origin and Host evil.example)",
            vec![("Origin", "http://evil.example"), ("Host", "evil.example")],
            421,
        ),
        ("a foreign origin", vec![("Origin", "http://evil.example")], 403),
        (
            "an https origin to a plain-http member",
            vec![("Origin", https_here.as_str())],
            403,
        ),
        ("the same origin", vec![("Origin", http_here.as_str())], 101),
    ];
    let mut wrong = Vec::new();
    for (what, headers, want) in &cases {
        let got = handshake(target.addr, &target.ws_path(), headers, None)
            .await?
            .status;
        println!("{what}: {got} (want {want})");
        if got != *want {
            wrong.push(format!("{what}: {got}, want {want}"));
        }
    }
    ensure!(wrong.is_empty(), "{wrong:?}");
    served(&target, "after the refusals").await?;
    target.check_sound()
}

// 7. Protocol violations -----------------------------------------------------------------------

#[tokio::test]
async fn protocol_violations_get_their_close_codes() -> anyhow::Result<()> {
    let (mut target, watch) = start("").await?;
    let hello_text = hello(None, json!({}));
    let oversize = format!(
        r#"{{"t":"msg","app":"draw","data":"{}"}}"#,
        "x".repeat(100 * 1024)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "invalid UTF-8 in a text frame",
            Frame::text(b"{\"t\":\"\xff\xfe\"}".to_vec()).encode(),
            1007,
        ),
        (
            "an unmasked client frame",
            Frame::text(hello_text.as_bytes()).unmasked().encode(),
            1002,
        ),
        (
            "reserved bits set (RSV1, no extension)",
            Frame::text(hello_text.as_bytes()).with_rsv(4).encode(),
            1002,
        ),
        (
            "reserved bits set (RSV3)",
            Frame::text(hello_text.as_bytes()).with_rsv(1).encode(),
            1002,
        ),
        (
            "a binary frame",
            Frame::binary(b"\x00\x01".to_vec()).encode(),
            1003,
        ),
        (
            "a 100 KiB message (limit 64 KiB)",
            Frame::text(oversize.as_bytes()).encode(),
            1009,
        ),
        (
            "a frame announcing 1 GiB",
            hostile::frame_header(true, 0, 1, Some([1, 2, 3, 4]), 1 << 30),
            1009,
        ),
    ];
    let mut wrong = Vec::new();
    for (what, bytes, want) in &cases {
        let mut ws = RawWs::connect(target.addr, &target.ws_path(), &[]).await?;
        ws.next_text(TIMEOUT).await.context("welcome")?;
        let sent = Instant::now();
        ws.send_bytes(bytes).await?;
        let ending = ws.wait_close(Duration::from_secs(3)).await;
        println!(
            "{what}: {ending:?} after {:?} (want close {want})",
            sent.elapsed()
        );
        if ending != Ending::Close(Some(*want)) {
            wrong.push(format!("{what}: {ending:?}, want close {want}"));
        }
    }
    ensure!(wrong.is_empty(), "{wrong:?}");
    served(&target, "after the violations").await?;
    check_memory(watch.seen(), "protocol violations")?;
    target.check_sound()
}

// 8. Tab hijack --------------------------------------------------------------------------------

/// A new session's cookie (`name=value`), from the page's `Set-Cookie`.
async fn new_session(target: &Target) -> anyhow::Result<String> {
    let (status, head, _) = hostile::http_get(target.addr, &format!("{BASE}/")).await?;
    ensure!(status == 200, "the page answered {status}");
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie")
                .then(|| value.trim().split(';').next().map(str::to_owned))
                .flatten()
        })
        .context("no session cookie on the page")
}

/// Connects with a session cookie and says `hello` with tab `tab`.
async fn tab_client(target: &Target, cookie: &str, tab: &str) -> anyhow::Result<WsClient> {
    let mut c = WsClient::connect_with_cookie(&target.ws_url(), cookie)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    c.send_text(hello(Some(tab), json!({})))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(c)
}

/// Sends a stroke numbered `id` with that client message id and waits for its `ack`; returns
/// every `ack` id seen meanwhile.
async fn send_acked(c: &mut WsClient, id: u64) -> anyhow::Result<Vec<u64>> {
    c.send_text(msg_with_id(id, stroke(id, 0)))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut acks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match c
            .recv_within(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            Ok(ServerFrame::Ack { id: a }) => {
                acks.push(a);
                if a >= id {
                    return Ok(acks);
                }
            }
            Ok(_) => {}
            Err(e) => bail!("no ack of message {id} (acks {acks:?}): {e}"),
        }
    }
}

/// The stroke numbers an observer receives within `wait`.
async fn strokes_seen(c: &mut WsClient, wait: Duration) -> BTreeSet<u64> {
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + wait;
    while let Ok(f) = c
        .recv_within(deadline.saturating_duration_since(Instant::now()))
        .await
    {
        if let ServerFrame::Msg { data, .. } = f
            && let Some(n) = data["n"].as_u64()
        {
            seen.insert(n);
        }
    }
    seen
}

#[tokio::test]
async fn another_session_cannot_take_over_a_tab() -> anyhow::Result<()> {
    let (mut target, _watch) =
        start("[session]\nsecret = \"the hostile suite's secret, 32 bytes or more\"\n").await?;
    let (victim, attacker, watcher) = (
        new_session(&target).await?,
        new_session(&target).await?,
        new_session(&target).await?,
    );
    ensure!(victim != attacker, "two page loads gave one session");
    let tab = "hostile0tab0T";
    let mut observer = tab_client(&target, &watcher, "observer-tab").await?;
    let mut v = tab_client(&target, &victim, tab).await?;
    // The observer is subscribed (after its welcome) once it gets a stroke without an id.
    let deadline = Instant::now() + TIMEOUT;
    'subscribed: loop {
        ensure!(Instant::now() < deadline, "the observer got no stroke");
        v.send(APP, stroke(0, 0))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        while let Ok(f) = observer.recv_within(Duration::from_millis(200)).await {
            if matches!(f, ServerFrame::Msg { .. }) {
                break 'subscribed;
            }
        }
    }
    let mut acks = Vec::new();
    for id in 1..=3 {
        acks.extend(send_acked(&mut v, id).await?);
    }
    // The attacker names the victim's tab and marks it far ahead.
    let mut a = tab_client(&target, &attacker, tab).await?;
    let hijack = send_acked(&mut a, 1_000_000).await;
    println!("the attacker's message 1000000: acks {hijack:?}");
    // The victim goes on, on its connection and after a reconnect (as a page does).
    acks.extend(send_acked(&mut v, 4).await.context("message 4 of the victim")?);
    v.close().await;
    let mut v = tab_client(&target, &victim, tab).await?;
    let after = send_acked(&mut v, 5).await;
    println!("the victim's message 5 after reconnecting: acks {after:?}");
    acks.extend(after.unwrap_or_default());
    let seen = strokes_seen(&mut observer, Duration::from_millis(1_000)).await;
    println!("victim acks {acks:?}; the observer saw strokes {seen:?}");
    for n in 1..=5 {
        ensure!(
            seen.contains(&n),
            "the victim's message {n} was not processed (the observer saw {seen:?}); acks {acks:?}"
        );
    }
    ensure!(
        acks.iter().all(|a| *a <= 5),
        "the victim was acknowledged messages it never sent: {acks:?}"
    );
    served_with_sessions(&target, &watcher, &victim).await?;
    target.check_sound()
}

/// [`served`] for a member with sessions (the clients need cookies).
async fn served_with_sessions(target: &Target, a: &str, b: &str) -> anyhow::Result<()> {
    let took = round_trip_with(
        &target.ws_url(),
        &[("cookie", a)],
        &[("cookie", b)],
        APP,
        stroke(0, 0),
    )
    .await?;
    println!("ordinary client served after the attack: stroke delivered in {took:?}");
    Ok(())
}
