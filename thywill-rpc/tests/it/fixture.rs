//! A node serving a test application with functions, on a free loopback port.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thywill::rpc::{Registry, with_rpc};
use thywill::{AppContext, Application, Client, Message, Thywill};
use thywill_testkit::WsClient;
use tokio::sync::mpsc;

/// The application id of the test application.
pub(crate) const APP: &str = "calc";

/// Counts the ordinary messages it receives (RPC must never arrive here).
#[derive(Default)]
pub(crate) struct Recorder {
    pub(crate) received: Arc<AtomicUsize>,
}

impl Application for Recorder {
    async fn received(&self, _ctx: &AppContext, _client: &Client, _message: Message) {
        self.received.fetch_add(1, Ordering::SeqCst);
    }
}

/// A running node and what the tests observe of it.
pub(crate) struct Fixture {
    pub(crate) node: Thywill,
    pub(crate) addr: SocketAddr,
    pub(crate) received: Arc<AtomicUsize>,
    /// Connections refused by the permission hook.
    pub(crate) blocked: Arc<Mutex<HashSet<String>>>,
    /// Each call of `slow.forever` reports here when it starts.
    pub(crate) started: mpsc::UnboundedReceiver<()>,
    pub(crate) serving: tokio::task::JoinHandle<()>,
}

impl Fixture {
    pub(crate) async fn start() -> anyhow::Result<Fixture> {
        let blocked = Arc::new(Mutex::new(HashSet::<String>::new()));
        let (started_tx, started) = mpsc::unbounded_channel();
        let hook_blocked = blocked.clone();
        let registry = Registry::builder()
            // The original's functions.
            .function("multiplicative.multiplyByTwo", |x: f64| x * 2.0)
            .async_function("multiplicative.divideByTwo", |x: f64| async move {
                Ok::<_, Infallible>(x / 2.0)
            })
            .function("powers.square", |x: f64| x * x)
            .async_function("powers.squareRoot", |x: f64| async move {
                Ok::<_, Infallible>(x.sqrt())
            })
            // Test functions.
            .function("text.concat", |a: String, b: String, times: u8| {
                format!("{a}{b}").repeat(times.into())
            })
            .try_function("text.parse", |s: String| s.parse::<i64>())
            .function("fail.panic", |_: u8| -> u8 {
                panic!("deliberate panic in a test function")
            })
            .async_function("sleep.echo", |ms: u64, value: u64| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, Infallible>(value)
            })
            .async_function("slow.limited", || async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, Infallible>("never")
            })
            .async_function("slow.forever", move || {
                let _ = started_tx.send(());
                async {
                    std::future::pending::<()>().await;
                    Ok::<_, Infallible>(())
                }
            })
            .async_function_with_caller("who.am_i", |caller: Client, (): ()| async move {
                Ok::<_, Infallible>(caller.connection.to_string())
            })
            .function("admin.reset", || true)
            .timeout("slow.limited", Duration::from_millis(200))
            .timeout("slow.forever", Duration::from_secs(600))
            .permission(move |caller: &Client, name: &str| {
                let blocked = hook_blocked
                    .lock()
                    .map(|b| b.contains(caller.connection.as_str()))
                    .unwrap_or(true);
                !blocked && !name.starts_with("admin.")
            })
            .build()?;
        let recorder = Recorder::default();
        let received = recorder.received.clone();
        let node = Thywill::builder()
            .base_path("/t")?
            .application(APP, with_rpc(recorder, registry))
            .application("plain", Recorder::default())
            .build()
            .await?;
        let (addr, serving) = node.bind(([127, 0, 0, 1], 0).into()).await?;
        Ok(Fixture {
            node,
            addr,
            received,
            blocked,
            started,
            serving: tokio::spawn(serving),
        })
    }

    pub(crate) async fn client(&self) -> anyhow::Result<WsClient> {
        Ok(WsClient::connect(&format!("ws://{}/t/ws", self.addr)).await?)
    }

    pub(crate) fn block(&self, client: &WsClient) {
        if let Ok(mut b) = self.blocked.lock() {
            b.insert(client.connection.to_string());
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.node.shutdown();
        self.serving.abort();
    }
}
