//! A protocol-v1 WebSocket client for tests and benchmarks.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use thywill_core::protocol::{ClientFrame, ServerFrame};
use thywill_core::{ConnectionId, Metadata};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// What can go wrong talking to a server.
#[derive(Debug)]
pub enum WsError {
    /// The server closed the connection, with its close frame if it sent one.
    Closed(Option<(u16, String)>),
    /// No frame within the wait.
    Timeout,
    /// Anything else.
    Other(anyhow::Error),
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Closed(c) => write!(f, "closed: {c:?}"),
            Self::Timeout => f.write_str("timed out"),
            Self::Other(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for WsError {}

/// A connected client; the welcome frame has been read.
#[derive(Debug)]
pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The connection id from the welcome frame.
    pub connection: ConnectionId,
    /// The welcome frame.
    pub welcome: ServerFrame,
}

impl WsClient {
    /// Connects to `url` (such as `ws://127.0.0.1:1234/echo/ws`) and reads the welcome frame.
    pub async fn connect(url: &str) -> Result<Self, WsError> {
        Self::connect_with_origin(url, None).await
    }

    /// Connects with an `Origin` header.
    pub async fn connect_with_origin(url: &str, origin: Option<&str>) -> Result<Self, WsError> {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
        Self::connect_with_headers(url, &headers).await
    }

    /// Connects with a `Cookie` header (`name=value`), as a browser holding a session does.
    pub async fn connect_with_cookie(url: &str, cookie: &str) -> Result<Self, WsError> {
        Self::connect_with_headers(url, &[("cookie", cookie)]).await
    }

    /// Connects with extra handshake headers.
    pub async fn connect_with_headers(url: &str, headers: &[(&str, &str)]) -> Result<Self, WsError> {
        let mut req = url.into_client_request().map_err(|e| WsError::Other(e.into()))?;
        for (name, value) in headers {
            let name = tokio_tungstenite::tungstenite::http::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| WsError::Other(e.into()))?;
            let value = value.parse().map_err(
                |e: tokio_tungstenite::tungstenite::http::header::InvalidHeaderValue| {
                    WsError::Other(e.into())
                },
            )?;
            req.headers_mut().insert(name, value);
        }
        let (ws, _) = tokio::time::timeout(crate::TIMEOUT, tokio_tungstenite::connect_async(req))
            .await
            .map_err(|_| WsError::Timeout)?
            .map_err(|e| WsError::Other(e.into()))?;
        let mut c = WsClient {
            ws,
            connection: ConnectionId::from(""),
            welcome: ServerFrame::Reconnect { after_ms: 0 },
        };
        let welcome = c.recv().await?;
        match &welcome {
            ServerFrame::Welcome { connection, .. } => c.connection = connection.clone(),
            other => return Err(WsError::Other(anyhow::anyhow!("expected welcome, got {other:?}"))),
        }
        c.welcome = welcome;
        Ok(c)
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), WsError> {
        self.ws
            .send(WsMessage::text(text.into()))
            .await
            .map_err(|e| WsError::Other(e.into()))
    }

    /// Sends an application message.
    pub async fn send(&mut self, app: &str, data: Value) -> Result<(), WsError> {
        let f = ClientFrame::Msg {
            app: app.into(),
            data,
            meta: Metadata::new(),
            id: None,
        };
        self.send_text(f.encode()).await
    }

    /// Sends an RPC request.
    pub async fn rpc(&mut self, app: &str, id: u64, name: &str, args: Value) -> Result<(), WsError> {
        let f = ClientFrame::Rpc {
            app: app.into(),
            id,
            name: name.into(),
            args,
        };
        self.send_text(f.encode()).await
    }

    /// The next server frame, within [`crate::TIMEOUT`].
    pub async fn recv(&mut self) -> Result<ServerFrame, WsError> {
        self.recv_within(crate::TIMEOUT).await
    }

    /// The next server frame within `wait` (pings and pongs are skipped).
    pub async fn recv_within(&mut self, wait: Duration) -> Result<ServerFrame, WsError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| WsError::Timeout)?;
            match next {
                None => return Err(WsError::Closed(None)),
                Some(Err(e)) => return Err(WsError::Other(e.into())),
                Some(Ok(WsMessage::Text(t))) => {
                    return ServerFrame::decode(t.as_str()).map_err(|e| WsError::Other(e.into()));
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    return Err(WsError::Closed(frame.map(|CloseFrame { code, reason }| {
                        (u16::from(code), reason.to_string())
                    })));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// A server frame that can be read without waiting, if any (pings and pongs are skipped).
    pub fn recv_ready(&mut self) -> Option<Result<ServerFrame, WsError>> {
        use futures_util::FutureExt;
        match self.recv_within(Duration::ZERO).now_or_never() {
            None | Some(Err(WsError::Timeout)) => None,
            Some(r) => Some(r),
        }
    }

    /// Waits for the server to close the connection and returns its close code.
    pub async fn closed(&mut self) -> Result<Option<u16>, WsError> {
        loop {
            match self.recv().await {
                Ok(_) => continue,
                Err(WsError::Closed(c)) => return Ok(c.map(|(code, _)| code)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// The underlying stream, for tests that need raw frames.
    pub fn raw(&mut self) -> &mut WebSocketStream<MaybeTlsStream<TcpStream>> {
        &mut self.ws
    }
}
