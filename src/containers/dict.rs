//! `Dict<K, V>`: a hash map in the shared heap.
//!
//! # Table layout
//!
//! The root table holds `cap` slots (a power of two, at least 8) of two words: `[entry, hash]`.
//! `entry` is 0 (empty: ends a probe), the tombstone (deleted: a probe goes on), or an entry
//! reference; `hash` is the key's hash, written before `entry` is published and meaningful
//! only while it is. Probing is linear. An entry blob is `[key length: u32 LE][key][value]`,
//! key and value encoded by the codec (postcard).
//!
//! | mutation           | `W`           | protocol op | frees on commit |
//! |--------------------|---------------|-------------|-----------------|
//! | insert a new key   | an empty or deleted slot's entry word | `SET` | — |
//! | replace a value    | the key's slot entry word | `SET` | the old entry |
//! | remove             | the key's slot entry word → tombstone | `SET` | the entry |
//! | grow / rehash      | the root → a new table (slot words copied, entries not) | `SWAP` | the old table |
//! | clear              | the root → an empty table | `CLEAR` | the old table and its entries |
//!
//! The live and deleted counts in the header are derived: updated after each mutation and
//! recounted from the table after an owner death.

use super::protocol::{self, Held, Intent, Op, ROOT_W};
use super::store::{self, Core, Hooks, LEN, ROOT, TOMBS, TOMBSTONE, Wait};
use crate::codec;
use crate::error::{Error, Result};
use crate::heap::ObjectToken;
use crate::loom::{AtomicU64, Ordering};
use crate::segment::Segment;
use crate::sync::LockGuard;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

const MIN_CAP: usize = 8;
/// Keys up to this many encoded bytes are encoded on the stack.
const INLINE_KEY: usize = 64;

/// A hash map in shared memory that every process mapping its segment uses directly, with no
/// server in the path (`multiprocessing`'s `manager.dict()`, without the manager).
///
/// Keys and values are any serde types; each operation encodes or decodes a copy, as a
/// managed dict does (`get` returns a copy, changing it changes nothing shared). `Clone` gives
/// another handle to the same dictionary; handles pass to child processes (they serialize to
/// a token and re-attach, checking kind and element types).
///
/// # Keys
///
/// Keys are compared by their encoded bytes, and hashed from them. That equals `K`'s own `Eq`
/// for keys whose encoding is canonical: integers, `bool`, `char`, strings, byte vectors,
/// tuples, arrays, `Option`, enums and structs of such, and `BTreeMap`/`BTreeSet`. It is not
/// for `HashMap`/`HashSet` keys (their encoding follows iteration order) nor for floats as
/// Python sees them (`0.0` and `-0.0` are different keys here; each NaN bit pattern is its own
/// key). A lookup by a borrowed form (`&str` for `String`) works when the borrowed form
/// encodes the same, as `str`/`String` and `[T]`/`Vec<T>` do.
///
/// # Type checks
///
/// Serde types carry no layout fingerprint, so attaching checks the kind and the element
/// types' names (`std::any::type_name`): a `Dict<String, u32>` never attaches as a
/// `Dict<String, i64>` or a `List<u32>`, but two builds whose types have the same names and
/// different encodings are not told apart.
///
/// # Locking and crashes
///
/// Every operation runs under the dictionary's robust [`Lock`](crate::Lock); [`lock`](Dict::lock),
/// [`try_lock`](Dict::try_lock) and [`lock_timeout`](Dict::lock_timeout) give a guard for
/// several operations under one acquisition (and the non-blocking and timed forms of every
/// operation). A process killed inside any mutation leaves the dictionary consistent: the
/// next user finishes or undoes that one mutation (see the module docs of the update protocol)
/// and is not told. The entry or table a mutation allocates is recorded in the dictionary by
/// the very heap transaction that allocates it, so the next user frees it if the mutation
/// never published it: nothing the dead process prepared is lost.
///
/// Values that are handles (a `List`, a `Queue`) are stored as tokens: mutations through the
/// inner handle are visible to all, and some handle must stay alive for the stored one to
/// attach (else [`Error::ObjectGone`]).
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// let d = shmproc::Dict::<String, u32>::new()?;
/// d.insert("a".to_owned(), 1)?;
/// d.update_with("a", |v| *v.get_or_insert(0) += 10)?;
/// assert_eq!(d.get("a")?, Some(11));
/// assert_eq!(d.remove("a")?, Some(11));
/// assert!(d.is_empty()?);
/// # Ok(()) }
/// ```
pub struct Dict<K, V> {
    core: Core,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Dict<K, V> {
    fn clone(&self) -> Self {
        Dict {
            core: self.core.clone(),
            _t: PhantomData,
        }
    }
}

impl<K, V> fmt::Debug for Dict<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dict")
            .field("key", &std::any::type_name::<K>())
            .field("value", &std::any::type_name::<V>())
            .finish_non_exhaustive()
    }
}

crate::handle::single_token_handle!(
    [K, V] Dict<K, V>, "Dict", object: |s| s.core.object(),
    from_token_errors:
    /// A dictionary of other element types is `TypeMismatch` too.
);

fn fingerprint<K, V>() -> u64 {
    store::kind_fingerprint(
        "shmproc::Dict",
        &[std::any::type_name::<K>(), std::any::type_name::<V>()],
    )
}

const HOOKS: Hooks = Hooks { destroy, repair };

fn destroy(core: &Core, g: &LockGuard<'_>) {
    let root = core.word(ROOT).swap(0, Ordering::Relaxed);
    if root != 0 {
        let _ = protocol::Blocks::free_dict_entries(&Held { core, guard: g }, root);
        let _ = core.free_table(root);
    }
}

fn repair(core: &Core, g: &LockGuard<'_>) -> Result<()> {
    let root = core.word(ROOT).load(Ordering::Acquire);
    let words = core.table(g, root)?;
    let (mut live, mut tombs) = (0u64, 0u64);
    for slot in words.chunks_exact(2) {
        match slot[0].load(Ordering::Relaxed) {
            0 => {}
            TOMBSTONE => tombs += 1,
            _ => live += 1,
        }
    }
    core.word(LEN).store(live, Ordering::Relaxed);
    core.word(TOMBS).store(tombs, Ordering::Relaxed);
    Ok(())
}

/// Hashes an encoded key (FNV-1a, then a 64-bit finalizer so the low bits mix).
fn hash(bytes: &[u8]) -> u64 {
    let mut h = crate::fingerprint::fnv1a(bytes);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// Splits an entry blob into (key, value) bytes.
fn split(blob: &[u8]) -> Result<(&[u8], &[u8])> {
    let corrupt = || Error::CorruptObject {
        reason: "dictionary entry malformed",
    };
    let (len, rest) = blob.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let len = usize::try_from(u32::from_le_bytes(*len)).unwrap_or(usize::MAX);
    if len > rest.len() {
        return Err(corrupt());
    }
    Ok(rest.split_at(len))
}

/// An encoded key or value (postcard, as `codec::to_bytes` encodes it): in a buffer on the
/// stack when small, on the heap otherwise. Encoded in place (`encode`), so the buffer is
/// never moved.
struct Encoded {
    inline: [u8; INLINE_KEY],
    spill: Vec<u8>,
}

impl Encoded {
    fn new() -> Encoded {
        Encoded {
            inline: [0; INLINE_KEY],
            spill: Vec::new(),
        }
    }

    /// Encodes `v`; returns its bytes. Stored keys and values are read back any number of
    /// times: a proxy in one takes a lasting pin.
    fn encode<Q: Serialize + ?Sized>(&mut self, v: &Q) -> Result<&[u8]> {
        let stack = Stack {
            buf: &mut self.inline,
            n: 0,
        };
        match crate::manager::storing(|| postcard::serialize_with_flavor(v, stack)) {
            Ok(n) => Ok(self.inline.get(..n).unwrap_or(&[])),
            // Too long for the buffer, or an error that `to_bytes` reports in full.
            Err(_) => {
                self.spill = crate::manager::storing(|| codec::to_bytes(v))?;
                Ok(&self.spill)
            }
        }
    }
}

/// postcard output into a fixed buffer, short runs (a varint) copied byte by byte rather
/// than through a `memcpy` call.
struct Stack<'b> {
    buf: &'b mut [u8],
    n: usize,
}

impl postcard::ser_flavors::Flavor for Stack<'_> {
    type Output = usize;

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let full = || postcard::Error::SerializeBufferFull;
        let end = self.n.checked_add(data.len()).ok_or_else(full)?;
        let dst = self.buf.get_mut(self.n..end).ok_or_else(full)?;
        if data.len() <= 16 {
            for (d, s) in dst.iter_mut().zip(data) {
                *d = *s;
            }
        } else {
            dst.copy_from_slice(data);
        }
        self.n = end;
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        let slot = self
            .buf
            .get_mut(self.n)
            .ok_or(postcard::Error::SerializeBufferFull)?;
        *slot = data;
        self.n += 1;
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.n)
    }
}

impl<K, V> Dict<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// Creates an empty dictionary in the default heap.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the heap is full; errors creating the default heap.
    pub fn new() -> Result<Self> {
        Self::with_capacity_in(&store::default_segment()?, 0)
    }

    /// Creates an empty dictionary in `segment`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the segment's heap is full.
    pub fn new_in(segment: &Segment) -> Result<Self> {
        Self::with_capacity_in(segment, 0)
    }

    /// Creates an empty dictionary in the default heap with room for `n` entries before it
    /// grows.
    ///
    /// # Errors
    /// As for [`Dict::new`]; [`Error::InvalidSize`] if `n` is absurdly large.
    pub fn with_capacity(n: usize) -> Result<Self> {
        Self::with_capacity_in(&store::default_segment()?, n)
    }

    /// Creates an empty dictionary in `segment` with room for `n` entries.
    ///
    /// # Errors
    /// As for [`Dict::new_in`]; [`Error::InvalidSize`] if `n` is absurdly large.
    pub fn with_capacity_in(segment: &Segment, n: usize) -> Result<Self> {
        let cap = capacity_for(n)?;
        let core = Core::create(segment, fingerprint::<K, V>(), HOOKS)?;
        let table = core.alloc_table(cap * 2)?;
        // Release: a handle passed on after this sees the table.
        core.word(ROOT).store(table, Ordering::Release);
        Ok(Dict {
            core,
            _t: PhantomData,
        })
    }

    /// Takes the dictionary's lock for several operations; blocks until it is free.
    ///
    /// # Errors
    /// [`Error::CorruptObject`] if repairing after a dead holder met a corrupt block.
    ///
    /// # Panics
    /// If the calling thread holds this dictionary's lock already.
    pub fn lock(&self) -> Result<DictGuard<'_, K, V>> {
        match self.enter(Wait::Block)? {
            Some(g) => Ok(g),
            None => unreachable!("a blocking enter returns a guard or an error"),
        }
    }

    /// Takes the lock if it is free now; `Ok(None)` if another thread or process holds it.
    ///
    /// # Errors
    /// As for [`lock`](Dict::lock).
    pub fn try_lock(&self) -> Result<Option<DictGuard<'_, K, V>>> {
        self.enter(Wait::Try)
    }

    /// Takes the lock, waiting at most `timeout`; `Ok(None)` if it timed out.
    ///
    /// # Errors
    /// As for [`lock`](Dict::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<Option<DictGuard<'_, K, V>>> {
        self.enter(Wait::Timeout(timeout))
    }

    fn enter(&self, wait: Wait) -> Result<Option<DictGuard<'_, K, V>>> {
        Ok(self.core.enter(wait)?.map(|g| DictGuard { dict: self, g }))
    }

    /// Inserts `value` under `key`; returns the value it replaced.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`]; [`Error::Codec`] if a value does not encode or the old value
    /// does not decode; [`Error::CorruptObject`] for a corrupt table.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        self.lock()?.insert(key, value)
    }

    /// Returns a copy of the value under `key`.
    ///
    /// # Errors
    /// As for [`insert`](Dict::insert).
    pub fn get<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.lock()?.get(key)
    }

    /// Returns whether `key` is present.
    ///
    /// # Errors
    /// As for [`insert`](Dict::insert).
    pub fn contains_key<Q>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.lock()?.contains_key(key)
    }

    /// Returns the value under `key`, inserting `f()` first if it is absent.
    ///
    /// # Errors
    /// As for [`insert`](Dict::insert).
    pub fn get_or_insert_with(&self, key: K, f: impl FnOnce() -> V) -> Result<V> {
        self.lock()?.get_or_insert_with(key, f)
    }

    /// Removes `key`; returns its value.
    ///
    /// # Errors
    /// As for [`insert`](Dict::insert).
    pub fn remove<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.lock()?.remove(key)
    }

    /// Reads, changes and writes the value under `key` under one acquisition of the lock:
    /// `f` gets `None` for an absent key; leaving `Some` stores it, leaving `None` removes it.
    ///
    /// `f` runs with the lock held: it must not use this dictionary (that panics).
    ///
    /// # Errors
    /// As for [`insert`](Dict::insert).
    pub fn update_with<Q, R>(&self, key: &Q, f: impl FnOnce(&mut Option<V>) -> R) -> Result<R>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.lock()?.update_with(key, f)
    }

    /// Inserts every pair of `items` under one acquisition of the lock.
    ///
    /// Each insertion is its own crash-consistent step: a process killed in the middle leaves
    /// the pairs before the current one inserted.
    ///
    /// # Errors
    /// As for [`insert`](Dict::insert).
    pub fn update(&self, items: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let g = self.lock()?;
        for (k, v) in items {
            g.insert(k, v)?;
        }
        Ok(())
    }

    /// Returns the number of entries.
    ///
    /// # Errors
    /// As for [`lock`](Dict::lock).
    pub fn len(&self) -> Result<usize> {
        Ok(self.lock()?.len())
    }

    /// Returns whether the dictionary is empty.
    ///
    /// # Errors
    /// As for [`lock`](Dict::lock).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.lock()?.len() == 0)
    }

    /// Removes every entry (their memory returns to the heap).
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] for the new empty table.
    pub fn clear(&self) -> Result<()> {
        self.lock()?.clear()
    }

    /// Returns a snapshot of the keys (in table order).
    ///
    /// # Errors
    /// [`Error::Codec`] if a key does not decode; [`Error::CorruptObject`].
    pub fn keys(&self) -> Result<Vec<K>> {
        self.lock()?.keys()
    }

    /// Returns a snapshot of the values (in table order).
    ///
    /// # Errors
    /// As for [`keys`](Dict::keys).
    pub fn values(&self) -> Result<Vec<V>> {
        self.lock()?.values()
    }

    /// Returns a snapshot of the entries (in table order).
    ///
    /// # Errors
    /// As for [`keys`](Dict::keys).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        self.lock()?.items()
    }
}

impl<K, V> Dict<K, V> {
    /// Re-attaches a dictionary from its token.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`] if the token names another kind of object or a dictionary of
    /// other key or value types; [`Error::ObjectGone`], [`Error::UnknownSegment`],
    /// [`Error::CorruptObject`].
    fn attach(token: &ObjectToken) -> Result<Self> {
        let core = Core::attach(
            token,
            fingerprint::<K, V>(),
            std::any::type_name::<Self>(),
            HOOKS,
        )?;
        Ok(Dict {
            core,
            _t: PhantomData,
        })
    }
}

fn capacity_for(n: usize) -> Result<usize> {
    n.checked_mul(4)
        .map(|x| x / 3 + 1)
        .and_then(usize::checked_next_power_of_two)
        .map(|c| c.max(MIN_CAP))
        .ok_or(Error::InvalidSize {
            reason: "dictionary capacity too large",
        })
}

/// Holds a [`Dict`]'s lock: every operation on the guard runs under that one acquisition.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct DictGuard<'a, K, V> {
    dict: &'a Dict<K, V>,
    g: LockGuard<'a>,
}

impl<K, V> fmt::Debug for DictGuard<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DictGuard").finish_non_exhaustive()
    }
}

/// Where a probe ended.
struct Probe<'g> {
    /// The slot holding the key, its entry word, and the entry's value bytes (the entry was
    /// checked once, when its key was compared; the bytes live as long as the lock is held).
    found: Option<(usize, u64, &'g [u8])>,
    /// The first empty or deleted slot on the way.
    free: Option<usize>,
}

impl<K, V> DictGuard<'_, K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    fn core(&self) -> &Core {
        &self.dict.core
    }

    fn held(&self) -> Held<'_, '_> {
        Held {
            core: &self.dict.core,
            guard: &self.g,
        }
    }

    fn root(&self) -> Result<(u64, &[AtomicU64])> {
        let (root, words) = self.core().root_table(&self.g)?;
        if words.len() < MIN_CAP * 2 || !(words.len() / 2).is_power_of_two() {
            return Err(Error::CorruptObject {
                reason: "dictionary table has a bad capacity",
            });
        }
        Ok((root, words))
    }

    fn probe(&self, words: &[AtomicU64], h: u64, key: &[u8]) -> Result<Probe<'_>> {
        let cap = words.len() / 2;
        let mask = cap - 1;
        let mut i = (h as usize) & mask;
        let mut free = None;
        for _ in 0..cap {
            let r = words[2 * i].load(Ordering::Relaxed);
            if r == 0 {
                return Ok(Probe {
                    found: None,
                    free: free.or(Some(i)),
                });
            }
            if r == TOMBSTONE {
                free = free.or(Some(i));
            } else if words[2 * i + 1].load(Ordering::Relaxed) == h {
                let (k, v) = split(self.core().entry(&self.g, r)?)?;
                if k == key {
                    return Ok(Probe {
                        found: Some((i, r, v)),
                        free,
                    });
                }
            }
            i = (i + 1) & mask;
        }
        Ok(Probe { found: None, free })
    }

    /// Returns the value bytes of the entry under `key`, if any.
    fn lookup<Q: Serialize + ?Sized>(&self, key: &Q) -> Result<Option<&[u8]>> {
        let mut buf = Encoded::new();
        let kb = buf.encode(key)?;
        let (_, words) = self.root()?;
        Ok(self.probe(words, hash(kb), kb)?.found.map(|(_, _, v)| v))
    }

    /// Returns a copy of the value under `key`.
    ///
    /// # Errors
    /// As for [`Dict::get`].
    pub fn get<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        match self.lookup(key)? {
            Some(v) => codec::from_bytes(v).map(Some),
            None => Ok(None),
        }
    }

    /// Returns whether `key` is present.
    ///
    /// # Errors
    /// As for [`Dict::contains_key`].
    pub fn contains_key<Q>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        Ok(self.lookup(key)?.is_some())
    }

    /// Inserts `value` under `key`; returns the value it replaced.
    ///
    /// # Errors
    /// As for [`Dict::insert`].
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        let (mut kbuf, mut vbuf) = (Encoded::new(), Encoded::new());
        let kb = kbuf.encode(&key)?;
        self.insert_encoded(kb, vbuf.encode(&value)?)
    }

    fn insert_encoded(&self, kb: &[u8], vb: &[u8]) -> Result<Option<V>> {
        let h = hash(kb);
        let (_, words) = self.root()?;
        let p = self.probe(words, h, kb)?;
        if let Some((i, old, old_value)) = p.found {
            // Decode the old value before anything changes: a value that does not decode
            // leaves the dictionary untouched.
            let prev = codec::from_bytes(old_value)?;
            let klen = u32::try_from(kb.len()).map_err(|_| Error::InvalidSize {
                reason: "dictionary key longer than 4 GiB",
            })?;
            let blob = self
                .core()
                .prepare_entry(&self.g, &[&klen.to_le_bytes(), kb, vb])?;
            protocol::replace_entry(
                &self.held(),
                self.core().intent_words(),
                (2 * i) as u64,
                old,
                blob,
            )?;
            return Ok(Some(prev));
        }
        let len = self.core().word(LEN).load(Ordering::Relaxed);
        let tombs = self.core().word(TOMBS).load(Ordering::Relaxed);
        let cap = (words.len() / 2) as u64;
        if (len + tombs + 1) * 4 > cap * 3 {
            let new_cap = if (len + 1) * 2 > cap { cap * 2 } else { cap };
            self.rehash(usize::try_from(new_cap).unwrap_or(usize::MAX))?;
            return self.insert_encoded(kb, vb);
        }
        let Some(i) = p.free else {
            return Err(Error::CorruptObject {
                reason: "dictionary table has no free slot",
            });
        };
        let klen = u32::try_from(kb.len()).map_err(|_| Error::InvalidSize {
            reason: "dictionary key longer than 4 GiB",
        })?;
        let blob = self
            .core()
            .prepare_entry(&self.g, &[&klen.to_le_bytes(), kb, vb])?;
        let old = words[2 * i].load(Ordering::Relaxed);
        // The hash is read only while the entry word is published, which comes after.
        words[2 * i + 1].store(h, Ordering::Relaxed);
        let intent = Intent {
            op: Op::Set,
            w_index: (2 * i) as u64,
            old,
            new: blob,
            a: 0,
            b: blob,
        };
        protocol::apply(&self.held(), self.core().intent_words(), &intent)?;
        self.core().word(LEN).store(len + 1, Ordering::Relaxed);
        if old == TOMBSTONE {
            self.core()
                .word(TOMBS)
                .store(tombs.saturating_sub(1), Ordering::Relaxed);
        }
        Ok(None)
    }

    /// Moves every entry into a new table of `cap` slots (dropping tombstones).
    fn rehash(&self, cap: usize) -> Result<()> {
        let (root, words) = self.root()?;
        let new = self.core().prepare_table(
            &self.g,
            cap.checked_mul(2).ok_or(Error::InvalidSize {
                reason: "dictionary capacity too large",
            })?,
            false,
        )?;
        let intent = Intent {
            op: Op::Swap,
            w_index: ROOT_W,
            old: root,
            new,
            a: 0,
            b: 0,
        };
        let held = self.held();
        let iw = self.core().intent_words();
        protocol::arm(iw, &intent);
        let copied = (|| {
            let nw = self.core().table(&self.g, new)?;
            for w in nw {
                w.store(0, Ordering::Relaxed);
            }
            let mask = cap - 1;
            for slot in words.chunks_exact(2) {
                let r = slot[0].load(Ordering::Relaxed);
                if r == 0 || r == TOMBSTONE {
                    continue;
                }
                let h = slot[1].load(Ordering::Relaxed);
                let mut j = (h as usize) & mask;
                while nw[2 * j].load(Ordering::Relaxed) != 0 {
                    j = (j + 1) & mask;
                }
                nw[2 * j + 1].store(h, Ordering::Relaxed);
                nw[2 * j].store(r, Ordering::Relaxed);
            }
            Ok(())
        })();
        if let Err(e) = copied {
            let _ = protocol::rollback(&held, &intent);
            protocol::clear(iw);
            return Err(e);
        }
        protocol::publish(self.core().word(ROOT), new);
        let r = protocol::commit(&held, &intent);
        self.core().word(TOMBS).store(0, Ordering::Relaxed);
        protocol::clear(iw);
        r
    }

    /// Returns the value under `key`, inserting `f()` first if it is absent.
    ///
    /// # Errors
    /// As for [`Dict::insert`].
    pub fn get_or_insert_with(&self, key: K, f: impl FnOnce() -> V) -> Result<V> {
        if let Some(v) = self.get(&key)? {
            return Ok(v);
        }
        let v = f();
        let (mut kbuf, mut vbuf) = (Encoded::new(), Encoded::new());
        let kb = kbuf.encode(&key)?;
        self.insert_encoded(kb, vbuf.encode(&v)?)?;
        Ok(v)
    }

    /// Removes `key`; returns its value.
    ///
    /// # Errors
    /// As for [`Dict::remove`].
    pub fn remove<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let mut buf = Encoded::new();
        let kb = buf.encode(key)?;
        self.remove_encoded(kb)
    }

    fn remove_encoded(&self, kb: &[u8]) -> Result<Option<V>> {
        let (_, words) = self.root()?;
        let Some((i, r, value)) = self.probe(words, hash(kb), kb)?.found else {
            return Ok(None);
        };
        let prev = codec::from_bytes(value)?;
        let intent = Intent {
            op: Op::Set,
            w_index: (2 * i) as u64,
            old: r,
            new: TOMBSTONE,
            a: r,
            b: 0,
        };
        protocol::apply(&self.held(), self.core().intent_words(), &intent)?;
        let c = self.core();
        let len = c.word(LEN).load(Ordering::Relaxed);
        c.word(LEN).store(len.saturating_sub(1), Ordering::Relaxed);
        let tombs = c.word(TOMBS).load(Ordering::Relaxed);
        c.word(TOMBS).store(tombs + 1, Ordering::Relaxed);
        Ok(Some(prev))
    }

    /// Reads, changes and writes the value under `key` (see [`Dict::update_with`]).
    ///
    /// # Errors
    /// As for [`Dict::insert`].
    pub fn update_with<Q, R>(&self, key: &Q, f: impl FnOnce(&mut Option<V>) -> R) -> Result<R>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let mut buf = Encoded::new();
        let kb = buf.encode(key)?;
        let (_, words) = self.root()?;
        let found = self.probe(words, hash(kb), kb)?.found;
        let mut v = match found {
            Some((_, _, value)) => Some(codec::from_bytes(value)?),
            None => None,
        };
        let out = f(&mut v);
        match v {
            Some(v) => {
                let mut vbuf = Encoded::new();
                self.insert_encoded(kb, vbuf.encode(&v)?)?;
            }
            None if found.is_some() => {
                self.remove_encoded(kb)?;
            }
            None => {}
        }
        Ok(out)
    }

    /// Returns the number of entries.
    pub fn len(&self) -> usize {
        usize::try_from(self.core().word(LEN).load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    /// Returns whether the dictionary is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every entry.
    ///
    /// # Errors
    /// As for [`Dict::clear`].
    pub fn clear(&self) -> Result<()> {
        let (root, _) = self.root()?;
        let new = self.core().prepare_table(&self.g, MIN_CAP * 2, true)?;
        let intent = Intent {
            op: Op::Clear,
            w_index: ROOT_W,
            old: root,
            new,
            a: 0,
            b: 0,
        };
        protocol::apply(&self.held(), self.core().intent_words(), &intent)?;
        self.core().word(LEN).store(0, Ordering::Relaxed);
        self.core().word(TOMBS).store(0, Ordering::Relaxed);
        Ok(())
    }

    fn each(&self, mut f: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        let (_, words) = self.root()?;
        for slot in words.chunks_exact(2) {
            let r = slot[0].load(Ordering::Relaxed);
            if r != 0 && r != TOMBSTONE {
                let (k, v) = split(self.core().entry(&self.g, r)?)?;
                f(k, v)?;
            }
        }
        Ok(())
    }

    /// Returns a snapshot of the keys.
    ///
    /// # Errors
    /// As for [`Dict::keys`].
    pub fn keys(&self) -> Result<Vec<K>> {
        let mut out = Vec::with_capacity(self.len());
        self.each(|k, _| {
            out.push(codec::from_bytes(k)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Returns a snapshot of the values.
    ///
    /// # Errors
    /// As for [`Dict::keys`].
    pub fn values(&self) -> Result<Vec<V>> {
        let mut out = Vec::with_capacity(self.len());
        self.each(|_, v| {
            out.push(codec::from_bytes(v)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Returns a snapshot of the entries.
    ///
    /// # Errors
    /// As for [`Dict::keys`].
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        let mut out = Vec::with_capacity(self.len());
        self.each(|k, v| {
            out.push((codec::from_bytes(k)?, codec::from_bytes(v)?));
            Ok(())
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_rounds_to_a_power_of_two_with_headroom() {
        assert_eq!(capacity_for(0).unwrap(), MIN_CAP);
        assert_eq!(capacity_for(6).unwrap(), 16);
        assert_eq!(capacity_for(100).unwrap(), 256);
        assert!(capacity_for(usize::MAX).is_err());
    }

    #[test]
    fn entries_split_and_reject_bad_lengths() {
        let blob = [2, 0, 0, 0, b'a', b'b', 7];
        assert_eq!(split(&blob).unwrap(), (&b"ab"[..], &[7u8][..]));
        assert!(split(&[9, 0, 0, 0, 1]).is_err());
        assert!(split(&[1, 0]).is_err());
    }
}
