//! The contract between the manager server and the `#[shmproc::managed]` attribute macro: the
//! [`Managed`] trait a custom type implements, the [`DispatchError`] its dispatch reports, and
//! the [`ManagedProxy`] its generated proxy implements around a [`RemoteObject`].

use serde::{Deserialize, Serialize};

pub use super::client::RemoteObject;

/// What a method call on a managed object failed with, as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DispatchError {
    /// The type has no method of that name.
    UnknownMethod {
        /// The registered type's name.
        type_name: String,
        /// The method asked for.
        method: String,
    },
    /// The arguments did not decode as the method's parameter tuple.
    BadArguments {
        /// The method called.
        method: String,
        /// Why the arguments did not decode.
        reason: String,
    },
    /// The method returned `Err(e)`: `e`'s `Display` text and its codec encoding (so the caller
    /// can decode the typed error, see `Error::remote_error::<E>()`).
    Method {
        /// The error's `Display` text.
        message: String,
        /// The error's codec encoding.
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
/// Implemented by `#[shmproc::managed]` on an inherent `impl` block; the value travels to the
/// server with serde when created (`Manager::create(value)`), so `Self: Serialize +
/// DeserializeOwned`.
pub trait Managed: Serialize + serde::de::DeserializeOwned + Send + 'static {
    /// The name both sides register the type under; the macro uses the type's path as written
    /// (`"Counter"`), overridable with `#[shmproc::managed(name = "...")]`.
    const TYPE_NAME: &'static str;
    /// The proxy the macro generates (`CounterProxy`).
    type Proxy: ManagedProxy;
    /// Runs the method named `method` on `self`. `args` is the codec encoding
    /// (`crate::codec::to_bytes`) of the tuple of the method's arguments in order (`()` for
    /// none, `(a,)` for one); the `Ok` value is the codec encoding of the method's return value
    /// (of `T` for a method returning `Result<T, E>`, whose `Err(e)` becomes
    /// `DispatchError::Method`, requiring `E: Display + Serialize`). Panics are NOT caught here
    /// (the server catches them around the call).
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
}

// `RemoteObject` is defined by the manager in src/manager/ (re-exported as
// `shmproc::manager::RemoteObject`); the macro relies only on this method:
//
// impl RemoteObject {
//     /// Calls `method` with the encoded argument tuple `args` and decodes its return value.
//     /// Errors: `Error::Remote { .. }` for a `DispatchError` (message kept; typed payload
//     /// decodable with `Error::remote_error::<E>()`), connection errors otherwise.
//     pub fn call<A: Serialize, R: serde::de::DeserializeOwned>(&self, method: &str, args: &A) -> Result<R>;
// }
//
// and `RemoteObject: Clone + Send + Sync + Serialize + Deserialize + Debug`.
// The macro's generated code names everything through `::shmproc::manager::{Managed,
// ManagedProxy, RemoteObject, DispatchError}` and `::shmproc::codec::{to_bytes, from_bytes}`
// (public, `#[doc(hidden)]` if they are not public today) and `::shmproc::Result`.
