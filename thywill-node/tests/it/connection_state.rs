//! Typed per-connection state of applications: set in `connection`, read in `received` and
//! `disconnection`, kept apart per connection and per application, dropped after the
//! disconnection; real WebSocket clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use thywill_core::protocol::ServerFrame;
use thywill_core::{
    AppContext, Application, ApplicationId, Client, ConnectionId, CoreError, DisconnectReason,
    DynApplication, Message,
};
use thywill_testkit::WsClient;
use thywill_transport::TransportConfig;
use tokio::sync::mpsc;

use crate::support::Fixture;

/// A connection's counter; counts the live ones so that a leak shows.
struct Count {
    n: u64,
    live: Arc<AtomicUsize>,
}

impl Drop for Count {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts the messages of each connection and echoes the count; reports the final count
/// from its `disconnection` hook.
struct Counter {
    live: Arc<AtomicUsize>,
    finals: mpsc::Sender<u64>,
}

impl Application for Counter {
    async fn connection(&self, ctx: &AppContext, client: &Client) {
        self.live.fetch_add(1, Ordering::SeqCst);
        let count = Count {
            n: 0,
            live: self.live.clone(),
        };
        ctx.set_state(client, count).expect("the connection is local");
    }

    async fn received(&self, ctx: &AppContext, client: &Client, _: Message) {
        let n = ctx.with_state(client, |c: &mut Count| {
            c.n += 1;
            c.n
        });
        let _ = ctx
            .send_to_connection(&client.connection, json!({ "n": n }))
            .await;
    }

    async fn disconnection(&self, ctx: &AppContext, client: &Client, _: DisconnectReason) {
        if let Some(n) = ctx.with_state(client, |c: &mut Count| c.n) {
            let _ = self.finals.try_send(n);
        }
    }
}

/// Another application on the same connections: sees none of the counter's state.
struct Peek;

impl Application for Peek {
    async fn received(&self, ctx: &AppContext, client: &Client, _: Message) {
        let n = ctx.with_state(client, |c: &mut Count| c.n);
        let _ = ctx
            .send_to_connection(&client.connection, json!({ "n": n }))
            .await;
    }
}

async fn ask(c: &mut WsClient, app: &str) -> anyhow::Result<Value> {
    c.send(app, json!({})).await?;
    match c.recv_within(Duration::from_secs(5)).await? {
        ServerFrame::Msg { data, .. } => Ok(data["n"].clone()),
        other => anyhow::bail!("not a msg: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connection_keeps_its_own_state_until_it_disconnects() -> anyhow::Result<()> {
    let live = Arc::new(AtomicUsize::new(0));
    let (finals, mut final_counts) = mpsc::channel(8);
    let apps: Vec<(ApplicationId, Arc<dyn DynApplication>)> = vec![
        (
            "counter".into(),
            Arc::new(Counter {
                live: live.clone(),
                finals,
            }),
        ),
        ("peek".into(), Arc::new(Peek)),
    ];
    let fx = Fixture::start_apps(TransportConfig::default().with_base_path("/t")?, None, apps).await?;
    let mut a = WsClient::connect(&fx.ws_url()).await?;
    let mut b = WsClient::connect(&fx.ws_url()).await?;

    for expected in 1..=3 {
        assert_eq!(ask(&mut a, "counter").await?, json!(expected));
    }
    assert_eq!(ask(&mut b, "counter").await?, json!(1));
    assert_eq!(ask(&mut a, "counter").await?, json!(4));
    // The state is the counter's: another application on the same connection has none.
    assert_eq!(ask(&mut a, "peek").await?, Value::Null);
    assert_eq!(fx.node.connection_states(), 2);
    assert_eq!(live.load(Ordering::SeqCst), 2);

    // A connection this member does not hold takes no state.
    let counter = fx
        .node
        .context(&ApplicationId::from("counter"))
        .ok_or_else(|| anyhow::anyhow!("no counter application"))?;
    let stranger = Client::new(ConnectionId::from("elsewhere"), "s".into(), "beta".into());
    assert!(matches!(
        counter.set_state(&stranger, 1u8),
        Err(CoreError::NotFound(_))
    ));
    assert_eq!(counter.with_state(&stranger, |n: &mut u8| *n), None);

    // The disconnection hook still reads the state; then the node drops it.
    a.close().await;
    let last = tokio::time::timeout(Duration::from_secs(5), final_counts.recv()).await?;
    assert_eq!(last, Some(4));
    tokio::time::timeout(Duration::from_secs(5), async {
        while fx.node.connection_states() != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await?;
    assert_eq!(
        live.load(Ordering::SeqCst),
        1,
        "the closed connection's state is dropped"
    );
    // The other connection's counter goes on.
    assert_eq!(ask(&mut b, "counter").await?, json!(2));

    b.close().await;
    let last = tokio::time::timeout(Duration::from_secs(5), final_counts.recv()).await?;
    assert_eq!(last, Some(2));
    tokio::time::timeout(Duration::from_secs(5), async {
        while fx.node.connection_states() != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await?;
    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "no state is left after the disconnections"
    );
    Ok(())
}
