//! Why a connection ended: [`DisconnectReason`], given to
//! [`Application::disconnection`](crate::Application::disconnection).

/// Why a client's connection to this member ended.
///
/// Given to [`Application::disconnection`](crate::Application::disconnection). The close code
/// the client saw (if the socket still carried one) is documented with each variant; see
/// `docs/PROTOCOL.md` for the codes. New reasons may be added: match with a wildcard arm.
///
/// ```
/// use thywill_core::DisconnectReason;
///
/// fn worth_a_warning(reason: DisconnectReason) -> bool {
///     match reason {
///         DisconnectReason::ClosedByClient | DisconnectReason::Shutdown => false,
///         _ => true,
///     }
/// }
/// assert!(worth_a_warning(DisconnectReason::SlowConsumer));
/// assert_eq!(DisconnectReason::KeepaliveTimeout.as_str(), "keepalive timeout");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client closed the connection: a close frame, or the end of its stream.
    ClosedByClient,
    /// The socket failed without a closing handshake (a reset, a read or write error): the
    /// client or the network between went away.
    ConnectionLost,
    /// The client did not answer pings within the keepalive timeout (close code 4001).
    KeepaliveTimeout,
    /// The client did not read what was sent to it fast enough: its outbound queue
    /// overflowed, or a write made no progress (close code 4008).
    SlowConsumer,
    /// The client sent frames faster than the rate limit (close code 4429).
    RateLimited,
    /// The client broke the protocol: too many malformed frames (4000), a frame over the
    /// size limit (1009), a binary frame (1003), text that is not UTF-8 (1007), or a
    /// WebSocket protocol violation (1002).
    ProtocolError,
    /// The member is shutting down (close code 1001, after a `reconnect` hint).
    Shutdown,
    /// The member holding the connection was lost to the cluster. This member's own
    /// connections do not end this way (the member running the hook is alive); the reason is
    /// meant for clients of other members, when the tracker purges a member that went down.
    MemberLost,
    /// The server closed the connection for another reason of its own.
    ClosedByServer,
    /// A bug on the server: an application hook or the connection task panicked (close code
    /// 1011).
    InternalError,
}

impl DisconnectReason {
    /// A short, stable description (`"closed by client"`, `"keepalive timeout"`, ...), for
    /// logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClosedByClient => "closed by client",
            Self::ConnectionLost => "connection lost",
            Self::KeepaliveTimeout => "keepalive timeout",
            Self::SlowConsumer => "slow consumer",
            Self::RateLimited => "rate limited",
            Self::ProtocolError => "protocol error",
            Self::Shutdown => "shutdown",
            Self::MemberLost => "member lost",
            Self::ClosedByServer => "closed by server",
            Self::InternalError => "internal error",
        }
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
