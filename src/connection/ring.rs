//! The shared-memory transport of a pipe: one single-producer single-consumer byte ring per
//! direction, in one heap block.
//!
//! # Block layout
//!
//! | offset              | size  | field                                   | writer          |
//! |---------------------|-------|-----------------------------------------|-----------------|
//! | 0                   | 8     | `magic` (`RING_MAGIC`)                  | creator, once   |
//! | 8                   | 8     | `capacity`: data bytes per direction    | creator, once   |
//! | 64 + d·(256 + cap)  | 256   | direction `d` header (below)            |                 |
//! | 320 + d·(256 + cap) | cap   | direction `d` data                      | its writer      |
//!
//! Direction header (each line is its own 64-byte cache line, so the two sides never share a
//! line they write on the fast path; each side finds the peer's "closed" flag in its own line,
//! written there once by the peer):
//!
//! | offset | size | field             | writer                                    |
//! |--------|------|-------------------|-------------------------------------------|
//! | 0      | 8    | `head`            | the writer: bytes ever published          |
//! | 8      | 4    | `writer_pid`      | the writer: pid of the process using it   |
//! | 12     | 4    | `reader_closed`   | the reader, once: 0 → 1 on close          |
//! | 16     | 4    | `writer_cpu`      | the writer: its CPU + 1 at its last publish (0: unknown) |
//! | 64     | 8    | `tail`            | the reader: bytes ever consumed           |
//! | 72     | 4    | `reader_pid`      | the reader: pid of the process using it   |
//! | 76     | 4    | `writer_closed`   | the writer, once: 0 → 1 on close          |
//! | 80     | 8    | `recv_turn`       | a receiver: its stamp (tid, start time) while it receives (0: free) |
//! | 88     | 4    | `reader_cpu`      | the reader: its CPU + 1 at its last consume (0: unknown) |
//! | 128    | 4    | `rx_seq`          | the reader marks it before sleeping on it, the writer bumps it |
//! | 132    | 4    | (unused, 0)       |                                           |
//! | 136    | 4    | `pollers`         | `wait()` callers (+1 / −1)                |
//! | 192    | 4    | `tx_seq`          | the writer marks it before sleeping on it, the reader bumps it |
//! | 196    | 4    | (unused, 0)       |                                           |
//!
//! # Records
//!
//! The data area is a ring of 64-byte slots. A record starts on a slot boundary with a 16-byte
//! header (`len: u32`, `flags: u32`, `total: u64`), its payload follows at +16, and it occupies
//! `round_up(16 + len, 64)` bytes. `flags` is a set of `FIRST` (starts a message; `total` is
//! the message length), `LAST` (ends it) and `PAD` (skip to the end of the ring: a record never
//! wraps). A message longer than `max_chunk` streams as several records, so messages of any
//! size (up to the 1 GiB cap) pass through a ring of fixed size.
//!
//! A record flagged `TAG` (alone) is not part of any message: its payload (at most
//! `MAX_TAG` bytes) describes the message whose `FIRST` record follows it, and every reader
//! skips it, keeping the payload for that message ([`Ring::take_message_tag`]). Debug builds
//! send one before each `Connection::send` (the type sent); release builds never do, and
//! understand it all the same.
//!
//! Payloads sit at 16 mod 64 in the ring, like the data of a large `Vec` from glibc (`mmap`ed
//! chunks start 16 bytes into a page), and chunk lengths are multiples of 64, so `memcpy` on
//! large messages never meets the slow "source and destination differ by 16 mod 64" case.
//!
//! # Slot states and orderings
//!
//! | state of bytes `[p, p+n)`        | who may touch them        | transition                |
//! |----------------------------------|---------------------------|---------------------------|
//! | free (`p ≥ head`, `p < tail+cap`) | the writer writes         | writer's Release store of `head` publishes |
//! | published (`tail ≤ p < head`)     | the reader reads          | reader's Release store of `tail` frees |
//!
//! The reader's Acquire load of `head` makes the record bytes visible before it reads them; the
//! writer's Acquire load of `tail` orders the reader's reads before the writer overwrites the
//! slot. A message is delivered only when its `LAST` record has arrived, so a writer that dies
//! mid-message never yields a torn message: the reader discards the partial message and reports
//! end of stream.
//!
//! Sleeping: each of `rx_seq` and `tx_seq` is a one-word event count of
//! [`park`](crate::sync::park) (`EventWord`: epoch and a "sleeping" mark in one word; Dekker
//! pattern, a `SeqCst` fence on both sides). A side that found nothing to do marks the word,
//! fences, re-checks its condition, and then `futex_wait`s on the marked value. The other side
//! stores `head`/`tail`, fences and loads the word; only if it is marked does it move it to the
//! next epoch (clearing the mark) and make the `futex_wake` system call. The two fences ensure
//! that at least one of them sees the other's store, so a wake-up is never lost; the fast path
//! makes no system call, and neither do the messages sent while a woken reader is still on
//! its way out of the kernel (the mark is already cleared). A waiter
//! first spins with `park`'s adaptive budget, kept per direction (growing while the peer tends
//! to answer within the spin, halving when it does not, and sized back up after a sleep that
//! ended within 50 µs of the spin: `park::Spin::slept`), then sleeps; a side of a one-way
//! stream (its end did not use the other direction since this side's last wait) whose peer
//! last published or consumed on the same CPU (`writer_cpu`, `reader_cpu`) yields the core
//! a few times before it sleeps, as a queue's ends do (`Ring::wait_yields`). The peer's
//! close flag is re-checked with the condition, so a close wakes a sleeper at once. Sleeps are sliced (50 ms each, `park::Slices::long`: a shorter first slice armed
//! a kernel timer on every sleep, the dearest part of a blocking round trip on a virtual
//! machine) so a peer that died without closing is noticed within about 50 ms through its
//! recorded pid, or through the hang-up of the peer's liveness pipe once no process holds or
//! may still adopt its end.
//!
//! A writer asleep for room is woken by the reader's next consume, with no threshold of free
//! space (a kernel pipe wakes its writer only once a whole page is free): a sleeping writer
//! needs one record and its padding, and a wake-up held back for more room could leave it
//! asleep while that room exists and the reader has stopped reading. Measured, this makes no
//! convoy of one record per wake-up. Counted with `perf` while streaming 1 M
//! 256-byte objects in bursts larger than the ring (most sends find it full), both ends on
//! one CPU: 2 futex calls and about 2 500 yields of the core (the ends of a one-way stream
//! yield there rather than sleep: `wait_yields`). With spinning off, the writer slept once per
//! 93 records and the reader once per 56 on one CPU, and once per 500 and once per 11 on two
//! CPUs (a reader faster than its writer empties the ring, and sleeps).
//!
//! # What a blocking round trip costs
//!
//! With spinning off on both ends (`Connection::set_spinning(false)`), a round trip of a
//! `u64` between two processes makes one `futex_wake` and one `futex_wait`, not two of each:
//! the reply's notify finds the requester's word unmarked (the requester is still in its
//! send, preempted by the woken echo on a shared CPU) and skips the wake. Counted with
//! `perf stat` over 50 000 round trips on one CPU: 2.3 futex calls and 2.0 context switches
//! per round trip, no `sched_yield`, no other system call; the bare futex ping-pong of the
//! benchmarks (`examples/benchmarks/bare.rs`, which wakes unconditionally) makes 3.2 and
//! 2.0. The pipe's round trip still takes more CPU than the bare loop (task-clock of both
//! processes per round trip, pinned to one CPU of a loaded 2-core virtual machine, best of
//! 10: 3.1 µs against 2.6 µs), in two parts of similar size:
//!
//! - the 50 ms slice: every sleep makes the kernel copy the timeout, read its clock, and arm
//!   and cancel a timer; the same loop with untimed sleeps took 2.9 µs (−0.2 µs). An untimed
//!   sleep needs another way to learn that the peer died, and none fits: the kernel wakes a
//!   futex on a thread's death only through that thread's robust list (the C library's, see
//!   `sync::raw`) or its `clear_child_tid` word (`pthread_join`'s); a watcher thread that
//!   wakes sleepers every 50 ms would make every process that ever slept on a pipe
//!   multi-threaded, which the `Fork` start method refuses;
//! - the message path in user space (the codec, `transfer`'s descriptor scope, the receive
//!   turn, the handshake's read-modify-write and fences, each touched after a context
//!   switch): `send_bytes`/`recv_bytes_into` round trips took 3.0 µs, `send`/`recv` of a
//!   `u64` 3.1–3.2 µs.
//!
//! Every value read from the shared block (capacity, positions, record headers) is validated
//! before it sizes or indexes anything; a failed check is [`Error::CorruptObject`].
//!
//! # Safety
//!
//! A [`Ring`] holds a raw pointer into a heap block that its owner (the connection's
//! `ObjectRef`) keeps mapped for as long as the ring is used. Atomics are made only at fixed,
//! aligned offsets inside the checked block. Payload bytes are accessed with raw copies only in
//! the state the table above grants to the accessing side, so the two processes never access
//! the same byte concurrently while both follow the protocol; a peer that does not follow it
//! can only make the bytes garbage, which the checks turn into errors.

#![allow(unsafe_code)]

use crate::error::{Error, Result};
use crate::loom::{AtomicU32, AtomicU64, Ordering, fence};
use crate::sync::park::{EventWord, Site, Slices, Spin};
use crate::sys::{self, Deadline};
use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

/// Magic number at the start of a pipe block.
pub(crate) const RING_MAGIC: u64 = 0x5348_4d50_4950_4531; // "SHMPIPE1"
/// Data bytes per direction of a new pipe.
pub(crate) const DEFAULT_CAPACITY: u64 = 256 * 1024;
const MIN_CAPACITY: u64 = 4096;
const MAX_CAPACITY: u64 = 1 << 30;
const SLOT: u64 = 64;
const BLOCK_HEAD: u64 = 64;
const DIR_HEAD: u64 = 256;
const REC_HEAD: u64 = 16;
/// `write_in_place` pads to the start of the ring when fewer bytes than this are left before
/// its end (else most messages would not fit there and take the slower way).
const IN_PLACE_PAD_BELOW: u64 = 1024;
/// The largest message a pipe carries (the codec's cap).
pub(crate) const MAX_MESSAGE: u64 = crate::codec::MAX_MESSAGE as u64;

const FIRST: u32 = 1;
const LAST: u32 = 2;
const PAD: u32 = 4;
const TAG: u32 = 8;
/// The largest `TAG` record payload.
pub(crate) const MAX_TAG: usize = 256;

const HEAD: u64 = 0;
const WRITER_PID: u64 = 8;
const READER_CLOSED: u64 = 12;
const WRITER_CPU: u64 = 16;
const TAIL: u64 = 64;
const READER_PID: u64 = 72;
const WRITER_CLOSED: u64 = 76;
const RECV_TURN: u64 = 80;
const READER_CPU: u64 = 88;
const RX_SEQ: u64 = 128;
const POLLERS: u64 = 136;
const TX_SEQ: u64 = 192;

/// Returns the block length for two directions of `cap` data bytes.
pub(crate) fn block_len(cap: u64) -> u64 {
    BLOCK_HEAD + 2 * (DIR_HEAD + cap)
}

fn corrupt(reason: &'static str) -> Error {
    Error::CorruptObject { reason }
}

fn usize_of(v: u64) -> Result<usize> {
    usize::try_from(v).map_err(|_| corrupt("length exceeds the address space"))
}

/// Initializes a freshly allocated pipe block of `len` bytes at `base`.
///
/// # Safety
/// - `base` points to at least `block_len(cap)` writable bytes, aligned to 64, that no other
///   thread or process accesses yet.
pub(crate) unsafe fn init_block(base: *mut u8, cap: u64) {
    // SAFETY: the block header's 64 bytes are inside the caller's block, which is unshared.
    unsafe { core::ptr::write_bytes(base, 0, BLOCK_HEAD as usize) };
    for d in 0..2u64 {
        let off = (BLOCK_HEAD + d * (DIR_HEAD + cap)) as usize;
        // SAFETY: `off + DIR_HEAD <= block_len(cap)`, inside the caller's unshared block.
        unsafe { core::ptr::write_bytes(base.wrapping_add(off), 0, DIR_HEAD as usize) };
    }
    // SAFETY: offset 0 is 64-aligned inside the block; the block is unshared.
    unsafe { base.cast::<u64>().write(RING_MAGIC) };
    // SAFETY: offset 8 is 8-aligned inside the block; the block is unshared.
    unsafe { base.wrapping_add(8).cast::<u64>().write(cap) };
}

/// Checks a pipe block's header and returns its capacity.
///
/// # Safety
/// - `base` points to `len` readable bytes of a live heap block, aligned to 64.
pub(crate) unsafe fn check_block(base: *const u8, len: u64) -> Result<u64> {
    if len < BLOCK_HEAD {
        return Err(corrupt("pipe block too small"));
    }
    // SAFETY: offset 0 is inside the block (checked above) and 8-aligned; the creator wrote
    // it before the block was shared and never writes it again.
    let magic = unsafe { base.cast::<AtomicU64>().as_ref() }.map(|w| w.load(Ordering::Relaxed));
    // SAFETY: as above, for offset 8.
    let cap = unsafe { base.wrapping_add(8).cast::<AtomicU64>().as_ref() }
        .map(|w| w.load(Ordering::Relaxed));
    if magic != Some(RING_MAGIC) {
        return Err(corrupt("pipe block has a bad magic number"));
    }
    let cap = cap.unwrap_or(0);
    if !cap.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&cap) {
        return Err(corrupt("pipe capacity out of range"));
    }
    if block_len(cap) > len {
        return Err(corrupt("pipe block shorter than its capacity"));
    }
    Ok(cap)
}

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waited {
    Ready,
    TimedOut,
    PeerGone,
}

/// A record header read from the ring, validated.
#[derive(Debug, Clone, Copy)]
struct Record {
    pos: u64,
    len: u64,
    flags: u32,
    total: u64,
    next_tail: u64,
}

/// One direction of a pipe: a view of its header and data.
#[derive(Debug)]
pub(crate) struct Ring {
    dir: *mut u8,
    cap: u64,
    max_chunk: u64,
    /// Writer side: a `tail` seen earlier (never ahead of the real one: positions only grow),
    /// so the fast path does not touch the reader's cache line.
    seen_tail: Cell<u64>,
    /// Reader side: a `head` seen earlier (never ahead of the real one).
    seen_head: Cell<u64>,
    /// Spin budget of this side (`park`'s adaptive policy, learned per direction).
    spin: Cell<Spin>,
    /// Whether this side spins before it sleeps (see `set_spinning`).
    spinning: Cell<bool>,
    /// Whether this end used the other direction (sent, for a reader; received, for a
    /// writer) since this side's last wait (see `note_other_direction`).
    answered: Cell<bool>,
    /// The read end of the peer's liveness pipe (see `set_peer_liveness`).
    peer: Option<Arc<OwnedFd>>,
    /// Reader side: the payload of a `TAG` record read before the next message starts.
    pending_tag: RefCell<Option<Box<[u8]>>>,
    /// Reader side: the tag of the message being (or last) received.
    message_tag: RefCell<Option<Box<[u8]>>>,
    /// Reader side: whether a `TAG` record was ever read (untagged peers never pay for tags).
    tags_seen: Cell<bool>,
}

impl Ring {
    /// Returns the view of direction `d` of a checked block.
    ///
    /// # Safety
    /// - `base` is a block checked by [`check_block`] with capacity `cap`, and stays mapped
    ///   while the returned ring is used.
    pub(crate) unsafe fn new(base: *mut u8, cap: u64, d: u64) -> Ring {
        let off = usize::try_from(BLOCK_HEAD + d.min(1) * (DIR_HEAD + cap)).unwrap_or(0);
        Ring {
            dir: base.wrapping_add(off),
            cap,
            max_chunk: cap / 4 - SLOT,
            seen_tail: Cell::new(0),
            seen_head: Cell::new(0),
            spin: Cell::new(Spin::new(Site::Pipe)),
            spinning: Cell::new(true),
            answered: Cell::new(false),
            peer: None,
            pending_tag: RefCell::new(None),
            message_tag: RefCell::new(None),
            tags_seen: Cell::new(false),
        }
    }

    /// Turns this side's spin before sleeping on or off (off: every wait that finds nothing
    /// ready sleeps on the futex at once).
    pub(crate) fn set_spinning(&self, on: bool) {
        self.spinning.set(on);
    }

    /// Tells this side that its end used the other direction of the pipe (a reader's end
    /// sent, a writer's end received). A side that waits without such a use since its last
    /// wait serves a one-way stream (a pure consumer, or a producer waiting for room); after
    /// a failed spin it yields the core a few times before it sleeps, as a queue's ends do
    /// (see `wait`).
    pub(crate) fn note_other_direction(&self) {
        self.answered.set(true);
    }

    /// Gives this side the queue ring's spin limits (`park`'s `Site::Queue`): a few yields of
    /// the core after the pause rounds, before sleeping. For request/reply traffic, whose peer
    /// is often waiting for this very core.
    pub(crate) fn set_yielding(&self) {
        self.spin.set(Spin::new(Site::Queue));
    }

    /// Gives the ring the read end of a kernel pipe whose write end travels with every copy
    /// of the peer's end (inherited, passed or still in flight to a process that may adopt
    /// it). Once the pipe reports a hang-up, no process holds the peer end or can still
    /// adopt it: the peer is gone even if the pid recorded in the block is alive.
    pub(crate) fn set_peer_liveness(&mut self, fd: Arc<OwnedFd>) {
        self.peer = Some(fd);
    }

    /// Whether every copy of the peer's liveness write end is closed.
    fn peer_hung_up(&self) -> bool {
        self.peer.as_ref().is_some_and(|fd| {
            let now = Deadline::after(std::time::Duration::ZERO);
            sys::poll_readable(&[fd.as_fd()], Some(&now)).is_ok_and(|r| !r.is_empty())
        })
    }

    /// Returns the 8-byte header word at `off`.
    ///
    /// # Panics
    /// Unless `off` is a multiple of 8 with `off + 8 <= DIR_HEAD` (callers pass the header
    /// constants, so the check folds away).
    #[inline]
    fn u64_at(&self, off: u64) -> &AtomicU64 {
        assert!(
            off.is_multiple_of(8) && off + 8 <= DIR_HEAD,
            "pipe header offset {off} out of bounds"
        );
        let p = self.dir.wrapping_add(off as usize).cast::<AtomicU64>();
        // SAFETY: the assert keeps the 8 bytes at `off` inside the direction header and
        // 8-aligned; the header is 64-aligned inside the block the owner keeps mapped (`new`'s
        // contract). `AtomicU64` has the size and alignment of `u64` (std docs) and any bit
        // pattern is valid; the word is accessed only atomically by every process.
        unsafe { &*p }
    }

    /// Returns the 4-byte header word at `off`.
    ///
    /// # Panics
    /// Unless `off` is a multiple of 4 with `off + 4 <= DIR_HEAD`.
    #[inline]
    fn u32_at(&self, off: u64) -> &AtomicU32 {
        assert!(
            off.is_multiple_of(4) && off + 4 <= DIR_HEAD,
            "pipe header offset {off} out of bounds"
        );
        let p = self.dir.wrapping_add(off as usize).cast::<AtomicU32>();
        // SAFETY: as in `u64_at`, for 4 bytes at a multiple of 4.
        unsafe { &*p }
    }

    /// The one-word event count at `seq`.
    fn events(&self, seq: u64) -> EventWord<'_> {
        EventWord::new(self.u32_at(seq))
    }

    fn data(&self) -> *mut u8 {
        self.dir.wrapping_add(DIR_HEAD as usize)
    }

    /// Records `pid` as the process using the writing side.
    pub(crate) fn set_writer_pid(&self, pid: u32) {
        // Relaxed: the pid is only a liveness hint read after a sleep slice.
        self.u32_at(WRITER_PID).store(pid, Ordering::Relaxed);
    }

    /// Records `pid` as the process using the reading side.
    pub(crate) fn set_reader_pid(&self, pid: u32) {
        // Relaxed: as in `set_writer_pid`.
        self.u32_at(READER_PID).store(pid, Ordering::Relaxed);
    }

    /// Returns the pid recorded for the writing side.
    pub(crate) fn writer_pid(&self) -> u32 {
        self.u32_at(WRITER_PID).load(Ordering::Relaxed)
    }

    /// Returns the pid recorded for the reading side.
    pub(crate) fn reader_pid(&self) -> u32 {
        self.u32_at(READER_PID).load(Ordering::Relaxed)
    }

    fn writer_gone(&self) -> bool {
        // Acquire: pairs with the Release store in `close_writer`; everything published before
        // the close is visible when the flag is seen.
        if self.u32_at(WRITER_CLOSED).load(Ordering::Acquire) != 0 {
            return true;
        }
        let pid = self.writer_pid();
        (pid != 0 && pid != sys::current_pid() && !sys::thread_alive(pid)) || self.peer_hung_up()
    }

    fn reader_gone(&self) -> bool {
        // Acquire: pairs with the Release store in `close_reader`.
        if self.u32_at(READER_CLOSED).load(Ordering::Acquire) != 0 {
            return true;
        }
        let pid = self.reader_pid();
        (pid != 0 && pid != sys::current_pid() && !sys::thread_alive(pid)) || self.peer_hung_up()
    }

    /// Marks the writing side closed and wakes the reader (and pollers, through `efd`).
    pub(crate) fn close_writer(&self, efd: Option<BorrowedFd<'_>>) {
        // Release: the records published before the close are visible with the flag.
        self.u32_at(WRITER_CLOSED).store(1, Ordering::Release);
        self.wake(RX_SEQ);
        if let Some(fd) = efd {
            sys::eventfd_signal(fd);
        }
    }

    /// Marks the reading side closed and wakes a writer waiting for space.
    pub(crate) fn close_reader(&self) {
        // Release: pairs with the Acquire load in `reader_gone`.
        self.u32_at(READER_CLOSED).store(1, Ordering::Release);
        self.wake(TX_SEQ);
    }

    /// Wakes every sleeper on the event count at `seq` (if any marked it).
    fn wake(&self, seq: u64) {
        self.events(seq).notify();
    }

    /// Returns the yields of this side's next spin (waiting on the event count at `seq`),
    /// and starts a new count of the other direction's uses. A side of a one-way stream (its
    /// end did not use the other direction since this side's last wait) whose peer last
    /// published (or consumed) on this very CPU yields the core after its pauses, as a
    /// queue's ends do: a yield lets the peer write (or read) a whole batch, while a sleep
    /// was woken, and preempted the peer, after a message or two (futex wake-ups tend to
    /// gather the two ends on one core; a 256-byte stream there made one futex sleep per
    /// 8–17 messages and ran at a quarter of a queue's rate). Every other side keeps the pipe
    /// site's policy, without yields: a yield hands the core to whichever task the scheduler
    /// picks, on a loaded machine an unrelated one for a time slice (a queue, whose ends
    /// always yield, fell to 27 k messages/s at load average 12 where a sleeping pipe reader
    /// kept 1.5 M), and in a request/reply exchange the same.
    fn wait_yields(&self, spin: Spin, seq: u64) -> u32 {
        let answered = self.answered.replace(false);
        let peer_cpu = if seq == RX_SEQ {
            WRITER_CPU
        } else {
            READER_CPU
        };
        // Relaxed: only a hint of where the peer ran last.
        let cpu = self.u32_at(peer_cpu).load(Ordering::Relaxed);
        if !answered && cpu != 0 && cpu == sys::current_cpu() {
            Site::Queue.limits().yields.max(spin.yields())
        } else {
            spin.yields()
        }
    }

    /// Waits until `ready()` holds: spins with this side's adaptive budget, then sleeps on
    /// the event count at `seq` in slices, checking after each sleep whether the peer is gone.
    fn wait(
        &self,
        ready: impl Fn() -> bool,
        seq: u64,
        peer_gone: impl Fn() -> bool,
        deadline: Option<&Deadline>,
    ) -> Waited {
        // When the spin ran out: its start and end, to tell the budget how the sleep went.
        let mut spun = None;
        if self.spinning.get() {
            let mut spin = self.spin.get();
            let yields = self.wait_yields(spin, seq);
            let start = Instant::now();
            if spin
                .until_yielding(yields, || ready().then_some(()))
                .is_some()
            {
                self.spin.set(spin);
                return Waited::Ready;
            }
            self.spin.set(spin);
            spun = Some((start, Instant::now()));
        }
        // The peer's close flag is checked with the condition (a close wakes the sleeper
        // through the same event count), so a close is seen at once, not after a slice.
        let closed = if seq == RX_SEQ {
            WRITER_CLOSED
        } else {
            READER_CLOSED
        };
        let poll = || {
            if ready() {
                return Some(Waited::Ready);
            }
            // Acquire: pairs with the Release store of the close; records published before
            // the close are visible to the `ready` that follows, and still delivered.
            (self.u32_at(closed).load(Ordering::Acquire) != 0).then(|| {
                if ready() {
                    Waited::Ready
                } else {
                    Waited::PeerGone
                }
            })
        };
        let waited = self
            .events(seq)
            .wait_until_in(Slices::long(), deadline, poll, |_| {
                // Records published before the peer went are still delivered.
                peer_gone().then(|| {
                    if ready() {
                        Waited::Ready
                    } else {
                        Waited::PeerGone
                    }
                })
            })
            .unwrap_or(Waited::TimedOut);
        if let Some((start, end)) = spun
            && waited == Waited::Ready
        {
            // A peer that answered soon after the spin's end would have been caught by a
            // longer spin: the budget may grow back (`park`'s spin policy).
            let mut spin = self.spin.get();
            spin.slept(end - start, end.elapsed());
            self.spin.set(spin);
        }
        waited
    }

    // ---------------------------------------------------------------- writer side

    /// Sends one message, streaming it in chunks; `efd` is signalled if a poller waits.
    pub(crate) fn send(&self, msg: &[u8], efd: Option<BorrowedFd<'_>>) -> Result<()> {
        let total = msg.len() as u64;
        if total > MAX_MESSAGE {
            return Err(Error::MessageTooLarge {
                size: total,
                limit: MAX_MESSAGE,
            });
        }
        // Acquire: pairs with the Release store in `close_reader`. (Only the flag here: a dead
        // reader is noticed when the ring fills and the writer would sleep.)
        if self.u32_at(READER_CLOSED).load(Ordering::Acquire) != 0 {
            return Err(Error::Disconnected);
        }
        let mut off = 0u64;
        loop {
            let len = (total - off).min(self.max_chunk);
            let mut flags = if off == 0 { FIRST } else { 0 };
            if off + len == total {
                flags |= LAST;
            }
            let start = usize_of(off)?;
            let chunk = msg
                .get(start..start + usize_of(len)?)
                .ok_or(corrupt("chunk outside the message"))?;
            self.write_record(chunk, flags, total, efd)?;
            off += len;
            if off == total {
                return Ok(());
            }
        }
    }

    /// Sends a `TAG` record describing the next message (at most [`MAX_TAG`] bytes).
    #[cfg_attr(not(debug_assertions), allow(dead_code))] // Debug builds send tags.
    pub(crate) fn send_tag(&self, tag: &[u8], efd: Option<BorrowedFd<'_>>) -> Result<()> {
        let tag = tag.get(..MAX_TAG.min(tag.len())).unwrap_or(tag);
        self.write_record(tag, TAG, 0, efd)
    }

    /// Returns the `TAG` payload that preceded the message received last, if any.
    #[cfg_attr(not(debug_assertions), allow(dead_code))] // Debug builds check tags.
    pub(crate) fn take_message_tag(&self) -> Option<Box<[u8]>> {
        self.message_tag.take()
    }

    fn write_record(
        &self,
        payload: &[u8],
        flags: u32,
        total: u64,
        efd: Option<BorrowedFd<'_>>,
    ) -> Result<()> {
        let len = payload.len() as u64;
        let need = (REC_HEAD + len).next_multiple_of(SLOT);
        // Relaxed: only this side stores `head`.
        let head = self.u64_at(HEAD).load(Ordering::Relaxed);
        let pos = head & (self.cap - 1);
        let pad = if pos + need > self.cap {
            self.cap - pos
        } else {
            0
        };
        self.reserve(head, pad + need)?;
        if pad > 0 {
            self.write_header(pos, 0, PAD, 0);
        }
        let at = (head + pad) & (self.cap - 1);
        self.write_header(at, len, flags, total);
        let dst = self.data().wrapping_add(usize_of(at + REC_HEAD)?);
        // SAFETY: `[at+16, at+16+len)` lies inside the data area (`at + need <= cap`) and is
        // free (reserved above), so only this side accesses it; `payload` is a separate
        // allocation of `len` bytes, so the ranges do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(payload.as_ptr(), dst, payload.len()) };
        self.publish(head + pad + need, efd);
        Ok(())
    }

    /// Writes one message as a single record straight into the room free now, without
    /// waiting: `encode` gets the payload area (at most `max_chunk` bytes) and returns the
    /// bytes it used, or `None` if the message does not fit. Returns the end of the record,
    /// for [`publish_in_place`](Ring::publish_in_place), or `None` if nothing fitted (the
    /// caller then sends the message with [`send`](Ring::send), which waits for room and
    /// streams large messages). Nothing is visible to the reader until it is published.
    pub(crate) fn write_in_place(
        &self,
        encode: impl FnOnce(&mut [u8]) -> Result<Option<usize>>,
    ) -> Result<Option<u64>> {
        // Acquire: as in `send`.
        if self.u32_at(READER_CLOSED).load(Ordering::Acquire) != 0 {
            return Err(Error::Disconnected);
        }
        // Relaxed: only this side stores `head`.
        let head = self.u64_at(HEAD).load(Ordering::Relaxed);
        let pos = head & (self.cap - 1);
        let free = |t: u64| self.cap.saturating_sub(head.saturating_sub(t));
        let to_end = self.cap - pos;
        let mut avail = free(self.seen_tail.get());
        // The cached tail is reloaded (a load of the reader's line) only when it may leave
        // less room than a whole record, with its padding.
        if avail < self.max_chunk + to_end.min(IN_PLACE_PAD_BELOW) {
            // Acquire: as in `reserve`.
            let t = self.u64_at(TAIL).load(Ordering::Acquire);
            if t > head {
                return Err(corrupt("pipe tail ahead of head"));
            }
            self.seen_tail.set(t);
            avail = free(t);
        }
        // A record never wraps: near the end of the ring, pad to its start first (the
        // padding is published with the record).
        let (pad, at) = if to_end < IN_PLACE_PAD_BELOW && avail >= to_end + IN_PLACE_PAD_BELOW {
            (to_end, 0)
        } else {
            (0, pos)
        };
        let room = (avail - pad)
            .min(self.cap - at)
            .saturating_sub(REC_HEAD)
            .min(self.max_chunk);
        if room == 0 {
            return Ok(None);
        }
        let start = self.data().wrapping_add(usize_of(at + REC_HEAD)?);
        // SAFETY: `[at+16, at+16+room)` lies inside the data area (`at + 16 + room <= cap`)
        // and in the free region (`pad + 16 + room <= avail`), which only this side accesses
        // until it publishes; the slice is dropped before this function returns.
        let area = unsafe { core::slice::from_raw_parts_mut(start, usize_of(room)?) };
        let Some(n) = encode(area)? else {
            return Ok(None);
        };
        let len = (n as u64).min(room);
        if pad > 0 {
            self.write_header(pos, 0, PAD, 0);
        }
        self.write_header(at, len, FIRST | LAST, len);
        // `16 + len <= 16 + room <= avail - pad`, a multiple of 64, so the rounded record fits.
        Ok(Some(head + pad + (REC_HEAD + len).next_multiple_of(SLOT)))
    }

    /// Publishes the record [`write_in_place`](Ring::write_in_place) wrote, ending at `end`.
    pub(crate) fn publish_in_place(&self, end: u64, efd: Option<BorrowedFd<'_>>) {
        self.publish(end, efd);
    }

    fn write_header(&self, at: u64, len: u64, flags: u32, total: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
        h[4..8].copy_from_slice(&flags.to_le_bytes());
        h[8..16].copy_from_slice(&total.to_le_bytes());
        let dst = self.data().wrapping_add(at as usize);
        // SAFETY: `at` is a slot boundary below `cap` (so 16 bytes fit) in the free region
        // reserved by the caller; only this side accesses it until `publish`.
        unsafe { core::ptr::copy_nonoverlapping(h.as_ptr(), dst, h.len()) };
    }

    /// Waits until `n` bytes are free after `head`.
    fn reserve(&self, head: u64, n: u64) -> Result<()> {
        let free = |t: u64| {
            if t > head {
                0
            } else {
                self.cap.saturating_sub(head - t)
            }
        };
        // The slots up to a tail seen before are free for good (the cached tail was loaded
        // with Acquire when it was first seen).
        if free(self.seen_tail.get()) >= n {
            return Ok(());
        }
        let tail = self.u64_at(TAIL);
        // Acquire: the reader's reads of the slots it freed happen before we overwrite them.
        let t = tail.load(Ordering::Acquire);
        if t > head {
            return Err(corrupt("pipe tail ahead of head"));
        }
        self.seen_tail.set(t);
        if free(t) >= n {
            return Ok(());
        }
        let ready = || {
            let t = tail.load(Ordering::Acquire);
            free(t) >= n || t > head
        };
        match self.wait(ready, TX_SEQ, || self.reader_gone(), None) {
            Waited::Ready if tail.load(Ordering::Acquire) <= head => {
                self.seen_tail.set(tail.load(Ordering::Acquire));
                Ok(())
            }
            Waited::Ready => Err(corrupt("pipe tail ahead of head")),
            Waited::TimedOut | Waited::PeerGone => Err(Error::Disconnected),
        }
    }

    fn publish(&self, new_head: u64, efd: Option<BorrowedFd<'_>>) {
        // Relaxed: a hint for the reader's choice to yield (`wait_yields`), in our own line.
        self.u32_at(WRITER_CPU)
            .store(sys::current_cpu(), Ordering::Relaxed);
        // Release: the record bytes written above are visible to the reader's Acquire load.
        self.u64_at(HEAD).store(new_head, Ordering::Release);
        // The event count's notify fences (`SeqCst`) before it looks for a sleeping reader:
        // the handshake of `park`. The same fence orders the `pollers` load below after the
        // head store (Dekker with `add_poller`).
        self.wake(RX_SEQ);
        if let Some(fd) = efd
            && self.u32_at(POLLERS).load(Ordering::Relaxed) != 0
        {
            sys::eventfd_signal(fd);
        }
    }

    // ---------------------------------------------------------------- reader side

    /// Returns whether a record is available, or the writer is gone (so `recv` won't block).
    pub(crate) fn readable_now(&self) -> bool {
        self.has_data() || self.writer_gone()
    }

    /// Whether the writer last published on the calling thread's CPU: a hint (0, unknown,
    /// is never equal) for a reader about to poll, which there would only keep the writer
    /// off the core it needs.
    pub(crate) fn writer_on_this_cpu(&self) -> bool {
        // Relaxed: only a hint of where the writer ran last.
        let cpu = self.u32_at(WRITER_CPU).load(Ordering::Relaxed);
        cpu != 0 && cpu == sys::current_cpu()
    }

    pub(crate) fn has_data(&self) -> bool {
        // Relaxed for `tail` (only the reader stores it); Acquire for `head` is not needed to
        // decide, the read path loads it again with Acquire.
        self.u64_at(HEAD).load(Ordering::Relaxed) != self.u64_at(TAIL).load(Ordering::Relaxed)
    }

    /// Waits until a record is available or the writer is gone; returns `false` on timeout.
    pub(crate) fn poll(&self, deadline: Option<&Deadline>) -> bool {
        if self.has_data() {
            return true;
        }
        match self.wait(|| self.has_data(), RX_SEQ, || self.writer_gone(), deadline) {
            Waited::Ready | Waited::PeerGone => true,
            Waited::TimedOut => false,
        }
    }

    /// Registers (`+1`) or unregisters (`-1`) a poller that wants the eventfd signalled.
    pub(crate) fn add_poller(&self, add: bool) {
        if add {
            self.u32_at(POLLERS).fetch_add(1, Ordering::SeqCst);
            // SeqCst: Dekker with the writer's head store + fence + load of `pollers`.
            fence(Ordering::SeqCst);
        } else {
            self.u32_at(POLLERS).fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Waits for the next record (skipping padding) and validates it.
    fn next_record(&self, deadline: Option<&Deadline>) -> Result<Record> {
        let tail_w = self.u64_at(TAIL);
        loop {
            // Relaxed: only the receiver holding the turn stores `tail`, and taking the turn
            // (Acquire) ordered an earlier receiver's store before this load.
            let tail = tail_w.load(Ordering::Relaxed);
            let head_w = self.u64_at(HEAD);
            let ready = || head_w.load(Ordering::Relaxed) != tail;
            if self.seen_head.get() <= tail && !ready() {
                match self.wait(ready, RX_SEQ, || self.writer_gone(), deadline) {
                    Waited::Ready => {}
                    Waited::TimedOut => return Err(Error::Timeout),
                    Waited::PeerGone => {
                        crate::trace::event!(
                            debug,
                            writer_pid = self.writer_pid(),
                            "pipe writer closed or died: end of stream"
                        );
                        return Err(Error::Disconnected);
                    }
                }
            }
            // A head seen before (loaded with Acquire then) still covers its records;
            // otherwise Acquire: the record bytes published before `head` are visible.
            let head = if self.seen_head.get() > tail {
                self.seen_head.get()
            } else {
                let h = head_w.load(Ordering::Acquire);
                self.seen_head.set(h);
                h
            };
            let avail = head.wrapping_sub(tail);
            if avail > self.cap || !tail.is_multiple_of(SLOT) {
                return Err(corrupt("pipe positions out of range"));
            }
            let pos = tail & (self.cap - 1);
            let mut h = [0u8; 16];
            let src = self.data().wrapping_add(usize_of(pos)?);
            // SAFETY: `pos` is a slot boundary below `cap`, so 16 bytes lie inside the data
            // area, and they are published (`avail > 0`), so the writer does not touch them.
            unsafe { core::ptr::copy_nonoverlapping(src, h.as_mut_ptr(), h.len()) };
            let len = u64::from(u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
            let flags = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            let total = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
            if flags & PAD != 0 {
                let skip = self.cap - pos;
                if skip > avail {
                    return Err(corrupt("pipe padding past the published data"));
                }
                self.consume(tail + skip);
                continue;
            }
            let size = (REC_HEAD + len).next_multiple_of(SLOT);
            if len > self.max_chunk || size > avail || pos + size > self.cap {
                return Err(corrupt("pipe record out of range"));
            }
            if flags & TAG != 0 {
                self.read_tag(pos, len)?;
                self.consume(tail + size);
                continue;
            }
            if flags & FIRST != 0 && self.tags_seen.get() {
                self.message_tag.replace(self.pending_tag.take());
            }
            return Ok(Record {
                pos,
                len,
                flags,
                total,
                next_tail: tail + size,
            });
        }
    }

    /// Keeps the payload of the `TAG` record at `pos` for the message that follows it.
    #[cold]
    fn read_tag(&self, pos: u64, len: u64) -> Result<()> {
        let n = usize_of(len)?;
        if n > MAX_TAG {
            return Err(corrupt("pipe tag record too long"));
        }
        let mut tag = vec![0u8; n];
        let src = self.data().wrapping_add(usize_of(pos + REC_HEAD)?);
        // SAFETY: the caller validated that the payload `[pos+16, pos+16+len)` lies inside the
        // data area and the published region, so the writer does not touch it; `tag` is a
        // separate allocation of `len` bytes.
        unsafe { core::ptr::copy_nonoverlapping(src, tag.as_mut_ptr(), n) };
        self.pending_tag.replace(Some(tag.into_boxed_slice()));
        self.tags_seen.set(true);
        Ok(())
    }

    fn consume(&self, new_tail: u64) {
        // Relaxed: as in `publish`, for the writer's choice.
        self.u32_at(READER_CPU)
            .store(sys::current_cpu(), Ordering::Relaxed);
        // Release: our reads of the record happen before the writer reuses its slots.
        self.u64_at(TAIL).store(new_tail, Ordering::Release);
        // Wakes a writer waiting for room, if one announced itself (`park`'s handshake).
        self.wake(TX_SEQ);
    }

    /// Receives one message: `start(total)` is called with the validated message length once
    /// the first record is there, and returns where to put it; returning an error leaves the
    /// message in the ring. Chunks are then copied in order until the last.
    ///
    /// Receivers take turns: an end used by two processes at once (a misuse) never delivers a
    /// message twice, each message goes to one of them.
    pub(crate) fn recv<S: Sink>(&self, sink: &mut S, deadline: Option<&Deadline>) -> Result<()> {
        let _turn = self.take_recv_turn(deadline)?;
        self.recv_in_turn(sink, deadline)
    }

    /// Receives one message and returns `f` of its bytes: read in place from the ring when the
    /// message is one record (the common case: up to `max_chunk` bytes), else collected into a
    /// `Vec` first. The record is consumed after `f` returns (also if `f` reports an error).
    pub(crate) fn recv_map<R>(
        &self,
        f: impl FnOnce(&[u8]) -> R,
        deadline: Option<&Deadline>,
    ) -> Result<R> {
        let _turn = self.take_recv_turn(deadline)?;
        let rec = self.next_record(deadline)?;
        if rec.flags & (FIRST | LAST) == FIRST | LAST && rec.len == rec.total {
            let src = self.data().wrapping_add(usize_of(rec.pos + REC_HEAD)?);
            // SAFETY: `next_record` validated that the payload `[pos+16, pos+16+len)` lies
            // inside the data area and the published region, so the writer does not modify it
            // while the slice lives; it is dropped before `consume` frees the slots.
            let bytes = unsafe { core::slice::from_raw_parts(src, usize_of(rec.len)?) };
            let r = f(bytes);
            self.consume(rec.next_tail);
            return Ok(r);
        }
        let mut sink = CollectSink(Vec::new());
        self.recv_in_turn(&mut sink, deadline)?;
        Ok(f(&sink.0))
    }

    /// Waits until no other thread (of any process) is receiving on this direction and claims
    /// the turn. A turn held by a thread that died is taken over.
    fn take_recv_turn(&self, deadline: Option<&Deadline>) -> Result<RecvTurn<'_>> {
        // The turn word holds the receiver's stamp (thread id and start time), so a word
        // naming a thread that is not the receiver that took it (a dead receiver whose id was
        // reused, or bytes scribbled on the ring) is recognised and taken over, as a robust
        // lock's owner record is (`sync::raw::owner_is_dead`).
        let word = self.u64_at(RECV_TURN);
        let me = sys::current_stamp();
        let my_tid = sys::current_tid();
        let mut holder = 0;
        loop {
            // Acquire: the previous receiver's reads and its `tail` store happen before ours
            // (pairs with the Release store in `RecvTurn::drop`).
            match word.compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Ok(RecvTurn(word)),
                // Free, or our own thread id: a receiver never holds the turn twice, so this
                // is an earlier thread with our id that died receiving.
                Err(now) if now == 0 || (now >> 32) as u32 == my_tid => holder = now,
                // No thread has id 0 or an id of 2^22 or more (PID_MAX_LIMIT): not a stamp
                // any receiver wrote.
                Err(now) if !(1..1 << 22).contains(&(now >> 32)) => holder = now,
                Err(now) if crate::sync::raw::owner_is_dead((now >> 32) as u32, now) => {
                    crate::trace::event!(
                        warn,
                        dead_tid = now,
                        "pipe receive turn held by a dead thread taken over"
                    );
                    holder = now;
                }
                Err(_) => {
                    if deadline.is_some_and(Deadline::has_passed) {
                        return Err(Error::Timeout);
                    }
                    holder = 0;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        }
    }

    fn recv_in_turn<S: Sink>(&self, sink: &mut S, deadline: Option<&Deadline>) -> Result<()> {
        let mut rec = self.next_record(deadline)?;
        if rec.flags & FIRST == 0 {
            return Err(corrupt(
                "pipe record continues a message that never started",
            ));
        }
        let total = rec.total;
        if total > MAX_MESSAGE || rec.len > total || (rec.flags & LAST != 0 && rec.len != total) {
            return Err(corrupt("pipe message length out of range"));
        }
        sink.start(usize_of(total)?)?;
        let mut got = 0u64;
        loop {
            let src = self.data().wrapping_add(usize_of(rec.pos + REC_HEAD)?);
            // SAFETY: the payload `[pos+16, pos+16+len)` was validated to lie inside the data
            // area and the published region, so the writer does not modify it while the slice
            // lives; it is dropped before `consume` frees the slots.
            let bytes = unsafe { core::slice::from_raw_parts(src, usize_of(rec.len)?) };
            sink.put(usize_of(got)?, bytes)?;
            got += rec.len;
            self.consume(rec.next_tail);
            if rec.flags & LAST != 0 {
                return if got == total {
                    Ok(())
                } else {
                    Err(corrupt("pipe message shorter than announced"))
                };
            }
            // The rest of a started message follows promptly; no deadline, but a dead writer
            // ends the wait (the partial message is dropped: end of stream).
            rec = self.next_record(None)?;
            if rec.flags & FIRST != 0 || got + rec.len > total {
                return Err(corrupt("pipe message chunks inconsistent"));
            }
        }
    }
}

/// A receiver's turn on a direction; released on drop.
struct RecvTurn<'a>(&'a AtomicU64);

impl Drop for RecvTurn<'_> {
    fn drop(&mut self) {
        // Release: our reads of the records and our `tail` store happen before the next
        // receiver's turn.
        self.0.store(0, Ordering::Release);
    }
}

/// Collects a message of several records for [`Ring::recv_map`].
struct CollectSink(Vec<u8>);

impl Sink for CollectSink {
    fn start(&mut self, total: usize) -> Result<()> {
        // Bounded preallocation: the length comes from shared memory.
        self.0 = Vec::with_capacity(total.min(64 << 20));
        Ok(())
    }
    fn put(&mut self, _offset: usize, bytes: &[u8]) -> Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Where a received message goes.
pub(crate) trait Sink {
    /// Called once with the message length; an error leaves the message in the ring.
    fn start(&mut self, total: usize) -> Result<()>;
    /// Copies the chunk that starts at `offset` of the message.
    fn put(&mut self, offset: usize, bytes: &[u8]) -> Result<()>;
}

#[cfg(test)]
#[path = "ring_tests.rs"]
mod tests;
