//! Remote procedure calls from the browser to server functions: an explicit, typed
//! [`Registry`] that is safe to expose to the internet.
//!
//! The original thywill looked functions up by walking object properties (so callers could
//! reach built-ins), never checked permissions, and could be crashed by a malformed call.
//! Here a function exists only if it was registered by name; its arguments are decoded into
//! Rust types; a permission hook sees every call; every failure is an error reply with a
//! stable code; and nothing a caller sends can panic the server.
//!
//! # Server side
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use thywill_rpc::{Registry, RpcOnly};
//!
//! let registry = Registry::builder()
//!     // Synchronous: runs inline; the result is serialised with serde.
//!     .function("powers.square", |x: f64| x * x)
//!     // Asynchronous: awaited under a timeout, and cancelled when it runs out.
//!     .async_function("multiplicative.divideByTwo", |x: f64| async move { Ok::<_, Infallible>(x / 2.0) })
//!     // Several parameters: `args` is the positional array `[a, b]`.
//!     .function("maths.hypot", |a: f64, b: f64| a.hypot(b))
//!     // Fallible: an `Err` is answered with code `he` and its message.
//!     .try_function("text.parse", |s: String| s.parse::<i64>())
//!     .timeout("multiplicative.divideByTwo", Duration::from_secs(2))
//!     // Asked before every call; `false` answers `np`.
//!     .permission(|_caller, name| !name.starts_with("admin."))
//!     .build()?;
//!
//! // An application that only offers functions; or `with_rpc(my_app, registry)` to add them
//! // to any application; or return the registry from your own `Application::rpc`.
//! let app = RpcOnly(registry);
//! # let _ = app;
//! # Ok::<(), thywill_rpc::RpcBuildError>(())
//! ```
//!
//! A function registered with [`RegistryBuilder::async_function_with_context`] is also given
//! the application's [`AppContext`](thywill_core::AppContext), as hooks are: it can send
//! messages and read and write the caller's session data
//! ([`AppContext::session_data`](thywill_core::AppContext::session_data)). The transport
//! passes the context through [`RpcHandler::call_in`].
//!
//! # Wire format and error codes
//!
//! The browser sends `{"t":"rpc","app":"calculations","id":7,"name":"powers.square","args":[10]}`
//! and gets `{"t":"rpc_ok","app":"calculations","id":7,"result":100}` or
//! `{"t":"rpc_err","app":"calculations","id":7,"code":"nf","message":"no function `x`"}`.
//! Replies are their own frames: they never reach the application's ordinary `received`
//! path. `args` is the function's parameters as a positional array (see [`Args`]).
//!
//! | code | meaning |
//! |---|---|
//! | `np` | the permission hook said no |
//! | `nf` | no function of that name (or the application has no functions) |
//! | `ba` | `args` does not fit the parameter types (serde's message says why) |
//! | `he` | the function returned an error (its message) or panicked |
//! | `to` | no result within the function's timeout ([`DEFAULT_TIMEOUT`] unless set) |
//! | `dc` | the connection dropped while the call was pending (set by the browser library) |
//!
//! Non-finite floats have no JSON form: a function returning `NaN` or `Infinity` answers
//! `null`.
//!
//! # Browser side
//!
//! The client library (`<base>/thywill/thywill.js`) gives every `ApplicationInterface` an
//! `rpc(name, args, {timeout})` method returning a Promise, which rejects with an `Error`
//! whose `.code` is one of the codes above; every pending call is rejected with `dc` the
//! moment the connection drops. A callback form, `rpc({name, args}, (code, result) => …)`,
//! is kept for parity with the original.
//!
//! # Typed browser callers
//!
//! [`Registry::typescript_declarations`] generates TypeScript declarations from the Rust
//! parameter and result types, through their [`schemars::JsonSchema`] implementations: every
//! parameter and result type needs one (schemars has them for the standard types; derive it
//! next to `Serialize`/`Deserialize` for your own, with
//! `#[schemars(crate = "thywill_rpc::schemars")]` if you use the re-export). The output is a
//! global interface mapping each function name to its argument tuple and its result, plus
//! the named types it uses:
//!
//! ```text
//! interface CalculationsRpc {
//!   "powers.square": { args: [number]; result: number | null };
//! }
//! ```
//!
//! That is the shape the client library's declarations (`<base>/thywill/thywill.d.ts`)
//! expect as the type parameter of `ApplicationInterface<M>`. Serve the declarations next to
//! the page (the Calculations example serves them at `/calculations/rpc.d.ts`) or write them
//! to a file in a build step; name the interface with
//! [`RegistryBuilder::typescript_interface`]. A TypeScript caller references both files and
//! names the interface:
//!
//! ```text
//! /// <reference path="thywill.d.ts" />
//! /// <reference path="rpc.d.ts" />
//! const calc = new Thywill.ApplicationInterface<CalculationsRpc>("calculations");
//! const squared: number | null = await calc.rpc("powers.square", [10]);   // checked
//! calc.rpc("powers.square", ["10"]);        // error: string is not assignable to number
//! calc.rpc("powers.square", [1, 2]);        // error: the function takes one argument
//! const s: string = await calc.rpc("powers.square", [3]);   // error: the result is a number
//! calc.rpc({ name: "powers.square", args: [3] }, (code, result) => {});   // callback form, typed too
//! ```
//!
//! Names that are not in the interface stay callable, untyped (`calc.rpc<R>("other.fn", …)`),
//! as the client library allows for functions it has no declarations of. Naming the interface
//! `ThywillRpcFunctions` instead merges it into the client library's default map, which types
//! every `ApplicationInterface` created without a type parameter.
//!
//! Checking needs nothing but the TypeScript compiler:
//! `npx -p typescript@5 tsc --noEmit --strict thywill.d.ts rpc.d.ts app.ts` (the
//! Calculations example's tests do exactly that).

mod app;
mod args;
mod error;
mod registry;
mod typescript;

pub use app::{RpcOnly, WithRpc, with_rpc};
pub use args::{Args, Handler};
pub use error::RpcBuildError;
pub use registry::{DEFAULT_TIMEOUT, FunctionKind, Registry, RegistryBuilder};
pub use thywill_core::{RpcError, RpcErrorCode, RpcHandler};

/// Re-export of schemars, whose `JsonSchema` derive every parameter and result type needs.
pub use schemars;
