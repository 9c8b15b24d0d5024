//! The per-process table of attached segments, by identity.
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
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

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

/// Returns every segment attached in this process.
pub(crate) fn all() -> Vec<Arc<SegmentInner>> {
    let map = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    map.as_ref()
        .map(|m| m.values().filter_map(Weak::upgrade).collect())
        .unwrap_or_default()
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
