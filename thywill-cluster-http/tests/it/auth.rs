//! Member traffic is authenticated: requests without a valid, fresh signature are refused
//! with 401 and never reach the application; up-checks need none.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::ensure;
use reqwest::StatusCode;
use thywill_testkit::conformance::{Event, Recorder, Spec};

use crate::Ports;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_signature_are_refused() -> anyhow::Result<()> {
    let ports = Ports::default();
    let spec = Spec {
        cluster: "auth".into(),
        members: vec!["alpha".into(), "beta".into()],
        local: "beta".into(),
    };
    let addr = ports.members(&spec)[1].1;
    let beta = crate::member(&ports, &spec, Some(b"the right secret, 32 bytes long!"))?;
    let rec = Recorder::new();
    beta.start(rec.clone()).await?;

    let client = reqwest::Client::new();
    let url = format!("http://{addr}/task");
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let cases = [
        ("no signature", None),
        ("stale", Some(format!("1.{}", "00".repeat(32)))),
        ("malformed", Some(format!("{now}.zz"))),
        ("wrong key", Some(format!("{now}.{}", "ab".repeat(32)))),
    ];
    for (what, header) in cases {
        let mut req = client.post(&url).body(vec![1u8, 2, 3]);
        if let Some(h) = header {
            req = req.header("x-thywill-auth", h);
        }
        let r = req.send().await?;
        ensure!(r.status() == StatusCode::UNAUTHORIZED, "{what}: {}", r.status());
    }
    let alive = client.get(format!("http://{addr}/alive")).send().await?;
    ensure!(alive.status() == StatusCode::OK, "alive: {}", alive.status());
    ensure!(alive.text().await?.starts_with("beta\n"));
    let other = client.get(format!("http://{addr}/other")).send().await?;
    ensure!(other.status() == StatusCode::NOT_FOUND);
    ensure!(
        !rec.events().iter().any(|(_, e)| matches!(e, Event::Task { .. })),
        "a refused request got through"
    );
    beta.stop().await?;
    Ok(())
}

#[test]
fn a_member_beyond_loopback_needs_a_secret() -> anyhow::Result<()> {
    use thywill_cluster_http::{HttpCluster, HttpClusterConfig};
    let open = HttpClusterConfig::default().with_members_str("alpha=192.0.2.1:20091,beta=127.0.0.1:20092")?;
    ensure!(HttpCluster::new(open.clone().with_local("beta")?).is_err());
    let wide = HttpClusterConfig::default()
        .with_members_str("alpha=127.0.0.1:20091")?
        .with_listen(([0, 0, 0, 0], 20091).into());
    ensure!(HttpCluster::new(wide).is_err());
    ensure!(HttpCluster::new(open.with_secret(b"0123456789abcdef".to_vec())?).is_ok());
    Ok(())
}
