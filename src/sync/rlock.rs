//! `RLock`: a process-shared, robust, re-entrant lock.
//!
//! # State table
//!
//! The block is one [`LockWord`](super::raw::LockWord) and the depth (24 bytes, 8-aligned):
//!
//! | word | name     | meaning                                              | written by           |
//! |------|----------|------------------------------------------------------|----------------------|
//! | 0    | `owner`  | the robust lock word of [`raw`](super::raw)           | as for `Lock`        |
//! | 1    | `pid`    | the owner's process id, beside its record (see [`raw`](super::raw)) | as for `Lock` |
//! | 2..4 | `record` | the owner record of [`raw`](super::raw) (one 64-bit atomic) | as for `Lock`  |
//! | 4    | `count`  | recursion depth of the owner; 0 when free            | the owner only       |
//! | 5    | —        | 0 (keeps the block a multiple of 8 bytes)             | nobody               |
//!
//! `count` is written only by the thread whose id is in `owner` (after acquiring, before
//! releasing), so it needs no atomicity beyond tear-free access: every access is `Relaxed`,
//! and the acquire/release of `owner` orders it between successive owners. Thread ids are
//! unique system-wide (not just per process), so the owner word identifies process *and*
//! thread. After a takeover from a dead owner the new owner overwrites `count` with 1. A
//! thread re-enters only when the word names its id *and* the record holds its stamp
//! (`raw::held_by_current_thread`): a later thread with an ended holder's id never re-enters.
//!
//! # Safety
//!
//! The one unsafe item is `Sync for RLockGuard`: a shared guard exposes only `&RLock`.

use super::block::{Block, BlockKind};
use super::lock::acquired;
use super::raw::{self, Acquired, LockWord};
use crate::error::{Error, LockResult, OwnerDied, Result};
use crate::heap::ObjectToken;
use crate::loom::{AtomicU32, Ordering};
use crate::segment::Segment;
use crate::sys::{self, Deadline};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

pub(crate) struct RLockKind;

/// The word of the recursion depth (after the 16 bytes of the lock word).
const COUNT: usize = 4;

impl BlockKind for RLockKind {
    const WORDS: usize = 6;
    const FINGERPRINT: u64 = crate::fingerprint::start("shmproc::RLock", 24, 8);
    const NAME: &'static str = "shmproc::RLock";
    const ALIGN: u64 = LockWord::ALIGN;
}

/// The re-entrant algorithm over its two words, without syscalls of its own.
pub(crate) mod algo {
    use super::*;

    /// Takes the lock (or one more level of it); `deadline` as for [`raw::lock`].
    #[inline]
    pub(crate) fn lock(
        owner: &LockWord,
        count: &AtomicU32,
        deadline: Option<&Deadline>,
    ) -> Acquired {
        // The fast path of `raw::try_lock`: a stale record of our id is cleared first.
        if raw::try_lock_id(owner) != raw::UNLOCKED {
            // Relaxed: ordered after the previous owner's last write by the acquire.
            count.store(1, Ordering::Relaxed);
            return Acquired::Clean;
        }
        // Our id with our stamp in the record: one more level. Our id without it is an
        // earlier thread with our id that died holding the lock; the contended path takes it
        // over and reports it.
        if raw::held_by_current_thread(owner) {
            // Relaxed: only the owner (this thread) touches `count` while it holds it.
            let c = count.load(Ordering::Relaxed);
            count.store(c.saturating_add(1), Ordering::Relaxed);
            return Acquired::Clean;
        }
        lock_contended(owner, count, deadline)
    }

    #[cold]
    fn lock_contended(
        owner: &LockWord,
        count: &AtomicU32,
        deadline: Option<&Deadline>,
    ) -> Acquired {
        let a = raw::lock(owner, deadline);
        if a != Acquired::TimedOut {
            // Relaxed: ordered after the previous owner's last write by `owner`'s acquire.
            count.store(1, Ordering::Relaxed);
        }
        a
    }

    /// Tries once (taking over a dead owner's lock).
    pub(crate) fn try_lock(owner: &LockWord, count: &AtomicU32) -> Option<Acquired> {
        if raw::held_by_current_thread(owner) {
            // Relaxed: as in `lock`.
            let c = count.load(Ordering::Relaxed);
            count.store(c.saturating_add(1), Ordering::Relaxed);
            return Some(Acquired::Clean);
        }
        let a = raw::try_lock_or_take_over(owner)?;
        // Relaxed: as in `lock`.
        count.store(1, Ordering::Relaxed);
        Some(a)
    }

    /// Releases one level; `false` if the calling thread is not the owner.
    #[inline]
    pub(crate) fn unlock(owner: &LockWord, count: &AtomicU32) -> bool {
        if !raw::held_by_current_thread(owner) {
            return false;
        }
        release_level(owner, count);
        true
    }

    /// Drops one level of a hold the calling thread has, releasing the word with the last.
    #[inline(always)]
    fn release_level(owner: &LockWord, count: &AtomicU32) {
        // Relaxed: only the owner touches `count`; `raw::unlock` publishes it (release).
        let c = count.load(Ordering::Relaxed);
        if c > 1 {
            count.store(c - 1, Ordering::Relaxed);
        } else {
            count.store(0, Ordering::Relaxed);
            raw::unlock(owner);
        }
    }

    /// Releases the level a guard holds; `holder` is the id of the thread that made the guard.
    ///
    /// A guard lives and is dropped on its own thread (it is not `Send`), and while it lives
    /// that thread holds at least its level (`release` takes only `acquire`'s levels, and a
    /// `Condition` wait gives back every level it took away): if the caller is `holder` it
    /// needs no look at the word or the record. A copy of the guard in a forked child runs on
    /// another thread (whose cached id is the child's own or 0) and takes the checked path of
    /// [`unlock`], which releases nothing there.
    #[inline]
    pub(crate) fn unlock_as(owner: &LockWord, count: &AtomicU32, holder: u32) {
        if sys::cached_tid() != holder {
            let _ = unlock(owner, count);
            return;
        }
        release_level(owner, count);
    }

    /// Releases every level at once and returns how many there were (0 if not the owner).
    pub(crate) fn unlock_all(owner: &LockWord, count: &AtomicU32) -> u32 {
        if !raw::held_by_current_thread(owner) {
            return 0;
        }
        // Relaxed: as in `unlock`.
        let c = count.swap(0, Ordering::Relaxed);
        raw::unlock(owner);
        c.max(1)
    }

    /// Re-takes the lock after [`unlock_all`] and restores `levels`.
    pub(crate) fn lock_restore(owner: &LockWord, count: &AtomicU32, levels: u32) -> Acquired {
        let a = raw::lock(owner, None);
        // Relaxed: as in `lock`.
        count.store(levels.max(1), Ordering::Relaxed);
        a
    }
}

/// A re-entrant lock shared between processes, like `multiprocessing.RLock`, that survives its
/// holder's death.
///
/// The thread that holds it may take it again; it is free again after as many releases as
/// acquisitions. The owner is a thread of a process (thread ids are unique system-wide), so a
/// forked child never owns its parent's `RLock`. Uncontended acquisition and release take no
/// system call; waiters sleep on a futex.
///
/// # Owner death
///
/// If the owning process dies (even by `SIGKILL`) holding it at any depth, the next acquirer
/// gets it with [`OwnerDied`] within about 50 ms of trying, at depth 1. The data it protects
/// may be half-updated; the lock itself is fully usable again.
///
/// A guard leaked by a thread that then ends keeps the lock held for as long as its process
/// lives (as [`Lock`](crate::Lock)'s does): no other thread takes it over, and none re-enters
/// it, not even a later thread that got the ended thread's id (for it, as for any other
/// thread, the lock is held by someone else: it waits, and its [`depth`](RLock::depth) is 0).
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// let lock = shmproc::RLock::new()?;
/// let outer = lock.lock()?;
/// let inner = lock.lock()?; // the same thread may take it again
/// assert_eq!(lock.depth(), 2);
/// drop(inner);
/// drop(outer);
/// assert!(!lock.is_locked());
/// assert!(matches!(lock.release(), Err(shmproc::Error::NotOwner)));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RLock {
    block: Block<RLockKind>,
}

crate::handle::single_token_handle!([] RLock, "RLock", object: |s| s.block.object());

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::handle::debug(self, f)
            .field("locked", &self.is_locked())
            .finish_non_exhaustive()
    }
}

impl RLock {
    /// Creates an unlocked re-entrant lock in the default heap.
    ///
    /// # Errors
    /// As for [`RLock::new_in`], and as for creating the default heap.
    pub fn new() -> Result<RLock> {
        RLock::new_in(&crate::runtime::default_segment()?)
    }

    /// Creates an unlocked re-entrant lock in `segment`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the segment's heap is full.
    pub fn new_in(segment: &Segment) -> Result<RLock> {
        Ok(RLock {
            block: Block::alloc(segment, &[raw::UNLOCKED, 0, 0, 0, 0, 0])?,
        })
    }

    #[inline]
    pub(crate) fn owner_word(&self) -> &LockWord {
        self.block.lock_word()
    }

    #[inline]
    pub(crate) fn count_word(&self) -> &AtomicU32 {
        self.block.word(COUNT)
    }

    #[inline]
    fn guard_for(&self, a: Acquired) -> LockResult<RLockGuard<'_>> {
        match a {
            Acquired::OwnerDied(tid) => Err(OwnerDied::new(RLockGuard::new(self), tid)),
            _ => Ok(RLockGuard::new(self)),
        }
    }

    /// Acquires the lock (one more level if the calling thread holds it), blocking until it is
    /// free, and returns a guard that releases that level.
    ///
    /// # Errors
    /// [`OwnerDied`] (carrying the guard: the lock is held) if the previous owner died.
    #[inline]
    pub fn lock(&self) -> LockResult<RLockGuard<'_>> {
        let a = algo::lock(self.owner_word(), self.count_word(), None);
        self.guard_for(a)
    }

    /// Acquires the lock if it is free now or held by the calling thread, without blocking;
    /// `Ok(None)` if another thread or process holds it.
    ///
    /// # Errors
    /// [`OwnerDied`] with the guard if the holder had died (the lock is taken over).
    pub fn try_lock(&self) -> Result<Option<RLockGuard<'_>>, OwnerDied<RLockGuard<'_>>> {
        match algo::try_lock(self.owner_word(), self.count_word()) {
            Some(a) => self.guard_for(a).map(Some),
            None => Ok(None),
        }
    }

    /// Acquires the lock, waiting at most `timeout` (monotonic, unaffected by signals);
    /// `Ok(None)` if it timed out.
    ///
    /// # Errors
    /// [`OwnerDied`] with the guard if the previous owner died.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<RLockGuard<'_>>, OwnerDied<RLockGuard<'_>>> {
        let deadline = Deadline::after(timeout);
        match algo::lock(self.owner_word(), self.count_word(), Some(&deadline)) {
            Acquired::TimedOut => Ok(None),
            a => self.guard_for(a).map(Some),
        }
    }

    /// Acquires one level without a guard (Python's `acquire()`); pair with
    /// [`release`](RLock::release).
    ///
    /// # Errors
    /// [`OwnerDied`] if the previous owner died; the lock is held all the same.
    pub fn acquire(&self) -> Result<(), OwnerDied<()>> {
        let a = algo::lock(self.owner_word(), self.count_word(), None);
        acquired::note(self.owner_word());
        match a {
            Acquired::OwnerDied(tid) => Err(OwnerDied::new((), tid)),
            _ => Ok(()),
        }
    }

    /// Acquires one level if possible now; returns whether it was acquired.
    ///
    /// # Errors
    /// [`OwnerDied`] if the previous owner had died; the lock is held all the same.
    pub fn try_acquire(&self) -> Result<bool, OwnerDied<()>> {
        let a = algo::try_lock(self.owner_word(), self.count_word());
        if a.is_some() {
            acquired::note(self.owner_word());
        }
        match a {
            Some(Acquired::OwnerDied(tid)) => Err(OwnerDied::new((), tid)),
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    /// Acquires one level, waiting at most `timeout`; returns whether it was acquired.
    ///
    /// # Errors
    /// [`OwnerDied`] if the previous owner died; the lock is held all the same.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, OwnerDied<()>> {
        let deadline = Deadline::after(timeout);
        let a = algo::lock(self.owner_word(), self.count_word(), Some(&deadline));
        if a != Acquired::TimedOut {
            acquired::note(self.owner_word());
        }
        match a {
            Acquired::OwnerDied(tid) => Err(OwnerDied::new((), tid)),
            Acquired::Clean => Ok(true),
            Acquired::TimedOut => Ok(false),
        }
    }

    /// Releases one level taken with [`acquire`](RLock::acquire) (or
    /// [`try_acquire`](RLock::try_acquire), [`acquire_timeout`](RLock::acquire_timeout)) by
    /// the calling thread and not released since.
    ///
    /// Levels taken with `acquire` and through guards ([`lock`](RLock::lock) and the other
    /// guard forms, a [`Condition`](crate::Condition) over this lock) add up to one
    /// [`depth`](RLock::depth), in any order (a guard on top of an `acquire`, an `acquire` on
    /// top of a guard). `release` drops one level only while the calling thread has an
    /// `acquire` not yet released, so it never drops a level a guard owns: the lock stays
    /// held while any guard of the thread lives, and each guard's drop releases its own level.
    ///
    /// # Errors
    /// [`Error::NotOwner`] if the calling thread does not hold the lock, or holds it only
    /// through guards (including one release more than there were `acquire`s).
    pub fn release(&self) -> Result<()> {
        // A listed lock this thread no longer holds is a stale entry (a copy inherited by a
        // forked child); it is dropped from the list all the same.
        if acquired::take(self.owner_word()) && algo::unlock(self.owner_word(), self.count_word()) {
            Ok(())
        } else {
            Err(Error::NotOwner)
        }
    }

    /// Returns whether any thread of any process holds the lock (a snapshot).
    pub fn is_locked(&self) -> bool {
        raw::is_locked(self.owner_word())
    }

    /// Returns whether the calling thread holds the lock.
    pub fn is_owned(&self) -> bool {
        raw::held_by_current_thread(self.owner_word())
    }

    /// Returns how many levels the calling thread holds (0 if it does not own the lock).
    pub fn depth(&self) -> u32 {
        if self.is_owned() {
            // Relaxed: only this thread, the owner, writes it.
            self.count_word().load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Re-attaches a lock from its token.
    fn attach(token: &ObjectToken) -> Result<RLock> {
        Ok(RLock {
            block: Block::attach(token)?,
        })
    }

    /// Returns the lock's block (for objects that record which lock they use).
    pub(crate) fn object(&self) -> &crate::heap::ObjectRef {
        self.block.object()
    }
}

/// Holds one level of an [`RLock`]; releases it when dropped.
///
/// Not `Send`: the lock belongs to the thread that took it. [`RLock::release`] never releases
/// the level a guard holds. While a guard lives (or after it was leaked) the thread may not
/// fork (`StartMethod::Fork`, a forked exchange or pool worker:
/// [`Error::ForkWhileLocked`](crate::Error::ForkWhileLocked)); a copy that reaches a forked
/// child anyway releases nothing when dropped there.
#[must_use = "the level is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    /// The id of the thread that took the level (and made the guard).
    holder: u32,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing `&RLockGuard` between threads gives access only to `&RLock`, which is `Sync`.
#[allow(unsafe_code)]
unsafe impl Sync for RLockGuard<'_> {}

impl<'a> RLockGuard<'a> {
    #[inline]
    fn new(lock: &'a RLock) -> Self {
        sys::guard_made();
        RLockGuard {
            lock,
            holder: sys::current_tid(),
            _not_send: PhantomData,
        }
    }

    /// Returns the lock this guard holds.
    pub fn lock(&self) -> &'a RLock {
        self.lock
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}

impl Drop for RLockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        sys::guard_dropped();
        // Only the calling thread's own level: a copy in a forked child releases nothing.
        algo::unlock_as(self.lock.owner_word(), self.lock.count_word(), self.holder);
    }
}
