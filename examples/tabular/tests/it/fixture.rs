//! A Tabular node on a free loopback port, and a minimal HTTP/1.1 client.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use example_tabular::Tabular;
use thywill::Thywill;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A served node; shut down on drop.
pub(crate) struct Served {
    pub(crate) node: Thywill,
    pub(crate) addr: SocketAddr,
    pub(crate) app: Tabular,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.node.shutdown();
    }
}

impl Served {
    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}/tabular/ws", self.addr)
    }

    pub(crate) async fn get(&self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Response> {
        get(self.addr, path, headers).await
    }
}

/// Rows every 20–40 ms, totals unlocked after 3 rows.
pub(crate) fn fast_app() -> Tabular {
    Tabular::new()
        .with_interval(Duration::from_millis(20)..Duration::from_millis(40))
        .with_unlock_after(3)
}

pub(crate) async fn serve(builder: thywill::Builder, app: Tabular) -> anyhow::Result<Served> {
    let node = builder.build().await?;
    let (addr, serving) = node.bind(([127, 0, 0, 1], 0).into()).await?;
    tokio::spawn(serving);
    Ok(Served { node, addr, app })
}

pub(crate) async fn start(app: Tabular) -> anyhow::Result<Served> {
    serve(example_tabular::builder_with(app.clone())?, app).await
}

/// An HTTP response.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> anyhow::Result<&str> {
        std::str::from_utf8(&self.body).context("body is not UTF-8")
    }
}

/// `GET path` with `Connection: close`, bounded by the testkit's timeout.
pub(crate) async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Response> {
    request(addr, "GET", path, headers).await
}

pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Response> {
    tokio::time::timeout(thywill_testkit::TIMEOUT, async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        parse(&raw)
    })
    .await
    .context("HTTP request timed out")?
}

fn parse(raw: &[u8]) -> anyhow::Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split])?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("no status line")?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .context("no status code")?
        .parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        bail!("chunked responses are not expected here");
    }
    Ok(Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// The value of `attr="…"` of every tag starting with `prefix` in `html`.
pub(crate) fn attributes(html: &str, prefix: &str, attr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(prefix) {
        let tag_end = rest[i..].find('>').map_or(rest.len(), |e| i + e);
        let tag = &rest[i..tag_end];
        let key = format!("{attr}=\"");
        if let Some(a) = tag.find(&key) {
            let v = &tag[a + key.len()..];
            if let Some(end) = v.find('"') {
                out.push(v[..end].to_owned());
            }
        }
        rest = &rest[tag_end..];
    }
    out
}

/// Polls `cond` until it holds, within the testkit's timeout.
pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            bail!("{what} did not happen within {:?}", thywill_testkit::TIMEOUT);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
