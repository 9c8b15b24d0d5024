//! Connections: [`pipe`]/[`pipe_simplex`] over the shared heap, [`Listener`]/[`Client`] over
//! authenticated sockets, and [`wait`] over many.
//!
//! # Sockets
//!
//! [`Listener::bind`] and [`Client::connect`] take a Unix path, a Linux abstract name or a TCP
//! address. With an authkey, both sides run a mutual HMAC-SHA256 challenge-response (`auth`)
//! under a handshake timeout before any application byte is decoded; a TCP listener without a
//! key is refused unless asked for with [`Listener::bind_unauthenticated`]. Messages are frames
//! with an 8-byte length prefix, capped ([`DEFAULT_MAX_MESSAGE`]); an oversized prefix is
//! rejected before anything is allocated. Unix socket connections pass descriptors with
//! [`Connection::send_fd`]/[`Connection::recv_fd`] (`SCM_RIGHTS`).
//!
//! # Transport
//!
//! A pipe is one heap block holding a single-producer single-consumer ring of 64-byte slots per
//! direction (see `ring` for the layout, the record format and the protocol's state table).
//! Sending encodes the message straight into the ring (a value that does not fit the room
//! free at that moment is encoded first and then copied in, waiting for room) and publishes
//! it with one atomic store; the receiver decodes it in place and is woken by a futex only if
//! it sleeps (after spinning briefly), so throughput is bounded by memory, not system calls. Messages larger than a quarter of the ring stream
//! through it in chunks and are delivered only when complete.
//!
//! # Type tags (debug builds)
//!
//! A debug build's [`Connection::send`] puts a small tag before the message (a `TAG` record
//! in a pipe's ring, a frame whose prefix has its top bit set on a socket): a fingerprint of
//! the value's type (canonical for types that serialize alike) and its name. A debug build's
//! [`Connection::recv`] compares it with the type asked for and reports
//! [`Error::MessageTypeMismatch`](crate::Error::MessageTypeMismatch) naming both. Every reader
//! skips tags, so release builds (which send none and check none) and byte-level reads
//! ([`Connection::recv_bytes`]) see the same messages either way.
//!
//! # Polling
//!
//! Each direction also has an eventfd. It is signalled only when a [`wait`] caller has
//! registered on the ring (or the writer closes), so [`wait`] can `poll(2)` many connections,
//! process sentinels and raw descriptors at once without costing the data path anything.
//! (A process that dies inside `wait` leaves its registration behind; the writer then signals
//! the eventfd on every message, which costs a system call but nothing else.)
//!
//! # Passing connections to other processes
//!
//! A [`Connection`] is `Serialize`/`Deserialize`: its token names the heap block and its
//! eventfds, the latter by position in the transfer envelope (`crate::transfer`) that carries
//! them, never by number. It travels as a process argument (every start method) or inside a
//! value sent over a Unix socket connection; a shared-memory pipe or a TCP socket cannot carry
//! its descriptors and refuses it ([`Error::NoDescriptorChannel`](crate::Error::NoDescriptorChannel)).
//!
//! # End of stream and peer death
//!
//! Each direction records whether its sides closed and the pid of the process that last used
//! each side. A receiver that has drained every complete message and finds the writer closed,
//! or its process gone, returns [`Error::Disconnected`](crate::Error::Disconnected); sleeps
//! are sliced (at most 100 ms) so death is noticed without any message from the dead side.

mod auth;
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod fuzz;
mod listener;
mod pipe;
pub(crate) mod ring;
mod socket;
mod typed;
mod wait;

pub use listener::{
    Address, Client, DEFAULT_MAX_MESSAGE, HANDSHAKE_TIMEOUT, Listener, MAX_HANDSHAKES,
};
pub use pipe::{Connection, Readiness, pipe, pipe_simplex};
pub(crate) use socket::io_error;
pub use typed::{Receiver, Sender, typed_pipe};
pub use wait::{Waitable, wait};
