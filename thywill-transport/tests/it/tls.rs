//! HTTPS and WSS with a certificate made in the test; plain HTTP redirected to HTTPS.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use thywill_core::protocol::ServerFrame;
use thywill_transport::TlsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::{Fixture, http_get};

/// A CA and a leaf for `localhost` / `127.0.0.1` signed by it (webpki refuses a self-signed
/// leaf that is its own CA).
fn certificates(dir: &std::path::Path) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf, String)> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "thywill test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, leaf_cert.pem())?;
    std::fs::write(&key, leaf_key.serialize_pem())?;
    Ok((cert, key, ca_cert.pem()))
}

fn client_config(ca_pem: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[tokio::test]
async fn wss_echo_and_https_pages_work_and_http_is_redirected() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("thywill-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (cert, key, ca) = certificates(&dir)?;
    let tls = TlsConfig::from_pem_files(&cert, &key)?;
    assert!(TlsConfig::from_pem_files(dir.join("missing.pem"), &key).is_err());

    let fx = Fixture::default().await?;
    let (addr, serving) = fx.edge.clone().bind_tls(([127, 0, 0, 1], 0).into(), tls).await?;
    let serving = tokio::spawn(serving);
    let (plain, redirecting) = fx
        .edge
        .clone()
        .bind_https_redirect(([127, 0, 0, 1], 0).into(), addr.port())
        .await?;
    let redirecting = tokio::spawn(redirecting);
    let client = client_config(&ca)?;

    // WSS echo.
    let url = format!("wss://localhost:{}/t/ws", addr.port());
    let (mut ws, _) = tokio::time::timeout(
        thywill_testkit::TIMEOUT,
        tokio_tungstenite::connect_async_tls_with_config(
            url,
            None,
            false,
            Some(Connector::Rustls(client.clone())),
        ),
    )
    .await??;
    let welcome = ws.next().await;
    assert!(matches!(welcome, Some(Ok(WsMessage::Text(_)))), "{welcome:?}");
    ws.send(WsMessage::text(r#"{"t":"msg","app":"echo","data":"secure"}"#))
        .await?;
    match tokio::time::timeout(thywill_testkit::TIMEOUT, ws.next()).await? {
        Some(Ok(WsMessage::Text(t))) => match ServerFrame::decode(t.as_str())? {
            ServerFrame::Msg { data, .. } => assert_eq!(data, serde_json::json!("secure")),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }

    // HTTPS page.
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls_stream = tokio_rustls::TlsConnector::from(client)
        .connect(
            rustls_pki_types::ServerName::try_from("localhost")?.to_owned(),
            tcp,
        )
        .await?;
    tls_stream
        .write_all(b"GET /t/alive HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut page = Vec::new();
    let _ = tokio::time::timeout(thywill_testkit::TIMEOUT, tls_stream.read_to_end(&mut page)).await?;
    let page = String::from_utf8_lossy(&page);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");

    // Plain HTTP is redirected.
    let r = http_get(plain, "/t/alive?x=1", "").await?;
    assert!(r.starts_with("HTTP/1.1 301"), "{r}");
    assert!(
        r.contains(&format!(
            "location: https://127.0.0.1:{}/t/alive?x=1",
            addr.port()
        )),
        "{r}"
    );
    // Never to whatever host a request names: a foreign host is refused, not redirected to.
    let foreign = {
        let mut s = tokio::net::TcpStream::connect(plain).await?;
        s.write_all(b"GET /t/alive HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = String::new();
        tokio::time::timeout(thywill_testkit::TIMEOUT, s.read_to_string(&mut out)).await??;
        out
    };
    assert!(foreign.starts_with("HTTP/1.1 421"), "{foreign}");
    assert!(!foreign.to_ascii_lowercase().contains("location:"), "{foreign}");

    fx.edge.shutdown();
    tokio::time::timeout(thywill_testkit::TIMEOUT, serving).await??;
    tokio::time::timeout(thywill_testkit::TIMEOUT, redirecting).await??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
