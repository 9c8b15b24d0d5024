//! The transfer envelope: a value's bytes together with the segments and descriptors its
//! handles need in the process that decodes them.
//!
//! Every path that moves values to another process goes through this module: the start of a
//! process (its arguments), [`Connection::send`](crate::Connection::send)/`recv`, and the
//! layers above them. There is one collector of "what travels with these bytes", here.
//!
//! ```text
//! sender                                   receiver
//! let env = Envelope::seal(&value)?;       let received = Received::new(segments, fds);
//! // env.bytes     the encoded value        let value: T = transfer::open(&bytes, received)?;
//! // env.segments  segments its handles name (descriptors to pass, in order)
//! // env.fds       descriptors its handles carry (duplicates, in token order)
//! ```
//!
//! # Rules
//! - **Descriptors.** A handle that carries descriptors (a [`Connection`](crate::Connection)'s
//!   eventfds) serializes each as an [`FdToken`]: an *index* into the envelope's `fds`, never a
//!   descriptor number. The receiver resolves an index only against the descriptors that
//!   actually arrived with the message ([`with_received`]); each may be taken once. Outside
//!   an envelope a handle serializes with no index at all, and decoding such a token, a token
//!   whose index is out of range, or one whose descriptor was taken already fails with
//!   [`Error::DescriptorNotTransferred`]. Nothing is ever resolved by number, so a peer cannot
//!   make the receiver act on a descriptor that the peer chose (no confused deputy). A
//!   descriptor that no token took is closed when the receive scope ends.
//! - **Segments.** A handle names its segment by identity. The receiver maps the segments
//!   that arrived (each is checked by its header, like any segment) before decoding; a token
//!   whose segment is neither among them nor already mapped here (nor openable by name) fails
//!   with [`Error::SegmentNotTransferred`], which names the segment and says how to pass it.
//! - **Channels.** A channel that cannot carry descriptors (a shared-memory pipe, a TCP
//!   socket) refuses an envelope with descriptors at the sender
//!   ([`Error::NoDescriptorChannel`]); segments are not sent over it, so the receiver must
//!   already map them (the pipe's own heap, a named segment, or one passed at start).
//!
//! The collection is per thread and nests: sealing inside a `Serialize` impl that itself seals
//! keeps the outer envelope intact.

use crate::codec;
use crate::error::{Error, Result};
use crate::segment::{Segment, registry};
use crate::sys;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// A serialized value with the segments and descriptors that must travel with it.
pub(crate) struct Envelope {
    /// The encoded value ([`codec`] format).
    pub(crate) bytes: Vec<u8>,
    /// The segments the value's handles name, sorted by identity, without duplicates.
    pub(crate) segments: Vec<Segment>,
    /// Duplicates of the descriptors the value's handles carry, in the order of their tokens'
    /// indices.
    pub(crate) fds: Vec<OwnedFd>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("bytes", &self.bytes.len())
            .field(
                "segments",
                &self.segments.iter().map(Segment::id).collect::<Vec<_>>(),
            )
            .field("fds", &self.fds.len())
            .finish()
    }
}

impl Envelope {
    /// Encodes `value`, collecting the segments its handles name and the descriptors they
    /// carry.
    ///
    /// # Errors
    /// The errors of [`codec::to_bytes`]; [`Error::Io`] if a descriptor cannot be duplicated.
    pub(crate) fn seal<T: Serialize + ?Sized>(value: &T) -> Result<Envelope> {
        let ((bytes, fds), segments) = registry::collect(|| collect_fds(|| codec::to_bytes(value)));
        Ok(Envelope {
            bytes: bytes?,
            segments,
            fds,
        })
    }

    /// Returns whether the value's handles carry descriptors of their own (segments aside):
    /// such a value needs a channel that carries descriptors.
    pub(crate) fn needs_descriptors(&self) -> bool {
        !self.fds.is_empty()
    }
}

/// What arrived with a message's bytes: the segments (mapped) and the descriptors, in the
/// sender's order.
pub(crate) struct Received {
    /// Kept mapped (and registered) while the value is decoded.
    segments: Vec<Segment>,
    fds: Vec<OwnedFd>,
}

impl fmt::Debug for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Received")
            .field("segments", &self.segments.len())
            .field("fds", &self.fds.len())
            .finish()
    }
}

impl Received {
    /// Nothing arrived besides the bytes.
    pub(crate) fn none() -> Received {
        Received {
            segments: Vec::new(),
            fds: Vec::new(),
        }
    }

    /// Segments already mapped in this process and the descriptors that arrived.
    pub(crate) fn new(segments: Vec<Segment>, fds: Vec<OwnedFd>) -> Received {
        Received { segments, fds }
    }

    /// Maps segment descriptors received from a peer, checking each against the identity the
    /// sender declared for it, and keeps the handle descriptors.
    ///
    /// # Errors
    /// [`Error::DescriptorNotTransferred`] if fewer descriptors arrived than declared; the
    /// errors of [`Segment::from_fd`]; [`Error::CorruptObject`] if a mapped segment is not the
    /// one declared.
    pub(crate) fn map(ids: &[u64], mut fds: Vec<OwnedFd>) -> Result<Received> {
        if fds.len() < ids.len() {
            return Err(Error::DescriptorNotTransferred {
                index: u32::try_from(fds.len()).ok(),
            });
        }
        let handle_fds = fds.split_off(ids.len());
        let mut segments = Vec::with_capacity(ids.len());
        for (fd, &id) in fds.into_iter().zip(ids) {
            let seg = Segment::from_fd(fd)?;
            if seg.id() != id {
                return Err(Error::CorruptObject {
                    reason: "a received segment is not the one the sender declared",
                });
            }
            segments.push(seg);
        }
        Ok(Received {
            segments,
            fds: handle_fds,
        })
    }
}

/// Runs `f` (which decodes) with `received` at hand: handles decoded inside take their
/// descriptors from it (by index, once each) and find its segments mapped. Descriptors no
/// handle took are closed afterwards; the segments stay mapped as long as a decoded handle
/// refers to them.
pub(crate) fn with_received<R>(received: Received, f: impl FnOnce() -> R) -> R {
    let Received { segments, fds } = received;
    let table = fds.into_iter().map(Some).collect();
    let outer = RECEIVED.with(|c| c.borrow_mut().replace(table));
    let r = f();
    RECEIVED.with(|c| *c.borrow_mut() = outer);
    drop(segments);
    r
}

/// Decodes `bytes` (inside or outside [`with_received`]), reporting a handle whose segment
/// this process cannot map as [`Error::SegmentNotTransferred`].
///
/// # Errors
/// The errors of [`codec::from_bytes`], with `UnknownSegment` made precise.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    codec::from_bytes(bytes).map_err(precise)
}

/// Decodes `bytes` with exactly the segments and descriptors in `received`.
///
/// # Errors
/// As for [`decode`].
pub(crate) fn open<T: DeserializeOwned>(bytes: &[u8], received: Received) -> Result<T> {
    with_received(received, || decode(bytes))
}

/// Turns the attach layer's "segment not attached" into the transfer layer's precise error.
pub(crate) fn precise(e: Error) -> Error {
    match e {
        Error::UnknownSegment { id } => Error::SegmentNotTransferred { id },
        other => other,
    }
}

/// The header of an envelope sent over a channel that carries descriptors: how the
/// descriptors that arrived split into segments (with their identities) and handle
/// descriptors. The encoded value follows it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireHeader {
    /// Identities of the segments, one descriptor each, sent first.
    pub(crate) segments: Vec<u64>,
    /// Number of handle descriptors, sent after the segments.
    pub(crate) fds: u32,
}

impl Envelope {
    /// Returns the payload and the descriptors to send over a descriptor-carrying channel:
    /// a [`WireHeader`] followed by the encoded value; segments' descriptors first, then the
    /// handles' descriptors.
    ///
    /// # Errors
    /// The errors of [`codec::to_bytes`]; [`Error::InvalidSize`] past `sys::MAX_FDS`
    /// descriptors.
    pub(crate) fn to_wire(&self) -> Result<(Vec<u8>, Vec<BorrowedFd<'_>>)> {
        let header = WireHeader {
            segments: self.segments.iter().map(Segment::id).collect(),
            fds: u32::try_from(self.fds.len()).unwrap_or(u32::MAX),
        };
        let mut payload = codec::to_bytes(&header)?;
        payload.extend_from_slice(&self.bytes);
        let fds: Vec<BorrowedFd<'_>> = self
            .segments
            .iter()
            .map(Segment::as_fd)
            .chain(self.fds.iter().map(AsFd::as_fd))
            .collect();
        if fds.len() > sys::MAX_FDS {
            return Err(Error::InvalidSize {
                reason: "a message carries more descriptors than one frame can",
            });
        }
        Ok((payload, fds))
    }
}

/// Decodes a payload made by [`Envelope::to_wire`] with the descriptors that arrived with it.
///
/// # Errors
/// [`Error::Codec`] for a malformed header; [`Error::DescriptorNotTransferred`] if the
/// descriptors do not match the header; as for [`Received::map`] and [`open`].
pub(crate) fn open_wire<T: DeserializeOwned>(payload: &[u8], fds: Vec<OwnedFd>) -> Result<T> {
    let (header, rest) =
        postcard::take_from_bytes::<WireHeader>(payload).map_err(|e| Error::Codec {
            reason: format!("envelope header: {e}"),
        })?;
    let expected = header
        .segments
        .len()
        .checked_add(usize::try_from(header.fds).unwrap_or(usize::MAX));
    if expected != Some(fds.len()) {
        return Err(Error::DescriptorNotTransferred {
            index: u32::try_from(fds.len()).ok(),
        });
    }
    let received = Received::map(&header.segments, fds)?;
    open(rest, received)
}

// ---------------------------------------------------------------------------------------------
// Descriptor tokens.

/// A descriptor inside a serialized handle: its index in the envelope's descriptors, or none
/// outside an envelope. Never a descriptor number.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct FdToken {
    index: Option<u32>,
}

thread_local! {
    static COLLECTED: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    static RECEIVED: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// Runs `f` (which serializes) and returns, with its result, duplicates of every descriptor
/// the serialized handles carry, in the order of their tokens' indices.
fn collect_fds<R>(f: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let outer = COLLECTED.with(|c| c.borrow_mut().replace(Vec::new()));
    let r = f();
    let found = COLLECTED.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    (r, found.unwrap_or_default())
}

/// Runs `f`, which encodes a value for a channel that carries bytes only (a shared-memory
/// pipe), and returns its result with the number of descriptors the value's handles carry
/// (their duplicates are closed at once): a value with any must be refused.
pub(crate) fn encode_bytes_only<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let (r, fds) = collect_fds(f);
    (r, fds.len())
}

/// Makes the token for `fd`, recording a duplicate in the envelope being sealed (outside
/// [`Envelope::seal`] the token names no descriptor, and decoding it fails).
///
/// # Errors
/// The error of duplicating the descriptor; more than `u32::MAX` descriptors in one envelope.
pub(crate) fn note(fd: BorrowedFd<'_>) -> io::Result<FdToken> {
    let index = COLLECTED.with(|c| -> io::Result<Option<u32>> {
        let mut c = c.borrow_mut();
        match c.as_mut() {
            Some(list) => {
                let i = u32::try_from(list.len())
                    .map_err(|_| io::Error::other("too many descriptors in one envelope"))?;
                list.push(sys::dup(fd)?);
                Ok(Some(i))
            }
            None => Ok(None),
        }
    })?;
    Ok(FdToken { index })
}

/// Returns the descriptor a token names: the one at its index among the descriptors that
/// arrived with the message being decoded, which it takes (each is taken once).
///
/// # Errors
/// [`Error::DescriptorNotTransferred`] outside [`with_received`], for a token without an
/// index, an index out of range, or a descriptor taken already.
pub(crate) fn take(tok: FdToken) -> Result<OwnedFd> {
    let not_transferred = Error::DescriptorNotTransferred { index: tok.index };
    let Some(index) = tok.index.and_then(|i| usize::try_from(i).ok()) else {
        return Err(not_transferred);
    };
    RECEIVED
        .with(|c| {
            c.borrow_mut()
                .as_mut()
                .and_then(|t| t.get_mut(index).and_then(Option::take))
        })
        .ok_or(not_transferred)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Connection;

    #[test]
    fn descriptors_travel_with_the_envelope() {
        let (a, b) = crate::pipe().unwrap();
        let env = Envelope::seal(&b).unwrap();
        // Two eventfds and the two liveness pipe ends.
        assert_eq!(env.fds.len(), 4);
        assert_eq!(env.segments.len(), 1);
        let b2: Connection = open(&env.bytes, Received::new(env.segments, env.fds)).unwrap();
        drop(b);
        a.send(&5u8).unwrap();
        assert_eq!(b2.recv::<u8>().unwrap(), 5);
    }

    #[test]
    fn envelopes_nest() {
        let (_a, b) = crate::pipe().unwrap();
        let outer = registry::collect(|| {
            collect_fds(|| {
                let inner = Envelope::seal(&b).unwrap();
                assert_eq!(inner.fds.len(), 4);
                codec::to_bytes(&1u8)
            })
        });
        let ((bytes, fds), segments) = outer;
        assert!(bytes.is_ok());
        assert!(fds.is_empty());
        assert!(segments.is_empty());
    }

    /// Regression: a descriptor is taken only from what arrived with the message.
    #[test]
    fn forged_descriptor_tokens_are_refused() {
        let (_a, b) = crate::pipe().unwrap();
        let env = Envelope::seal(&b).unwrap();
        let not_sent = |r: Result<Connection>| {
            assert!(
                matches!(r, Err(Error::DescriptorNotTransferred { .. })),
                "{r:?}"
            );
        };
        // Nothing arrived with the bytes.
        not_sent(open(&env.bytes, Received::none()));
        // Decoding outside any receive scope.
        not_sent(decode(&env.bytes));
        // Outside an envelope a handle's token names no descriptor, and never a number.
        let bare = codec::to_bytes(&b).unwrap();
        not_sent(open(&bare, Received::new(Vec::new(), env.fds)));
        // Out-of-range and already-taken indices.
        let file = std::fs::File::open("/dev/null").unwrap();
        let one = vec![sys::dup(file.as_fd()).unwrap()];
        let r = with_received(Received::new(Vec::new(), one), || {
            let forged = FdToken { index: Some(7) };
            assert!(matches!(
                take(forged),
                Err(Error::DescriptorNotTransferred { index: Some(7) })
            ));
            let first = take(FdToken { index: Some(0) });
            let again = take(FdToken { index: Some(0) });
            (first.is_ok(), again.is_err())
        });
        assert_eq!(r, (true, true));
        assert!(take(FdToken { index: Some(0) }).is_err());
    }

    #[test]
    fn wire_form_round_trips_and_checks_descriptor_counts() {
        let (a, b) = crate::pipe().unwrap();
        let env = Envelope::seal(&b).unwrap();
        let (payload, fds) = env.to_wire().unwrap();
        // The segment, two eventfds, and the two liveness pipe ends.
        assert_eq!(fds.len(), 5);
        let dup = |fds: &[BorrowedFd<'_>]| -> Vec<OwnedFd> {
            fds.iter().map(|f| sys::dup(*f).unwrap()).collect()
        };
        let short: Result<Connection> = open_wire(&payload, dup(&fds[..2]));
        assert!(matches!(short, Err(Error::DescriptorNotTransferred { .. })));
        let b2: Connection = open_wire(&payload, dup(&fds)).unwrap();
        drop(b);
        a.send(&9u8).unwrap();
        assert_eq!(b2.recv::<u8>().unwrap(), 9);
    }

    #[test]
    fn unknown_segments_are_reported_precisely() {
        assert!(matches!(
            precise(Error::UnknownSegment { id: 3 }),
            Error::SegmentNotTransferred { id: 3 }
        ));
    }
}
