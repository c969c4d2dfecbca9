//! The HAProxy sample in `deploy/haproxy/haproxy.cfg`, exercised for real: HAProxy from Debian
//! (installed by `scripts/install-test-deps.sh`; the test is skipped with a notice when it
//! cannot be found) terminates TLS with a certificate made here in front of two members of
//! every example, each in this process on a port of its own. The sample's own backends, routes
//! and health checks are used; the test only puts its addresses and certificate in.
//!
//! Checked: every example's base path (page and WebSocket upgrade) reaches that example's
//! members; plain HTTP is redirected; `/metrics` is refused at the proxy; the active health
//! checks ask `<base>/ready`: a member whose cluster link is broken answers 503 there and
//! HAProxy takes it out (`L7STS`, status 503, seen on HAProxy's stats socket), then puts it
//! back once it is ready again, while its page goes on being served by the other member.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use thywill::core::{ClusterEvents, ClusterTask, CoreResult};
use thywill::{Cluster, LocalCluster, MemberId, MemberStatus, Thywill};
use thywill_testkit::{TIMEOUT, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every example and its base path (the backend names of the sample).
const APPS: [&str; 6] = ["echo", "calculations", "draw", "chat", "display", "tabular"];

/// HAProxy as a child process, stopped on drop (its directory removed).
struct Haproxy {
    child: Child,
    dir: PathBuf,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A single-member cluster whose link can be declared broken: the node then reports itself
/// not ready (`<base>/ready` answers 503), as when Redis is unreachable.
struct Switchable {
    inner: LocalCluster,
    healthy: Arc<AtomicBool>,
}

impl Cluster for Switchable {
    fn local_member(&self) -> &MemberId {
        self.inner.local_member()
    }
    fn members(&self) -> Vec<MemberId> {
        self.inner.members()
    }
    fn status(&self, member: &MemberId) -> MemberStatus {
        self.inner.status(member)
    }
    async fn start(&self, events: Arc<dyn ClusterEvents>) -> CoreResult<()> {
        self.inner.start(events).await
    }
    async fn stop(&self) -> CoreResult<()> {
        self.inner.stop().await
    }
    async fn send_to(&self, member: &MemberId, task: ClusterTask) -> CoreResult<()> {
        self.inner.send_to(member, task).await
    }
    async fn send_to_others(&self, task: ClusterTask) -> CoreResult<()> {
        self.inner.send_to_others(task).await
    }
    async fn send_to_all(&self, task: ClusterTask) -> CoreResult<()> {
        self.inner.send_to_all(task).await
    }
    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }
}

fn haproxy_binary() -> Option<PathBuf> {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A self-signed certificate for 127.0.0.1 and localhost, chain then key in one PEM file (as
/// HAProxy's `crt` wants it).
fn make_certificate(dir: &Path) -> anyhow::Result<PathBuf> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert))?;
    let pem = dir.join("site.pem");
    std::fs::write(&pem, [std::fs::read(&cert)?, std::fs::read(&key)?].concat())?;
    Ok(pem)
}

/// The sample with the test's listeners, certificate, stats socket and members put in: every
/// backend's `server` lines are replaced by `members[backend]`.
fn configure(
    sample: &str,
    dir: &Path,
    http: u16,
    https: u16,
    members: &BTreeMap<&str, Vec<u16>>,
) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut backends = Vec::new();
    for line in sample.lines() {
        let trimmed = line.trim();
        if trimmed == "global" {
            out.push_str(line);
            out.push('\n');
            out.push_str(&format!(
                "    stats socket {}/admin.sock mode 600 level admin\n",
                dir.display()
            ));
            continue;
        }
        if trimmed.starts_with("maxconn ") {
            out.push_str("    maxconn 2000\n");
            continue;
        }
        if trimmed == "bind :80" {
            out.push_str(&format!("    bind 127.0.0.1:{http}\n"));
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("bind :443 ssl crt /etc/haproxy/certs/site.pem") {
            out.push_str(&format!(
                "    bind 127.0.0.1:{https} ssl crt {}/site.pem{rest}\n",
                dir.display()
            ));
            continue;
        }
        if let Some(name) = trimmed.strip_prefix("backend ") {
            backends.push(name.trim().to_owned());
        }
        if trimmed.starts_with("server ") {
            continue; // replaced after `default-server`
        }
        out.push_str(line);
        out.push('\n');
        if trimmed.starts_with("default-server ") {
            let backend = backends.last().context("default-server outside a backend")?;
            let ports = members
                .get(backend.as_str())
                .with_context(|| format!("the sample has a backend `{backend}` that is no example"))?;
            for (i, port) in ports.iter().enumerate() {
                out.push_str(&format!("    server m{i} 127.0.0.1:{port} check\n"));
            }
        }
    }
    for app in APPS {
        anyhow::ensure!(
            backends.iter().any(|b| b == app),
            "the sample has no backend for the `{app}` example"
        );
    }
    for must in [
        "stats socket",
        &format!("bind 127.0.0.1:{http}"),
        &format!("bind 127.0.0.1:{https} ssl"),
    ] {
        anyhow::ensure!(
            out.contains(must),
            "the sample's layout changed: no `{must}` put in"
        );
    }
    Ok(out)
}

async fn start_haproxy(config: &str, dir: PathBuf, https: u16) -> anyhow::Result<Haproxy> {
    let binary = haproxy_binary().context("no haproxy")?;
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, config)?;
    run(Command::new(&binary).arg("-c").arg("-f").arg(&file)).context("the sample does not validate")?;
    let child = Command::new(&binary)
        .arg("-db")
        .arg("-f")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start haproxy")?;
    let mut haproxy = Haproxy { child, dir };
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while tokio::net::TcpStream::connect(("127.0.0.1", https))
        .await
        .is_err()
    {
        if let Ok(Some(status)) = haproxy.child.try_wait() {
            bail!("haproxy exited with {status}");
        }
        if tokio::time::Instant::now() > deadline {
            bail!("haproxy did not listen on {https}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(haproxy)
}

/// One server's state from HAProxy's stats: `status` (UP, DOWN, …), `check_status` (L7OK,
/// L7STS, L4CON, …) and `check_code` (the HTTP status of the last check).
#[derive(Clone, Debug, Default, PartialEq)]
struct ServerState {
    status: String,
    check_status: String,
    check_code: String,
}

/// `show stat` on the stats socket: (backend, server) → state.
async fn stats(socket: &Path) -> anyhow::Result<BTreeMap<(String, String), ServerState>> {
    let mut s = tokio::net::UnixStream::connect(socket).await?;
    s.write_all(b"show stat\n").await?;
    let mut text = String::new();
    tokio::time::timeout(TIMEOUT, s.read_to_string(&mut text)).await??;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .context("empty stats")?
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("no `{name}` column"))
    };
    let (px, sv, st, cs, cc) = (
        col("pxname")?,
        col("svname")?,
        col("status")?,
        col("check_status")?,
        col("check_code")?,
    );
    let mut out = BTreeMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() <= cc.max(cs).max(st) || f[sv] == "FRONTEND" || f[sv] == "BACKEND" {
            continue;
        }
        out.insert(
            (f[px].to_owned(), f[sv].to_owned()),
            ServerState {
                status: f[st].to_owned(),
                check_status: f[cs].trim_start_matches('*').to_owned(),
                check_code: f[cc].to_owned(),
            },
        );
    }
    Ok(out)
}

/// Waits until `pred` holds for the stats (polling every 100 ms), within `wait`.
async fn wait_stats(
    socket: &Path,
    wait: Duration,
    what: &str,
    pred: impl Fn(&BTreeMap<(String, String), ServerState>) -> bool,
) -> anyhow::Result<BTreeMap<(String, String), ServerState>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let now = stats(socket).await?;
        if pred(&now) {
            return Ok(now);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what}: not within {wait:?}: {now:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `curl -k` through the proxy: (status, headers and body).
async fn curl(url: &str) -> anyhow::Result<(u16, String)> {
    let out = tokio::time::timeout(
        TIMEOUT,
        tokio::process::Command::new("curl")
            .args(["-sk", "--http1.1", "--max-time", "5", "-i"])
            .arg(url)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("curl did not finish")??;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status from {url}: {text}"))?;
    Ok((status, text))
}

/// A WebSocket handshake through the proxy: the status line of the answer.
async fn upgrade(https: u16, app: &str) -> anyhow::Result<String> {
    // curl does the TLS (HAProxy's certificate is self-signed: `-k`); `--max-time` ends the
    // upgraded connection once the answer has been read.
    let out = tokio::time::timeout(
        TIMEOUT,
        tokio::process::Command::new("curl")
            .args(["-sk", "--http1.1", "-i", "-N", "--max-time", "2"])
            .args(["-H", "Connection: Upgrade", "-H", "Upgrade: websocket"])
            .args([
                "-H",
                "Sec-WebSocket-Version: 13",
                "-H",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            ])
            .arg(format!("https://127.0.0.1:{https}/{app}/ws"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("curl did not finish")??;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// A node of example `app` (two per example), minification off to start quickly.
async fn build(app: &str, member: &str, cluster: Option<Switchable>) -> anyhow::Result<Thywill> {
    let builder = match app {
        "echo" => example_echo::builder()?,
        "calculations" => example_calculations::builder()?,
        "draw" => example_draw::builder()?,
        "chat" => example_chat::builder(example_chat::MemoryPool::default())?,
        "display" => example_display::builder_for(&[MemberId::from(member)])?,
        "tabular" => example_tabular::builder()?,
        other => bail!("no example {other}"),
    };
    let builder = builder.member(member).minify(false);
    let builder = match cluster {
        Some(c) => builder.backend(thywill::core::BackendParts::new("switchable", c)),
        None => builder,
    };
    Ok(builder.build().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_haproxy_sample_routes_every_example_and_checks_readiness() -> anyhow::Result<()> {
    if haproxy_binary().is_none() {
        println!(
            "notice: haproxy is not installed (scripts/install-test-deps.sh installs it); skipping the HAProxy sample test"
        );
        return Ok(());
    }
    // Two members per example; draw's second member's cluster link can be broken.
    let healthy = Arc::new(AtomicBool::new(true));
    let mut nodes = Vec::new();
    let mut members: BTreeMap<&str, Vec<u16>> = BTreeMap::new();
    for app in APPS {
        for member in ["alpha", "beta"] {
            let cluster = (app == "draw" && member == "beta").then(|| Switchable {
                inner: LocalCluster::new(MemberId::from(member)),
                healthy: healthy.clone(),
            });
            let node = build(app, member, cluster).await?;
            let (addr, serving) = node.bind(([127, 0, 0, 1], 0).into()).await?;
            members.entry(app).or_default().push(addr.port());
            nodes.push((node, tokio::spawn(serving)));
        }
    }

    let dir = std::env::temp_dir().join(format!("thywill-haproxy-{}-{}", std::process::id(), free_port()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    make_certificate(&dir)?;
    let sample = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/haproxy/haproxy.cfg"
    ))?;
    let (http, https) = (free_port(), free_port());
    let config = configure(&sample, &dir, http, https, &members)?;
    let socket = dir.join("admin.sock");
    let _haproxy = start_haproxy(&config, dir.clone(), https).await?;

    // Every server passes its readiness check: `GET <base>/ready`, 200. A server can show
    // `UP` while its next check is being recorded (a marked status, no code yet): wait until
    // every last check reads L7OK with 200 (the wait's error lists every server's state).
    let all_up = wait_stats(
        &socket,
        TIMEOUT,
        "every member up, its last check L7OK 200",
        |s| {
            s.len() == APPS.len() * 2
                && s.values().all(|v| {
                    v.status == "UP" && (v.check_status.as_str(), v.check_code.as_str()) == ("L7OK", "200")
                })
        },
    )
    .await?;
    assert_eq!(all_up.len(), APPS.len() * 2);

    // Every example's base path reaches that example: its page (its bundle is under its own
    // base) and its WebSocket endpoint (the upgrades side by side: each holds its connection
    // for curl's `--max-time`).
    let mut upgrades = tokio::task::JoinSet::new();
    for app in APPS {
        upgrades.spawn(async move { (app, upgrade(https, app).await) });
        let (status, page) = curl(&format!("https://127.0.0.1:{https}/{app}/")).await?;
        assert_eq!(status, 200, "/{app}/ through haproxy: {page}");
        assert!(
            page.contains(&format!("data-base=\"/{app}\"")),
            "/{app}/ was not {app}'s page: {page}"
        );
    }
    while let Some(done) = upgrades.join_next().await {
        let (app, answer) = done?;
        let answer = answer?;
        assert!(
            answer.starts_with("HTTP/1.1 101"),
            "/{app}/ws through haproxy: {answer}"
        );
    }
    let (status, _) = curl(&format!("https://127.0.0.1:{https}/draw/metrics")).await?;
    assert_eq!(status, 404, "metrics stay internal");
    let (status, reply) = curl(&format!("http://127.0.0.1:{http}/echo/")).await?;
    assert_eq!(status, 301, "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("location: https://127.0.0.1"),
        "{reply}"
    );

    // Readiness: draw's beta loses its cluster link, answers 503 at /draw/ready, and HAProxy
    // takes it out on that answer (a layer-7 status, not a refused connection).
    healthy.store(false, Ordering::SeqCst);
    let down = wait_stats(&socket, TIMEOUT, "draw/m1 down on its 503", |s| {
        s.get(&("draw".to_owned(), "m1".to_owned()))
            .is_some_and(|v| v.status == "DOWN")
    })
    .await?;
    let beta = &down[&("draw".to_owned(), "m1".to_owned())];
    assert_eq!(
        (beta.check_status.as_str(), beta.check_code.as_str()),
        ("L7STS", "503"),
        "{beta:?}"
    );
    assert_eq!(down[&("draw".to_owned(), "m0".to_owned())].status, "UP");
    // The page is served meanwhile (by alpha), every time.
    for _ in 0..4 {
        let (status, page) = curl(&format!("https://127.0.0.1:{https}/draw/")).await?;
        assert_eq!(status, 200, "{page}");
    }
    healthy.store(true, Ordering::SeqCst);
    wait_stats(&socket, TIMEOUT, "draw/m1 back up", |s| {
        s.get(&("draw".to_owned(), "m1".to_owned()))
            .is_some_and(|v| v.status == "UP")
    })
    .await?;

    for (node, serving) in nodes {
        node.shutdown();
        tokio::time::timeout(TIMEOUT, serving).await??;
    }
    Ok(())
}
