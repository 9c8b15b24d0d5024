//! Typed proxies of the built-in managed objects.
//!
//! Each wraps a [`RemoteObject`] and encodes its arguments so the server can store and compare
//! them without knowing the types: a key or element travels as its own codec encoding. Every
//! method is one round trip to the server; values come back as copies (mutating a fetched
//! value changes nothing in the server, as with Python's proxies). Every proxy is `Clone`,
//! `Send + Sync` and serde (`Serialize` pins the object, see [`RemoteObject`]); a proxy
//! deserialized as the wrong kind is refused.

use super::attached::{Attachment, Local, LocalCondition, LocalQueue};
use super::client::{RemoteObject, check_type, storing};
use super::protocol::Fault;
use crate::codec;
use crate::error::Result;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// Encodes an argument of a container's method: a proxy in it may be stored there and read
/// back any number of times, so it takes a lasting pin (see `client::storing`).
fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>> {
    storing(|| codec::to_bytes(v))
}

/// Encodes an item put in a queue: a proxy in it is one token in flight, whose pin its
/// receiver takes over.
fn in_flight<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>> {
    codec::to_bytes(v)
}

/// The encoding of a value's encoding (what the server stores).
fn wrap<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>> {
    enc(&enc(v)?)
}

macro_rules! proxy {
    ($(#[$m:meta])* $name:ident [$($g:ident),*] = $kind:literal) => {
        $(#[$m])*
        pub struct $name<$($g),*> {
            remote: RemoteObject,
            _types: PhantomData<fn() -> ($($g,)*)>,
        }

        impl<$($g),*> Clone for $name<$($g),*> {
            fn clone(&self) -> Self {
                $name { remote: self.remote.clone(), _types: PhantomData }
            }
        }

        impl<$($g),*> fmt::Debug for $name<$($g),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.remote).finish()
            }
        }

        impl<$($g),*> Serialize for $name<$($g),*> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.remote.serialize(s)
            }
        }

        impl<'de, $($g),*> Deserialize<'de> for $name<$($g),*> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let remote = RemoteObject::deserialize(d)?;
                $name::from_remote(remote).map_err(serde::de::Error::custom)
            }
        }

        impl<$($g),*> $name<$($g),*> {
            /// The kind name the server knows this object by.
            pub(crate) const KIND: &'static str = $kind;

            /// Wraps a remote object of this kind.
            pub(crate) fn from_remote(remote: RemoteObject) -> Result<Self> {
                check_type(&remote, $kind)?;
                Ok($name { remote, _types: PhantomData })
            }

            /// Returns the untyped remote object.
            pub fn remote(&self) -> &RemoteObject {
                &self.remote
            }
        }
    };
}

proxy!(
    /// A proxy to a dict held by a manager ([`Manager::dict`](super::Manager::dict)):
    /// insertion-ordered, keys compared by their encoding.
    DictProxy[K, V] = "shmproc.dict"
);
proxy!(
    /// A proxy to a list held by a manager ([`Manager::list`](super::Manager::list)).
    ListProxy[T] = "shmproc.list"
);
proxy!(
    /// A proxy to one value held by a manager ([`Manager::value`](super::Manager::value)).
    ValueProxy[T] = "shmproc.value"
);
proxy!(
    /// A proxy to a fixed-length array held by a manager
    /// ([`Manager::array`](super::Manager::array)).
    ArrayProxy[T] = "shmproc.array"
);
proxy!(
    /// A proxy to a queue held by a manager ([`Manager::queue`](super::Manager::queue)).
    QueueProxy[T] = "shmproc.queue"
);
proxy!(
    /// A proxy to a joinable queue held by a manager
    /// ([`Manager::joinable_queue`](super::Manager::joinable_queue)).
    JoinableQueueProxy[T] = "shmproc.joinable_queue"
);
proxy!(
    /// A proxy to a namespace held by a manager: named fields of any serde type
    /// ([`Manager::namespace`](super::Manager::namespace)).
    NamespaceProxy[] = "shmproc.namespace"
);
proxy!(
    /// A proxy to a lock held by a manager ([`Manager::lock`](super::Manager::lock)). Any
    /// thread of any client may release it (as Python's `Lock`); if the holder's process
    /// dies, the server releases it.
    LockProxy[] = "shmproc.lock"
);
proxy!(
    /// A proxy to a re-entrant lock held by a manager ([`Manager::rlock`](super::Manager::rlock)),
    /// owned by the calling thread; released by the server if the owner's process dies.
    RLockProxy[] = "shmproc.rlock"
);
proxy!(
    /// A proxy to a semaphore held by a manager ([`Manager::semaphore`](super::Manager::semaphore));
    /// the units a process took and did not give back return when its last connection to the
    /// server closes (it died or exited); units released by another process than the one that
    /// took them are charged to the taker.
    SemaphoreProxy[] = "shmproc.semaphore"
);
proxy!(
    /// A proxy to a bounded semaphore held by a manager
    /// ([`Manager::bounded_semaphore`](super::Manager::bounded_semaphore)).
    BoundedSemaphoreProxy[] = "shmproc.bounded_semaphore"
);
proxy!(
    /// A proxy to a condition variable (with its own re-entrant lock) held by a manager
    /// ([`Manager::condition`](super::Manager::condition)); its lock is released by the
    /// server if the holder's process dies.
    ConditionProxy[] = "shmproc.condition"
);
proxy!(
    /// A proxy to an event held by a manager ([`Manager::event`](super::Manager::event)).
    EventProxy[] = "shmproc.event"
);
proxy!(
    /// A proxy to a barrier held by a manager ([`Manager::barrier`](super::Manager::barrier));
    /// a party that dies while waiting breaks it.
    BarrierProxy[] = "shmproc.barrier"
);

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// Returns a copy of the value under `key`.
    ///
    /// # Errors
    /// [`Error::Disconnected`](crate::Error::Disconnected) if the server is gone;
    /// [`Error::Codec`](crate::Error::Codec) if a value does not encode or decode (every
    /// method of the managed proxies).
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.remote.call_decode("get", wrap(key)?)
    }
    /// Inserts, returning the value it replaced.
    ///
    /// # Errors
    /// As for [`get`](DictProxy::get).
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        self.remote
            .call_decode("insert", enc(&(enc(&key)?, enc(&value)?))?)
    }
    /// Removes and returns the value under `key`.
    ///
    /// # Errors
    /// As for [`get`](DictProxy::get).
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        self.remote.call_decode("remove", wrap(key)?)
    }
    /// Returns whether `key` is present.
    ///
    /// # Errors
    /// As for [`get`](DictProxy::get).
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        self.remote.call_decode("contains_key", wrap(key)?)
    }
    /// Returns the value under `key`, inserting `default` first if there is none
    /// (Python's `setdefault`).
    ///
    /// # Errors
    /// As for [`get`](DictProxy::get).
    pub fn get_or_insert(&self, key: K, default: V) -> Result<V> {
        self.remote
            .call_decode("get_or_insert", enc(&(enc(&key)?, enc(&default)?))?)
    }
    /// Inserts every pair, in one round trip.
    ///
    /// # Errors
    /// As for [`get`](DictProxy::get).
    pub fn update(&self, items: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let items = items
            .into_iter()
            .map(|(k, v)| Ok((enc(&k)?, enc(&v)?)))
            .collect::<Result<Vec<_>>>()?;
        self.remote.call_decode("update", enc(&items)?)
    }
    /// Returns the number of entries.
    ///
    /// # Errors
    /// As for [`get`](DictProxy::get).
    pub fn len(&self) -> Result<usize> {
        Ok(self.remote.call_decode::<u64>("len", enc(&())?)? as usize)
    }
    /// Returns whether the dict is empty.
    ///
    /// # Errors
    /// As for [`get`](DictProxy::get).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Removes every entry.
    ///
    /// # Errors
    /// As for [`get`](DictProxy::get).
    pub fn clear(&self) -> Result<()> {
        self.remote.call_decode("clear", enc(&())?)
    }
    /// Returns a snapshot of the keys, in insertion order.
    ///
    /// # Errors
    /// As for [`get`](DictProxy::get).
    pub fn keys(&self) -> Result<Vec<K>> {
        self.remote.call_decode("keys", enc(&())?)
    }
    /// Returns a snapshot of the values, in insertion order.
    ///
    /// # Errors
    /// As for [`get`](DictProxy::get).
    pub fn values(&self) -> Result<Vec<V>> {
        self.remote.call_decode("values", enc(&())?)
    }
    /// Returns a snapshot of the entries, in insertion order.
    ///
    /// # Errors
    /// As for [`get`](DictProxy::get).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        self.remote.call_decode("items", enc(&())?)
    }
}

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// Appends `value`.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn push(&self, value: T) -> Result<()> {
        self.remote.call_decode("push", wrap(&value)?)
    }
    /// Appends every item, in one round trip.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        let items = items
            .into_iter()
            .map(|v| enc(&v))
            .collect::<Result<Vec<_>>>()?;
        self.remote.call_decode("extend", enc(&items)?)
    }
    /// Removes and returns the last element.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn pop(&self) -> Result<Option<T>> {
        self.remote.call_decode("pop", enc(&())?)
    }
    /// Returns a copy of element `i`.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn get(&self, i: usize) -> Result<Option<T>> {
        self.remote.call_decode("get", enc(&(i as u64))?)
    }
    /// Replaces element `i`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`](crate::Error::IndexOutOfBounds); as for [`DictProxy::get`].
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        self.remote
            .call_decode("set", enc(&(i as u64, enc(&value)?))?)
    }
    /// Inserts `value` before element `i` (`i == len` appends).
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`](crate::Error::IndexOutOfBounds); as for [`DictProxy::get`].
    pub fn insert(&self, i: usize, value: T) -> Result<()> {
        self.remote
            .call_decode("insert", enc(&(i as u64, enc(&value)?))?)
    }
    /// Removes and returns element `i`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`](crate::Error::IndexOutOfBounds); as for [`DictProxy::get`].
    pub fn remove(&self, i: usize) -> Result<T> {
        self.remote.call_decode("remove", enc(&(i as u64))?)
    }
    /// Returns the number of elements.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn len(&self) -> Result<usize> {
        Ok(self.remote.call_decode::<u64>("len", enc(&())?)? as usize)
    }
    /// Returns whether the list is empty.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Removes every element.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn clear(&self) -> Result<()> {
        self.remote.call_decode("clear", enc(&())?)
    }
    /// Keeps the first `n` elements.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn truncate(&self, n: usize) -> Result<()> {
        self.remote.call_decode("truncate", enc(&(n as u64))?)
    }
    /// Reverses the list in place.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn reverse(&self) -> Result<()> {
        self.remote.call_decode("reverse", enc(&())?)
    }
    /// Returns a snapshot copy of the elements.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.remote.call_decode("to_vec", enc(&())?)
    }
    /// Iterates over a snapshot taken now (later changes are not seen).
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn iter(&self) -> Result<std::vec::IntoIter<T>> {
        Ok(self.to_vec()?.into_iter())
    }
    /// Returns whether an element encodes like `value` (Python's `in`).
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn contains(&self, value: &T) -> Result<bool> {
        self.remote.call_decode("contains", wrap(value)?)
    }
    /// Returns the index of the first element that encodes like `value`.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn index_of(&self, value: &T) -> Result<Option<usize>> {
        let i: Option<u64> = self.remote.call_decode("index_of", wrap(value)?)?;
        Ok(i.map(|i| i as usize))
    }
}

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// Returns a copy of the value.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn get(&self) -> Result<T> {
        self.remote.call_decode("get", enc(&())?)
    }
    /// Replaces the value.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn set(&self, value: T) -> Result<()> {
        self.remote.call_decode("set", wrap(&value)?)
    }
    /// Replaces the value and returns the old one.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn replace(&self, value: T) -> Result<T> {
        self.remote.call_decode("replace", wrap(&value)?)
    }
}

impl<T: Serialize + DeserializeOwned> ArrayProxy<T> {
    /// Returns a copy of element `i`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`](crate::Error::IndexOutOfBounds); as for [`DictProxy::get`].
    pub fn get(&self, i: usize) -> Result<T> {
        self.remote.call_decode("get", enc(&(i as u64))?)
    }
    /// Replaces element `i`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`](crate::Error::IndexOutOfBounds); as for [`DictProxy::get`].
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        self.remote
            .call_decode("set", enc(&(i as u64, enc(&value)?))?)
    }
    /// Returns the length.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn len(&self) -> Result<usize> {
        Ok(self.remote.call_decode::<u64>("len", enc(&())?)? as usize)
    }
    /// Returns whether the array has no elements.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Returns a snapshot copy of the elements.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.remote.call_decode("to_vec", enc(&())?)
    }
}

impl NamespaceProxy {
    /// Sets the field `name`.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        self.remote.call_decode("set", enc(&(name, enc(value)?))?)
    }
    /// Returns a copy of the field `name`, `None` if unset.
    ///
    /// # Errors
    /// [`Error::Codec`](crate::Error::Codec) if it was set as another type; as for
    /// [`DictProxy::get`].
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        self.remote.call_decode("get", enc(name)?)
    }
    /// Removes the field `name`; returns whether it was set.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn remove(&self, name: &str) -> Result<bool> {
        self.remote.call_decode("remove", enc(name)?)
    }
    /// Returns the names of the fields set, sorted.
    ///
    /// # Errors
    /// As for [`DictProxy::get`].
    pub fn names(&self) -> Result<Vec<String>> {
        self.remote.call_decode("names", enc(&())?)
    }
}

/// A held managed lock (from [`LockProxy::lock`], [`RLockProxy::lock`] or
/// [`ConditionProxy::lock`]); dropping it releases the lock.
///
/// The lock is held by the thread that took it (a re-entrant lock's and a condition's
/// owner is that thread; a release from another thread is refused), so the guard is not
/// `Send`: it is dropped, and the lock released, on the thread that took it.
///
/// ```compile_fail
/// # fn main() -> shmproc::Result<()> {
/// let m = shmproc::Manager::start()?;
/// let cond = m.condition()?;
/// let guard = cond.lock()?;
/// std::thread::scope(|s| {
///     s.spawn(move || drop(guard)); // error: the guard cannot move to another thread
/// });
/// # Ok(()) }
/// ```
#[must_use = "the lock is released when the guard is dropped"]
#[clippy::has_significant_drop]
#[derive(Debug)]
pub struct ManagedLockGuard<'a> {
    remote: &'a RemoteObject,
    /// Neither `Send` nor `Sync`: the lock belongs to the thread that took it.
    _thread: PhantomData<*const ()>,
}

impl Drop for ManagedLockGuard<'_> {
    fn drop(&mut self) {
        // The only failure is a server that is gone, and with it the lock.
        let _ = release(self.remote);
    }
}

/// The attached in-heap condition of a condition proxy, if any (`None`: the condition is
/// served, by a server on TCP).
///
/// # Errors
/// [`Error::Remote`](crate::Error::Remote) (`BadRequest`) for an in-heap condition this
/// process could not attach (its lock is taken only by attached threads), with the
/// attach's error.
fn local_condition(remote: &RemoteObject) -> Result<Option<Arc<Local>>> {
    match remote.attachment() {
        Attachment::Attached(l) => Ok(matches!(*l, Local::Condition(_)).then_some(l)),
        Attachment::Failed(why) if remote.type_name() == "shmproc.condition" => {
            Err(Fault::BadRequest(format!(
                "the condition is held in shared memory and used only attached, and this \
                 process could not attach it: {why}"
            ))
            .into_error())
        }
        Attachment::Served | Attachment::Failed(_) => Ok(None),
    }
}

/// Runs `f` on the attached condition `l` (from [`local_condition`]).
fn on_condition<R>(l: &Local, f: impl FnOnce(&LocalCondition) -> Result<R>) -> Result<R> {
    match l {
        Local::Condition(c) => f(c),
        Local::Queue(_) => Err(crate::Error::WrongKind {
            expected: "condition",
            found: "queue",
        }),
    }
}

/// The `acquire` of a lock or a semaphore (in the server, or on an attached condition):
/// waits (`wait`, at most `timeout`) or only tries; returns whether it took the lock or a
/// unit.
fn acquire(remote: &RemoteObject, wait: bool, timeout: Option<Duration>) -> Result<bool> {
    if let Some(l) = local_condition(remote)? {
        return on_condition(&l, |c| c.acquire(wait, timeout));
    }
    remote.call_decode("acquire", enc(&(wait, timeout))?)
}

/// The `release` of a lock (in the server, or on an attached condition).
fn release(remote: &RemoteObject) -> Result<()> {
    if let Some(l) = local_condition(remote)? {
        return on_condition(&l, LocalCondition::release);
    }
    remote.call_decode("release", enc(&())?)
}

macro_rules! acquire_methods {
    ($name:ident) => {
        impl $name {
            /// Waits for the lock (in the server; a dead holder's process is released by the
            /// server, so this does not wait forever for it).
            ///
            /// # Errors
            /// [`Error::Disconnected`](crate::Error::Disconnected) if the server is gone.
            pub fn acquire(&self) -> Result<()> {
                acquire(&self.remote, true, None).map(drop)
            }
            /// Takes the lock if it is free; returns whether it did.
            ///
            /// # Errors
            /// As for `acquire`.
            pub fn try_acquire(&self) -> Result<bool> {
                acquire(&self.remote, false, None)
            }
            /// Waits for the lock at most `timeout`; returns whether it was taken.
            ///
            /// # Errors
            /// As for `acquire`.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
                acquire(&self.remote, true, Some(timeout))
            }
            /// Releases the lock.
            ///
            /// # Errors
            /// [`Error::NotOwner`](crate::Error::NotOwner) if it is not held (by this thread,
            /// for a re-entrant lock); as for `acquire`.
            pub fn release(&self) -> Result<()> {
                release(&self.remote)
            }
            /// Acquires and returns a guard that releases on drop.
            ///
            /// # Errors
            /// As for `acquire`.
            pub fn lock(&self) -> Result<ManagedLockGuard<'_>> {
                self.acquire()?;
                Ok(ManagedLockGuard {
                    remote: &self.remote,
                    _thread: PhantomData,
                })
            }
        }
    };
}

acquire_methods!(LockProxy);
acquire_methods!(RLockProxy);
acquire_methods!(ConditionProxy);

impl LockProxy {
    /// Returns whether some client holds the lock.
    ///
    /// # Errors
    /// As for [`acquire`](LockProxy::acquire).
    pub fn is_locked(&self) -> Result<bool> {
        self.remote.call_decode("is_locked", enc(&())?)
    }
}

impl RLockProxy {
    /// Returns whether the calling thread holds the lock.
    ///
    /// # Errors
    /// As for [`acquire`](RLockProxy::acquire).
    pub fn is_owned(&self) -> Result<bool> {
        self.remote.call_decode("is_owned", enc(&())?)
    }
}

impl ConditionProxy {
    /// Releases the lock (which the calling thread must hold), waits for a notification,
    /// and takes the lock back.
    ///
    /// # Errors
    /// [`Error::NotOwner`](crate::Error::NotOwner) without the lock; as for
    /// [`acquire`](ConditionProxy::acquire). After
    /// [`Error::Disconnected`](crate::Error::Disconnected) (the server is gone) the lock is
    /// not held.
    pub fn wait(&self) -> Result<()> {
        self.wait_with(None).map(drop)
    }

    fn wait_with(&self, timeout: Option<Duration>) -> Result<bool> {
        if let Some(l) = local_condition(&self.remote)? {
            return on_condition(&l, |c| c.wait(timeout));
        }
        self.remote.call_decode("wait", enc(&timeout)?)
    }

    /// Returns whether this process uses the condition's in-heap form directly (a client on
    /// the host of a server on a Unix socket) rather than through the server (see
    /// [direct and served primitives](super#direct-and-served-primitives)); attaches it
    /// first if it can.
    pub fn is_attached(&self) -> bool {
        matches!(local_condition(&self.remote), Ok(Some(_)))
    }
    /// As [`wait`](ConditionProxy::wait), at most `timeout`; returns whether it was notified
    /// (the lock is held again either way).
    ///
    /// # Errors
    /// As for [`wait`](ConditionProxy::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_with(Some(timeout))
    }
    /// Wakes up to `n` waiters (the caller must hold the lock).
    ///
    /// # Errors
    /// [`Error::NotOwner`](crate::Error::NotOwner) without the lock.
    pub fn notify(&self, n: u32) -> Result<()> {
        if let Some(l) = local_condition(&self.remote)? {
            return on_condition(&l, |c| c.notify(n));
        }
        self.remote.call_decode("notify", enc(&n)?)
    }
    /// Wakes every waiter (the caller must hold the lock).
    ///
    /// # Errors
    /// [`Error::NotOwner`](crate::Error::NotOwner) without the lock.
    pub fn notify_all(&self) -> Result<()> {
        if let Some(l) = local_condition(&self.remote)? {
            return on_condition(&l, LocalCondition::notify_all);
        }
        self.remote.call_decode("notify_all", enc(&())?)
    }
}

macro_rules! semaphore_methods {
    ($name:ident) => {
        impl $name {
            /// Takes a unit, waiting for one.
            ///
            /// # Errors
            /// [`Error::Disconnected`](crate::Error::Disconnected) if the server is gone.
            pub fn acquire(&self) -> Result<()> {
                acquire(&self.remote, true, None).map(drop)
            }
            /// Takes a unit if one is free; returns whether it did.
            ///
            /// # Errors
            /// As for `acquire`.
            pub fn try_acquire(&self) -> Result<bool> {
                acquire(&self.remote, false, None)
            }
            /// Waits for a unit at most `timeout`; returns whether one was taken.
            ///
            /// # Errors
            /// As for `acquire`.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
                acquire(&self.remote, true, Some(timeout))
            }
            /// Gives a unit back.
            ///
            /// # Errors
            /// [`Error::SemaphoreOverRelease`](crate::Error::SemaphoreOverRelease) past a
            /// bounded semaphore's limit; as for `acquire`.
            pub fn release(&self) -> Result<()> {
                self.remote.call_decode("release", enc(&())?)
            }
            /// Returns the number of free units.
            ///
            /// # Errors
            /// As for `acquire`.
            pub fn value(&self) -> Result<u32> {
                self.remote.call_decode("value", enc(&())?)
            }
        }
    };
}

semaphore_methods!(SemaphoreProxy);
semaphore_methods!(BoundedSemaphoreProxy);

impl EventProxy {
    /// Sets the flag and wakes every waiter.
    ///
    /// # Errors
    /// [`Error::Disconnected`](crate::Error::Disconnected) if the server is gone.
    pub fn set(&self) -> Result<()> {
        self.remote.call_decode("set", enc(&())?)
    }
    /// Clears the flag.
    ///
    /// # Errors
    /// As for [`set`](EventProxy::set).
    pub fn clear(&self) -> Result<()> {
        self.remote.call_decode("clear", enc(&())?)
    }
    /// Returns whether the flag is set.
    ///
    /// # Errors
    /// As for [`set`](EventProxy::set).
    pub fn is_set(&self) -> Result<bool> {
        self.remote.call_decode("is_set", enc(&())?)
    }
    /// Waits until the flag is set or `timeout` passes (`None`: no limit); returns the flag.
    ///
    /// # Errors
    /// As for [`set`](EventProxy::set).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        self.remote.call_decode("wait", enc(&timeout)?)
    }
}

impl BarrierProxy {
    /// Waits until every party arrived; returns this party's arrival index.
    ///
    /// # Errors
    /// [`Error::BrokenBarrier`](crate::Error::BrokenBarrier) if the barrier is or becomes
    /// broken (aborted, reset, a party timed out or its process died).
    pub fn wait(&self) -> Result<u32> {
        self.remote.call_decode("wait", enc(&None::<Duration>)?)
    }
    /// As [`wait`](BarrierProxy::wait), at most `timeout` (then the barrier breaks).
    ///
    /// # Errors
    /// As for [`wait`](BarrierProxy::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.remote.call_decode("wait", enc(&Some(timeout))?)
    }
    /// Breaks the barrier.
    ///
    /// # Errors
    /// [`Error::Disconnected`](crate::Error::Disconnected) if the server is gone.
    pub fn abort(&self) -> Result<()> {
        self.remote.call_decode("abort", enc(&())?)
    }
    /// Returns the barrier to its initial state; current waiters get `BrokenBarrier`.
    ///
    /// # Errors
    /// As for [`abort`](BarrierProxy::abort).
    pub fn reset(&self) -> Result<()> {
        self.remote.call_decode("reset", enc(&())?)
    }
    /// Returns whether the barrier is broken.
    ///
    /// # Errors
    /// As for [`abort`](BarrierProxy::abort).
    pub fn is_broken(&self) -> Result<bool> {
        self.remote.call_decode("is_broken", enc(&())?)
    }
    /// Returns how many parties wait now.
    ///
    /// # Errors
    /// As for [`abort`](BarrierProxy::abort).
    pub fn n_waiting(&self) -> Result<u32> {
        self.remote.call_decode("n_waiting", enc(&())?)
    }
    /// Returns the number of parties.
    ///
    /// # Errors
    /// As for [`abort`](BarrierProxy::abort).
    pub fn parties(&self) -> Result<u32> {
        self.remote.call_decode("parties", enc(&())?)
    }
}

/// The attached in-heap queue of a queue proxy, if any (see [`RemoteObject::local`]).
fn local_queue(remote: &RemoteObject) -> Option<Arc<Local>> {
    remote.local().filter(|l| matches!(**l, Local::Queue(_)))
}

/// Runs `f` on the attached queue `l` (from [`local_queue`]).
fn on_queue<R>(l: &Local, f: impl FnOnce(&LocalQueue) -> Result<R>) -> Result<R> {
    match l {
        Local::Queue(q) => f(q),
        Local::Condition(_) => Err(crate::Error::WrongKind {
            expected: "queue",
            found: "condition",
        }),
    }
}

macro_rules! queue_methods {
    ($name:ident) => {
        impl<T: Serialize + DeserializeOwned> $name<T> {
            fn put_with(&self, value: &T, block: bool, timeout: Option<Duration>) -> Result<()> {
                if let Some(l) = local_queue(&self.remote) {
                    return on_queue(&l, |q| q.put(value, block, timeout));
                }
                self.remote
                    .call_decode("put", enc(&(in_flight(value)?, block, timeout))?)
            }

            fn get_with(&self, block: bool, timeout: Option<Duration>) -> Result<T> {
                if let Some(l) = local_queue(&self.remote) {
                    return on_queue(&l, |q| q.get(block, timeout));
                }
                self.remote.call_decode("get", enc(&(block, timeout))?)
            }

            /// Returns whether this process uses the queue's in-heap form directly (a client
            /// on the server's host) rather than through the server (see
            /// [direct and served primitives](super#direct-and-served-primitives)); attaches
            /// it first if it can.
            pub fn is_attached(&self) -> bool {
                local_queue(&self.remote).is_some()
            }

            /// Puts `value`, waiting for room in a bounded queue.
            ///
            /// # Errors
            /// [`Error::Disconnected`](crate::Error::Disconnected) if the server is gone.
            pub fn put(&self, value: &T) -> Result<()> {
                self.put_with(value, true, None)
            }
            /// Puts `value`, waiting at most `timeout` for room.
            ///
            /// # Errors
            /// [`Error::Full`](crate::Error::Full) if there was no room in time.
            pub fn put_timeout(&self, value: &T, timeout: Duration) -> Result<()> {
                self.put_with(value, true, Some(timeout))
            }
            /// Puts `value` if there is room now.
            ///
            /// # Errors
            /// [`Error::Full`](crate::Error::Full) if there is none.
            pub fn try_put(&self, value: &T) -> Result<()> {
                self.put_with(value, false, None)
            }
            /// Takes the oldest item, waiting for one.
            ///
            /// # Errors
            /// [`Error::Disconnected`](crate::Error::Disconnected) if the server is gone.
            pub fn get(&self) -> Result<T> {
                self.get_with(true, None)
            }
            /// Takes the oldest item, waiting at most `timeout`.
            ///
            /// # Errors
            /// [`Error::Empty`](crate::Error::Empty) if none came in time.
            pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
                self.get_with(true, Some(timeout))
            }
            /// Takes the oldest item if there is one.
            ///
            /// # Errors
            /// [`Error::Empty`](crate::Error::Empty) if there is none.
            pub fn try_get(&self) -> Result<T> {
                self.get_with(false, None)
            }
            /// Returns the number of items.
            ///
            /// # Errors
            /// [`Error::Disconnected`](crate::Error::Disconnected) if the server is gone.
            pub fn len(&self) -> Result<usize> {
                if let Some(l) = local_queue(&self.remote) {
                    return on_queue(&l, LocalQueue::len);
                }
                Ok(self.remote.call_decode::<u64>("len", enc(&())?)? as usize)
            }
            /// Returns whether the queue is empty.
            ///
            /// # Errors
            /// As for `len`.
            pub fn is_empty(&self) -> Result<bool> {
                if let Some(l) = local_queue(&self.remote) {
                    return on_queue(&l, |q| q.len().map(|n| n == 0));
                }
                self.remote.call_decode("is_empty", enc(&())?)
            }
            /// Returns whether a bounded queue is full.
            ///
            /// # Errors
            /// As for `len`.
            pub fn is_full(&self) -> Result<bool> {
                if let Some(l) = local_queue(&self.remote) {
                    return on_queue(&l, LocalQueue::is_full);
                }
                self.remote.call_decode("is_full", enc(&())?)
            }
        }
    };
}

queue_methods!(QueueProxy);
queue_methods!(JoinableQueueProxy);

impl<T: Serialize + DeserializeOwned> JoinableQueueProxy<T> {
    /// Marks one item taken with `get` as processed.
    ///
    /// # Errors
    /// [`Error::TaskDoneTooMany`](crate::Error::TaskDoneTooMany) past the items put.
    pub fn task_done(&self) -> Result<()> {
        if let Some(l) = local_queue(&self.remote) {
            return on_queue(&l, LocalQueue::task_done);
        }
        self.remote.call_decode("task_done", enc(&())?)
    }
    /// Waits until every item put was marked done.
    ///
    /// # Errors
    /// [`Error::Disconnected`](crate::Error::Disconnected) if the server is gone.
    pub fn join(&self) -> Result<()> {
        self.join_with(None)
    }

    fn join_with(&self, timeout: Option<Duration>) -> Result<()> {
        if let Some(l) = local_queue(&self.remote) {
            return on_queue(&l, |q| q.join(timeout));
        }
        self.remote.call_decode("join", enc(&timeout)?)
    }
    /// As [`join`](JoinableQueueProxy::join), at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`](crate::Error::Timeout) if items are still unfinished then.
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_with(Some(timeout))
    }
}
