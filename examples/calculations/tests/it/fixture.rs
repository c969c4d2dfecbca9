//! The example's node on a free loopback port, and a minimal HTTP GET.

use std::net::SocketAddr;

use thywill::Thywill;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) struct Fixture {
    pub(crate) node: Thywill,
    pub(crate) addr: SocketAddr,
    serving: tokio::task::JoinHandle<()>,
}

impl Fixture {
    pub(crate) async fn start() -> anyhow::Result<Fixture> {
        let node = example_calculations::builder()?.build().await?;
        let (addr, serving) = node.bind(([127, 0, 0, 1], 0).into()).await?;
        Ok(Fixture {
            node,
            addr,
            serving: tokio::spawn(serving),
        })
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}/calculations/ws", self.addr)
    }

    /// GETs `path`; returns the status code and the body.
    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let exchange = async {
            let mut s = tokio::net::TcpStream::connect(self.addr).await?;
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.addr
            );
            s.write_all(request.as_bytes()).await?;
            let mut raw = Vec::new();
            s.read_to_end(&mut raw).await?;
            anyhow::Ok(String::from_utf8_lossy(&raw).into_owned())
        };
        let raw = tokio::time::timeout(thywill_testkit::TIMEOUT, exchange).await??;
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no status line in {head:?}"))?;
        anyhow::ensure!(
            !head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
            "chunked responses are not decoded by this helper"
        );
        Ok((status, body.to_owned()))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.node.shutdown();
        self.serving.abort();
    }
}
