//! The browser wire protocol, version 1 (see `docs/PROTOCOL.md`).
//!
//! Every frame is one JSON object in a WebSocket text frame, tagged by its `t` field.
//! [`ClientFrame`] goes from the browser to the server, [`ServerFrame`] the other way.
//! Decoding never panics: anything malformed becomes a [`ProtocolError`] that the transport
//! answers with an [`ServerFrame::Error`] frame or a close code from [`close`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ApplicationId, ConnectionId, MemberId, Metadata, Offset, RpcErrorCode, SessionId};

/// The protocol version this crate speaks.
pub const VERSION: u32 = 1;

/// A frame sent by the browser.
///
/// Decoded by hand (see `decode` below) rather than by serde's internally tagged enums, which
/// buffer every frame into an intermediate tree before they read its tag: when `t` comes first,
/// as `thywill.js` sends it, the fields are read straight from the text.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Optional first frame: the protocol version the client speaks and, after a reconnect,
    /// where it left off.
    Hello {
        /// Protocol version; must be [`VERSION`].
        v: u32,
        /// Accepted and ignored: per-connection sequence numbers do not survive a reconnect
        /// (stream offsets in `streams` do).
        #[serde(default)]
        last_seq: Option<u64>,
        /// The browser tab's stable id (chosen by the client, kept across reconnects): the
        /// server drops messages of the tab whose `id` it has processed already.
        #[serde(default)]
        tab: Option<String>,
        /// The last offset the client saw per stream: the server replays what follows.
        #[serde(default)]
        streams: BTreeMap<String, Offset>,
    },
    /// Asks for the messages of streams after the given offsets, on an open connection (the
    /// client saw a gap).
    Resume {
        /// The last offset the client saw per stream.
        streams: BTreeMap<String, Offset>,
    },
    /// An application message.
    Msg {
        /// The application the message is for.
        app: ApplicationId,
        /// The payload.
        #[serde(default)]
        data: Value,
        /// Metadata (the original's `_`).
        #[serde(default, rename = "_")]
        meta: Metadata,
        /// Client message id, increasing per tab: acknowledged by [`ServerFrame::Ack`] and
        /// processed at most once per tab (see `tab` in [`ClientFrame::Hello`]).
        #[serde(default)]
        id: Option<u64>,
    },
    /// A remote procedure call.
    Rpc {
        /// The application whose functions are called.
        app: ApplicationId,
        /// Correlation id chosen by the client; echoed in the reply.
        id: u64,
        /// Dotted function name, such as `powers.square`.
        name: String,
        /// Arguments; by convention a JSON array or object.
        #[serde(default)]
        args: Value,
    },
}

/// A frame sent by the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The first frame on every connection: who the client is and what it can talk to.
    Welcome {
        /// Protocol version the server speaks.
        v: u32,
        /// This connection's id.
        connection: ConnectionId,
        /// The session the connection is bound to.
        session: SessionId,
        /// The member holding the connection.
        member: MemberId,
        /// The applications served on this endpoint.
        apps: Vec<ApplicationId>,
    },
    /// An application message.
    Msg {
        /// The application the message comes from.
        app: ApplicationId,
        /// Per-connection sequence number, strictly increasing by one.
        seq: u64,
        /// The payload.
        data: Value,
        /// Metadata.
        #[serde(rename = "_")]
        meta: Metadata,
        /// The replayable stream the message belongs to (`c:<channel>`, `s:<session>`), when
        /// it was sent to a channel or a session.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream: Option<String>,
        /// The epoch of the stream's log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
        /// The message's offset in the stream: one more than the previous message's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        off: Option<u64>,
    },
    /// Offset `off` of a stream is a message this connection does not receive (it was sent
    /// to the channel excluding it); the client counts it as seen.
    Skip {
        /// The stream.
        stream: String,
        /// The stream's epoch.
        epoch: String,
        /// The skipped offset.
        off: u64,
    },
    /// Client messages up to `id` (of this tab) are processed; the client may forget them.
    Ack {
        /// The highest processed client message id.
        id: u64,
    },
    /// The messages of a stream after the client's offset can no longer be replayed (trimmed
    /// from the log, older than its age bound, or the log was lost). The client resumes at
    /// `next` in `epoch`; replayed messages from `next` may follow.
    ContinuityLost {
        /// The stream.
        stream: String,
        /// The stream's current epoch.
        epoch: String,
        /// The offset the client continues from.
        next: u64,
    },
    /// A successful RPC reply.
    RpcOk {
        /// The application.
        app: ApplicationId,
        /// The correlation id of the request.
        id: u64,
        /// The function's result.
        result: Value,
    },
    /// A failed RPC reply.
    RpcErr {
        /// The application.
        app: ApplicationId,
        /// The correlation id of the request.
        id: u64,
        /// Stable error code.
        code: RpcErrorCode,
        /// Human-readable explanation.
        message: String,
    },
    /// An error that does not close the connection.
    Error {
        /// Stable error code.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
        /// The application concerned, when there is one.
        #[serde(default)]
        app: Option<ApplicationId>,
    },
    /// The server asks the client to reconnect (for example to another member) after a delay.
    Reconnect {
        /// Milliseconds to wait, jitter included.
        after_ms: u64,
    },
    /// The server tells the client to load a resource outside the page's bootstrap set
    /// (progressive exposure): a script, a stylesheet or a client template.
    Load {
        /// What to load.
        kind: LoadKind,
        /// The resource's client path, such as `/tabular/js/totals.js`.
        path: String,
    },
}

/// What a [`ServerFrame::Load`] frame asks the client to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadKind {
    /// A script, run once (`<script src>`).
    Script,
    /// A stylesheet (`<link rel="stylesheet">`).
    Stylesheet,
    /// A client template, inlined as `<script type="text/template" id="…">`.
    Template,
}

impl LoadKind {
    /// The kind that suits a path's extension: `.css` is a stylesheet, `.tpl` or `.html` a
    /// template, anything else a script.
    pub fn from_path(path: &str) -> Self {
        match crate::ResourceKind::from_path(path) {
            crate::ResourceKind::Css => Self::Stylesheet,
            crate::ResourceKind::Template | crate::ResourceKind::Html => Self::Template,
            _ => Self::Script,
        }
    }

    /// The wire name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Script => "script",
            Self::Stylesheet => "stylesheet",
            Self::Template => "template",
        }
    }
}

/// Codes of [`ServerFrame::Error`] frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame was not valid JSON, or had an unknown `t`, a missing field or a wrong type.
    BadFrame,
    /// The frame named an application that is not served here.
    UnknownApp,
    /// `hello` named a protocol version the server does not speak.
    UnsupportedVersion,
    /// The message could not be delivered (for example the application is shutting down).
    Undeliverable,
}

impl ErrorCode {
    /// The wire name of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadFrame => "bad_frame",
            Self::UnknownApp => "unknown_app",
            Self::UnsupportedVersion => "unsupported_version",
            Self::Undeliverable => "undeliverable",
        }
    }
}

/// WebSocket close codes used by thywill-rs.
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down or draining; reconnect (elsewhere).
    pub const GOING_AWAY: u16 = 1001;
    /// A frame type the server does not accept (binary frames).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A violation of the WebSocket protocol itself (an unmasked frame, reserved bits, a bad
    /// opcode).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message larger than the configured maximum.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Unexpected server error.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// Too many malformed frames in a row.
    pub const TOO_MANY_BAD_FRAMES: u16 = 4000;
    /// No pong (or other traffic) within the keepalive timeout.
    pub const KEEPALIVE_TIMEOUT: u16 = 4001;
    /// The outbound queue overflowed: the client reads too slowly.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// The session is missing, forged or unknown.
    pub const SESSION_REFUSED: u16 = 4401;
    /// The client sends faster than its rate limit.
    pub const RATE_LIMITED: u16 = 4429;
}

/// Why a client frame could not be accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Larger than the maximum message size.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooBig {
        /// Size of the frame.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Not valid JSON or not a valid frame.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl ClientFrame {
    /// Decodes one text frame, refusing frames over `limit` bytes before parsing them.
    pub fn decode(text: &str, limit: usize) -> Result<Self, ProtocolError> {
        if text.len() > limit {
            return Err(ProtocolError::TooBig {
                size: text.len(),
                limit,
            });
        }
        serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(e.to_string()))
    }

    /// Encodes the frame as JSON text.
    pub fn encode(&self) -> String {
        // Serialising these types cannot fail: all keys are strings and values are JSON.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl ServerFrame {
    /// Encodes the frame as JSON text.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes a server frame (used by Rust clients and tests).
    pub fn decode(text: &str) -> Result<Self, ProtocolError> {
        serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(e.to_string()))
    }
}

/// [`ClientFrame`]'s decoding: the tag first (the fast path), or anywhere (the frame is then
/// read into a JSON object first, as serde's tagged enums always do).
mod decode {
    use std::collections::BTreeMap;
    use std::fmt;

    use serde::Deserialize;
    use serde::de::{self, Deserializer, IntoDeserializer, MapAccess, Visitor};
    use serde_json::Value;

    use super::ClientFrame;
    use crate::{ApplicationId, Metadata, Offset};

    // The structs below mirror `ClientFrame`'s variants, field for field (with the same serde
    // attributes): `Kind::fields` builds each variant from all of its fields by name, so a
    // field added to a variant and not here fails to compile.

    /// The kinds of client frames, as `t` names them.
    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Hello,
        Resume,
        Msg,
        Rpc,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Hello {
        v: u32,
        #[serde(default)]
        last_seq: Option<u64>,
        #[serde(default)]
        tab: Option<String>,
        #[serde(default)]
        streams: BTreeMap<String, Offset>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Resume {
        streams: BTreeMap<String, Offset>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Msg {
        app: ApplicationId,
        #[serde(default)]
        data: Value,
        #[serde(default, rename = "_")]
        meta: Metadata,
        #[serde(default)]
        id: Option<u64>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rpc {
        app: ApplicationId,
        id: u64,
        name: String,
        #[serde(default)]
        args: Value,
    }

    impl Kind {
        /// The frame of this kind whose other fields `fields` gives.
        fn fields<'de, D: Deserializer<'de>>(self, fields: D) -> Result<ClientFrame, D::Error> {
            Ok(match self {
                Kind::Hello => {
                    let Hello {
                        v,
                        last_seq,
                        tab,
                        streams,
                    } = Hello::deserialize(fields)?;
                    ClientFrame::Hello {
                        v,
                        last_seq,
                        tab,
                        streams,
                    }
                }
                Kind::Resume => ClientFrame::Resume {
                    streams: Resume::deserialize(fields)?.streams,
                },
                Kind::Msg => {
                    let Msg { app, data, meta, id } = Msg::deserialize(fields)?;
                    ClientFrame::Msg { app, data, meta, id }
                }
                Kind::Rpc => {
                    let Rpc { app, id, name, args } = Rpc::deserialize(fields)?;
                    ClientFrame::Rpc { app, id, name, args }
                }
            })
        }
    }

    /// A key of the frame's object: `t`, or another one.
    enum Key {
        Tag,
        Other(String),
    }

    impl<'de> Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct KeyVisitor;
            impl Visitor<'_> for KeyVisitor {
                type Value = Key;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a field name")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                    Ok(if v == "t" {
                        Key::Tag
                    } else {
                        Key::Other(v.to_owned())
                    })
                }
            }
            d.deserialize_identifier(KeyVisitor)
        }
    }

    struct FrameVisitor;

    impl<'de> Visitor<'de> for FrameVisitor {
        type Value = ClientFrame;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a client frame: an object with a `t` field")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ClientFrame, A::Error> {
            let mut object = serde_json::Map::new();
            let mut kind = None;
            while let Some(key) = map.next_key::<Key>()? {
                match key {
                    Key::Tag if kind.is_some() => return Err(de::Error::duplicate_field("t")),
                    // The tag first: the rest is read straight into the frame's fields.
                    Key::Tag if object.is_empty() => {
                        let kind: Kind = map.next_value()?;
                        return kind.fields(de::value::MapAccessDeserializer::new(map));
                    }
                    Key::Tag => kind = Some(map.next_value::<Kind>()?),
                    Key::Other(key) => {
                        let value: Value = map.next_value()?;
                        if object.insert(key.clone(), value).is_some() {
                            return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
                        }
                    }
                }
            }
            let kind = kind.ok_or_else(|| de::Error::missing_field("t"))?;
            kind.fields(Value::Object(object).into_deserializer())
                .map_err(de::Error::custom)
        }
    }

    impl<'de> Deserialize<'de> for ClientFrame {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(FrameVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_an_application_message() {
        let f = ClientFrame::decode(r#"{"t":"msg","app":"echo","data":"hi","_":{}}"#, 1024);
        match f {
            Ok(ClientFrame::Msg { app, data, .. }) => {
                assert_eq!(app.as_str(), "echo");
                assert_eq!(data, json!("hi"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rejects_wrong_types_unknown_kinds_and_oversize() {
        for bad in [
            "not json",
            r#"{"t":"msg","app":5}"#,
            r#"{"t":"nope"}"#,
            r#"{"t":"rpc","app":"a","id":"x","name":"f"}"#,
            r#"[1,2,3]"#,
        ] {
            assert!(
                matches!(ClientFrame::decode(bad, 1024), Err(ProtocolError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            ClientFrame::decode(&"x".repeat(11), 10),
            Err(ProtocolError::TooBig { size: 11, limit: 10 })
        ));
    }

    #[test]
    fn client_frames_decode_with_the_tag_anywhere() {
        let frames = [
            ClientFrame::Hello {
                v: 1,
                last_seq: Some(3),
                tab: Some("tab".into()),
                streams: BTreeMap::from([(
                    "c:room".to_owned(),
                    Offset {
                        epoch: "e".into(),
                        off: 7,
                    },
                )]),
            },
            ClientFrame::Resume {
                streams: BTreeMap::new(),
            },
            ClientFrame::Msg {
                app: "echo".into(),
                data: json!({"t": "not the tag", "n": [1, 2]}),
                meta: Metadata::new(),
                id: Some(9),
            },
            ClientFrame::Rpc {
                app: "calc".into(),
                id: 4,
                name: "powers.square".into(),
                args: json!([3]),
            },
        ];
        for frame in frames {
            let Ok(Value::Object(fields)) = serde_json::to_value(&frame) else {
                panic!("{frame:?} is not an object");
            };
            let keys: Vec<&String> = fields.keys().collect();
            // The tag at every position: first (read straight), then later (read into a tree).
            for at in 0..keys.len() {
                let mut order: Vec<&String> = keys.iter().copied().filter(|k| *k != "t").collect();
                order.insert(at, keys[keys.iter().position(|k| *k == "t").unwrap_or(0)]);
                let text = format!(
                    "{{{}}}",
                    order
                        .iter()
                        .map(|k| format!("{}:{}", json!(k), fields[k.as_str()]))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                assert_eq!(
                    ClientFrame::decode(&text, 1024).ok().as_ref(),
                    Some(&frame),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn client_frames_refuse_missing_repeated_and_unknown_fields() {
        for bad in [
            r#"{}"#,
            r#"{"app":"a","data":1}"#,
            r#"{"t":"msg","t":"msg","app":"a"}"#,
            r#"{"app":"a","t":"msg","t":"msg"}"#,
            r#"{"app":"a","app":"b","t":"msg"}"#,
            r#"{"t":"msg","app":"a","extra":1}"#,
            r#"{"extra":1,"t":"msg","app":"a"}"#,
            r#"{"t":"msg"}"#,
            r#"{"app":"a","t":"nope"}"#,
            r#"{"t":5,"app":"a"}"#,
        ] {
            assert!(
                matches!(ClientFrame::decode(bad, 1024), Err(ProtocolError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn server_frames_round_trip() {
        let f = ServerFrame::Msg {
            app: "echo".into(),
            seq: 3,
            data: json!({"a": 1}),
            meta: Metadata::new(),
            stream: None,
            epoch: None,
            off: None,
        };
        let text = f.encode();
        assert_eq!(
            serde_json::from_str::<Value>(&text).ok(),
            Some(json!({"t":"msg","app":"echo","seq":3,"data":{"a":1},"_":{}}))
        );
        assert_eq!(ServerFrame::decode(&text).ok(), Some(f));
    }

    #[test]
    fn load_frames_name_the_kind_and_path() {
        let f = ServerFrame::Load {
            kind: LoadKind::from_path("/t/css/extra.css"),
            path: "/t/css/extra.css".into(),
        };
        assert_eq!(
            serde_json::from_str::<Value>(&f.encode()).ok(),
            Some(json!({"t":"load","kind":"stylesheet","path":"/t/css/extra.css"}))
        );
        assert_eq!(LoadKind::from_path("/t/js/a.js"), LoadKind::Script);
        assert_eq!(LoadKind::from_path("/t/tpl/a.tpl").as_str(), "template");
    }
}
