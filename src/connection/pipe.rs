//! `pipe()`, `pipe_simplex()` and [`Connection`]: message passing over the shared heap.
//!
//! # Safety
//!
//! A [`Connection`] holds [`Ring`] views (raw pointers) into the heap block its `ObjectRef`
//! keeps mapped; the rings are dropped together with that reference, never after it. The
//! block is initialized (`init_block`) before any handle exists and checked (`check_block`)
//! on every attach, which is what `Ring::new` requires.

#![allow(unsafe_code)]

use super::ring::{self, Ring, Sink};
use super::socket::SockConn;
use crate::codec;
use crate::error::{Error, Result};
use crate::heap::{ObjectRef, ObjectToken};
use crate::segment::Segment;
use crate::sys::{self, Deadline};
use crate::transfer::{self, Envelope, FdToken, Received};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cell::Cell;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

/// Fingerprint of a pipe block.
const PIPE_FP: u64 = crate::fingerprint::start("shmproc::connection::pipe v2", 64, 64);

/// Creates a duplex pipe in the default heap: two connected [`Connection`]s, each of which can
/// send and receive (`multiprocessing.Pipe()`).
///
/// # Errors
/// [`Error::OutOfMemory`] if the heap has no room for the two rings (about 512 KiB);
/// [`Error::Io`] if an eventfd cannot be created.
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// let (a, b) = shmproc::pipe()?;
/// a.send(&("hello", 42u32))?;
/// let (s, n): (String, u32) = b.recv()?;
/// assert_eq!((s.as_str(), n), ("hello", 42));
/// # Ok(()) }
/// ```
pub fn pipe() -> Result<(Connection, Connection)> {
    Connection::pair_in(&crate::runtime::default_segment()?, true)
}

/// Creates a one-way pipe in the default heap: `(receive end, send end)`, like
/// `multiprocessing.Pipe(duplex=False)` (note the order: Python's, not Rust's `(tx, rx)`).
///
/// [`typed_pipe`](crate::typed_pipe) gives the same ends as a [`Sender<T>`](crate::Sender)
/// and a [`Receiver<T>`](crate::Receiver), in `(tx, rx)` order, with the message type fixed.
///
/// # Errors
/// As for [`pipe`].
pub fn pipe_simplex() -> Result<(Connection, Connection)> {
    Connection::pair_in(&crate::runtime::default_segment()?, false)
}

/// One end of a pipe (`multiprocessing.connection.Connection`).
///
/// Messages keep their boundaries exactly (empty messages too) and may be up to 1 GiB; larger
/// messages stream through the ring in chunks and are delivered only when complete.
///
/// A connection is `Send` but not `Sync`, like Python's: one thread uses an end at a time, and
/// an end is used by one process at a time (the process that last sent or received on it is
/// the one whose death counts as the end's death). Receiving on one end from two processes at
/// once is a misuse, but a safe one: receives take turns, so each message goes to one of them
/// and none is delivered twice. It serializes to a token (the heap block and
/// its eventfds) and re-attaches in another process when it travels as a process argument or
/// over a Unix socket connection, whose transfer envelope carries the eventfds. Its token
/// names them by position in that envelope, never by number: decoded anywhere else (a token
/// put in a `Queue`, copied bytes) it fails with [`Error::DescriptorNotTransferred`].
///
/// # End of stream
/// Once the peer end is closed, or its process has died (even by `SIGKILL`, even mid-message),
/// receiving returns the messages already complete and then [`Error::Disconnected`]; a message
/// the peer did not finish is dropped, never delivered torn. A dead peer is noticed within
/// 100 ms of the receiver starting to sleep.
///
/// Dropping a connection closes it if this process used it (sent, received or polled) or never
/// passed it on (no fork and no serialization since it was made); otherwise the end stays open
/// for the process that took it over, and its death ends the stream.
///
/// Besides the recorded pid, each end carries a liveness descriptor (the write end of a kernel
/// pipe, never written) that travels with every copy of the end: inherited, passed as a
/// process argument or over a Unix socket. When every process that holds the end or may still
/// adopt it has dropped it or died, the peer sees end of stream, even if the process recorded
/// as the end's user (say, a parent that passed the end to a child that was killed before it
/// attached) is alive.
///
/// Known limit: a forked child inherits every descriptor of its parent, including the
/// liveness descriptors of ends it never uses; while such a child lives, those ends' deaths
/// are noticed only through the recorded pid (an end the parent serialized or forked away and
/// then dropped unused then ends once the child exits). `Spawn` and `ForkServer` children
/// receive only the descriptors of the ends passed to them.
///
/// # Examples
/// ```no_run
/// use shmproc::Connection;
///
/// fn echo(conn: Connection) -> shmproc::Result<()> {
///     let msg: String = conn.recv()?;
///     conn.send(&msg.to_uppercase())
/// }
///
/// fn main() -> shmproc::Result<()> {
///     shmproc::init();
///     let (here, there) = shmproc::pipe()?;
///     let child = shmproc::spawn(echo, there)?; // the end travels as an argument
///     here.send("ping")?;
///     assert_eq!(here.recv::<String>()?, "PING");
///     child.join()??;
///     Ok(())
/// }
/// ```
pub struct Connection {
    state: Option<Inner>,
    readable: bool,
    writable: bool,
}

// One `Inner` per connection, read on every send and receive: the shared-memory variant stays
// inline (no pointer chase on the hot path) although the socket variant is smaller.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Shm(Shm),
    Sock(SockConn),
}

/// The descriptors of one end: its eventfds and its liveness pipe ends.
struct EndFds {
    rx_efd: Option<OwnedFd>,
    tx_efd: Option<OwnedFd>,
    /// The write end of this end's liveness pipe.
    alive: OwnedFd,
    /// The read end of the peer's liveness pipe.
    peer_alive: OwnedFd,
}

/// What `wait` polls for a connection.
pub(crate) enum WaitPart<'a> {
    /// A shared-memory ring and its eventfd.
    Ring(&'a Ring, BorrowedFd<'a>),
    /// A socket (`true` if a message is already pending).
    Socket(BorrowedFd<'a>, bool),
}

struct Shm {
    rx: Option<Ring>,
    tx: Option<Ring>,
    rx_efd: Option<OwnedFd>,
    tx_efd: Option<OwnedFd>,
    side: u8,
    pid: Cell<u32>,
    used: Cell<bool>,
    serialized: Cell<bool>,
    epoch: u64,
    /// The write end of this end's liveness pipe: never written, only held, so the peer sees
    /// a hang-up once every process that holds or may adopt this end has closed it or died.
    alive: OwnedFd,
    /// The read end of the peer's liveness pipe (shared with the rings).
    peer_alive: Arc<OwnedFd>,
    // Declared last: dropped after the rings that point into it.
    obj: ObjectRef,
}

// SAFETY: the ring pointers address a shared mapping kept alive by `obj` (an `Arc` of the
// segment, which is `Send`); nothing in a connection is tied to the creating thread. It is not
// `Sync`: the `Cell`s and the single-producer/single-consumer protocol need one user at a time.
unsafe impl Send for Connection {}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .field("closed", &self.state.is_none())
            .field("socket", &matches!(self.state, Some(Inner::Sock(_))))
            .finish_non_exhaustive()
    }
}

/// Collects a received message into a `Vec`, or discards it past `max`.
struct VecSink {
    buf: Vec<u8>,
    max: usize,
    too_large: Option<usize>,
}

impl Sink for VecSink {
    fn start(&mut self, total: usize) -> Result<()> {
        if total > self.max {
            self.too_large = Some(total);
        } else {
            // Bounded preallocation: the length comes from shared memory.
            self.buf = Vec::with_capacity(total.min(64 << 20));
        }
        Ok(())
    }
    fn put(&mut self, _offset: usize, bytes: &[u8]) -> Result<()> {
        if self.too_large.is_none() {
            self.buf.extend_from_slice(bytes);
        }
        Ok(())
    }
}

/// Copies a received message into a caller's buffer, refusing (and keeping it) if too short.
struct SliceSink<'a> {
    buf: &'a mut [u8],
    total: usize,
}

impl Sink for SliceSink<'_> {
    fn start(&mut self, total: usize) -> Result<()> {
        if total > self.buf.len() {
            return Err(Error::BufferTooSmall { needed: total });
        }
        self.total = total;
        Ok(())
    }
    fn put(&mut self, offset: usize, bytes: &[u8]) -> Result<()> {
        let dst = offset
            .checked_add(bytes.len())
            .and_then(|end| self.buf.get_mut(offset..end))
            .ok_or(Error::CorruptObject {
                reason: "pipe chunk past the message length",
            })?;
        dst.copy_from_slice(bytes);
        Ok(())
    }
}

/// Adapts a `dyn Sink` to the ring's generic receive.
struct DynSink<'a>(&'a mut dyn Sink);

impl Sink for DynSink<'_> {
    fn start(&mut self, total: usize) -> Result<()> {
        self.0.start(total)
    }
    fn put(&mut self, offset: usize, bytes: &[u8]) -> Result<()> {
        self.0.put(offset, bytes)
    }
}

impl Connection {
    fn pair_in(seg: &Segment, duplex: bool) -> Result<(Connection, Connection)> {
        let cap = ring::DEFAULT_CAPACITY;
        let obj = ObjectRef::alloc(seg, ring::block_len(cap), 64, PIPE_FP)?;
        // SAFETY: the block was just allocated with `block_len(cap)` bytes, 64-aligned, and no
        // other handle to it exists yet.
        unsafe { ring::init_block(obj.ptr(), cap) };
        let efd0 = sys::eventfd_create().map_err(|e| Error::io("eventfd", e))?;
        let efd1 = if duplex {
            Some(sys::eventfd_create().map_err(|e| Error::io("eventfd", e))?)
        } else {
            None
        };
        let dup = |fd: &OwnedFd| sys::dup(fd.as_fd()).map_err(|e| Error::io("fcntl", e));
        let obj2 = obj.clone();
        let live = || -> Result<(OwnedFd, OwnedFd)> {
            let (r, w) = sys::pipe().map_err(|e| Error::io("pipe2", e))?;
            Ok((r.into(), w.into()))
        };
        let (alive0_r, alive0_w) = live()?;
        let (alive1_r, alive1_w) = live()?;
        // Side 0 sends on direction 0; side 1 receives on it. In a duplex pipe, direction 1
        // runs the other way. `pipe_simplex` returns (side 1, side 0) = (reader, writer).
        let a = Connection::from_parts(
            obj,
            cap,
            0,
            duplex,
            true,
            EndFds {
                rx_efd: efd1.as_ref().map(dup).transpose()?,
                tx_efd: Some(dup(&efd0)?),
                alive: alive0_w,
                peer_alive: alive1_r,
            },
        )?;
        let b = Connection::from_parts(
            obj2,
            cap,
            1,
            true,
            duplex,
            EndFds {
                rx_efd: Some(efd0),
                tx_efd: efd1,
                alive: alive1_w,
                peer_alive: alive0_r,
            },
        )?;
        Ok(if duplex { (a, b) } else { (b, a) })
    }

    fn from_parts(
        obj: ObjectRef,
        cap: u64,
        side: u8,
        readable: bool,
        writable: bool,
        fds: EndFds,
    ) -> Result<Connection> {
        let EndFds {
            rx_efd,
            tx_efd,
            alive,
            peer_alive,
        } = fds;
        let peer_alive = Arc::new(peer_alive);
        // SAFETY: `obj`'s payload is live while `obj` is (it is stored beside the rings and
        // dropped after them) and has at least `obj.len()` readable bytes, 64-aligned.
        let cap = cap.min(unsafe { ring::check_block(obj.ptr(), obj.len()) }?);
        let (tx_dir, rx_dir) = if side == 0 { (0, 1) } else { (1, 0) };
        // SAFETY: the block was checked just above with capacity `cap`; `obj` keeps it mapped
        // for as long as the ring, which is dropped first.
        let mut tx = writable.then(|| unsafe { Ring::new(obj.ptr(), cap, tx_dir) });
        // SAFETY: as above.
        let mut rx = readable.then(|| unsafe { Ring::new(obj.ptr(), cap, rx_dir) });
        for r in tx.iter_mut().chain(rx.iter_mut()) {
            r.set_peer_liveness(peer_alive.clone());
        }
        let shm = Shm {
            rx,
            tx,
            rx_efd: if readable { rx_efd } else { None },
            tx_efd: if writable { tx_efd } else { None },
            side,
            pid: Cell::new(0),
            used: Cell::new(false),
            serialized: Cell::new(false),
            epoch: sys::fork_epoch(),
            alive,
            peer_alive,
            obj,
        };
        shm.adopt();
        Ok(Connection {
            state: Some(Inner::Shm(shm)),
            readable,
            writable,
        })
    }

    /// Wraps an authenticated socket.
    pub(crate) fn from_socket(sock: SockConn) -> Connection {
        Connection {
            state: Some(Inner::Sock(sock)),
            readable: true,
            writable: true,
        }
    }

    fn inner(&self) -> Result<&Inner> {
        // No `ok_or`: an `Error` built eagerly is dropped on every call, and its drop is a call
        // into the enum's drop glue (seen in a profile of the blocking round trip).
        let Some(i) = self.state.as_ref() else {
            return Err(Error::Closed);
        };
        if let Inner::Shm(s) = i {
            s.adopt();
            s.used.set(true);
        }
        Ok(i)
    }

    fn check(&self, readable: bool) -> Result<()> {
        if readable && !self.readable {
            return Err(Error::WrongDirection { needed: "readable" });
        }
        if !readable && !self.writable {
            return Err(Error::WrongDirection { needed: "writable" });
        }
        Ok(())
    }

    fn rx(&self) -> Result<&Ring> {
        match self.inner()? {
            Inner::Shm(s) => {
                if let Some(tx) = &s.tx {
                    tx.note_other_direction();
                }
                // As in `inner`: the error only when it is returned.
                match &s.rx {
                    Some(rx) => Ok(rx),
                    None => Err(Error::WrongDirection { needed: "readable" }),
                }
            }
            Inner::Sock(_) => Err(Error::WrongDirection { needed: "readable" }),
        }
    }

    fn recv_with(&self, sink: &mut dyn Sink) -> Result<()> {
        self.check(true)?;
        match self.inner()? {
            Inner::Shm(_) => self.rx()?.recv(&mut DynSink(sink), None),
            Inner::Sock(s) => s.recv(sink),
        }
    }

    /// Turns spinning before sleeping on or off for this end of a shared-memory pipe (on by
    /// default; no effect on a socket connection).
    ///
    /// With spinning on, a `recv` (or a `send` into a full ring) that finds nothing ready
    /// first polls for an adaptive number of rounds (8 to 4,000 `pause` rounds of ~80–150 ns
    /// each here, growing while the peer answers within the spin), then sleeps on a futex.
    /// Spinning replaces two futex system calls and a wake-up on each side when the peer
    /// answers within microseconds, at the price of up to ~0.4 ms of one core per wait while it
    /// pays off (and ~1 µs per wait once the budget has fallen to its floor because the peer is
    /// slow). With it off, every wait that finds nothing ready sleeps at once: no CPU is
    /// burnt, and each round trip costs the futex wake-ups.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> shmproc::Result<()> {
    /// let (a, b) = shmproc::pipe()?;
    /// a.set_spinning(false);
    /// b.set_spinning(false);
    /// a.send(&7u64)?;
    /// assert_eq!(b.recv::<u64>()?, 7);
    /// # Ok(()) }
    /// ```
    pub fn set_spinning(&self, on: bool) {
        if let Some(Inner::Shm(s)) = &self.state {
            for ring in [&s.rx, &s.tx].into_iter().flatten() {
                ring.set_spinning(on);
            }
        }
    }

    /// Makes both directions of this end yield the core a few times before sleeping, as a
    /// queue's ring does (see `ring::Ring::set_yielding`): for request/reply connections (a
    /// manager's), where the peer is often waiting for this very core.
    pub(crate) fn set_yielding(&self) {
        if let Some(Inner::Shm(s)) = &self.state {
            for ring in [&s.rx, &s.tx].into_iter().flatten() {
                ring.set_yielding();
            }
        }
    }

    /// Whether a message (or the start of one) waits to be received on this end of a
    /// shared-memory pipe: two loads of the ring's positions, no liveness check and no system
    /// call, for a caller that polls briefly before a blocking receive (the receive then
    /// notices a closed or dead peer). Always `false` for a socket connection.
    pub(crate) fn message_waiting(&self) -> bool {
        match &self.state {
            Some(Inner::Shm(s)) => s.rx.as_ref().is_some_and(Ring::has_data),
            _ => false,
        }
    }

    /// Whether the peer last sent on the calling thread's CPU (a shared-memory pipe; a hint,
    /// one load and `sched_getcpu`): polling for its next message there only keeps it off the
    /// core. Always `false` for a socket connection.
    pub(crate) fn peer_on_this_cpu(&self) -> bool {
        match &self.state {
            Some(Inner::Shm(s)) => s.rx.as_ref().is_some_and(Ring::writer_on_this_cpu),
            _ => false,
        }
    }

    /// Whether a message this end sent (or part of one) still waits, unread, in a
    /// shared-memory pipe: its peer never took it whole. Two loads; always `false` for a
    /// socket connection.
    pub(crate) fn sent_unread(&self) -> bool {
        match &self.state {
            Some(Inner::Shm(s)) => s.tx.as_ref().is_some_and(Ring::has_data),
            _ => false,
        }
    }

    /// Bounds each blocking read and write of a socket connection (`None`: no bound), so a
    /// peer that stalls mid-message cannot hold the caller forever; a no-op for a pipe.
    pub(crate) fn set_socket_timeout(&self, t: Option<Duration>) -> Result<()> {
        match &self.state {
            Some(Inner::Sock(s)) => s.stream.set_timeout(t),
            _ => Ok(()),
        }
    }

    /// Returns whether this end can receive.
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Returns whether this end can send.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Returns whether [`close`](Connection::close) was called.
    pub fn is_closed(&self) -> bool {
        self.state.is_none()
    }

    /// Sends a value, encoded with [`codec`](crate::codec). Blocks while the ring is full.
    ///
    /// Shared objects inside the value travel as handles. Over a Unix socket connection the
    /// descriptors they need travel too (`SCM_RIGHTS`): their segments (which gives the peer
    /// access to those whole segments) and the eventfds of connections. A shared-memory pipe
    /// and a TCP socket carry bytes only: a handle whose segment the receiver does not map
    /// already fails there with [`Error::SegmentNotTransferred`], and a connection inside the
    /// value is refused here.
    ///
    /// In debug builds, the connection also carries the value's type with the message,
    /// so a [`recv`](Connection::recv) as another type reports
    /// [`Error::MessageTypeMismatch`] instead of decoding garbage; release builds send no tag
    /// and check none, and either build reads the other's messages.
    ///
    /// # Errors
    /// [`Error::Codec`] if the value cannot be encoded; [`Error::NoDescriptorChannel`] if it
    /// holds a connection and this end cannot carry descriptors; as for
    /// [`send_bytes`](Connection::send_bytes).
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.check(false)?;
        // Release builds encode straight into the ring when the value fits the room free now:
        // no `Vec` per message, published only once the value is known to need no descriptor.
        // Debug builds take the sealed path below, whose type tag must precede the message and
        // is sent only once the message is known to be accepted.
        if !cfg!(debug_assertions)
            && let Inner::Shm(s) = self.inner()?
            && let Some(ring) = &s.tx
        {
            let (end, fds) = transfer::encode_bytes_only(|| {
                ring.write_in_place(|area| Ok(codec::to_slice(value, area)?.map(|u| u.len())))
            });
            match end? {
                Some(_) if fds > 0 => {
                    return Err(Error::NoDescriptorChannel {
                        channel: "a shared-memory pipe",
                        count: fds,
                    });
                }
                Some(end) => {
                    ring.publish_in_place(end, s.tx_efd.as_ref().map(AsFd::as_fd));
                    if let Some(rx) = &s.rx {
                        rx.note_other_direction();
                    }
                    return Ok(());
                }
                None => {}
            }
        }
        let env = Envelope::seal(value)?;
        match self.inner()? {
            Inner::Shm(_) if env.needs_descriptors() => Err(Error::NoDescriptorChannel {
                channel: "a shared-memory pipe",
                count: env.fds.len(),
            }),
            Inner::Shm(_) => {
                // Not for a message the ring refuses: the tag would describe the next one.
                #[cfg(debug_assertions)]
                if env.bytes.len() as u64 <= ring::MAX_MESSAGE {
                    self.send_type_tag::<T>()?;
                }
                self.send_bytes(&env.bytes)
            }
            Inner::Sock(s) => {
                #[cfg(debug_assertions)]
                let tag = Some(type_tag::<T>());
                #[cfg(not(debug_assertions))]
                let tag: Option<Vec<u8>> = None;
                s.send_envelope(&env, tag.as_deref())
            }
        }
    }

    /// Debug builds: announces the type of the next message (see [`recv`](Connection::recv)).
    #[cfg(debug_assertions)]
    fn send_type_tag<T: ?Sized>(&self) -> Result<()> {
        let tag = type_tag::<T>();
        match self.inner()? {
            Inner::Shm(s) => match &s.tx {
                Some(ring) => ring.send_tag(&tag, s.tx_efd.as_ref().map(AsFd::as_fd)),
                None => Err(Error::WrongDirection { needed: "writable" }),
            },
            Inner::Sock(_) => Ok(()),
        }
    }

    /// Receives a value sent with [`send`](Connection::send). Blocks until a message arrives.
    ///
    /// Handles inside the value take their descriptors only from those that arrived with
    /// this message (see `send`), never by number.
    ///
    /// # Errors
    /// As for [`recv_bytes`](Connection::recv_bytes); the decode errors of
    /// [`codec::from_bytes`](crate::codec::from_bytes); [`Error::SegmentNotTransferred`] for a
    /// handle whose segment did not travel and is not mapped here;
    /// [`Error::DescriptorNotTransferred`] for a handle whose descriptor did not arrive;
    /// in debug builds, [`Error::MessageTypeMismatch`] (the message is consumed) if a debug
    /// sender sent another type than `T`. Types that serialize alike
    /// match: a `&str` sent is received as a `String`, a `&[T]` as a `Vec<T>`.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> shmproc::Result<()> {
    /// let (a, b) = shmproc::pipe()?;
    /// a.send(&-1i32)?;
    /// # if cfg!(debug_assertions) {
    /// assert!(matches!(b.recv::<u32>(), Err(shmproc::Error::MessageTypeMismatch { .. })));
    /// # } else { let _ = b.recv::<u32>(); }
    /// a.send("text")?;
    /// assert_eq!(b.recv::<String>()?, "text");
    /// # Ok(()) }
    /// ```
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        self.check(true)?;
        match self.inner()? {
            // Nothing but bytes arrives over a pipe: an empty scope, so no descriptor table
            // of an enclosing decode is visible to this message.
            // Decoded in place from the ring (no `Vec` per message).
            Inner::Shm(_) => {
                let rx = self.rx()?;
                rx.recv_map(
                    |bytes| {
                        check_type_tag::<T>(|| rx.take_message_tag())?;
                        transfer::open(bytes, Received::none())
                    },
                    None,
                )?
            }
            Inner::Sock(s) => {
                s.recv_envelope(|s: &SockConn| check_type_tag::<T>(|| s.take_message_tag()))
            }
        }
    }

    /// Receives a value if one is ready now: `Ok(None)` if none is (the crate's rule for
    /// `try_` forms; see [Blocking and timeouts](crate#blocking-and-timeouts)).
    ///
    /// # Errors
    /// As for [`recv`](Connection::recv) (including [`Error::Disconnected`] at end of stream).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> shmproc::Result<()> {
    /// let (a, b) = shmproc::pipe()?;
    /// assert_eq!(b.try_recv::<u32>()?, None);
    /// a.send(&7u32)?;
    /// assert_eq!(b.try_recv::<u32>()?, Some(7));
    /// # Ok(()) }
    /// ```
    pub fn try_recv<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.recv_timeout(Duration::ZERO)
    }

    /// Receives a value, waiting at most `timeout` (monotonic) for one to arrive: `Ok(None)`
    /// if none did. A message larger than the ring that has started to arrive is received
    /// whole, so the call may outlast `timeout` by the time the peer takes to finish it.
    ///
    /// # Errors
    /// As for [`recv`](Connection::recv) (including [`Error::Disconnected`] at end of stream).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> shmproc::Result<()> {
    /// use std::time::Duration;
    /// let (a, b) = shmproc::pipe()?;
    /// assert_eq!(b.recv_timeout::<String>(Duration::from_millis(10))?, None);
    /// a.send("hi")?;
    /// assert_eq!(b.recv_timeout::<String>(Duration::from_secs(5))?.as_deref(), Some("hi"));
    /// # Ok(()) }
    /// ```
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<Option<T>> {
        if !self.poll(Some(timeout))? {
            return Ok(None);
        }
        self.recv().map(Some)
    }

    /// Sends `buf` as one message. Blocks while the ring is full (a message larger than the
    /// ring streams through it as the receiver reads).
    ///
    /// # Errors
    /// [`Error::Disconnected`] if the receiving end is closed or its process died;
    /// [`Error::MessageTooLarge`] past 1 GiB; [`Error::Closed`] after `close`;
    /// [`Error::WrongDirection`] on a receive-only end.
    pub fn send_bytes(&self, buf: &[u8]) -> Result<()> {
        self.check(false)?;
        match self.inner()? {
            Inner::Shm(s) => match &s.tx {
                Some(ring) => {
                    if let Some(rx) = &s.rx {
                        rx.note_other_direction();
                    }
                    ring.send(buf, s.tx_efd.as_ref().map(AsFd::as_fd))
                }
                None => Err(Error::WrongDirection { needed: "writable" }),
            },
            Inner::Sock(s) => s.send(buf),
        }
    }

    /// Sends `buf[offset..offset + size]` (to the end if `size` is `None`) as one message.
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`] if the range is outside `buf`; as for
    /// [`send_bytes`](Connection::send_bytes).
    pub fn send_bytes_range(&self, buf: &[u8], offset: usize, size: Option<usize>) -> Result<()> {
        let end = match size {
            Some(n) => offset.saturating_add(n),
            None => buf.len().max(offset),
        };
        let part = buf.get(offset..end).ok_or(Error::IndexOutOfBounds {
            index: end,
            len: buf.len(),
        })?;
        self.send_bytes(part)
    }

    /// Receives one message's bytes. Blocks until a complete message arrives.
    ///
    /// # Errors
    /// [`Error::Disconnected`] at end of stream (after every complete message was received);
    /// [`Error::CorruptObject`] if the shared ring holds inconsistent data; [`Error::Closed`],
    /// [`Error::WrongDirection`].
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_bytes_max(usize::MAX)
    }

    /// Receives one message's bytes if it is at most `max` bytes long.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] if it is longer (the message is then discarded, and the
    /// next call receives the next one); as for [`recv_bytes`](Connection::recv_bytes).
    pub fn recv_bytes_max(&self, max: usize) -> Result<Vec<u8>> {
        let mut sink = VecSink {
            buf: Vec::new(),
            max,
            too_large: None,
        };
        self.recv_with(&mut sink)?;
        match sink.too_large {
            Some(size) => Err(Error::MessageTooLarge {
                size: size as u64,
                limit: max as u64,
            }),
            None => Ok(sink.buf),
        }
    }

    /// Receives one message into `buf` and returns its length.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] (with the length needed) if the message does not fit; the
    /// message stays in the pipe for the next receive. As for
    /// [`recv_bytes`](Connection::recv_bytes).
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        let mut sink = SliceSink { buf, total: 0 };
        self.recv_with(&mut sink)?;
        Ok(sink.total)
    }

    /// Receives one message into `buf[offset..]` and returns its length.
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`] if `offset > buf.len()`; [`Error::BufferTooSmall`] with
    /// the total buffer length needed (`offset` + message length), the message kept; as for
    /// [`recv_bytes`](Connection::recv_bytes).
    pub fn recv_bytes_into_at(&self, buf: &mut [u8], offset: usize) -> Result<usize> {
        let len = buf.len();
        let tail = buf
            .get_mut(offset..)
            .ok_or(Error::IndexOutOfBounds { index: offset, len })?;
        match self.recv_bytes_into(tail) {
            Err(Error::BufferTooSmall { needed }) => Err(Error::BufferTooSmall {
                needed: needed.saturating_add(offset),
            }),
            r => r,
        }
    }

    /// Returns whether a message (or end of stream) is ready to be received, waiting up to
    /// `timeout` (`None`: until one is; `Some(Duration::ZERO)`: not at all).
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::WrongDirection`].
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        self.check(true)?;
        if let Inner::Sock(s) = self.inner()? {
            return s.poll(timeout);
        }
        let ring = self.rx()?;
        if ring.readable_now() {
            return Ok(true);
        }
        match timeout {
            Some(t) if t.is_zero() => Ok(false),
            Some(t) => Ok(ring.poll(Some(&Deadline::after(t)))),
            None => Ok(ring.poll(None)),
        }
    }

    /// Closes this end: the peer's receives return [`Error::Disconnected`] once they have
    /// drained the messages sent before, and its sends fail with it. Later operations on this
    /// end fail with [`Error::Closed`]. Closing twice is a no-op.
    pub fn close(&mut self) {
        if let Some(Inner::Shm(s)) = self.state.take() {
            s.close_shared();
        }
    }

    /// Sends a descriptor over a Unix socket connection (`SCM_RIGHTS`); the peer receives it
    /// with [`recv_fd`](Connection::recv_fd), in order with the messages around it.
    ///
    /// # Errors
    /// [`Error::WrongDirection`] unless this is a Unix socket connection; [`Error::Disconnected`]
    /// if the peer is gone; [`Error::Io`].
    pub fn send_fd(&self, fd: BorrowedFd<'_>) -> Result<()> {
        match self.inner()? {
            Inner::Sock(s) => s.send_fd(fd),
            Inner::Shm(_) => Err(Error::WrongDirection {
                needed: "a Unix socket",
            }),
        }
    }

    /// Receives a descriptor sent with [`send_fd`](Connection::send_fd). Blocks until it
    /// arrives.
    ///
    /// # Errors
    /// As for [`send_fd`](Connection::send_fd); [`Error::CorruptObject`] if the next thing in
    /// the stream is a message, not a descriptor.
    pub fn recv_fd(&self) -> Result<OwnedFd> {
        match self.inner()? {
            Inner::Sock(s) => s.recv_fd(),
            Inner::Shm(_) => Err(Error::WrongDirection {
                needed: "a Unix socket",
            }),
        }
    }

    /// Returns this end's readiness descriptor, for an event loop (`tokio::io::unix::AsyncFd`,
    /// `mio`, `epoll`): readable whenever a message (or end of stream) may have arrived.
    ///
    /// While the returned [`Readiness`] lives, every send on the peer end signals its eventfd
    /// (one system call per message; without a `Readiness` or a [`wait`](super::wait) caller,
    /// sends make none). It is level-triggered on the eventfd, not on the ring: after a wake-up,
    /// call [`Readiness::clear`] and then receive with [`try_recv`](Connection::try_recv) until
    /// it returns `Ok(None)`. Checking with `try_recv` before waiting never misses a message:
    /// a message sent after the `Readiness` exists always signals. A writer that dies without
    /// closing does not signal: bound async waits with a timeout (a `recv` after it reports
    /// [`Error::Disconnected`]).
    ///
    /// A socket connection's readiness is its socket.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::WrongDirection`] for an end that cannot receive.
    ///
    /// # Examples
    /// ```
    /// use std::os::fd::AsFd;
    /// # fn main() -> shmproc::Result<()> {
    /// let (a, b) = shmproc::pipe()?;
    /// let ready = b.readiness()?;
    /// a.send(&5u8)?;
    /// // An event loop would now see `ready.as_fd()` readable.
    /// assert_eq!(shmproc::connection::wait(&[shmproc::connection::Waitable::fd(&ready)], None)?, [0]);
    /// ready.clear();
    /// assert_eq!(b.try_recv::<u8>()?, Some(5));
    /// # Ok(()) }
    /// ```
    pub fn readiness(&self) -> Result<Readiness<'_>> {
        match self.wait_part()? {
            WaitPart::Ring(ring, fd) => {
                ring.add_poller(true);
                Ok(Readiness {
                    ring: Some(ring),
                    fd,
                })
            }
            WaitPart::Socket(fd, _) => Ok(Readiness { ring: None, fd }),
        }
    }

    /// Returns what `wait` polls for this end.
    pub(crate) fn wait_part(&self) -> Result<WaitPart<'_>> {
        self.check(true)?;
        match self.state.as_ref().ok_or(Error::Closed)? {
            Inner::Shm(s) => match (&s.rx, &s.rx_efd) {
                (Some(r), Some(fd)) => Ok(WaitPart::Ring(r, fd.as_fd())),
                _ => Err(Error::WrongDirection { needed: "readable" }),
            },
            Inner::Sock(s) => Ok(WaitPart::Socket(s.stream.fd(), s.has_pending())),
        }
    }
}

/// A connection end's readiness descriptor, from [`Connection::readiness`]: implements
/// [`AsFd`] and [`AsRawFd`](std::os::fd::AsRawFd) for event loops.
pub struct Readiness<'a> {
    ring: Option<&'a Ring>,
    fd: BorrowedFd<'a>,
}

impl Readiness<'_> {
    /// Resets the descriptor after a wake-up (reads the eventfd's counter); then receive until
    /// `try_recv` returns `Ok(None)`. A no-op for a socket connection.
    pub fn clear(&self) {
        if self.ring.is_some() {
            sys::eventfd_drain(self.fd);
        }
    }
}

impl AsFd for Readiness<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd
    }
}

impl std::os::fd::AsRawFd for Readiness<'_> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for Readiness<'_> {
    fn drop(&mut self) {
        if let Some(r) = self.ring {
            r.add_poller(false);
        }
    }
}

impl fmt::Debug for Readiness<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readiness")
            .field("fd", &self.fd)
            .field("ring", &self.ring.is_some())
            .finish()
    }
}

impl Shm {
    /// Records this process as the user of this end, if it is not already.
    fn adopt(&self) {
        let me = sys::current_pid();
        if self.pid.get() != me {
            if let Some(t) = &self.tx {
                t.set_writer_pid(me);
            }
            if let Some(r) = &self.rx {
                r.set_reader_pid(me);
            }
            self.pid.set(me);
        }
    }

    fn close_shared(&self) {
        if let Some(t) = &self.tx {
            t.close_writer(self.tx_efd.as_ref().map(AsFd::as_fd));
        }
        if let Some(r) = &self.rx {
            r.close_reader();
        }
    }

    /// Whether dropping this handle closes the end (see the type's docs).
    fn closes_on_drop(&self) -> bool {
        let me = sys::current_pid();
        if self.pid.get() != me {
            return false;
        }
        let still_ours = self.tx.as_ref().is_some_and(|t| t.writer_pid() == me)
            || self.rx.as_ref().is_some_and(|r| r.reader_pid() == me);
        still_ours
            && (self.used.get() || (!self.serialized.get() && self.epoch == sys::fork_epoch()))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(Inner::Shm(s)) = self.state.take()
            && s.closes_on_drop()
        {
            s.close_shared();
        }
    }
}

#[derive(Serialize)]
struct TokenOut<'a> {
    obj: &'a ObjectRef,
    side: u8,
    readable: bool,
    writable: bool,
    rx_fd: Option<FdToken>,
    tx_fd: Option<FdToken>,
    alive_fd: FdToken,
    peer_fd: FdToken,
}

#[derive(Deserialize)]
struct TokenIn {
    obj: ObjectToken,
    side: u8,
    readable: bool,
    writable: bool,
    rx_fd: Option<FdToken>,
    tx_fd: Option<FdToken>,
    alive_fd: FdToken,
    peer_fd: FdToken,
}

impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let shm = match &self.state {
            Some(Inner::Shm(s)) => s,
            Some(Inner::Sock(_)) => {
                return Err(S::Error::custom(
                    "a socket connection cannot be serialized; pass its descriptor with send_fd",
                ));
            }
            None => return Err(S::Error::custom("connection is closed")),
        };
        shm.serialized.set(true);
        let note = |fd: &Option<OwnedFd>| {
            fd.as_ref()
                .map(|f| transfer::note(f.as_fd()))
                .transpose()
                .map_err(S::Error::custom)
        };
        TokenOut {
            obj: &shm.obj,
            side: shm.side,
            readable: self.readable,
            writable: self.writable,
            rx_fd: note(&shm.rx_efd)?,
            tx_fd: note(&shm.tx_efd)?,
            alive_fd: transfer::note(shm.alive.as_fd()).map_err(S::Error::custom)?,
            peer_fd: transfer::note(shm.peer_alive.as_fd()).map_err(S::Error::custom)?,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let t = TokenIn::deserialize(d)?;
        let attach = || -> Result<Connection> {
            if t.side > 1 || (!t.readable && !t.writable) {
                return Err(Error::CorruptObject {
                    reason: "connection token has a bad side",
                });
            }
            let obj = ObjectRef::attach(&t.obj, PIPE_FP, "Connection")?;
            let take = |f: Option<FdToken>| f.map(transfer::take).transpose();
            Connection::from_parts(
                obj,
                u64::MAX,
                t.side,
                t.readable,
                t.writable,
                EndFds {
                    rx_efd: take(t.rx_fd)?,
                    tx_efd: take(t.tx_fd)?,
                    alive: transfer::take(t.alive_fd)?,
                    peer_alive: transfer::take(t.peer_fd)?,
                },
            )
        };
        attach().map_err(codec::attach_error)
    }
}

/// Debug builds' type tag of `T`: its fingerprint, then its name.
#[cfg(debug_assertions)]
fn type_tag<T: ?Sized>() -> Vec<u8> {
    let (fingerprint, name) = crate::fingerprint::serde_type_tag::<T>();
    let mut tag = fingerprint.to_le_bytes().to_vec();
    tag.extend_from_slice(name.as_bytes());
    tag
}

/// Checks the type a debug-build sender announced for the message being received (`tag`
/// takes it) against `T` (debug builds; release builds skip the check, and an untagged
/// message always passes).
#[inline(always)]
#[cfg_attr(not(debug_assertions), allow(clippy::extra_unused_type_parameters))]
fn check_type_tag<T>(tag: impl FnOnce() -> Option<Box<[u8]>>) -> Result<()> {
    #[cfg(debug_assertions)]
    if let Some(tag) = tag()
        && let Some((fp, name)) = tag.split_first_chunk::<8>()
    {
        let (want, expected) = crate::fingerprint::serde_type_tag::<T>();
        if u64::from_le_bytes(*fp) != want {
            return Err(Error::MessageTypeMismatch {
                expected,
                sent: String::from_utf8_lossy(name).into_owned(),
            });
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = tag;
    Ok(())
}
