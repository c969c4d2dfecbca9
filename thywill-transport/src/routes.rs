//! The HTTP side of a node: the WebSocket endpoint, the health route and every stored
//! resource under the base path. Anything else is rejected as "not found" so that the host
//! application's other warp routes can answer it.

use std::future::Future;
use std::net::SocketAddr;

use thywill_core::{Resource, ResourceKind, SessionId, attr};
use warp::filters::BoxedFilter;
use warp::http::request::Parts;
use warp::http::{HeaderValue, StatusCode, header};
use warp::path::FullPath;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::socket::UpgradeSlot;
use crate::{AllowedHosts, AllowedOrigins, Edge, MetricsAccess, TransportError};

fn exact_path(path: String) -> BoxedFilter<()> {
    warp::path::full()
        .and_then(move |p: FullPath| {
            let ok = p.as_str() == path;
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(warp::reject::not_found())
                }
            }
        })
        .untuple_one()
        .boxed()
}

/// A stable 64-bit FNV-1a hash, so that every member computes the same ETag.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The scheme a browser used to reach this node: `https` over TLS, or when a proxy in front
/// says so (`X-Forwarded-Proto`, which a page's script cannot set), else `http`.
fn request_scheme(addr: Option<&crate::serve::PeerAddr>, forwarded_proto: Option<&str>) -> &'static str {
    let forwarded_https = forwarded_proto
        .and_then(|p| p.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    if addr.is_some_and(|a| a.tls) || forwarded_https {
        "https"
    } else {
        "http"
    }
}

/// What a WebSocket handshake is checked against.
struct Handshake<'a> {
    origin: Option<&'a str>,
    host: Option<&'a str>,
    scheme: &'static str,
}

/// Why a WebSocket may not open now (a response to send instead), if it may not: a foreign
/// origin, a draining node, the connection limit.
fn refuse_socket(node: &Edge, hs: &Handshake<'_>) -> Option<Response> {
    let (origin, host) = (hs.origin, hs.host);
    if !origin_allowed(&node.config().origins, origin, host, hs.scheme) {
        tracing::warn!(?origin, ?host, "websocket refused: origin not allowed");
        return Some(warp::reply::with_status("origin not allowed", StatusCode::FORBIDDEN).into_response());
    }
    if node.is_shutting_down() {
        return Some(
            warp::reply::with_status("shutting down", StatusCode::SERVICE_UNAVAILABLE).into_response(),
        );
    }
    if node.connection_count() >= node.config().max_connections {
        tracing::warn!("websocket refused: connection limit reached");
        return Some(
            warp::reply::with_status("too many connections", StatusCode::SERVICE_UNAVAILABLE).into_response(),
        );
    }
    None
}

/// The answer to a WebSocket over the socket cap (another server accepted the socket).
fn sockets_refused(node: &Edge) -> Response {
    node.inner.metrics.sockets_refused.inc();
    tracing::warn!(
        max_sockets = node.config().max_sockets,
        "websocket refused: too many open sockets"
    );
    warp::reply::with_status("too many sockets", StatusCode::SERVICE_UNAVAILABLE).into_response()
}

fn origin_allowed(policy: &AllowedOrigins, origin: Option<&str>, host: Option<&str>, scheme: &str) -> bool {
    let Some(origin) = origin else {
        // Browsers always send Origin on WebSocket handshakes; other clients may not.
        return true;
    };
    match policy {
        AllowedOrigins::Any => true,
        AllowedOrigins::List(list) => list
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin)),
        AllowedOrigins::SameHost => {
            // Scheme and host both: a page served over plain HTTP (which anyone on the path
            // can alter) may not open the socket of the HTTPS site, nor the other way round.
            let Some((origin_scheme, origin_host)) = origin.split_once("://") else {
                return false;
            };
            origin_scheme.eq_ignore_ascii_case(scheme)
                && host.is_some_and(|h| h.eq_ignore_ascii_case(origin_host))
        }
    }
}

/// The host name of a `Host` header, without its port (and without the brackets of an IPv6
/// literal), lowercased.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else {
        host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    name.to_ascii_lowercase()
}

/// Whether a host name is a loopback name: `localhost` (and `*.localhost`), `127.0.0.0/8`, `::1`.
fn is_loopback_name(name: &str) -> bool {
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether a request's `Host` may be answered (see [`AllowedHosts`]); `local` is the
/// listener's address when the node's own accept loop serves it; `proxied` whether the
/// request came through a proxy (it carries `X-Forwarded-For`).
fn host_allowed(
    policy: &AllowedHosts,
    host: Option<&str>,
    local: Option<std::net::SocketAddr>,
    proxied: bool,
) -> bool {
    match policy {
        AllowedHosts::Any => true,
        AllowedHosts::Default => match local {
            Some(addr) if addr.ip().is_loopback() => {
                proxied || host.is_some_and(|h| is_loopback_name(&host_name(h)))
            }
            _ => true,
        },
        AllowedHosts::List(list) => host.is_some_and(|h| {
            let name = host_name(h);
            list.iter().any(|allowed| allowed.eq_ignore_ascii_case(&name))
        }),
    }
}

/// The host name an HTTPS redirect may name for a request with `host` on a listener at
/// `local`: the request's host name when the node answers it and it is a plain host name
/// (letters, digits, `-`, `.`) or an IP literal (IPv6 in brackets); else `None`.
pub(crate) fn redirect_host(node: &Edge, host: Option<&str>, local: std::net::SocketAddr) -> Option<String> {
    let host = host?;
    if !host_allowed(&node.config().allowed_hosts, Some(host), Some(local), false) {
        return None;
    }
    let name = host_name(host);
    if let Ok(std::net::IpAddr::V6(ip)) = name.parse::<std::net::IpAddr>() {
        return Some(format!("[{ip}]"));
    }
    let plain = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    plain.then_some(name)
}

/// Refuses (421) requests whose `Host` the node does not answer.
fn host_guard(node: &Edge) -> BoxedFilter<()> {
    let node = node.clone();
    warp::header::optional::<String>("host")
        .and(warp::ext::optional::<crate::serve::PeerAddr>())
        .and(warp::header::optional::<String>("x-forwarded-for"))
        .and(warp::path::full())
        .and_then(
            move |host: Option<String>,
                  addr: Option<crate::serve::PeerAddr>,
                  forwarded: Option<String>,
                  path: FullPath| {
                // A page may add `X-Forwarded-For` to its own requests (not to a WebSocket
                // handshake): the metrics never take it as a sign of a proxy.
                let metrics = path.as_str() == node.config().path("metrics");
                let proxied = forwarded.is_some() && !metrics;
                let allowed = host_allowed(
                    &node.config().allowed_hosts,
                    host.as_deref(),
                    addr.and_then(|a| a.local),
                    proxied,
                );
                async move {
                    if allowed {
                        Ok(())
                    } else {
                        tracing::warn!(?host, "request refused: host not allowed");
                        Err(warp::reject::custom(HostRefused))
                    }
                }
            },
        )
        .untuple_one()
        .boxed()
}

/// A request for a host this node does not answer.
#[derive(Debug)]
struct HostRefused;

impl warp::reject::Reject for HostRefused {}

/// Turns a [`HostRefused`] rejection into 421 Misdirected Request.
async fn refused_host(rejection: warp::Rejection) -> Result<Response, warp::Rejection> {
    if rejection.find::<HostRefused>().is_some() {
        Ok(warp::reply::with_status("host not allowed", StatusCode::MISDIRECTED_REQUEST).into_response())
    } else {
        Err(rejection)
    }
}

/// Whether an `If-None-Match` header matches `etag` (weak comparison, as RFC 9110 asks for
/// conditional GET).
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let bare = etag.trim_start_matches("W/");
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == bare)
}

/// The stored content coding to serve: the first of `available` (the resource's
/// [`attr::ENCODINGS`], in the server's order of preference) that `Accept-Encoding` accepts.
fn negotiate<'a>(accept: Option<&str>, available: &'a str) -> Option<&'a str> {
    let accept = accept?;
    let mut star: Option<bool> = None;
    let mut listed: Vec<(String, bool)> = Vec::new();
    for part in accept.split(',') {
        let mut fields = part.split(';');
        let coding = fields.next().unwrap_or("").trim().to_ascii_lowercase();
        if coding.is_empty() {
            continue;
        }
        let q_zero = fields.any(|f| {
            let f = f.trim();
            f.strip_prefix("q=")
                .or_else(|| f.strip_prefix("Q="))
                .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        if coding == "*" {
            star = Some(!q_zero);
        } else {
            listed.push((coding, !q_zero));
        }
    }
    available.split(',').map(str::trim).find(|c| {
        match listed
            .iter()
            .find(|(l, _)| l == c || (*c == "gzip" && l == "x-gzip"))
        {
            Some((_, ok)) => *ok,
            None => star == Some(true),
        }
    })
}

/// Serves a stored resource (or one of its precompressed variants) with its ETag,
/// `Cache-Control` (default `no-cache`: revalidate) and content coding; answers 304 when the
/// browser's copy is current.
fn resource_response(resource: &Resource, if_none_match: Option<&str>) -> Response {
    let etag = match resource.attribute(attr::ETAG) {
        Some(tag) => tag.to_owned(),
        None => format!("\"{:016x}\"", fnv1a(&resource.body)),
    };
    let negotiated =
        resource.attribute(attr::ENCODINGS).is_some() || resource.attribute(attr::CONTENT_ENCODING).is_some();
    let cache = resource
        .attribute(attr::CACHE_CONTROL)
        .and_then(|v| HeaderValue::from_str(v).ok())
        .unwrap_or(HeaderValue::from_static("no-cache"));
    let mut r = if if_none_match.is_some_and(|v| etag_matches(v, &etag)) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = resource.body.to_vec().into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(resource.kind.mime()),
        );
        if let Some(coding) = resource
            .attribute(attr::CONTENT_ENCODING)
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            h.insert(header::CONTENT_ENCODING, coding);
        }
        if let Some(id) = resource
            .template_id
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            h.insert("x-thywill-template-id", id);
        }
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        r
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, cache);
    if negotiated {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    r
}

/// The upgrade request as the authentication hook sees it: method, URI (path and query) and
/// headers, without a body.
fn request_parts() -> BoxedFilter<(Parts,)> {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .map(
            |method: warp::http::Method,
             path: warp::path::FullPath,
             query: String,
             headers: warp::http::HeaderMap| {
                let mut request = warp::http::Request::new(());
                *request.method_mut() = method;
                let uri = if query.is_empty() {
                    path.as_str().to_owned()
                } else {
                    format!("{}?{query}", path.as_str())
                };
                // The path and query came from a parsed request URI: they parse again.
                if let Ok(uri) = uri.parse() {
                    *request.uri_mut() = uri;
                }
                *request.headers_mut() = headers;
                request.into_parts().0
            },
        )
        .boxed()
}

/// Runs the application's authentication hook, if any, on a handshake that passed the
/// other checks: the connection's identity, or the response that refuses it.
async fn authenticate(node: &Edge, parts: &Parts) -> Result<Option<thywill_core::Identity>, Response> {
    let Some(hook) = node.config().authenticator.as_ref() else {
        return Ok(None);
    };
    hook.authenticate(parts, node.config().handshake_timeout)
        .await
        .map_err(|refusal| {
            tracing::info!(
                status = refusal.status(),
                reason = refusal.reason(),
                "websocket refused by the authentication hook"
            );
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::FORBIDDEN);
            let mut r = warp::reply::with_status(refusal.reason().to_owned(), status).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        })
}

/// The request headers a WebSocket handshake is checked with.
struct HandshakeHeaders {
    origin: Option<String>,
    host: Option<String>,
    cookie: Option<String>,
    scheme: &'static str,
    /// The client's address, when the node's own accept loop serves the request.
    peer: Option<SocketAddr>,
}

impl HandshakeHeaders {
    /// What the connection keeps of its handshake.
    fn into_handshake(self) -> Box<crate::connection::Handshake> {
        Box::new(crate::connection::Handshake {
            cookie: self.cookie,
            peer: self.peer,
            origin: self.origin,
            identity: None,
        })
    }

    fn checked(&self) -> Handshake<'_> {
        Handshake {
            origin: self.origin.as_deref(),
            host: self.host.as_deref(),
            scheme: self.scheme,
        }
    }
}

fn handshake_headers() -> BoxedFilter<(HandshakeHeaders,)> {
    warp::header::optional::<String>("origin")
        .and(warp::header::optional::<String>("host"))
        .and(cookies())
        .and(warp::header::optional::<String>("x-forwarded-proto"))
        .and(warp::ext::optional::<crate::serve::PeerAddr>())
        .map(
            |origin, host, cookie, proto: Option<String>, addr: Option<crate::serve::PeerAddr>| {
                HandshakeHeaders {
                    origin,
                    host,
                    cookie,
                    scheme: request_scheme(addr.as_ref(), proto.as_deref()),
                    peer: addr.map(|a| a.peer),
                }
            },
        )
        .boxed()
}

/// Every `Cookie` header of a request joined into one (HTTP/2 may send each cookie in a
/// field of its own), or `None` without any.
fn cookies() -> BoxedFilter<(Option<String>,)> {
    warp::header::headers_cloned()
        .map(|headers: warp::http::HeaderMap| {
            let parts: Vec<&str> = headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            if parts.is_empty() {
                None
            } else {
                Some(parts.join("; "))
            }
        })
        .boxed()
}

/// The request headers that resource serving looks at.
struct ResourceRequest {
    if_none_match: Option<String>,
    cookie: Option<String>,
    accept_encoding: Option<String>,
}

fn resource_headers() -> BoxedFilter<(ResourceRequest,)> {
    warp::header::optional::<String>("if-none-match")
        .and(cookies())
        .and(warp::header::optional::<String>("accept-encoding"))
        .map(|if_none_match, cookie, accept_encoding| ResourceRequest {
            if_none_match,
            cookie,
            accept_encoding,
        })
        .boxed()
}

/// Loads the representation of `resource` to serve for `Accept-Encoding`: a precompressed
/// variant when the browser accepts one that is stored and current, else the resource.
async fn representation(node: &Edge, resource: Resource, accept: Option<&str>) -> Resource {
    let Some(coding) = resource
        .attribute(attr::ENCODINGS)
        .and_then(|list| negotiate(accept, list))
    else {
        return resource;
    };
    let key = Resource::variant_key(&resource.client_path, coding);
    match node.resources().load(&key).await {
        Ok(Some(v))
            if v.attribute(attr::VARIANT_OF).is_some()
                && v.attribute(attr::VARIANT_OF) == resource.attribute(attr::ETAG) =>
        {
            v
        }
        Ok(_) => resource,
        Err(e) => {
            tracing::warn!(path = %resource.client_path, coding, error = %e, "variant not loaded; serving identity");
            resource
        }
    }
}

/// Serves a page, issuing a session cookie when sessions are on and the browser has none.
async fn page_response(node: &Edge, page: &Resource, inm: Option<&str>, cookie: Option<&str>) -> Response {
    let Some(sessions) = node.sessions() else {
        return resource_response(page, inm);
    };
    if sessions.resolve(cookie).await.is_ok() {
        return resource_response(page, inm);
    }
    match sessions.create().await {
        Ok(id) => {
            // A new session must reach the browser: never answer 304 here.
            let mut r = resource_response(page, None);
            let path = node.config().base_path().to_owned();
            if let Ok(v) = HeaderValue::from_str(&sessions.config().set_cookie(&id, &path)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot create a session");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

impl Edge {
    /// A warp filter giving ordinary routes the browser's session, the same one its
    /// WebSocket is bound to: `None` without sessions or without a valid session cookie.
    pub fn session(&self) -> BoxedFilter<(Option<SessionId>,)> {
        let node = self.clone();
        cookies()
            .and_then(move |cookie: Option<String>| {
                let node = node.clone();
                async move {
                    let id = match node.sessions() {
                        Some(s) => s.resolve(cookie.as_deref()).await.ok(),
                        None => None,
                    };
                    Ok::<_, std::convert::Infallible>(id)
                }
            })
            .boxed()
    }

    /// The node's warp routes: `<base>/ws`, `<base>/alive` and every stored resource.
    /// Combine them with your own routes with `.or(...)`.
    pub fn routes(&self) -> BoxedFilter<(Response,)> {
        let cfg = self.config().clone();

        // `ThywillService` leaves the upgrade in an `UpgradeSlot`: the socket is built here,
        // with a small read buffer. Served by warp's own server, warp upgrades.
        let node = self.clone();
        let own = warp::get()
            .and(exact_path(cfg.path("ws")))
            .and(warp::ext::get::<UpgradeSlot>())
            .and(warp::header::optional::<String>("connection"))
            .and(warp::header::optional::<String>("upgrade"))
            .and(warp::header::optional::<String>("sec-websocket-version"))
            .and(warp::header::optional::<String>("sec-websocket-key"))
            .and(handshake_headers())
            .and(request_parts())
            .then(
                move |slot: UpgradeSlot,
                      connection: Option<String>,
                      upgrade: Option<String>,
                      version: Option<String>,
                      key: Option<String>,
                      hs: HandshakeHeaders,
                      parts: Parts| {
                    let node = node.clone();
                    async move {
                        let is_upgrade = connection
                            .as_deref()
                            .is_some_and(|c| c.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
                            && upgrade
                                .as_deref()
                                .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
                        let (Some(key), true) = (key, is_upgrade) else {
                            return warp::reply::with_status(
                                "expected a WebSocket upgrade",
                                StatusCode::BAD_REQUEST,
                            )
                            .into_response();
                        };
                        if version.as_deref() != Some("13") {
                            let mut r = warp::reply::with_status(
                                "unsupported WebSocket version",
                                StatusCode::UPGRADE_REQUIRED,
                            )
                            .into_response();
                            r.headers_mut()
                                .insert("sec-websocket-version", HeaderValue::from_static("13"));
                            return r;
                        }
                        if let Some(refused) = refuse_socket(&node, &hs.checked()) {
                            return refused;
                        }
                        let identity = match authenticate(&node, &parts).await {
                            Ok(identity) => identity,
                            Err(refused) => return refused,
                        };
                        // A socket another server accepted takes its own place under the
                        // socket cap; the edge's accept loop holds one for each of its own,
                        // which the WebSocket's task takes over.
                        let place = if slot.foreign() {
                            match node.socket_place() {
                                Some(place) => Some(place),
                                None => return sockets_refused(&node),
                            }
                        } else {
                            slot.take_place()
                        };
                        let Some(pending) = slot.take() else {
                            return warp::reply::with_status("not upgradable", StatusCode::BAD_REQUEST)
                                .into_response();
                        };
                        let node = node.clone();
                        let limit = node.config().max_message_size;
                        let deadline = node.config().handshake_timeout;
                        let mut handshake = hs.into_handshake();
                        handshake.identity = identity;
                        let task = upgrade_and_run(node, pending, limit, deadline, handshake, place);
                        // What an idle connection costs starts here (see docs/PERFORMANCE.md).
                        tracing::trace!(bytes = std::mem::size_of_val(&task), "connection task future");
                        tokio::spawn(task);
                        let accept =
                            tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
                        let mut r = warp::reply::with_status(warp::reply(), StatusCode::SWITCHING_PROTOCOLS)
                            .into_response();
                        let h = r.headers_mut();
                        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                        if let Ok(v) = HeaderValue::from_str(&accept) {
                            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
                        }
                        r
                    }
                },
            );
        let node = self.clone();
        let by_warp = warp::get()
            .and(exact_path(cfg.path("ws")))
            .and(warp::ws())
            .and(handshake_headers())
            .and(request_parts())
            .then(move |ws: warp::ws::Ws, hs: HandshakeHeaders, parts: Parts| {
                let node = node.clone();
                async move {
                    if let Some(refused) = refuse_socket(&node, &hs.checked()) {
                        return refused;
                    }
                    let identity = match authenticate(&node, &parts).await {
                        Ok(identity) => identity,
                        Err(refused) => return refused,
                    };
                    let limit = node.config().max_message_size;
                    let node = node.clone();
                    let mut handshake = hs.into_handshake();
                    handshake.identity = identity;
                    ws.max_message_size(limit.saturating_mul(2))
                        .max_frame_size(limit.saturating_mul(2))
                        .on_upgrade(move |socket| async move {
                            let mut ws = crate::socket::from_warp(socket);
                            crate::connection::run(node, &mut ws, handshake).await;
                        })
                        .into_response()
                }
            });
        let ws = own.or(by_warp).unify();

        let node = self.clone();
        let alive = warp::get().and(exact_path(cfg.path("alive"))).map(move || {
            let body = serde_json::json!({
                "alive": true,
                "member": node.member().as_str(),
                "connections": node.connection_count(),
                "draining": node.is_shutting_down(),
            });
            let mut r = warp::reply::json(&body).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        });

        let node = self.clone();
        let ready = warp::get().and(exact_path(cfg.path("ready"))).map(move || {
            let ready = node.is_ready();
            let body = serde_json::json!({ "ready": ready, "member": node.member().as_str() });
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut r = warp::reply::with_status(warp::reply::json(&body), status).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        });

        let node = self.clone();
        let metrics = warp::get()
            .and(exact_path(cfg.path("metrics")))
            .and(warp::ext::optional::<crate::serve::PeerAddr>())
            .and_then(move |remote: Option<crate::serve::PeerAddr>| {
                let node = node.clone();
                async move {
                    let allowed = match node.config().metrics {
                        MetricsAccess::Off => false,
                        MetricsAccess::Public => true,
                        MetricsAccess::Loopback => remote.is_some_and(|a| a.peer.ip().is_loopback()),
                    };
                    if !allowed {
                        return Err(warp::reject::not_found());
                    }
                    let mut r = node.metrics_text().into_response();
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    Ok(r)
                }
            });

        let node = self.clone();
        let base = cfg.base_path().to_owned();
        let resources = warp::get()
            .or(warp::head())
            .unify()
            .and(warp::path::full())
            .and(resource_headers())
            .and_then(move |path: FullPath, req: ResourceRequest| {
                let node = node.clone();
                let base = base.clone();
                async move {
                    let path = path.as_str();
                    if base != "/" && path == base {
                        let to = format!("{base}/");
                        return match warp::http::Uri::try_from(to) {
                            Ok(uri) => Ok(warp::redirect::see_other(uri).into_response()),
                            Err(_) => Err(warp::reject::not_found()),
                        };
                    }
                    let accept = req.accept_encoding.as_deref();
                    let loaded = match node.resources().load(path).await {
                        Ok(Some(r)) => Ok(Some(representation(&node, r, accept).await)),
                        other => other,
                    };
                    let inm = req.if_none_match.as_deref();
                    match loaded {
                        Ok(Some(r)) if r.kind == ResourceKind::Html => {
                            Ok(page_response(&node, &r, inm, req.cookie.as_deref()).await)
                        }
                        Ok(Some(r)) => Ok(resource_response(&r, inm)),
                        Ok(None) => Err(warp::reject::not_found()),
                        Err(e) => {
                            tracing::error!(%path, error = %e, "resource store failed");
                            Ok(StatusCode::INTERNAL_SERVER_ERROR.into_response())
                        }
                    }
                }
            });

        host_guard(self)
            .and(
                ws.or(alive)
                    .unify()
                    .or(ready)
                    .unify()
                    .or(metrics)
                    .unify()
                    .or(resources)
                    .unify(),
            )
            .recover(refused_host)
            .unify()
            .boxed()
    }

    /// Runs one WebSocket connection of this node over `io`, an already upgraded byte stream
    /// (the server side), with `cookie` as its handshake's `Cookie` header: the same
    /// connection task as a socket of [`Edge::bind`]. For tests and fuzzing that drive a node
    /// without a network (`tokio::io::duplex`); returns when the connection has ended and
    /// been cleaned up.
    #[doc(hidden)]
    pub async fn serve_upgraded<IO>(&self, io: IO, cookie: Option<String>)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        use tokio_tungstenite::tungstenite::protocol::Role;
        let config = crate::socket::config(self.config().max_message_size);
        let mut ws =
            tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        let handshake = Box::new(crate::connection::Handshake {
            cookie,
            ..Default::default()
        });
        crate::connection::run(self.clone(), &mut ws, handshake).await;
    }

    /// Serves the node's routes (with a plain-text 404 for anything else) on `listener` until
    /// [`Edge::shutdown`] is called, then closes every connection with code 1001.
    pub async fn serve(self, listener: tokio::net::TcpListener) {
        crate::serve::accept_loop(self, listener, None).await;
    }

    /// Serves `app` — any tower service, such as an axum `Router` with the edge merged or
    /// nested in it — on the edge's own accept loop at `listener` (with `tls`, HTTPS): the
    /// same deadlines at every stage, socket cap and graceful drain as [`Edge::serve`], until
    /// [`Edge::shutdown`]. Requests carry the client's [`PeerAddr`](crate::PeerAddr) (and,
    /// with the `axum` feature, axum's `ConnectInfo<SocketAddr>`).
    pub async fn serve_app<S, B>(
        self,
        listener: tokio::net::TcpListener,
        tls: Option<crate::TlsConfig>,
        app: S,
    ) where
        S: tower_service::Service<
                http::Request<hyper::body::Incoming>,
                Response = http::Response<B>,
                Error = std::convert::Infallible,
            > + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<crate::BoxError>,
    {
        let tls = tls.map(|t| t.acceptor());
        crate::serve::serve_service(self, listener, tls, app).await;
    }

    /// Binds `addr` and returns the bound address and the future that serves until shutdown.
    pub async fn bind(
        self,
        addr: SocketAddr,
    ) -> Result<(SocketAddr, impl Future<Output = ()> + Send + 'static), TransportError> {
        let (listener, local) = listen(addr)?;
        Ok((local, self.serve(listener)))
    }
}

/// Listen backlog: a member restart sends a burst of reconnections; tokio's default of 128
/// would drop some SYNs and delay those clients by a second or more.
const BACKLOG: u32 = 1024;

/// Binds a listener with [`BACKLOG`] (and `SO_REUSEADDR`, so a restarted member can take its
/// port back at once).
pub(crate) fn listen(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), TransportError> {
    let bind = || -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(BACKLOG)?;
        let local = listener.local_addr()?;
        Ok((listener, local))
    };
    bind().map_err(|source| TransportError::Bind { addr, source })
}

/// A WebSocket's task on the edge's own path: finishes the upgrade (within `deadline`), then
/// runs the connection, holding its place under the socket cap (if it took one) until the end.
/// (A function of its own, not a closure's `async` block: the upgrade's future is then created
/// inside the task's state rather than captured beside it.)
async fn upgrade_and_run(
    node: Edge,
    pending: hyper::upgrade::OnUpgrade,
    limit: usize,
    deadline: std::time::Duration,
    handshake: Box<crate::connection::Handshake>,
    // Held (not used) until the connection ends; not moved into a local, which would take room
    // of its own beside the argument's.
    _place: Option<crate::serve::Counted>,
) {
    // Taken out of the `Result` in a statement of its own: a `match` on the awaited result
    // would keep room for the result beside the socket for the connection's life.
    let mut ws = match crate::socket::upgraded(pending, limit, deadline).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(error = %e, "websocket upgrade failed");
            return;
        }
    };
    crate::connection::run(node, &mut ws, handshake).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_policy() {
        let same = AllowedOrigins::SameHost;
        assert!(origin_allowed(&same, None, None, "http"));
        assert!(origin_allowed(
            &same,
            Some("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080"),
            "http"
        ));
        assert!(!origin_allowed(
            &same,
            Some("http://evil.example"),
            Some("127.0.0.1:8080"),
            "http"
        ));
        // The scheme counts: an http page may not open the https site's socket.
        assert!(!origin_allowed(
            &same,
            Some("http://a.example"),
            Some("a.example"),
            "https"
        ));
        assert!(!origin_allowed(
            &same,
            Some("https://127.0.0.1:8080"),
            Some("127.0.0.1:8080"),
            "http"
        ));
        assert!(!origin_allowed(
            &same,
            Some("127.0.0.1:8080"),
            Some("127.0.0.1:8080"),
            "http"
        ));
        let list = AllowedOrigins::List(vec!["https://a.example/".into()]);
        assert!(origin_allowed(&list, Some("https://a.example"), None, "http"));
        assert!(!origin_allowed(&list, Some("https://b.example"), None, "http"));
    }

    #[test]
    fn host_policy() {
        let loopback: std::net::SocketAddr = ([127, 0, 0, 1], 8080).into();
        let public: std::net::SocketAddr = ([192, 0, 2, 1], 8080).into();
        let d = AllowedHosts::Default;
        for ok in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "[::1]:80",
            "127.3.4.5",
            "a.localhost:9",
        ] {
            assert!(host_allowed(&d, Some(ok), Some(loopback), false), "{ok}");
        }
        // DNS rebinding: a foreign name resolving to the loopback node.
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
        ] {
            assert!(!host_allowed(&d, Some(bad), Some(loopback), false), "{bad}");
        }
        // Behind a proxy on the same host, the site's own name.
        assert!(host_allowed(&d, Some("app.example"), Some(loopback), true));
        assert!(!host_allowed(&d, None, Some(loopback), false));
        assert!(host_allowed(&d, Some("evil.example"), Some(public), false));
        assert!(host_allowed(&d, Some("evil.example"), None, false));
        let list = AllowedHosts::List(vec!["app.example".into()]);
        assert!(host_allowed(&list, Some("APP.example:443"), Some(public), false));
        assert!(!host_allowed(&list, Some("evil.example"), Some(public), false));
        assert!(!host_allowed(&list, None, Some(public), false));
        assert!(host_allowed(&AllowedHosts::Any, None, Some(loopback), false));
    }

    #[test]
    fn content_negotiation() {
        assert_eq!(negotiate(Some("gzip, deflate, br"), "br,gzip"), Some("br"));
        assert_eq!(negotiate(Some("gzip"), "br,gzip"), Some("gzip"));
        assert_eq!(negotiate(Some("br;q=0, gzip;q=0.5"), "br,gzip"), Some("gzip"));
        assert_eq!(negotiate(Some("*"), "br,gzip"), Some("br"));
        assert_eq!(negotiate(Some("*;q=0, identity"), "br,gzip"), None);
        assert_eq!(negotiate(Some("identity"), "br,gzip"), None);
        assert_eq!(negotiate(None, "br,gzip"), None);
        assert!(etag_matches("W/\"abc\", \"def\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
    }
}
