//! Messages go where they should, in order, and none is lost.

use serde_json::json;
use thywill_core::protocol::ServerFrame;
use thywill_testkit::WsClient;

use crate::support::Fixture;

fn msg_data(f: &ServerFrame) -> Option<(&str, u64, &serde_json::Value)> {
    match f {
        ServerFrame::Msg { app, seq, data, .. } => Some((app.as_str(), *seq, data)),
        _ => None,
    }
}

#[tokio::test]
async fn echo_round_trip_keeps_data_and_metadata() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    match &c.welcome {
        ServerFrame::Welcome { v, member, apps, .. } => {
            assert_eq!(*v, 1);
            assert_eq!(member.as_str(), "alpha");
            assert_eq!(apps.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    c.send_text(r#"{"t":"msg","app":"echo","data":{"text":"hello"},"_":{"k":"v"}}"#)
        .await?;
    let f = c.recv().await?;
    match f {
        ServerFrame::Msg {
            app, seq, data, meta, ..
        } => {
            assert_eq!(app.as_str(), "echo");
            assert_eq!(seq, 1);
            assert_eq!(data, json!({"text": "hello"}));
            assert_eq!(meta.get("k"), Some(&json!("v")));
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn two_applications_share_one_connection() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    let mut c = WsClient::connect(&fx.ws_url()).await?;
    c.send("echo", json!("a")).await?;
    c.send("shout", json!("b")).await?;
    c.send("echo", json!("c")).await?;
    let mut got = Vec::new();
    for _ in 0..3 {
        let f = c.recv().await?;
        let (app, seq, data) = msg_data(&f).ok_or_else(|| anyhow::anyhow!("not a msg: {f:?}"))?;
        got.push((app.to_owned(), seq, data.clone()));
    }
    assert_eq!(
        got,
        vec![
            ("echo".into(), 1, json!("a")),
            ("shout".into(), 2, json!("B")),
            ("echo".into(), 3, json!("c")),
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_each_echo_twenty_messages_without_loss() -> anyhow::Result<()> {
    let fx = Fixture::default().await?;
    let url = fx.ws_url();
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..1000u32 {
        let url = url.clone();
        tasks.spawn(async move {
            let mut c = WsClient::connect(&url).await?;
            for i in 0..20u32 {
                c.send("echo", json!([client, i])).await?;
            }
            for i in 0..20u64 {
                let f = c.recv().await?;
                match f {
                    ServerFrame::Msg { seq, data, .. } => {
                        anyhow::ensure!(seq == i + 1, "client {client}: seq {seq} at {i}");
                        anyhow::ensure!(data == json!([client, i]), "client {client}: got {data} at {i}");
                    }
                    other => anyhow::bail!("client {client}: unexpected {other:?}"),
                }
            }
            c.close().await;
            Ok::<u32, anyhow::Error>(20)
        });
    }
    let mut received = 0;
    while let Some(r) = tasks.join_next().await {
        received += r??;
    }
    assert_eq!(received, 20_000);
    Ok(())
}
