//! `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`: a pollable wake-up counter for connections.
//!
//! A shared-memory connection moves its data through the heap; the eventfd exists only so that
//! `poll(2)` (and so `connection::wait`) can sleep on many connections at once. Writers signal
//! it only when a poller has registered, so the data path makes no system call.
//!
//! # References
//! - `eventfd(2)`

use rustix::event::{EventfdFlags, eventfd};
use rustix::fd::{AsFd, OwnedFd};
use std::io;

/// Creates a non-blocking, close-on-exec eventfd with counter 0.
pub(crate) fn eventfd_create() -> io::Result<OwnedFd> {
    Ok(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?)
}

/// Adds 1 to the counter, making the descriptor readable. A full counter (never reached in
/// practice) is already readable, so its `EAGAIN` is ignored.
pub(crate) fn eventfd_signal(fd: impl AsFd) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

/// Resets the counter to 0 (reads it if non-zero), making the descriptor unreadable.
pub(crate) fn eventfd_drain(fd: impl AsFd) {
    let mut buf = [0u8; 8];
    let _ = rustix::io::read(fd, &mut buf);
}
