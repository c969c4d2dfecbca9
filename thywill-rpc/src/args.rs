//! Typed parameters: how the JSON `args` of a call become a function's arguments, and how a
//! plain Rust closure becomes a [`Handler`].
//!
//! A function's parameters form a tuple (`()`, `(A,)`, `(A, B)`, … up to eight). The `args` of
//! a call are that tuple as a JSON array, the original thywill's positional form: `[10]` for
//! `|x: f64|`, `[1, "a"]` for `|n: u32, s: String|`, `[]` (or no `args`) for `||`. A
//! one-parameter function also accepts a bare value that is not an array (`10`), so that
//! `args` may be the argument itself.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{DeserializeOwned, Error as _};
use serde_json::Value;

mod sealed {
    pub trait Sealed {}
}

/// A function's parameter list: a tuple of up to eight types that serde can decode and
/// schemars can describe.
///
/// Implemented for `()`, `(A,)`, `(A, B)`, … `(A, B, C, D, E, F, G, H)`; sealed.
pub trait Args: sealed::Sealed + Sized + Send + 'static {
    /// Number of parameters.
    const ARITY: usize;

    /// Decodes the JSON `args` of a call; serde's error message says what did not fit.
    fn from_json(args: Value) -> Result<Self, serde_json::Error>;

    /// JSON Schemas of the parameters, in order.
    fn schemas(generator: &mut SchemaGenerator) -> Vec<Schema>;
}

impl sealed::Sealed for () {}

impl Args for () {
    const ARITY: usize = 0;

    fn from_json(args: Value) -> Result<Self, serde_json::Error> {
        match args {
            Value::Null => Ok(()),
            Value::Array(a) if a.is_empty() => Ok(()),
            Value::Array(a) => Err(serde_json::Error::invalid_length(a.len(), &"no arguments")),
            _ => Err(serde_json::Error::custom(
                "expected no arguments (an empty array)",
            )),
        }
    }

    fn schemas(_: &mut SchemaGenerator) -> Vec<Schema> {
        Vec::new()
    }
}

impl<A: DeserializeOwned + JsonSchema + Send + 'static> sealed::Sealed for (A,) {}

impl<A: DeserializeOwned + JsonSchema + Send + 'static> Args for (A,) {
    const ARITY: usize = 1;

    fn from_json(args: Value) -> Result<Self, serde_json::Error> {
        match args {
            Value::Array(mut a) => match (a.pop(), a.is_empty()) {
                (Some(only), true) => serde_json::from_value(only).map(|x| (x,)),
                (None, _) => Err(serde_json::Error::invalid_length(0, &"1 argument")),
                (Some(_), false) => Err(serde_json::Error::invalid_length(a.len() + 1, &"1 argument")),
            },
            bare => serde_json::from_value(bare).map(|x| (x,)),
        }
    }

    fn schemas(generator: &mut SchemaGenerator) -> Vec<Schema> {
        vec![generator.subschema_for::<A>()]
    }
}

macro_rules! impl_args {
    ($n:expr => $($t:ident)+) => {
        impl<$($t: DeserializeOwned + JsonSchema + Send + 'static),+> sealed::Sealed for ($($t,)+) {}

        impl<$($t: DeserializeOwned + JsonSchema + Send + 'static),+> Args for ($($t,)+) {
            const ARITY: usize = $n;

            fn from_json(args: Value) -> Result<Self, serde_json::Error> {
                match args {
                    Value::Array(a) if a.len() != $n => Err(serde_json::Error::invalid_length(
                        a.len(),
                        &concat!(stringify!($n), " arguments"),
                    )),
                    Value::Array(_) => serde_json::from_value(args),
                    _ => Err(serde_json::Error::custom(concat!(
                        "expected an array of ",
                        stringify!($n),
                        " arguments"
                    ))),
                }
            }

            fn schemas(generator: &mut SchemaGenerator) -> Vec<Schema> {
                vec![$(generator.subschema_for::<$t>()),+]
            }
        }
    };
}

impl_args!(2 => A B);
impl_args!(3 => A B C);
impl_args!(4 => A B C D);
impl_args!(5 => A B C D E);
impl_args!(6 => A B C D E F);
impl_args!(7 => A B C D E F G);
impl_args!(8 => A B C D E F G H);

/// A function of the parameter tuple `A`: implemented for every `Fn(A1, …, An) -> R`
/// (n ≤ 8) that is `Send + Sync + 'static`.
///
/// Authors never implement it; it lets the registry take closures with ordinary parameter
/// lists, such as `|x: f64| x * x`.
pub trait Handler<A>: Send + Sync + 'static {
    /// What the function returns.
    type Output;

    /// Calls the function with the decoded arguments.
    fn call(&self, args: A) -> Self::Output;
}

macro_rules! impl_handler {
    ($($t:ident)*) => {
        impl<Func, R, $($t),*> Handler<($($t,)*)> for Func
        where
            Func: Fn($($t),*) -> R + Send + Sync + 'static,
        {
            type Output = R;

            #[allow(non_snake_case)]
            fn call(&self, ($($t,)*): ($($t,)*)) -> R {
                self($($t),*)
            }
        }
    };
}

impl_handler!();
impl_handler!(A);
impl_handler!(A B);
impl_handler!(A B C);
impl_handler!(A B C D);
impl_handler!(A B C D E);
impl_handler!(A B C D E F);
impl_handler!(A B C D E F G);
impl_handler!(A B C D E F G H);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn positional_arrays_decode_to_tuples() {
        assert_eq!(<(f64,)>::from_json(json!([10])).ok(), Some((10.0,)));
        assert_eq!(<(f64,)>::from_json(json!(10)).ok(), Some((10.0,)));
        assert_eq!(
            <(u8, String)>::from_json(json!([1, "a"])).ok(),
            Some((1, "a".to_owned()))
        );
        assert_eq!(<()>::from_json(json!([])).ok(), Some(()));
        assert_eq!(<()>::from_json(Value::Null).ok(), Some(()));
        assert_eq!(<(Vec<u8>,)>::from_json(json!([[1, 2]])).ok(), Some((vec![1, 2],)));
    }

    #[test]
    fn wrong_shapes_are_refused_with_serde_messages() {
        fn msg<T>(r: Result<T, serde_json::Error>) -> String {
            r.err().map(|e| e.to_string()).unwrap_or_default()
        }
        assert!(msg(<(f64,)>::from_json(json!(["x"]))).contains("invalid type: string"));
        assert!(msg(<(f64,)>::from_json(json!([1, 2]))).contains("invalid length 2"));
        assert!(msg(<(f64,)>::from_json(json!([]))).contains("invalid length 0"));
        assert!(msg(<(f64, f64)>::from_json(json!([1]))).contains("invalid length 1"));
        assert!(msg(<(f64, f64)>::from_json(json!({"a": 1}))).contains("array of 2"));
        assert!(msg(<()>::from_json(json!([1]))).contains("invalid length 1"));
        assert!(msg(<()>::from_json(json!("x"))).contains("no arguments"));
    }

    #[test]
    fn closures_are_handlers() {
        fn call<A, H: Handler<A>>(h: H, a: A) -> H::Output {
            h.call(a)
        }
        assert_eq!(call(|x: f64| x * 2.0, (2.0,)), 4.0);
        assert_eq!(call(|a: u8, b: u8| a + b, (1, 2)), 3);
        assert_eq!(call(|| "none", ()), "none");
    }
}
