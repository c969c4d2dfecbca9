//! The baseline of `bench echo`: a minimal tokio-tungstenite echo server, run as the hidden
//! task `cargo xtask bench-raw-server [--port P]` (port 0, the default, picks a free port).
//! Like the examples it prints `listening: ws://ADDR/` on stdout, then serves until killed.
//!
//! Configured as well as thywill's own socket, so the ratio is honest: `TCP_NODELAY` on every
//! socket, the same 2 KiB read buffer and unbuffered writes (`write_buffer_size(0)`), the same
//! runtime.

use futures_util::{SinkExt, StreamExt};

use crate::flags::Args;

pub(crate) fn run(args: Vec<String>) -> anyhow::Result<()> {
    let mut args = Args::new(args);
    let port = args.value_or("--port", 0u16)?;
    args.finish()?;
    // The default runtime, as `#[tokio::main]` in the examples: the comparison stays fair.
    tokio::runtime::Runtime::new()?.block_on(serve(port))
}

/// The node's read buffer (`thywill-transport`'s `socket::READ_BUFFER`).
const READ_BUFFER: usize = 2 * 1024;

async fn serve(port: u16) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening: ws://{}/", listener.local_addr()?);
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
        tokio::spawn(async move {
            let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .read_buffer_size(READ_BUFFER)
                .write_buffer_size(0);
            let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
                return;
            };
            while let Some(Ok(message)) = ws.next().await {
                if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                    break;
                }
            }
        });
    }
}
