//! `Event`: a process-shared flag that threads can wait for.
//!
//! # State table
//!
//! One word, the futex word:
//!
//! | bits  | name      | meaning                                          | set by          |
//! |-------|-----------|--------------------------------------------------|-----------------|
//! | 0     | `SET`     | the flag                                         | `set` / `clear` |
//! | 1     | `WAITERS` | a thread may be asleep on the word               | a waiter, before sleeping |
//! | 2..32 | `gen`     | how many times the flag went from clear to set   | `set`           |
//!
//! Transitions: `clear → SET, gen+1, WAITERS cleared` (set; one CAS, and a wake of all
//! sleepers only if `WAITERS` was set); `SET → clear` (clear, keeps `gen` and `WAITERS`);
//! `s → s|WAITERS` (a waiter, CAS, then sleeps while the word equals what it wrote). A waiter
//! returns `true` once it sees `SET` *or* a `gen` other than the one it started with, so a
//! `set` quickly followed by `clear` still releases everybody who was waiting, as in Python.
//!
//! # Process death
//!
//! Nothing is held. A waiter that dies leaves at most a stale `WAITERS` bit, which costs the
//! next `set` one system call that wakes nobody.

use super::block::{Block, BlockKind};
use super::park::{self, Site, Slept, Slices};
use crate::error::Result;
use crate::heap::ObjectToken;
use crate::loom::{AtomicU32, Ordering};
use crate::segment::Segment;
use crate::sys::{self, Deadline};
use std::fmt;
use std::time::Duration;

pub(crate) const SET: u32 = 1;
pub(crate) const WAITERS: u32 = 2;
const GEN_ONE: u32 = 4;
const GEN_MASK: u32 = !(SET | WAITERS);

/// The event algorithm over its word, without syscalls of its own.
pub(crate) mod algo {
    use super::*;

    /// Sets the flag and wakes every waiter.
    pub(crate) fn set(word: &AtomicU32) {
        // Acquire on the fast exit: a `set` that finds the flag set is ordered after the `set`
        // that set it. Relaxed first look otherwise: the CAS synchronizes.
        let mut s = word.load(Ordering::Acquire);
        loop {
            if s & SET != 0 {
                return;
            }
            let next = (s & GEN_MASK).wrapping_add(GEN_ONE) | SET;
            // Release: waiters that see `SET` (acquire) see what was written before `set`.
            match word.compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        if s & WAITERS != 0 {
            sys::futex_wake(word, u32::MAX);
        }
    }

    /// Clears the flag.
    pub(crate) fn clear(word: &AtomicU32) {
        // Release: orders the caller's earlier writes before the clear, as a lock would.
        word.fetch_and(!SET, Ordering::Release);
    }

    /// Returns whether the flag is set.
    pub(crate) fn is_set(word: &AtomicU32) -> bool {
        // Acquire: a `true` answer makes what the setter wrote visible.
        word.load(Ordering::Acquire) & SET != 0
    }

    /// Waits until the flag is set (or was set since the call began) or `deadline` passes;
    /// returns whether it was set.
    pub(crate) fn wait(word: &AtomicU32, deadline: Option<&Deadline>) -> bool {
        // Acquire: pairs with `set`'s release.
        let start = word.load(Ordering::Acquire);
        if start & SET != 0 {
            return true;
        }
        let gen0 = start & GEN_MASK;
        let released = |s: u32| s & SET != 0 || s & GEN_MASK != gen0;
        // Acquire: as above.
        let spun = park::spin_at(Site::Event, || {
            released(word.load(Ordering::Acquire)).then_some(())
        });
        if spun.is_some() {
            return true;
        }
        loop {
            // Acquire: as above.
            let s = word.load(Ordering::Acquire);
            if released(s) {
                return true;
            }
            if deadline.is_some_and(Deadline::has_passed) {
                return false;
            }
            if s & WAITERS == 0
                && word
                    // Relaxed: announcing a sleeper publishes nothing; `set` reads the bit
                    // in its own CAS on the same word.
                    .compare_exchange(s, s | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            // Nothing to check for liveness (nothing is held): sleep to the deadline.
            if park::sleep(word, s | WAITERS, deadline, &mut Slices::unsliced()) == Slept::TimedOut
            {
                // Acquire: as above.
                return released(word.load(Ordering::Acquire));
            }
        }
    }
}

pub(crate) struct EventKind;

impl BlockKind for EventKind {
    const WORDS: usize = 1;
    const FINGERPRINT: u64 = crate::fingerprint::start("shmproc::Event", 4, 4);
    const NAME: &'static str = "shmproc::Event";
}

/// A flag shared between processes that threads can wait for, like `multiprocessing.Event`.
///
/// [`set`](Event::set) releases every waiter, [`clear`](Event::clear) resets the flag, and
/// [`wait`](Event::wait) blocks until it is set. A waiter that was waiting when `set` was
/// called returns `true` even if the flag was cleared again before it ran. Checking or
/// setting a set flag takes no system call; `set` wakes only if somebody sleeps.
///
/// # Process death
///
/// Nothing is held, so a dying process never blocks others; a waiter whose setter died waits
/// until its timeout.
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// let ev = shmproc::Event::new()?;
/// assert!(!ev.wait_timeout(std::time::Duration::from_millis(1)));
/// ev.set();
/// assert!(ev.is_set() && ev.wait(None));
/// ev.clear();
/// assert!(!ev.try_wait());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Event {
    block: Block<EventKind>,
}

crate::handle::single_token_handle!([] Event, "Event", object: |s| s.block.object());

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::handle::debug(self, f)
            .field("set", &self.is_set())
            .finish_non_exhaustive()
    }
}

impl Event {
    /// Creates a clear event in the default heap.
    ///
    /// # Errors
    /// As for [`Event::new_in`], and as for creating the default heap.
    pub fn new() -> Result<Event> {
        Event::new_in(&crate::runtime::default_segment()?)
    }

    /// Creates a clear event in `segment`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory) if the segment's heap is full.
    pub fn new_in(segment: &Segment) -> Result<Event> {
        Ok(Event {
            block: Block::alloc(segment, &[0])?,
        })
    }

    fn word(&self) -> &AtomicU32 {
        self.block.word(0)
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        algo::set(self.word());
    }

    /// Clears the flag.
    pub fn clear(&self) {
        algo::clear(self.word());
    }

    /// Returns whether the flag is set.
    pub fn is_set(&self) -> bool {
        algo::is_set(self.word())
    }

    /// Waits until the flag is set, at most `timeout` if given (Python's `wait(timeout)`);
    /// returns whether it was set.
    ///
    /// The deadline is monotonic; signals neither shorten nor extend the wait.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(Deadline::after);
        algo::wait(self.word(), deadline.as_ref())
    }

    /// Waits at most `timeout` for the flag; returns whether it was set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait(Some(timeout))
    }

    /// Returns whether the flag is set, without waiting (the same as [`is_set`](Event::is_set)).
    pub fn try_wait(&self) -> bool {
        self.is_set()
    }

    /// Re-attaches an event from its token.
    fn attach(token: &ObjectToken) -> Result<Event> {
        Ok(Event {
            block: Block::attach(token)?,
        })
    }
}
