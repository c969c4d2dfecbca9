//! The WebSocket a connection task drives, whoever upgraded it.
//!
//! Through [`ThywillService`](crate::ThywillService) — behind the edge's own accept loop
//! ([`crate::Edge::bind`]) or mounted in another server (axum, hyper) — the edge takes the
//! upgrade itself and builds the socket with a small read buffer ([`READ_BUFFER`], 2 KiB):
//! tungstenite's default of 128 KiB per socket would dominate the memory of an idle
//! connection. When the warp routes are served by warp's own server
//! (`warp::serve(edge.routes())`), warp's upgrade is used and its socket adapted to the same
//! types.

use std::io;
use std::sync::{Arc, Mutex};

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

pub(crate) use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

/// Bytes read from a socket at a time (tungstenite's default is 128 KiB): most frames are
/// small; a larger one takes several reads.
pub(crate) const READ_BUFFER: usize = 2 * 1024;

/// Bytes of frames written to a socket in one go: the frames queued behind the one being
/// written join it, up to this much, and go out in one system call (a fan-out that has fallen
/// behind catches up with a write per batch, not per frame). Below it a frame waits in
/// tungstenite's write buffer for the batch's flush; the buffer keeps this capacity once a
/// batch filled it.
pub(crate) const WRITE_BATCH: usize = 4 * 1024;

/// What a connection task reads frames from and writes frames to.
pub(crate) trait Socket:
    Stream<Item = Result<WsMessage, WsError>> + Sink<WsMessage, Error = WsError> + Unpin + Send + 'static
{
}

impl<T> Socket for T where
    T: Stream<Item = Result<WsMessage, WsError>> + Sink<WsMessage, Error = WsError> + Unpin + Send + 'static
{
}

/// The pending upgrade of a request, taken out of the request by
/// [`ThywillService`](crate::ThywillService) so that the WebSocket route can finish the
/// upgrade itself (a request extension must be `Clone`).
#[derive(Clone)]
pub(crate) struct UpgradeSlot {
    pending: Arc<Mutex<Option<OnUpgrade>>>,
    /// Told once taken: the socket's HTTP deadlines stop, the connection task's keepalive
    /// takes over.
    stage: Arc<crate::serve::Stage>,
    /// Whether another server accepted the socket: the upgraded WebSocket then takes a place
    /// under the edge's socket cap of its own (the edge's accept loop holds one per socket).
    foreign: bool,
}

impl UpgradeSlot {
    /// A slot holding `pending` of a socket at `stage`; `foreign` when another server
    /// accepted the socket.
    pub(crate) fn new(pending: OnUpgrade, stage: Arc<crate::serve::Stage>, foreign: bool) -> Self {
        Self {
            pending: Arc::new(Mutex::new(Some(pending))),
            stage,
            foreign,
        }
    }

    /// Whether the socket was accepted by another server.
    pub(crate) fn foreign(&self) -> bool {
        self.foreign
    }

    /// The socket's place under the edge's socket cap, held by the edge's accept loop (`None`
    /// for a foreign socket, or once taken): the WebSocket's task keeps it until it ends.
    pub(crate) fn take_place(&self) -> Option<crate::serve::Counted> {
        self.stage.take_place()
    }

    /// Takes the upgrade (once).
    pub(crate) fn take(&self) -> Option<OnUpgrade> {
        let taken = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if taken.is_some() {
            self.stage.upgraded();
        }
        taken
    }
}

/// The socket configuration: small read buffer, frames and messages bounded by twice the
/// message size limit (the protocol's own limit, checked on decoding, closes with 1009), and
/// a bounded write buffer: what a client that does not read makes us hold (a frame being
/// written, automatic pongs) fails the connection past [`max_write_buffer`].
pub(crate) fn config(max_message_size: usize) -> WebSocketConfig {
    let limit = max_message_size.saturating_mul(2);
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BATCH)
        .max_write_buffer_size(max_write_buffer(max_message_size))
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
}

/// Bytes a socket may hold unwritten: four client messages' worth, at least 1 MiB (one
/// server frame is written at a time; the rest wait in the connection's bounded queue).
pub(crate) fn max_write_buffer(max_message_size: usize) -> usize {
    max_message_size.saturating_mul(4).max(1024 * 1024)
}

/// Finishes an upgrade taken from an [`UpgradeSlot`]: the server hands the socket over
/// within `deadline` (the handshake timeout) or the upgrade fails.
pub(crate) async fn upgraded(
    upgrade: OnUpgrade,
    max_message_size: usize,
    deadline: std::time::Duration,
) -> Result<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>, String> {
    let io = match tokio::time::timeout(deadline, upgrade).await {
        Ok(Ok(io)) => io,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("the server did not hand the socket over in time".into()),
    };
    Ok(
        WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(config(max_message_size)))
            .await,
    )
}

/// warp's socket as a [`Socket`].
pub(crate) fn from_warp(ws: warp::ws::WebSocket) -> impl Socket {
    ws.map(|r| {
        r.map(to_tungstenite)
            .map_err(|e| WsError::Io(io::Error::other(e)))
    })
    .sink_map_err(|e| WsError::Io(io::Error::other(e)))
    .with(|m: WsMessage| std::future::ready(Ok::<_, WsError>(to_warp(m))))
}

fn to_tungstenite(m: warp::ws::Message) -> WsMessage {
    if let Ok(text) = m.to_str() {
        WsMessage::text(text)
    } else if m.is_ping() {
        WsMessage::Ping(m.into_bytes())
    } else if m.is_pong() {
        WsMessage::Pong(m.into_bytes())
    } else if m.is_close() {
        WsMessage::Close(m.close_frame().map(|(code, reason)| close_frame(code, reason)))
    } else {
        WsMessage::Binary(m.into_bytes())
    }
}

fn to_warp(m: WsMessage) -> warp::ws::Message {
    match m {
        WsMessage::Text(t) => warp::ws::Message::text(t.as_str()),
        WsMessage::Binary(b) => warp::ws::Message::binary(b),
        WsMessage::Ping(b) => warp::ws::Message::ping(b),
        WsMessage::Pong(b) => warp::ws::Message::pong(b),
        WsMessage::Close(Some(f)) => warp::ws::Message::close_with(u16::from(f.code), f.reason.to_string()),
        WsMessage::Close(None) | WsMessage::Frame(_) => warp::ws::Message::close(),
    }
}

fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    }
}

/// A close frame with a code and a reason.
pub(crate) fn close(code: u16, reason: &str) -> WsMessage {
    WsMessage::Close(Some(close_frame(code, reason)))
}
