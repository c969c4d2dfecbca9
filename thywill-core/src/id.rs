//! Identifier newtypes.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Cheap to clone (a shared string); compares and hashes by value.
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Wraps a string as this identifier.
            pub fn new(id: impl AsRef<str>) -> Self {
                Self(Arc::from(id.as_ref()))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::new(s)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(Arc::from(s))
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// The id of one member (one process) of a cluster, such as `alpha`.
    MemberId
);
id_type!(
    /// The id of one WebSocket connection; unique across the cluster.
    ConnectionId
);
id_type!(
    /// The id of a browser session, shared by every tab (connection) of that browser.
    SessionId
);
id_type!(
    /// The id of a channel: a named group of sessions or connections that messages are sent to.
    ChannelId
);
id_type!(
    /// The id of an application; routes messages multiplexed on one connection.
    ApplicationId
);

impl SessionId {
    /// The session of user `user` (`user:<user>`): the session of every connection the
    /// authentication hook gave that user's identity when sessions follow identities (the
    /// facade's `Builder::session_from_identity`), so that sending to it reaches every tab of
    /// the user on every member.
    pub fn of_user(user: &str) -> Self {
        Self::from(format!("user:{user}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_session_is_prefixed() {
        assert_eq!(SessionId::of_user("alice").as_str(), "user:alice");
    }

    #[test]
    fn ids_serialize_as_plain_strings() {
        let id = MemberId::new("alpha");
        assert_eq!(serde_json::to_string(&id).ok().as_deref(), Some("\"alpha\""));
        assert_eq!(format!("{id}"), "alpha");
        assert_eq!(format!("{id:?}"), "MemberId(\"alpha\")");
    }
}
