//! The servers `bench echo` and `bench broadcast` compare in one run, and the protocol each
//! speaks: a raw tokio-tungstenite server ([`super::raw_server`]), socketioxide on axum (the
//! separate workspace `bench/peers/socketioxide`), Socket.IO 4.8 on Node.js
//! (`bench/peers/socketio-node`, when `node` and `npm` are installed) and thywill (the
//! examples).
//!
//! The Node peer's `socket.io` package is installed by npm, pinned ([`SOCKETIO_NODE`]), into
//! `<target>/bench-peers/socketio-node` on first use.
//!
//! socketioxide is built only here, never by `cargo xtask test` or CI: in its own workspace,
//! with its own lock file and its own target directory (`<target>/bench-peers`), so that it
//! neither grows the main build nor invalidates it.
//!
//! Socket.IO is spoken by hand over a plain WebSocket (`/socket.io/?EIO=4&transport=websocket`):
//! Engine.IO v4 packets as text frames, `0{…}` open from the server, `2` ping / `3` pong,
//! `4` message, whose Socket.IO v5 payload is `0` connect (`40` from the client, `40{"sid":…}`
//! back) or `2` event (`42["event",data]`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use super::echo::{WAIT, Ws};
use crate::{cargo, project_root, target_dir};

/// The peer's workspace, relative to the project root.
const SOCKETIOXIDE_DIR: &str = "bench/peers/socketioxide";
/// Its binary's name.
const SOCKETIOXIDE_BIN: &str = "bench-peer-socketioxide";

/// The Node peer's script, relative to the project root.
const SOCKETIO_NODE_SCRIPT: &str = "bench/peers/socketio-node/server.js";
/// The npm package of the Node peer, pinned.
const SOCKETIO_NODE: &str = "socket.io@4.8.1";

/// Where npm installs the Node peer's package.
fn socketio_node_dir() -> PathBuf {
    peers_target_dir().join("socketio-node")
}

/// Installs the Node peer's `socket.io` (once); fails with what to do when `node` or `npm` is
/// missing.
pub(crate) fn prepare_socketio_node() -> anyhow::Result<()> {
    let dir = socketio_node_dir();
    if dir.join("node_modules/socket.io/package.json").is_file() {
        return Ok(());
    }
    for tool in ["node", "npm"] {
        let found = crate::cmd(tool)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .status();
        if !found.is_ok_and(|s| s.success()) {
            bail!(
                "the socket.io-node peer needs `{tool}` (Debian: `apt-get install nodejs npm`), \
                 or leave it out: --servers raw,socketioxide,thywill"
            );
        }
    }
    std::fs::create_dir_all(&dir)?;
    let mut install = crate::cmd("npm");
    install
        .args(["install", "--no-save", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg(SOCKETIO_NODE);
    crate::run(install).with_context(|| format!("installing {SOCKETIO_NODE} with npm"))
}

/// The command that starts the Node peer on a free port.
pub(crate) fn socketio_node_command() -> std::process::Command {
    let mut c = crate::cmd("node");
    c.arg(project_root().join(SOCKETIO_NODE_SCRIPT))
        .args(["--port", "0"])
        .env("NODE_PATH", socketio_node_dir().join("node_modules"));
    c
}

/// The peers' own target directory: beside the main build's, never shared with it.
fn peers_target_dir() -> PathBuf {
    target_dir().join("bench-peers")
}

/// The release binary of the socketioxide peer (built by [`build_socketioxide`]).
pub(crate) fn socketioxide_binary() -> PathBuf {
    peers_target_dir().join("release").join(SOCKETIOXIDE_BIN)
}

/// Builds the socketioxide peer in release mode (`--locked`: the versions of its lock file);
/// a no-op when it is up to date.
pub(crate) fn build_socketioxide() -> anyhow::Result<()> {
    let manifest = project_root().join(SOCKETIOXIDE_DIR).join("Cargo.toml");
    let mut build = cargo();
    build
        .args(["build", "--release", "--locked", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(peers_target_dir());
    crate::run(build).context("building the socketioxide peer (bench/peers/socketioxide)")
}

/// The servers under comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// tokio-tungstenite alone: frames in, frames out.
    Raw,
    /// socketioxide on axum, over Socket.IO.
    Socketio,
    /// Socket.IO 4.8 on Node.js.
    SocketioNode,
    /// thywill, over its protocol v1.
    Thywill,
}

impl Kind {
    /// Every server, in table order.
    pub(crate) const ALL: [Kind; 4] = [Kind::Raw, Kind::Socketio, Kind::SocketioNode, Kind::Thywill];

    /// Its name in options and tables.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::Socketio => "socketioxide",
            Kind::SocketioNode => "socket.io-node",
            Kind::Thywill => "thywill",
        }
    }

    /// Whether it speaks Socket.IO.
    pub(crate) fn is_socketio(self) -> bool {
        matches!(self, Kind::Socketio | Kind::SocketioNode)
    }

    /// The server named `name`.
    pub(crate) fn parse(name: &str) -> anyhow::Result<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .with_context(|| format!("unknown server {name:?} (raw, socketioxide, socket.io-node, thywill)"))
    }

    /// A comma-separated list of servers (`raw,socketioxide,socket.io-node,thywill`), in table
    /// order.
    pub(crate) fn parse_list(list: &str) -> anyhow::Result<Vec<Kind>> {
        let named = list
            .split(',')
            .filter(|s| !s.is_empty())
            .map(Kind::parse)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| named.contains(k)).collect();
        if kinds.is_empty() {
            bail!("no server named in {list:?}");
        }
        Ok(kinds)
    }

    /// The WebSocket path of a Socket.IO server.
    pub(crate) fn socketio_path() -> &'static str {
        "/socket.io/?EIO=4&transport=websocket"
    }

    /// What the client sends to open a connection, after the WebSocket handshake, and awaits.
    pub(crate) async fn handshake(self, ws: &mut Ws) -> anyhow::Result<()> {
        match self {
            Kind::Raw => Ok(()),
            Kind::Thywill => match next_text(ws).await? {
                text if super::echo::frame_type(&text).as_deref() == Some("welcome") => Ok(()),
                other => bail!("expected a welcome frame, got {other:?}"),
            },
            Kind::Socketio | Kind::SocketioNode => {
                let open = next_text(ws).await?;
                if !open.starts_with("0{") {
                    bail!("expected an Engine.IO open packet, got {open:?}");
                }
                ws.send(Message::text("40")).await?;
                loop {
                    let text = next_text(ws).await?;
                    if text.starts_with("40") {
                        return Ok(());
                    }
                    if text.starts_with("44") {
                        bail!("Socket.IO connection refused: {text}");
                    }
                    if let Some(pong) = self.pong(&text) {
                        ws.send(pong).await?;
                    }
                }
            }
        }
    }

    /// The frame carrying `data` (JSON) as the event `event` (Socket.IO), the message of the
    /// application `event` (thywill), or `data` itself (raw).
    pub(crate) fn frame(self, event: &str, data: &str) -> String {
        match self {
            Kind::Raw => data.to_owned(),
            Kind::Socketio | Kind::SocketioNode => format!(r#"42["{event}",{data}]"#),
            Kind::Thywill => format!(r#"{{"t":"msg","app":"{event}","data":{data},"_":{{}}}}"#),
        }
    }

    /// Whether a server frame carries the event / application message `event` (raw: any).
    pub(crate) fn is_event(self, text: &str, event: &str) -> bool {
        match self {
            Kind::Raw => true,
            Kind::Socketio | Kind::SocketioNode => text
                .strip_prefix("42[\"")
                .and_then(|rest| rest.strip_prefix(event))
                .is_some_and(|rest| rest.starts_with('"')),
            Kind::Thywill => super::echo::frame_type(text).as_deref() == Some("msg"),
        }
    }

    /// The answer a frame requires of the client: Engine.IO's pong to its ping.
    pub(crate) fn pong(self, text: &str) -> Option<Message> {
        (self.is_socketio() && text == "2").then(|| Message::text("3"))
    }
}

/// The next text frame (answering nothing), within [`WAIT`].
async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match timeout(WAIT, ws.next())
            .await
            .context("no frame from the server")?
        {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => bail!("the server closed the connection: {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("the connection ended"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_of_each_protocol() -> anyhow::Result<()> {
        assert_eq!(Kind::Raw.frame("echo", r#""x""#), r#""x""#);
        assert_eq!(Kind::Socketio.frame("echo", r#""x""#), r#"42["echo","x"]"#);
        let v: serde_json::Value = serde_json::from_str(&Kind::Thywill.frame("echo", r#""x""#))?;
        assert_eq!(
            v,
            serde_json::json!({"t": "msg", "app": "echo", "data": "x", "_": {}})
        );

        assert!(Kind::Socketio.is_event(r#"42["echo","x"]"#, "echo"));
        assert!(!Kind::Socketio.is_event(r#"42["echoes","x"]"#, "echo"));
        assert!(!Kind::Socketio.is_event("2", "echo"));
        assert!(Kind::Thywill.is_event(r#"{"t":"msg","app":"echo","seq":1,"data":"x","_":{}}"#, "echo"));
        assert!(!Kind::Thywill.is_event(r#"{"t":"welcome"}"#, "echo"));

        assert_eq!(Kind::Socketio.pong("2"), Some(Message::text("3")));
        assert_eq!(Kind::Socketio.pong(r#"42["echo","2"]"#), None);
        assert_eq!(Kind::SocketioNode.pong("2"), Some(Message::text("3")));
        assert_eq!(Kind::SocketioNode.frame("echo", r#""x""#), r#"42["echo","x"]"#);
        assert_eq!(Kind::parse("socket.io-node")?, Kind::SocketioNode);
        assert_eq!(Kind::Thywill.pong("2"), None);
        Ok(())
    }

    #[test]
    fn server_lists() -> anyhow::Result<()> {
        assert_eq!(Kind::parse_list("thywill,raw")?, vec![Kind::Raw, Kind::Thywill]);
        assert_eq!(
            Kind::parse_list("raw,socketioxide,socket.io-node,thywill")?,
            Kind::ALL.to_vec()
        );
        assert!(Kind::parse_list("nats").is_err());
        assert!(Kind::parse_list("").is_err());
        Ok(())
    }
}
