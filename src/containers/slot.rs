//! `Slot<T>`: one serde value in the shared heap.
//!
//! The root word names the entry holding the encoded value; `set` publishes a new entry in
//! that one word (protocol op `SET` on the root) and frees the old one.

use super::protocol::{self, Held, ROOT_W};
use super::store::{self, Core, Hooks, ROOT, Wait};
use crate::codec;
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::heap::ObjectToken;
use crate::loom::Ordering;
use crate::segment::Segment;
use crate::sync::LockGuard;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

/// One value of any serde type in shared memory, for what is not [`Shareable`](crate::Shareable):
/// strings, vectors, enums (`multiprocessing`'s `manager.Value('s', …)` or a `Namespace`
/// field, without the manager).
///
/// Reads return copies; [`update_with`](Slot::update_with) reads, changes and writes under one
/// acquisition of the slot's robust lock. `Clone` gives another handle; handles pass to child
/// processes and re-attach, checking the kind and the type's name. A process killed inside
/// `set` leaves either the old or the new value, never a torn one.
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// let s = shmproc::Slot::new("hello".to_owned())?;
/// s.update_with(|v| v.push_str(" world"))?;
/// assert_eq!(s.get()?, "hello world");
/// assert_eq!(s.replace("bye".to_owned())?, "hello world");
/// # Ok(()) }
/// ```
pub struct Slot<T> {
    core: Core,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Slot {
            core: self.core.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("type", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

crate::handle::single_token_handle!(
    [T] Slot<T>, "Slot", object: |s| s.core.object(),
    from_token_errors:
    /// A slot of other element types is `TypeMismatch` too.
);

fn fingerprint<T>() -> u64 {
    store::kind_fingerprint("shmproc::Slot", &[std::any::type_name::<T>()])
}

const HOOKS: Hooks = Hooks { destroy, repair };

fn destroy(core: &Core, _g: &LockGuard<'_>) {
    let root = core.word(ROOT).swap(0, Ordering::Relaxed);
    let _ = core.free_entry(root);
}

fn repair(_core: &Core, _g: &LockGuard<'_>) -> Result<()> {
    Ok(())
}

impl<T: Serialize + DeserializeOwned> Slot<T> {
    /// Creates a slot holding `value` in the default heap.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`]; [`Error::Codec`] if the value does not encode; errors creating
    /// the default heap.
    pub fn new(value: T) -> Result<Self> {
        Self::new_in(&store::default_segment()?, value)
    }

    /// Creates a slot holding `value` in `segment`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`]; [`Error::Codec`] if the value does not encode.
    pub fn new_in(segment: &Segment, value: T) -> Result<Self> {
        // Read back any number of times: a proxy in it takes a lasting pin.
        let bytes = crate::manager::storing(|| codec::to_bytes(&value))?;
        let core = Core::create(segment, fingerprint::<T>(), HOOKS)?;
        let entry = core.alloc_entry(&[&bytes])?;
        // Release: a handle passed on after this sees the value.
        core.word(ROOT).store(entry, Ordering::Release);
        Ok(Slot {
            core,
            _t: PhantomData,
        })
    }

    /// Takes the slot's lock; blocks until it is free.
    ///
    /// # Errors
    /// [`Error::CorruptObject`] if repairing after a dead holder met a corrupt block.
    ///
    /// # Panics
    /// If the calling thread holds this slot's lock already.
    pub fn lock(&self) -> Result<SlotGuard<'_, T>> {
        match self.enter(Wait::Block)? {
            Some(g) => Ok(g),
            None => unreachable!("a blocking enter returns a guard or an error"),
        }
    }

    /// Takes the lock if it is free now; `Ok(None)` if another thread or process holds it.
    ///
    /// # Errors
    /// As for [`lock`](Slot::lock).
    pub fn try_lock(&self) -> Result<Option<SlotGuard<'_, T>>> {
        self.enter(Wait::Try)
    }

    /// Takes the lock, waiting at most `timeout`; `Ok(None)` if it timed out.
    ///
    /// # Errors
    /// As for [`lock`](Slot::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<Option<SlotGuard<'_, T>>> {
        self.enter(Wait::Timeout(timeout))
    }

    fn enter(&self, wait: Wait) -> Result<Option<SlotGuard<'_, T>>> {
        Ok(self.core.enter(wait)?.map(|g| SlotGuard { slot: self, g }))
    }

    /// Returns a copy of the value.
    ///
    /// # Errors
    /// [`Error::Codec`] if the value does not decode; [`Error::CorruptObject`].
    pub fn get(&self) -> Result<T> {
        self.lock()?.get()
    }

    /// Stores `value`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`]; [`Error::Codec`] if the value does not encode.
    pub fn set(&self, value: T) -> Result<()> {
        self.lock()?.set(&value)
    }

    /// Stores `value` and returns the previous value.
    ///
    /// # Errors
    /// As for [`get`](Slot::get) and [`set`](Slot::set).
    pub fn replace(&self, value: T) -> Result<T> {
        self.lock()?.replace(&value)
    }

    /// Reads, changes and writes the value under one acquisition of the lock.
    ///
    /// `f` runs with the lock held: it must not use this slot (that panics).
    ///
    /// # Errors
    /// As for [`replace`](Slot::replace).
    pub fn update_with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        self.lock()?.update_with(f)
    }
}

impl<T> Slot<T> {
    /// Re-attaches a slot from its token.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`] if the token names another kind of object or a slot of another
    /// type; [`Error::ObjectGone`], [`Error::UnknownSegment`], [`Error::CorruptObject`].
    fn attach(token: &ObjectToken) -> Result<Self> {
        let core = Core::attach(
            token,
            fingerprint::<T>(),
            std::any::type_name::<Self>(),
            HOOKS,
        )?;
        Ok(Slot {
            core,
            _t: PhantomData,
        })
    }
}

/// Holds a [`Slot`]'s lock.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct SlotGuard<'a, T> {
    slot: &'a Slot<T>,
    g: LockGuard<'a>,
}

impl<T> fmt::Debug for SlotGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotGuard").finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned> SlotGuard<'_, T> {
    fn core(&self) -> &Core {
        &self.slot.core
    }

    /// Returns a copy of the value.
    ///
    /// # Errors
    /// As for [`Slot::get`].
    pub fn get(&self) -> Result<T> {
        let root = self.core().word(ROOT).load(Ordering::Acquire);
        codec::from_bytes(self.core().entry(&self.g, root)?)
    }

    /// Stores `value`.
    ///
    /// # Errors
    /// As for [`Slot::set`].
    pub fn set(&self, value: &T) -> Result<()> {
        let bytes = crate::manager::storing(|| codec::to_bytes(value))?;
        let old = self.core().word(ROOT).load(Ordering::Acquire);
        let new = self.core().prepare_entry(&self.g, &[&bytes])?;
        let held = Held {
            core: self.core(),
            guard: &self.g,
        };
        protocol::replace_entry(&held, self.core().intent_words(), ROOT_W, old, new)
    }

    /// Stores `value` and returns the previous value.
    ///
    /// # Errors
    /// As for [`Slot::replace`].
    pub fn replace(&self, value: &T) -> Result<T> {
        let old = self.get()?;
        self.set(value)?;
        Ok(old)
    }

    /// Reads, changes and writes the value.
    ///
    /// # Errors
    /// As for [`Slot::update_with`].
    pub fn update_with<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        let mut v = self.get()?;
        let out = f(&mut v);
        self.set(&v)?;
        Ok(out)
    }
}
