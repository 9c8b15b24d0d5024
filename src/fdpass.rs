//! How descriptors travel with serialized handles: the descriptor collector hook.
//!
//! A [`Connection`](super::Connection) owns eventfds. When it is serialized, each descriptor
//! becomes an [`FdToken`]: its index in the thread's *collected* list plus its number in the
//! sending process. Whoever moves bytes to another process does this (the process spawner, a
//! Unix socket with `SCM_RIGHTS`):
//!
//! ```text
//! // sender
//! let ((bytes, fds), segments) = registry::collect(|| connection::fd::collect(|| codec::to_bytes(&args)));
//! // ... pass `fds` (Vec<OwnedFd>, in index order) and the segments' descriptors to the child ...
//! // receiver
//! let args: A = connection::fd::with_received(fds, || codec::from_bytes(&bytes))?;
//! ```
//!
//! Decoding without [`with_received`] (the same process, or a forked child that inherited the
//! descriptors at the same numbers) duplicates the descriptor by its number in the sender.

use crate::sys;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// A descriptor inside a serialized handle.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct FdToken {
    /// Index in the list [`collect`] returned, or `u32::MAX` outside `collect`.
    index: u32,
    /// The descriptor's number in the sending process.
    raw: i32,
}

thread_local! {
    static COLLECTED: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    static RECEIVED: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// Runs `f` (which serializes) and returns, with its result, duplicates of every descriptor
/// the serialized handles carry, in the order of their tokens' indices.
pub(crate) fn collect<R>(f: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let outer = COLLECTED.with(|c| c.borrow_mut().replace(Vec::new()));
    let r = f();
    let found = COLLECTED.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    (r, found.unwrap_or_default())
}

/// Runs `f` (which deserializes) with `fds` (received in [`collect`]'s order) available to the
/// handles being decoded; descriptors no handle took are closed afterwards.
pub(crate) fn with_received<R>(fds: Vec<OwnedFd>, f: impl FnOnce() -> R) -> R {
    let table = fds.into_iter().map(Some).collect();
    let outer = RECEIVED.with(|c| c.borrow_mut().replace(table));
    let r = f();
    RECEIVED.with(|c| *c.borrow_mut() = outer);
    r
}

/// Makes the token for `fd` (recording a duplicate inside [`collect`]).
pub(crate) fn note(fd: BorrowedFd<'_>) -> io::Result<FdToken> {
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    let index = COLLECTED.with(|c| -> io::Result<u32> {
        let mut c = c.borrow_mut();
        match c.as_mut() {
            Some(list) => {
                let i = u32::try_from(list.len()).unwrap_or(u32::MAX);
                list.push(sys::dup(fd.as_fd())?);
                Ok(i)
            }
            None => Ok(u32::MAX),
        }
    })?;
    Ok(FdToken { index, raw })
}

/// Returns the descriptor a token names in this process.
pub(crate) fn take(tok: FdToken) -> io::Result<OwnedFd> {
    let idx = usize::try_from(tok.index).unwrap_or(usize::MAX);
    let from_table = RECEIVED.with(|c| {
        c.borrow_mut()
            .as_mut()
            .map(|t| t.get_mut(idx).and_then(Option::take))
    });
    match from_table {
        Some(Some(fd)) => Ok(fd),
        Some(None) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "descriptor token not among the received descriptors",
        )),
        None => sys::dup_raw(tok.raw),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn descriptors_travel_through_collect_and_with_received() {
        let (a, b) = crate::pipe().unwrap();
        let (bytes, fds) = super::collect(|| crate::codec::to_bytes(&b));
        let bytes = bytes.unwrap();
        assert_eq!(fds.len(), 2);
        let b2: crate::Connection =
            super::with_received(fds, || crate::codec::from_bytes(&bytes)).unwrap();
        drop(b);
        a.send(&5u8).unwrap();
        assert_eq!(b2.recv::<u8>().unwrap(), 5);
        // A token whose descriptor is not among the received ones fails cleanly.
        let (bytes, _fds) = super::collect(|| crate::codec::to_bytes(&b2));
        let bytes = bytes.unwrap();
        let r: crate::Result<crate::Connection> =
            super::with_received(Vec::new(), || crate::codec::from_bytes(&bytes));
        assert!(matches!(r, Err(crate::Error::Io { .. })));
    }
}
