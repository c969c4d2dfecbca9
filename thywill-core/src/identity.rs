//! Who a connection belongs to, as the application's own authentication said at the
//! handshake (the facade's `Builder::authenticate`).

use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The authenticated user of a connection: a user id and whatever the application wants to
/// keep of its login (roles, a display name...), as JSON.
///
/// Set by the authentication hook at the handshake; on [`Client::identity`](crate::Client::identity)
/// in every application hook and in the RPC permission hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The application's user id.
    pub user: String,
    /// Application data kept with the identity (`null` when none).
    #[serde(default)]
    pub data: Value,
}

impl Identity {
    /// The identity of user `user`, with no data.
    pub fn new(user: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            data: Value::Null,
        }
    }

    /// With application data.
    pub fn with_data(mut self, data: impl Into<Value>) -> Self {
        self.data = data.into();
        self
    }
}

impl Hash for Identity {
    // The user id only: equal identities have equal user ids.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.user.hash(state);
    }
}

/// An authentication hook's refusal: the handshake is answered with this HTTP status and
/// reason, and no WebSocket is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    status: u16,
    reason: String,
}

impl Refusal {
    /// 401 Unauthorized: no credentials, or credentials that do not prove who the user is.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Self {
            status: 401,
            reason: reason.into(),
        }
    }

    /// 403 Forbidden: the user is known but may not connect.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self {
            status: 403,
            reason: reason.into(),
        }
    }

    /// 503 Service Unavailable: the hook could not decide (its identity provider is down, it
    /// took longer than the handshake timeout).
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self {
            status: 503,
            reason: reason.into(),
        }
    }

    /// The HTTP status answered.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason, sent as the response body (plain text) and logged.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}
