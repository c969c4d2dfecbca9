//! HTTPS and WSS served directly with rustls (warp 0.4 has no TLS of its own): a
//! tokio-rustls accept loop in front of the node's warp service, and an optional plain-HTTP
//! listener that redirects to HTTPS.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use warp::Filter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Reply;

use crate::{Edge, TransportError};

/// A server certificate chain and key, ready to serve.
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

fn tls_err(key: &'static str, e: impl std::fmt::Display) -> TransportError {
    TransportError::Config {
        key,
        message: e.to_string(),
    }
}

impl TlsConfig {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
    /// SEC1) from files.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TransportError> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| tls_err("tls.cert", format!("{}: {e}", cert.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| tls_err("tls.cert", format!("{}: {e}", cert.display())))?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| tls_err("tls.key", format!("{}: {e}", key.display())))?;
        Self::new(certs, key)
    }

    /// Parses a PEM certificate chain and key held in memory.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<Self, TransportError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<_, _>>()
            .map_err(|e| tls_err("tls.cert", e))?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| tls_err("tls.key", e))?;
        Self::new(certs, key)
    }

    fn new(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Self, TransportError> {
        if certs.is_empty() {
            return Err(tls_err("tls.cert", "no certificate in the PEM data"));
        }
        // The ring provider, passed explicitly: no process-wide default is needed.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err("tls", e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| tls_err("tls.key", e))?;
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            server: Arc::new(server),
        })
    }
}

impl TlsConfig {
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.server.clone())
    }
}

impl Edge {
    /// Serves the node's routes over TLS (HTTPS and WSS) on `listener` until
    /// [`Edge::shutdown`].
    pub async fn serve_tls(self, listener: TcpListener, tls: TlsConfig) {
        crate::serve::accept_loop(self, listener, Some(tls.acceptor())).await;
    }

    /// Binds `addr` and returns the bound address and the future that serves HTTPS until
    /// shutdown.
    pub async fn bind_tls(
        self,
        addr: SocketAddr,
        tls: TlsConfig,
    ) -> Result<(SocketAddr, impl Future<Output = ()> + Send + 'static), TransportError> {
        let (listener, local) = crate::routes::listen(addr)?;
        Ok((local, self.serve_tls(listener, tls)))
    }

    /// Binds `addr` for plain HTTP that redirects every request to the same path on HTTPS
    /// port `https_port` (301), until shutdown.
    pub async fn bind_https_redirect(
        self,
        addr: SocketAddr,
        https_port: u16,
    ) -> Result<(SocketAddr, impl Future<Output = ()> + Send + 'static), TransportError> {
        let (listener, local) = crate::routes::listen(addr)?;
        let node = self.clone();
        let redirect = warp::path::full()
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::optional::<String>("host"))
            .map(
                move |path: warp::path::FullPath, query: String, host: Option<String>| {
                    // Only to a host this node answers, spelled as a host name: never to
                    // whatever a request's `Host` says.
                    let Some(hostname) = crate::routes::redirect_host(&node, host.as_deref(), local) else {
                        return warp::reply::with_status("host not allowed", StatusCode::MISDIRECTED_REQUEST)
                            .into_response();
                    };
                    let query = if query.is_empty() {
                        String::new()
                    } else {
                        format!("?{query}")
                    };
                    let location = format!("https://{hostname}:{https_port}{}{query}", path.as_str());
                    let mut r = StatusCode::MOVED_PERMANENTLY.into_response();
                    if let Ok(v) = HeaderValue::from_str(&location) {
                        r.headers_mut().insert(header::LOCATION, v);
                    }
                    r
                },
            );
        // The node's own accept loop: the same deadlines and socket cap as every listener.
        let serving = crate::serve::serve_service(self, listener, None, warp::service(redirect));
        Ok((local, serving))
    }
}
