//! Messages and the clients that send and receive them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{ConnectionId, Identity, MemberId, SessionId};

/// Free-form metadata carried beside a message's data (the original's `_` object).
pub type Metadata = Map<String, Value>;

/// A message between a browser client and an application: any JSON data plus metadata.
///
/// The same shape exists in the browser client library (`Thywill.Message`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The payload: any JSON value.
    pub data: Value,
    /// Metadata; empty unless an application or the framework sets keys.
    #[serde(default, rename = "_")]
    pub meta: Metadata,
}

impl Message {
    /// A message with this data and no metadata.
    pub fn new(data: impl Into<Value>) -> Self {
        Self {
            data: data.into(),
            meta: Metadata::new(),
        }
    }

    /// Serialises `data` into a message. Fails only if `data`'s `Serialize` impl fails.
    pub fn from_serialize<T: Serialize>(data: &T) -> Result<Self, serde_json::Error> {
        Ok(Self::new(serde_json::to_value(data)?))
    }

    /// Adds one metadata entry.
    pub fn with_meta(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// Deserialises the data into a typed value.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.data)
    }
}

/// Who a message came from: a connection, the session it belongs to, and the member holding it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Client {
    /// The WebSocket connection.
    pub connection: ConnectionId,
    /// The browser session the connection belongs to.
    pub session: SessionId,
    /// The cluster member the connection is attached to.
    pub member: MemberId,
    /// Who the connection belongs to, when the application's authentication hook said so at
    /// the handshake; `None` without a hook, or when the hook let an anonymous user in.
    #[serde(default)]
    pub identity: Option<Identity>,
}

impl Client {
    /// Connection `connection` of session `session`, attached to `member`, with no identity.
    pub fn new(connection: ConnectionId, session: SessionId, member: MemberId) -> Self {
        Self {
            connection,
            session,
            member,
            identity: None,
        }
    }

    /// With the identity the authentication hook gave.
    pub fn with_identity(mut self, identity: Option<Identity>) -> Self {
        self.identity = identity;
        self
    }

    /// Who the connection belongs to (see [`Client::identity`](Self#structfield.identity)).
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_wire_shape_matches_the_original() {
        let m = Message::new("hi").with_meta("type", "x");
        let json = serde_json::to_value(&m).ok();
        assert_eq!(json, Some(serde_json::json!({"data": "hi", "_": {"type": "x"}})));
        let back: Message = serde_json::from_str(r#"{"data":[1,2]}"#).unwrap_or_default();
        assert_eq!(back.data, serde_json::json!([1, 2]));
        assert!(back.meta.is_empty());
    }
}
