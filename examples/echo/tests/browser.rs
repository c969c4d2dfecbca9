//! Browser tests of the Echo page: headless Chromium (through chromedriver) drives the real
//! page and the real client library against in-process echo nodes.

use std::net::SocketAddr;

use anyhow::Context;
use thywill_testkit::TIMEOUT;
use thywill_testkit::browser::Browser;
use thywill_testkit::served;

/// A running echo node and its serving task.
struct Served {
    node: thywill::Thywill,
    addr: SocketAddr,
    serving: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Starts an echo node on `addr`, retrying while the port is still held (bounded).
    async fn start(addr: SocketAddr) -> anyhow::Result<Served> {
        Self::start_with(addr, example_echo::builder()?).await
    }

    /// [`Served::start`] with the node built from `builder`.
    async fn start_with(addr: SocketAddr, builder: thywill::Builder) -> anyhow::Result<Served> {
        let node = builder.build().await?;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let (addr, serving) = loop {
            match node.bind(addr).await {
                Ok(bound) => break bound,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    eprintln!("bind failed, retrying: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e).context("cannot bind the echo node"),
            }
        };
        Ok(Served {
            node,
            addr,
            serving: tokio::spawn(serving),
        })
    }

    /// Shuts the node down (sockets close with 1001) and waits until it stopped serving.
    async fn stop(self) -> anyhow::Result<()> {
        self.node.shutdown();
        tokio::time::timeout(TIMEOUT, self.serving)
            .await
            .context("the node did not stop serving")??;
        Ok(())
    }
}

/// Types `text`, clicks Send, and waits until it is the newest reply.
async fn echo(b: &Browser, text: &str) -> anyhow::Result<()> {
    b.type_into("#sender textarea", text).await?;
    b.click("#sender button").await?;
    b.wait_js(&format!(
        "const m = document.querySelector('#echo-output .echoed-message'); return m !== null && m.textContent === {};",
        js_string(text)
    ))
    .await
    .with_context(|| format!("{text:?} was not echoed"))?;
    b.wait_js("return document.querySelector('#sender textarea').value === '';")
        .await
}

/// A JavaScript string literal.
fn js_string(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        match c {
            '\'' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

const STATUS_IS: &str = "return document.getElementById('status').textContent === ";

#[tokio::test]
async fn echo_page_sends_escapes_and_reconnects() -> anyhow::Result<()> {
    let served = Served::start(([127, 0, 0, 1], thywill_testkit::free_port()).into()).await?;
    let addr = served.addr;
    let b = served::start_browser().await?;
    b.goto(&format!("http://{addr}/echo/")).await?;

    assert_eq!(b.client().title().await?, "Thywill: Echo Application");
    assert_eq!(b.text("#title").await?, "Thywill: Echo Application");
    assert!(
        b.text("#instructions")
            .await?
            .starts_with("Enter text into the upper box and hit send.")
    );
    b.wait_text("#status", "Connected").await?;
    b.wait_js(&format!("{STATUS_IS}'Connected';")).await?;
    b.wait_js("return !document.querySelector('#sender textarea').disabled && !document.querySelector('#sender button').disabled;")
        .await?;
    b.wait_js("return Thywill.isConnected && Thywill.state === 'connected' && typeof Thywill.connectionId === 'string';")
        .await?;

    // Empty text is not sent.
    b.click("#sender button").await?;

    echo(&b, "hello from the browser").await?;
    echo(&b, "<b>x</b>").await?;
    b.wait_js(
        "const all = document.querySelectorAll('#echo-output .echoed-message');
         return all.length === 2 && all[0].textContent === '<b>x</b>' && all[0].querySelector('b') === null
             && all[1].textContent === 'hello from the browser';",
    )
    .await
    .context("replies are not escaped, newest first")?;
    b.screenshot(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("echo.png"))
        .await?;

    // The server goes away: the page says so and disables its controls.
    served.stop().await?;
    b.wait_text("#status", "Disconnected").await?;
    b.wait_js("return !Thywill.isConnected && Thywill.connectionId === null && document.querySelector('#sender textarea').disabled && document.querySelector('#sender button').disabled;")
        .await?;

    // A new node on the same port: the page reconnects by itself and echoes again.
    let served = Served::start(addr).await?;
    b.wait_js(&format!("{STATUS_IS}'Connected';"))
        .await
        .context("no reconnection")?;
    b.wait_js("return Thywill.isConnected && !document.querySelector('#sender textarea').disabled;")
        .await?;
    echo(&b, "after the restart").await?;

    // And once more, so that the state is right across repeated disconnects.
    served.stop().await?;
    b.wait_js(&format!("{STATUS_IS}'Disconnected';")).await?;
    b.wait_js("return Thywill.isConnected === false && Thywill.state !== 'connected';")
        .await?;
    let served = Served::start(addr).await?;
    b.wait_js(&format!("{STATUS_IS}'Connected';")).await?;
    echo(&b, "third time").await?;

    b.close().await?;
    served.stop().await
}

#[tokio::test]
async fn client_library_in_a_real_browser() -> anyhow::Result<()> {
    let served = Served::start(([127, 0, 0, 1], 0).into()).await?;
    let b = served::start_browser().await?;
    b.goto(&format!("http://{}/echo/", served.addr)).await?;
    b.wait_js("return Thywill.isConnected;").await?;
    b.wait_js(&format!(
        "return Thywill.basePath === '/echo' && Thywill.url === 'ws://{}/echo/ws' && Thywill.member === 'alpha'
             && Thywill.applications.indexOf('echo') >= 0;",
        served.addr
    ))
    .await?;

    // State replay: an interface created while connected hears `connected`, asynchronously.
    b.client()
        .execute(
            "window.late = [];
             const app = new Thywill.ApplicationInterface('echo');
             app.on('connected', () => late.push('connected'));
             app.on('received', (m) => late.push('received:' + m.data));
             window.lateApp = app;
             return true;",
            Vec::new(),
        )
        .await?;
    b.wait_js("return late.length === 1 && late[0] === 'connected';")
        .await?;

    // RPC: echo has no remote procedures (`nf`); replies never reach `received`.
    b.client()
        .execute(
            "window.rpcResult = null;
             lateApp.rpc('no.such', [1]).then(r => { rpcResult = 'ok'; }, e => { rpcResult = e.code + ':' + (e instanceof Thywill.RpcError); });
             return true;",
            Vec::new(),
        )
        .await?;
    b.wait_js("return rpcResult === 'nf:true' && late.length === 1;")
        .await?;

    // Messages sent while disconnected are buffered and flushed in order after the welcome;
    // RPC calls are not: they fail with `dc` at once.
    b.client()
        .execute(
            "Thywill.disconnect();
             window.dc = null;
             lateApp.rpc('x').catch(e => { dc = e.code; });
             lateApp.send('one'); lateApp.send('two');
             window.buffered = Thywill.buffered;
             Thywill.connect();
             return true;",
            Vec::new(),
        )
        .await?;
    b.wait_js("return dc === 'dc' && buffered === 2;").await?;
    b.wait_js(
        "return late.length === 4 && late[1] === 'connected' && late[2] === 'received:one' && late[3] === 'received:two';",
    )
    .await?;
    b.wait_js(&format!("{STATUS_IS}'Connected';")).await?;

    b.close().await?;
    served.stop().await
}

/// The Vite page (`examples/vite-echo`): a front end with a build step that imports the npm
/// package `thywill-client` (from `thywill-transport/client/dist`) instead of the classic
/// script. Built here with its pinned Vite (`npm ci`, `vite build`, each bounded in time) and
/// served by the Echo node under `/echo/vite/`, so the page shares Echo's origin.
mod vite {
    use std::path::{Path, PathBuf};
    use std::process::Stdio;
    use std::time::Duration;

    use anyhow::Context;
    use thywill::Resource;

    /// `npm ci` may download Vite; `vite build` takes seconds.
    const STEP_TIMEOUT: Duration = Duration::from_secs(300);

    pub(crate) fn dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../vite-echo")
    }

    /// Whether `dir/node_modules` was installed from the current `dir/package-lock.json` (npm
    /// writes `node_modules/.package-lock.json` when it installs): else `npm ci` is due.
    fn toolchain_is_current(dir: &Path) -> bool {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        match (
            modified(&dir.join("node_modules").join(".package-lock.json")),
            modified(&dir.join("package-lock.json")),
        ) {
            (Some(installed), Some(lock)) => installed >= lock,
            _ => false,
        }
    }

    pub(crate) fn npm_installed() -> bool {
        std::process::Command::new("npm")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    async fn run(what: &str, cmd: &mut tokio::process::Command) -> anyhow::Result<()> {
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        let out = tokio::time::timeout(STEP_TIMEOUT, cmd.output())
            .await
            .map_err(|_| anyhow::anyhow!("{what} did not finish within {STEP_TIMEOUT:?}"))?
            .with_context(|| format!("cannot run {what}"))?;
        anyhow::ensure!(
            out.status.success(),
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Builds the page into `out` (installing Vite first when `node_modules` is missing).
    pub(crate) async fn build(out: &Path) -> anyhow::Result<()> {
        let dir = dir();
        if !toolchain_is_current(&dir) {
            let mut ci = tokio::process::Command::new("npm");
            ci.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir);
            run("npm ci (examples/vite-echo)", &mut ci).await?;
        }
        let mut build = tokio::process::Command::new("npx");
        build
            .args([
                "--no-install",
                "vite",
                "build",
                "--logLevel",
                "warn",
                "--emptyOutDir",
                "--outDir",
            ])
            .arg(out)
            .current_dir(&dir);
        run("vite build", &mut build).await
    }

    /// Every file the build made, as resources under `/echo/vite/` (the page also at the
    /// directory's own path).
    pub(crate) fn resources(out: &Path) -> anyhow::Result<Vec<Resource>> {
        fn walk(root: &Path, dir: &Path, found: &mut Vec<Resource>) -> anyhow::Result<()> {
            for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
                let path = entry?.path();
                if path.is_dir() {
                    walk(root, &path, found)?;
                    continue;
                }
                let rel = path.strip_prefix(root)?.to_string_lossy().replace('\\', "/");
                let body = std::fs::read(&path)?;
                if rel == "index.html" {
                    found.push(
                        Resource::new("/echo/vite/", body.clone()).with_kind(thywill::ResourceKind::Html),
                    );
                }
                found.push(Resource::new(format!("/echo/vite/{rel}"), body));
            }
            Ok(())
        }
        let mut found = Vec::new();
        walk(out, out, &mut found)?;
        anyhow::ensure!(
            found.iter().any(|r| r.client_path.ends_with(".js")),
            "the Vite build made no script"
        );
        Ok(found)
    }

    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[tokio::test]
async fn a_vite_page_imports_the_client_package_and_echoes() -> anyhow::Result<()> {
    if !vite::npm_installed() {
        println!(
            "notice: npm is not installed (scripts/install-test-deps.sh installs it); skipping the Vite page"
        );
        return Ok(());
    }
    served::require_browser()?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let out =
        vite::TempDir(std::env::temp_dir().join(format!("thywill-vite-echo-{}-{stamp}", std::process::id())));
    vite::build(&out.0).await?;
    let mut builder = example_echo::builder()?;
    for resource in vite::resources(&out.0)? {
        builder = builder.resource(resource);
    }
    let served = Served::start_with(([127, 0, 0, 1], 0).into(), builder).await?;
    let b = served::start_browser().await?;
    b.goto(&format!("http://{}/echo/vite/", served.addr)).await?;
    assert_eq!(b.client().title().await?, "Thywill: Echo with Vite");
    b.wait_text("#status", "Connected").await?;
    // The page is a module bundle: the package defines no global.
    b.wait_js("return typeof window.Thywill === 'undefined';").await?;

    for text in ["hello from Vite", "<i>second</i>"] {
        b.type_into("#sender input", text).await?;
        b.click("#sender button").await?;
        b.wait_js(&format!(
            "const m = document.querySelector('#echoed li'); return m !== null && m.textContent === {};",
            js_string(text)
        ))
        .await
        .with_context(|| format!("{text:?} was not echoed"))?;
    }
    b.wait_js(
        "const all = document.querySelectorAll('#echoed li');
         return all.length === 2 && all[0].querySelector('i') === null && all[1].textContent === 'hello from Vite';",
    )
    .await?;

    // The server goes away and comes back on the same port: the package reconnects by itself.
    let addr = served.addr;
    served.stop().await?;
    b.wait_text("#status", "Disconnected").await?;
    let mut builder = example_echo::builder()?;
    for resource in vite::resources(&out.0)? {
        builder = builder.resource(resource);
    }
    let served = Served::start_with(addr, builder).await?;
    b.wait_text("#status", "Connected")
        .await
        .context("no reconnection")?;
    b.type_into("#sender input", "after the restart").await?;
    b.click("#sender button").await?;
    b.wait_js("const m = document.querySelector('#echoed li'); return m !== null && m.textContent === 'after the restart';")
        .await?;

    b.close().await?;
    served.stop().await
}
