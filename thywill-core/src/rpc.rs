//! The [`RpcHandler`] trait and the stable RPC error codes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{AppContext, BoxFuture, Client};

/// Stable RPC error codes, as sent on the wire (the original's two-letter codes, extended).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RpcErrorCode {
    /// The permission hook refused the call.
    #[serde(rename = "np")]
    NoPermission,
    /// No function of that name.
    #[serde(rename = "nf")]
    NoFunction,
    /// The arguments do not match the function's parameter types.
    #[serde(rename = "ba")]
    BadArguments,
    /// The function ran and returned an error.
    #[serde(rename = "he")]
    HandlerError,
    /// No reply within the timeout.
    #[serde(rename = "to")]
    Timeout,
    /// The connection dropped while the call was pending (set by the client library).
    #[serde(rename = "dc")]
    Disconnected,
}

impl RpcErrorCode {
    /// The wire code, such as `"nf"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoPermission => "np",
            Self::NoFunction => "nf",
            Self::BadArguments => "ba",
            Self::HandlerError => "he",
            Self::Timeout => "to",
            Self::Disconnected => "dc",
        }
    }
}

/// A failed call: a stable code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rpc error {}: {message}", .code.as_str())]
pub struct RpcError {
    /// The stable code.
    pub code: RpcErrorCode,
    /// What went wrong.
    pub message: String,
}

impl RpcError {
    /// Builds an error.
    pub fn new(code: RpcErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Answers remote procedure calls for one application.
pub trait RpcHandler: Send + Sync + 'static {
    /// Calls function `name` for `caller` with JSON `args`.
    ///
    /// The transport applies no timeout of its own: the handler bounds its calls.
    fn call<'a>(
        &'a self,
        caller: &'a Client,
        name: &'a str,
        args: Value,
    ) -> BoxFuture<'a, Result<Value, RpcError>>;

    /// Calls function `name` for `caller` in the context of the application that offers it:
    /// what the transport does, so that functions can use the [`AppContext`] (send messages,
    /// read and write the caller's session data). The default ignores the context and calls
    /// [`call`](RpcHandler::call).
    fn call_in<'a>(
        &'a self,
        ctx: &'a AppContext,
        caller: &'a Client,
        name: &'a str,
        args: Value,
    ) -> BoxFuture<'a, Result<Value, RpcError>> {
        let _ = ctx;
        self.call(caller, name, args)
    }
}
