//! `List<T>`: a growable sequence in the shared heap.
//!
//! # Table layout
//!
//! The root table is `[len, e_0, e_1, …, e_{cap-1}]`: the length word, then one entry
//! reference per element. Words at positions `len` and past are not part of the list (they may
//! hold stale references of freed entries, which nothing reads).
//!
//! | mutation          | `W`                         | protocol op | frees on commit        |
//! |-------------------|-----------------------------|-------------|------------------------|
//! | push              | the length word (`e_len` written first) | `LEN` | —              |
//! | pop / truncate / clear | the length word        | `LEN`       | the cut entries        |
//! | set               | the element's word          | `SET`       | the old entry          |
//! | insert / remove / reverse / sort / grow | the root → a new table (words copied, entries not) | `SWAP` | the old table (and the removed entry) |

use super::protocol::{self, Held, Intent, Op, ROOT_W};
use super::store::{self, Core, Hooks, ROOT, Wait};
use crate::codec;
use crate::error::{Error, Result};
use crate::heap::ObjectToken;
use crate::loom::{AtomicU64, Ordering};
use crate::segment::Segment;
use crate::sync::LockGuard;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

const MIN_CAP: usize = 8;

/// The capacity a table of `cap` slots should have for `len` elements: `cap` itself unless
/// the list uses a quarter of it or less, then twice the length (at least [`MIN_CAP`]).
/// Halving only at a quarter keeps pushes and pops around one size from copying back and
/// forth.
fn fitted_cap(cap: usize, len: usize) -> usize {
    if cap > MIN_CAP && len <= cap / 4 {
        len.saturating_mul(2).next_power_of_two().max(MIN_CAP)
    } else {
        cap
    }
}

/// A list in shared memory that every process mapping its segment uses directly
/// (`multiprocessing`'s `manager.list()`, without the manager).
///
/// Elements are any serde type, stored encoded, one heap block each; reads return copies.
/// `Clone` gives another handle; handles pass to child processes and re-attach, checking the
/// kind and the element type's name (see [`Dict`](crate::Dict) for what that check can and
/// cannot tell apart).
///
/// Every operation runs under the list's robust lock; [`lock`](List::lock),
/// [`try_lock`](List::try_lock) and [`lock_timeout`](List::lock_timeout) give a guard for
/// several operations under one acquisition. A process killed inside any mutation leaves the
/// list consistent: that mutation happened or it did not (see the update protocol).
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// let l = shmproc::List::<u32>::new()?;
/// l.extend(0..5)?;
/// l.reverse()?;
/// assert_eq!(l.to_vec()?, [4, 3, 2, 1, 0]);
/// assert_eq!(l.pop()?, Some(0));
/// l.sort()?;
/// assert_eq!(l.get(0)?, Some(1));
/// # Ok(()) }
/// ```
pub struct List<T> {
    core: Core,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for List<T> {
    fn clone(&self) -> Self {
        List {
            core: self.core.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for List<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("List")
            .field("element", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

crate::handle::single_token_handle!(
    [T] List<T>, "List", object: |s| s.core.object(),
    from_token_errors:
    /// A list of other element types is `TypeMismatch` too.
);

fn fingerprint<T>() -> u64 {
    store::kind_fingerprint("shmproc::List", &[std::any::type_name::<T>()])
}

const HOOKS: Hooks = Hooks { destroy, repair };

fn destroy(core: &Core, g: &LockGuard<'_>) {
    let root = core.word(ROOT).load(Ordering::Acquire);
    // A table too short for its length word (a scribbled block header) names no entries.
    if let Ok(Some(len_word)) = core.table(g, root).map(|words| words.first()) {
        let len = len_word.load(Ordering::Relaxed);
        let _ = protocol::Blocks::free_list_range(&Held { core, guard: g }, 0, len);
    }
    core.word(ROOT).store(0, Ordering::Relaxed);
    let _ = core.free_table(root);
}

fn repair(_core: &Core, _g: &LockGuard<'_>) -> Result<()> {
    // A list has no derived state: its length is the published word.
    Ok(())
}

impl<T: Serialize + DeserializeOwned> List<T> {
    /// Creates an empty list in the default heap.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the heap is full; errors creating the default heap.
    pub fn new() -> Result<Self> {
        Self::new_in(&store::default_segment()?)
    }

    /// Creates an empty list in `segment`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the segment's heap is full.
    pub fn new_in(segment: &Segment) -> Result<Self> {
        let core = Core::create(segment, fingerprint::<T>(), HOOKS)?;
        let table = core.alloc_table(MIN_CAP + 1)?;
        // Release: a handle passed on after this sees the table.
        core.word(ROOT).store(table, Ordering::Release);
        Ok(List {
            core,
            _t: PhantomData,
        })
    }

    /// Takes the list's lock for several operations; blocks until it is free.
    ///
    /// # Errors
    /// [`Error::CorruptObject`] if repairing after a dead holder met a corrupt block.
    ///
    /// # Panics
    /// If the calling thread holds this list's lock already.
    pub fn lock(&self) -> Result<ListGuard<'_, T>> {
        match self.enter(Wait::Block)? {
            Some(g) => Ok(g),
            None => unreachable!("a blocking enter returns a guard or an error"),
        }
    }

    /// Takes the lock if it is free now; `Ok(None)` if another thread or process holds it.
    ///
    /// # Errors
    /// As for [`lock`](List::lock).
    pub fn try_lock(&self) -> Result<Option<ListGuard<'_, T>>> {
        self.enter(Wait::Try)
    }

    /// Takes the lock, waiting at most `timeout`; `Ok(None)` if it timed out.
    ///
    /// # Errors
    /// As for [`lock`](List::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<Option<ListGuard<'_, T>>> {
        self.enter(Wait::Timeout(timeout))
    }

    fn enter(&self, wait: Wait) -> Result<Option<ListGuard<'_, T>>> {
        Ok(self.core.enter(wait)?.map(|g| ListGuard { list: self, g }))
    }

    /// Appends `value`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`]; [`Error::Codec`] if the value does not encode;
    /// [`Error::CorruptObject`] for a corrupt table.
    pub fn push(&self, value: T) -> Result<()> {
        self.lock()?.push(&value)
    }

    /// Removes and returns the last element.
    ///
    /// # Errors
    /// [`Error::Codec`] if the element does not decode (it is then left in place);
    /// [`Error::CorruptObject`].
    pub fn pop(&self) -> Result<Option<T>> {
        self.lock()?.pop()
    }

    /// Returns a copy of element `i`.
    ///
    /// # Errors
    /// As for [`pop`](List::pop).
    pub fn get(&self, i: usize) -> Result<Option<T>> {
        self.lock()?.get(i)
    }

    /// Replaces element `i`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`]; as for [`push`](List::push).
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        self.lock()?.set(i, &value)
    }

    /// Inserts `value` at position `i` (`i <= len`), shifting the rest up.
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`]; as for [`push`](List::push).
    pub fn insert(&self, i: usize, value: T) -> Result<()> {
        self.lock()?.insert(i, &value)
    }

    /// Removes and returns element `i`, shifting the rest down.
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`]; [`Error::OutOfMemory`] if the shifted table does not fit
    /// (the list is then unchanged; removing the last element needs no memory); as for
    /// [`pop`](List::pop).
    pub fn remove(&self, i: usize) -> Result<T> {
        self.lock()?.remove(i)
    }

    /// Appends every item under one acquisition of the lock.
    ///
    /// Each append is its own crash-consistent step: a process killed in the middle leaves
    /// the items before the current one appended.
    ///
    /// # Errors
    /// As for [`push`](List::push).
    pub fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        let g = self.lock()?;
        for v in items {
            g.push(&v)?;
        }
        Ok(())
    }

    /// Returns the number of elements.
    ///
    /// # Errors
    /// As for [`lock`](List::lock); [`Error::CorruptObject`].
    pub fn len(&self) -> Result<usize> {
        self.lock()?.len()
    }

    /// Returns whether the list is empty.
    ///
    /// # Errors
    /// As for [`len`](List::len).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Shortens the list to `n` elements (no-op if it is not longer).
    ///
    /// # Errors
    /// [`Error::CorruptObject`].
    pub fn truncate(&self, n: usize) -> Result<()> {
        self.lock()?.truncate(n)
    }

    /// Removes every element and gives back the grown table (the list keeps room for a few
    /// elements). `truncate`, `pop` and `remove` also halve the table once the list uses a
    /// quarter of it or less.
    ///
    /// # Errors
    /// [`Error::CorruptObject`].
    pub fn clear(&self) -> Result<()> {
        self.lock()?.truncate(0)
    }

    /// Returns a snapshot of the elements.
    ///
    /// # Errors
    /// [`Error::Codec`] if an element does not decode; [`Error::CorruptObject`].
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.lock()?.to_vec()
    }

    /// Returns an iterator over a snapshot of the elements.
    ///
    /// # Errors
    /// As for [`to_vec`](List::to_vec).
    pub fn iter(&self) -> Result<std::vec::IntoIter<T>> {
        Ok(self.to_vec()?.into_iter())
    }

    /// Reverses the list in place.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] for the reordered table; [`Error::CorruptObject`].
    pub fn reverse(&self) -> Result<()> {
        self.lock()?.reverse()
    }

    /// Sorts the list (stable).
    ///
    /// # Errors
    /// As for [`reverse`](List::reverse); [`Error::Codec`] if an element does not decode.
    pub fn sort(&self) -> Result<()>
    where
        T: Ord,
    {
        self.lock()?.sort()
    }

    /// Returns the position of the first element equal to `value`.
    ///
    /// # Errors
    /// As for [`to_vec`](List::to_vec).
    pub fn index_of(&self, value: &T) -> Result<Option<usize>>
    where
        T: PartialEq,
    {
        self.lock()?.index_of(value)
    }
}

impl<T> List<T> {
    /// Re-attaches a list from its token.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`] if the token names another kind of object or a list of another
    /// element type; [`Error::ObjectGone`], [`Error::UnknownSegment`],
    /// [`Error::CorruptObject`].
    fn attach(token: &ObjectToken) -> Result<Self> {
        let core = Core::attach(
            token,
            fingerprint::<T>(),
            std::any::type_name::<Self>(),
            HOOKS,
        )?;
        Ok(List {
            core,
            _t: PhantomData,
        })
    }
}

/// Holds a [`List`]'s lock: every operation on the guard runs under that one acquisition.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct ListGuard<'a, T> {
    list: &'a List<T>,
    g: LockGuard<'a>,
}

impl<T> fmt::Debug for ListGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListGuard").finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned> ListGuard<'_, T> {
    fn core(&self) -> &Core {
        &self.list.core
    }

    fn held(&self) -> Held<'_, '_> {
        Held {
            core: &self.list.core,
            guard: &self.g,
        }
    }

    /// Returns (root, words, len), checking the length against the table.
    fn root(&self) -> Result<(u64, &[AtomicU64], usize)> {
        let (root, words) = self.core().root_table(&self.g)?;
        // A table shorter than two words (one whose block header was scribbled) is corrupt.
        let len = match words {
            [len, _, ..] => usize::try_from(len.load(Ordering::Relaxed)).unwrap_or(usize::MAX),
            _ => usize::MAX,
        };
        if len >= words.len() {
            return Err(Error::CorruptObject {
                reason: "list length past its table",
            });
        }
        Ok((root, words, len))
    }

    /// The number of element slots in the table.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> Result<usize> {
        Ok(self.root()?.1.len() - 1)
    }

    fn decode(&self, r: u64) -> Result<T> {
        codec::from_bytes(self.core().entry(&self.g, r)?)
    }

    fn blob(&self, value: &T) -> Result<u64> {
        // Read back any number of times: a proxy in it takes a lasting pin.
        let bytes = crate::manager::storing(|| codec::to_bytes(value))?;
        self.core().prepare_entry(&self.g, &[&bytes])
    }

    /// Publishes a new root table built by `fill` (which gets the new words and returns the
    /// new length), freeing the old table and `freed` on commit, `fresh` on rollback.
    fn swap_table(
        &self,
        cap: usize,
        freed: u64,
        fresh: u64,
        fill: impl FnOnce(&[AtomicU64]) -> Result<()>,
    ) -> Result<()> {
        let (root, _, _) = self.root()?;
        // Words past the new length are never read, so the copy needs no zero-filling.
        let new = match self.core().prepare_table(&self.g, cap + 1, false) {
            Ok(t) => t,
            Err(e) => {
                self.core().free_entry(fresh)?;
                return Err(e);
            }
        };
        let intent = Intent {
            op: Op::Swap,
            w_index: ROOT_W,
            old: root,
            new,
            a: freed,
            b: fresh,
        };
        let held = self.held();
        let iw = self.core().intent_words();
        protocol::arm(iw, &intent);
        let filled = self.core().table(&self.g, new).and_then(fill);
        if let Err(e) = filled {
            let _ = protocol::rollback(&held, &intent);
            protocol::clear(iw);
            return Err(e);
        }
        protocol::publish(self.core().word(ROOT), new);
        let r = protocol::commit(&held, &intent);
        protocol::clear(iw);
        r
    }

    /// Appends `value`.
    ///
    /// # Errors
    /// As for [`List::push`].
    pub fn push(&self, value: &T) -> Result<()> {
        let (_, words, len) = self.root()?;
        if len + 1 >= words.len() {
            let cap = (words.len() - 1) * 2;
            self.swap_table(cap, 0, 0, |nw| {
                for (d, s) in nw.iter().zip(words).take(len + 1) {
                    d.store(s.load(Ordering::Relaxed), Ordering::Relaxed);
                }
                Ok(())
            })?;
            return self.push(value);
        }
        let blob = self.blob(value)?;
        let intent = Intent {
            op: Op::Len,
            w_index: 0,
            old: len as u64,
            new: len as u64 + 1,
            a: 0,
            b: blob,
        };
        let iw = self.core().intent_words();
        protocol::arm(iw, &intent);
        // Past the length: not part of the list until the length word is published.
        words[len + 1].store(blob, Ordering::Relaxed);
        protocol::publish(&words[0], len as u64 + 1);
        protocol::clear(iw);
        Ok(())
    }

    /// Removes and returns the last element.
    ///
    /// # Errors
    /// As for [`List::pop`].
    pub fn pop(&self) -> Result<Option<T>> {
        let (_, words, len) = self.root()?;
        if len == 0 {
            return Ok(None);
        }
        let v = self.decode(words[len].load(Ordering::Relaxed))?;
        self.cut(len, len - 1)?;
        Ok(Some(v))
    }

    fn cut(&self, len: usize, n: usize) -> Result<()> {
        let intent = Intent {
            op: Op::Len,
            w_index: 0,
            old: len as u64,
            new: n as u64,
            a: 0,
            b: 0,
        };
        protocol::apply(&self.held(), self.core().intent_words(), &intent)?;
        self.shrink(n)
    }

    /// Gives back a table that has become four times larger than the list needs, so a list
    /// that grew and was emptied does not keep its high-water table (and an `insert` at the
    /// front does not copy it). Best effort: if the smaller table cannot be allocated, the
    /// list keeps the larger one.
    fn shrink(&self, len: usize) -> Result<()> {
        let (_, words, _) = self.root()?;
        let cap = words.len() - 1;
        let fitted = fitted_cap(cap, len);
        if fitted == cap {
            return Ok(());
        }
        match self.swap_table(fitted, 0, 0, |nw| {
            nw[0].store(len as u64, Ordering::Relaxed);
            for (d, s) in nw[1..].iter().zip(&words[1..=len]) {
                d.store(s.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            Ok(())
        }) {
            Err(Error::OutOfMemory { .. }) => Ok(()),
            r => r,
        }
    }

    /// Shortens the list to `n` elements.
    ///
    /// # Errors
    /// As for [`List::truncate`].
    pub fn truncate(&self, n: usize) -> Result<()> {
        let (_, _, len) = self.root()?;
        if n < len {
            self.cut(len, n)?;
        }
        Ok(())
    }

    /// Returns a copy of element `i`.
    ///
    /// # Errors
    /// As for [`List::get`].
    pub fn get(&self, i: usize) -> Result<Option<T>> {
        let (_, words, len) = self.root()?;
        if i >= len {
            return Ok(None);
        }
        self.decode(words[i + 1].load(Ordering::Relaxed)).map(Some)
    }

    /// Replaces element `i`.
    ///
    /// # Errors
    /// As for [`List::set`].
    pub fn set(&self, i: usize, value: &T) -> Result<()> {
        let (_, words, len) = self.root()?;
        if i >= len {
            return Err(Error::IndexOutOfBounds { index: i, len });
        }
        let blob = self.blob(value)?;
        let old = words[i + 1].load(Ordering::Relaxed);
        protocol::replace_entry(
            &self.held(),
            self.core().intent_words(),
            i as u64 + 1,
            old,
            blob,
        )
    }

    /// Inserts `value` at position `i`.
    ///
    /// # Errors
    /// As for [`List::insert`].
    pub fn insert(&self, i: usize, value: &T) -> Result<()> {
        let (_, words, len) = self.root()?;
        if i > len {
            return Err(Error::IndexOutOfBounds { index: i, len });
        }
        if i == len {
            return self.push(value);
        }
        let blob = self.blob(value)?;
        let cap = (words.len() - 1).max(len + 1).next_power_of_two();
        self.swap_table(cap, 0, blob, |nw| {
            nw[0].store(len as u64 + 1, Ordering::Relaxed);
            for j in 0..i {
                nw[j + 1].store(words[j + 1].load(Ordering::Relaxed), Ordering::Relaxed);
            }
            nw[i + 1].store(blob, Ordering::Relaxed);
            for j in i..len {
                nw[j + 2].store(words[j + 1].load(Ordering::Relaxed), Ordering::Relaxed);
            }
            Ok(())
        })
    }

    /// Removes and returns element `i`.
    ///
    /// # Errors
    /// As for [`List::remove`].
    pub fn remove(&self, i: usize) -> Result<T> {
        let (_, words, len) = self.root()?;
        if i >= len {
            return Err(Error::IndexOutOfBounds { index: i, len });
        }
        let r = words[i + 1].load(Ordering::Relaxed);
        let v = self.decode(r)?;
        if i + 1 == len {
            self.cut(len, len - 1)?;
            return Ok(v);
        }
        self.swap_table(fitted_cap(words.len() - 1, len - 1), r, 0, |nw| {
            nw[0].store(len as u64 - 1, Ordering::Relaxed);
            let kept = words[1..=len].iter().enumerate().filter(|(j, _)| *j != i);
            for (d, (_, s)) in nw[1..].iter().zip(kept) {
                d.store(s.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            Ok(())
        })?;
        Ok(v)
    }

    /// Returns the number of elements.
    ///
    /// # Errors
    /// As for [`List::len`].
    pub fn len(&self) -> Result<usize> {
        Ok(self.root()?.2)
    }

    /// Returns whether the list is empty.
    ///
    /// # Errors
    /// As for [`List::len`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Returns a snapshot of the elements.
    ///
    /// # Errors
    /// As for [`List::to_vec`].
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let (_, words, len) = self.root()?;
        words[1..=len]
            .iter()
            .map(|w| self.decode(w.load(Ordering::Relaxed)))
            .collect()
    }

    /// Reverses the list in place.
    ///
    /// # Errors
    /// As for [`List::reverse`].
    pub fn reverse(&self) -> Result<()> {
        let (_, words, len) = self.root()?;
        self.swap_table(words.len() - 1, 0, 0, |nw| {
            nw[0].store(len as u64, Ordering::Relaxed);
            for (d, s) in nw[1..].iter().zip(words[1..=len].iter().rev()) {
                d.store(s.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            Ok(())
        })
    }

    /// Sorts the list (stable).
    ///
    /// # Errors
    /// As for [`List::sort`].
    pub fn sort(&self) -> Result<()>
    where
        T: Ord,
    {
        let (_, words, len) = self.root()?;
        let mut items = words[1..=len]
            .iter()
            .map(|w| {
                let r = w.load(Ordering::Relaxed);
                self.decode(r).map(|v| (v, r))
            })
            .collect::<Result<Vec<(T, u64)>>>()?;
        items.sort_by(|a, b| a.0.cmp(&b.0));
        self.swap_table(words.len() - 1, 0, 0, |nw| {
            nw[0].store(len as u64, Ordering::Relaxed);
            for (d, (_, r)) in nw[1..].iter().zip(&items) {
                d.store(*r, Ordering::Relaxed);
            }
            Ok(())
        })
    }

    /// Returns the position of the first element equal to `value`.
    ///
    /// # Errors
    /// As for [`List::index_of`].
    pub fn index_of(&self, value: &T) -> Result<Option<usize>>
    where
        T: PartialEq,
    {
        let (_, words, len) = self.root()?;
        for (i, w) in words[1..=len].iter().enumerate() {
            if self.decode(w.load(Ordering::Relaxed))? == *value {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }
}
