//! The baseline of `bench echo` and `bench broadcast`: a minimal tokio-tungstenite server, run
//! as the hidden task `cargo xtask bench-raw-server [--port P] [--broadcast]` (port 0, the
//! default, picks a free port). Like the examples it prints `listening: ws://ADDR/` on stdout,
//! then serves until killed.
//!
//! - By default it echoes every text or binary message to its sender.
//! - With `--broadcast` it sends every message to every other connection (as the Draw
//!   application does): each connection has a bounded queue and a writer task; a message that
//!   finds a queue full is dropped for that connection (the benchmark's delivery ratio shows it).
//!
//! Configured as well as thywill's own socket, so the ratio is honest: `TCP_NODELAY` on every
//! socket, the same 2 KiB read buffer, the same write batching (a writer sends what is queued
//! behind a frame with it, up to 4 KiB, in one flush: `write_buffer_size` 4 KiB), the same
//! runtime (`#[tokio::main]`'s: multi-threaded, one worker per CPU).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::flags::Args;

pub(crate) fn run(args: Vec<String>) -> anyhow::Result<()> {
    let mut args = Args::new(args);
    let port = args.value_or("--port", 0u16)?;
    let broadcast = args.switch("--broadcast");
    args.finish()?;
    // The default runtime, as `#[tokio::main]` in the examples: the comparison stays fair.
    tokio::runtime::Runtime::new()?.block_on(serve(port, broadcast))
}

/// The node's read buffer (`thywill-transport`'s `socket::READ_BUFFER`).
const READ_BUFFER: usize = 2 * 1024;
/// The node's write batch (`thywill-transport`'s `socket::WRITE_BATCH`).
const WRITE_BATCH: usize = 4 * 1024;
/// Messages a connection's queue holds in broadcast mode.
const QUEUE: usize = 1024;

/// Every connection's queue, in broadcast mode.
#[derive(Default)]
struct Hub {
    next: AtomicU64,
    peers: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
}

impl Hub {
    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<Message>>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn serve(port: u16, broadcast: bool) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening: ws://{}/", listener.local_addr()?);
    let hub = Arc::new(Hub::default());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Such as EMFILE: keep serving the connections we have.
                eprintln!("bench-raw-server: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            eprintln!("bench-raw-server: cannot set TCP_NODELAY: {e}");
        }
        let hub = hub.clone();
        tokio::spawn(async move {
            let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .read_buffer_size(READ_BUFFER)
                .write_buffer_size(WRITE_BATCH);
            let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
                return;
            };
            if broadcast {
                fan_out(ws, &hub).await;
            } else {
                echo(ws).await;
            }
        });
    }
}

async fn echo<S>(mut ws: tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

async fn fan_out<S>(ws: tokio_tungstenite::WebSocketStream<S>, hub: &Hub)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let id = hub.next.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
    hub.peers().insert(id, tx);
    let (mut sink, mut stream) = ws.split();
    let writer = tokio::spawn(async move {
        // As thywill's connection task: the frames queued behind one go out with it, up to
        // WRITE_BATCH bytes, in one flush.
        while let Some(message) = rx.recv().await {
            let mut batch = message.len();
            if sink.feed(message).await.is_err() {
                break;
            }
            while batch < WRITE_BATCH {
                let Ok(more) = rx.try_recv() else { break };
                batch += more.len();
                if sink.feed(more).await.is_err() {
                    break;
                }
            }
            if sink.flush().await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(message)) = stream.next().await {
        if message.is_text() || message.is_binary() {
            for (peer, queue) in hub.peers().iter() {
                if *peer != id {
                    // Full or closed: dropped for that connection.
                    let _ = queue.try_send(message.clone());
                }
            }
        }
    }
    hub.peers().remove(&id);
    writer.abort();
}
