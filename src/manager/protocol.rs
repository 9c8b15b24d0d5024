//! The manager's wire protocol: one [`Request`] from a client, one [`Reply`] from the server,
//! both codec-encoded, strictly alternating on each connection.
//!
//! Requests carry data only: the kind of object to create (a built-in name or a registered
//! type name), an object id, a method name and encoded arguments. Every field is checked by
//! the server before use; a request that fails to decode, names an unknown kind, object or
//! method, or carries arguments that do not decode is answered with a [`Fault`] and the
//! connection goes on.

use super::managed::DispatchError;
use crate::error::{Error, RemoteErrorKind};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The largest request a server accepts on a connection (checked before the request is
/// received into memory): 64 MiB.
pub(crate) const MAX_REQUEST: usize = 64 << 20;

/// One client request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Names the client process (its random nonce), first on every connection: what it holds
    /// (locks, semaphore units) is released when its last connection drops.
    Hello { client: u64 },
    /// Creates an object of `kind` from the encoded `init`; replies with its id (`u64`).
    Create { kind: String, init: Vec<u8> },
    /// Calls `method` on `object` on behalf of client thread `thread`.
    Call {
        object: u64,
        thread: u64,
        method: String,
        args: Vec<u8>,
    },
    /// Keeps `object` alive while the calling client process is connected and for the
    /// server's pin grace after (a proxy to it was serialized).
    Pin { object: u64 },
    /// Drops one reference of the calling client process to `object`.
    Release { object: u64 },
    /// Returns the registered type name of `object` (`u64` id in, `String` out).
    TypeOf { object: u64 },
    /// Checks that the server answers (replies `()`).
    Ping,
    /// Stops the server.
    Shutdown,
    /// Takes a reference of the calling client process to `object` (a proxy to it was
    /// received: the token decoded in this process), taking over the token's pin `pin`
    /// (from [`Request::Lend`]; 0: none), which then ends.
    Adopt { object: u64, pin: u64 },
    /// Takes `count` references of the calling client process to each `object` (a forked
    /// child's copies of its parent's proxies, taken by the parent before the fork on a
    /// connection the child inherits); objects gone already are skipped.
    Inherit { objects: Vec<(u64, u32)> },
    /// Pins `object` for one token about to leave the calling client process; replies the
    /// pin's id (`u64`, random: the capability to end the pin), which the token carries and
    /// its receiver takes over. The pin lasts until then, or the server's pin grace after
    /// it was lent, whichever comes first.
    Lend { object: u64 },
}

/// The server's answer to one request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// The encoded result.
    Ok(Vec<u8>),
    /// Why the request failed.
    Err(Fault),
}

/// Why a request failed, as it travels.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Fault {
    /// A custom type's method failed.
    Dispatch(DispatchError),
    /// No type of that name is registered.
    UnknownType(String),
    /// No object with that id.
    UnknownObject(u64),
    /// A built-in object has no such method.
    UnknownMethod { kind: String, method: String },
    /// Arguments that do not decode.
    BadArguments { method: String, reason: String },
    /// A request that does not decode or is refused.
    BadRequest(String),
    /// A bounded wait ended.
    Timeout,
    /// Nothing to get.
    Empty,
    /// No room to put.
    Full,
    /// The caller does not hold the lock.
    NotOwner,
    /// A bounded semaphore was released past its limit.
    OverRelease { limit: u32 },
    /// The barrier is broken.
    BrokenBarrier,
    /// An index past the end.
    IndexOutOfBounds { index: u64, len: u64 },
    /// `task_done` more often than items were put.
    TaskDoneTooMany,
    /// The server is stopping.
    ShuttingDown,
    /// The reply does not fit in one message the client receives.
    ReplyTooLarge { size: u64, limit: u64 },
}

impl Fault {
    /// The error a client reports for this fault.
    pub(crate) fn into_error(self) -> Error {
        let remote = |kind, message: String| Error::Remote {
            kind,
            message,
            payload: None,
        };
        match self {
            Fault::Dispatch(DispatchError::UnknownMethod { type_name, method }) => remote(
                RemoteErrorKind::UnknownMethod,
                format!("{type_name} has no method {method:?}"),
            ),
            Fault::Dispatch(DispatchError::BadArguments { method, reason }) => remote(
                RemoteErrorKind::BadArguments,
                format!("arguments of {method}: {reason}"),
            ),
            Fault::Dispatch(DispatchError::Method { message, payload }) => Error::Remote {
                kind: RemoteErrorKind::Method,
                message,
                payload: Some(payload),
            },
            Fault::Dispatch(DispatchError::Panicked { message }) => {
                remote(RemoteErrorKind::Panicked, message)
            }
            Fault::UnknownType(t) => remote(
                RemoteErrorKind::UnknownType,
                format!("no type {t:?} is registered with the manager"),
            ),
            Fault::UnknownObject(id) => remote(
                RemoteErrorKind::UnknownObject,
                format!(
                    "no object {id} in the manager (every reference to it was released, or \
                     the token this proxy came from waited longer than the pin grace)"
                ),
            ),
            Fault::UnknownMethod { kind, method } => remote(
                RemoteErrorKind::UnknownMethod,
                format!("{kind} has no method {method:?}"),
            ),
            Fault::BadArguments { method, reason } => remote(
                RemoteErrorKind::BadArguments,
                format!("arguments of {method}: {reason}"),
            ),
            Fault::BadRequest(why) => remote(RemoteErrorKind::BadRequest, why),
            Fault::Timeout => Error::Timeout,
            Fault::Empty => Error::Empty,
            Fault::Full => Error::Full,
            Fault::NotOwner => Error::NotOwner,
            Fault::OverRelease { limit } => Error::SemaphoreOverRelease { limit },
            Fault::BrokenBarrier => Error::BrokenBarrier,
            Fault::IndexOutOfBounds { index, len } => Error::IndexOutOfBounds {
                index: usize::try_from(index).unwrap_or(usize::MAX),
                len: usize::try_from(len).unwrap_or(usize::MAX),
            },
            Fault::TaskDoneTooMany => Error::TaskDoneTooMany,
            Fault::ShuttingDown => Error::Disconnected,
            Fault::ReplyTooLarge { size, limit } => Error::MessageTooLarge { size, limit },
        }
    }
}

/// Where a manager serves, as it travels inside proxies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Endpoint {
    /// A Linux abstract Unix socket name (local managers).
    Abstract(Vec<u8>),
    /// A Unix socket path.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl Endpoint {
    /// The connection layer's address.
    pub(crate) fn address(&self) -> crate::connection::Address {
        use crate::connection::Address;
        match self {
            Endpoint::Abstract(n) => Address::Abstract(n.clone()),
            Endpoint::Unix(p) => Address::Unix(p.clone()),
            Endpoint::Tcp(a) => Address::Tcp(*a),
        }
    }

    /// The endpoint of a connection-layer address.
    pub(crate) fn of(a: &crate::connection::Address) -> Endpoint {
        use crate::connection::Address;
        match a {
            Address::Abstract(n) => Endpoint::Abstract(n.clone()),
            Address::Unix(p) => Endpoint::Unix(p.clone()),
            Address::Tcp(s) => Endpoint::Tcp(*s),
        }
    }

    /// Whether clients on this host may move their traffic to a shared-memory pipe.
    pub(crate) fn is_local(&self) -> bool {
        !matches!(self, Endpoint::Tcp(_))
    }
}

/// Appends `n` as the codec's varint (LEB128), so replies can be assembled from stored
/// encodings without decoding them.
pub(crate) fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    /// Replies are assembled from stored encodings: check that the pieces concatenate to the
    /// codec's own encoding of the whole.
    #[test]
    fn assembled_encodings_match_the_codec() {
        let items: Vec<(String, u32)> = (0..300).map(|i| (format!("k{i}"), i)).collect();
        let mut out = Vec::new();
        push_varint(&mut out, items.len() as u64);
        for (k, v) in &items {
            out.extend(codec::to_bytes(k).unwrap());
            out.extend(codec::to_bytes(v).unwrap());
        }
        assert_eq!(out, codec::to_bytes(&items).unwrap());
        let some = codec::to_bytes(&Some(5u8)).unwrap();
        assert_eq!(some, [1, 5]);
        assert_eq!(codec::to_bytes(&None::<u8>).unwrap(), [0]);
    }

    #[test]
    fn garbage_requests_do_not_decode_into_anything_dangerous() {
        for junk in [
            &[][..],
            &[9, 9, 9],
            &[2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(codec::from_bytes::<Request>(junk).is_err());
        }
    }
}
