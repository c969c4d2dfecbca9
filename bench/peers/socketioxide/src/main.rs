//! socketioxide on axum, the Socket.IO peer of `cargo xtask bench echo` and `bench broadcast`.
//!
//! - event `echo`: the data is emitted back to the sender as `echo`;
//! - event `draw`: the data is emitted as `draw` to every other socket of the room `draw`,
//!   which every socket joins on connecting (thywill's Draw application does the same).
//!
//! Run as `bench-peer-socketioxide [--port P]` (0, the default, picks a free port); prints
//! `listening: ws://ADDR/` on stdout once bound, then serves until killed. Configured as well
//! as thywill's own server: `TCP_NODELAY` on every socket, the same 2 KiB read buffer,
//! `#[tokio::main]`'s runtime (as the examples), a release build.

use axum::serve::ListenerExt;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{Data, SocketRef};

/// The room every socket joins and `draw` events are broadcast to.
const ROOM: &str = "draw";
/// Bytes read from a socket at a time: thywill's `socket::READ_BUFFER`.
const READ_BUFFER: usize = 2 * 1024;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = port(std::env::args().skip(1))?;
    // thywill's read buffer (2 KiB; engineioxide's default is 4 KiB); the rest as shipped.
    let (layer, io) = SocketIo::builder().ws_read_buffer_size(READ_BUFFER).build_layer();
    io.ns("/", async |socket: SocketRef| {
        socket.join(ROOM);
        socket.on("echo", async |socket: SocketRef, Data::<Value>(data)| {
            if let Err(e) = socket.emit("echo", &data) {
                eprintln!("bench-peer-socketioxide: echo not sent: {e}");
            }
        });
        socket.on("draw", async |socket: SocketRef, Data::<Value>(data)| {
            // `to` selects the room's sockets except this one.
            if let Err(e) = socket.to(ROOM).emit("draw", &data).await {
                eprintln!("bench-peer-socketioxide: draw not broadcast: {e}");
            }
        });
    });
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening: ws://{}/", listener.local_addr()?);
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            eprintln!("bench-peer-socketioxide: cannot set TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, app).await?;
    Ok(())
}

/// `--port P` (default 0).
fn port(mut args: impl Iterator<Item = String>) -> Result<u16, String> {
    let mut port = 0;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let value = args.next().ok_or("--port needs a value")?;
                port = value.parse().map_err(|e| format!("--port {value:?}: {e}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(port)
}
