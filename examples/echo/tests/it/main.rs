//! Integration tests of the Echo example over real loopback sockets.

mod page;

use std::net::SocketAddr;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running echo node and its serving task.
pub(crate) struct Served {
    pub(crate) node: thywill::Thywill,
    pub(crate) addr: SocketAddr,
    pub(crate) serving: tokio::task::JoinHandle<()>,
}

impl Served {
    pub(crate) async fn start() -> anyhow::Result<Served> {
        let node = example_echo::builder()?.build().await?;
        let (addr, serving) = node.bind(([127, 0, 0, 1], 0).into()).await?;
        Ok(Served {
            node,
            addr,
            serving: tokio::spawn(serving),
        })
    }

    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.node.shutdown();
        tokio::time::timeout(thywill_testkit::TIMEOUT, self.serving)
            .await
            .context("the node did not stop")??;
        Ok(())
    }
}

/// A plain HTTP/1.1 response: status, lower-cased headers, body.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// GETs `path` with a minimal HTTP/1.1 client (`Connection: close`), bounded by the test
/// timeout.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Response> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(thywill_testkit::TIMEOUT, exchange)
        .await
        .context("no HTTP response in time")??;
    let text = String::from_utf8(raw).context("response is not UTF-8")?;
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: body.to_owned(),
    })
}
