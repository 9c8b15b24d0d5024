//! Built-in objects a server holds in their in-heap form, which local clients attach and use
//! without a round trip: queues, joinable queues and (servers on a Unix socket) conditions
//! (see the manager's [direct and served primitives](super#direct-and-served-primitives)).
//!
//! The server creates such an object in a segment of its own ([`HeapHome`]) and keeps
//! it in its object table like any other (references, pins: every lifetime rule holds); a
//! client on this host asks for its [`AttachInfo`] once per proxy and process (a call of the
//! object's `attach` method) and attaches the block the token names. The token is checked
//! like any other (the segment must be the one the server's greeting reply carried, mapped
//! here; the block's offset and generation, the ring's kind and element fingerprint), so a
//! forged or stale one is an error, and the client then goes on through the server (a
//! queue's calls; an in-heap condition's lock calls are refused to a caller that did not
//! attach it, see [`HeapCondition::call`]). Remote clients of a queue are served by the
//! server acting on the same in-heap object.
//!
//! Server death: an attached client waits in slices of [`SLICE`] and, after each, probes the
//! server's process (its pid and start time, from the attach information); once it is gone
//! the client closes the object (a ring's closed word, a condition's word 3), so every
//! attached call of every process fails with [`Error::Disconnected`] from then on (one load
//! of that word per call). A server that stops closes the objects it holds likewise, and so
//! does the server when an object's last reference goes (the block stays mapped while
//! attached handles keep it).

use super::objects::{Ctx, decode, enc};
use super::protocol::Fault;
use crate::error::{Error, Result};
use crate::heap::{ObjectRef, ObjectToken};
use crate::queue::ErasedQueue;
use crate::queue::ring;
use crate::segment::Segment;
use crate::sync::raw::Acquired;
use crate::sync::{Condition, ConditionLock, RLock};
use crate::sys::{self, Deadline};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// How long an attached wait (or a served one) sleeps before checking that the other side is
/// still there.
const SLICE: Duration = Duration::from_millis(50);

/// The ring capacity of a managed queue created without one: 262,144 messages (its slots
/// take memory only once used).
pub(crate) const UNBOUNDED: u64 = 1 << 18;

/// The address space of a server's segment for in-heap objects (memory is used only as
/// touched: an unbounded ring takes 80 MiB of it and about 330 KiB of memory until its
/// slots are used); once rings would eat into [`ITEM_ROOM`], new queues are served instead.
const SEGMENT_LEN: u64 = 16 << 30;

/// The room of the server's segment that rings never take: large items (those that do not
/// fit a slot) of every attached queue, and conditions, are allocated there.
const ITEM_ROOM: u64 = 4 << 30;

/// Which process serves an attached object: its pid and start time (clock ticks since boot,
/// when `/proc` tells it), so that a pid reused by another process is not taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ServerId {
    pid: u32,
    start: Option<u64>,
}

impl ServerId {
    /// This process.
    fn current() -> ServerId {
        let pid = sys::current_pid();
        let start = match sys::probe_process(pid) {
            sys::ProcessLiveness::Running { start } => start,
            sys::ProcessLiveness::Gone => None,
        };
        ServerId { pid, start }
    }

    /// Whether the process is definitely gone (dead, or its pid taken by a later process).
    fn gone(&self) -> bool {
        match sys::probe_process(self.pid) {
            sys::ProcessLiveness::Gone => true,
            sys::ProcessLiveness::Running { start } => {
                matches!((start, self.start), (Some(now), Some(then)) if now != then)
            }
        }
    }
}

/// What an attachable object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum AttachKind {
    /// A queue (`joinable`: a joinable one; `bounded`: created with a capacity).
    Queue { joinable: bool, bounded: bool },
    /// A condition with its own re-entrant lock (`lock` names it).
    Condition,
}

/// What a local client needs to attach an object's in-heap form (the reply of its `attach`
/// method; `None` for an object that is served only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AttachInfo {
    pub(crate) kind: AttachKind,
    pub(crate) token: ObjectToken,
    /// A condition's lock.
    pub(crate) lock: Option<ObjectToken>,
    pub(crate) server: ServerId,
}

/// The fingerprint of a server's home block (see [`Home`]).
fn home_fingerprint() -> u64 {
    crate::fingerprint::start("shmproc::manager home v1", 8, 8)
}

/// A server's segment for in-heap objects (a memory file: it vanishes with the last process
/// that maps it, however the server ends), created with the first local connection, and a
/// small block in it that each local client's greeting reply carries ([`Welcome`]): the
/// segment travels with it over the Unix socket, and the client keeps the block, and so the
/// segment mapped, while it has connections to the server.
#[derive(Default)]
pub(crate) struct HeapHome {
    home: OnceLock<Option<(Segment, ObjectRef)>>,
    id: OnceLock<u64>,
}

impl HeapHome {
    fn get(&self) -> Option<&(Segment, ObjectRef)> {
        self.home
            .get_or_init(|| {
                let seg = Segment::create(SEGMENT_LEN).ok()?;
                let block = ObjectRef::alloc_zeroed(&seg, 8, 8, home_fingerprint()).ok()?;
                Some((seg, block))
            })
            .as_ref()
    }

    /// Returns the segment, creating it first; `None` if it cannot be created (objects are
    /// then served).
    pub(crate) fn segment(&self) -> Option<Segment> {
        self.get().map(|h| h.0.clone())
    }

    /// Returns the block a local client's greeting reply carries.
    pub(crate) fn home(&self) -> Option<Home> {
        self.get().map(|h| Home(Ok(h.1.clone())))
    }

    /// Returns this server's identity: a random number drawn once, which a client compares
    /// across its connections to tell a server restarted at the same address from the one
    /// whose objects its proxies name.
    pub(crate) fn id(&self) -> u64 {
        *self.id.get_or_init(|| sys::random_u64() | 1)
    }
}

/// A server's home block: serialized, its segment travels with it (over a Unix socket);
/// decoded, it is attached (checked like any token) and keeps the segment mapped. A block
/// that does not attach (a segment whose header was overwritten, say) decodes as the
/// attach error ([`Home::failed`] where the segment itself does not map): that client has
/// no home, and attaches nothing (its queues are served, its in-heap conditions refuse it
/// with that error).
pub(crate) struct Home(std::result::Result<ObjectRef, String>);

impl Home {
    /// A home that did not arrive: `why`.
    pub(crate) fn failed(why: String) -> Home {
        Home(Err(why))
    }

    /// Why the home block did not attach, if it did not.
    pub(crate) fn error(&self) -> Option<&str> {
        self.0.as_ref().err().map(String::as_str)
    }
}

impl Serialize for Home {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match &self.0 {
            Ok(r) => r.serialize(s),
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }
}

impl<'de> Deserialize<'de> for Home {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let token = ObjectToken::deserialize(d)?;
        Ok(Home(
            ObjectRef::attach(&token, home_fingerprint(), "shmproc::manager home")
                .map_err(|e| e.to_string()),
        ))
    }
}

/// A server's answer to a local client's greeting: [`Reply`](super::protocol::Reply)'s
/// encoding (a refusal is a `Reply::Err`), whose `Ok` carries the server's identity
/// ([`HeapHome::id`]) and whether its [`Home`] follows, in a message of its own: the
/// segment that travels with it may not map (its header overwritten by a process with the
/// key, say), which fails only that message, and the client then has no home but keeps
/// its connection.
#[derive(Serialize, Deserialize)]
pub(crate) enum Welcome {
    Ok { home: bool, server: u64 },
    Err(Fault),
}

/// Runs `op` with deadlines of at most one [`SLICE`], until it is done, `until` passes
/// ([`Error::Timeout`]) or, after a slice, `gone()` ([`Error::Disconnected`]). `op` always
/// runs at least once: a zero (or already passed) timeout tries the operation once, as the
/// in-heap queue's and lock's own timed forms do.
fn sliced<R>(
    until: Option<Instant>,
    gone: impl Fn() -> bool,
    mut op: impl FnMut(&Deadline) -> Result<R>,
) -> Result<R> {
    loop {
        let slice = match until {
            Some(d) => SLICE.min(d.saturating_duration_since(Instant::now())),
            None => SLICE,
        };
        match op(&Deadline::after(slice)) {
            Err(Error::Timeout) => {
                if until.is_some_and(|d| Instant::now() >= d) {
                    return Err(Error::Timeout);
                }
                if gone() {
                    return Err(Error::Disconnected);
                }
            }
            r => return r,
        }
    }
}

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// A managed queue or joinable queue held in its in-heap form by the server.
pub(crate) struct HeapQueue {
    q: ErasedQueue,
    joinable: bool,
    bounded: bool,
    server: ServerId,
}

impl Drop for HeapQueue {
    fn drop(&mut self) {
        // Attached clients may still hold the block: their calls now fail.
        self.q.ring().close();
    }
}

fn fault(e: Error) -> Fault {
    match e {
        Error::Full => Fault::Full,
        Error::Empty => Fault::Empty,
        Error::Timeout => Fault::Timeout,
        Error::TaskDoneTooMany => Fault::TaskDoneTooMany,
        Error::Closed | Error::Disconnected => Fault::ShuttingDown,
        e => Fault::BadRequest(e.to_string()),
    }
}

impl HeapQueue {
    /// Creates a queue in `seg` holding at most `capacity` messages ([`UNBOUNDED`] if
    /// `None`); `None` if the ring cannot be made there (too large a capacity, a full
    /// segment): the queue is then served.
    pub(crate) fn create(seg: &Segment, capacity: Option<u64>, joinable: bool) -> Option<Self> {
        let bounded = capacity.is_some_and(|c| c > 0);
        let cap = capacity.filter(|c| *c > 0).unwrap_or(UNBOUNDED);
        // Rings leave `ITEM_ROOM` (a quarter of a smaller segment) free for the items put
        // into them.
        let stats = seg.stats();
        let room = ITEM_ROOM.min(stats.capacity / 4);
        let need = ring::ring_bytes_with(cap, &ring::SlotLayout::SERDE)?;
        if stats.capacity.saturating_sub(stats.used) < need.checked_add(room)? {
            return None;
        }
        let q = ErasedQueue::create(seg, usize::try_from(cap).ok()?, joinable).ok()?;
        Some(HeapQueue {
            q,
            joinable,
            bounded,
            server: ServerId::current(),
        })
    }

    /// Closes the ring: every attached call fails from now on (the server stops).
    pub(crate) fn close(&self) {
        self.q.ring().close();
    }

    fn full(&self) -> bool {
        let r = self.q.ring();
        self.bounded && r.len() >= r.capacity()
    }

    /// Serves a call (a remote client's, or a local one that did not attach).
    pub(crate) fn call(&self, method: &str, args: &[u8], ctx: &Ctx<'_>) -> Result<Vec<u8>, Fault> {
        let ring = self.q.ring();
        match method {
            "attach" => enc(&Some(AttachInfo {
                kind: AttachKind::Queue {
                    joinable: self.joinable,
                    bounded: self.bounded,
                },
                token: self.q.token(),
                lock: None,
                server: self.server,
            })),
            "put" => {
                let (item, block, t): (Vec<u8>, bool, Option<Duration>) = decode(method, args)?;
                // A joinable queue counts the task as the item goes in (not while waiting).
                let task = self.joinable;
                let r = if block {
                    sliced(deadline(t), ctx.gone, |d| {
                        self.q.put_encoded(&item, Some(d), true, task)
                    })
                } else {
                    self.q.put_encoded(&item, None, false, task)
                };
                match r {
                    Ok(()) => enc(&()),
                    Err(Error::Timeout | Error::Disconnected | Error::Full) => Err(Fault::Full),
                    Err(e) => Err(fault(e)),
                }
            }
            "get" => {
                let (block, t): (bool, Option<Duration>) = decode(method, args)?;
                // An item there now is taken (its caller just asked). One that comes while
                // the caller waits is taken only if the caller is still there when it is
                // claimed: a caller that died meanwhile leaves it at the head, in its place,
                // for the others. (A caller that dies after that check, or once its reply is
                // on its way, loses the item as a process killed right after its `get`
                // returned would.)
                let r = match self.q.get_encoded(None, false) {
                    Err(Error::Empty) if block => sliced(deadline(t), ctx.gone, |d| {
                        self.q
                            .get_encoded_unless(Some(d), ctx.gone)?
                            .ok_or(Error::Disconnected)
                    }),
                    r => r,
                };
                match r {
                    Ok(item) => Ok(item),
                    Err(Error::Timeout | Error::Disconnected | Error::Empty) => Err(Fault::Empty),
                    Err(e) => Err(fault(e)),
                }
            }
            "len" => enc(&ring.len()),
            "is_empty" => enc(&(ring.len() == 0)),
            "is_full" => enc(&self.full()),
            "task_done" if self.joinable => ring.task_done().map_err(fault).and_then(|()| enc(&())),
            "join" if self.joinable => {
                let t: Option<Duration> = decode(method, args)?;
                match sliced(deadline(t), ctx.gone, |d| ring.join(Some(d))) {
                    Ok(()) => enc(&()),
                    Err(_) => Err(Fault::Timeout),
                }
            }
            _ => Err(Fault::UnknownMethod {
                kind: "queue".into(),
                method: method.to_owned(),
            }),
        }
    }
}

/// A queue a local client attached.
pub(crate) struct LocalQueue {
    q: ErasedQueue,
    joinable: bool,
    bounded: bool,
    server: ServerId,
}

impl LocalQueue {
    /// Attaches the queue `info` names, if it is a queue of this kind whose server lives.
    ///
    /// # Errors
    /// [`Error::WrongKind`] for another kind of object; [`Error::Disconnected`] if its
    /// server is gone; the token's attach errors ([`Error::NotFound`],
    /// [`Error::UntrustedSegment`], [`Error::ObjectGone`], [`Error::TypeMismatch`], …).
    pub(crate) fn attach(info: &AttachInfo, joinable: bool) -> Result<LocalQueue> {
        let AttachKind::Queue {
            joinable: j,
            bounded,
        } = info.kind
        else {
            return Err(Error::WrongKind {
                expected: "queue",
                found: "condition",
            });
        };
        if j != joinable {
            return Err(Error::WrongKind {
                expected: if joinable { "joinable queue" } else { "queue" },
                found: if j { "joinable queue" } else { "queue" },
            });
        }
        if info.server.gone() {
            return Err(Error::Disconnected);
        }
        Ok(LocalQueue {
            q: ErasedQueue::attach(&info.token, joinable)?,
            joinable,
            bounded,
            server: info.server,
        })
    }

    /// Fails with [`Error::Disconnected`] once the ring is closed (the server stopped, died,
    /// or dropped the object).
    #[inline]
    fn open(&self) -> Result<()> {
        if self.q.ring().is_closed() {
            Err(Error::Disconnected)
        } else {
            Ok(())
        }
    }

    /// Whether the server is gone; if it is, closes the ring for every attached process.
    fn server_gone(&self) -> bool {
        if self.q.ring().is_closed() {
            return true;
        }
        if self.server.gone() {
            self.q.ring().close();
            return true;
        }
        false
    }

    fn closed_is_gone<R>(r: Result<R>) -> Result<R> {
        r.map_err(|e| match e {
            Error::Closed => Error::Disconnected,
            e => e,
        })
    }

    /// Puts `value` (waiting for room if `block`, at most `timeout`).
    pub(crate) fn put<T: Serialize + ?Sized>(
        &self,
        value: &T,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<()> {
        self.open()?;
        // A joinable queue counts the task as the item goes in: a put that waits, fails or
        // unwinds (a panicking `Serialize`) counts nothing.
        let task = self.joinable;
        // A large item's encoding, kept across slices: it is encoded once.
        let mut spilled = None;
        let r = if block {
            sliced(
                deadline(timeout),
                || self.server_gone(),
                |d| self.q.put(value, Some(d), true, task, &mut spilled),
            )
        } else {
            self.q.put(value, None, false, task, &mut spilled)
        };
        match Self::closed_is_gone(r) {
            Err(Error::Timeout) => Err(Error::Full),
            r => r,
        }
    }

    /// Takes the oldest item (waiting for one if `block`, at most `timeout`).
    pub(crate) fn get<T: DeserializeOwned>(
        &self,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<T> {
        self.open()?;
        let r = if block {
            sliced(
                deadline(timeout),
                || self.server_gone(),
                |d| self.q.get(Some(d), true),
            )
        } else {
            self.q.get(None, false)
        };
        match Self::closed_is_gone(r) {
            Err(Error::Timeout) => Err(Error::Empty),
            r => r,
        }
    }

    /// Returns the number of items (a snapshot).
    pub(crate) fn len(&self) -> Result<usize> {
        self.open()?;
        Ok(usize::try_from(self.q.ring().len()).unwrap_or(usize::MAX))
    }

    /// Returns whether a bounded queue is full (a snapshot).
    pub(crate) fn is_full(&self) -> Result<bool> {
        self.open()?;
        let r = self.q.ring();
        Ok(self.bounded && r.len() >= r.capacity())
    }

    /// Marks one task done.
    pub(crate) fn task_done(&self) -> Result<()> {
        self.open()?;
        self.q.ring().task_done()
    }

    /// Waits until every task is done, at most `timeout`.
    pub(crate) fn join(&self, timeout: Option<Duration>) -> Result<()> {
        self.open()?;
        let ring = self.q.ring();
        sliced(
            deadline(timeout),
            || self.server_gone(),
            |d| ring.join(Some(d)),
        )
    }
}

/// A managed condition held in its in-heap form (a [`Condition`] over its own [`RLock`]) by
/// a server whose clients are all on its host (a Unix socket's).
pub(crate) struct HeapCondition {
    cond: Condition,
    server: ServerId,
}

impl Drop for HeapCondition {
    fn drop(&mut self) {
        self.cond.close();
    }
}

/// Runs a lock wait in slices; `Ok(true)` once it holds the lock (a dead holder's lock is
/// taken over silently), `Ok(false)` if `until` passed, `Disconnected` once `gone()`.
fn acquire_sliced(
    cond: &Condition,
    block: bool,
    until: Option<Instant>,
    gone: impl Fn() -> bool,
) -> Result<bool> {
    if !block {
        return Ok(cond.try_acquire_unguarded().is_some());
    }
    match sliced(until, gone, |d| match cond.acquire_unguarded(Some(d)) {
        Acquired::TimedOut => Err(Error::Timeout),
        _ => Ok(()),
    }) {
        Ok(()) => Ok(true),
        Err(Error::Timeout) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits on `cond` (whose lock the calling thread holds) in slices; whether it was
/// notified, or `Disconnected` once `gone()` (the lock is then let go entirely: not held on
/// return).
///
/// No notification is lost between slices: each slice takes the lock back before the next
/// one registers as a waiter, and a notifier must hold the lock. Taking it back is itself
/// sliced: a live thread (of this or another process) may hold the lock for as long as it
/// likes, so between tries `gone()` is checked, and once it is true the waiter gives up
/// without the lock (the condition is then closed for every attached process, so no
/// holder's work depends on it any more).
fn wait_sliced(cond: &Condition, until: Option<Instant>, gone: impl Fn() -> bool) -> Result<bool> {
    if !cond.held_here() {
        return Err(Error::NotOwner);
    }
    loop {
        let mut slice = SLICE;
        if let Some(d) = until {
            slice = slice.min(d.saturating_duration_since(Instant::now()));
        }
        let (notified, got) =
            cond.wait_unguarded_retake(Some(&Deadline::after(slice)), |relock| {
                loop {
                    match relock(&Deadline::after(SLICE)) {
                        Acquired::TimedOut if gone() => return Acquired::TimedOut,
                        Acquired::TimedOut => {}
                        a => return a,
                    }
                }
            })?;
        if matches!(got, Acquired::TimedOut) {
            // Given up without the lock: the server is gone.
            return Err(Error::Disconnected);
        }
        if notified {
            // The caller is this process, alive, and holds the lock again: the notification
            // is its own, whether or not the server still runs (`gone()` reads `/proc`, which
            // cost more than the wait itself when probed per notification).
            return Ok(true);
        }
        if until.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
        if gone() {
            cond.release_all_unguarded();
            return Err(Error::Disconnected);
        }
    }
}

/// Why a served caller of an in-heap condition is refused its lock operations.
const ATTACHED_ONLY: &str = "this condition is held in shared memory and its lock is taken \
     only by processes that attach it (clients on the server's host); this caller did not \
     attach it";

impl HeapCondition {
    /// Creates a condition over a new re-entrant lock in `seg`; `None` if it does not fit.
    pub(crate) fn create(seg: &Segment) -> Option<Self> {
        let lock = RLock::new_in(seg).ok()?;
        Some(HeapCondition {
            cond: Condition::with_lock(lock).ok()?,
            server: ServerId::current(),
        })
    }

    /// Marks the condition closed: attached calls fail from now on (the server stops).
    pub(crate) fn close(&self) {
        self.cond.close();
    }

    /// Serves a call: only `attach` (its tokens). The lock belongs to a client's *thread*,
    /// which only an attached handle can take it as: a server thread taking it on a
    /// client's behalf would hold it for whichever of the client's threads (and
    /// connections) called, so two of them could hold it at once. A caller that did not
    /// attach is refused the lock operations (`acquire`, `release`, `wait`, `notify`,
    /// `notify_all`) with an error.
    pub(crate) fn call(
        &self,
        method: &str,
        _args: &[u8],
        _ctx: &Ctx<'_>,
    ) -> Result<Vec<u8>, Fault> {
        let c = &self.cond;
        match method {
            "attach" => enc(&Some(AttachInfo {
                kind: AttachKind::Condition,
                token: c.token(),
                lock: Some(rlock_token(c)),
                server: self.server,
            })),
            "acquire" | "release" | "wait" | "notify" | "notify_all" => {
                Err(Fault::BadRequest(ATTACHED_ONLY.to_owned()))
            }
            _ => Err(Fault::UnknownMethod {
                kind: "condition".into(),
                method: method.to_owned(),
            }),
        }
    }
}

/// The token of a condition's re-entrant lock.
fn rlock_token(c: &Condition) -> ObjectToken {
    match c.get_lock() {
        ConditionLock::RLock(l) => l.token(),
        ConditionLock::Lock(l) => l.token(),
    }
}

/// A condition a local client attached.
pub(crate) struct LocalCondition {
    cond: Condition,
    server: ServerId,
}

impl LocalCondition {
    /// Attaches the condition `info` names, if its server lives.
    ///
    /// # Errors
    /// [`Error::WrongKind`] for another kind of object; [`Error::Disconnected`] if its
    /// server is gone; the tokens' attach errors.
    pub(crate) fn attach(info: &AttachInfo) -> Result<LocalCondition> {
        let (AttachKind::Condition, Some(lock)) = (info.kind, &info.lock) else {
            return Err(Error::WrongKind {
                expected: "condition",
                found: "queue",
            });
        };
        if info.server.gone() {
            return Err(Error::Disconnected);
        }
        let lock = RLock::from_token(lock)?;
        Ok(LocalCondition {
            cond: Condition::from_token(&info.token, lock)?,
            server: info.server,
        })
    }

    #[inline]
    fn open(&self) -> Result<()> {
        if self.cond.is_closed() {
            Err(Error::Disconnected)
        } else {
            Ok(())
        }
    }

    fn server_gone(&self) -> bool {
        if self.cond.is_closed() {
            return true;
        }
        if self.server.gone() {
            self.cond.close();
            return true;
        }
        false
    }

    /// Takes the lock (waiting if `block`, at most `timeout`); whether it did.
    pub(crate) fn acquire(&self, block: bool, timeout: Option<Duration>) -> Result<bool> {
        self.open()?;
        acquire_sliced(&self.cond, block, deadline(timeout), || self.server_gone())
    }

    /// Releases one level of the lock.
    pub(crate) fn release(&self) -> Result<()> {
        self.open()?;
        self.cond.release_unguarded()
    }

    /// Waits for a notification (at most `timeout`); whether it came.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        self.open()?;
        wait_sliced(&self.cond, deadline(timeout), || self.server_gone())
    }

    /// Wakes up to `n` waiters.
    pub(crate) fn notify(&self, n: u32) -> Result<()> {
        self.open()?;
        self.cond.notify(n)
    }

    /// Wakes every waiter.
    pub(crate) fn notify_all(&self) -> Result<()> {
        self.open()?;
        self.cond.notify_all()
    }
}

/// An in-heap object a local proxy attached.
pub(crate) enum Local {
    Queue(LocalQueue),
    Condition(LocalCondition),
}

impl Local {
    /// Attaches the object `info` names as a `kind` (a built-in kind name).
    fn attach(info: &AttachInfo, kind: &str) -> Result<Local> {
        match kind {
            "shmproc.queue" => LocalQueue::attach(info, false).map(Local::Queue),
            "shmproc.joinable_queue" => LocalQueue::attach(info, true).map(Local::Queue),
            "shmproc.condition" => LocalCondition::attach(info).map(Local::Condition),
            _ => Err(Error::WrongKind {
                expected: "an attachable kind",
                found: "another kind",
            }),
        }
    }
}

/// Whether objects of `kind` may be attached.
pub(crate) fn attachable(kind: &str) -> bool {
    matches!(
        kind,
        "shmproc.queue" | "shmproc.joinable_queue" | "shmproc.condition"
    )
}

/// What a proxy uses in this process: the object's attached in-heap form, the server
/// (an object that is not attachable, a remote client), or neither: an in-heap object
/// whose attach failed (its reason kept; a queue is then served, a condition refuses).
#[derive(Clone)]
pub(crate) enum Attachment {
    Served,
    Attached(Arc<Local>),
    Failed(Arc<str>),
}

/// A proxy's attachment, per process: the first process's (the one that made or decoded the
/// proxy) without a lock; a forked child, whose inherited copy holds no reference of its
/// own, attaches anew.
#[derive(Default)]
pub(crate) struct LocalSlot {
    first: OnceLock<(u32, Attachment)>,
    later: Mutex<Option<(u32, Attachment)>>,
}

impl LocalSlot {
    /// Returns this process's attachment, attaching the object `ask()` describes the first
    /// time (`Ok(None)`: served; `Err`: why the attach information could not be had).
    pub(crate) fn get(
        &self,
        kind: &str,
        ask: impl FnOnce() -> std::result::Result<Option<AttachInfo>, String>,
    ) -> Attachment {
        let pid = sys::current_pid();
        let mut ask = Some(ask);
        let mut make = || match ask.take().map(|f| f()) {
            None | Some(Ok(None)) => Attachment::Served,
            Some(Err(why)) => Attachment::Failed(why.into()),
            Some(Ok(Some(info))) => match Local::attach(&info, kind) {
                Ok(l) => Attachment::Attached(Arc::new(l)),
                Err(e) => Attachment::Failed(e.to_string().into()),
            },
        };
        let (p, l) = self.first.get_or_init(|| (pid, make()));
        if *p == pid {
            return l.clone();
        }
        let mut later = self.later.lock().unwrap_or_else(PoisonError::into_inner);
        match &*later {
            Some((p, l)) if *p == pid => l.clone(),
            _ => {
                let l = make();
                *later = Some((pid, l.clone()));
                l
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    /// Attaches `q` the way a local proxy does: the attach info from the server's `attach`.
    fn attach_served(q: &HeapQueue, joinable: bool) -> LocalQueue {
        let ctx = Ctx {
            client: 1,
            thread: 1,
            gone: &|| false,
        };
        let reply = q.call("attach", &[], &ctx).expect("attach");
        let info: Option<AttachInfo> = codec::from_bytes(&reply).expect("decode");
        LocalQueue::attach(&info.expect("info"), joinable).expect("local")
    }

    fn home() -> Segment {
        Segment::create(1 << 28).expect("segment")
    }

    #[test]
    fn a_forged_or_stale_attach_is_an_error() {
        let seg = home();
        let q = HeapQueue::create(&seg, Some(4), false).expect("queue");
        let good = AttachInfo {
            kind: AttachKind::Queue {
                joinable: false,
                bounded: true,
            },
            token: q.q.token(),
            lock: None,
            server: ServerId::current(),
        };
        assert!(LocalQueue::attach(&good, false).is_ok());
        // Another kind than the proxy's.
        assert!(LocalQueue::attach(&good, true).is_err());
        // A token at another offset, generation or fingerprint.
        let forges: [fn(&mut ObjectToken); 4] = [
            |t| t.offset += 64,
            |t| t.generation ^= 1,
            |t| t.fingerprint ^= 1,
            |t| {
                t.segment ^= 1;
                t.name = Some("shmproc-no-such-segment".into());
            },
        ];
        for forge in forges {
            let mut bad = good.clone();
            forge(&mut bad.token);
            assert!(LocalQueue::attach(&bad, false).is_err(), "{bad:?}");
        }
        // A server that is gone.
        let mut dead = good.clone();
        dead.server.start = dead.server.start.map(|s| s + 1).or(Some(1));
        if ServerId::current().start.is_some() {
            assert!(matches!(
                LocalQueue::attach(&dead, false),
                Err(Error::Disconnected)
            ));
        }
        // The object dropped: its block's generation moved on (or the ring is closed).
        let stale = good.clone();
        let attached = LocalQueue::attach(&good, false).expect("attach");
        drop(q);
        assert!(matches!(
            attached.put(&1u8, false, None),
            Err(Error::Disconnected)
        ));
        drop(attached);
        assert!(LocalQueue::attach(&stale, false).is_err());
    }

    #[test]
    fn a_forged_condition_attach_is_an_error() {
        let seg = home();
        let c = HeapCondition::create(&seg).expect("condition");
        let q = HeapQueue::create(&seg, Some(4), false).expect("queue");
        let good = AttachInfo {
            kind: AttachKind::Condition,
            token: c.cond.token(),
            lock: Some(rlock_token(&c.cond)),
            server: ServerId::current(),
        };
        let local = LocalCondition::attach(&good).expect("attach");
        assert!(local.acquire(false, None).expect("acquire"));
        local.release().expect("release");
        // A queue's token as a condition's, a condition without its lock, a lock token that
        // is not its lock, a queue's info attached as a condition.
        let mut bad = good.clone();
        bad.token = q.q.token();
        assert!(LocalCondition::attach(&bad).is_err());
        let mut bad = good.clone();
        bad.lock = None;
        assert!(LocalCondition::attach(&bad).is_err());
        let other = HeapCondition::create(&seg).expect("condition");
        let mut bad = good.clone();
        bad.lock = Some(rlock_token(&other.cond));
        assert!(LocalCondition::attach(&bad).is_err());
        let mut bad = good.clone();
        bad.kind = AttachKind::Queue {
            joinable: false,
            bounded: true,
        };
        assert!(LocalCondition::attach(&bad).is_err());
        assert!(LocalQueue::attach(&good, false).is_err());
        // Dropped by the server: attached calls fail.
        drop(c);
        assert!(matches!(
            local.acquire(false, None),
            Err(Error::Disconnected)
        ));
    }

    /// A served `get` that waited, whose caller is found gone once an item came, leaves the
    /// item at the head: an item put meanwhile does not overtake it.
    #[test]
    fn a_served_get_whose_caller_went_leaves_the_item_in_place() {
        let seg = home();
        let q = HeapQueue::create(&seg, None, false).expect("queue");
        let local = attach_served(&q, false);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let b_put = std::cell::Cell::new(false);
        // The caller is gone; when asked after `a` came, another producer puts `b` first.
        let gone = || {
            if rx.try_recv().is_ok() && !b_put.replace(true) {
                local.put(&"b".to_string(), false, None).expect("put b");
            }
            true
        };
        let ctx = Ctx {
            client: 1,
            thread: 1,
            gone: &gone,
        };
        let got = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(10));
                local.put(&"a".to_string(), false, None).expect("put a");
                let _ = tx.send(());
            });
            q.call(
                "get",
                &codec::to_bytes(&(true, Some(Duration::from_secs(5)))).expect("args"),
                &ctx,
            )
        });
        assert!(matches!(got, Err(Fault::Empty)), "{got:?}");
        if !b_put.get() {
            local.put(&"b".to_string(), false, None).expect("put b");
        }
        assert_eq!(local.get::<String>(false, None).expect("first"), "a");
        assert_eq!(local.get::<String>(false, None).expect("second"), "b");
        assert!(matches!(
            local.get::<String>(false, None),
            Err(Error::Empty)
        ));
    }

    #[test]
    fn local_and_served_calls_share_the_items() {
        let seg = home();
        let q = HeapQueue::create(&seg, None, true).expect("queue");
        let local = attach_served(&q, true);
        local.put(&"a".to_string(), true, None).expect("put");
        let ctx = Ctx {
            client: 1,
            thread: 1,
            gone: &|| false,
        };
        let args = codec::to_bytes(&(codec::to_bytes("b").expect("enc"), true, None::<Duration>))
            .expect("args");
        q.call("put", &args, &ctx).expect("served put");
        let got = q
            .call(
                "get",
                &codec::to_bytes(&(false, None::<Duration>)).expect("args"),
                &ctx,
            )
            .expect("served get");
        assert_eq!(codec::from_bytes::<String>(&got).expect("decode"), "a");
        assert_eq!(local.get::<String>(false, None).expect("get"), "b");
        assert!(matches!(
            local.get::<String>(false, None),
            Err(Error::Empty)
        ));
        assert!(matches!(
            local.get::<String>(true, Some(Duration::from_millis(10))),
            Err(Error::Empty)
        ));
        local.task_done().expect("done");
        assert!(local.join(Some(Duration::from_millis(10))).is_err());
        local.task_done().expect("done");
        local.join(None).expect("join");
        assert!(matches!(local.task_done(), Err(Error::TaskDoneTooMany)));
        // A message larger than a slot goes through a block of its own either way.
        let big = "x".repeat(5000);
        local.put(&big, true, None).expect("put big");
        let got = q
            .call(
                "get",
                &codec::to_bytes(&(false, None::<Duration>)).expect("args"),
                &ctx,
            )
            .expect("served get big");
        assert_eq!(codec::from_bytes::<String>(&got).expect("decode"), big);
        let args = codec::to_bytes(&(codec::to_bytes(&big).expect("enc"), true, None::<Duration>))
            .expect("args");
        q.call("put", &args, &ctx).expect("served put big");
        assert_eq!(local.get::<String>(false, None).expect("get big"), big);
    }
}
