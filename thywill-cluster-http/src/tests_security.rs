//! Forged, oversized, slow and replayed task requests against a real member listening on
//! loopback. The requests are built as a sender builds them ([`auth::headers`]), so that a
//! "captured" request is exactly what a member put on the wire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use thywill_testkit::conformance::{Event, Recorder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const SECRET: &[u8] = b"the right secret, 32 bytes long!";

/// A receiver `beta` (started, with a recorder) in a cluster with `alpha`, which does not run:
/// the tests speak for alpha.
struct Receiver {
    cluster: HttpCluster,
    rec: Arc<Recorder>,
    addr: SocketAddr,
}

fn config(alpha: u16, beta: u16) -> anyhow::Result<HttpClusterConfig> {
    Ok(HttpClusterConfig::default()
        .with_members_str(&format!("alpha=127.0.0.1:{alpha},beta=127.0.0.1:{beta}"))?
        .with_local("beta")?
        .with_secret(SECRET.to_vec())?)
}

async fn receiver(config: HttpClusterConfig) -> anyhow::Result<Receiver> {
    let addr = config.listen();
    let cluster = HttpCluster::new(config)?;
    let rec = Recorder::new();
    cluster.start(rec.clone()).await?;
    Ok(Receiver { cluster, rec, addr })
}

impl Receiver {
    fn tasks(&self) -> usize {
        self.rec
            .events()
            .iter()
            .filter(|(_, e)| matches!(e, Event::Task { .. }))
            .count()
    }
}

/// A batch of one task from alpha's incarnation `incarnation`.
fn body(incarnation: u64, n: u8) -> anyhow::Result<Vec<u8>> {
    let batch = Batch {
        from: "alpha".into(),
        epoch: incarnation,
        items: vec![(Stamp::default(), ClusterTask::encode("probe", &n)?)],
    };
    Ok(encode(&batch)?)
}

/// Alpha's claims for `body`, signed now.
fn claims(incarnation: u64, to_incarnation: u64, seq: u64, body: &[u8]) -> auth::Claims {
    auth::Claims {
        from: "alpha".into(),
        incarnation,
        to_incarnation,
        seq,
        timestamp: auth::now_ms(),
        length: body.len() as u64,
        body_sha256: auth::digest(body),
    }
}

/// A request as sent on the wire: headers and body.
#[derive(Clone)]
struct Request {
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn signed(c: &auth::Claims, body: Vec<u8>) -> Request {
    Request {
        headers: auth::headers(SECRET, c, "beta"),
        body,
    }
}

async fn post(addr: SocketAddr, r: &Request) -> anyhow::Result<reqwest::Response> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut req = client
        .post(format!("http://{addr}/task"))
        .timeout(thywill_testkit::TIMEOUT)
        .body(r.body.clone());
    for (k, v) in &r.headers {
        req = req.header(*k, v);
    }
    Ok(req.send().await?)
}

async fn status(addr: SocketAddr, r: &Request) -> anyhow::Result<u16> {
    Ok(post(addr, r).await?.status().as_u16())
}

/// Sends a request head (and `body_part` of its body) on a raw connection and returns the
/// connection without finishing the body.
async fn raw_head(
    addr: SocketAddr,
    headers: &[(&str, String)],
    length: u64,
    body_part: &[u8],
) -> anyhow::Result<tokio::net::TcpStream> {
    let mut head = format!("POST /task HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {length}\r\n");
    for (k, v) in headers {
        if *k != "content-length" {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("\r\n");
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(head.as_bytes()).await?;
    s.write_all(body_part).await?;
    Ok(s)
}

/// The status line's code of the answer on a raw connection, within `wait`.
async fn raw_status(s: &mut tokio::net::TcpStream, wait: Duration) -> anyhow::Result<u16> {
    let mut buf = vec![0u8; 1024];
    let mut got = 0;
    let read = async {
        while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf[got..]).await?;
            ensure!(n > 0, "connection closed without an answer");
            got += n;
        }
        Ok(())
    };
    tokio::time::timeout(wait, read)
        .await
        .with_context(|| format!("no answer within {wait:?}: the server waits for the body"))??;
    let text = String::from_utf8_lossy(&buf[..got]);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("a status line")?;
    Ok(code)
}

fn free() -> (u16, u16) {
    (thywill_testkit::free_port(), thywill_testkit::free_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_requests_and_foreign_content_types_are_refused_first() -> anyhow::Result<()> {
    let (a, b) = free();
    let beta = receiver(config(a, b)?).await?;
    let inc = new_incarnation();
    let client = reqwest::Client::builder().no_proxy().build()?;
    let url = format!("http://{}/task", beta.addr);
    // What a web page can send without a preflight: text/plain from its own origin.
    let page = client
        .post(&url)
        .header("origin", "http://evil.example")
        .header("content-type", "text/plain")
        .body("forged")
        .send()
        .await?;
    ensure!(page.status() == 403, "page post: {}", page.status());
    let plain = client
        .post(&url)
        .header("content-type", "text/plain")
        .body("forged")
        .send()
        .await?;
    ensure!(plain.status() == 415, "text/plain: {}", plain.status());
    // Even a validly signed request is refused when a browser header or the type is off: these
    // checks come before anything else.
    for (n, (extra, expected)) in [
        (("origin", "http://127.0.0.1:1"), 403),
        (("sec-fetch-site", "cross-site"), 403),
        (("sec-fetch-mode", "no-cors"), 403),
        (("content-type", "text/plain"), 415),
    ]
    .into_iter()
    .enumerate()
    {
        let b = body(inc, 1)?;
        let mut r = signed(&claims(inc, beta.cluster.epoch(), n as u64 + 1, &b), b);
        r.headers.retain(|(k, _)| *k != extra.0);
        r.headers.push((extra.0, extra.1.to_owned()));
        let got = status(beta.addr, &r).await?;
        ensure!(got == expected, "{extra:?}: {got}, expected {expected}");
    }
    let alive = client
        .get(format!("http://{}/alive", beta.addr))
        .header("origin", "http://evil.example")
        .send()
        .await?;
    ensure!(alive.status() == 403, "alive from a page: {}", alive.status());
    ensure!(beta.tasks() == 0, "a refused request got through");
    // The same request without the browser header goes through.
    let b = body(inc, 1)?;
    let ok = status(beta.addr, &signed(&claims(inc, beta.cluster.epoch(), 10, &b), b)).await?;
    ensure!(ok == 200 && beta.tasks() == 1, "signed request: {ok}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_are_refused_without_reading_the_body() -> anyhow::Result<()> {
    let (a, b) = free();
    let beta = receiver(config(a, b)?).await?;
    let inc = new_incarnation();
    let ct = vec![("content-type", auth::CONTENT_TYPE.to_owned())];
    // 32 MiB announced, none sent: the answer comes from the headers alone.
    let mut none = raw_head(beta.addr, &ct, 32 << 20, &[]).await?;
    ensure!(raw_status(&mut none, Duration::from_secs(2)).await? == 401);
    let b = body(inc, 1)?;
    let good = signed(&claims(inc, beta.cluster.epoch(), 1, &b), b);
    let mut forged = good.headers.clone();
    for h in &mut forged {
        if h.0 == auth::SIGNATURE {
            h.1 = "ab".repeat(32);
        }
    }
    let mut wrong = raw_head(beta.addr, &forged, 32 << 20, &[]).await?;
    ensure!(raw_status(&mut wrong, Duration::from_secs(2)).await? == 401);
    // Signed for 70 bytes but announcing 32 MiB: the length is signed.
    let mut longer = raw_head(beta.addr, &good.headers, 32 << 20, &[]).await?;
    ensure!(raw_status(&mut longer, Duration::from_secs(2)).await? == 401);
    ensure!(beta.tasks() == 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_bounded_in_size_time_and_number() -> anyhow::Result<()> {
    let (a, b) = free();
    let beta = receiver(
        config(a, b)?
            .with_max_body(4096)?
            .with_body_timeout(Duration::from_secs(1))?
            .with_max_concurrent_requests(2)?,
    )
    .await?;
    let (inc, to) = (new_incarnation(), beta.cluster.epoch());
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        seq
    };
    // Above the limit: 413 from the signed headers, nothing sent.
    let mut c = claims(inc, to, next(), b"");
    c.length = 8192;
    let mut big = raw_head(beta.addr, &auth::headers(SECRET, &c, "beta"), 8192, &[]).await?;
    ensure!(raw_status(&mut big, Duration::from_secs(2)).await? == 413);
    // A withheld body: 408 once the body deadline passes.
    let full = body(inc, 1)?;
    let c = claims(inc, to, next(), &full);
    let started = tokio::time::Instant::now();
    let mut slow = raw_head(
        beta.addr,
        &auth::headers(SECRET, &c, "beta"),
        c.length,
        &full[..3],
    )
    .await?;
    ensure!(raw_status(&mut slow, Duration::from_secs(3)).await? == 408);
    ensure!(
        started.elapsed() >= Duration::from_secs(1),
        "answered before the deadline"
    );
    // A body other than the signed one: 401.
    let c = claims(inc, to, next(), &full);
    let mut other = full.clone();
    if let Some(last) = other.last_mut() {
        *last ^= 1;
    }
    ensure!(status(beta.addr, &signed(&c, other)).await? == 401);
    // Two withheld bodies fill the two slots (one after the other: a sender's requests to one
    // receiver are numbered in order): a third request is answered 503 at once.
    let mut held = Vec::new();
    for free in [1, 0] {
        let c = claims(inc, to, next(), &full);
        held.push(raw_head(beta.addr, &auth::headers(SECRET, &c, "beta"), c.length, &[]).await?);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while beta.cluster.shared.slots.available_permits() > free {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "the withheld request holds no slot"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let third = signed(&claims(inc, to, next(), &full), full.clone());
    ensure!(status(beta.addr, &third).await? == 503);
    ensure!(beta.tasks() == 0);
    // Their deadline frees the slots.
    for mut h in held {
        ensure!(raw_status(&mut h, Duration::from_secs(3)).await? == 408);
    }
    let fourth = signed(&claims(inc, to, next(), &full), full);
    ensure!(status(beta.addr, &fourth).await? == 200);
    ensure!(beta.tasks() == 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_request_is_refused_again_and_after_the_sender_restarts() -> anyhow::Result<()> {
    let (a, b) = free();
    let beta = receiver(config(a, b)?).await?;
    let to = beta.cluster.epoch();
    let first = new_incarnation();
    let b1 = body(first, 1)?;
    let captured = signed(&claims(first, to, 1, &b1), b1);
    ensure!(status(beta.addr, &captured).await? == 200);
    ensure!(status(beta.addr, &captured).await? == 401, "replayed at once");
    let b2 = body(first, 2)?;
    ensure!(status(beta.addr, &signed(&claims(first, to, 2, &b2), b2)).await? == 200);
    // Alpha restarts: a higher incarnation, numbering from 1 again.
    let second = new_incarnation();
    ensure!(second > first);
    let b3 = body(second, 3)?;
    ensure!(status(beta.addr, &signed(&claims(second, to, 1, &b3), b3)).await? == 200);
    ensure!(beta.tasks() == 3);
    // The captured request of the first incarnation, still within the timestamp window.
    ensure!(
        status(beta.addr, &captured).await? == 401,
        "replayed after the sender restarted"
    );
    let b4 = body(first, 4)?;
    ensure!(
        status(beta.addr, &signed(&claims(first, to, 99, &b4), b4)).await? == 401,
        "the old incarnation is superseded"
    );
    ensure!(beta.tasks() == 3, "a replay got through");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_request_is_refused_after_the_receiver_restarts() -> anyhow::Result<()> {
    let (a, b) = free();
    let beta = receiver(config(a, b)?).await?;
    let inc = new_incarnation();
    let b1 = body(inc, 1)?;
    let captured = signed(&claims(inc, beta.cluster.epoch(), 1, &b1), b1);
    ensure!(status(beta.addr, &captured).await? == 200);
    beta.cluster.stop().await?;
    drop(beta);
    let beta = receiver(config(a, b)?).await?;
    let refused = post(beta.addr, &captured).await?;
    ensure!(
        refused.status() == 409,
        "replay after the receiver restarted: {}",
        refused.status()
    );
    let current = refused
        .headers()
        .get(auth::TO_INCARNATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    ensure!(current == Some(beta.cluster.epoch()), "{current:?}");
    ensure!(beta.tasks() == 0, "the replay got through");
    // Timestamps: 5 s old at most, 1 s ahead at most.
    let to = beta.cluster.epoch();
    for (n, (shift, expected)) in [(-6_000i64, 401), (2_000, 401), (-3_000, 200)]
        .into_iter()
        .enumerate()
    {
        let b = body(inc, 1)?;
        let mut c = claims(inc, to, n as u64 + 1, &b);
        c.timestamp = c.timestamp.saturating_add_signed(shift);
        let got = status(beta.addr, &signed(&c, b)).await?;
        ensure!(got == expected, "timestamp {shift:+} ms: {got}");
    }
    ensure!(beta.tasks() == 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_signs_for_the_receivers_current_incarnation() -> anyhow::Result<()> {
    let (a, b) = free();
    let beta = receiver(config(a, b)?).await?;
    // Alpha checks beta only every 10 s: its first task goes out before it knows beta's
    // incarnation (or right after its first check), and beta's 409 tells it.
    let alpha = HttpCluster::new(config(a, b)?.with_local("alpha")?.with_up_check(
        Duration::from_secs(10),
        Duration::from_millis(500),
        2,
    )?)?;
    alpha.start(Recorder::new()).await?;
    alpha
        .send_to(&"beta".into(), ClusterTask::encode("probe", &1u8)?)
        .await?;
    beta.rec
        .wait_event(thywill_testkit::TIMEOUT, "the task", |e| {
            matches!(e, Event::Task { .. })
        })
        .await?;
    // Beta restarts; alpha does not check it again for 10 s.
    beta.cluster.stop().await?;
    drop(beta);
    let beta = receiver(config(a, b)?).await?;
    alpha
        .send_to(&"beta".into(), ClusterTask::encode("probe", &2u8)?)
        .await?;
    beta.rec
        .wait_event(thywill_testkit::TIMEOUT, "the task after the restart", |e| {
            matches!(e, Event::Task { .. })
        })
        .await?;
    alpha.stop().await?;
    Ok(())
}

/// Reads until the server closes the socket; how long that took.
async fn closed_within(s: &mut tokio::net::TcpStream, bound: Duration) -> anyhow::Result<Duration> {
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(bound, s.read(&mut buf)).await {
            Err(_) => anyhow::bail!("still open after {bound:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn silent_and_surplus_sockets_are_closed_by_the_cluster_server() -> anyhow::Result<()> {
    let (alpha, beta) = free();
    let r = receiver(
        config(alpha, beta)?
            .with_head_timeout(Duration::from_millis(300))?
            .with_max_connections(2)?,
    )
    .await?;
    // A socket that never sends a request, and one that sends half a head.
    let opened = tokio::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(r.addr).await?;
    let mut partial = tokio::net::TcpStream::connect(r.addr).await?;
    partial.write_all(b"POST /task HTTP/1.1\r\nHost: x\r\n").await?;
    // The cap: a third socket is closed at once.
    let mut third = tokio::net::TcpStream::connect(r.addr).await?;
    let took = closed_within(&mut third, Duration::from_secs(5)).await?;
    ensure!(
        took < Duration::from_millis(250),
        "the surplus socket lived {took:?}"
    );
    for s in [&mut silent, &mut partial] {
        closed_within(s, Duration::from_secs(5)).await?;
        let took = opened.elapsed();
        ensure!(
            took >= Duration::from_millis(250),
            "closed after {took:?}, before its deadline"
        );
    }
    // Slots are free again: the up-check answers.
    let alive = reqwest::Client::new()
        .get(format!("http://{}/alive", r.addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    ensure!(alive.status() == 200, "up-check answered {}", alive.status());
    r.cluster.stop().await?;
    Ok(())
}
