//! The `rpc_request` target: RPC requests from arbitrary input, through the registry.
//!
//! The input is decoded as a client frame; an `rpc` frame's name and arguments are called on
//! [`registry`] through `thywill_core::RpcHandler::call`, as the transport does. The input is
//! also read as bare JSON `args`, and those (and an `rpc` frame's) are offered to every name
//! of [`NAMES`], so that arguments of every shape reach every parameter list.
//!
//! Every call must return (the runtime's clock is paused, so a call that times out does so at
//! once) without panicking, and its answer must be the documented one, which [`expected`]
//! works out independently of the registry: `np` for names the permission hook refuses, then
//! `nf` for unknown names, `ba` for arguments that do not fit the parameter list (a positional
//! array, or a bare value for one parameter), `he` for a function's error or panic, `to` for a
//! timeout, and otherwise the function's own result.

use std::convert::Infallible;
use std::panic;
use std::sync::{LazyLock, Once};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thywill_core::protocol::ClientFrame;
use thywill_core::{Client, RpcError, RpcErrorCode, RpcHandler};
use thywill_rpc::Registry;
use thywill_rpc::schemars::JsonSchema;
use tokio::runtime::Runtime;

use crate::{FRAME_LIMIT, text};

/// Every registered name, plus names the permission hook refuses and names nobody registered.
pub const NAMES: &[&str] = &[
    "num.square",
    "num.half",
    "text.repeat",
    "shop.order",
    "bytes.sum",
    "flag.flip",
    "util.ping",
    "who.member",
    "fail.always",
    "fail.panic",
    "fail.panicLater",
    "slow.never",
    "admin.reset",
    "admin.unknown",
    "no.such",
    "toString",
    "",
];

/// A structured parameter: an object with required, optional and defaulted fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "thywill_rpc::schemars")]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// What is ordered.
    pub item: String,
    /// How many; zero is refused by the function (`he`).
    pub quantity: u32,
    /// Free labels.
    #[serde(default)]
    pub tags: Vec<String>,
    /// An optional discount.
    pub discount: Option<f64>,
}

/// The argument `fail.panic` and `fail.panicLater` panic on.
const PANIC_ON: u8 = 13;

/// The payload of the panics the functions raise on purpose.
#[derive(Debug)]
struct Deliberate;

fn square(x: f64) -> Option<f64> {
    finite(x * x)
}

fn half(x: f64) -> Option<f64> {
    finite(x / 2.0)
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn repeat(n: i64, s: String) -> Result<String, String> {
    match usize::try_from(n) {
        Ok(n) if n <= 8 && s.len() <= 1024 => Ok(s.repeat(n)),
        _ => Err(format!("cannot repeat {} bytes {n} times", s.len())),
    }
}

fn order(o: Order) -> Result<Order, &'static str> {
    if o.quantity == 0 {
        Err("empty order")
    } else {
        Ok(o)
    }
}

fn sum(bytes: Vec<u8>) -> u64 {
    bytes.into_iter().map(u64::from).sum()
}

fn flip(flag: Option<bool>) -> Option<bool> {
    flag.map(|b| !b)
}

fn refuse(s: String) -> Result<(), String> {
    Err(format!("refused {} bytes", s.len()))
}

fn panic_on(n: u8) -> u8 {
    if n == PANIC_ON {
        panic::panic_any(Deliberate);
    }
    n
}

/// The registry under test: functions of several parameter shapes (none, `f64`,
/// `(i64, String)`, a struct, `Vec<u8>`, `Option<bool>`), synchronous and asynchronous,
/// fallible, panicking and never finishing, behind a permission hook that refuses `admin.*`.
pub fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
        let built = Registry::builder()
            .function("num.square", square)
            .async_function("num.half", |x: f64| async move { Ok::<_, Infallible>(half(x)) })
            .try_function("text.repeat", repeat)
            .try_function("shop.order", order)
            .function("bytes.sum", sum)
            .function("flag.flip", flip)
            .function("util.ping", || "pong")
            .async_function_with_caller("who.member", |caller: Client, (): ()| async move {
                Ok::<_, Infallible>(caller.member.to_string())
            })
            .try_function("fail.always", refuse)
            .function("fail.panic", panic_on)
            .async_function("fail.panicLater", |n: u8| async move {
                Ok::<_, Infallible>(panic_on(n))
            })
            .async_function("slow.never", std::future::pending::<Result<(), Infallible>>)
            .timeout("slow.never", Duration::from_millis(5))
            .function("admin.reset", || true)
            .permission(|_caller: &Client, name: &str| !name.starts_with("admin."))
            .build();
        match built {
            Ok(registry) => registry,
            Err(e) => panic!("the fuzz registry does not build: {e}"),
        }
    });
    &REGISTRY
}

/// A current-thread runtime whose clock is paused: when every task waits on a timer, time
/// jumps to the next one, so timeouts fire at once instead of after real milliseconds.
fn runtime() -> &'static Runtime {
    static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
        let built = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build();
        match built {
            Ok(rt) => rt,
            Err(e) => panic!("no tokio runtime: {e}"),
        }
    });
    &RUNTIME
}

fn caller() -> &'static Client {
    static CALLER: LazyLock<Client> = LazyLock::new(|| Client {
        connection: "fuzz-c1".into(),
        session: "fuzz-s1".into(),
        member: "fuzz".into(),
        identity: None,    });
    &CALLER
}

/// Lets the deliberate panics unwind quietly to the registry, which must contain them;
/// every other panic still goes to the hook that was there (libFuzzer's aborts the process).
fn quiet_deliberate_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<Deliberate>().is_none() {
                previous(info);
            }
        }));
    });
}

/// Checks one input; panics when a property does not hold.
pub fn check(data: &[u8]) {
    quiet_deliberate_panics();
    let text = text(data);
    let mut args = Vec::new();
    if let Ok(ClientFrame::Rpc {
        name,
        args: frame_args,
        ..
    }) = ClientFrame::decode(&text, FRAME_LIMIT)
    {
        call_and_check(&name, frame_args.clone());
        args.push(frame_args);
    }
    if let Ok(value) = serde_json::from_str::<Value>(&text) {
        args.push(value);
    }
    for args in args {
        for name in NAMES {
            call_and_check(name, args.clone());
        }
    }
}

/// Calls `name` with `args` through the `RpcHandler` trait and compares the answer with
/// [`expected`].
pub fn call_and_check(name: &str, args: Value) {
    let want = expected(name, &args);
    let handler: &dyn RpcHandler = registry();
    let got = runtime().block_on(handler.call(caller(), name, args.clone()));
    match (&got, &want) {
        (Ok(value), Ok(wanted)) => {
            assert_eq!(value, wanted, "`{name}` with {args}");
        }
        (Err(e), Err(code)) => {
            assert_eq!(e.code, *code, "`{name}` with {args}: {e}");
            check_message(name, e);
        }
        _ => panic!("`{name}` with {args}: got {got:?}, expected {want:?}"),
    }
}

/// Error messages are for people: not empty, and bounded however long the name was (the
/// registry echoes at most 100 characters of a name).
fn check_message(name: &str, e: &RpcError) {
    assert!(!e.message.is_empty(), "`{name}`: {:?} without a message", e.code);
    match e.code {
        RpcErrorCode::NoPermission | RpcErrorCode::NoFunction => {
            let chars = e.message.chars().count();
            assert!(
                chars <= 140,
                "`{name}`: message of {chars} characters: {}",
                e.message
            );
        }
        RpcErrorCode::BadArguments
        | RpcErrorCode::HandlerError
        | RpcErrorCode::Timeout
        | RpcErrorCode::Disconnected => {}
        other => panic!("`{name}`: undocumented code {other:?}"),
    }
}

/// The documented answer to calling `name` with `args`, worked out without the registry.
pub fn expected(name: &str, args: &Value) -> Result<Value, RpcErrorCode> {
    use RpcErrorCode::{BadArguments, HandlerError, NoFunction, NoPermission, Timeout};
    if name.starts_with("admin.") {
        return Err(NoPermission);
    }
    let result = |v: Result<Value, serde_json::Error>| v.map_err(|_| HandlerError);
    match name {
        "num.square" => one::<f64>(args).map(|x| result(serde_json::to_value(square(x)))),
        "num.half" => one::<f64>(args).map(|x| result(serde_json::to_value(half(x)))),
        "text.repeat" => two::<i64, String>(args).map(|(n, s)| match repeat(n, s) {
            Ok(s) => Ok(Value::String(s)),
            Err(_) => Err(HandlerError),
        }),
        "shop.order" => one::<Order>(args).map(|o| match order(o) {
            Ok(o) => result(serde_json::to_value(o)),
            Err(_) => Err(HandlerError),
        }),
        "bytes.sum" => one::<Vec<u8>>(args).map(|b| Ok(Value::from(sum(b)))),
        "flag.flip" => one::<Option<bool>>(args).map(|f| result(serde_json::to_value(flip(f)))),
        "util.ping" => none(args).map(|()| Ok(Value::from("pong"))),
        "who.member" => none(args).map(|()| Ok(Value::from(caller().member.to_string()))),
        "fail.always" => one::<String>(args).map(|_| Err(HandlerError)),
        "fail.panic" | "fail.panicLater" => one::<u8>(args).map(|n| {
            if n == PANIC_ON {
                Err(HandlerError)
            } else {
                Ok(Value::from(n))
            }
        }),
        "slow.never" => none(args).map(|()| Err(Timeout)),
        _ => return Err(NoFunction),
    }
    .unwrap_or(Err(BadArguments))
}

/// No parameters: `null` (no `args`) or `[]`.
fn none(args: &Value) -> Option<()> {
    match args {
        Value::Null => Some(()),
        Value::Array(a) if a.is_empty() => Some(()),
        _ => None,
    }
}

/// One parameter: `[x]`, or a bare `x` that is not an array.
fn one<T: DeserializeOwned>(args: &Value) -> Option<T> {
    match args {
        Value::Array(a) => match a.as_slice() {
            [only] => T::deserialize(only).ok(),
            _ => None,
        },
        bare => T::deserialize(bare).ok(),
    }
}

/// Two parameters: `[a, b]`.
fn two<A: DeserializeOwned, B: DeserializeOwned>(args: &Value) -> Option<(A, B)> {
    match args {
        Value::Array(a) => match a.as_slice() {
            [a, b] => Some((A::deserialize(a).ok()?, B::deserialize(b).ok()?)),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_oracle_agrees_with_the_registry_on_hand_picked_calls() {
        quiet_deliberate_panics();
        for (name, args) in [
            ("num.square", json!([3])),
            ("num.square", json!(3)),
            ("num.square", json!(1e200)),
            ("num.square", json!(["3"])),
            ("num.half", json!([7])),
            ("num.half", json!(null)),
            ("text.repeat", json!([2, "ab"])),
            ("text.repeat", json!([-1, "ab"])),
            ("text.repeat", json!([2])),
            ("text.repeat", json!({"n": 2, "s": "ab"})),
            ("shop.order", json!([{"item": "tea", "quantity": 2}])),
            ("shop.order", json!({"item": "tea", "quantity": 0, "tags": ["x"]})),
            ("shop.order", json!({"item": "tea", "quantity": 1, "extra": 1})),
            ("bytes.sum", json!([[1, 2, 255]])),
            ("bytes.sum", json!([1, 2])),
            ("bytes.sum", json!([[256]])),
            ("flag.flip", json!(null)),
            ("flag.flip", json!([true])),
            ("flag.flip", json!([null])),
            ("util.ping", json!([])),
            ("util.ping", json!([1])),
            ("who.member", json!(null)),
            ("fail.always", json!("x")),
            ("fail.panic", json!([13])),
            ("fail.panic", json!([12])),
            ("fail.panicLater", json!(13)),
            ("slow.never", json!([])),
            ("admin.reset", json!([])),
            ("admin.nothing", json!("anything")),
            ("no.such", json!([])),
            (&"x".repeat(500), json!([])),
        ] {
            call_and_check(name, args);
        }
        assert_eq!(
            expected("fail.panic", &json!([13])),
            Err(RpcErrorCode::HandlerError)
        );
        assert_eq!(expected("slow.never", &json!([])), Err(RpcErrorCode::Timeout));
        assert_eq!(expected("text.repeat", &json!([2, "ab"])), Ok(json!("abab")));
    }
}
