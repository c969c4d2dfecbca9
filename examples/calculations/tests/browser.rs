//! The Calculations page in headless Chromium: typing into each row shows the right result,
//! a negative square root shows the error text, and a call pending when the server stops is
//! rejected with `dc`.

use std::convert::Infallible;
use std::net::SocketAddr;

use thywill::Thywill;
use thywill::rpc::{Registry, RpcOnly};
use thywill_testkit::browser::Browser;
use tokio::sync::mpsc;

/// WebDriver's Backspace key.
const BACKSPACE: &str = "\u{E003}";

struct Fixture {
    node: Thywill,
    addr: SocketAddr,
    /// Each call of `slow.forever` (application `slow`) reports here when it starts.
    started: mpsc::UnboundedReceiver<()>,
    serving: tokio::task::JoinHandle<()>,
}

impl Fixture {
    async fn start() -> anyhow::Result<Fixture> {
        let (tx, started) = mpsc::unbounded_channel();
        let slow = Registry::builder()
            .async_function("slow.forever", move || {
                let _ = tx.send(());
                async {
                    std::future::pending::<()>().await;
                    Ok::<(), Infallible>(())
                }
            })
            .build()?;
        let node = example_calculations::builder()?
            .application("slow", RpcOnly(slow))
            .build()
            .await?;
        let (addr, serving) = node.bind(([127, 0, 0, 1], 0).into()).await?;
        Ok(Fixture {
            node,
            addr,
            started,
            serving: tokio::spawn(serving),
        })
    }

    fn page(&self) -> String {
        format!("http://{}/calculations/", self.addr)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.node.shutdown();
        self.serving.abort();
    }
}

fn result_is(op: &str, text: &str, error: bool) -> String {
    format!(
        "const r = document.querySelector('li#{op} .result'); \
         return r.textContent === {text:?} && r.classList.contains('result-error') === {error};"
    )
}

async fn open_connected(browser: &Browser, f: &Fixture) -> anyhow::Result<()> {
    browser.goto(&f.page()).await?;
    browser.wait_text("#status", "[ Connected ]").await?;
    browser
        .wait_js("return Array.from(document.querySelectorAll('li.operation-wrapper input')).every(i => !i.disabled);")
        .await
}

#[tokio::test]
async fn typing_into_each_row_shows_its_result() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let browser = Browser::start().await?;
    let outcome = async {
        browser.goto(&f.page()).await?;
        anyhow::ensure!(browser.text("#title").await? == "Thywill: Calculations Application");
        open_connected(&browser, &f).await?;

        browser.type_into("li#multiplyByTwo input", "10").await?;
        browser.wait_js(&result_is("multiplyByTwo", "20", false)).await?;
        browser.type_into("li#divideByTwo input", "5").await?;
        browser.wait_js(&result_is("divideByTwo", "2.5", false)).await?;
        browser.type_into("li#square input", "12").await?;
        browser.wait_js(&result_is("square", "144", false)).await?;
        browser.type_into("li#squareRoot input", "2").await?;
        browser.wait_js(&result_is("squareRoot", "1.4142", false)).await?;

        // A negative number has no real square root: the original's error text.
        browser
            .type_into("li#squareRoot input", &format!("{BACKSPACE}-4"))
            .await?;
        browser
            .wait_js(&result_is("squareRoot", "Invalid calculation.", true))
            .await?;
        // Latest value wins: several quick keystrokes end with the last value's result.
        browser
            .type_into("li#squareRoot input", &format!("{BACKSPACE}{BACKSPACE}81"))
            .await?;
        browser.wait_js(&result_is("squareRoot", "9", false)).await?;
        browser
            .type_into(
                "li#multiplyByTwo input",
                &format!("{BACKSPACE}{BACKSPACE}1{BACKSPACE}2.5"),
            )
            .await?;
        browser.wait_js(&result_is("multiplyByTwo", "5", false)).await?;
        anyhow::Ok(())
    }
    .await;
    browser.close().await?;
    outcome
}

#[tokio::test]
async fn a_call_pending_when_the_server_stops_is_rejected_with_dc() -> anyhow::Result<()> {
    let mut f = Fixture::start().await?;
    let browser = Browser::start().await?;
    let outcome = async {
        open_connected(&browser, &f).await?;
        browser
            .client()
            .execute(
                "window.pendingOutcome = null; \
                 Thywill.rpc('slow', 'slow.forever', [], {timeout: 0}).then( \
                   () => { window.pendingOutcome = 'resolved'; }, \
                   (e) => { window.pendingOutcome = e.code; });",
                Vec::new(),
            )
            .await?;
        tokio::time::timeout(thywill_testkit::TIMEOUT, f.started.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the slow function never started"))?;
        f.node.shutdown();
        browser.wait_js("return window.pendingOutcome === 'dc';").await?;
        browser.wait_text("#status", "[ Disconnected ]").await?;
        browser
            .wait_js("return document.querySelector('li#square input').disabled;")
            .await?;
        anyhow::Ok(())
    }
    .await;
    browser.close().await?;
    outcome
}
