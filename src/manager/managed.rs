//! Custom managed types: the [`Managed`] trait a manager server dispatches calls through, the
//! [`ManagedProxy`] trait of the typed proxies clients call, and [`DispatchError`], what a
//! call fails with in the server.
//!
//! Both traits are implemented by the `#[shmproc::managed]` attribute macro on an inherent
//! `impl` block. A call carries data only: the method's name as a string and the codec
//! encoding of its argument tuple. The server matches the name against the methods the macro
//! saw at build time and decodes the arguments as that method's parameter types; an unknown
//! name or undecodable arguments are a [`DispatchError`] to that caller, never a jump to an
//! address a client chose.
//!
//! Method names are matched as strings, and arguments and return values are matched by their
//! encoding only, so the proxy and the server must come from the same build of the type (a
//! method whose parameter types changed between builds may decode wrongly-typed arguments
//! without an error, as any serde message would).

use crate::codec;
use crate::error::Result;
use crate::manager::RemoteObject;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Display;

/// What a method call on a managed object failed with, as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DispatchError {
    /// The type has no method of that name.
    UnknownMethod {
        /// The type the call was made on.
        type_name: String,
        /// The method name the call asked for.
        method: String,
    },
    /// The arguments did not decode as the method's parameter tuple.
    BadArguments {
        /// The method the call asked for.
        method: String,
        /// Why decoding failed.
        reason: String,
    },
    /// The method returned `Err(e)`: `e`'s `Display` text and its codec encoding (so the caller
    /// can decode the typed error, see `Error::remote_error::<E>()`).
    Method {
        /// `e.to_string()`.
        message: String,
        /// `codec::to_bytes(&e)`; empty if `e` failed to encode.
        payload: Vec<u8>,
    },
    /// The method panicked (the server caught it and goes on serving).
    Panicked {
        /// The panic message.
        message: String,
    },
}

/// A type whose values a manager server holds and whose methods clients call through a proxy.
///
/// Implemented by [`#[shmproc::managed]`](crate::managed) on an inherent `impl` block; the
/// value travels to the server with serde when created (`Manager::create(value)`), so
/// `Self: Serialize + DeserializeOwned`.
pub trait Managed: Serialize + DeserializeOwned + Send + 'static {
    /// The name both sides register the type under; the macro uses the type's path as written
    /// (`"Counter"`), overridable with `#[shmproc::managed(name = "...")]`.
    const TYPE_NAME: &'static str;
    /// The proxy the macro generates (`CounterProxy`).
    type Proxy: ManagedProxy;
    /// Runs the method named `method` on `self`. `args` is the codec encoding
    /// ([`codec::to_bytes`]) of the tuple of the method's arguments in order (`()` for
    /// none, `(a,)` for one); the `Ok` value is the codec encoding of the method's return value
    /// (of `T` for a method returning `Result<T, E>`, whose `Err(e)` becomes
    /// [`DispatchError::Method`], requiring `E: Display + Serialize`). Panics are NOT caught
    /// here (the server catches them around the call).
    ///
    /// # Errors
    /// [`DispatchError::UnknownMethod`] for a name the type does not manage,
    /// [`DispatchError::BadArguments`] when `args` is not that method's argument tuple,
    /// [`DispatchError::Method`] when the method returned `Err` (or its return value failed
    /// to encode).
    fn dispatch(
        &mut self,
        method: &str,
        args: &[u8],
    ) -> std::result::Result<Vec<u8>, DispatchError>;
}

/// A typed proxy: a thin wrapper around a [`RemoteObject`] (what the macro generates).
pub trait ManagedProxy: Sized + Clone + Send + Sync {
    /// Wraps a remote object (the manager checked its type name).
    fn from_remote(remote: RemoteObject) -> Self;
    /// The remote object this proxy calls.
    fn remote(&self) -> &RemoteObject;

    /// Calls `method` with the argument tuple `args` through [`remote`](Self::remote) (what
    /// the generated proxy methods do; its bounds are where rustc reports a type that is not
    /// serde).
    #[doc(hidden)]
    fn call_remote<A: Serialize, R: DeserializeOwned>(&self, method: &str, args: &A) -> Result<R> {
        self.remote().call(method, args)
    }
}

/// Helpers of the code `#[shmproc::managed]` generates (not public API): one place decides
/// how arguments decode, how results and errors encode, and what each failure reports.
impl DispatchError {
    /// Decodes the argument tuple of `method`.
    #[doc(hidden)]
    pub fn decode_args<A: DeserializeOwned>(
        method: &str,
        args: &[u8],
    ) -> std::result::Result<A, DispatchError> {
        codec::from_bytes(args).map_err(|e| DispatchError::BadArguments {
            method: method.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Encodes the value `method` returned. A value that fails to encode (a type serde
    /// cannot express in the codec) is reported as the method's failure, with no payload.
    #[doc(hidden)]
    pub fn encode_return<R: Serialize + ?Sized>(
        method: &str,
        value: &R,
    ) -> std::result::Result<Vec<u8>, DispatchError> {
        codec::to_bytes(value).map_err(|e| DispatchError::Method {
            message: format!("the return value of `{method}` failed to encode: {e}"),
            payload: Vec::new(),
        })
    }

    /// The error for a method that returned `Err(error)`.
    #[doc(hidden)]
    pub fn method_failed<E: Display + Serialize + ?Sized>(error: &E) -> DispatchError {
        DispatchError::Method {
            message: error.to_string(),
            payload: codec::to_bytes(error).unwrap_or_default(),
        }
    }

    /// The error for a call naming no managed method of `type_name`.
    #[doc(hidden)]
    pub fn unknown_method(type_name: &str, method: &str) -> DispatchError {
        DispatchError::UnknownMethod {
            type_name: type_name.to_owned(),
            method: method.to_owned(),
        }
    }
}

/// `decode_argsN::<A1, .., AN>`: [`DispatchError::decode_args`] of an `N`-tuple, with the bound
/// on each element, so rustc reports a parameter type that is not serde at that parameter
/// (the macro names the types in the turbofish, spanned on the method's parameters).
macro_rules! decode_args_n {
    ($($name:ident($($t:ident),*);)*) => {
        impl DispatchError {
            $(
                #[doc(hidden)]
                pub fn $name<$($t: DeserializeOwned),*>(
                    method: &str,
                    args: &[u8],
                ) -> std::result::Result<($($t,)*), DispatchError> {
                    Self::decode_args(method, args)
                }
            )*
        }
    };
}

decode_args_n! {
    decode_args0();
    decode_args1(A1);
    decode_args2(A1, A2);
    decode_args3(A1, A2, A3);
    decode_args4(A1, A2, A3, A4);
    decode_args5(A1, A2, A3, A4, A5);
    decode_args6(A1, A2, A3, A4, A5, A6);
    decode_args7(A1, A2, A3, A4, A5, A6, A7);
    decode_args8(A1, A2, A3, A4, A5, A6, A7, A8);
    decode_args9(A1, A2, A3, A4, A5, A6, A7, A8, A9);
    decode_args10(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10);
    decode_args11(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11);
    decode_args12(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12);
    decode_args13(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13);
    decode_args14(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14);
    decode_args15(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15);
    decode_args16(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Short(u64);

    impl Display for Short {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "short by {}", self.0)
        }
    }

    #[test]
    fn method_errors_keep_message_and_encoding() {
        let DispatchError::Method { message, payload } = DispatchError::method_failed(&Short(3))
        else {
            panic!("not a method error");
        };
        assert_eq!(message, "short by 3");
        assert_eq!(codec::from_bytes::<Short>(&payload).unwrap(), Short(3));
    }

    #[test]
    fn unknown_methods_and_bad_arguments_name_the_method() {
        assert_eq!(
            DispatchError::unknown_method("Counter", "nope"),
            DispatchError::UnknownMethod {
                type_name: "Counter".to_owned(),
                method: "nope".to_owned()
            }
        );
        let bad = DispatchError::decode_args::<(u64, String)>("add", &[1]).unwrap_err();
        assert!(matches!(&bad, DispatchError::BadArguments { method, .. } if method == "add"));
        // Trailing bytes are refused too: `(u64,)` is not `(u64, u64)`.
        let two = codec::to_bytes(&(1u64, 2u64)).unwrap();
        assert!(DispatchError::decode_args1::<u64>("add", &two).is_err());
    }

    #[test]
    fn arguments_and_returns_round_trip() {
        let args = codec::to_bytes(&("name", &[1u8, 2][..], 7u64)).unwrap();
        let decoded = DispatchError::decode_args3::<String, Vec<u8>, u64>("f", &args).unwrap();
        assert_eq!(decoded, ("name".to_owned(), vec![1, 2], 7));
        let ret = DispatchError::encode_return("f", &Some(5i32)).unwrap();
        assert_eq!(codec::from_bytes::<Option<i32>>(&ret).unwrap(), Some(5));
    }
}
