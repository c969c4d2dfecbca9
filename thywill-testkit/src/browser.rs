//! Headless Chromium driven through its own chromedriver (Debian packages `chromium` and
//! `chromium-driver`), for tests of pages and of the browser client library.
//!
//! Every [`Browser`] starts its own chromedriver on its own free port with a fresh profile
//! directory, so tests may run in parallel. Every wait is bounded by [`crate::TIMEOUT`].
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! let browser = thywill_testkit::browser::Browser::start().await?;
//! browser.goto("http://127.0.0.1:10081/echo/").await?;
//! browser.wait_text("#status", "Connected").await?;
//! browser.close().await?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// How often waits re-check their condition.
const POLL: Duration = Duration::from_millis(50);

/// Chromium binaries looked for, in order (the first is Debian's).
const CHROMIUM_NAMES: &[&str] = &[
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];

/// Distinguishes profile directories of browsers started by one process.
static NEXT_PROFILE: AtomicU64 = AtomicU64::new(0);

/// A headless Chromium session with its own chromedriver process and profile directory.
/// [`Browser::close`] ends it politely; dropping it kills chromedriver (and its Chromium)
/// and removes the profile directory.
#[derive(Debug)]
pub struct Browser {
    client: Client,
    driver: Driver,
}

/// The chromedriver process and the temporary directory; cleaned up on drop.
#[derive(Debug)]
struct Driver {
    child: Option<Child>,
    dir: PathBuf,
}

impl Driver {
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            #[cfg(unix)]
            {
                // chromedriver runs in its own process group (see `spawn_driver`), which its
                // Chromium processes join: end the whole group, then reap chromedriver.
                if let Ok(pgid) = i32::try_from(child.id()) {
                    let _ = Command::new("kill")
                        .args(["-KILL", "--", &format!("-{pgid}")])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether Chromium and chromedriver are installed (`scripts/install-test-deps.sh` installs
/// them on Debian).
pub fn available() -> bool {
    chromium_path().is_some() && find_in_path("chromedriver").is_some()
}

fn chromium_path() -> Option<PathBuf> {
    CHROMIUM_NAMES.iter().find_map(|n| find_in_path(n))
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn spawn_driver(driver: &Path, port: u16, log: &Path) -> std::io::Result<Child> {
    let mut cmd = Command::new(driver);
    cmd.arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .arg(format!("--log-path={}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    cmd.spawn()
}

/// The last lines of chromedriver's log, for error messages.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium session
    /// with a fresh profile. Fails with a clear message when Chromium or chromedriver is
    /// missing.
    pub async fn start() -> anyhow::Result<Browser> {
        Self::start_with_args(&[]).await
    }

    /// Like [`Browser::start`], with extra Chromium command-line switches (for example
    /// `--ignore-certificate-errors` for a test certificate).
    pub async fn start_with_args(extra: &[&str]) -> anyhow::Result<Browser> {
        let chromium = chromium_path().ok_or_else(|| {
            anyhow!("chromium is not installed (or not in PATH): run scripts/install-test-deps.sh")
        })?;
        let chromedriver = find_in_path("chromedriver").ok_or_else(|| {
            anyhow!("chromedriver is not installed (or not in PATH): run scripts/install-test-deps.sh")
        })?;
        let dir = std::env::temp_dir().join(format!(
            "thywill-browser-{}-{}",
            std::process::id(),
            NEXT_PROFILE.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut driver = Driver { child: None, dir };

        // A free port may be taken by someone else before chromedriver binds it, and Chromium
        // occasionally fails to start on a loaded machine: try a few times, each attempt with
        // a fresh port, profile and log.
        let mut failures = Vec::new();
        for attempt in 1..=3 {
            let log = driver.dir.join(format!("chromedriver-{attempt}.log"));
            let profile = driver.dir.join(format!("profile-{attempt}"));
            match start_once(&mut driver, &chromedriver, &chromium, &log, &profile, extra).await {
                Ok(client) => return Ok(Browser { client, driver }),
                Err(e) => {
                    driver.kill();
                    eprintln!("headless Chromium, attempt {attempt} failed: {e:#}");
                    failures.push(format!(
                        "attempt {attempt}: {e:#}\nchromedriver log:\n{}",
                        log_tail(&log)
                    ));
                }
            }
        }
        bail!("headless Chromium did not start:\n{}", failures.join("\n"))
    }

    /// The WebDriver client, for anything this harness does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("cannot open {url}"))
    }

    /// Polls (bounded by [`crate::TIMEOUT`]) until the first element matching `css` has text
    /// containing `needle`.
    pub async fn wait_text(&self, css: &str, needle: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + crate::TIMEOUT;
        loop {
            let last = match self.text(css).await {
                Ok(t) if t.contains(needle) => return Ok(()),
                Ok(t) => format!("{t:?}"),
                Err(e) => format!("error: {e:#}"),
            };
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "`{css}` did not show {needle:?} within {:?}; last seen: {last}",
                    crate::TIMEOUT
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls (bounded by [`crate::TIMEOUT`]) until a JavaScript function body (such as
    /// `return Thywill.isConnected;`) evaluates to `true`.
    pub async fn wait_js(&self, expr: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + crate::TIMEOUT;
        loop {
            let last = match self.client.execute(expr, Vec::new()).await {
                Ok(Value::Bool(true)) => return Ok(()),
                Ok(v) => v.to_string(),
                Err(e) => format!("error: {e}"),
            };
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "`{expr}` was not true within {:?}; last result: {last}",
                    crate::TIMEOUT
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let el = self
            .client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("no `{css}`"))?;
        el.text().await.with_context(|| format!("no text of `{css}`"))
    }

    /// Types `text` into the first element matching `css` (after what it already holds).
    pub async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let el = self
            .client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("no `{css}`"))?;
        el.send_keys(text)
            .await
            .with_context(|| format!("cannot type into `{css}`"))
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let el = self
            .client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("no `{css}`"))?;
        el.click().await.with_context(|| format!("cannot click `{css}`"))
    }

    /// Saves a PNG screenshot of the window.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let png = self.client.screenshot().await.context("screenshot failed")?;
        std::fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Ends the session (Chromium exits), then stops chromedriver and removes the profile.
    pub async fn close(self) -> anyhow::Result<()> {
        let Browser { client, mut driver } = self;
        let closed = tokio::time::timeout(crate::TIMEOUT, client.close()).await;
        driver.kill();
        match closed {
            Ok(r) => r.context("closing the WebDriver session failed"),
            Err(_) => Err(anyhow!(
                "closing the WebDriver session took over {:?}",
                crate::TIMEOUT
            )),
        }
    }
}

/// Starts chromedriver and opens a session, all within [`crate::TIMEOUT`].
async fn start_once(
    driver: &mut Driver,
    chromedriver: &Path,
    chromium: &Path,
    log: &Path,
    profile: &Path,
    extra: &[&str],
) -> anyhow::Result<Client> {
    let port = crate::free_port();
    let child = spawn_driver(chromedriver, port, log)
        .with_context(|| format!("cannot run {}", chromedriver.display()))?;
    driver.child = Some(child);
    wait_for_driver(driver, port).await?;
    tokio::time::timeout(crate::TIMEOUT, session(port, chromium, profile, extra))
        .await
        .map_err(|_| anyhow!("no WebDriver session within {:?}", crate::TIMEOUT))?
}

/// Polls until chromedriver accepts connections on `port`, or exits, or the wait is over.
async fn wait_for_driver(driver: &mut Driver, port: u16) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + crate::TIMEOUT;
    loop {
        if let Some(Ok(Some(status))) = driver.child.as_mut().map(Child::try_wait) {
            bail!("chromedriver exited with {status} before listening on port {port}");
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "chromedriver did not listen on port {port} within {:?}",
                crate::TIMEOUT
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Opens a WebDriver session for headless Chromium with the profile directory `profile`.
async fn session(port: u16, chromium: &Path, profile: &Path, extra: &[&str]) -> anyhow::Result<Client> {
    let mut caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium.display().to_string(),
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1024,768",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    if let Some(Value::Array(args)) = caps.pointer_mut("/goog:chromeOptions/args") {
        args.extend(extra.iter().map(|a| Value::from(*a)));
    }
    let Value::Object(caps) = caps else {
        bail!("capabilities are not a JSON object");
    };
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .context("cannot open a WebDriver session")?;
    Ok(client)
}
