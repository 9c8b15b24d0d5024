//! The per-process table of attached segments, and the default heap.
//!
//! Handles cross process boundaries as tokens that name their segment by its 64-bit identity.
//! When a token is decoded, the identity is looked up here; a segment is registered when it is
//! created, opened or attached from a descriptor, and unregistered when its last handle in this
//! process is dropped.
//!
//! While a value is being serialized for another process, [`collect`] records every segment
//! its handles refer to; `transfer::Envelope::seal` (its only caller) makes those segments
//! travel with the value's bytes.

use super::{Segment, SegmentInner};
use crate::error::{Error, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

static REGISTRY: Mutex<Option<HashMap<u64, Weak<SegmentInner>>>> = Mutex::new(None);

pub(crate) fn register(inner: &Arc<SegmentInner>) {
    let mut map = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    map.get_or_insert_with(HashMap::new)
        .insert(inner.id(), Arc::downgrade(inner));
}

pub(crate) fn lookup(id: u64) -> Option<Arc<SegmentInner>> {
    let map = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    map.as_ref()?.get(&id)?.upgrade()
}

pub(crate) fn unregister(id: u64) {
    let mut map = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(map) = map.as_mut()
        && map.get(&id).is_some_and(|w| w.strong_count() == 0)
    {
        map.remove(&id);
    }
}

thread_local! {
    static COLLECTOR: RefCell<Option<Vec<Segment>>> = const { RefCell::new(None) };
}

/// Runs `f` and returns, with its result, every segment whose handles `f` serialized, sorted by
/// identity and without duplicates. Collections nest: an inner one does not leak into the
/// outer one.
///
/// The segment half of the transfer envelope: only `transfer::Envelope::seal` calls it.
pub(crate) fn collect<R>(f: impl FnOnce() -> R) -> (R, Vec<Segment>) {
    let outer = COLLECTOR.with(|c| c.borrow_mut().replace(Vec::new()));
    let r = f();
    let found = COLLECTOR.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    let mut found = found.unwrap_or_default();
    found.sort_by_key(Segment::id);
    found.dedup_by_key(|s| s.id());
    (r, found)
}

/// Records that a handle in `inner` is being serialized (no-op outside [`collect`]).
pub(crate) fn note_serialized(inner: &Arc<SegmentInner>) {
    COLLECTOR.with(|c| {
        if let Some(v) = c.borrow_mut().as_mut() {
            v.push(Segment {
                inner: Arc::clone(inner),
            });
        }
    });
}

/// Default size of the default heap: 1 GiB of address space (memory is used only as touched).
pub(crate) const DEFAULT_HEAP_LEN: u64 = 1 << 30;

static DEFAULT: OnceLock<Segment> = OnceLock::new();
static DEFAULT_LEN: Mutex<Option<u64>> = Mutex::new(None);

/// Sets the size of the default heap; effective only before its first use.
///
/// The environment variable `SHMPROC_HEAP_SIZE` (bytes) does the same without code.
/// Returns `false` if the default heap exists already.
pub fn set_default_heap_size(len: u64) -> bool {
    if DEFAULT.get().is_some() {
        return false;
    }
    *DEFAULT_LEN.lock().unwrap_or_else(PoisonError::into_inner) = Some(len);
    true
}

/// Returns the default heap: the segment that `Value::new`, `Array::new`, `Lock::new` and the
/// other constructors without `_in` allocate from. Created on first use; a child process
/// started by shmproc shares its parent's.
///
/// # Errors
/// As for [`Segment::create`]; [`Error::NotInitialized`] in a child process whose `main` did
/// not call `shmproc::init()` (it would otherwise get a heap of its own, unseen by its parent).
pub fn default_segment() -> Result<Segment> {
    if let Some(s) = DEFAULT.get() {
        return Ok(s.clone());
    }
    check_initialized()?;
    let len = DEFAULT_LEN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .or_else(|| {
            std::env::var("SHMPROC_HEAP_SIZE")
                .ok()
                .and_then(|s| s.trim().parse().ok())
        })
        .unwrap_or(DEFAULT_HEAP_LEN);
    let seg = Segment::create(len)?;
    Ok(DEFAULT.get_or_init(|| seg).clone())
}

/// Makes `seg` this process's default heap (a child adopting its parent's). Returns `false`
/// if a default heap exists already.
pub(crate) fn adopt_default_segment(seg: Segment) -> bool {
    DEFAULT.set(seg).is_ok()
}

/// The environment variable through which shmproc hands a spawned child its start-up message.
pub(crate) const CHILD_ENV: &str = "SHMPROC_CHILD";

static INITIALIZED: OnceLock<()> = OnceLock::new();

/// Records that `shmproc::init()` ran in this process.
pub(crate) fn mark_initialized() {
    let _ = INITIALIZED.set(());
}

/// Fails with [`Error::NotInitialized`] in a process that shmproc started as a child but whose
/// `main` never called `shmproc::init()`: such a process would redo its parent's work (and
/// start children of its own, recursively) instead of running its target.
pub(crate) fn check_initialized() -> Result<()> {
    if INITIALIZED.get().is_none() && std::env::var_os(CHILD_ENV).is_some() {
        return Err(Error::NotInitialized);
    }
    Ok(())
}
