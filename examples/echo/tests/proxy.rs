//! The nginx sample in `deploy/nginx/thywill.conf`, exercised for real: nginx from Debian
//! terminates TLS (certificate made here with openssl) in front of two echo members, redirects
//! plain HTTP, and a headless Chromium uses the Echo page through it over WSS. Each member sits
//! behind a TCP forwarder of the test that counts the connections nginx opens to it, to check
//! that ordinary requests reuse upstream connections (`keepalive`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use thywill_testkit::browser::{self, Browser};
use thywill_testkit::{TIMEOUT, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// nginx as a child process, stopped on drop.
struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP forwarder on a loopback port in front of one member: counts the connections it
/// accepts (those nginx opens to the member) and copies bytes both ways. Stops on drop.
struct Counted {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Counted {
    async fn start(member: SocketAddr) -> anyhow::Result<Counted> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut pipes = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                pipes.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(member).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Counted { addr, accepted, task })
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // Ends the accept loop and, with its JoinSet, every pipe.
        self.task.abort();
    }
}

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
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
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Writes a self-signed certificate for 127.0.0.1 and localhost.
fn make_certificate(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
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
    Ok((cert, key))
}

async fn start_nginx(members: [SocketAddr; 2], http: u16, https: u16) -> anyhow::Result<Nginx> {
    let binary = nginx_binary().context("nginx is not installed: run scripts/install-test-deps.sh")?;
    let dir = std::env::temp_dir().join(format!("thywill-nginx-{}-{https}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (cert, key) = make_certificate(&dir)?;
    let sample = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/nginx/thywill.conf"
    ))?;
    let site = sample
        .replace("@MEMBER1_PORT@", &members[0].port().to_string())
        .replace("@MEMBER2_PORT@", &members[1].port().to_string())
        .replace("@HTTP_PORT@", &format!("127.0.0.1:{http}"))
        .replace("@HTTPS_PORT@", &https.to_string())
        .replace("@CERT_FILE@", &cert.display().to_string())
        .replace("@KEY_FILE@", &key.display().to_string());
    // The sample's HTTPS listener binds all addresses on the port; keep the test on loopback.
    let site = site.replace(
        &format!("listen {https} ssl"),
        &format!("listen 127.0.0.1:{https} ssl"),
    );
    std::fs::write(dir.join("thywill.conf"), site)?;
    let root = run(Command::new("id").arg("-u"))?.trim() == "0";
    let d = dir.display();
    let main = format!(
        "{user}worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\nevents {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/thywill.conf;\n}}\n",
        user = if root { "user root root;\n" } else { "" },
    );
    std::fs::write(dir.join("nginx.conf"), main)?;
    let child = Command::new(binary)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start nginx")?;
    let mut nginx = Nginx { child, dir };
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while tokio::net::TcpStream::connect(("127.0.0.1", https))
        .await
        .is_err()
    {
        if let Ok(Some(status)) = nginx.child.try_wait() {
            let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
            bail!("nginx exited with {status}: {log}");
        }
        if tokio::time::Instant::now() > deadline {
            bail!("nginx did not listen on {https}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(nginx)
}

#[tokio::test]
async fn the_echo_page_works_through_the_nginx_sample_over_tls() -> anyhow::Result<()> {
    if !browser::available() {
        bail!("chromium and chromedriver are needed: run scripts/install-test-deps.sh");
    }
    let mut members = Vec::new();
    let mut addrs = Vec::new();
    for member in ["alpha", "beta"] {
        let node = example_echo::builder()?.member(member).build().await?;
        let (addr, serving) = node.bind(([127, 0, 0, 1], 0).into()).await?;
        addrs.push(addr);
        members.push((node, tokio::spawn(serving)));
    }
    let counted = [Counted::start(addrs[0]).await?, Counted::start(addrs[1]).await?];
    let (http, https) = (free_port(), free_port());
    let _nginx = start_nginx([counted[0].addr, counted[1].addr], http, https).await?;

    // Plain HTTP is redirected to HTTPS.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", http)).await?;
    s.write_all(
        format!("GET /echo/ HTTP/1.1\r\nHost: 127.0.0.1:{http}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut reply = String::new();
    tokio::time::timeout(TIMEOUT, s.read_to_string(&mut reply)).await??;
    assert!(reply.starts_with("HTTP/1.1 301"), "{reply}");
    assert!(
        reply.contains(&format!("Location: https://127.0.0.1:{https}/echo/")),
        "{reply}"
    );

    // The page, its assets and the WebSocket all go through the proxy.
    let b = Browser::start_with_args(&["--ignore-certificate-errors"]).await?;
    b.goto(&format!("https://127.0.0.1:{https}/echo/")).await?;
    b.wait_text("#status", "Connected").await?;
    b.type_into("#sender textarea", "through the proxy").await?;
    b.click("#sender button").await?;
    b.wait_text("#echo-output .echoed-message", "through the proxy")
        .await?;
    b.wait_js("return location.protocol === 'https:' && Thywill.url.startsWith('wss://');")
        .await?;

    // Ordinary requests reuse nginx's idle connections to the members: one after the other,
    // REQUESTS of them open at most one new connection per member (none where the page load
    // left an idle one), where `Connection: close` towards the members would open one each.
    const REQUESTS: usize = 8;
    let opened = |c: &[Counted; 2]| c[0].accepted() + c[1].accepted();
    let before = opened(&counted);
    let statuses = b
        .client()
        .execute_async(
            &format!(
                "const done = arguments[arguments.length - 1];\n\
                 (async () => {{ const s = []; for (let i = 0; i < {REQUESTS}; i++) {{\n\
                   const r = await fetch('/echo/alive?i=' + i, {{ cache: 'no-store' }}); await r.text(); s.push(r.status); }}\n\
                   return s; }})().then(done, (e) => done(String(e)));"
            ),
            Vec::new(),
        )
        .await?;
    assert_eq!(
        statuses.to_string(),
        format!("[{}]", ["200"; REQUESTS].join(",")),
        "statuses of /echo/alive through nginx"
    );
    let new = opened(&counted) - before;
    eprintln!("{REQUESTS} sequential requests through nginx opened {new} upstream connections");
    assert!(
        new <= 2,
        "{REQUESTS} sequential requests opened {new} upstream connections (keepalive not working)"
    );
    b.close().await?;
    let total: usize = members.iter().map(|(n, _)| n.connection_count()).sum();
    assert!(total <= 1, "one page, at most one live connection: {total}");
    for (node, serving) in members {
        node.shutdown();
        tokio::time::timeout(TIMEOUT, serving).await??;
    }
    Ok(())
}
