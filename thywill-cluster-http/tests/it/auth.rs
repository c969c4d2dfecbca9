//! Member traffic is authenticated: a member never runs without a secret, and requests without
//! valid signed headers are refused with 401 and never reach the application; up-checks need
//! none. (Signed, oversized, slow and replayed requests: `src/tests_security.rs`.)

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::ensure;
use reqwest::StatusCode;
use thywill_cluster_http::{Error, HttpCluster, HttpClusterConfig};
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
    let beta = crate::member(&ports, &spec, b"the right secret, 32 bytes long!")?;
    let rec = Recorder::new();
    beta.start(rec.clone()).await?;

    let client = reqwest::Client::builder().no_proxy().build()?;
    let url = format!("http://{addr}/task");
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let signed = |sig: String| {
        vec![
            ("x-thywill-from", "alpha".to_owned()),
            ("x-thywill-incarnation", "1".to_owned()),
            ("x-thywill-to-incarnation", "1".to_owned()),
            ("x-thywill-seq", "1".to_owned()),
            ("x-thywill-timestamp", now.to_string()),
            ("x-thywill-body-sha256", "00".repeat(32)),
            ("x-thywill-signature", sig),
        ]
    };
    let cases = [
        ("no signature", vec![]),
        // The format before signed headers: timestamp and HMAC of the body.
        (
            "old format",
            vec![("x-thywill-auth", format!("{now}.{}", "ab".repeat(32)))],
        ),
        ("malformed", signed("zz".into())),
        ("wrong key", signed("ab".repeat(32))),
    ];
    for (what, headers) in cases {
        let mut req = client
            .post(&url)
            .header("content-type", "application/octet-stream")
            .body(vec![1u8, 2, 3]);
        for (k, v) in headers {
            req = req.header(k, v);
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
fn a_member_never_runs_without_a_secret() -> anyhow::Result<()> {
    let loopback = HttpClusterConfig::default()
        .with_members_str("alpha=127.0.0.1:20091,beta=127.0.0.1:20092")?
        .with_local("beta")?;
    let refused = HttpCluster::new(loopback.clone());
    ensure!(
        matches!(refused, Err(Error::MissingSecret)),
        "a loopback member without a secret was built: {refused:?}"
    );
    let message = Error::MissingSecret.to_string();
    ensure!(
        message.contains("with_secret") && message.contains("--cluster-secret"),
        "the error says how to set it: {message}"
    );
    let wide = HttpClusterConfig::default()
        .with_members_str("alpha=192.0.2.1:20091,beta=127.0.0.1:20092")?
        .with_listen(([0, 0, 0, 0], 20092).into());
    ensure!(HttpCluster::new(wide.clone()).is_err());
    ensure!(HttpCluster::new(loopback.with_secret(b"0123456789abcdef".to_vec())?).is_ok());
    ensure!(HttpCluster::new(wide.with_secret(b"0123456789abcdef".to_vec())?).is_ok());
    Ok(())
}
