//! Hand-made inputs of the `node` target, committed as its seeds (`seeds/node/<name>.bin`,
//! the bytes [`super::ops::encode`] writes). The test `node_seeds_are_current` checks that
//! the files are these inputs; `THYWILL_FUZZ_WRITE_SEEDS=1` makes it write them.

use super::ops::{
    App, Channel, Command, ConnRef, Cookie, Epoch, Frag, Id, Input, Json, Off, Op, RpcName, SessionRef, Step,
    Stream, StreamPos, Tab, Version,
};

fn step(conn: u8, op: Op) -> Step {
    Step { conn, op }
}

fn hello(tab: Option<Tab>, streams: Vec<StreamPos>) -> Op {
    Op::Hello {
        version: Version::One,
        tab,
        streams,
    }
}

fn msg(data: Command, id: Option<Id>) -> Op {
    Op::Msg {
        app: App::Rooms,
        data,
        id,
    }
}

fn pos(stream: Stream, epoch: Epoch, off: Off) -> StreamPos {
    StreamPos { stream, epoch, off }
}

/// The seeds, by name.
pub fn all() -> Vec<(&'static str, Input)> {
    vec![
        (
            // The overflow behind issue 12: a resume from offset u64::MAX in the stream's real
            // epoch (and in the session's stream, and from one below the maximum).
            "resume-max-offset",
            Input {
                sessions: true,
                steps: vec![
                    step(0, Op::Open(Cookie::First)),
                    step(1, Op::Open(Cookie::Second)),
                    step(0, hello(Some(Tab::A), vec![])),
                    step(0, msg(Command::Join(Channel::Room), None)),
                    step(
                        1,
                        msg(
                            Command::Say {
                                channel: Channel::Room,
                                others: false,
                            },
                            None,
                        ),
                    ),
                    step(1, msg(Command::Tell(SessionRef::Of(0)), None)),
                    step(0, Op::Resume(vec![pos(Stream::Room, Epoch::Real, Off::Max)])),
                    step(
                        0,
                        Op::Resume(vec![
                            pos(Stream::OwnSession, Epoch::Real, Off::Max),
                            pos(Stream::Room, Epoch::Real, Off::AlmostMax),
                        ]),
                    ),
                    step(
                        0,
                        hello(Some(Tab::A), vec![pos(Stream::Room, Epoch::Real, Off::Max)]),
                    ),
                    step(0, Op::Resume(vec![pos(Stream::Room, Epoch::Real, Off::Before)])),
                ],
            },
        ),
        (
            // A second hello naming another tab, then the first again: each tab keeps its
            // own mark.
            "second-tab",
            Input {
                sessions: true,
                steps: vec![
                    step(0, Op::Open(Cookie::First)),
                    step(0, hello(Some(Tab::A), vec![])),
                    step(0, msg(Command::Data(Json::Int(1)), Some(Id::Any(1)))),
                    step(0, msg(Command::Data(Json::Int(2)), Some(Id::Next))),
                    step(0, Op::Wait(3)),
                    step(0, hello(Some(Tab::B), vec![])),
                    step(0, msg(Command::Data(Json::Int(1)), Some(Id::Any(1)))),
                    step(0, hello(Some(Tab::A), vec![])),
                    step(0, msg(Command::Data(Json::Int(2)), Some(Id::Any(2)))),
                    step(0, Op::Close),
                    step(0, Op::Open(Cookie::First)),
                    step(0, hello(Some(Tab::A), vec![])),
                    step(0, msg(Command::Data(Json::Int(2)), Some(Id::Any(2)))),
                ],
            },
        ),
        (
            // Duplicate message ids, ids going down, and the largest id twice.
            "duplicate-ids",
            Input {
                sessions: false,
                steps: vec![
                    step(0, Op::Open(Cookie::First)),
                    step(0, hello(Some(Tab::A), vec![])),
                    step(0, msg(Command::Join(Channel::Lobby), Some(Id::Any(5)))),
                    step(0, msg(Command::Join(Channel::Lobby), Some(Id::Same))),
                    step(
                        0,
                        msg(
                            Command::Say {
                                channel: Channel::Lobby,
                                others: true,
                            },
                            Some(Id::Any(4)),
                        ),
                    ),
                    step(
                        0,
                        msg(
                            Command::Say {
                                channel: Channel::Lobby,
                                others: false,
                            },
                            Some(Id::Max),
                        ),
                    ),
                    step(
                        0,
                        msg(
                            Command::Say {
                                channel: Channel::Lobby,
                                others: false,
                            },
                            Some(Id::Same),
                        ),
                    ),
                    step(0, msg(Command::Data(Json::Null), Some(Id::Zero))),
                    step(0, Op::Wait(2)),
                ],
            },
        ),
        (
            // Two sessions, channels with presence, sends to channels, sessions and
            // connections, and connections that go away with and without a close frame.
            "presence-rooms",
            Input {
                sessions: true,
                steps: vec![
                    step(0, Op::Open(Cookie::First)),
                    step(1, Op::Open(Cookie::Second)),
                    step(2, Op::Open(Cookie::First)),
                    step(3, Op::Open(Cookie::Forged)),
                    step(0, msg(Command::Add(Channel::Lobby), None)),
                    step(1, msg(Command::Join(Channel::Lobby), None)),
                    step(2, msg(Command::Join(Channel::Other), None)),
                    step(
                        1,
                        msg(
                            Command::Say {
                                channel: Channel::Lobby,
                                others: true,
                            },
                            None,
                        ),
                    ),
                    step(2, msg(Command::Tell(SessionRef::Of(1)), None)),
                    step(1, msg(Command::Direct(ConnRef::Of(0)), None)),
                    step(1, msg(Command::Direct(ConnRef::Junk), None)),
                    step(0, msg(Command::Presence(Channel::Lobby), None)),
                    step(0, msg(Command::Table, None)),
                    step(0, Op::Drop),
                    step(1, msg(Command::Leave(Channel::Lobby), None)),
                    step(0, Op::Open(Cookie::First)),
                    step(
                        0,
                        hello(Some(Tab::B), vec![pos(Stream::Lobby, Epoch::Real, Off::One)]),
                    ),
                    step(2, msg(Command::Clear(Channel::Lobby), None)),
                    step(1, Op::Close),
                ],
            },
        ),
        (
            // Malformed frames: fragments, a lone surrogate, too many in a row (4000), then a
            // binary frame (1003), an oversized one (1009), pings, a bad version.
            "malformed",
            Input {
                sessions: false,
                steps: vec![
                    step(0, Op::Open(Cookie::First)),
                    step(1, Op::Open(Cookie::First)),
                    step(2, Op::Open(Cookie::First)),
                    step(3, Op::Open(Cookie::First)),
                    step(
                        0,
                        Op::Raw(vec![
                            Frag::Open,
                            Frag::KeyT,
                            Frag::Tag(0),
                            Frag::Comma,
                            Frag::Key(0),
                            Frag::Number(1),
                            Frag::Close,
                        ]),
                    ),
                    step(
                        0,
                        Op::Raw(vec![
                            Frag::Open,
                            Frag::KeyT,
                            Frag::Tag(2),
                            Frag::Comma,
                            Frag::Key(5),
                            Frag::Rooms,
                            Frag::Comma,
                            Frag::Key(6),
                            Frag::Surrogate,
                            Frag::Close,
                        ]),
                    ),
                    step(
                        0,
                        Op::Raw(vec![
                            Frag::Byte(0xff),
                            Frag::Byte(0xfe),
                            Frag::OpenList,
                            Frag::Null,
                        ]),
                    ),
                    step(1, Op::Ping),
                    step(1, Op::Binary(3)),
                    step(2, Op::Big),
                    step(
                        3,
                        Op::Hello {
                            version: Version::Two,
                            tab: Some(Tab::Bad),
                            streams: vec![pos(Stream::Junk, Epoch::Junk, Off::Max)],
                        },
                    ),
                    step(
                        3,
                        Op::Hello {
                            version: Version::One,
                            tab: Some(Tab::Long),
                            streams: vec![
                                pos(Stream::RoomElsewhere, Epoch::Other, Off::One),
                                pos(Stream::RoomShared, Epoch::Empty, Off::Zero),
                                pos(Stream::Empty, Epoch::Real, Off::Any(7)),
                            ],
                        },
                    ),
                    step(3, msg(Command::Data(Json::Deep(200)), None)),
                    step(
                        3,
                        Op::Raw(vec![
                            Frag::Open,
                            Frag::KeyT,
                            Frag::Tag(1),
                            Frag::Comma,
                            Frag::Key(2),
                            Frag::Open,
                            Frag::RoomStream,
                            Frag::Colon,
                            Frag::Open,
                            Frag::Key(3),
                            Frag::Rooms,
                            Frag::Comma,
                            Frag::Key(4),
                            Frag::Number(u64::MAX),
                            Frag::Close,
                            Frag::Close,
                            Frag::Close,
                        ]),
                    ),
                ]
                .into_iter()
                .chain((0..18).map(|_| step(0, Op::Raw(vec![Frag::Close]))))
                .collect(),
            },
        ),
        (
            // A burst: several connections' frames queued before the node reads any of them
            // (the high bit of the slot: no pause after the step).
            "burst",
            Input {
                sessions: true,
                steps: vec![
                    step(0, Op::Open(Cookie::First)),
                    step(1, Op::Open(Cookie::Second)),
                    step(2, Op::Open(Cookie::First)),
                    step(0x80, hello(Some(Tab::A), vec![])),
                    step(0x81, msg(Command::Join(Channel::Lobby), Some(Id::Any(1)))),
                    step(0x82, msg(Command::Add(Channel::Lobby), Some(Id::Any(1)))),
                    step(
                        0x80,
                        msg(
                            Command::Say {
                                channel: Channel::Lobby,
                                others: true,
                            },
                            Some(Id::Any(1)),
                        ),
                    ),
                    step(0x81, Op::Close),
                    step(0x82, msg(Command::Remove(Channel::Lobby), None)),
                    step(0x80, Op::Resume(vec![pos(Stream::Lobby, Epoch::Real, Off::Zero)])),
                    step(0x82, Op::Drop),
                    step(0, msg(Command::Presence(Channel::Lobby), Some(Id::Same))),
                ],
            },
        ),
        (
            // Remote procedures of every kind, for served and unknown applications.
            "rpc",
            Input {
                sessions: false,
                steps: vec![
                    step(0, Op::Open(Cookie::First)),
                    step(
                        0,
                        Op::Rpc {
                            app: App::Rooms,
                            id: 1,
                            name: RpcName::Who,
                            args: Json::Null,
                        },
                    ),
                    step(
                        0,
                        Op::Rpc {
                            app: App::Rooms,
                            id: 2,
                            name: RpcName::Echo,
                            args: Json::List(3),
                        },
                    ),
                    step(
                        0,
                        Op::Rpc {
                            app: App::Rooms,
                            id: 3,
                            name: RpcName::Fail,
                            args: Json::Int(1),
                        },
                    ),
                    step(
                        0,
                        Op::Rpc {
                            app: App::Rooms,
                            id: 4,
                            name: RpcName::Join,
                            args: Json::Text(4),
                        },
                    ),
                    step(
                        0,
                        Op::Rpc {
                            app: App::Rooms,
                            id: 5,
                            name: RpcName::Unknown,
                            args: Json::Null,
                        },
                    ),
                    step(
                        0,
                        Op::Rpc {
                            app: App::Plain,
                            id: 6,
                            name: RpcName::Who,
                            args: Json::Null,
                        },
                    ),
                    step(
                        0,
                        Op::Rpc {
                            app: App::Unknown,
                            id: u64::MAX,
                            name: RpcName::Empty,
                            args: Json::Float(f64::NAN.to_bits()),
                        },
                    ),
                    step(
                        0,
                        Op::Msg {
                            app: App::Unknown,
                            data: Command::Table,
                            id: None,
                        },
                    ),
                    step(0, Op::Wait(1)),
                ],
            },
        ),
        (
            // A flood past the outbound queue (a slow consumer, 4008) while others talk to
            // the same channel, then the flooded client comes back and resumes.
            "flood-and-replay",
            Input {
                sessions: true,
                steps: vec![
                    step(0, Op::Open(Cookie::First)),
                    step(1, Op::Open(Cookie::Second)),
                    step(0, hello(Some(Tab::A), vec![])),
                    step(0, msg(Command::Add(Channel::Room), Some(Id::Next))),
                    step(1, msg(Command::Join(Channel::Room), None)),
                    step(
                        1,
                        msg(
                            Command::Say {
                                channel: Channel::Room,
                                others: true,
                            },
                            None,
                        ),
                    ),
                    step(
                        1,
                        msg(
                            Command::Say {
                                channel: Channel::Room,
                                others: true,
                            },
                            None,
                        ),
                    ),
                    step(0, msg(Command::Flood(200), Some(Id::Next))),
                    step(
                        1,
                        msg(
                            Command::Say {
                                channel: Channel::Room,
                                others: false,
                            },
                            None,
                        ),
                    ),
                    step(0, Op::Open(Cookie::First)),
                    step(
                        0,
                        hello(
                            Some(Tab::A),
                            vec![
                                pos(Stream::Room, Epoch::Real, Off::One),
                                pos(Stream::OwnSession, Epoch::Real, Off::Zero),
                            ],
                        ),
                    ),
                    step(0, Op::Resume(vec![pos(Stream::Room, Epoch::Other, Off::Zero)])),
                    step(2, Op::Open(Cookie::Missing)),
                    step(2, msg(Command::Table, None)),
                    step(
                        0,
                        msg(
                            Command::Say {
                                channel: Channel::Room,
                                others: false,
                            },
                            Some(Id::Next),
                        ),
                    ),
                    step(3, Op::Shutdown),
                    step(1, Op::Open(Cookie::Second)),
                ],
            },
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use arbitrary::{Arbitrary, Unstructured};

    use super::*;
    use crate::node::ops::encode;

    #[test]
    fn seeds_decode_to_what_was_encoded() {
        for (name, input) in all() {
            let bytes = encode(&input);
            let mut u = Unstructured::new(&bytes);
            let decoded = Input::arbitrary(&mut u);
            assert_eq!(decoded.as_ref().ok(), Some(&input), "seed {name}");
        }
    }

    #[test]
    fn node_seeds_are_current() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join("node");
        let write = std::env::var_os("THYWILL_FUZZ_WRITE_SEEDS").is_some();
        for (name, input) in all() {
            let path = dir.join(format!("{name}.bin"));
            let bytes = encode(&input);
            if write {
                std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
                std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            let committed = std::fs::read(&path).unwrap_or_default();
            assert!(
                committed == bytes,
                "{} is not the seed {name}: run with THYWILL_FUZZ_WRITE_SEEDS=1",
                path.display()
            );
        }
    }
}
