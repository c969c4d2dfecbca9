//! An axum application that already exists — its own home page, its own login issuing its own
//! signed token in its own cookie, a logout, a protected JSON API — with thywill mounted under
//! `/live` for a live notice feed.
//!
//! The thywill node knows nothing of the app's users: its authentication hook
//! ([`thywill::Builder::authenticate`]) reads the app's cookie from the WebSocket upgrade
//! request, checks the token with the app's own key ([`Tokens`]) and answers with the user's
//! [`Identity`], or refuses the handshake with 401 before any socket opens. With
//! [`session_from_identity`](thywill::Builder::session_from_identity) the user is the session
//! key, so [`AppContext::send_to_user`] reaches every tab of that user, on every member.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the app's home page: the login form, or who is signed in |
//! | `POST /login` | checks the form against [`USERS`], sets the [`COOKIE`] and goes to `/live/` |
//! | `POST /logout` | clears the cookie |
//! | `GET /api/me` | `{"user", "name"}` of the signed-in user, 401 otherwise |
//! | `POST /api/notices` | `{"to", "text"}`: a notice to every tab of user `to` (signed in only) |
//! | `GET /api/online` | `{"users": [...]}`: the users with a live connection on any member (signed in only) |
//! | `/live/…` | thywill: the live page, its client library, its WebSocket (`/live/ws`) |

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use thywill::resources::embed;
use thywill::{
    AppContext, Application, Client, Entry, Identity, Manifest, Message, Refusal, ResourceKind, Thywill,
};

/// Application id of the live notice feed.
pub const APP_ID: &str = "notices";
/// Where thywill is mounted in the app.
pub const BASE: &str = "/live";
/// Default port (not one browsers refuse).
pub const DEFAULT_PORT: u16 = 10095;
/// The app's own cookie, holding its signed token.
pub const COOKIE: &str = "axum_app_token";
/// How long a token is valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// The environment variable holding the key tokens are signed with (at least
/// [`MIN_SECRET_LEN`] bytes; the same on every member of a cluster).
pub const SECRET_ENV: &str = "AXUM_APP_SECRET";
/// The shortest signing key accepted.
pub const MIN_SECRET_LEN: usize = 32;
/// The longest notice text, in characters.
pub const MAX_NOTICE_CHARS: usize = 500;

/// A user of the app's (demonstration) user table.
#[derive(Clone, Copy, Debug)]
pub struct User {
    /// The user id: the identity's user, the token's subject.
    pub id: &'static str,
    /// The name the pages greet the user by.
    pub name: &'static str,
    /// The password the login form takes (a demonstration: a real app keeps hashes).
    pub password: &'static str,
}

/// The app's users.
pub const USERS: [User; 3] = [
    User {
        id: "alice",
        name: "Alice",
        password: "alice-password",
    },
    User {
        id: "bob",
        name: "Bob",
        password: "bob-password",
    },
    User {
        id: "carol",
        name: "Carol",
        password: "carol-password",
    },
];

/// The user with id `id`.
pub fn user(id: &str) -> Option<&'static User> {
    USERS.iter().find(|u| u.id == id)
}

type HmacSha256 = Hmac<Sha256>;

/// The app's own tokens: `v1.<user>.<expiry, Unix seconds>.<HMAC-SHA256 of what precedes, hex>`.
#[derive(Clone)]
pub struct Tokens {
    key: Arc<[u8]>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(..)")
    }
}

/// Why a token was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token of this app.
    Malformed,
    /// The signature does not match: forged or tampered with.
    BadSignature,
    /// Past its expiry.
    Expired,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed token",
            Self::BadSignature => "bad token signature",
            Self::Expired => "expired token",
        })
    }
}

impl std::error::Error for TokenError {}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

impl Tokens {
    /// Tokens signed with `key` (at least [`MIN_SECRET_LEN`] bytes).
    pub fn new(key: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            key.len() >= MIN_SECRET_LEN,
            "the token key needs at least {MIN_SECRET_LEN} bytes"
        );
        Ok(Self { key: key.into() })
    }

    /// Tokens signed with a random key: valid on this process only.
    pub fn random() -> Self {
        let key: [u8; 32] = rand::random();
        Self { key: key.into() }
    }

    fn mac(&self, payload: &str) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(payload.as_bytes());
        mac
    }

    /// A token for `user`, valid until `now` + [`TOKEN_LIFETIME`].
    pub fn issue(&self, user: &str, now: u64) -> String {
        let payload = format!("v1.{user}.{}", now + TOKEN_LIFETIME.as_secs());
        let signature = hex(&self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    /// The user a token was issued to, if it is this app's, untampered and not expired at `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<String, TokenError> {
        let (payload, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let mut parts = payload.split('.');
        let (Some("v1"), Some(user), Some(expiry), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let expiry: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
        let signature = unhex(signature).ok_or(TokenError::Malformed)?;
        self.mac(payload)
            .verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        if expiry <= now {
            return Err(TokenError::Expired);
        }
        Ok(user.to_owned())
    }

    /// The signed-in user of a request: the [`COOKIE`] among its `Cookie` headers, verified.
    pub fn user_of(&self, headers: &HeaderMap) -> Result<&'static User, TokenError> {
        let token = token_in(headers).ok_or(TokenError::Malformed)?;
        let id = self.verify(&token, now_secs())?;
        // A token outlives a user removed from the table: not signed in any more.
        user(&id).ok_or(TokenError::Malformed)
    }
}

/// The value of the [`COOKIE`] among `headers`' `Cookie` headers.
pub fn token_in(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_owned())
        })
}

/// The live notice feed: greets each connection with its user, and passes notices
/// `{"to", "text"}` on to every tab of user `to`.
#[derive(Debug, Default)]
pub struct Notices;

/// The user id of a connection and its display name (the identity's `name`).
fn who(client: &Client) -> Option<(&str, String)> {
    let identity = client.identity()?;
    let name = identity
        .data
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(&identity.user)
        .to_owned();
    Some((identity.user.as_str(), name))
}

/// A notice to user `to`, if it is one: a known user and a text of 1 to [`MAX_NOTICE_CHARS`]
/// characters.
fn notice(to: &str, text: &str) -> Option<&'static User> {
    let chars = text.chars().count();
    (chars > 0 && chars <= MAX_NOTICE_CHARS)
        .then(|| user(to))
        .flatten()
}

impl Application for Notices {
    async fn connection(&self, ctx: &AppContext, client: &Client) {
        // Every connection has an identity: the hook refuses the others.
        let Some((user, name)) = who(client) else { return };
        let hello = json!({"kind": "hello", "user": user, "name": name, "member": ctx.member().as_str()});
        if let Err(e) = ctx.send_to_connection(&client.connection, hello).await {
            tracing::warn!(connection = %client.connection, error = %e, "greeting not sent");
        }
    }

    async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
        let Some((from, from_name)) = who(client) else {
            return;
        };
        let to = message.data.get("to").and_then(Value::as_str).unwrap_or_default();
        let text = message
            .data
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(to) = notice(to, text) else {
            tracing::info!(connection = %client.connection, "not a notice: ignored");
            return;
        };
        let sent = ctx
            .send_to_user(
                to.id,
                json!({"kind": "notice", "from": from, "fromName": from_name, "text": text}),
            )
            .await;
        if let Err(e) = sent {
            tracing::warn!(to = to.id, error = %e, "notice not sent");
        }
    }
}

/// The live page, its script and style, under [`BASE`].
pub fn manifest() -> Manifest {
    Manifest::new()
        .entry(Entry::new("/live/", embed!("static/index.html")).kind(ResourceKind::Html))
        .entry(Entry::new("/live/js/live.js", embed!("static/live.js")).weight(10))
        .entry(example_support::example_css(BASE))
        .entry(Entry::new("/live/css/live.css", embed!("static/live.css")))
}

/// The app: its thywill node and what its own routes share.
#[derive(Clone, Debug)]
pub struct AxumApp {
    node: Thywill,
    tokens: Tokens,
    refusals: Arc<AtomicU64>,
}

/// The signing key: [`SECRET_ENV`] when set; else a random one for a single member, and an
/// error for a member of a cluster (whose members must all accept each other's tokens).
pub fn tokens_from_env(opts: &example_support::Options) -> anyhow::Result<Tokens> {
    match std::env::var(SECRET_ENV) {
        Ok(secret) if !secret.is_empty() => Tokens::new(secret.as_bytes()),
        _ if opts.config.cluster.backend != thywill::config::Backend::None => anyhow::bail!(
            "a clustered member needs {SECRET_ENV} (at least {MIN_SECRET_LEN} bytes, the same on every \
             member; `cargo xtask run-example axum-app --cluster ...` generates one per run)"
        ),
        _ => Ok(Tokens::random()),
    }
}

/// Builds the app's thywill node: the notice feed under [`BASE`], its connections
/// authenticated by `tokens`, configured as `opts` say (cluster backend included).
pub async fn build(opts: &example_support::Options, tokens: Tokens) -> anyhow::Result<AxumApp> {
    let refusals = Arc::new(AtomicU64::new(0));
    let (hook_tokens, hook_refusals) = (tokens.clone(), refusals.clone());
    let builder = Thywill::builder()
        .base_path(BASE)?
        .application(APP_ID, Notices)
        .bootstrap(manifest())
        // The app's own cookie decides who connects: a user, or 401 before the upgrade.
        .authenticate(move |parts| {
            let checked = hook_tokens.user_of(&parts.headers);
            let refusals = hook_refusals.clone();
            async move {
                match checked {
                    Ok(user) => Ok(Some(Identity::new(user.id).with_data(json!({"name": user.name})))),
                    Err(e) => {
                        refusals.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(reason = %e, "live connection refused");
                        Err(Refusal::unauthorized(e.to_string()))
                    }
                }
            }
        })
        // The user is the session: `send_to_user` reaches all the user's tabs, on any member.
        .session_from_identity(true);
    let builder = example_support::cluster::apply(builder, opts, "axum-app")?;
    Ok(AxumApp {
        node: builder.build().await?,
        tokens,
        refusals,
    })
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
}

#[derive(Deserialize)]
struct NoticeRequest {
    to: String,
    text: String,
}

/// Minimal HTML escaping for text in the app's own pages.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n</head>\n\
         <body>\n<h1 id=\"title\">{title}</h1>\n{body}\n</body>\n</html>\n"
    )
}

fn login_page(error: Option<&str>) -> String {
    let error = error.map_or_else(String::new, |e| {
        format!("<p id=\"login-error\">{}</p>\n", escape(e))
    });
    let users: Vec<String> = USERS
        .iter()
        .map(|u| format!("{} / {}", u.id, u.password))
        .collect();
    page(
        "Axum App: Sign in",
        &format!(
            "{error}<form id=\"login\" method=\"post\" action=\"/login\">\n\
             <label>User <input name=\"user\" autocomplete=\"username\"></label>\n\
             <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label>\n\
             <button type=\"submit\">Sign in</button>\n</form>\n\
             <p id=\"demo-users\">Demonstration users: {}</p>",
            escape(&users.join(", "))
        ),
    )
}

async fn home(State(app): State<AxumApp>, headers: HeaderMap) -> Html<String> {
    Html(match app.tokens.user_of(&headers) {
        Ok(user) => page(
            "Axum App",
            &format!(
                "<p id=\"signed-in\">Signed in as {}.</p>\n<p><a id=\"live\" href=\"{BASE}/\">Live notices</a></p>\n\
                 <form method=\"post\" action=\"/logout\"><button id=\"logout\" type=\"submit\">Sign out</button></form>",
                escape(user.name)
            ),
        ),
        Err(_) => login_page(None),
    })
}

/// `Set-Cookie` for `token` (empty: clear it).
fn cookie(token: &str) -> HeaderValue {
    let max_age = if token.is_empty() {
        0
    } else {
        TOKEN_LIFETIME.as_secs()
    };
    let text = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}");
    // Only token characters ([a-z0-9_.-]) and fixed text: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

async fn login(State(app): State<AxumApp>, Form(form): Form<LoginForm>) -> Response {
    match user(&form.user).filter(|u| u.password == form.password) {
        Some(user) => {
            let token = app.tokens.issue(user.id, now_secs());
            let mut response = Redirect::to(&format!("{BASE}/")).into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie(&token));
            response
        }
        None => (
            StatusCode::UNAUTHORIZED,
            Html(login_page(Some("Unknown user or wrong password."))),
        )
            .into_response(),
    }
}

async fn logout() -> Response {
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie(""));
    response
}

fn unauthorized(e: TokenError) -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({"error": e.to_string()}))).into_response()
}

async fn me(State(app): State<AxumApp>, headers: HeaderMap) -> Response {
    match app.tokens.user_of(&headers) {
        Ok(user) => Json(json!({"user": user.id, "name": user.name})).into_response(),
        Err(e) => unauthorized(e),
    }
}

async fn send_notice(
    State(app): State<AxumApp>,
    headers: HeaderMap,
    Json(request): Json<NoticeRequest>,
) -> Response {
    let from = match app.tokens.user_of(&headers) {
        Ok(user) => user,
        Err(e) => return unauthorized(e),
    };
    let Some(to) = notice(&request.to, &request.text) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "an unknown user or an empty or too long text"})),
        )
            .into_response();
    };
    let Some(ctx) = app.node.context(APP_ID) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let message = json!({"kind": "notice", "from": from.id, "fromName": from.name, "text": request.text});
    match ctx.send_to_user(to.id, message).await {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({"sent": true}))).into_response(),
        Err(e) => {
            tracing::warn!(to = to.id, error = %e, "notice not sent");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "not sent"})),
            )
                .into_response()
        }
    }
}

/// The users connected anywhere in the cluster: the cluster-wide tracker carries each
/// connection's user id to every member.
async fn online(State(app): State<AxumApp>, headers: HeaderMap) -> Response {
    if let Err(e) = app.tokens.user_of(&headers) {
        return unauthorized(e);
    }
    let Some(ctx) = app.node.context(APP_ID) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match ctx.connected_clients().await {
        Ok(members) => {
            let users: std::collections::BTreeSet<&str> = members
                .values()
                .flat_map(|m| m.users.values().map(String::as_str))
                .collect();
            Json(json!({"users": users})).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "no client table");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

impl AxumApp {
    /// The app's router: its own routes, and thywill nested under [`BASE`] (the node's base
    /// path, which is where it must be mounted: its pages, script URLs and cookie paths name it).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(home))
            .route("/login", post(login))
            .route("/logout", post(logout))
            .route("/api/me", get(me))
            .route("/api/notices", post(send_notice))
            .route("/api/online", get(online))
            .with_state(self.clone())
            .nest_service(BASE, self.node.service())
    }

    /// The thywill node.
    pub fn node(&self) -> &Thywill {
        &self.node
    }

    /// The app's token issuer and checker.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// How many live connections the authentication hook refused so far.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    /// Serves the app with `axum::serve` on `listener` until `shutdown` completes: the node then
    /// closes its live connections (1001, "reconnect elsewhere") and this waits until they have
    /// ended ([`Thywill::drained`]), which axum's graceful shutdown does not wait for.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let node = self.node.clone();
        let service = self.router().into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, service)
            .with_graceful_shutdown(node.shutdown_on(shutdown))
            .await?;
        if !node.drained().await {
            tracing::warn!("connections still open at the end of the drain wait");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_until_it_expires_and_not_once_touched() -> anyhow::Result<()> {
        let tokens = Tokens::new(&[7; 32])?;
        let token = tokens.issue("alice", 1000);
        assert_eq!(tokens.verify(&token, 1000).as_deref(), Ok("alice"));
        let expiry = 1000 + TOKEN_LIFETIME.as_secs();
        assert_eq!(tokens.verify(&token, expiry), Err(TokenError::Expired));
        // Another user, a later expiry, another key: the signature no longer matches.
        let forged = token.replacen("alice", "bob", 1);
        assert_eq!(tokens.verify(&forged, 1000), Err(TokenError::BadSignature));
        let later = token.replacen(&expiry.to_string(), &(expiry + 1).to_string(), 1);
        assert_eq!(tokens.verify(&later, 1000), Err(TokenError::BadSignature));
        let other = Tokens::new(&[8; 32])?;
        assert_eq!(other.verify(&token, 1000), Err(TokenError::BadSignature));
        for bad in [
            "",
            "v1",
            "v1.alice.1.zz",
            "v2.alice.99999.00",
            "v1.a.b.c.00",
            "v1.alice.x.00",
        ] {
            assert!(tokens.verify(bad, 1000).is_err(), "{bad:?} accepted");
        }
        assert!(Tokens::new(&[1; 31]).is_err(), "a short key");
        Ok(())
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; other=2"));
        assert_eq!(token_in(&headers), None);
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("x=y; axum_app_token=v1.bob.5.ab; z=1"),
        );
        assert_eq!(token_in(&headers).as_deref(), Some("v1.bob.5.ab"));
    }

    #[test]
    fn notices_need_a_known_user_and_a_bounded_text() {
        assert!(notice("bob", "hi").is_some());
        assert!(notice("mallory", "hi").is_none());
        assert!(notice("bob", "").is_none());
        assert!(notice("bob", &"x".repeat(MAX_NOTICE_CHARS + 1)).is_none());
    }
}
