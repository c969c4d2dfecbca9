//! Sessions bound by a signed cookie, shared between pages, ordinary warp routes and the
//! WebSocket handshake.
//!
//! The cookie value is `<session id>.<HMAC-SHA256(secret, session id) in hex>`. A session is
//! created when a page is served to a browser without a valid one; the WebSocket handshake
//! accepts only a cookie whose signature verifies and whose session exists in the
//! [`SessionStore`](thywill_core::SessionStore), and otherwise closes with code 4401.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thywill_core::{DynSessionStore, SessionData, SessionId};

use crate::TransportError;

type HmacSha256 = Hmac<Sha256>;

/// Smallest accepted secret.
pub const MIN_SECRET_LEN: usize = 32;

/// How sessions are bound: cookie name, signing secret and cookie attributes.
#[derive(Clone)]
pub struct SessionConfig {
    pub(crate) cookie_name: String,
    secret: Arc<[u8]>,
    pub(crate) secure: bool,
    /// Whether the secret was drawn by [`SessionConfig::random`].
    random: bool,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("cookie_name", &self.cookie_name)
            .field("secret", &"<redacted>")
            .field("secure", &self.secure)
            .finish()
    }
}

impl SessionConfig {
    /// Sessions signed with `secret` (at least 32 bytes; every member of a cluster must use the
    /// same one). The cookie is called `thywill.sid`.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, TransportError> {
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_LEN {
            return Err(TransportError::Config {
                key: "session.secret",
                message: format!("{} bytes is below the minimum of {MIN_SECRET_LEN}", secret.len()),
            });
        }
        Ok(Self {
            cookie_name: "thywill.sid".into(),
            secret: Arc::from(secret),
            secure: false,
            random: false,
        })
    }

    /// A random secret: fine for one member; a cluster needs a shared one.
    pub fn random() -> Self {
        let secret: [u8; 32] = rand::random();
        Self {
            cookie_name: "thywill.sid".into(),
            secret: Arc::from(secret.as_slice()),
            secure: false,
            random: true,
        }
    }

    /// Whether the secret was drawn by [`SessionConfig::random`] (so no other member has it).
    pub fn is_random(&self) -> bool {
        self.random
    }

    /// Names the cookie (letters, digits, `.`, `-`, `_`).
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Result<Self, TransportError> {
        let name = name.into();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
        {
            return Err(TransportError::Config {
                key: "session.cookie_name",
                message: format!("{name:?} is not a valid cookie name"),
            });
        }
        self.cookie_name = name;
        Ok(self)
    }

    /// Marks the cookie `Secure` (serve over HTTPS).
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    fn mac(&self, id: &str) -> HmacSha256 {
        // HMAC accepts keys of any length.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(id.as_bytes());
        mac
    }

    /// The signed cookie value for a session id.
    pub fn sign(&self, id: &SessionId) -> String {
        let tag = self.mac(id.as_str()).finalize().into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        format!("{id}.{hex}")
    }

    /// Verifies a signed cookie value in constant time.
    pub fn verify(&self, value: &str) -> Result<SessionId, SessionRefusal> {
        let (id, hex) = value.rsplit_once('.').ok_or(SessionRefusal::Forged)?;
        if id.is_empty() || hex.len() != 64 {
            return Err(SessionRefusal::Forged);
        }
        let tag: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
        let tag = tag.ok_or(SessionRefusal::Forged)?;
        self.mac(id)
            .verify_slice(&tag)
            .map(|()| SessionId::from(id))
            .map_err(|_| SessionRefusal::Forged)
    }

    /// The `Set-Cookie` header value for a session.
    pub fn set_cookie(&self, id: &SessionId, path: &str) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={}; Path={path}; HttpOnly; SameSite=Lax{secure}",
            self.cookie_name,
            self.sign(id)
        )
    }

    /// Finds this config's cookie in a `Cookie` header.
    pub fn cookie_value<'a>(&self, header: &'a str) -> Option<&'a str> {
        header.split(';').find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == self.cookie_name).then_some(v)
        })
    }
}

/// Why a WebSocket handshake was refused a session (close code 4401).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionRefusal {
    /// No session cookie.
    Missing,
    /// The cookie's signature does not verify.
    Forged,
    /// The signature verifies but the store has no such session (expired or from elsewhere).
    Unknown,
    /// The session store failed.
    StoreError,
}

impl SessionRefusal {
    /// The close reason sent to the client.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "no session cookie",
            Self::Forged => "session cookie forged",
            Self::Unknown => "unknown session",
            Self::StoreError => "session store unavailable",
        }
    }
}

/// Sessions of a node: the cookie config and the store.
#[derive(Clone)]
pub struct Sessions {
    pub(crate) config: SessionConfig,
    pub(crate) store: Arc<dyn DynSessionStore>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Binds a cookie config to a store.
    pub fn new(config: SessionConfig, store: Arc<dyn DynSessionStore>) -> Self {
        Self { config, store }
    }

    /// The cookie config.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn DynSessionStore> {
        &self.store
    }

    /// The session a `Cookie` header names, if it verifies and exists.
    pub async fn resolve(&self, cookie_header: Option<&str>) -> Result<SessionId, SessionRefusal> {
        let value = cookie_header
            .and_then(|h| self.config.cookie_value(h))
            .ok_or(SessionRefusal::Missing)?;
        let id = self.config.verify(value)?;
        match self.store.load(&id).await {
            Ok(Some(_)) => Ok(id),
            Ok(None) => Err(SessionRefusal::Unknown),
            Err(e) => {
                tracing::warn!(error = %e, "session store failed");
                Err(SessionRefusal::StoreError)
            }
        }
    }

    /// Creates a new, empty session.
    pub async fn create(&self) -> Result<SessionId, thywill_core::CoreError> {
        let bytes: [u8; 16] = rand::random();
        let id = SessionId::from(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
        self.store.store(&id, SessionData::new()).await?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_cookies_verify_and_forgeries_do_not() -> Result<(), TransportError> {
        let c = SessionConfig::new([7u8; 32])?;
        let id = SessionId::from("abc");
        let signed = c.sign(&id);
        assert_eq!(c.verify(&signed), Ok(id.clone()));
        let other = SessionConfig::new([8u8; 32])?;
        assert_eq!(other.verify(&signed), Err(SessionRefusal::Forged));
        let tampered = signed.replacen("abc", "abd", 1);
        assert_eq!(c.verify(&tampered), Err(SessionRefusal::Forged));
        let zeros = format!("abc.{}", "0".repeat(64));
        for junk in ["", ".", "abc", "abc.zz", "abc.é", zeros.as_str()] {
            assert_eq!(c.verify(junk), Err(SessionRefusal::Forged), "{junk}");
        }
        assert!(SessionConfig::new([1u8; 8]).is_err());
        let header = format!("a=b; {}={signed}; c=d", c.cookie_name);
        assert_eq!(c.cookie_value(&header), Some(signed.as_str()));
        assert!(c.set_cookie(&id, "/echo").contains("HttpOnly; SameSite=Lax"));
        Ok(())
    }
}
