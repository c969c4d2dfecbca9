//! Raw attack clients for hostile-client tests: silent and half-open TCP sockets, WebSocket
//! frames written byte by byte (unmasked, reserved bits, invalid UTF-8, lying lengths),
//! handshakes with forged `Host` and `Origin` headers, and the memory of the attacked process
//! read from `/proc/<pid>/status` (`VmRSS`, `VmHWM`), with a watchdog that kills a process
//! whose memory runs away before it takes the machine with it.
//!
//! ```no_run
//! # async fn t(addr: std::net::SocketAddr, pid: u32) -> anyhow::Result<()> {
//! use std::time::Duration;
//! use thywill_testkit::hostile::{self, Frame, RawWs};
//! let silent = hostile::open_silent(addr, 100).await?;
//! let report = hostile::wait_closed(silent, Duration::from_secs(3)).await;
//! assert_eq!(report.open, 0);
//! let mut ws = RawWs::connect(addr, "/echo/ws", &[]).await?;
//! ws.send(&Frame::text(b"\xff\xfe")).await?;
//! let seen = ws.wait_close(Duration::from_secs(2)).await;
//! println!("{seen:?}, VmHWM {} KiB", hostile::memory(pid)?.hwm_kib);
//! # Ok(()) }
//! ```
//!
//! Every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
pub use thywill_core::protocol::ServerFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::WsClient;

/// The memory of a process, from `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size now (`VmRSS`), in KiB.
    pub rss_kib: u64,
    /// Peak resident set size since the process started (`VmHWM`), in KiB.
    pub hwm_kib: u64,
}

impl Memory {
    /// The peak in MiB.
    pub fn hwm_mib(&self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }
}

/// Reads `VmRSS` and `VmHWM` of process `pid`.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        line.trim_start_matches(name)
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("bad {name} line {line:?}"))
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// Watches a process's memory every 10 ms and kills it (`kill -9 <pid>`) when its resident
/// set grows beyond a cap: a test of a bound must not exhaust a shared machine when the bound
/// does not hold.
#[derive(Debug)]
pub struct MemoryWatch {
    pid: u32,
    peak_kib: Arc<AtomicU64>,
    killed: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// What a [`MemoryWatch`] saw.
#[derive(Clone, Copy, Debug)]
pub struct Watched {
    /// The highest `VmHWM` read (the process's own peak), in KiB.
    pub peak_kib: u64,
    /// Whether the watchdog killed the process for exceeding the cap.
    pub killed: bool,
}

impl Watched {
    /// The peak in MiB.
    pub fn peak_mib(&self) -> f64 {
        self.peak_kib as f64 / 1024.0
    }
}

impl MemoryWatch {
    /// Starts watching `pid`; kills it when `VmRSS` exceeds `cap_mib`.
    pub fn start(pid: u32, cap_mib: u64) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let killed = Arc::new(AtomicBool::new(false));
        let (peak, kill) = (peak_kib.clone(), killed.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            loop {
                tick.tick().await;
                let Ok(m) = memory(pid) else { return };
                peak.fetch_max(m.hwm_kib.max(m.rss_kib), Ordering::Relaxed);
                if m.rss_kib > cap_mib * 1024 {
                    eprintln!(
                        "memory watch: pid {pid} at {} MiB, above the cap of {cap_mib} MiB: killing it",
                        m.rss_kib / 1024
                    );
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                    kill.store(true, Ordering::Relaxed);
                    return;
                }
            }
        });
        Self {
            pid,
            peak_kib,
            killed,
            task,
        }
    }

    /// What was seen so far (the process's `VmHWM` read once more if it still runs).
    pub fn seen(&self) -> Watched {
        if let Ok(m) = memory(self.pid) {
            self.peak_kib.fetch_max(m.hwm_kib, Ordering::Relaxed);
        }
        Watched {
            peak_kib: self.peak_kib.load(Ordering::Relaxed),
            killed: self.killed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for MemoryWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The soft limit of open files of this process (`ulimit -n`), read from `/proc/self/limits`.
pub fn open_files_limit() -> anyhow::Result<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .context("no `Max open files` in /proc/self/limits")?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()
        .context("no soft limit")?;
    if soft == "unlimited" {
        return Ok(u64::MAX);
    }
    soft.parse().with_context(|| format!("bad limit line {line:?}"))
}

/// How many sockets a test can open when it wants `wanted`: all of them when the open-files
/// limit leaves 200 descriptors to spare, else as many as fit (printed).
pub fn sockets_that_fit(wanted: usize) -> usize {
    let limit = open_files_limit().unwrap_or(1024);
    let fit = usize::try_from(limit.saturating_sub(200)).unwrap_or(usize::MAX);
    if fit < wanted {
        println!("open-files limit {limit}: scaled {wanted} sockets down to {fit}");
        fit
    } else {
        wanted
    }
}

/// Opens `n` TCP connections to `addr` that send nothing.
pub async fn open_silent(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Opened>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let stream = tokio::time::timeout(crate::TIMEOUT, TcpStream::connect(addr))
            .await
            .with_context(|| format!("connect {i} timed out"))?
            .with_context(|| format!("connect {i} of {n}"))?;
        out.push(Opened {
            stream,
            at: Instant::now(),
        });
    }
    Ok(out)
}

/// Opens `n` TCP connections to `addr` and writes `bytes` on each, then nothing more.
pub async fn open_sending(addr: SocketAddr, n: usize, bytes: &[u8]) -> anyhow::Result<Vec<Opened>> {
    let mut out = open_silent(addr, n).await?;
    for o in &mut out {
        tokio::time::timeout(crate::TIMEOUT, o.stream.write_all(bytes))
            .await
            .context("write timed out")?
            .context("write")?;
        o.at = Instant::now();
    }
    Ok(out)
}

/// An open socket and when it was opened (or last written to).
#[derive(Debug)]
pub struct Opened {
    /// The socket.
    pub stream: TcpStream,
    /// When the attack on it started.
    pub at: Instant,
}

/// How a set of sockets ended.
#[derive(Clone, Debug, Default)]
pub struct Closing {
    /// Sockets the server closed (EOF or reset).
    pub closed: usize,
    /// Sockets still open when the wait ended.
    pub open: usize,
    /// The longest time from opening to closing among the closed ones.
    pub slowest: Duration,
    /// Bytes the server sent on them before closing (an error response, for example).
    pub bytes: u64,
}

/// Reads every socket (in parallel) until the server closes it, for at most `wait` after the
/// socket was opened, and reports how they ended.
pub async fn wait_closed(sockets: Vec<Opened>, wait: Duration) -> Closing {
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|o| tokio::spawn(async move { until_closed(o, wait).await }))
        .collect();
    let mut c = Closing::default();
    for t in tasks {
        match t.await {
            Ok((Some(after), bytes)) => {
                c.closed += 1;
                c.slowest = c.slowest.max(after);
                c.bytes += bytes;
            }
            Ok((None, bytes)) => {
                c.open += 1;
                c.bytes += bytes;
            }
            Err(_) => c.open += 1,
        }
    }
    c
}

/// Reads until EOF or reset, up to `wait` after `o.at`: how long after `o.at` it closed.
async fn until_closed(mut o: Opened, wait: Duration) -> (Option<Duration>, u64) {
    let deadline = o.at + wait;
    let mut buf = [0u8; 4096];
    let mut bytes = 0u64;
    loop {
        match tokio::time::timeout_at(deadline, o.stream.read(&mut buf)).await {
            Err(_) => return (None, bytes),
            Ok(Ok(0)) | Ok(Err(_)) => return (Some(o.at.elapsed()), bytes),
            Ok(Ok(n)) => bytes += n as u64,
        }
    }
}

/// The HTTP/2 connection preface a client sends first (RFC 9113, section 3.4).
pub const H2C_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The HTTP/2 client preface followed by an empty SETTINGS frame (h2c "prior knowledge").
pub fn h2c_preface_with_settings() -> Vec<u8> {
    let mut v = H2C_PREFACE.to_vec();
    // length 0 (24 bits), type 4 (SETTINGS), flags 0, stream 0.
    v.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    v
}

/// One WebSocket frame, as a client writes it (masked unless `mask` is `None`).
#[derive(Clone, Debug)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// RSV1..3 (the low three bits).
    pub rsv: u8,
    /// Opcode (1 text, 2 binary, 8 close, 9 ping, 10 pong).
    pub opcode: u8,
    /// Masking key; `None` writes an unmasked frame (forbidden from clients).
    pub mask: Option<[u8; 4]>,
    /// Payload.
    pub payload: Vec<u8>,
}

/// The masking key the frames here use.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

impl Frame {
    /// A masked final frame.
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            fin: true,
            rsv: 0,
            opcode,
            mask: Some(MASK),
            payload: payload.into(),
        }
    }

    /// A masked text frame with these bytes (not necessarily UTF-8).
    pub fn text(payload: impl Into<Vec<u8>>) -> Self {
        Self::new(1, payload)
    }

    /// A masked binary frame.
    pub fn binary(payload: impl Into<Vec<u8>>) -> Self {
        Self::new(2, payload)
    }

    /// A masked ping.
    pub fn ping(payload: impl Into<Vec<u8>>) -> Self {
        Self::new(9, payload)
    }

    /// A masked unsolicited pong (a heartbeat that needs no reading).
    pub fn pong() -> Self {
        Self::new(10, Vec::new())
    }

    /// The same frame unmasked.
    pub fn unmasked(mut self) -> Self {
        self.mask = None;
        self
    }

    /// The same frame with reserved bits `rsv` (1..=7) set.
    pub fn with_rsv(mut self, rsv: u8) -> Self {
        self.rsv = rsv & 7;
        self
    }

    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = frame_header(
            self.fin,
            self.rsv,
            self.opcode,
            self.mask,
            self.payload.len() as u64,
        );
        match self.mask {
            Some(m) => out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4])),
            None => out.extend_from_slice(&self.payload),
        }
        out
    }
}

/// A frame header announcing `len` payload bytes (which a lying client need not send).
pub fn frame_header(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, len: u64) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | ((rsv & 7) << 4) | (opcode & 0x0f)];
    let masked = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(masked | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(masked | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(masked | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(m) = mask {
        out.extend_from_slice(&m);
    }
    out
}

/// A frame read from the server.
#[derive(Clone, Debug)]
pub struct ServerRawFrame {
    /// Opcode.
    pub opcode: u8,
    /// Payload.
    pub payload: Vec<u8>,
}

impl ServerRawFrame {
    /// The close code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }

    /// The payload as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// How a connection ended, seen from the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// A close frame with this code (`None`: a close frame without a code).
    Close(Option<u16>),
    /// The socket reached EOF without a close frame.
    Eof,
    /// The socket was reset without a close frame.
    Reset,
    /// Still open when the wait ended.
    Open,
}

/// A WebSocket client that writes and reads frames byte by byte.
#[derive(Debug)]
pub struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Frames other than close read by [`RawWs::wait_close`] and [`RawWs::next_text`].
    pub skipped: usize,
}

/// The answer to a WebSocket handshake.
#[derive(Debug)]
pub struct Handshake {
    /// HTTP status code.
    pub status: u16,
    /// The response head (status line and headers).
    pub head: String,
    /// The socket when the server switched protocols (101).
    pub ws: Option<RawWs>,
}

impl RawWs {
    /// Handshakes on `path` (such as `/draw/ws`) with extra headers (a `host` header given
    /// here replaces the default `127.0.0.1:<port>`); fails unless the answer is 101.
    pub async fn connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<RawWs> {
        let h = handshake(addr, path, headers, None).await?;
        match h.ws {
            Some(ws) => Ok(ws),
            None => bail!("handshake answered {}: {}", h.status, h.head),
        }
    }

    /// Writes a frame.
    pub async fn send(&mut self, frame: &Frame) -> anyhow::Result<()> {
        self.send_bytes(&frame.encode()).await
    }

    /// Writes raw bytes.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        tokio::time::timeout(crate::TIMEOUT, self.stream.write_all(bytes))
            .await
            .context("write timed out")?
            .context("write")
    }

    /// Writes a text frame (masked).
    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.send(&Frame::text(text.as_bytes())).await
    }

    /// Writes without waiting longer than `wait`: whether all of it was written (a client
    /// whose peer stopped reading gets `false`).
    pub async fn try_send_bytes(&mut self, bytes: &[u8], wait: Duration) -> anyhow::Result<bool> {
        match tokio::time::timeout(wait, self.stream.write_all(bytes)).await {
            Err(_) => Ok(false),
            Ok(r) => r.map(|()| true).context("write"),
        }
    }

    /// The next frame within `wait`: `Ok(None)` at EOF, an error on reset or timeout.
    pub async fn read_frame(&mut self, wait: Duration) -> Result<Option<ServerRawFrame>, Ending> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(Ending::Open),
                Ok(Ok(0)) => return Ok(None),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(_)) => return Err(Ending::Reset),
            }
        }
    }

    /// Reads frames (counting the others in [`RawWs::skipped`]) until a close frame, EOF or
    /// reset, within `wait`.
    pub async fn wait_close(&mut self, wait: Duration) -> Ending {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(left).await {
                Ok(Some(f)) if f.opcode == 8 => return Ending::Close(f.close_code()),
                Ok(Some(_)) => self.skipped += 1,
                Ok(None) => return Ending::Eof,
                Err(e) => return e,
            }
        }
    }

    /// The next text frame decoded as a server frame, within `wait` (other frames skipped).
    pub async fn next_text(&mut self, wait: Duration) -> anyhow::Result<ServerFrame> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(left).await {
                Ok(Some(f)) if f.opcode == 1 => {
                    return ServerFrame::decode(&f.text()).map_err(|e| anyhow::anyhow!("{e}"));
                }
                Ok(Some(f)) if f.opcode == 8 => bail!("closed with {:?}", f.close_code()),
                Ok(Some(_)) => self.skipped += 1,
                Ok(None) => bail!("EOF"),
                Err(e) => bail!("{e:?} waiting for a text frame"),
            }
        }
    }
}

/// Parses one complete server frame at the start of `buf`: the frame and its length.
fn parse_frame(buf: &[u8]) -> Option<(ServerRawFrame, usize)> {
    let b0 = *buf.first()?;
    let b1 = *buf.get(1)?;
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 => (u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])), 4),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes), 10)
        }
        n => (u64::from(n), 2),
    };
    let mask: Option<[u8; 4]> = if masked {
        let m = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(m)
    } else {
        None
    };
    let len = usize::try_from(len).ok()?;
    let end = at.checked_add(len)?;
    let mut payload = buf.get(at..end)?.to_vec();
    if let Some(m) = mask {
        payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= m[i % 4]);
    }
    Some((
        ServerRawFrame {
            opcode: b0 & 0x0f,
            payload,
        },
        end,
    ))
}

/// Sends a WebSocket handshake for `path` with extra headers (a `host` header replaces the
/// default `127.0.0.1:<port>`), from a socket whose receive buffer is `recv_buffer` bytes if
/// given (a client that reads little), and reads the answer's head.
pub async fn handshake(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    recv_buffer: Option<u32>,
) -> anyhow::Result<Handshake> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .context("socket")?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).context("SO_RCVBUF")?;
    }
    let mut stream = tokio::time::timeout(crate::TIMEOUT, socket.connect(addr))
        .await
        .context("connect timed out")?
        .context("connect")?;
    let _ = stream.set_nodelay(true);
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    req.push_str(
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    tokio::time::timeout(crate::TIMEOUT, stream.write_all(req.as_bytes()))
        .await
        .context("write timed out")?
        .context("write")?;
    let deadline = Instant::now() + crate::TIMEOUT;
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16 * 1024 {
            bail!("response head longer than 16 KiB");
        }
        let mut chunk = [0u8; 2048];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .context("no handshake answer in time")?
            .context("reading the handshake answer")?;
        if n == 0 {
            bail!("EOF before the handshake answer ({} bytes)", buf.len());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .context("no status line")?
        .parse()
        .context("bad status code")?;
    let rest = buf[head_end..].to_vec();
    let ws = (status == 101).then(|| RawWs {
        stream,
        buf: rest,
        skipped: 0,
    });
    Ok(Handshake { status, head, ws })
}

/// `GET path` over plain HTTP/1.1: the status code, the response head and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String, String)> {
    let mut s = tokio::time::timeout(crate::TIMEOUT, TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    tokio::time::timeout(crate::TIMEOUT, s.read_to_end(&mut out))
        .await
        .context("response timed out")??;
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .context("no status line")?
        .parse()
        .context("bad status")?;
    Ok((status, head.to_owned(), body.to_owned()))
}

/// The value of a Prometheus metric line `name value` (no labels) in `metrics`.
pub fn metric(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A `hello` frame (protocol 1) with an optional tab and stream offsets.
pub fn hello(tab: Option<&str>, streams: Value) -> String {
    let mut v = serde_json::json!({"t": "hello", "v": 1, "streams": streams});
    if let Some(tab) = tab {
        v["tab"] = tab.into();
    }
    v.to_string()
}

/// Checks that an ordinary client is served: an observer and a sender connect to `ws_url`,
/// both say `hello`, the sender sends `data` (an object; a unique `probe` field is added) to
/// `app`, and the observer receives it. Returns the time from sending to receiving (the
/// probe is sent again every 250 ms until the observer, once subscribed, gets a copy).
pub async fn round_trip(ws_url: &str, app: &str, data: Value) -> anyhow::Result<Duration> {
    round_trip_with(ws_url, &[], &[], app, data).await
}

/// [`round_trip`] with handshake headers for the observer and for the sender (such as their
/// session cookies).
pub async fn round_trip_with(
    ws_url: &str,
    observer_headers: &[(&str, &str)],
    sender_headers: &[(&str, &str)],
    app: &str,
    mut data: Value,
) -> anyhow::Result<Duration> {
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let probe = format!(
        "probe-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    );
    data["probe"] = probe.clone().into();
    let mut observer = WsClient::connect_with_headers(ws_url, observer_headers)
        .await
        .map_err(|e| anyhow::anyhow!("observer: {e}"))?;
    let mut sender = WsClient::connect_with_headers(ws_url, sender_headers)
        .await
        .map_err(|e| anyhow::anyhow!("sender: {e}"))?;
    for c in [&mut observer, &mut sender] {
        c.send_text(hello(None, serde_json::json!({})))
            .await
            .map_err(|e| anyhow::anyhow!("hello: {e}"))?;
    }
    // The observer may not be subscribed yet (applications subscribe connections after the
    // welcome): the probe is sent again every 250 ms, numbered, until a copy arrives.
    let started = Instant::now();
    let mut sent_at: Vec<Instant> = Vec::new();
    while started.elapsed() < crate::TIMEOUT {
        data["copy"] = sent_at.len().into();
        sent_at.push(Instant::now());
        sender
            .send(app, data.clone())
            .await
            .map_err(|e| anyhow::anyhow!("send: {e}"))?;
        let wait_until = Instant::now() + Duration::from_millis(250);
        loop {
            match observer
                .recv_within(wait_until.saturating_duration_since(Instant::now()))
                .await
            {
                Ok(ServerFrame::Msg {
                    app: a, data: got, ..
                }) if a.as_str() == app
                    && got.get("probe").and_then(Value::as_str) == Some(probe.as_str()) =>
                {
                    let copy = got["copy"]
                        .as_u64()
                        .and_then(|c| usize::try_from(c).ok())
                        .unwrap_or(0);
                    let took = sent_at.get(copy).map_or(started, |t| *t).elapsed();
                    observer.close().await;
                    sender.close().await;
                    return Ok(took);
                }
                Ok(_) => continue,
                Err(crate::WsError::Timeout) => break,
                Err(e) => bail!("the observer did not receive the probe: {e}"),
            }
        }
    }
    bail!(
        "the observer did not receive any of {} copies of the probe within {:?}",
        sent_at.len(),
        crate::TIMEOUT
    )
}

/// A member process under attack: started from `program` with `--port 0` and a TOML
/// configuration file, its stderr captured (to look for panics).
#[derive(Debug)]
pub struct Target {
    /// The process.
    pub proc: crate::process::Process,
    /// Its stderr.
    pub stderr: crate::process::Stderr,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The service's base path, such as `/draw`.
    pub base: String,
    config: std::path::PathBuf,
}

impl Target {
    /// Writes `config` (TOML) to a file and starts `program --host 127.0.0.1 --port 0 --member
    /// alpha --config <file>`; waits for its `listening:` line. `base` is the service's base
    /// path (such as `/draw`).
    pub async fn start(program: &str, base: &str, config: &str) -> anyhow::Result<Target> {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "thywill-hostile-{}-{}.toml",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
        let mut cmd = std::process::Command::new(program);
        cmd.args([
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--member",
            "alpha",
            "--config",
        ])
        .arg(&path);
        let (mut proc, stderr) = crate::process::Process::spawn_command_with_stderr(cmd)?;
        let url = match proc.listening_url().await {
            Ok(url) => url,
            Err(e) => bail!("{program} did not start ({e}); stderr: {:?}", stderr.tail()),
        };
        let host = url
            .strip_prefix("http://")
            .and_then(|r| r.split('/').next())
            .with_context(|| format!("bad listening URL {url}"))?;
        let addr = host.parse().with_context(|| format!("bad address in {url}"))?;
        Ok(Target {
            proc,
            stderr,
            addr,
            base: base.to_owned(),
            config: path,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The WebSocket path, such as `/draw/ws`.
    pub fn ws_path(&self) -> String {
        format!("{}/ws", self.base)
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}/ws", self.addr, self.base)
    }

    /// Its memory now.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        memory(self.pid())
    }

    /// The body of `<base>/alive` (JSON with `connections`).
    pub async fn alive(&self) -> anyhow::Result<Value> {
        let (status, _, body) = http_get(self.addr, &format!("{}/alive", self.base)).await?;
        if status != 200 {
            bail!("{}/alive answered {status}", self.base);
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// The text of `<base>/metrics` (served to loopback clients).
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let (status, _, body) = http_get(self.addr, &format!("{}/metrics", self.base)).await?;
        if status != 200 {
            bail!("{}/metrics answered {status}", self.base);
        }
        Ok(body)
    }

    /// Fails if the process exited or printed a panic.
    pub fn check_sound(&mut self) -> anyhow::Result<()> {
        let panics = self.stderr.panics();
        if !panics.is_empty() {
            bail!("the member panicked: {panics:?}");
        }
        if !self.proc.is_running() {
            bail!("the member is not running; stderr: {:?}", self.stderr.tail());
        }
        Ok(())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}
