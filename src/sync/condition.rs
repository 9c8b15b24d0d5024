//! `Condition`: a process-shared condition variable over a `Lock` or an `RLock`.
//!
//! # State table
//!
//! | word | name      | meaning                                            | written by                 |
//! |------|-----------|----------------------------------------------------|----------------------------|
//! | 0    | `futex`   | bits 0..20 `seq`, bumped by every notify; bits 20..32 `sleepers`, threads that may be asleep on this word | notifiers (`seq`, CAS, under the lock); waiters (`sleepers`, CAS, around their sleep) |
//! | 1    | `waiters` | threads between the start and end of a `wait`      | waiters (under the lock)   |
//! | 2    | `signals` | wake tokens granted by notify and not yet taken    | notify (+k, under the lock); a waiter (−1, CAS, lock free); a timed-out waiter (clamp, under the lock) |
//! | 3    | `closed`  | 0; 1 once a manager's server that holds this condition stopped or died (its attached proxies then fail) | the server, clients that notice its death (store, lock free) |
//!
//! A waiter registers (`waiters += 1`) while holding the lock, releases the lock, and then
//! waits until it can take a token from `signals`. `notify(n)` grants
//! `k = min(n, waiters − signals)` tokens, then bumps `seq` and wakes `k` sleepers if its CAS
//! saw any. So `notify(n)` releases exactly `min(n, waiting)` waiters; a woken thread that
//! finds no token (another waiter took it first) sleeps again.
//!
//! No lost wake-up: a waiter registers as a sleeper by a CAS on the futex word, *then* looks
//! for a token, then sleeps while the word is what its CAS wrote. The notifier grants tokens,
//! *then* bumps `seq` by a CAS on the same word. Both CASes are ordered in that one word: if
//! the waiter's comes first, the notifier sees the sleeper and wakes it (or the word changed
//! and the waiter's sleep returns at once); if the notifier's comes first, the waiter's CAS
//! (acquire) reads it (release) and so sees the tokens. Waiters spin briefly before sleeping
//! and notifiers skip the wake call when nobody sleeps: a ping-pong between two processes
//! then rarely enters the kernel (the spin and the sleep slices are [`park`]'s). At
//! most 4095 sleepers register; more poll in sleep slices.
//!
//! # Process death
//!
//! The lock is robust: a process that dies holding it (or while re-taking it after a wait)
//! makes the next acquirer, including a waiter returning from `wait`, get `OwnerDied`. A
//! process that dies *waiting* leaves `waiters` (and maybe `sleepers`) one too high: a later
//! `notify` may grant it a token that a later waiter then takes at once, i.e. one spurious
//! wake-up (which `wait_for` absorbs), and wakes cost a spare system call. Nobody hangs
//! because of it; waiters whose notifier died wait until their timeout.
//!
//! # Safety
//!
//! The one unsafe item is `Sync for ConditionGuard`: a shared guard exposes only
//! `&Condition`.

use super::block::{Block, BlockKind};
use super::lock::LOCK_FINGERPRINT;
use super::lock::Lock;
use super::park::{self, Site, Slept, Slices};
use super::raw::{self, Acquired};
use super::rlock::RLockKind;
use super::rlock::{self, RLock};
use crate::error::{Error, LockResult, OwnerDied, Result};
use crate::heap::{ObjectRef, ObjectToken};
use crate::loom::{AtomicU32, Ordering};
use crate::segment::Segment;
use crate::sys::{self, Deadline};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

pub(crate) struct ConditionKind;

impl BlockKind for ConditionKind {
    const WORDS: usize = 4;
    const FINGERPRINT: u64 = crate::fingerprint::start("shmproc::Condition", 16, 4);
    const NAME: &'static str = "shmproc::Condition";
}

/// The words of a condition.
#[derive(Clone, Copy)]
pub(crate) struct CondWords<'a> {
    pub(crate) futex: &'a AtomicU32,
    pub(crate) waiters: &'a AtomicU32,
    pub(crate) signals: &'a AtomicU32,
}

const SEQ_MASK: u32 = (1 << 20) - 1;
const SLEEPER: u32 = 1 << 20;
const SLEEPERS_MAX: u32 = (1 << 12) - 1;

/// The condition algorithm over its words; the lock is passed as two functions.
pub(crate) mod algo {
    use super::*;

    /// Takes a token, if one was granted since this waiter began (`seq0`): tokens granted
    /// before that belong to earlier waiters, so a thread that notifies and then waits
    /// cannot take back its own notification.
    fn take_signal(w: CondWords<'_>, seq0: u32) -> bool {
        // Acquire: pairs with the notifier's release of `seq`, so its tokens are visible.
        if w.futex.load(Ordering::Acquire) & SEQ_MASK == seq0 {
            return false;
        }
        let signals = w.signals;
        // Acquire (and on the CAS): pairs with the notifier's release of the token, so the
        // woken waiter sees what the notifier wrote (it also re-takes the lock, which does).
        let mut s = signals.load(Ordering::Acquire);
        while s > 0 {
            match signals.compare_exchange_weak(s, s - 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
        false
    }

    /// Registers as a sleeper, checks for a token, and sleeps one of `slices`; returns
    /// `(took a token, timed out)`.
    fn sleep_once(
        w: CondWords<'_>,
        seq0: u32,
        deadline: Option<&Deadline>,
        slices: &mut Slices,
    ) -> (bool, bool) {
        // Relaxed: the registering CAS re-reads the word.
        let s = w.futex.load(Ordering::Relaxed);
        if s >> 20 >= SLEEPERS_MAX {
            // Too many sleepers to count: poll in slices.
            let _ = park::sleep(w.futex, s, deadline, slices);
            return (
                take_signal(w, seq0),
                deadline.is_some_and(Deadline::has_passed),
            );
        }
        // Acquire: if a notifier's bump came first, this sees the tokens it granted.
        if w.futex
            .compare_exchange(s, s + SLEEPER, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return (take_signal(w, seq0), false);
        }
        if take_signal(w, seq0) {
            // Relaxed: deregistering publishes nothing.
            w.futex.fetch_sub(SLEEPER, Ordering::Relaxed);
            return (true, false);
        }
        // A requeued sleeper waits on the lock word, which a dead holder never releases:
        // sleep in slices, so it re-checks (and `relock` reports the dead owner). Under loom
        // the requeue is a wake-up and sleeps are not sliced, so the model finds lost
        // wake-ups.
        let slept = park::sleep(w.futex, s + SLEEPER, deadline, slices);
        // Relaxed: as above.
        w.futex.fetch_sub(SLEEPER, Ordering::Relaxed);
        (take_signal(w, seq0), slept == Slept::TimedOut)
    }

    /// Waits for a notification. The caller holds the lock; `unlock` releases it entirely
    /// (returning what `relock` needs to restore it) and `relock` takes it back. Returns
    /// whether the waiter was notified (else the deadline passed), and how the lock was
    /// re-taken (never `TimedOut`).
    pub(crate) fn wait<T>(
        w: CondWords<'_>,
        deadline: Option<&Deadline>,
        unlock: impl FnOnce() -> T,
        relock: impl FnOnce(T) -> Acquired,
    ) -> (bool, Acquired) {
        // Relaxed: `waiters` is only written under the lock, which orders it.
        let n = w.waiters.load(Ordering::Relaxed);
        w.waiters.store(n.saturating_add(1), Ordering::Relaxed);
        // Relaxed: `seq` only changes under the lock, which we hold.
        let seq0 = w.futex.load(Ordering::Relaxed) & SEQ_MASK;
        let saved = unlock();
        let mut notified =
            park::spin_at(Site::Condition, || take_signal(w, seq0).then_some(())).is_some();
        let mut slices = Slices::new();
        while !notified {
            if deadline.is_some_and(Deadline::has_passed) {
                notified = take_signal(w, seq0);
                break;
            }
            let (took, timed_out) = sleep_once(w, seq0, deadline, &mut slices);
            notified = took;
            if timed_out {
                break;
            }
        }
        let acquired = relock(saved);
        // Relaxed: under the lock again.
        let n = w.waiters.load(Ordering::Relaxed).saturating_sub(1);
        w.waiters.store(n, Ordering::Relaxed);
        if !notified {
            // A token granted while we were timing out has nobody to go to if there are now
            // more tokens than waiters; drop the excess so a later waiter is not woken falsely.
            // Acquire/Relaxed: only the count matters here; we hold the lock.
            let mut s = w.signals.load(Ordering::Acquire);
            while s > n {
                match w
                    .signals
                    .compare_exchange_weak(s, n, Ordering::Relaxed, Ordering::Acquire)
                {
                    Ok(_) => break,
                    Err(now) => s = now,
                }
            }
        }
        (notified, acquired)
    }

    /// Wakes up to `n` waiters. The caller holds the lock whose word is `lock`.
    ///
    /// Sleepers are not woken here but moved (`FUTEX_CMP_REQUEUE`) to sleep on the lock word,
    /// whose `WAITERS` bit is set first: they wake when the notifier releases the lock,
    /// instead of waking at once only to find the lock held and sleep again.
    pub(crate) fn notify(w: CondWords<'_>, n: u32, lock: &AtomicU32) {
        // Relaxed: written under the lock, which the caller holds.
        let waiting = w.waiters.load(Ordering::Relaxed);
        // Relaxed: only the count matters; tokens are published by the bump below.
        let granted = w.signals.load(Ordering::Relaxed);
        let k = n.min(waiting.saturating_sub(granted));
        if k == 0 {
            return;
        }
        // Release: a waiter that takes the token (acquire) sees what we wrote.
        w.signals.fetch_add(k, Ordering::Release);
        // Relaxed: a first look; the CAS synchronizes.
        let mut s = w.futex.load(Ordering::Relaxed);
        loop {
            let next = (s & !SEQ_MASK) | (s.wrapping_add(1) & SEQ_MASK);
            // Release: a waiter whose registering CAS reads this sees the tokens above.
            match w
                .futex
                .compare_exchange_weak(s, next, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        if s >> 20 > 0 {
            let next = (s & !SEQ_MASK) | (s.wrapping_add(1) & SEQ_MASK);
            // Relaxed: we hold the lock; the bit only makes our release wake a sleeper.
            lock.fetch_or(raw::WAITERS, Ordering::Relaxed);
            if !sys::futex_requeue(w.futex, next, lock, k) {
                // The word changed (a sleeper came or went): wake instead.
                sys::futex_wake(w.futex, k);
            }
        }
    }
}

/// The lock under a [`Condition`]: a [`Lock`] or an [`RLock`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ConditionLock {
    /// A plain lock.
    Lock(Lock),
    /// A re-entrant lock: waiting releases every level and restores them afterwards.
    RLock(RLock),
}

impl From<Lock> for ConditionLock {
    fn from(l: Lock) -> Self {
        ConditionLock::Lock(l)
    }
}

impl From<RLock> for ConditionLock {
    fn from(l: RLock) -> Self {
        ConditionLock::RLock(l)
    }
}

impl ConditionLock {
    /// Returns the lock's block (what a condition's link record names).
    fn object(&self) -> &ObjectRef {
        match self {
            ConditionLock::Lock(l) => l.object(),
            ConditionLock::RLock(l) => l.object(),
        }
    }

    /// Re-attaches the lock a condition's link record names from its token: a `Lock` or an
    /// `RLock`, as the record's type says.
    fn attach(token: &ObjectToken, link_fp: u64) -> Result<ConditionLock> {
        if link_fp == LOCK_FINGERPRINT {
            Ok(ConditionLock::Lock(Lock::from_token(token)?))
        } else if link_fp == RLockKind::FINGERPRINT {
            Ok(ConditionLock::RLock(RLock::from_token(token)?))
        } else {
            Err(Error::CorruptObject {
                reason: "condition's link names neither a Lock nor an RLock",
            })
        }
    }

    fn word(&self) -> &AtomicU32 {
        match self {
            ConditionLock::Lock(l) => l.word(),
            ConditionLock::RLock(l) => l.owner_word(),
        }
    }

    fn held(&self) -> bool {
        match self {
            ConditionLock::Lock(l) => raw::held_by_current_thread(l.word()),
            ConditionLock::RLock(l) => l.is_owned(),
        }
    }

    fn lock(&self, deadline: Option<&Deadline>) -> Acquired {
        match self {
            ConditionLock::Lock(l) => {
                if deadline.is_none() {
                    assert!(
                        !raw::held_by_current_thread(l.word()),
                        "Condition::lock over a Lock called by the thread that holds it; \
                         this would deadlock (use an RLock)"
                    );
                } else if raw::held_by_current_thread(l.word()) {
                    if let Some(d) = deadline {
                        std::thread::sleep(d.remaining());
                    }
                    return Acquired::TimedOut;
                }
                raw::lock(l.word(), deadline)
            }
            ConditionLock::RLock(l) => rlock::algo::lock(l.owner_word(), l.count_word(), deadline),
        }
    }

    fn try_lock(&self) -> Option<Acquired> {
        match self {
            ConditionLock::Lock(l) => raw::try_lock_or_take_over(l.word()),
            ConditionLock::RLock(l) => rlock::algo::try_lock(l.owner_word(), l.count_word()),
        }
    }

    fn unlock(&self) {
        match self {
            ConditionLock::Lock(l) => raw::unlock_own(l.word()),
            ConditionLock::RLock(l) => {
                let _ = rlock::algo::unlock(l.owner_word(), l.count_word());
            }
        }
    }

    fn unlock_all(&self) -> u32 {
        match self {
            ConditionLock::Lock(l) => {
                raw::unlock(l.word());
                1
            }
            ConditionLock::RLock(l) => rlock::algo::unlock_all(l.owner_word(), l.count_word()),
        }
    }

    /// As `relock`, giving up at `deadline` (`TimedOut`: nothing held).
    fn relock_until(&self, levels: u32, deadline: &Deadline) -> Acquired {
        match self {
            ConditionLock::Lock(l) => raw::lock(l.word(), Some(deadline)),
            ConditionLock::RLock(l) => {
                let a = raw::lock(l.owner_word(), Some(deadline));
                if !matches!(a, Acquired::TimedOut) {
                    // Relaxed: only the owner (this thread) touches `count` while it holds it.
                    l.count_word().store(levels.max(1), Ordering::Relaxed);
                }
                a
            }
        }
    }

    fn relock(&self, levels: u32) -> Acquired {
        match self {
            ConditionLock::Lock(l) => raw::lock(l.word(), None),
            ConditionLock::RLock(l) => {
                rlock::algo::lock_restore(l.owner_word(), l.count_word(), levels)
            }
        }
    }
}

/// A condition variable shared between processes, like `multiprocessing.Condition`.
///
/// It pairs a lock (its own [`Lock`] from [`new`](Condition::new), or a given [`Lock`] or
/// [`RLock`] from [`with_lock`](Condition::with_lock)) with a wait queue. Take the lock with
/// [`lock`](Condition::lock), then [`wait`](Condition::wait) (which releases it while asleep
/// and takes it back) or [`notify`](Condition::notify). Waiting and notifying need the lock:
/// a guard of another condition, or a notify without holding the lock, is
/// [`Error::NotOwner`]. `notify(n)` wakes exactly `min(n, waiting)` waiters. There are no
/// spurious wake-ups except after a waiter's process died (see below); loop on your predicate
/// anyway, or use [`wait_for`](Condition::wait_for).
///
/// # Process death
///
/// A process that dies holding the lock makes the next acquirer (or the waiter re-taking it
/// on return from `wait`) see `OwnerDied`. A process that dies while *waiting* never blocks
/// anybody; it may cause one later spurious wake-up. Waiters whose notifier died wait until
/// their timeout.
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// use std::time::Duration;
/// let cond = shmproc::Condition::new()?;
/// let mut guard = cond.lock()?;
/// // Nobody notifies: the wait times out and the lock is held again afterwards.
/// assert!(!cond.wait_timeout(&mut guard, Duration::from_millis(1))?);
/// cond.notify_all()?;
/// drop(guard);
/// assert!(matches!(cond.notify(1), Err(shmproc::Error::NotOwner)));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Condition {
    lock: ConditionLock,
    block: Block<ConditionKind>,
}

crate::handle::paired_handle!(
    [] Condition, "Condition",
    object: |s| s.block.object(), lock: |s| s.lock.object()
);

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::handle::debug(self, f)
            .field("lock", &self.lock)
            .finish_non_exhaustive()
    }
}

impl Condition {
    /// Creates a condition with its own [`Lock`] in the default heap.
    ///
    /// # Errors
    /// As for [`Condition::new_in`], and as for creating the default heap.
    pub fn new() -> Result<Condition> {
        Condition::new_in(&crate::runtime::default_segment()?)
    }

    /// Creates a condition with its own [`Lock`] in `segment`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the segment's heap is full.
    pub fn new_in(segment: &Segment) -> Result<Condition> {
        let lock = ConditionLock::Lock(Lock::new_in(segment)?);
        Ok(Condition {
            block: Block::alloc_linked(segment, &[0; 4], lock.object())?,
            lock,
        })
    }

    /// Creates a condition over an existing [`Lock`] or [`RLock`], in the lock's segment.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the segment's heap is full.
    pub fn with_lock(lock: impl Into<ConditionLock>) -> Result<Condition> {
        let lock = lock.into();
        let segment = match &lock {
            ConditionLock::Lock(l) => l.segment(),
            ConditionLock::RLock(l) => l.segment(),
        };
        Ok(Condition {
            block: Block::alloc_linked(&segment, &[0; 4], lock.object())?,
            lock,
        })
    }

    fn words(&self) -> CondWords<'_> {
        CondWords {
            futex: self.block.word(0),
            waiters: self.block.word(1),
            signals: self.block.word(2),
        }
    }

    /// Returns the lock under this condition.
    pub fn get_lock(&self) -> &ConditionLock {
        &self.lock
    }

    /// Takes the lock without a guard (a managed condition's attached proxy, which tracks
    /// what it holds itself); `TimedOut` if the deadline passed first.
    pub(crate) fn acquire_unguarded(&self, deadline: Option<&Deadline>) -> Acquired {
        self.lock.lock(deadline)
    }

    /// Takes the lock without a guard if it is free now.
    pub(crate) fn try_acquire_unguarded(&self) -> Option<Acquired> {
        self.lock.try_lock()
    }

    /// Whether the calling thread holds the lock.
    pub(crate) fn held_here(&self) -> bool {
        self.lock.held()
    }

    /// Releases one level of the lock the calling thread holds without a guard.
    ///
    /// # Errors
    /// [`Error::NotOwner`] if the calling thread does not hold it.
    pub(crate) fn release_unguarded(&self) -> Result<()> {
        if !self.lock.held() {
            return Err(Error::NotOwner);
        }
        self.lock.unlock();
        Ok(())
    }

    /// Releases every level of the lock if the calling thread holds it.
    pub(crate) fn release_all_unguarded(&self) {
        if self.lock.held() {
            let _ = self.lock.unlock_all();
        }
    }

    /// [`wait`](Condition::wait) without a guard: the calling thread must hold the lock.
    /// Returns whether it was notified, and how the lock was taken back (`OwnerDied`: after
    /// a holder died). The lock is taken back by `retake`, given a function that tries
    /// until a deadline (`TimedOut`: not taken).
    /// `retake` returns how it took the lock, or `TimedOut` to give up: the calling thread
    /// then does not hold the lock on return (the waiter bookkeeping that follows a wait is
    /// then done without it: only for a condition about to be closed, a manager's whose
    /// server is gone).
    ///
    /// # Errors
    /// [`Error::NotOwner`] if the calling thread does not hold the lock.
    pub(crate) fn wait_unguarded_retake(
        &self,
        deadline: Option<&Deadline>,
        retake: impl FnOnce(&dyn Fn(&Deadline) -> Acquired) -> Acquired,
    ) -> Result<(bool, Acquired)> {
        if !self.lock.held() {
            return Err(Error::NotOwner);
        }
        let lock = &self.lock;
        Ok(algo::wait(
            self.words(),
            deadline,
            || lock.unlock_all(),
            |levels| retake(&|d| lock.relock_until(levels, d)),
        ))
    }

    /// Marks the condition closed (word 3): a manager's server stopped or died.
    pub(crate) fn close(&self) {
        // Release: whoever sees the flag sees what was done before it was set.
        self.block.word(3).store(1, Ordering::Release);
    }

    /// Whether [`close`](Condition::close) was called (by any process).
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        // Acquire: pairs with `close`.
        self.block.word(3).load(Ordering::Acquire) != 0
    }

    fn guard_for(&self, a: Acquired) -> LockResult<ConditionGuard<'_>> {
        match a {
            Acquired::OwnerDied(tid) => Err(OwnerDied::new(ConditionGuard::new(self), tid)),
            _ => Ok(ConditionGuard::new(self)),
        }
    }

    /// Acquires the lock, blocking until it is free.
    ///
    /// # Errors
    /// [`OwnerDied`] (carrying the guard: the lock is held) if the previous holder died.
    ///
    /// # Panics
    /// Over a [`Lock`], if the calling thread holds it already (that would deadlock).
    pub fn lock(&self) -> LockResult<ConditionGuard<'_>> {
        let a = self.lock.lock(None);
        self.guard_for(a)
    }

    /// Acquires the lock if possible now; `Ok(None)` if it is held elsewhere.
    ///
    /// # Errors
    /// [`OwnerDied`] with the guard if the holder had died (the lock is taken over).
    pub fn try_lock(&self) -> Result<Option<ConditionGuard<'_>>, OwnerDied<ConditionGuard<'_>>> {
        match self.lock.try_lock() {
            Some(a) => self.guard_for(a).map(Some),
            None => Ok(None),
        }
    }

    /// Acquires the lock, waiting at most `timeout`; `Ok(None)` if it timed out.
    ///
    /// # Errors
    /// [`OwnerDied`] with the guard if the previous holder died.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<ConditionGuard<'_>>, OwnerDied<ConditionGuard<'_>>> {
        let deadline = Deadline::after(timeout);
        match self.lock.lock(Some(&deadline)) {
            Acquired::TimedOut => Ok(None),
            a => self.guard_for(a).map(Some),
        }
    }

    fn check_guard(&self, guard: &ConditionGuard<'_>) -> Result<()> {
        if guard.cond.block.same_as(&self.block) && self.lock.held() {
            Ok(())
        } else {
            Err(Error::NotOwner)
        }
    }

    fn wait_deadline(
        &self,
        guard: &mut ConditionGuard<'_>,
        deadline: Option<&Deadline>,
    ) -> Result<bool> {
        self.check_guard(guard)?;
        let lock = &self.lock;
        let (notified, acquired) = algo::wait(
            self.words(),
            deadline,
            || lock.unlock_all(),
            |levels| lock.relock(levels),
        );
        match acquired {
            Acquired::OwnerDied(tid) => Err(Error::OwnerDied { tid }),
            _ => Ok(notified),
        }
    }

    /// Releases the lock, sleeps until notified, and takes the lock back (restoring every
    /// level of an [`RLock`]).
    ///
    /// # Errors
    /// [`Error::NotOwner`] if `guard` belongs to another condition; [`Error::OwnerDied`] if
    /// a holder of the lock died while this thread slept: the lock is held again (the guard
    /// stays valid) and the protected data is the caller's to check.
    pub fn wait(&self, guard: &mut ConditionGuard<'_>) -> Result<()> {
        self.wait_deadline(guard, None).map(|_| ())
    }

    /// As [`wait`](Condition::wait), for at most `timeout` (monotonic, unaffected by
    /// signals); returns whether it was notified. The lock is held again either way.
    ///
    /// # Errors
    /// As for [`wait`](Condition::wait).
    pub fn wait_timeout(&self, guard: &mut ConditionGuard<'_>, timeout: Duration) -> Result<bool> {
        let deadline = Deadline::after(timeout);
        self.wait_deadline(guard, Some(&deadline))
    }

    /// Waits until `predicate` returns `true`, at most `timeout` in total if given; returns
    /// the predicate's last value (Python's `wait_for`). The predicate runs with the lock
    /// held.
    ///
    /// # Errors
    /// As for [`wait`](Condition::wait).
    pub fn wait_for(
        &self,
        guard: &mut ConditionGuard<'_>,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        self.check_guard(guard)?;
        let deadline = timeout.map(Deadline::after);
        loop {
            if predicate() {
                return Ok(true);
            }
            if deadline.as_ref().is_some_and(Deadline::has_passed) {
                return Ok(false);
            }
            self.wait_deadline(guard, deadline.as_ref())?;
        }
    }

    /// Wakes up to `n` threads waiting on this condition (exactly `min(n, waiting)`).
    ///
    /// # Errors
    /// [`Error::NotOwner`] if the calling thread does not hold the lock.
    pub fn notify(&self, n: u32) -> Result<()> {
        if !self.lock.held() {
            return Err(Error::NotOwner);
        }
        algo::notify(self.words(), n, self.lock.word());
        Ok(())
    }

    /// Wakes every thread waiting on this condition.
    ///
    /// # Errors
    /// [`Error::NotOwner`] if the calling thread does not hold the lock.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(u32::MAX)
    }

    /// Returns the token of the condition's own block (its lock has its own token; the
    /// handle serializes to both, which is what [`Handle::token`](crate::Handle::token)
    /// returns).
    pub fn token(&self) -> ObjectToken {
        self.block.token()
    }

    /// Re-attaches a condition from its token and its lock's handle.
    ///
    /// `lock` must be the lock the condition was created with (its block records it): a
    /// condition waited on under one lock and notified under another would lose wake-ups.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`] if the token names something else; [`Error::LockMismatch`]
    /// if `lock` is not the condition's lock; [`Error::ObjectGone`],
    /// [`Error::UnknownSegment`], [`Error::CorruptObject`].
    pub fn from_token(token: &ObjectToken, lock: impl Into<ConditionLock>) -> Result<Condition> {
        let lock = lock.into();
        let block = Block::attach(token)?;
        block.check_link(lock.object())?;
        Ok(Condition { lock, block })
    }

    /// Re-attaches a condition from its own token and its lock's token; the block's link
    /// record says whether the lock is a `Lock` or an `RLock`.
    fn attach_pair(token: &ObjectToken, lock: &ObjectToken) -> Result<Condition> {
        let block = Block::<ConditionKind>::attach(token)?;
        let lock = ConditionLock::attach(lock, block.link_fingerprint()?)?;
        block.check_link(lock.object())?;
        Ok(Condition { lock, block })
    }
}

/// Holds a [`Condition`]'s lock (one level of an [`RLock`]); releases it when dropped.
///
/// Not `Send`: the lock belongs to the thread that took it.
///
/// While it lives (or after it was leaked) its lock's `release` is refused, and its thread may
/// not fork with `StartMethod::Fork` (or fork an exchange or pool worker):
/// [`Error::ForkWhileLocked`](crate::Error::ForkWhileLocked). A copy that reaches a forked
/// child anyway releases nothing when dropped there.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing `&ConditionGuard` between threads gives access only to `&Condition`, which
// is `Sync`.
#[allow(unsafe_code)]
unsafe impl Sync for ConditionGuard<'_> {}

impl<'a> ConditionGuard<'a> {
    fn new(cond: &'a Condition) -> Self {
        sys::guard_made();
        ConditionGuard {
            cond,
            _not_send: PhantomData,
        }
    }

    /// Returns the condition whose lock this guard holds.
    pub fn condition(&self) -> &'a Condition {
        self.cond
    }
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard").finish_non_exhaustive()
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        sys::guard_dropped();
        // Releases only the calling thread's hold: a copy in a forked child releases nothing.
        self.cond.lock.unlock();
    }
}

#[cfg(all(test, not(shmproc_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn threads_ping_pong() {
        let cond = Condition::new().unwrap_or_else(|e| panic!("{e}"));
        let turn = Arc::new(AtomicU32::new(0));
        let (c2, t2) = (cond.clone(), Arc::clone(&turn));
        let peer = std::thread::spawn(move || {
            let mut g = c2.lock().unwrap_or_else(|_| panic!("lock"));
            loop {
                while t2.load(Ordering::SeqCst) == 0 {
                    c2.wait(&mut g).unwrap_or_else(|e| panic!("{e}"));
                }
                if t2.load(Ordering::SeqCst) == 2 {
                    return;
                }
                t2.store(0, Ordering::SeqCst);
                c2.notify(1).unwrap_or_else(|e| panic!("{e}"));
            }
        });
        let mut g = cond.lock().unwrap_or_else(|_| panic!("lock"));
        for i in 0..20_000 {
            turn.store(1, Ordering::SeqCst);
            cond.notify(1).unwrap_or_else(|e| panic!("{e}"));
            while turn.load(Ordering::SeqCst) == 1 {
                let w = cond.words();
                assert!(
                    cond.wait_timeout(&mut g, Duration::from_secs(5))
                        .unwrap_or(false),
                    "round {i}: seq/sleepers {:#x} waiters {} signals {}",
                    w.futex.load(Ordering::SeqCst),
                    w.waiters.load(Ordering::SeqCst),
                    w.signals.load(Ordering::SeqCst)
                );
            }
        }
        turn.store(2, Ordering::SeqCst);
        cond.notify(1).unwrap_or_else(|e| panic!("{e}"));
        drop(g);
        peer.join().unwrap_or_else(|_| panic!("peer"));
    }
}
