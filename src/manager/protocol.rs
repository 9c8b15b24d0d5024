//! The manager's wire protocol: one [`Request`] from a client, one [`Reply`] from the server,
//! both codec-encoded, strictly alternating on each connection.
//!
//! Requests carry data only: the kind of object to create (a built-in name or a registered
//! type name), an object id, a method name and encoded arguments. Every field is checked by
//! the server before use; a request that fails to decode, names an unknown kind, object or
//! method, or carries arguments that do not decode is answered with a [`Fault`] and the
//! connection goes on.

use super::managed::DispatchError;
use crate::connection::Connection;
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
    Create {
        kind: String,
        #[serde(with = "crate::codec::bytes")]
        init: Vec<u8>,
    },
    /// Calls `method` on `object` on behalf of client thread `thread`.
    Call {
        object: u64,
        thread: u64,
        method: String,
        #[serde(with = "crate::codec::bytes")]
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

/// A [`Request::Call`] as the client encodes it, borrowing its method name and arguments
/// (the same encoding: the variants before it only keep the index of `Call`).
#[derive(Serialize)]
pub(crate) enum CallRef<'a> {
    #[allow(dead_code)] // never built: keeps `Call`'s variant index
    Hello,
    #[allow(dead_code)] // never built: keeps `Call`'s variant index
    Create,
    Call {
        object: u64,
        thread: u64,
        method: &'a str,
        #[serde(with = "crate::codec::bytes")]
        args: &'a [u8],
    },
}

/// The server's answer to one request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// The encoded result.
    Ok(#[serde(with = "crate::codec::bytes")] Vec<u8>),
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

/// A bounded, adaptive poll of a local connection for the peer's next message, before the
/// pipe's own blocking receive (see "Waiting" in the `manager` module docs).
///
/// One round is a check of the ring's positions ([`Connection::message_waiting`]: two loads,
/// no system call) and a `pause`. It never yields the core: on a busy machine a yield can
/// hand the core to another process for a whole time slice, while the pipe's own wait after
/// the window yields a few times and sleeps. The window adapts like the spin budgets of
/// `park`: a message within it grows it by a quarter (at most `max` rounds), a window that
/// runs out halves it (at least `min`). After [`PROBE_AFTER`] windows in a row ran out, the
/// next one is `max` long: once both ends sleep, each answer takes a wake-up (tens of
/// microseconds), longer than a halved window, and only a window that outlasts one brings
/// the two ends back to answering within microseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Poll {
    budget: u32,
    min: u32,
    max: u32,
    misses: u32,
}

/// Windows in a row that ran out before the next one is a full one.
pub(crate) const PROBE_AFTER: u32 = 64;

impl Poll {
    /// A client waiting for its reply: a server on another core answers a call in 1–3 µs
    /// (10–30 rounds), one that sleeps after a wake-up; the window stays within 16–2000
    /// rounds (~2–250 µs).
    pub(crate) const REPLY: Poll = Poll {
        budget: 400,
        min: 16,
        max: 2000,
        misses: 0,
    };

    /// A server's connection thread waiting for the next request after a reply: a client
    /// calling in a loop on another core sends it within about a microsecond; an idle one
    /// costs one window, 16–1000 rounds (~2–120 µs).
    pub(crate) const REQUEST: Poll = Poll {
        budget: 100,
        min: 16,
        max: 1000,
        misses: 0,
    };

    /// Polls the pipe `conn` for a message for up to the window's rounds; returns whether
    /// one is waiting (a socket connection never has one: its callers do not poll it).
    pub(crate) fn wait(&mut self, conn: &Connection) -> bool {
        // A peer that last sent on this very CPU cannot answer while this thread polls
        // there: the window would only delay it (by up to a time slice). The window is then
        // skipped, and left as it was for when the two ends run on two cores again.
        if conn.peer_on_this_cpu() {
            return conn.message_waiting();
        }
        let rounds = self.budget;
        for _ in 0..rounds {
            if conn.message_waiting() {
                self.budget = (rounds + rounds / 4 + 1).min(self.max);
                self.misses = 0;
                return true;
            }
            core::hint::spin_loop();
        }
        self.misses += 1;
        self.budget = if self.misses.is_multiple_of(PROBE_AFTER) {
            self.max
        } else {
            (rounds / 2).max(self.min)
        };
        conn.message_waiting()
    }
}

/// Appends the encoding of `Reply::Ok(result)` to `out` (which the server reuses for every
/// reply of a connection, instead of a `Vec` per reply).
pub(crate) fn encode_ok(out: &mut Vec<u8>, result: &[u8]) {
    out.push(0);
    push_varint(out, result.len() as u64);
    out.extend_from_slice(result);
}

/// Returns the result inside an encoded `Reply::Ok` (decoded in place, without copying it
/// out), or `None` for any other reply.
pub(crate) fn ok_result(reply: &[u8]) -> Option<&[u8]> {
    let (&tag, mut rest) = reply.split_first()?;
    if tag != 0 {
        return None;
    }
    let mut len = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, tail) = rest.split_first()?;
        rest = tail;
        len |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return (usize::try_from(len).ok()? == rest.len()).then_some(rest);
        }
    }
    None
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

    /// The borrowed call and the in-place reply forms encode and decode as the owned ones.
    #[test]
    fn borrowed_call_and_in_place_reply_match_the_owned_encodings() {
        for args in [vec![], vec![7u8; 3], vec![1u8; 300], vec![2u8; 70_000]] {
            let owned = codec::to_bytes(&Request::Call {
                object: 300,
                thread: 5,
                method: "get".into(),
                args: args.clone(),
            })
            .unwrap();
            let borrowed = codec::to_bytes(&CallRef::Call {
                object: 300,
                thread: 5,
                method: "get",
                args: &args,
            })
            .unwrap();
            assert_eq!(owned, borrowed);
            // The wire format of a byte field is the element-by-element one.
            let seq =
                codec::to_bytes(&(300u64, 5u64, "get", args.iter().collect::<Vec<_>>())).unwrap();
            assert_eq!(owned[1..], seq[..]);
            let reply = codec::to_bytes(&Reply::Ok(args.clone())).unwrap();
            let mut assembled = Vec::new();
            encode_ok(&mut assembled, &args);
            assert_eq!(reply, assembled);
            assert_eq!(ok_result(&reply), Some(&args[..]));
            assert_eq!(ok_result(&reply[..reply.len() - 1]), None);
        }
        let err = codec::to_bytes(&Reply::Err(Fault::Empty)).unwrap();
        assert_eq!(ok_result(&err), None);
        assert_eq!(ok_result(&[]), None);
        assert_eq!(ok_result(&[0, 0x80]), None);
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
