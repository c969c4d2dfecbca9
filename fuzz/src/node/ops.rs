//! What the `node` target's input decodes to (with `arbitrary`): a few settings and a list of
//! steps, each one thing done on one of [`CONNS`](super::CONNS) client connections.
//!
//! Names, epochs, offsets and ids are mostly chosen from small sets that include the real
//! ones (the stream names the node uses, the epochs and offsets the clients have seen, the ids
//! they sent last), so that the fuzzer reaches the node's stateful paths instead of spending
//! its time on names nobody answers to; raw numbers stay possible everywhere.
//!
//! [`Encode`] writes an input back as the bytes `arbitrary` reads it from, so hand-made
//! sequences can be committed as seeds (see `seeds.rs`; a test checks the round trip).

use arbitrary::Arbitrary;

/// One fuzz input.
#[derive(Arbitrary, Clone, Debug, PartialEq)]
pub struct Input {
    /// Sessions bound by signed cookies (else plain mode: every connection is its own session).
    pub sessions: bool,
    /// What happens, in order.
    pub steps: Vec<Step>,
}

/// One thing done on one connection slot.
#[derive(Arbitrary, Clone, Debug, PartialEq)]
pub struct Step {
    /// The connection slot (modulo [`CONNS`](super::CONNS)). With the high bit set the next
    /// step follows at once; otherwise everything runnable runs first (and the clock moves
    /// on by a millisecond), so that bursts from several connections interleave in the
    /// node as the scheduler has it.
    pub conn: u8,
    /// What is done.
    pub op: Op,
}

/// What a step does.
#[derive(Arbitrary, Clone, Debug, PartialEq)]
pub enum Op {
    /// Opens the slot's connection (closing the one it had, if any, abruptly).
    Open(Cookie),
    /// Closes the connection politely (a close frame).
    Close,
    /// Drops the connection's socket without a close frame.
    Drop,
    /// A `hello` frame.
    Hello {
        /// Protocol version.
        version: Version,
        /// The tab id.
        tab: Option<Tab>,
        /// Where the client says it left off.
        streams: Vec<StreamPos>,
    },
    /// A `resume` frame.
    Resume(Vec<StreamPos>),
    /// A `msg` frame.
    Msg {
        /// The application named.
        app: App,
        /// The message data: a command of the test application, or any small JSON.
        data: Command,
        /// The client message id.
        id: Option<Id>,
    },
    /// An `rpc` frame.
    Rpc {
        /// The application named.
        app: App,
        /// The correlation id.
        id: u64,
        /// The function named.
        name: RpcName,
        /// The arguments.
        args: Json,
    },
    /// A text frame made of JSON-ish fragments and bytes (invalid UTF-8 replaced).
    Raw(Vec<Frag>),
    /// A binary frame of this many bytes.
    Binary(u8),
    /// A text frame just over the node's size limit.
    Big,
    /// A WebSocket ping.
    Ping,
    /// Lets this many times 20 ms pass (on the paused clock).
    Wait(u8),
    /// Shuts the node down (it closes every connection with 1001 and refuses new ones).
    Shutdown,
}

/// The `Cookie` header of a new connection (sessions mode only; ignored in plain mode).
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq)]
pub enum Cookie {
    /// The first session's signed cookie.
    First,
    /// The second session's.
    Second,
    /// No cookie (refused with 4401).
    Missing,
    /// A cookie with a bad signature (refused with 4401).
    Forged,
}

/// The `v` of a `hello`.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq)]
pub enum Version {
    /// 1, the version spoken.
    One,
    /// 0.
    Zero,
    /// 2.
    Two,
    /// `u32::MAX`.
    Max,
}

/// A tab id.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq)]
pub enum Tab {
    /// `tab-a`.
    A,
    /// `tab-b`.
    B,
    /// Empty (ignored by the node).
    Empty,
    /// 65 characters (ignored: too long).
    Long,
    /// With characters a tab id may not have (ignored).
    Bad,
}

/// One entry of a `hello`'s or `resume`'s `streams`.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq)]
pub struct StreamPos {
    /// The stream.
    pub stream: Stream,
    /// Its epoch.
    pub epoch: Epoch,
    /// The offset.
    pub off: Off,
}

/// A stream name.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq)]
pub enum Stream {
    /// `c:room@alpha` (a channel of this member).
    Room,
    /// `c:p:lobby@alpha` (a channel with presence).
    Lobby,
    /// `s:<own session>@alpha`.
    OwnSession,
    /// `s:<the session of another slot's connection>@alpha`.
    SessionOf(u8),
    /// `c:room` (the name a shared history would use).
    RoomShared,
    /// `c:room@beta` (another member's).
    RoomElsewhere,
    /// `x:room@alpha` (no such kind of stream).
    Junk,
    /// The empty string.
    Empty,
    /// `c:room<n>@alpha`: many distinct channel streams.
    Numbered(u8),
}

/// An epoch.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq)]
pub enum Epoch {
    /// The epoch the clients have seen for the stream (empty when none was seen).
    Real,
    /// The empty epoch (`continuity_lost` told the client to start afresh).
    Empty,
    /// An epoch of another log.
    Other,
    /// Not even hexadecimal.
    Junk,
}

/// An offset.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq)]
pub enum Off {
    /// 0.
    Zero,
    /// 1.
    One,
    /// The highest offset the clients have seen in the stream.
    Last,
    /// One after it.
    Next,
    /// One before it.
    Before,
    /// `u64::MAX`.
    Max,
    /// `u64::MAX - 1`.
    AlmostMax,
    /// Any.
    Any(u64),
}

/// A client message id.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq)]
pub enum Id {
    /// The id this connection sent last (a duplicate).
    Same,
    /// One more than that.
    Next,
    /// 0.
    Zero,
    /// `u64::MAX`.
    Max,
    /// Any.
    Any(u64),
}

/// An application id.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq)]
pub enum App {
    /// `rooms`: the test application (channels, sessions, presence, RPC).
    Rooms,
    /// `plain`: echoes to the connection, no RPC.
    Plain,
    /// `nope`: not served.
    Unknown,
    /// The empty id.
    Empty,
}

/// The data of a `msg`: a command of the `rooms` application, or any JSON.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq)]
pub enum Command {
    /// Subscribes the connection to a channel.
    Join(Channel),
    /// Unsubscribes it.
    Leave(Channel),
    /// Adds the connection's session to a channel.
    Add(Channel),
    /// Removes it.
    Remove(Channel),
    /// Removes every session from a channel.
    Clear(Channel),
    /// Sends to a channel, excluding the sender when `others`.
    Say {
        /// The channel.
        channel: Channel,
        /// Exclude the sender.
        others: bool,
    },
    /// Sends to a session.
    Tell(SessionRef),
    /// Sends to a connection.
    Direct(ConnRef),
    /// Asks for a channel's presence.
    Presence(Channel),
    /// Asks for the tracker's table.
    Table,
    /// Asks for this many messages to the connection, at once.
    Flood(u8),
    /// Any small JSON (not a command).
    Data(Json),
}

/// A channel.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq)]
pub enum Channel {
    /// `room`.
    Room,
    /// `p:lobby` (with presence).
    Lobby,
    /// `p:other` (with presence).
    Other,
    /// The empty name.
    Empty,
    /// `room<n>`.
    Numbered(u8),
}

/// A session named in a command.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq)]
pub enum SessionRef {
    /// The sender's.
    Own,
    /// The session of another slot's connection.
    Of(u8),
    /// One nobody has.
    Junk,
}

/// A connection named in a command.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq)]
pub enum ConnRef {
    /// The sender.
    Own,
    /// Another slot's connection.
    Of(u8),
    /// One that does not exist.
    Junk,
}

/// A function name.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq)]
pub enum RpcName {
    /// `room.who`: the caller's connection.
    Who,
    /// `room.echo`: its argument.
    Echo,
    /// `room.fail`: always an error.
    Fail,
    /// `room.join`: subscribes the caller to a channel.
    Join,
    /// Not registered.
    Unknown,
    /// The empty name.
    Empty,
}

/// Small JSON values.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float (`null` when not finite).
    Float(u64),
    /// A string of this many `x`.
    Text(u8),
    /// An array of this many small numbers.
    List(u8),
    /// `{"op": <string of n>}`: an unknown command.
    Op(u8),
    /// Arrays nested this deep (past serde_json's recursion limit from 128 on).
    Deep(u8),
}

/// A fragment of raw text.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq)]
pub enum Frag {
    /// One byte.
    Byte(u8),
    /// `{`.
    Open,
    /// `}`.
    Close,
    /// `[`.
    OpenList,
    /// `]`.
    CloseList,
    /// `,`.
    Comma,
    /// `:`.
    Colon,
    /// `"t":`.
    KeyT,
    /// One of the client frame tags, quoted.
    Tag(u8),
    /// One of the client frame fields, quoted, with a colon.
    Key(u8),
    /// A number.
    Number(u64),
    /// `"rooms"`.
    Rooms,
    /// `"c:room@alpha"`.
    RoomStream,
    /// `"\ud800"`: a lone surrogate.
    Surrogate,
    /// `null`.
    Null,
}

/// Writes a value as the bytes `arbitrary` decodes it from.
pub trait Encode {
    /// Appends the encoding of `self`.
    fn encode(&self, out: &mut Vec<u8>);
}

/// The bytes of an input.
pub fn encode(input: &Input) -> Vec<u8> {
    let mut out = Vec::new();
    input.encode(&mut out);
    out
}

/// The `u32` that the derived `arbitrary` maps to variant `index` of `count`.
fn variant(out: &mut Vec<u8>, index: u32, count: u32) {
    // The derive picks `(u64::from(x) * count) >> 32`: the least x for `index` is the ceiling
    // of `index * 2^32 / count`.
    let x = ((u64::from(index) << 32).div_ceil(u64::from(count))) as u32;
    out.extend_from_slice(&x.to_le_bytes());
}

impl Encode for u8 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}

impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl Encode for u64 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Encode for i64 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.encode(out);
            }
        }
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        // `arbitrary` reads a "more?" flag before every element.
        for v in self {
            out.push(1);
            v.encode(out);
        }
        out.push(0);
    }
}

impl Encode for Input {
    fn encode(&self, out: &mut Vec<u8>) {
        self.sessions.encode(out);
        self.steps.encode(out);
    }
}

impl Encode for Step {
    fn encode(&self, out: &mut Vec<u8>) {
        self.conn.encode(out);
        self.op.encode(out);
    }
}

impl Encode for Op {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 13;
        match self {
            Op::Open(c) => {
                variant(out, 0, N);
                c.encode(out);
            }
            Op::Close => variant(out, 1, N),
            Op::Drop => variant(out, 2, N),
            Op::Hello {
                version,
                tab,
                streams,
            } => {
                variant(out, 3, N);
                version.encode(out);
                tab.encode(out);
                streams.encode(out);
            }
            Op::Resume(streams) => {
                variant(out, 4, N);
                streams.encode(out);
            }
            Op::Msg { app, data, id } => {
                variant(out, 5, N);
                app.encode(out);
                data.encode(out);
                id.encode(out);
            }
            Op::Rpc { app, id, name, args } => {
                variant(out, 6, N);
                app.encode(out);
                id.encode(out);
                name.encode(out);
                args.encode(out);
            }
            Op::Raw(frags) => {
                variant(out, 7, N);
                frags.encode(out);
            }
            Op::Binary(n) => {
                variant(out, 8, N);
                n.encode(out);
            }
            Op::Big => variant(out, 9, N),
            Op::Ping => variant(out, 10, N),
            Op::Wait(n) => {
                variant(out, 11, N);
                n.encode(out);
            }
            Op::Shutdown => variant(out, 12, N),
        }
    }
}

/// Unit-only enums: their variant index.
macro_rules! encode_unit_enum {
    ($ty:ty, $($variant:ident),+) => {
        impl Encode for $ty {
            fn encode(&self, out: &mut Vec<u8>) {
                let all = [$(<$ty>::$variant),+];
                let count = all.len() as u32;
                let index = all.iter().position(|v| v == self).unwrap_or(0) as u32;
                variant(out, index, count);
            }
        }
    };
}

encode_unit_enum!(Cookie, First, Second, Missing, Forged);
encode_unit_enum!(Version, One, Zero, Two, Max);
encode_unit_enum!(Tab, A, B, Empty, Long, Bad);
encode_unit_enum!(Epoch, Real, Empty, Other, Junk);
encode_unit_enum!(App, Rooms, Plain, Unknown, Empty);
encode_unit_enum!(RpcName, Who, Echo, Fail, Join, Unknown, Empty);

impl Encode for StreamPos {
    fn encode(&self, out: &mut Vec<u8>) {
        self.stream.encode(out);
        self.epoch.encode(out);
        self.off.encode(out);
    }
}

impl Encode for Stream {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 9;
        match self {
            Stream::Room => variant(out, 0, N),
            Stream::Lobby => variant(out, 1, N),
            Stream::OwnSession => variant(out, 2, N),
            Stream::SessionOf(n) => {
                variant(out, 3, N);
                n.encode(out);
            }
            Stream::RoomShared => variant(out, 4, N),
            Stream::RoomElsewhere => variant(out, 5, N),
            Stream::Junk => variant(out, 6, N),
            Stream::Empty => variant(out, 7, N),
            Stream::Numbered(n) => {
                variant(out, 8, N);
                n.encode(out);
            }
        }
    }
}

impl Encode for Off {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 8;
        let index = match self {
            Off::Zero => 0,
            Off::One => 1,
            Off::Last => 2,
            Off::Next => 3,
            Off::Before => 4,
            Off::Max => 5,
            Off::AlmostMax => 6,
            Off::Any(_) => 7,
        };
        variant(out, index, N);
        if let Off::Any(n) = self {
            n.encode(out);
        }
    }
}

impl Encode for Id {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 5;
        let index = match self {
            Id::Same => 0,
            Id::Next => 1,
            Id::Zero => 2,
            Id::Max => 3,
            Id::Any(_) => 4,
        };
        variant(out, index, N);
        if let Id::Any(n) = self {
            n.encode(out);
        }
    }
}

impl Encode for Command {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 12;
        match self {
            Command::Join(c) => {
                variant(out, 0, N);
                c.encode(out);
            }
            Command::Leave(c) => {
                variant(out, 1, N);
                c.encode(out);
            }
            Command::Add(c) => {
                variant(out, 2, N);
                c.encode(out);
            }
            Command::Remove(c) => {
                variant(out, 3, N);
                c.encode(out);
            }
            Command::Clear(c) => {
                variant(out, 4, N);
                c.encode(out);
            }
            Command::Say { channel, others } => {
                variant(out, 5, N);
                channel.encode(out);
                others.encode(out);
            }
            Command::Tell(s) => {
                variant(out, 6, N);
                s.encode(out);
            }
            Command::Direct(c) => {
                variant(out, 7, N);
                c.encode(out);
            }
            Command::Presence(c) => {
                variant(out, 8, N);
                c.encode(out);
            }
            Command::Table => variant(out, 9, N),
            Command::Flood(n) => {
                variant(out, 10, N);
                n.encode(out);
            }
            Command::Data(j) => {
                variant(out, 11, N);
                j.encode(out);
            }
        }
    }
}

impl Encode for Channel {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 5;
        match self {
            Channel::Room => variant(out, 0, N),
            Channel::Lobby => variant(out, 1, N),
            Channel::Other => variant(out, 2, N),
            Channel::Empty => variant(out, 3, N),
            Channel::Numbered(n) => {
                variant(out, 4, N);
                n.encode(out);
            }
        }
    }
}

impl Encode for SessionRef {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            SessionRef::Own => variant(out, 0, 3),
            SessionRef::Of(n) => {
                variant(out, 1, 3);
                n.encode(out);
            }
            SessionRef::Junk => variant(out, 2, 3),
        }
    }
}

impl Encode for ConnRef {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ConnRef::Own => variant(out, 0, 3),
            ConnRef::Of(n) => {
                variant(out, 1, 3);
                n.encode(out);
            }
            ConnRef::Junk => variant(out, 2, 3),
        }
    }
}

impl Encode for Json {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 8;
        match self {
            Json::Null => variant(out, 0, N),
            Json::Bool(b) => {
                variant(out, 1, N);
                b.encode(out);
            }
            Json::Int(i) => {
                variant(out, 2, N);
                i.encode(out);
            }
            Json::Float(bits) => {
                variant(out, 3, N);
                bits.encode(out);
            }
            Json::Text(n) => {
                variant(out, 4, N);
                n.encode(out);
            }
            Json::List(n) => {
                variant(out, 5, N);
                n.encode(out);
            }
            Json::Op(n) => {
                variant(out, 6, N);
                n.encode(out);
            }
            Json::Deep(n) => {
                variant(out, 7, N);
                n.encode(out);
            }
        }
    }
}

impl Encode for Frag {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 15;
        match self {
            Frag::Byte(b) => {
                variant(out, 0, N);
                b.encode(out);
            }
            Frag::Open => variant(out, 1, N),
            Frag::Close => variant(out, 2, N),
            Frag::OpenList => variant(out, 3, N),
            Frag::CloseList => variant(out, 4, N),
            Frag::Comma => variant(out, 5, N),
            Frag::Colon => variant(out, 6, N),
            Frag::KeyT => variant(out, 7, N),
            Frag::Tag(n) => {
                variant(out, 8, N);
                n.encode(out);
            }
            Frag::Key(n) => {
                variant(out, 9, N);
                n.encode(out);
            }
            Frag::Number(n) => {
                variant(out, 10, N);
                n.encode(out);
            }
            Frag::Rooms => variant(out, 11, N),
            Frag::RoomStream => variant(out, 12, N),
            Frag::Surrogate => variant(out, 13, N),
            Frag::Null => variant(out, 14, N),
        }
    }
}
