//! The [`Registry`] of named server functions and its [`RegistryBuilder`].

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde_json::Value;
use thywill_core::{AppContext, BoxFuture, Client, RpcError, RpcErrorCode, RpcHandler};

use crate::args::{Args, Handler};
use crate::error::RpcBuildError;
use crate::typescript;

/// The timeout of a call when neither the registry nor the function sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest function name echoed back in an error message.
const MAX_NAME_SHOWN: usize = 100;

/// What the erased function does with one call: answer at once (synchronous functions and
/// argument errors) or hand back a future to run under a timeout (asynchronous functions).
enum Invocation {
    Done(Result<Value, RpcError>),
    Spawn(BoxFuture<'static, Result<Value, RpcError>>),
}

/// The outcome of a permission hook.
enum Check {
    Ready(bool),
    Pending(BoxFuture<'static, bool>),
}

/// Runs a function for a caller, in the application's context when the transport gave one.
type Invoke = Box<dyn Fn(Option<&AppContext>, &Client, Value) -> Invocation + Send + Sync>;
type Permission = Box<dyn Fn(&Client, &str) -> Check + Send + Sync>;
/// Describes a function's parameters and result; monomorphised at registration.
type Signature = fn(&mut SchemaGenerator) -> (Vec<Schema>, Schema);
/// The parameter and result schemas of every function, by name.
pub(crate) type Signatures<'a> = BTreeMap<&'a str, (Vec<Schema>, Schema)>;

/// Whether a function is synchronous or asynchronous.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FunctionKind {
    /// A synchronous function: runs to completion on the task answering the call. Keep it
    /// quick; it cannot be interrupted, so the timeout does not apply.
    Sync,
    /// An asynchronous function: awaited under its timeout, and cancelled (dropped) at the
    /// timeout.
    Async,
}

struct Function {
    invoke: Invoke,
    kind: FunctionKind,
    signature: Signature,
    timeout: Option<Duration>,
}

struct Inner {
    functions: HashMap<String, Function>,
    permission: Option<Permission>,
    default_timeout: Duration,
    ts_interface: String,
}

/// An explicit registry of named server functions: the remote procedures of an application.
///
/// Built once with [`Registry::builder`], then cheap to clone. It implements
/// [`RpcHandler`], so an [`Application`](thywill_core::Application) offers its functions by
/// returning it from [`Application::rpc`](thywill_core::Application::rpc) (or by being
/// wrapped with [`with_rpc`](crate::with_rpc)).
///
/// A call goes through these steps, each with its stable error code:
///
/// 1. the permission hook, if any, is asked about the caller and the name (`np`);
/// 2. the name is looked up; there is no reflection, only what was registered (`nf`);
/// 3. `args` is decoded into the function's parameter types (`ba`, with serde's message);
/// 4. the function runs; an `Err`, or a panic, becomes `he` with the error's message;
///    an asynchronous function that does not finish within its timeout is aborted (`to`).
///
/// Nothing a caller sends can panic the server or close its connection.
///
/// ```
/// use std::convert::Infallible;
/// use thywill_rpc::Registry;
///
/// let registry = Registry::builder()
///     .function("powers.square", |x: f64| x * x)
///     .async_function("multiplicative.divideByTwo", |x: f64| async move { Ok::<_, Infallible>(x / 2.0) })
///     .try_function("text.parse", |s: String| s.parse::<i64>())
///     .build()?;
/// assert!(registry.contains("powers.square"));
/// # Ok::<(), thywill_rpc::RpcBuildError>(())
/// ```
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("functions", &self.names().collect::<Vec<_>>())
            .field("permission", &self.inner.permission.is_some())
            .field("default_timeout", &self.inner.default_timeout)
            .finish()
    }
}

impl Registry {
    /// Starts building a registry.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// Whether a function of that name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.inner.functions.contains_key(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let mut names: Vec<&str> = self.inner.functions.keys().map(String::as_str).collect();
        names.sort_unstable();
        names.into_iter()
    }

    /// Whether a registered function is synchronous or asynchronous.
    pub fn kind(&self, name: &str) -> Option<FunctionKind> {
        self.inner.functions.get(name).map(|f| f.kind)
    }

    /// The timeout that applies to calls of `name` (asynchronous functions only).
    pub fn timeout(&self, name: &str) -> Option<Duration> {
        let f = self.inner.functions.get(name)?;
        match f.kind {
            FunctionKind::Sync => None,
            FunctionKind::Async => Some(f.timeout.unwrap_or(self.inner.default_timeout)),
        }
    }

    /// Calls function `name` for `caller` with the JSON `args` of a request.
    ///
    /// This is what the transport does for every `rpc` frame; tests may call it directly.
    pub async fn call(&self, caller: &Client, name: &str, args: Value) -> Result<Value, RpcError> {
        self.call_with(None, caller, name, args).await
    }

    /// Calls function `name` for `caller` in the application's context `ctx`, as the
    /// transport does: functions registered with
    /// [`async_function_with_context`](RegistryBuilder::async_function_with_context) need it
    /// (through [`call`](Registry::call) they answer `he`).
    pub async fn call_in(
        &self,
        ctx: &AppContext,
        caller: &Client,
        name: &str,
        args: Value,
    ) -> Result<Value, RpcError> {
        self.call_with(Some(ctx), caller, name, args).await
    }

    async fn call_with(
        &self,
        ctx: Option<&AppContext>,
        caller: &Client,
        name: &str,
        args: Value,
    ) -> Result<Value, RpcError> {
        if let Some(permission) = &self.inner.permission {
            let allowed = match permission(caller, name) {
                Check::Ready(allowed) => allowed,
                Check::Pending(check) => {
                    let limit = self.inner.default_timeout;
                    match run_bounded(check, limit).await {
                        Ok(allowed) => allowed,
                        Err(Bounded::Elapsed) => {
                            return Err(RpcError::new(
                                RpcErrorCode::Timeout,
                                format!("the permission check gave no answer within {limit:?}"),
                            ));
                        }
                        Err(Bounded::Panicked) => {
                            tracing::error!(function = %shown(name), "the permission hook panicked");
                            false
                        }
                    }
                }
            };
            if !allowed {
                return Err(RpcError::new(
                    RpcErrorCode::NoPermission,
                    format!("no permission to call `{}`", shown(name)),
                ));
            }
        }
        let Some(function) = self.inner.functions.get(name) else {
            return Err(RpcError::new(
                RpcErrorCode::NoFunction,
                format!("no function `{}`", shown(name)),
            ));
        };
        match (function.invoke)(ctx, caller, args) {
            Invocation::Done(result) => result,
            Invocation::Spawn(running) => {
                let limit = function.timeout.unwrap_or(self.inner.default_timeout);
                match run_bounded(running, limit).await {
                    Ok(result) => result,
                    Err(Bounded::Elapsed) => Err(RpcError::new(
                        RpcErrorCode::Timeout,
                        format!("`{name}` gave no result within {limit:?}"),
                    )),
                    Err(Bounded::Panicked) => Err(panicked(name)),
                }
            }
        }
    }

    /// JSON Schemas of every function's parameters and result:
    /// `{"functions": {"<name>": {"args": [..], "result": ..}}, "$defs": {..}}`.
    pub fn json_schema(&self) -> Value {
        let (functions, defs) = self.signatures();
        let functions: serde_json::Map<String, Value> = functions
            .into_iter()
            .map(|(name, (args, result))| {
                let args = args.into_iter().map(Schema::to_value).collect();
                let entry = serde_json::json!({ "args": Value::Array(args), "result": result.to_value() });
                (name.to_owned(), entry)
            })
            .collect();
        serde_json::json!({ "functions": functions, "$defs": defs })
    }

    /// TypeScript declarations of every function's parameter and result types: an interface
    /// mapping each name to `{ args: [...]; result: ... }`, plus the named types it uses.
    ///
    /// The interface is named by [`RegistryBuilder::typescript_interface`] (default
    /// `RpcFunctions`) and plugs into the client library's `ApplicationInterface<M>`; see the
    /// crate documentation for how a browser caller uses it.
    pub fn typescript_declarations(&self) -> String {
        let (functions, defs) = self.signatures();
        typescript::declarations(&self.inner.ts_interface, &functions, &defs)
    }

    /// The signatures of all functions, sorted by name, and the named types they use.
    fn signatures(&self) -> (Signatures<'_>, serde_json::Map<String, Value>) {
        let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
        let functions = self
            .inner
            .functions
            .iter()
            .map(|(name, f)| (name.as_str(), (f.signature)(&mut generator)))
            .collect();
        (functions, generator.take_definitions(true))
    }
}

impl RpcHandler for Registry {
    fn call<'a>(
        &'a self,
        caller: &'a Client,
        name: &'a str,
        args: Value,
    ) -> BoxFuture<'a, Result<Value, RpcError>> {
        Box::pin(Registry::call(self, caller, name, args))
    }

    fn call_in<'a>(
        &'a self,
        ctx: &'a AppContext,
        caller: &'a Client,
        name: &'a str,
        args: Value,
    ) -> BoxFuture<'a, Result<Value, RpcError>> {
        Box::pin(Registry::call_in(self, ctx, caller, name, args))
    }
}

/// Why a bounded future gave no value.
enum Bounded {
    Elapsed,
    Panicked,
}

/// Runs `fut` for at most `limit`, containing a panic. Dropping the returned future (the
/// call was abandoned) or running out of time drops `fut`, which stops the function.
async fn run_bounded<T>(fut: BoxFuture<'static, T>, limit: Duration) -> Result<T, Bounded> {
    match tokio::time::timeout(limit, AssertUnwindSafe(fut).catch_unwind()).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(Bounded::Panicked),
        Err(_) => Err(Bounded::Elapsed),
    }
}

/// A name as echoed in messages: bounded in length.
fn shown(name: &str) -> &str {
    match name.char_indices().nth(MAX_NAME_SHOWN) {
        Some((end, _)) => &name[..end],
        None => name,
    }
}

fn panicked(name: &str) -> RpcError {
    tracing::error!(function = %shown(name), "rpc function panicked");
    RpcError::new(
        RpcErrorCode::HandlerError,
        format!("`{}` failed unexpectedly", shown(name)),
    )
}

/// Decodes the arguments of a call and goes on with `then`, or answers `ba`.
fn with_args<A: Args>(args: Value, then: impl FnOnce(A) -> Invocation) -> Invocation {
    match A::from_json(args) {
        Ok(args) => then(args),
        Err(e) => Invocation::Done(Err(bad_arguments(e))),
    }
}

/// Runs a synchronous function inline: its value encoded, an `Err` answered `he`, a panic `he`.
fn run_sync<T: Serialize, E: fmt::Display>(label: &str, run: impl FnOnce() -> Result<T, E>) -> Invocation {
    Invocation::Done(match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(value)) => encode(&value),
        Ok(Err(e)) => Err(handler_error(e)),
        Err(_) => Err(panicked(label)),
    })
}

/// Starts an asynchronous function, to be spawned: its value encoded, an `Err` answered `he`;
/// a panic while starting it answers `he` at once.
fn run_async<Fut, T, E>(label: &str, start: impl FnOnce() -> Fut) -> Invocation
where
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Serialize,
    E: fmt::Display,
{
    match catch_unwind(AssertUnwindSafe(start)) {
        Ok(fut) => Invocation::Spawn(Box::pin(async move {
            match fut.await {
                Ok(value) => encode(&value),
                Err(e) => Err(handler_error(e)),
            }
        })),
        Err(_) => Invocation::Done(Err(panicked(label))),
    }
}

fn bad_arguments(e: serde_json::Error) -> RpcError {
    RpcError::new(RpcErrorCode::BadArguments, e.to_string())
}

fn handler_error(e: impl fmt::Display) -> RpcError {
    RpcError::new(RpcErrorCode::HandlerError, e.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Value, RpcError> {
    // Non-finite floats (NaN, ±Infinity) become null, as JSON has no such numbers.
    serde_json::to_value(value).map_err(|e| {
        RpcError::new(
            RpcErrorCode::HandlerError,
            format!("the result could not be encoded: {e}"),
        )
    })
}

fn signature<A: Args, T: JsonSchema>(generator: &mut SchemaGenerator) -> (Vec<Schema>, Schema) {
    let args = A::schemas(generator);
    (args, generator.subschema_for::<T>())
}

/// Whether `name` is a dotted list of identifiers (`[A-Za-z_$][A-Za-z0-9_$]*`).
pub(crate) fn valid_name(name: &str) -> bool {
    name.len() <= 200 && name.split('.').all(valid_identifier)
}

pub(crate) fn valid_identifier(segment: &str) -> bool {
    let mut chars = segment.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// Builds a [`Registry`]: functions, a permission hook, timeouts. Settings are checked by
/// [`build`](RegistryBuilder::build).
#[must_use]
pub struct RegistryBuilder {
    functions: Vec<(String, Function)>,
    timeouts: Vec<(String, Duration)>,
    permission: Option<Permission>,
    default_timeout: Duration,
    ts_interface: String,
}

impl Default for RegistryBuilder {
    fn default() -> Self {
        Self {
            functions: Vec::new(),
            timeouts: Vec::new(),
            permission: None,
            default_timeout: DEFAULT_TIMEOUT,
            ts_interface: "RpcFunctions".to_owned(),
        }
    }
}

impl fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field(
                "functions",
                &self.functions.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("timeouts", &self.timeouts)
            .field("permission", &self.permission.is_some())
            .field("default_timeout", &self.default_timeout)
            .finish()
    }
}

impl RegistryBuilder {
    fn add(
        mut self,
        name: impl Into<String>,
        kind: FunctionKind,
        signature: Signature,
        invoke: Invoke,
    ) -> Self {
        let function = Function {
            invoke,
            kind,
            signature,
            timeout: None,
        };
        self.functions.push((name.into(), function));
        self
    }

    /// Registers a synchronous function that cannot fail, such as `|x: f64| x * x`.
    ///
    /// Its parameters are decoded from `args` (see [`Args`]); its result is serialised with
    /// serde (non-finite floats become `null`). It runs inline: keep it quick, and use
    /// [`async_function`](Self::async_function) for anything slow.
    pub fn function<A, H, T>(self, name: impl Into<String>, f: H) -> Self
    where
        A: Args,
        H: Handler<A, Output = T>,
        T: Serialize + JsonSchema,
    {
        let name = name.into();
        let label = name.clone();
        let invoke: Invoke = Box::new(move |_: Option<&AppContext>, _caller: &Client, args: Value| {
            with_args(args, |args: A| {
                run_sync(&label, || Ok::<T, Infallible>(f.call(args)))
            })
        });
        self.add(name, FunctionKind::Sync, signature::<A, T>, invoke)
    }

    /// Registers a synchronous function that may fail: an `Err` is answered with code `he`
    /// and the error's `Display` text.
    pub fn try_function<A, H, T, E>(self, name: impl Into<String>, f: H) -> Self
    where
        A: Args,
        H: Handler<A, Output = Result<T, E>>,
        T: Serialize + JsonSchema,
        E: fmt::Display,
    {
        let name = name.into();
        let label = name.clone();
        let invoke: Invoke = Box::new(move |_: Option<&AppContext>, _caller: &Client, args: Value| {
            with_args(args, |args: A| run_sync(&label, || f.call(args)))
        });
        self.add(name, FunctionKind::Sync, signature::<A, T>, invoke)
    }

    /// Registers an asynchronous function, such as
    /// `|x: f64| async move { Ok::<_, Infallible>(x / 2.0) }`.
    ///
    /// Each call is awaited under the function's timeout (see [`timeout`](Self::timeout)) and
    /// dropped when it runs out; an `Err` is answered with code `he`, a timeout with `to`, a
    /// panic with `he`. Blocking work belongs in `tokio::task::spawn_blocking`.
    pub fn async_function<A, H, Fut, T, E>(self, name: impl Into<String>, f: H) -> Self
    where
        A: Args,
        H: Handler<A, Output = Fut>,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Serialize + JsonSchema,
        E: fmt::Display,
    {
        let name = name.into();
        let label = name.clone();
        let invoke: Invoke = Box::new(move |_: Option<&AppContext>, _caller: &Client, args: Value| {
            with_args(args, |args: A| run_async(&label, || f.call(args)))
        });
        self.add(name, FunctionKind::Async, signature::<A, T>, invoke)
    }

    /// Registers an asynchronous function that is also given the caller (its connection,
    /// session and member), to authorise or personalise per caller. The parameters come as
    /// one tuple: `|caller: Client, (a, b): (f64, f64)| async move { … }`.
    pub fn async_function_with_caller<A, H, Fut, T, E>(self, name: impl Into<String>, f: H) -> Self
    where
        A: Args,
        H: Fn(Client, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Serialize + JsonSchema,
        E: fmt::Display,
    {
        let name = name.into();
        let label = name.clone();
        let invoke: Invoke = Box::new(move |_: Option<&AppContext>, caller: &Client, args: Value| {
            with_args(args, |args: A| run_async(&label, || f(caller.clone(), args)))
        });
        self.add(name, FunctionKind::Async, signature::<A, T>, invoke)
    }

    /// Registers an asynchronous function that is also given the application's context and
    /// the caller: it can send messages, or read and write the caller's session data
    /// ([`AppContext::session_data`], [`AppContext::set_session_data`]). The parameters come
    /// as one tuple, as with [`async_function_with_caller`](Self::async_function_with_caller).
    ///
    /// ```
    /// use thywill_core::{AppContext, Client, CoreError};
    /// use thywill_rpc::Registry;
    ///
    /// let registry = Registry::builder()
    ///     .async_function_with_context("prefs.setName", |ctx: AppContext, caller: Client, (name,): (String,)| async move {
    ///         ctx.set_session_data(&caller.session, &name).await?;
    ///         Ok::<_, CoreError>(name)
    ///     })
    ///     .build()?;
    /// # let _ = registry;
    /// # Ok::<(), thywill_rpc::RpcBuildError>(())
    /// ```
    ///
    /// Called without a context ([`Registry::call`], as in tests of the registry alone), it
    /// answers `he`.
    pub fn async_function_with_context<A, H, Fut, T, E>(self, name: impl Into<String>, f: H) -> Self
    where
        A: Args,
        H: Fn(AppContext, Client, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Serialize + JsonSchema,
        E: fmt::Display,
    {
        let name = name.into();
        let label = name.clone();
        let invoke: Invoke = Box::new(move |ctx: Option<&AppContext>, caller: &Client, args: Value| {
            let Some(ctx) = ctx else {
                return Invocation::Done(Err(RpcError::new(
                    RpcErrorCode::HandlerError,
                    format!("`{}` needs the application's context", shown(&label)),
                )));
            };
            with_args(args, |args: A| {
                run_async(&label, || f(ctx.clone(), caller.clone(), args))
            })
        });
        self.add(name, FunctionKind::Async, signature::<A, T>, invoke)
    }

    /// Sets the permission hook: asked before every call with the caller and the function
    /// name (also for names that are not registered, so that a refusal reveals nothing).
    /// `false` answers `np`.
    pub fn permission<P>(mut self, hook: P) -> Self
    where
        P: Fn(&Client, &str) -> bool + Send + Sync + 'static,
    {
        self.permission = Some(Box::new(move |caller: &Client, name: &str| {
            Check::Ready(
                catch_unwind(AssertUnwindSafe(|| hook(caller, name))).unwrap_or_else(|_| {
                    tracing::error!(function = %shown(name), "the permission hook panicked");
                    false
                }),
            )
        }));
        self
    }

    /// Sets an asynchronous permission hook (for example one that reads a session store).
    /// It is bounded by the default timeout; no answer in time answers `to`.
    pub fn async_permission<P, Fut>(mut self, hook: P) -> Self
    where
        P: Fn(Client, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.permission = Some(Box::new(move |caller: &Client, name: &str| {
            match catch_unwind(AssertUnwindSafe(|| hook(caller.clone(), name.to_owned()))) {
                Ok(check) => Check::Pending(Box::pin(check)),
                Err(_) => {
                    tracing::error!(function = %shown(name), "the permission hook panicked");
                    Check::Ready(false)
                }
            }
        }));
        self
    }

    /// The timeout of asynchronous functions that set none (default [`DEFAULT_TIMEOUT`]).
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// The timeout of one asynchronous function, registered before or after this call.
    pub fn timeout(mut self, name: impl Into<String>, timeout: Duration) -> Self {
        self.timeouts.push((name.into(), timeout));
        self
    }

    /// The name of the TypeScript interface that
    /// [`typescript_declarations`](Registry::typescript_declarations) declares (default
    /// `RpcFunctions`).
    pub fn typescript_interface(mut self, name: impl Into<String>) -> Self {
        self.ts_interface = name.into();
        self
    }

    /// Checks the settings and builds the registry.
    pub fn build(self) -> Result<Registry, RpcBuildError> {
        if !valid_identifier(&self.ts_interface) {
            return Err(RpcBuildError::InvalidTypeName {
                name: self.ts_interface,
            });
        }
        if self.default_timeout.is_zero() {
            return Err(RpcBuildError::ZeroTimeout {
                scope: "default".to_owned(),
                timeout: self.default_timeout,
            });
        }
        let mut functions = HashMap::with_capacity(self.functions.len());
        for (name, function) in self.functions {
            if !valid_name(&name) {
                return Err(RpcBuildError::InvalidName { name });
            }
            if functions.contains_key(&name) {
                return Err(RpcBuildError::Duplicate { name });
            }
            functions.insert(name, function);
        }
        for (name, timeout) in self.timeouts {
            let Some(function) = functions.get_mut(&name) else {
                return Err(RpcBuildError::UnknownFunction { name });
            };
            if timeout.is_zero() {
                return Err(RpcBuildError::ZeroTimeout { scope: name, timeout });
            }
            function.timeout = Some(timeout);
        }
        Ok(Registry {
            inner: Arc::new(Inner {
                functions,
                permission: self.permission,
                default_timeout: self.default_timeout,
                ts_interface: self.ts_interface,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use serde_json::json;

    use super::*;

    fn caller() -> Client {
        Client {
            connection: "c1".into(),
            session: "s1".into(),
            member: "alpha".into(),
            identity: None,
        }
    }

    fn calculations() -> Result<Registry, RpcBuildError> {
        Registry::builder()
            .function("multiplicative.multiplyByTwo", |x: f64| x * 2.0)
            .async_function("multiplicative.divideByTwo", |x: f64| async move {
                Ok::<_, Infallible>(x / 2.0)
            })
            .function("powers.square", |x: f64| x * x)
            .async_function("powers.squareRoot", |x: f64| async move {
                Ok::<_, Infallible>(x.sqrt())
            })
            .build()
    }

    fn code(r: Result<Value, RpcError>) -> Option<&'static str> {
        r.err().map(|e| e.code.as_str())
    }

    #[tokio::test]
    async fn the_originals_five_cases() -> Result<(), RpcBuildError> {
        let r = calculations()?;
        let me = caller();
        assert_eq!(
            r.call(&me, "multiplicative.multiplyByTwo", json!([10])).await,
            Ok(json!(20.0))
        );
        assert_eq!(
            r.call(&me, "multiplicative.divideByTwo", json!([10])).await,
            Ok(json!(5.0))
        );
        assert_eq!(r.call(&me, "powers.square", json!([10])).await, Ok(json!(100.0)));
        assert_eq!(
            r.call(&me, "powers.squareRoot", json!([100])).await,
            Ok(json!(10.0))
        );
        assert_eq!(code(r.call(&me, "not a function", json!([])).await), Some("nf"));
        Ok(())
    }

    #[tokio::test]
    async fn prototype_names_and_bad_arguments() -> Result<(), RpcBuildError> {
        let r = calculations()?;
        let me = caller();
        for name in [
            "toString",
            "constructor.constructor",
            "powers",
            "powers.square.x",
            "",
        ] {
            assert_eq!(code(r.call(&me, name, json!([])).await), Some("nf"), "{name}");
        }
        let e = r.call(&me, "powers.square", json!(["ten"])).await.err();
        assert_eq!(e.as_ref().map(|e| e.code), Some(RpcErrorCode::BadArguments));
        assert!(e.is_some_and(|e| e.message.contains("invalid type: string")));
        assert_eq!(
            code(r.call(&me, "powers.square", json!([1, 2])).await),
            Some("ba")
        );
        assert_eq!(
            code(r.call(&me, "powers.square", json!({"x": 1})).await),
            Some("ba")
        );
        assert_eq!(
            code(r.call(&me, "multiplicative.divideByTwo", json!(null)).await),
            Some("ba")
        );
        // A bare value is accepted for a one-parameter function.
        assert_eq!(r.call(&me, "powers.square", json!(3)).await, Ok(json!(9.0)));
        // NaN has no JSON form: it is answered as null.
        assert_eq!(
            r.call(&me, "powers.squareRoot", json!([-1])).await,
            Ok(Value::Null)
        );
        Ok(())
    }

    #[tokio::test]
    async fn errors_and_panics_become_handler_errors() -> Result<(), RpcBuildError> {
        let r = Registry::builder()
            .try_function("text.parse", |s: String| s.parse::<i64>())
            .async_function("fail.async", || async { Err::<(), _>("it went wrong") })
            .function("panic.sync", |x: u8| -> u8 { panic!("boom {x}") })
            .async_function("panic.async", |x: u8| async move {
                if x > 0 {
                    panic!("boom");
                }
                Ok::<u8, Infallible>(x)
            })
            .build()?;
        let me = caller();
        assert_eq!(r.call(&me, "text.parse", json!(["42"])).await, Ok(json!(42)));
        let e = r.call(&me, "text.parse", json!(["x"])).await.err();
        assert_eq!(
            e.map(|e| (e.code, e.message)),
            Some((RpcErrorCode::HandlerError, "invalid digit found in string".into()))
        );
        let e = r.call(&me, "fail.async", json!([])).await.err();
        assert_eq!(e.map(|e| e.message), Some("it went wrong".into()));
        assert_eq!(code(r.call(&me, "panic.sync", json!([1])).await), Some("he"));
        assert_eq!(code(r.call(&me, "panic.async", json!([1])).await), Some("he"));
        assert_eq!(r.call(&me, "panic.async", json!([0])).await, Ok(json!(0)));
        Ok(())
    }

    #[tokio::test]
    async fn permission_hook_sees_caller_and_name() -> Result<(), RpcBuildError> {
        let r = Registry::builder()
            .function("open.echo", |s: String| s)
            .function("admin.reset", || true)
            .permission(|caller: &Client, name: &str| {
                caller.session.as_str() == "s1" || name.starts_with("open.")
            })
            .build()?;
        let me = caller();
        let other = Client {
            session: "s2".into(),
            ..caller()
        };
        assert_eq!(r.call(&me, "admin.reset", json!([])).await, Ok(json!(true)));
        assert_eq!(code(r.call(&other, "admin.reset", json!([])).await), Some("np"));
        // A refused caller learns nothing about which names exist.
        assert_eq!(code(r.call(&other, "admin.nothing", json!([])).await), Some("np"));
        assert_eq!(r.call(&other, "open.echo", json!(["hi"])).await, Ok(json!("hi")));

        let r = Registry::builder()
            .function("x.y", || 1)
            .async_permission(|caller: Client, name: String| async move {
                tokio::task::yield_now().await;
                caller.connection.as_str() == "c1" && name == "x.y"
            })
            .build()?;
        assert_eq!(r.call(&me, "x.y", json!([])).await, Ok(json!(1)));
        assert_eq!(code(r.call(&me, "x.z", json!([])).await), Some("np"));
        Ok(())
    }

    #[tokio::test]
    async fn slow_functions_time_out_and_are_aborted() -> Result<(), RpcBuildError> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let tx = std::sync::Mutex::new(Some(tx));
        let r = Registry::builder()
            .async_function("slow.forever", move || {
                // Dropped (and so `rx` sees an error) only when the task is aborted.
                let guard = tx.lock().ok().and_then(|mut t| t.take());
                async move {
                    std::future::pending::<()>().await;
                    drop(guard);
                    Ok::<(), Infallible>(())
                }
            })
            .async_function("slow.default", || async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<(), Infallible>(())
            })
            .default_timeout(Duration::from_millis(100))
            .timeout("slow.forever", Duration::from_millis(50))
            .build()?;
        assert_eq!(r.timeout("slow.forever"), Some(Duration::from_millis(50)));
        assert_eq!(r.timeout("slow.default"), Some(Duration::from_millis(100)));
        let me = caller();
        assert_eq!(code(r.call(&me, "slow.forever", json!([])).await), Some("to"));
        assert!(
            tokio::time::timeout(Duration::from_secs(10), rx).await.is_ok(),
            "task not aborted"
        );
        assert_eq!(code(r.call(&me, "slow.default", json!([])).await), Some("to"));
        Ok(())
    }

    #[test]
    fn builder_checks_its_settings() {
        let err = |b: RegistryBuilder| b.build().err();
        assert!(matches!(
            err(Registry::builder().function("a..b", || 1)),
            Some(RpcBuildError::InvalidName { .. })
        ));
        assert!(matches!(
            err(Registry::builder().function("1a", || 1)),
            Some(RpcBuildError::InvalidName { .. })
        ));
        assert!(matches!(
            err(Registry::builder().function("a", || 1).function("a", || 2)),
            Some(RpcBuildError::Duplicate { .. })
        ));
        assert!(matches!(
            err(Registry::builder().timeout("nope", Duration::from_secs(1))),
            Some(RpcBuildError::UnknownFunction { .. })
        ));
        assert!(matches!(
            err(Registry::builder().default_timeout(Duration::ZERO)),
            Some(RpcBuildError::ZeroTimeout { .. })
        ));
        assert!(matches!(
            err(Registry::builder().typescript_interface("not valid")),
            Some(RpcBuildError::InvalidTypeName { .. })
        ));
        assert!(Registry::builder().function("$ok._fine.a1", || 1).build().is_ok());
    }

    #[derive(Serialize, serde::Deserialize, JsonSchema)]
    struct Point {
        x: f64,
        y: f64,
        label: Option<String>,
    }

    #[derive(Serialize, serde::Deserialize, JsonSchema)]
    enum Shape {
        Dot,
        Line(Point, Point),
    }

    #[test]
    fn typescript_declarations_describe_every_function() -> Result<(), RpcBuildError> {
        let r = Registry::builder()
            .function("powers.square", |x: f64| x * x)
            .function("geo.shift", |p: Point, dx: f64| Point { x: p.x + dx, ..p })
            .function("geo.shapes", |n: u32| {
                (0..n).map(|_| Shape::Dot).collect::<Vec<_>>()
            })
            .function("util.now", || Some(1u64))
            .typescript_interface("TestRpc")
            .build()?;
        let ts = r.typescript_declarations();
        assert!(ts.contains("interface TestRpc {"), "{ts}");
        assert!(
            ts.contains(r#"  "powers.square": { args: [number]; result: number };"#),
            "{ts}"
        );
        assert!(
            ts.contains(r#"  "geo.shift": { args: [Point, number]; result: Point };"#),
            "{ts}"
        );
        assert!(
            ts.contains(r#"  "geo.shapes": { args: [number]; result: Array<Shape> };"#),
            "{ts}"
        );
        assert!(
            ts.contains(r#"  "util.now": { args: []; result: number | null };"#),
            "{ts}"
        );
        assert!(ts.contains("type Point = {"), "{ts}");
        assert!(ts.contains("label?: string | null"), "{ts}");
        assert!(
            ts.contains(r#"type Shape = "Dot" | { Line: [Point, Point] };"#),
            "{ts}"
        );
        let schema = r.json_schema();
        assert!(schema.pointer("/functions/powers.square/args/0").is_some());
        assert!(schema.pointer("/$defs/Point").is_some());
        Ok(())
    }
}
