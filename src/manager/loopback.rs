//! An in-process [`RemoteObject`]: a proxy's calls run the `dispatch` of a value held in this
//! process, through exactly the encoding a manager server uses (arguments encoded by the
//! proxy, decoded by `dispatch`, the return value encoded by `dispatch` and decoded by the
//! proxy; a [`DispatchError`] becomes [`Error::Remote`]).
//!
//! A panic in the method unwinds into the caller (a server catches it around the call and
//! replies `DispatchError::Panicked`); the object stays usable afterwards.
//!
//! A loopback object serializes as an id in a process-wide table, so proxies over it can be
//! encoded and decoded within this process (not sent to another one: decoding an id this
//! process did not make fails).

use crate::codec;
use crate::error::{Error, RemoteErrorKind, Result};
use crate::manager::{DispatchError, Managed, ManagedProxy};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// The boxed `dispatch` of a value held in this process.
type DispatchFn = dyn FnMut(&str, &[u8]) -> std::result::Result<Vec<u8>, DispatchError> + Send;

/// A handle to a managed object: proxies call its methods through [`RemoteObject::call`].
///
/// Cloning it gives another handle to the same object.
#[derive(Clone)]
pub struct RemoteObject {
    inner: Arc<Loopback>,
}

struct Loopback {
    id: u64,
    type_name: &'static str,
    dispatch: Mutex<Box<DispatchFn>>,
}

/// Live loopback objects by id, so a serialized `RemoteObject` decodes to the same object.
struct Table {
    next_id: u64,
    objects: HashMap<u64, Weak<Loopback>>,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

fn with_table<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    let mut guard = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    let table = guard.get_or_insert_with(|| Table {
        next_id: 0,
        objects: HashMap::new(),
    });
    f(table)
}

impl Drop for Loopback {
    fn drop(&mut self) {
        with_table(|t| t.objects.remove(&self.id));
    }
}

impl RemoteObject {
    /// Makes a remote object whose calls run `dispatch` in this process (a boxed
    /// [`Managed::dispatch`] of a local value, or a stand-in for tests).
    #[doc(hidden)]
    pub fn loopback_dispatch(type_name: &'static str, dispatch: Box<DispatchFn>) -> Self {
        with_table(|t| {
            let id = t.next_id;
            t.next_id = t.next_id.wrapping_add(1);
            let inner = Arc::new(Loopback {
                id,
                type_name,
                dispatch: Mutex::new(dispatch),
            });
            t.objects.insert(id, Arc::downgrade(&inner));
            RemoteObject { inner }
        })
    }

    /// Makes a remote object over `value`, held in this process.
    #[doc(hidden)]
    pub fn loopback<T: Managed>(mut value: T) -> Self {
        Self::loopback_dispatch(
            T::TYPE_NAME,
            Box::new(move |method, args| value.dispatch(method, args)),
        )
    }

    /// Makes the typed proxy of `value`, held in this process.
    #[doc(hidden)]
    pub fn loopback_proxy<T: Managed>(value: T) -> T::Proxy {
        T::Proxy::from_remote(Self::loopback(value))
    }

    /// The name the object's type is registered under.
    pub fn type_name(&self) -> &str {
        self.inner.type_name
    }

    /// Calls `method` with the argument tuple `args` and decodes its return value.
    ///
    /// Blocks until the method returns; calls through clones of one object run one at a
    /// time.
    ///
    /// # Errors
    /// [`Error::Remote`] for a [`DispatchError`] (message kept; typed payload decodable with
    /// [`Error::remote_error`]), [`Error::Codec`] when the arguments fail to encode or the
    /// return value does not decode as `R`.
    ///
    /// # Panics
    /// If the method panics (the panic unwinds into the caller; the object stays usable).
    pub fn call<A: Serialize, R: DeserializeOwned>(&self, method: &str, args: &A) -> Result<R> {
        let args = codec::to_bytes(args)?;
        let reply = {
            let mut dispatch = self
                .inner
                .dispatch
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (dispatch)(method, &args)
        };
        codec::from_bytes(&reply.map_err(remote_error)?)
    }
}

/// The error a caller gets for a failed dispatch (the messages a manager's client reports).
fn remote_error(e: DispatchError) -> Error {
    let remote = |kind, message: String| Error::Remote {
        kind,
        message,
        payload: None,
    };
    match e {
        DispatchError::UnknownMethod { type_name, method } => remote(
            RemoteErrorKind::UnknownMethod,
            format!("{type_name} has no method {method:?}"),
        ),
        DispatchError::BadArguments { method, reason } => remote(
            RemoteErrorKind::BadArguments,
            format!("arguments of {method}: {reason}"),
        ),
        DispatchError::Method { message, payload } => Error::Remote {
            kind: RemoteErrorKind::Method,
            message,
            payload: Some(payload),
        },
        DispatchError::Panicked { message } => remote(RemoteErrorKind::Panicked, message),
    }
}

impl fmt::Debug for RemoteObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteObject")
            .field("type_name", &self.inner.type_name)
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl Serialize for RemoteObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.inner.id)
    }
}

impl<'de> Deserialize<'de> for RemoteObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let id = u64::deserialize(deserializer)?;
        with_table(|t| t.objects.get(&id).and_then(Weak::upgrade))
            .map(|inner| RemoteObject { inner })
            .ok_or_else(|| {
                serde::de::Error::custom(format!("no loopback object {id} in this process"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo() -> RemoteObject {
        RemoteObject::loopback_dispatch(
            "Echo",
            Box::new(|method, args| match method {
                "echo" => Ok(args.to_vec()),
                "fail" => Err(DispatchError::Panicked {
                    message: "boom".to_owned(),
                }),
                _ => Err(DispatchError::unknown_method("Echo", method)),
            }),
        )
    }

    #[test]
    fn calls_encode_arguments_and_decode_replies() {
        let remote = echo();
        assert_eq!(remote.type_name(), "Echo");
        // `echo` returns its argument tuple's encoding, so it decodes as that tuple.
        let back: (String, u32) = remote.call("echo", &("hi", 7u32)).unwrap();
        assert_eq!(back, ("hi".to_owned(), 7));
        // A reply that is not an `R` is a codec error, not a remote one.
        assert!(matches!(
            remote.call::<_, String>("echo", &(1u8,)),
            Err(Error::Codec { .. })
        ));
        assert!(matches!(
            remote.call::<_, ()>("fail", &()),
            Err(Error::Remote { kind: RemoteErrorKind::Panicked, ref message, payload: None })
                if message == "boom"
        ));
        assert!(matches!(
            remote.call::<_, ()>("nope", &()),
            Err(Error::Remote {
                kind: RemoteErrorKind::UnknownMethod,
                ..
            })
        ));
    }

    #[test]
    fn a_serialized_object_decodes_while_it_lives() {
        let remote = echo();
        let bytes = codec::to_bytes(&remote).unwrap();
        let again: RemoteObject = codec::from_bytes(&bytes).unwrap();
        assert!(Arc::ptr_eq(&again.inner, &remote.inner));
        drop((remote, again));
        assert!(codec::from_bytes::<RemoteObject>(&bytes).is_err());
    }
}
