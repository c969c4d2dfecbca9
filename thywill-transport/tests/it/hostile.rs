//! What a client without credentials can try, in process: sockets that say nothing, broken
//! WebSocket frames, ping floods, absurd offsets, panicking hooks, foreign hosts and origins,
//! other sessions' tabs. Each is refused with the documented outcome and costs nobody else.
//! (The same attacks against a real member process, with memory bounds, are in
//! `examples/draw/tests/hostile.rs`.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use thywill_core::MemorySessionStore;
use thywill_core::protocol::{ServerFrame, close};
use thywill_testkit::{TIMEOUT, WsClient};
use thywill_transport::{SessionConfig, Sessions, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Fixture, http_get};

/// Reads until the server closes the socket (end of stream or reset); how long it took.
async fn closed_by_server(s: &mut TcpStream) -> anyhow::Result<Duration> {
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(TIMEOUT, s.read(&mut buf)).await? {
            Ok(0) | Err(_) => return Ok(started.elapsed()),
            Ok(_) => {}
        }
    }
}

fn config() -> anyhow::Result<TransportConfig> {
    Ok(TransportConfig::default().with_base_path("/t")?)
}

#[tokio::test]
async fn a_socket_that_sends_nothing_is_closed_after_the_handshake_timeout() -> anyhow::Result<()> {
    let fx = Fixture::start(config()?.with_handshake_timeout(Duration::from_millis(300))?).await?;
    let mut silent = TcpStream::connect(fx.addr).await?;
    let took = closed_by_server(&mut silent).await?;
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    // And the node still serves.
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    c.send("echo", json!("still here")).await?;
    assert!(matches!(c.recv().await?, ServerFrame::Msg { .. }));
    Ok(())
}

#[tokio::test]
async fn idle_keep_alive_and_h2c_connections_are_closed_after_the_idle_timeout() -> anyhow::Result<()> {
    let fx = Fixture::start(
        config()?
            .with_idle_timeout(Duration::from_millis(300))?
            .with_handshake_timeout(Duration::from_millis(600))?,
    )
    .await?;
    // HTTP/1.1 keep-alive: one request answered, then nothing.
    let mut s = TcpStream::connect(fx.addr).await?;
    s.write_all(format!("GET /t/alive HTTP/1.1\r\nHost: {}\r\n\r\n", fx.addr).as_bytes())
        .await?;
    let took = closed_by_server(&mut s).await?;
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    // HTTP/2 without TLS: the preface and an empty SETTINGS frame, then no request: the
    // handshake deadline, counted from the accept.
    let mut h2 = TcpStream::connect(fx.addr).await?;
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await?;
    let took = closed_by_server(&mut h2).await?;
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    Ok(())
}

#[tokio::test]
async fn sockets_over_the_cap_are_closed_at_once_and_counted() -> anyhow::Result<()> {
    let fx = Fixture::start(config()?.with_max_sockets(3)?).await?;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(fx.addr).await?);
    }
    fx.until("three sockets held", |n| {
        n.metrics_text().contains("thywill_sockets 3")
    })
    .await?;
    let mut over = TcpStream::connect(fx.addr).await?;
    let took = closed_by_server(&mut over).await?;
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    assert!(fx.edge.metrics_text().contains("thywill_sockets_refused_total 1"));
    drop(held);
    fx.until("the sockets to be released", |n| {
        n.metrics_text().contains("thywill_sockets 0")
    })
    .await?;
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    c.send("echo", json!(1)).await?;
    assert!(matches!(c.recv().await?, ServerFrame::Msg { .. }));
    Ok(())
}

/// A WebSocket keeps its socket's place under the cap until it closes: upgraded sockets count.
#[tokio::test]
async fn websockets_hold_their_place_under_the_socket_cap_until_they_close() -> anyhow::Result<()> {
    let fx = Fixture::start(config()?.with_max_sockets(2)?).await?;
    let first = WsClient::connect(&fx.ws_url()).await?;
    let mut second = WsClient::connect(&fx.ws_url()).await?;
    fx.until("two upgraded sockets counted", |n| {
        n.metrics_text().contains("thywill_sockets 2")
    })
    .await?;
    // The cap is reached by the WebSockets alone: a third socket is closed at once.
    let mut over = TcpStream::connect(fx.addr).await?;
    let took = closed_by_server(&mut over).await?;
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    assert!(fx.edge.metrics_text().contains("thywill_sockets_refused_total 1"));
    second.send("echo", json!(2)).await?;
    assert!(matches!(second.recv().await?, ServerFrame::Msg { .. }));
    // A WebSocket that ends gives its place back.
    drop(first);
    fx.until("the closed WebSocket's place to be released", |n| {
        n.metrics_text().contains("thywill_sockets 1")
    })
    .await?;
    let mut third = WsClient::connect(&fx.ws_url()).await?;
    third.send("echo", json!(3)).await?;
    assert!(matches!(third.recv().await?, ServerFrame::Msg { .. }));
    Ok(())
}

/// A socket past the WebSocket handshake, for writing frames by hand.
async fn raw_socket(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(
        format!(
            "GET /t/ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tokio::time::timeout(TIMEOUT, s.read_exact(&mut b)).await??;
        head.push(b[0]);
    }
    anyhow::ensure!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    Ok(s)
}

/// A client frame: FIN, `first` byte's other bits as given (opcode, reserved bits), masked
/// unless `unmasked`.
fn frame(first: u8, payload: &[u8], unmasked: bool) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![first, payload.len() as u8];
    if unmasked {
        f.extend_from_slice(payload);
    } else {
        f[1] |= 0x80;
        let key = [1u8, 2, 3, 4];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    }
    f
}

/// Reads server frames until a close frame; its code.
async fn close_code(s: &mut TcpStream) -> anyhow::Result<u16> {
    loop {
        let (opcode, payload) = next_frame(s).await?;
        if opcode == 0x8 {
            anyhow::ensure!(payload.len() >= 2, "close frame without a code");
            return Ok(u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
}

/// Reads one server frame: its opcode and payload.
async fn next_frame(s: &mut TcpStream) -> anyhow::Result<(u8, Vec<u8>)> {
    {
        let mut head = [0u8; 2];
        tokio::time::timeout(TIMEOUT, s.read_exact(&mut head)).await??;
        let len = match head[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                s.read_exact(&mut l).await?;
                u64::from(u16::from_be_bytes(l))
            }
            127 => {
                let mut l = [0u8; 8];
                s.read_exact(&mut l).await?;
                u64::from_be_bytes(l)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len)?];
        s.read_exact(&mut payload).await?;
        Ok((head[0] & 0x0f, payload))
    }
}

#[tokio::test]
async fn broken_frames_get_the_close_codes_of_the_websocket_standard() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    let cases: [(&str, Vec<u8>, u16); 3] = [
        (
            "invalid UTF-8 text",
            frame(0x81, &[0xff, 0xfe, 0x80], false),
            close::INVALID_PAYLOAD,
        ),
        ("unmasked frame", frame(0x81, b"{}", true), close::PROTOCOL_ERROR),
        ("reserved bits", frame(0xf1, b"{}", false), close::PROTOCOL_ERROR),
    ];
    for (what, bytes, code) in cases {
        let mut s = raw_socket(fx.addr).await?;
        s.write_all(&bytes).await?;
        assert_eq!(close_code(&mut s).await?, code, "{what}");
    }
    fx.until("every connection gone", |n| n.connection_count() == 0)
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_ping_flood_counts_against_the_rate_limit() -> anyhow::Result<()> {
    let fx = Fixture::start(config()?.with_rate_limit(10, 20)?).await?;
    let mut s = raw_socket(fx.addr).await?;
    let ping = frame(0x89, &[7u8; 125], false);
    // One ping at a time, each answered by a pong, until the server has had enough (so that
    // no unread ping makes the close a reset).
    for sent in 1..=100 {
        s.write_all(&ping).await?;
        let mut answer = next_frame(&mut s).await?;
        while answer.0 == 0x1 {
            // The welcome.
            answer = next_frame(&mut s).await?;
        }
        match answer {
            (0xA, _) => {}
            (0x8, payload) if payload.len() >= 2 => {
                assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), close::RATE_LIMITED);
                assert!(sent > 20, "closed after {sent} pings, within the burst");
                return Ok(());
            }
            other => anyhow::bail!("unexpected frame {other:?}"),
        }
    }
    anyhow::bail!("100 pings at once were not refused")
}

#[tokio::test]
async fn absurd_offsets_neither_panic_nor_replay_everything() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    for offset in [u64::MAX, u64::MAX - 1] {
        let mut c = WsClient::connect(&fx.ws_url()).await?;
        for stream in ["c:x@alpha", "s:nobody@alpha", "c:x@beta"] {
            c.send_text(
                json!({"t": "resume", "streams": {stream: {"epoch": "e", "off": offset}}}).to_string(),
            )
            .await?;
            c.send_text(
                json!({"t": "hello", "v": 1, "tab": "tab-absurd", "streams": {stream: {"epoch": "", "off": offset}}})
                    .to_string(),
            )
            .await?;
        }
        c.send("echo", json!("alive")).await?;
        loop {
            match c.recv().await? {
                ServerFrame::Msg { data, .. } if data == json!("alive") => break,
                ServerFrame::Msg { .. } => anyhow::bail!("a message was replayed"),
                _ => {}
            }
        }
        c.close().await;
    }
    fx.until("no connection left", |n| n.connection_count() == 0)
        .await?;
    assert!(fx.edge.metrics_text().contains("thywill_panics_total 0"));
    Ok(())
}

#[tokio::test]
async fn a_panicking_hook_closes_its_connection_with_1011_and_leaves_no_ghost() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    let mut witness = WsClient::connect(&fx.ws_url()).await?;
    for _ in 0..5 {
        let mut c = WsClient::connect(&fx.ws_url()).await?;
        c.send("echo", json!({"panic": true})).await?;
        assert_eq!(c.closed().await?, Some(close::INTERNAL_ERROR));
    }
    fx.until("only the witness left", |n| n.connection_count() == 1)
        .await?;
    let tracker = fx
        .node
        .context(&"echo".into())
        .ok_or_else(|| anyhow::anyhow!("no echo"))?;
    let clients = tracker.connected_clients().await?;
    let listed: usize = clients.values().map(|m| m.connections.len()).sum();
    assert_eq!(listed, 1, "the tracker lists only the witness: {clients:?}");
    assert!(fx.edge.metrics_text().contains("thywill_panics_total 5"));
    witness.send("echo", json!("fine")).await?;
    assert!(matches!(witness.recv().await?, ServerFrame::Msg { .. }));
    Ok(())
}

#[tokio::test]
async fn queued_bytes_are_bounded_per_connection() -> anyhow::Result<()> {
    let fx = Fixture::start(config()?.with_max_outbound_bytes(16 * 1024)?).await?;
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    // The hook queues 64 frames of 1 KiB at once: far below the frame bound, above the
    // byte bound.
    c.send("echo", json!({"flood": 64, "size": 1024})).await?;
    assert_eq!(c.closed().await?, Some(close::SLOW_CONSUMER));
    let mut ok = WsClient::connect(&fx.ws_url()).await?;
    ok.send("echo", json!({"flood": 8, "size": 1024})).await?;
    for _ in 0..8 {
        assert!(matches!(ok.recv().await?, ServerFrame::Msg { .. }));
    }
    Ok(())
}

#[tokio::test]
async fn foreign_hosts_and_origins_of_another_scheme_are_refused() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    // DNS rebinding: a page of evil.example, whose name now resolves to this loopback node.
    let page = {
        let mut s = TcpStream::connect(fx.addr).await?;
        s.write_all(b"GET /t/alive HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = String::new();
        tokio::time::timeout(TIMEOUT, s.read_to_string(&mut out)).await??;
        out
    };
    assert!(page.starts_with("HTTP/1.1 421"), "{page}");
    let ws = WsClient::connect_with_headers(
        &fx.ws_url(),
        &[("host", "evil.example"), ("origin", "http://evil.example")],
    )
    .await;
    assert!(ws.is_err(), "a rebound page's socket is refused");
    let port = fx.addr.port();
    let https_origin = format!("https://127.0.0.1:{port}");
    let other_scheme = WsClient::connect_with_origin(&fx.ws_url(), Some(&https_origin)).await;
    assert!(other_scheme.is_err(), "an origin of another scheme is refused");
    let same = format!("http://127.0.0.1:{port}");
    WsClient::connect_with_origin(&fx.ws_url(), Some(&same)).await?;
    let named = http_get(fx.addr, "/t/alive", "").await?;
    assert!(named.starts_with("HTTP/1.1 200"), "{named}");
    Ok(())
}

#[tokio::test]
async fn another_sessions_client_cannot_spoil_a_tabs_message_ids() -> anyhow::Result<()> {
    let config = SessionConfig::new([7u8; 32])?;
    let sessions = Sessions::new(config.clone(), Arc::new(MemorySessionStore::new()));
    let fx = Fixture::start_with(self::config()?, Some(sessions)).await?;
    let cookie = |page: String| -> anyhow::Result<String> {
        let line = page
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
            .ok_or_else(|| anyhow::anyhow!("no cookie in {page}"))?;
        let value = line.split_once(':').map(|(_, v)| v.trim()).unwrap_or_default();
        Ok(value.split(';').next().unwrap_or_default().to_owned())
    };
    let victim_cookie = cookie(http_get(fx.addr, "/t/", "").await?)?;
    let attacker_cookie = cookie(http_get(fx.addr, "/t/", "").await?)?;
    let tab = "0123456789abcdef";
    let hello = json!({"t": "hello", "v": 1, "tab": tab}).to_string();
    let msg =
        |id: u64, text: &str| json!({"t": "msg", "app": "echo", "data": text, "_": {}, "id": id}).to_string();

    let mut victim = WsClient::connect_with_cookie(&fx.ws_url(), &victim_cookie).await?;
    victim.send_text(hello.clone()).await?;
    victim.send_text(msg(1, "one")).await?;
    let mut got = Vec::new();
    loop {
        match victim.recv().await? {
            ServerFrame::Msg { data, .. } => got.push(data),
            ServerFrame::Ack { id: 1 } => break,
            _ => {}
        }
    }
    let mut attacker = WsClient::connect_with_cookie(&fx.ws_url(), &attacker_cookie).await?;
    attacker.send_text(hello.clone()).await?;
    attacker.send_text(msg(1_000_000, "spoil")).await?;
    // The attacker's ack: its mark is saved (under its own session).
    while !matches!(attacker.recv().await?, ServerFrame::Ack { id: 1_000_000 }) {}
    // The victim's page reconnects, as pages do, and goes on with its next id.
    victim.close().await;
    let mut victim = WsClient::connect_with_cookie(&fx.ws_url(), &victim_cookie).await?;
    victim.send_text(hello.clone()).await?;
    victim.send_text(msg(2, "two")).await?;
    while got.len() < 2 {
        if let ServerFrame::Msg { data, .. } = victim.recv().await? {
            got.push(data);
        }
    }
    assert_eq!(
        got,
        [json!("one"), json!("two")],
        "the victim's messages are all processed"
    );
    // Several Cookie fields (as HTTP/2 sends them) are one cookie header.
    let page = http_get(
        fx.addr,
        "/t/",
        &format!("Cookie: a=b\r\nCookie: {victim_cookie}\r\n"),
    )
    .await?;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        !page.to_ascii_lowercase().contains("set-cookie"),
        "the session in the second Cookie field is recognised: {page}"
    );
    Ok(())
}

#[tokio::test]
async fn a_second_hello_naming_another_tab_does_not_carry_the_first_tabs_mark() -> anyhow::Result<()> {
    let config = SessionConfig::new([9u8; 32])?;
    let sessions = Sessions::new(config, Arc::new(MemorySessionStore::new()));
    let fx = Fixture::start_with(self::config()?, Some(sessions)).await?;
    let page = http_get(fx.addr, "/t/", "").await?;
    let line = page
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .ok_or_else(|| anyhow::anyhow!("no cookie in {page}"))?;
    let cookie = line
        .split_once(':')
        .and_then(|(_, v)| v.trim().split(';').next())
        .unwrap_or_default()
        .to_owned();
    let msg =
        |id: u64, text: &str| json!({"t": "msg", "app": "echo", "data": text, "_": {}, "id": id}).to_string();
    let mut c = WsClient::connect_with_cookie(&fx.ws_url(), &cookie).await?;
    c.send_text(json!({"t": "hello", "v": 1, "tab": "first-tab-0000000"}).to_string())
        .await?;
    c.send_text(msg(50, "first tab")).await?;
    while !matches!(c.recv().await?, ServerFrame::Ack { id: 50 }) {}
    // The same connection now speaks for another tab, whose ids start again at 1.
    c.send_text(json!({"t": "hello", "v": 1, "tab": "second-tab-000000"}).to_string())
        .await?;
    c.send_text(msg(1, "second tab")).await?;
    loop {
        match c.recv().await? {
            ServerFrame::Msg { data, .. } if data == json!("second tab") => break,
            ServerFrame::Ack { id: 50 } => {
                anyhow::bail!("the second tab's message was taken for a duplicate")
            }
            _ => {}
        }
    }
    Ok(())
}
