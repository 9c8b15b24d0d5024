//! The built-in objects a manager server holds, and their methods.
//!
//! Containers store their elements as codec encodings: the server never needs the client's
//! types. Keys compare by encoding (equal values of the same type encode equally; a float's
//! `0.0` and `-0.0` are different keys, a `NaN` key is found again). Replies are assembled
//! from the stored encodings (`push_varint` + concatenation is the codec's own encoding of a
//! sequence), so a `get` copies bytes and decodes nothing.
//!
//! Blocking methods (a lock's `acquire`, a queue's `get`, a condition's `wait`, …) block the
//! server thread of the calling connection only, in slices: between slices the server checks
//! whether the client is still there, so a dead client's wait ends. Each synchronization
//! object records what each client process holds (a lock, an `RLock`'s depth, semaphore
//! units) and [`Object::release_client`] gives it back when that process's last connection
//! drops. Queues and (servers on a Unix socket) conditions are held in their in-heap form
//! instead (`attached`).

use super::protocol::{Fault, push_varint};
use crate::codec;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError, WaitTimeoutResult};
use std::time::{Duration, Instant};

/// How long a blocked server thread sleeps before checking that its client is still there.
const SLICE: Duration = Duration::from_millis(50);

/// Who is calling: the client process (its nonce), its thread, and a probe that tells
/// whether the client went away.
pub(crate) struct Ctx<'a> {
    pub(crate) client: u64,
    pub(crate) thread: u64,
    pub(crate) gone: &'a dyn Fn() -> bool,
}

/// The kinds of object a server creates without registration.
pub(crate) const BUILTIN: &[&str] = &[
    "shmproc.dict",
    "shmproc.list",
    "shmproc.value",
    "shmproc.namespace",
    "shmproc.array",
    "shmproc.lock",
    "shmproc.rlock",
    "shmproc.semaphore",
    "shmproc.bounded_semaphore",
    "shmproc.condition",
    "shmproc.event",
    "shmproc.barrier",
    "shmproc.queue",
    "shmproc.joinable_queue",
];

/// A server-held object.
pub(crate) enum Object {
    Dict(Mutex<OrderedMap>),
    List(Mutex<Vec<Vec<u8>>>),
    Value(Mutex<Vec<u8>>),
    Namespace(Mutex<BTreeMap<String, Vec<u8>>>),
    Array(Mutex<Vec<Vec<u8>>>),
    Lock(ManagedLock),
    Semaphore(ManagedSemaphore),
    Condition(ManagedCondition),
    Event(Mutex<bool>, Condvar),
    Barrier(ManagedBarrier),
    Queue(ManagedQueue),
    /// A queue or joinable queue in its in-heap form, which local clients attach.
    HeapQueue(super::attached::HeapQueue),
    /// A condition in its in-heap form, which local clients attach.
    HeapCondition(super::attached::HeapCondition),
    /// A registered type's value, kept by its entry (index into the server's types).
    Custom {
        entry: usize,
    },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn decode<T: DeserializeOwned>(method: &str, args: &[u8]) -> Result<T, Fault> {
    codec::from_bytes(args).map_err(|e| Fault::BadArguments {
        method: method.to_owned(),
        reason: e.to_string(),
    })
}

pub(super) fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, Fault> {
    codec::to_bytes(v).map_err(|e| Fault::BadRequest(format!("reply: {e}")))
}

/// `Option<V>` from a stored encoding of `V`.
fn opt(v: Option<&[u8]>) -> Vec<u8> {
    match v {
        None => vec![0],
        Some(b) => {
            let mut out = Vec::with_capacity(b.len() + 1);
            out.push(1);
            out.extend_from_slice(b);
            out
        }
    }
}

/// `Vec<V>` from stored encodings.
fn seq<'a>(n: usize, items: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    push_varint(&mut out, n as u64);
    for i in items {
        out.extend_from_slice(i);
    }
    out
}

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// A condition variable whose `notify_all` makes no system call when nobody waits (std's
/// makes one each time: a futex wake per lock release or queue put, measured as one of the
/// round trip's five system calls).
///
/// A waiter counts itself in `sleepers` while it holds the state's mutex, before it waits; a
/// notifier changes the state under that mutex, lets it go, then reads the count. Either the
/// waiter counted itself before the notifier took the mutex (the notifier sees the count,
/// the mutex ordering both) or it takes the mutex after the change and finds it before it
/// waits. Waits are sliced besides, so even a missed wake-up would cost one slice, not a
/// hang.
#[derive(Default)]
pub(crate) struct Condvar {
    cv: std::sync::Condvar,
    sleepers: Mutex<u32>,
}

impl Condvar {
    pub(crate) fn new() -> Condvar {
        Condvar::default()
    }

    /// `std::sync::Condvar::wait_timeout`, counted; `g` guards the state waited on.
    fn wait_timeout<'m, S>(
        &self,
        g: MutexGuard<'m, S>,
        slice: Duration,
    ) -> std::sync::LockResult<(MutexGuard<'m, S>, WaitTimeoutResult)> {
        *lock(&self.sleepers) += 1;
        let r = self.cv.wait_timeout(g, slice);
        let mut n = lock(&self.sleepers);
        *n = n.saturating_sub(1);
        r
    }

    /// Wakes every waiter, if there is any.
    fn notify_all(&self) {
        if *lock(&self.sleepers) > 0 {
            self.cv.notify_all();
        }
    }
}

enum Waited {
    Ready,
    TimedOut,
    Gone,
}

/// Waits on `cv` until `ready`, the deadline, or the client is gone.
fn wait_until<'m, S>(
    cv: &Condvar,
    mut g: MutexGuard<'m, S>,
    until: Option<Instant>,
    ctx: &Ctx<'_>,
    mut ready: impl FnMut(&mut S) -> bool,
) -> (MutexGuard<'m, S>, Waited) {
    loop {
        if ready(&mut g) {
            return (g, Waited::Ready);
        }
        let mut slice = SLICE;
        if let Some(d) = until {
            let now = Instant::now();
            if now >= d {
                return (g, Waited::TimedOut);
            }
            slice = slice.min(d - now);
        }
        let (g2, r) = cv
            .wait_timeout(g, slice)
            .unwrap_or_else(PoisonError::into_inner);
        g = g2;
        if r.timed_out() && (ctx.gone)() {
            return (g, Waited::Gone);
        }
    }
}

fn unknown(kind: &str, method: &str) -> Fault {
    Fault::UnknownMethod {
        kind: kind.to_owned(),
        method: method.to_owned(),
    }
}

/// A dict that keeps insertion order, keyed by encoding.
#[derive(Default)]
pub(crate) struct OrderedMap {
    map: HashMap<Vec<u8>, (u64, Vec<u8>)>,
    next: u64,
}

impl OrderedMap {
    fn insert(&mut self, k: Vec<u8>, v: Vec<u8>) -> Option<Vec<u8>> {
        match self.map.get_mut(&k) {
            Some(slot) => Some(std::mem::replace(&mut slot.1, v)),
            None => {
                self.next += 1;
                self.map.insert(k, (self.next, v));
                None
            }
        }
    }

    fn ordered(&self) -> Vec<(&Vec<u8>, &Vec<u8>)> {
        let mut all: Vec<_> = self.map.iter().map(|(k, (s, v))| (*s, k, v)).collect();
        all.sort_unstable_by_key(|e| e.0);
        all.into_iter().map(|(_, k, v)| (k, v)).collect()
    }
}

impl Object {
    /// Creates a built-in object of `kind` from its encoded initial state.
    pub(crate) fn create(kind: &str, init: &[u8]) -> Result<Object, Fault> {
        let m = "create";
        Ok(match kind {
            "shmproc.dict" => {
                let items: Vec<(Vec<u8>, Vec<u8>)> = decode(m, init)?;
                let mut map = OrderedMap::default();
                for (k, v) in items {
                    map.insert(k, v);
                }
                Object::Dict(Mutex::new(map))
            }
            "shmproc.list" => Object::List(Mutex::new(decode(m, init)?)),
            "shmproc.value" => Object::Value(Mutex::new(decode(m, init)?)),
            "shmproc.namespace" => Object::Namespace(Mutex::new(BTreeMap::new())),
            "shmproc.array" => Object::Array(Mutex::new(decode(m, init)?)),
            "shmproc.lock" => Object::Lock(ManagedLock::new(false)),
            "shmproc.rlock" => Object::Lock(ManagedLock::new(true)),
            "shmproc.semaphore" => Object::Semaphore(ManagedSemaphore::new(decode(m, init)?, None)),
            "shmproc.bounded_semaphore" => {
                let n: u32 = decode(m, init)?;
                Object::Semaphore(ManagedSemaphore::new(n, Some(n)))
            }
            "shmproc.condition" => Object::Condition(ManagedCondition::default()),
            "shmproc.event" => Object::Event(Mutex::new(false), Condvar::new()),
            "shmproc.barrier" => {
                let parties: u32 = decode(m, init)?;
                if parties == 0 {
                    return Err(Fault::BadArguments {
                        method: "barrier".into(),
                        reason: "a barrier needs at least one party".into(),
                    });
                }
                Object::Barrier(ManagedBarrier::new(parties))
            }
            "shmproc.queue" => Object::Queue(ManagedQueue::new(decode(m, init)?, false)),
            "shmproc.joinable_queue" => Object::Queue(ManagedQueue::new(decode(m, init)?, true)),
            other => return Err(Fault::UnknownType(other.to_owned())),
        })
    }

    /// Whether calls on this object may leave something held by the caller's process.
    pub(crate) fn holds(&self) -> bool {
        matches!(
            self,
            Object::Lock(_)
                | Object::Semaphore(_)
                | Object::Condition(_)
                | Object::HeapCondition(_)
        )
    }

    /// Closes an attached object's in-heap form (the server stops): attached calls fail.
    pub(crate) fn close_attached(&self) {
        match self {
            Object::HeapQueue(q) => q.close(),
            Object::HeapCondition(c) => c.close(),
            _ => {}
        }
    }

    /// Gives back whatever client `client` holds of this object.
    pub(crate) fn release_client(&self, client: u64) {
        match self {
            Object::Lock(l) => l.release_client(client),
            Object::Semaphore(s) => s.release_client(client),
            Object::Condition(c) => c.release_client(client),
            _ => {}
        }
    }

    /// Runs a built-in method.
    pub(crate) fn call(&self, method: &str, args: &[u8], ctx: &Ctx<'_>) -> Result<Vec<u8>, Fault> {
        match self {
            Object::Dict(d) => dict(d, method, args),
            Object::List(l) => list(l, method, args),
            Object::Value(v) => value(v, method, args),
            Object::Namespace(n) => namespace(n, method, args),
            Object::Array(a) => array(a, method, args),
            Object::Lock(l) => l.call(method, args, ctx),
            Object::Semaphore(s) => s.call(method, args, ctx),
            Object::Condition(c) => c.call(method, args, ctx),
            Object::Event(e, cv) => event(e, cv, method, args, ctx),
            Object::Barrier(b) => b.call(method, args, ctx),
            Object::Queue(q) => q.call(method, args, ctx),
            Object::HeapQueue(q) => q.call(method, args, ctx),
            Object::HeapCondition(c) => c.call(method, args, ctx),
            Object::Custom { .. } => Err(unknown("custom", method)),
        }
    }
}

fn dict(d: &Mutex<OrderedMap>, method: &str, args: &[u8]) -> Result<Vec<u8>, Fault> {
    match method {
        "get" => {
            let k: Vec<u8> = decode(method, args)?;
            Ok(opt(lock(d).map.get(&k).map(|e| e.1.as_slice())))
        }
        "insert" => {
            let (k, v): (Vec<u8>, Vec<u8>) = decode(method, args)?;
            let old = lock(d).insert(k, v);
            Ok(opt(old.as_deref()))
        }
        "remove" => {
            let k: Vec<u8> = decode(method, args)?;
            let old = lock(d).map.remove(&k);
            Ok(opt(old.as_ref().map(|e| e.1.as_slice())))
        }
        "contains_key" => {
            let k: Vec<u8> = decode(method, args)?;
            enc(&lock(d).map.contains_key(&k))
        }
        "get_or_insert" => {
            let (k, v): (Vec<u8>, Vec<u8>) = decode(method, args)?;
            let mut g = lock(d);
            if let Some(e) = g.map.get(&k) {
                return Ok(e.1.clone());
            }
            g.insert(k, v.clone());
            Ok(v)
        }
        "update" => {
            let items: Vec<(Vec<u8>, Vec<u8>)> = decode(method, args)?;
            let mut g = lock(d);
            for (k, v) in items {
                g.insert(k, v);
            }
            enc(&())
        }
        "len" => enc(&(lock(d).map.len() as u64)),
        "clear" => {
            lock(d).map.clear();
            enc(&())
        }
        "keys" | "values" | "items" => {
            let g = lock(d);
            let all = g.ordered();
            let mut out = Vec::new();
            push_varint(&mut out, all.len() as u64);
            for (k, v) in all {
                if method != "values" {
                    out.extend_from_slice(k);
                }
                if method != "keys" {
                    out.extend_from_slice(v);
                }
            }
            Ok(out)
        }
        _ => Err(unknown("dict", method)),
    }
}

fn index_fault(i: u64, len: usize) -> Fault {
    Fault::IndexOutOfBounds {
        index: i,
        len: len as u64,
    }
}

fn list(l: &Mutex<Vec<Vec<u8>>>, method: &str, args: &[u8]) -> Result<Vec<u8>, Fault> {
    match method {
        "push" => {
            let v: Vec<u8> = decode(method, args)?;
            lock(l).push(v);
            enc(&())
        }
        "extend" => {
            let vs: Vec<Vec<u8>> = decode(method, args)?;
            lock(l).extend(vs);
            enc(&())
        }
        "pop" => Ok(opt(lock(l).pop().as_deref())),
        "get" => {
            let i: u64 = decode(method, args)?;
            let g = lock(l);
            Ok(opt(usize::try_from(i)
                .ok()
                .and_then(|i| g.get(i))
                .map(Vec::as_slice)))
        }
        "set" | "insert" => {
            let (i, v): (u64, Vec<u8>) = decode(method, args)?;
            let mut g = lock(l);
            let len = g.len();
            let idx = usize::try_from(i).unwrap_or(usize::MAX);
            if method == "set" {
                *g.get_mut(idx).ok_or(index_fault(i, len))? = v;
            } else {
                if idx > len {
                    return Err(index_fault(i, len));
                }
                g.insert(idx, v);
            }
            enc(&())
        }
        "remove" => {
            let i: u64 = decode(method, args)?;
            let mut g = lock(l);
            let len = g.len();
            let idx = usize::try_from(i).unwrap_or(usize::MAX);
            if idx >= len {
                return Err(index_fault(i, len));
            }
            Ok(g.remove(idx))
        }
        "len" => enc(&(lock(l).len() as u64)),
        "clear" => {
            lock(l).clear();
            enc(&())
        }
        "truncate" => {
            let n: u64 = decode(method, args)?;
            lock(l).truncate(usize::try_from(n).unwrap_or(usize::MAX));
            enc(&())
        }
        "reverse" => {
            lock(l).reverse();
            enc(&())
        }
        "to_vec" => {
            let g = lock(l);
            Ok(seq(g.len(), g.iter().map(Vec::as_slice)))
        }
        "index_of" => {
            let v: Vec<u8> = decode(method, args)?;
            let pos = lock(l).iter().position(|e| *e == v).map(|p| p as u64);
            enc(&pos)
        }
        "contains" => {
            let v: Vec<u8> = decode(method, args)?;
            enc(&lock(l).contains(&v))
        }
        _ => Err(unknown("list", method)),
    }
}

fn value(v: &Mutex<Vec<u8>>, method: &str, args: &[u8]) -> Result<Vec<u8>, Fault> {
    match method {
        "get" => Ok(lock(v).clone()),
        "set" => {
            let n: Vec<u8> = decode(method, args)?;
            *lock(v) = n;
            enc(&())
        }
        "replace" => {
            let n: Vec<u8> = decode(method, args)?;
            Ok(std::mem::replace(&mut *lock(v), n))
        }
        _ => Err(unknown("value", method)),
    }
}

fn namespace(
    n: &Mutex<BTreeMap<String, Vec<u8>>>,
    method: &str,
    args: &[u8],
) -> Result<Vec<u8>, Fault> {
    match method {
        "get" => {
            let name: String = decode(method, args)?;
            Ok(opt(lock(n).get(&name).map(Vec::as_slice)))
        }
        "set" => {
            let (name, v): (String, Vec<u8>) = decode(method, args)?;
            lock(n).insert(name, v);
            enc(&())
        }
        "remove" => {
            let name: String = decode(method, args)?;
            enc(&lock(n).remove(&name).is_some())
        }
        "names" => enc(&lock(n).keys().cloned().collect::<Vec<String>>()),
        _ => Err(unknown("namespace", method)),
    }
}

fn array(a: &Mutex<Vec<Vec<u8>>>, method: &str, args: &[u8]) -> Result<Vec<u8>, Fault> {
    match method {
        "get" => {
            let i: u64 = decode(method, args)?;
            let g = lock(a);
            let len = g.len();
            usize::try_from(i)
                .ok()
                .and_then(|i| g.get(i))
                .cloned()
                .ok_or(index_fault(i, len))
        }
        "set" => {
            let (i, v): (u64, Vec<u8>) = decode(method, args)?;
            let mut g = lock(a);
            let len = g.len();
            let slot = usize::try_from(i)
                .ok()
                .and_then(|i| g.get_mut(i))
                .ok_or(index_fault(i, len))?;
            *slot = v;
            enc(&())
        }
        "len" => enc(&(lock(a).len() as u64)),
        "to_vec" => {
            let g = lock(a);
            Ok(seq(g.len(), g.iter().map(Vec::as_slice)))
        }
        _ => Err(unknown("array", method)),
    }
}

fn event(
    e: &Mutex<bool>,
    cv: &Condvar,
    method: &str,
    args: &[u8],
    ctx: &Ctx<'_>,
) -> Result<Vec<u8>, Fault> {
    match method {
        "set" => {
            *lock(e) = true;
            cv.notify_all();
            enc(&())
        }
        "clear" => {
            *lock(e) = false;
            enc(&())
        }
        "is_set" => enc(&*lock(e)),
        "wait" => {
            let t: Option<Duration> = decode(method, args)?;
            let (g, _) = wait_until(cv, lock(e), deadline(t), ctx, |s| *s);
            enc(&*g)
        }
        _ => Err(unknown("event", method)),
    }
}

/// Who holds a lock: client process and thread, and the recursion depth.
#[derive(Default)]
struct Holder {
    owner: Option<(u64, u64)>,
    depth: u32,
}

impl Holder {
    /// Takes the lock for `owner` if it can; `recursive` lets the owner take it again.
    fn try_take(&mut self, owner: (u64, u64), recursive: bool) -> bool {
        match self.owner {
            None => {
                self.owner = Some(owner);
                self.depth = 1;
                true
            }
            Some(o) if recursive && o == owner => {
                self.depth = self.depth.saturating_add(1);
                true
            }
            Some(_) => false,
        }
    }

    fn release(&mut self, owner: (u64, u64), recursive: bool) -> Result<(), Fault> {
        match self.owner {
            None => Err(Fault::NotOwner),
            Some(o) if recursive && o != owner => Err(Fault::NotOwner),
            Some(_) => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 0 || !recursive {
                    self.owner = None;
                    self.depth = 0;
                }
                Ok(())
            }
        }
    }
}

/// The args of every acquire: block or not, and an optional timeout.
type AcquireArgs = (bool, Option<Duration>);

/// A managed `Lock` (any thread may release it, as in Python) or `RLock` (only its owner).
pub(crate) struct ManagedLock {
    recursive: bool,
    st: Mutex<Holder>,
    cv: Condvar,
}

impl ManagedLock {
    fn new(recursive: bool) -> ManagedLock {
        ManagedLock {
            recursive,
            st: Mutex::new(Holder::default()),
            cv: Condvar::new(),
        }
    }

    fn call(&self, method: &str, args: &[u8], ctx: &Ctx<'_>) -> Result<Vec<u8>, Fault> {
        let me = (ctx.client, ctx.thread);
        match method {
            "acquire" => {
                let (block, t): AcquireArgs = decode(method, args)?;
                let g = lock(&self.st);
                let r = self.recursive;
                let got = if block {
                    let (g, w) = wait_until(&self.cv, g, deadline(t), ctx, |h| h.try_take(me, r));
                    drop(g);
                    matches!(w, Waited::Ready)
                } else {
                    let mut g = g;
                    g.try_take(me, r)
                };
                enc(&got)
            }
            "release" => {
                lock(&self.st).release(me, self.recursive)?;
                self.cv.notify_all();
                enc(&())
            }
            "is_locked" => enc(&lock(&self.st).owner.is_some()),
            "is_owned" => enc(&(lock(&self.st).owner == Some(me))),
            _ => Err(unknown("lock", method)),
        }
    }

    fn release_client(&self, client: u64) {
        let mut g = lock(&self.st);
        if g.owner.is_some_and(|o| o.0 == client) {
            *g = Holder::default();
            drop(g);
            self.cv.notify_all();
        }
    }
}

struct SemState {
    value: u32,
    held: HashMap<u64, u32>,
}

/// A managed `Semaphore` or `BoundedSemaphore`: units taken by a client process and not
/// released are given back when it disconnects.
pub(crate) struct ManagedSemaphore {
    limit: Option<u32>,
    st: Mutex<SemState>,
    cv: Condvar,
}

impl ManagedSemaphore {
    fn new(value: u32, limit: Option<u32>) -> ManagedSemaphore {
        ManagedSemaphore {
            limit,
            st: Mutex::new(SemState {
                value,
                held: HashMap::new(),
            }),
            cv: Condvar::new(),
        }
    }

    fn call(&self, method: &str, args: &[u8], ctx: &Ctx<'_>) -> Result<Vec<u8>, Fault> {
        match method {
            "acquire" => {
                let (block, t): AcquireArgs = decode(method, args)?;
                let take = |s: &mut SemState| {
                    if s.value == 0 {
                        return false;
                    }
                    s.value -= 1;
                    *s.held.entry(ctx.client).or_insert(0) += 1;
                    true
                };
                let mut g = lock(&self.st);
                let got = if block {
                    matches!(
                        wait_until(&self.cv, g, deadline(t), ctx, take).1,
                        Waited::Ready
                    )
                } else {
                    take(&mut g)
                };
                enc(&got)
            }
            "release" => {
                let mut g = lock(&self.st);
                if let Some(limit) = self.limit
                    && g.value >= limit
                {
                    return Err(Fault::OverRelease { limit });
                }
                g.value = g.value.saturating_add(1);
                // The unit is charged back to the releasing process if it holds one, else
                // to any process that does (a producer releasing for a consumer).
                let who = if g.held.get(&ctx.client).is_some_and(|n| *n > 0) {
                    Some(ctx.client)
                } else {
                    g.held.iter().find(|(_, n)| **n > 0).map(|(c, _)| *c)
                };
                if let Some(c) = who
                    && let Some(n) = g.held.get_mut(&c)
                {
                    *n -= 1;
                    if *n == 0 {
                        g.held.remove(&c);
                    }
                }
                drop(g);
                self.cv.notify_all();
                enc(&())
            }
            "value" => enc(&lock(&self.st).value),
            _ => Err(unknown("semaphore", method)),
        }
    }

    fn release_client(&self, client: u64) {
        let mut g = lock(&self.st);
        if let Some(n) = g.held.remove(&client) {
            g.value = g.value.saturating_add(n);
            if let Some(limit) = self.limit {
                g.value = g.value.min(limit);
            }
            drop(g);
            self.cv.notify_all();
        }
    }
}

#[derive(Default)]
struct CondState {
    holder: Holder,
    waiters: VecDeque<u64>,
    notified: HashSet<u64>,
    next: u64,
}

/// A managed `Condition` with its own re-entrant lock.
#[derive(Default)]
pub(crate) struct ManagedCondition {
    st: Mutex<CondState>,
    cv: Condvar,
}

impl ManagedCondition {
    fn call(&self, method: &str, args: &[u8], ctx: &Ctx<'_>) -> Result<Vec<u8>, Fault> {
        let me = (ctx.client, ctx.thread);
        match method {
            "acquire" => {
                let (block, t): AcquireArgs = decode(method, args)?;
                let mut g = lock(&self.st);
                let got = if block {
                    let take = |s: &mut CondState| s.holder.try_take(me, true);
                    matches!(
                        wait_until(&self.cv, g, deadline(t), ctx, take).1,
                        Waited::Ready
                    )
                } else {
                    g.holder.try_take(me, true)
                };
                enc(&got)
            }
            "release" => {
                lock(&self.st).holder.release(me, true)?;
                self.cv.notify_all();
                enc(&())
            }
            "wait" => {
                let t: Option<Duration> = decode(method, args)?;
                let mut g = lock(&self.st);
                if g.holder.owner != Some(me) {
                    return Err(Fault::NotOwner);
                }
                let depth = g.holder.depth;
                g.holder = Holder::default();
                g.next += 1;
                let ticket = g.next;
                g.waiters.push_back(ticket);
                self.cv.notify_all();
                let (mut g, w) = wait_until(&self.cv, g, deadline(t), ctx, |s| {
                    s.notified.remove(&ticket)
                });
                let notified = matches!(w, Waited::Ready);
                if !notified {
                    g.waiters.retain(|x| *x != ticket);
                }
                if matches!(w, Waited::Gone) || (ctx.gone)() {
                    // A notification this dead waiter took (or was about to take) goes to
                    // the next live one instead of being lost.
                    if (notified || g.notified.remove(&ticket))
                        && let Some(next) = g.waiters.pop_front()
                    {
                        g.notified.insert(next);
                        drop(g);
                        self.cv.notify_all();
                    }
                    return Err(Fault::Timeout);
                }
                // Take the lock back, however long that takes (as Python does).
                let (mut g, w) = wait_until(&self.cv, g, None, ctx, |s| s.holder.owner.is_none());
                if matches!(w, Waited::Gone) {
                    return Err(Fault::Timeout);
                }
                g.holder = Holder {
                    owner: Some(me),
                    depth,
                };
                enc(&notified)
            }
            "notify" => {
                let n: u32 = decode(method, args)?;
                let mut g = lock(&self.st);
                if g.holder.owner != Some(me) {
                    return Err(Fault::NotOwner);
                }
                for _ in 0..n {
                    let Some(t) = g.waiters.pop_front() else {
                        break;
                    };
                    g.notified.insert(t);
                }
                drop(g);
                self.cv.notify_all();
                enc(&())
            }
            "notify_all" => {
                let mut g = lock(&self.st);
                if g.holder.owner != Some(me) {
                    return Err(Fault::NotOwner);
                }
                let all: Vec<u64> = g.waiters.drain(..).collect();
                g.notified.extend(all);
                drop(g);
                self.cv.notify_all();
                enc(&())
            }
            _ => Err(unknown("condition", method)),
        }
    }

    fn release_client(&self, client: u64) {
        let mut g = lock(&self.st);
        if g.holder.owner.is_some_and(|o| o.0 == client) {
            g.holder = Holder::default();
            drop(g);
            self.cv.notify_all();
        }
    }
}

struct BarState {
    count: u32,
    generation: u64,
    resets: u64,
    broken: bool,
}

/// A managed `Barrier`; a party whose client dies while waiting breaks it (the others get
/// `BrokenBarrier` instead of waiting forever).
pub(crate) struct ManagedBarrier {
    parties: u32,
    st: Mutex<BarState>,
    cv: Condvar,
}

impl ManagedBarrier {
    fn new(parties: u32) -> ManagedBarrier {
        ManagedBarrier {
            parties,
            st: Mutex::new(BarState {
                count: 0,
                generation: 0,
                resets: 0,
                broken: false,
            }),
            cv: Condvar::new(),
        }
    }

    fn call(&self, method: &str, args: &[u8], ctx: &Ctx<'_>) -> Result<Vec<u8>, Fault> {
        match method {
            "wait" => {
                let t: Option<Duration> = decode(method, args)?;
                let mut g = lock(&self.st);
                if g.broken {
                    return Err(Fault::BrokenBarrier);
                }
                let index = g.count;
                g.count += 1;
                if g.count == self.parties {
                    g.count = 0;
                    g.generation += 1;
                    drop(g);
                    self.cv.notify_all();
                    return enc(&index);
                }
                let (generation, resets) = (g.generation, g.resets);
                let (mut g, w) = wait_until(&self.cv, g, deadline(t), ctx, |s| {
                    s.generation != generation || s.broken || s.resets != resets
                });
                if s_passed(&g, generation, resets) {
                    return enc(&index);
                }
                if !matches!(w, Waited::Ready) {
                    g.broken = true;
                    g.count = g.count.saturating_sub(1);
                    drop(g);
                    self.cv.notify_all();
                }
                Err(Fault::BrokenBarrier)
            }
            "abort" => {
                lock(&self.st).broken = true;
                self.cv.notify_all();
                enc(&())
            }
            "reset" => {
                let mut g = lock(&self.st);
                g.broken = false;
                g.count = 0;
                g.resets += 1;
                drop(g);
                self.cv.notify_all();
                enc(&())
            }
            "is_broken" => enc(&lock(&self.st).broken),
            "n_waiting" => enc(&lock(&self.st).count),
            "parties" => enc(&self.parties),
            _ => Err(unknown("barrier", method)),
        }
    }
}

fn s_passed(s: &BarState, generation: u64, resets: u64) -> bool {
    s.generation != generation && s.resets == resets
}

struct QState {
    items: VecDeque<Vec<u8>>,
    unfinished: u64,
}

/// A managed `Queue` or `JoinableQueue` (unbounded unless created with a capacity).
pub(crate) struct ManagedQueue {
    capacity: Option<u64>,
    joinable: bool,
    st: Mutex<QState>,
    cv: Condvar,
}

impl ManagedQueue {
    fn new(capacity: Option<u64>, joinable: bool) -> ManagedQueue {
        ManagedQueue {
            capacity: capacity.filter(|c| *c > 0),
            joinable,
            st: Mutex::new(QState {
                items: VecDeque::new(),
                unfinished: 0,
            }),
            cv: Condvar::new(),
        }
    }

    fn call(&self, method: &str, args: &[u8], ctx: &Ctx<'_>) -> Result<Vec<u8>, Fault> {
        let full = |s: &QState| self.capacity.is_some_and(|c| s.items.len() as u64 >= c);
        match method {
            "put" => {
                let (item, block, t): (Vec<u8>, bool, Option<Duration>) = decode(method, args)?;
                let mut g = lock(&self.st);
                if full(&g) {
                    if !block {
                        return Err(Fault::Full);
                    }
                    let (g2, w) = wait_until(&self.cv, g, deadline(t), ctx, |s| !full(s));
                    g = g2;
                    if !matches!(w, Waited::Ready) {
                        return Err(Fault::Full);
                    }
                }
                g.items.push_back(item);
                g.unfinished += 1;
                drop(g);
                self.cv.notify_all();
                enc(&())
            }
            "get" => {
                let (block, t): AcquireArgs = decode(method, args)?;
                let mut g = lock(&self.st);
                if g.items.is_empty() {
                    if !block {
                        return Err(Fault::Empty);
                    }
                    let (g2, w) =
                        wait_until(&self.cv, g, deadline(t), ctx, |s| !s.items.is_empty());
                    g = g2;
                    if !matches!(w, Waited::Ready) {
                        return Err(Fault::Empty);
                    }
                    // A client that died while waiting must not take an item nobody would
                    // receive: leave it for the others.
                    if (ctx.gone)() {
                        drop(g);
                        self.cv.notify_all();
                        return Err(Fault::Empty);
                    }
                }
                let item = g.items.pop_front().ok_or(Fault::Empty)?;
                drop(g);
                if self.capacity.is_some() {
                    self.cv.notify_all();
                }
                Ok(item)
            }
            // Served only: nothing to attach.
            "attach" => enc(&None::<()>),
            "len" => enc(&(lock(&self.st).items.len() as u64)),
            "is_empty" => enc(&lock(&self.st).items.is_empty()),
            "is_full" => enc(&full(&lock(&self.st))),
            "task_done" if self.joinable => {
                let mut g = lock(&self.st);
                if g.unfinished == 0 {
                    return Err(Fault::TaskDoneTooMany);
                }
                g.unfinished -= 1;
                drop(g);
                self.cv.notify_all();
                enc(&())
            }
            "join" if self.joinable => {
                let t: Option<Duration> = decode(method, args)?;
                let g = lock(&self.st);
                match wait_until(&self.cv, g, deadline(t), ctx, |s| s.unfinished == 0).1 {
                    Waited::Ready => enc(&()),
                    _ => Err(Fault::Timeout),
                }
            }
            _ => Err(unknown("queue", method)),
        }
    }
}
