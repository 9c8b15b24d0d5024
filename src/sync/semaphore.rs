//! `Semaphore` and `BoundedSemaphore`: process-shared counting semaphores.
//!
//! # State table
//!
//! | word | name     | meaning                                          | written by        |
//! |------|----------|--------------------------------------------------|-------------------|
//! | 0    | `state`  | bits 0..20 `value`, bits 20..32 `sleepers`; the futex word | every operation, by CAS |
//! | 1    | (unused) | reserved, 0                                      | nobody            |
//! | 2    | `limit`  | the bound (`BoundedSemaphore`) or `VALUE_MAX`    | the creator only  |
//!
//! Transitions, each one CAS on `state`: acquire `value v>0 → v-1`; release `v → v+1` (refused
//! at the bound), followed by a wake of one sleeper if the CAS saw `sleepers > 0`; a waiter
//! that finds `value == 0` registers (`sleepers + 1`), sleeps while the word is exactly what
//! its CAS wrote, and deregisters (`sleepers − 1`) when it wakes. Because the count of
//! sleepers lives in the futex word itself, every release either sees the registration (and
//! wakes) or happens before it (and the waiter's CAS sees the new value): no lost wake-up,
//! with no cross-word ordering argument. `value` is limited to 2^20 − 1 and at most 4095
//! sleepers are registered; further waiters poll in sleep slices instead (the spin and the
//! slices are [`park`]'s).
//!
//! # Process death
//!
//! A semaphore does not record who acquired it (any process may release), so a holder that
//! dies is not detected: its unit is lost, exactly as in Python, and waiters for it wait until
//! their timeout. A *waiter* that dies registered leaves `sleepers` one too high: later
//! releases then make one futex-wake system call each that may wake nobody; nothing blocks or
//! miscounts.

use super::block::{Block, BlockKind};
use super::park::{self, Site, Slept, Slices};
use crate::error::{Error, Result};
use crate::heap::ObjectToken;
use crate::loom::{AtomicU32, Ordering};
use crate::segment::Segment;
use crate::sys::{self, Deadline};
use std::fmt;
use std::time::Duration;

/// The largest value a semaphore can hold.
pub(crate) const VALUE_MAX: u32 = (1 << 20) - 1;
const VALUE_MASK: u32 = VALUE_MAX;
const SLEEPER: u32 = 1 << 20;
const SLEEPERS_MAX: u32 = (1 << 12) - 1;

const STATE: usize = 0;
const LIMIT: usize = 2;

/// The semaphore algorithm over its word, without syscalls of its own.
pub(crate) mod algo {
    use super::*;

    /// Takes one unit if the value is positive.
    #[inline]
    pub(crate) fn try_acquire(state: &AtomicU32) -> bool {
        // Relaxed: a first look; the CAS below is what synchronizes.
        let mut s = state.load(Ordering::Relaxed);
        while s & VALUE_MASK > 0 {
            // Acquire: pairs with the release that produced the unit, so what the releaser
            // wrote before releasing is visible.
            match state.compare_exchange_weak(s, s - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
        false
    }

    /// Takes one unit, waiting until `deadline` (forever if `None`); whether it was taken.
    pub(crate) fn acquire(state: &AtomicU32, deadline: Option<&Deadline>) -> bool {
        if try_acquire(state) {
            return true;
        }
        let spun = park::spin_at(Site::Semaphore, || {
            // Relaxed: only a hint to retry the CAS.
            (state.load(Ordering::Relaxed) & VALUE_MASK > 0 && try_acquire(state)).then_some(())
        });
        if spun.is_some() {
            return true;
        }
        let mut polls = Slices::new();
        loop {
            if try_acquire(state) {
                return true;
            }
            if deadline.is_some_and(Deadline::has_passed) {
                return false;
            }
            // Relaxed: the registering CAS below re-reads the word.
            let s = state.load(Ordering::Relaxed);
            if s & VALUE_MASK > 0 {
                continue;
            }
            if s >> 20 >= SLEEPERS_MAX {
                // Too many sleepers to count: poll in sleep slices.
                let _ = park::sleep(state, s, deadline, &mut polls);
                continue;
            }
            // Relaxed: registering publishes nothing; the releaser reads the count from its
            // own CAS on this word.
            if state
                .compare_exchange(s, s + SLEEPER, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            // Nothing to check for liveness (a semaphore has no owner): sleep to the deadline.
            let slept = park::sleep(state, s + SLEEPER, deadline, &mut Slices::unsliced());
            // Relaxed: deregistering publishes nothing either.
            state.fetch_sub(SLEEPER, Ordering::Relaxed);
            if slept == Slept::TimedOut {
                return try_acquire(state);
            }
        }
    }

    /// Adds one unit unless that would pass `limit`; wakes one sleeper if there may be one.
    /// Returns `false` (changing nothing) at the limit.
    pub(crate) fn release(state: &AtomicU32, limit: u32) -> bool {
        // Relaxed: a first look; the CAS synchronizes.
        let mut s = state.load(Ordering::Relaxed);
        loop {
            if s & VALUE_MASK >= limit {
                return false;
            }
            // Release: the acquirer that takes this unit sees what was written before.
            match state.compare_exchange_weak(s, s + 1, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        if s >> 20 > 0 {
            sys::futex_wake(state, 1);
        }
        true
    }
}

macro_rules! semaphore_common {
    ($ty:ident, $kind:ident, $name:literal) => {
        pub(crate) struct $kind;

        impl BlockKind for $kind {
            const WORDS: usize = 3;
            const FINGERPRINT: u64 = crate::fingerprint::start($name, 12, 4);
            const NAME: &'static str = $name;
        }

        crate::handle::single_token_handle!(
            [] $ty, stringify!($ty), object: |s| s.block.object(),
            from_token_errors:
            /// A stored bound out of range is also `CorruptObject`.
        );

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                crate::handle::debug(self, f)
                    .field("value", &self.value())
                    .finish_non_exhaustive()
            }
        }

        impl $ty {
            fn value_word(&self) -> &AtomicU32 {
                self.block.word(STATE)
            }

            /// Takes one unit, blocking while the value is 0.
            pub fn acquire(&self) {
                algo::acquire(self.value_word(), None);
            }

            /// Takes one unit if the value is positive now; returns whether it did.
            pub fn try_acquire(&self) -> bool {
                algo::try_acquire(self.value_word())
            }

            /// Takes one unit, waiting at most `timeout` (monotonic, unaffected by signals);
            /// returns whether it did.
            pub fn acquire_timeout(&self, timeout: Duration) -> bool {
                let deadline = Deadline::after(timeout);
                algo::acquire(self.value_word(), Some(&deadline))
            }

            /// Returns the current value (a snapshot; Python's `get_value()`).
            pub fn value(&self) -> u32 {
                // Relaxed: a snapshot that orders nothing.
                self.value_word().load(Ordering::Relaxed) & VALUE_MASK
            }

            /// Re-attaches a semaphore from its token, checking its stored bound.
            fn attach(token: &ObjectToken) -> Result<$ty> {
                let block = Block::<$kind>::attach(token)?;
                // Relaxed: written once by the creator before the handle could be shared.
                let limit = block.word(LIMIT).load(Ordering::Relaxed);
                if limit == 0 || limit > VALUE_MAX {
                    return Err(Error::CorruptObject {
                        reason: "semaphore bound out of range",
                    });
                }
                Ok($ty { block })
            }

            fn create(segment: &Segment, value: u32, limit: u32) -> Result<$ty> {
                if value > limit {
                    return Err(Error::InvalidSize {
                        reason: "semaphore value above its maximum (2^20 - 1)",
                    });
                }
                Ok($ty {
                    block: Block::alloc(segment, &[value, 0, limit])?,
                })
            }
        }
    };
}

/// A counting semaphore shared between processes, like `multiprocessing.Semaphore`.
///
/// `acquire` takes a unit, blocking while the value is 0; `release` adds one, waking a waiter.
/// Any thread of any process may release (a semaphore has no owner). Taking a free unit or
/// releasing with nobody asleep takes no system call.
///
/// # Process death
///
/// A process that dies after acquiring never gives its unit back; this cannot be detected in
/// general (as in Python, the unit is simply lost), so waiters that counted on it wait until
/// their timeout; use [`acquire_timeout`](Semaphore::acquire_timeout) where a peer may crash.
/// A process that dies *waiting* costs nothing but one spare wake-up call per later release.
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// let sem = shmproc::Semaphore::new(2)?;
/// assert!(sem.try_acquire());
/// assert!(sem.try_acquire());
/// assert!(!sem.try_acquire());
/// sem.release()?;
/// assert_eq!(sem.value(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Semaphore {
    block: Block<SemaphoreKind>,
}

semaphore_common!(Semaphore, SemaphoreKind, "shmproc::Semaphore");

impl Semaphore {
    /// Creates a semaphore with initial `value` in the default heap.
    ///
    /// # Errors
    /// As for [`Semaphore::new_in`], and as for creating the default heap.
    pub fn new(value: u32) -> Result<Semaphore> {
        Semaphore::new_in(&crate::runtime::default_segment()?, value)
    }

    /// Creates a semaphore with initial `value` in `segment`.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] if `value` exceeds 2^20 - 1; [`Error::OutOfMemory`].
    pub fn new_in(segment: &Segment, value: u32) -> Result<Semaphore> {
        Semaphore::create(segment, value, VALUE_MAX)
    }

    /// Adds one unit and wakes one waiter, if any.
    ///
    /// # Errors
    /// [`Error::SemaphoreOverRelease`] if the value is at its maximum, 2^20 - 1.
    pub fn release(&self) -> Result<()> {
        if algo::release(self.value_word(), VALUE_MAX) {
            Ok(())
        } else {
            Err(Error::SemaphoreOverRelease { limit: VALUE_MAX })
        }
    }
}

/// A semaphore that may not be released past its initial value, like
/// `multiprocessing.BoundedSemaphore`.
///
/// Everything else, including what process death means, is as for [`Semaphore`].
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// let sem = shmproc::BoundedSemaphore::new(1)?;
/// sem.acquire();
/// sem.release()?;
/// assert!(matches!(sem.release(), Err(shmproc::Error::SemaphoreOverRelease { limit: 1 })));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    block: Block<BoundedSemaphoreKind>,
}

semaphore_common!(
    BoundedSemaphore,
    BoundedSemaphoreKind,
    "shmproc::BoundedSemaphore"
);

impl BoundedSemaphore {
    /// Creates a bounded semaphore with initial (and maximum) `value` in the default heap.
    ///
    /// # Errors
    /// As for [`BoundedSemaphore::new_in`], and as for creating the default heap.
    pub fn new(value: u32) -> Result<BoundedSemaphore> {
        BoundedSemaphore::new_in(&crate::runtime::default_segment()?, value)
    }

    /// Creates a bounded semaphore with initial (and maximum) `value` in `segment`.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] if `value` is 0 or exceeds 2^20 - 1; [`Error::OutOfMemory`].
    pub fn new_in(segment: &Segment, value: u32) -> Result<BoundedSemaphore> {
        if value == 0 {
            return Err(Error::InvalidSize {
                reason: "a bounded semaphore needs a positive bound",
            });
        }
        BoundedSemaphore::create(segment, value, value)
    }

    /// Returns the bound: the initial value.
    pub fn limit(&self) -> u32 {
        // Relaxed: written once by the creator before the handle could be shared.
        self.block.word(LIMIT).load(Ordering::Relaxed)
    }

    /// Adds one unit and wakes one waiter, if any.
    ///
    /// # Errors
    /// [`Error::SemaphoreOverRelease`] if that would raise the value past its initial value
    /// (nothing changes).
    pub fn release(&self) -> Result<()> {
        let limit = self.limit();
        if algo::release(self.value_word(), limit) {
            Ok(())
        } else {
            Err(Error::SemaphoreOverRelease { limit })
        }
    }
}
