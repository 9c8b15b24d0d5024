//! `Pool`: a fixed set of worker processes that run `fn` items on encoded arguments
//! (`apply`, `map`, `imap`, `starmap` and their async forms), and [`AsyncResult`].
//!
//! # How it works
//! - **Functions.** A `fn` item reaches a worker only through that worker's private
//!   registration pipe (a kernel pipe created for it and inherited by it alone; see
//!   `process::target`). The pool registers each function once, writes the registration to
//!   every worker (and replays all of them to a replacement before it starts), and tasks then
//!   name it by id. A task naming an id that was never registered is refused by the worker.
//! - **Tasks.** Each worker has its own shared-memory [`Queue`] of chunks (at most
//!   `PER_WORKER` outstanding, so the load stays balanced; the chunks handed to one worker at
//!   once travel in one message, and a worker is refilled once it ran half empty). Arguments
//!   and results are encoded once per chunk, as byte strings (module `wire`): values of a
//!   primitive number type as their little-endian bytes, a copy with no per-item encoding
//!   step; other types with the codec. A chunk's results are the values of the items that
//!   returned plus the panics by index, no per-item tag. Results come back through one shared
//!   reply queue.
//! - **Replies.** One thread at a time takes the replies (the *taker* role): a thread waiting
//!   for a result ([`AsyncResult::get`], [`Pool::map`], [`Imap::next`], [`Pool::join`]) takes
//!   them itself, so a worker's reply reaches the waiting caller with no hop through another
//!   thread and no wake-up (the queue spins briefly before it sleeps). Other waiters sleep
//!   until a delivery. While nobody waits (async results with callbacks, nobody calling `get`),
//!   the pool's own thread, the *handler*, takes the replies; it also hands out the next
//!   chunks as replies come, decodes results and runs callbacks the same way.
//! - **Dying workers.** A worker writes which chunk it is about to run into its claim slot in
//!   shared memory before running it. The handler watches the workers; when one ends, it takes
//!   the taker role (waking a waiter that holds it with an empty `Wake` reply), first
//!   takes every reply already queued, then gives the claimed chunk's items
//!   [`Error::WorkerDied`], hands the chunks the worker had not started to other workers, and
//!   starts a replacement. No task waits forever on a dead worker.

mod async_result;
pub(crate) mod wire;
mod worker;

pub use async_result::AsyncResult;

use crate::codec;
use crate::error::{Error, Result};
use crate::process::{Process, StartMethod, Target, cpu_count, registration_frame, start_method};
use crate::queue::Queue;
use crate::segment::Segment;
use crate::shared::RawArray;
use crate::sys;
use async_result::ResultSlot;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wire::{Sealed, seal_items};
use worker::{Chunk, ChunkResult, Reply, Task, WorkerArgs, worker_main};

/// Chunks queued to one worker at a time.
const PER_WORKER: usize = 16;
/// Capacity of a worker's task queue (the chunks plus a stop message).
const TASK_QUEUE: usize = 2 * PER_WORKER + 2;
/// How often the handler looks for ended workers.
const TICK: Duration = Duration::from_millis(20);
/// How long a graceful shutdown waits for a worker before killing it.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The longest a waiting thread blocks on the reply queue, or on a delivery, before it looks
/// again (wake-ups normally come sooner: a reply, a delivery, a `Reply::Wake`).
const TAKE_SLICE: Duration = Duration::from_millis(50);
/// The handler leaves the replies to waiting threads while one waits, or began a wait within
/// the last `HANDOFF` (a loop of `apply` or `imap` leaves `get` between calls only briefly).
const HANDOFF: Duration = Duration::from_millis(5);

type Finish<R> = Box<dyn FnOnce(Result<Vec<R>>) + Send>;
type OnSuccess<T> = Box<dyn FnOnce(&T) + Send>;
type OnError = Box<dyn FnOnce(&Error) + Send>;

/// Where a job's results go (typed behind this trait).
trait Sink: Send + Sync {
    /// Takes the results of the `count` items of the chunk at `start` (encoded as
    /// `Target::batch` describes, or what every item failed with); returns whether the job is
    /// complete.
    fn deliver(&self, start: u64, count: u64, result: ChunkOutcome<'_>) -> bool;
    /// Ends the job: everything still missing is `make()`.
    fn abandon(&self, make: &dyn Fn() -> Error);
}

/// A chunk's results as they reach a sink.
type ChunkOutcome<'a> = std::result::Result<Vec<u8>, &'a dyn Fn() -> Error>;

/// Decodes a chunk's results: appends the values of the items that returned to `out`, in
/// order, and returns the errors of the others by index within the chunk (increasing).
/// Appends nothing when every item failed.
fn decode_chunk<R: DeserializeOwned + 'static>(
    count: u64,
    result: ChunkOutcome<'_>,
    out: &mut Vec<R>,
) -> Vec<(u64, Error)> {
    let all = |make: &dyn Fn() -> Error| (0..count).map(|i| (i, make())).collect();
    let bytes = match result {
        Ok(bytes) => bytes,
        Err(make) => return all(make),
    };
    let before = out.len();
    match wire::open_results::<R>(&bytes, out) {
        // The reply came through shared memory: trust it only if it accounts for every item
        // exactly once, panics in increasing index order.
        Ok(panics)
            if (out.len() - before) as u64 + panics.len() as u64 == count
                && panics.windows(2).all(|w| w[0].0 < w[1].0)
                && panics.last().is_none_or(|p| p.0 < count) =>
        {
            panics
                .into_iter()
                .map(|(i, message)| (i, Error::TaskPanicked { message }))
                .collect()
        }
        Ok(_) => {
            out.truncate(before);
            all(&|| Error::TaskFailed {
                reason: "malformed reply".to_owned(),
            })
        }
        Err(e) => {
            let reason = format!("result: {e}");
            all(&|| Error::TaskFailed {
                reason: reason.clone(),
            })
        }
    }
}

/// A job whose results are collected into one `Vec` (apply, map, starmap).
struct Collect<R> {
    state: Mutex<CollectState<R>>,
}

struct CollectState<R> {
    /// The values of items `0..next`: chunks that arrive in order are decoded straight into
    /// it.
    out: Vec<R>,
    next: u64,
    /// The values of chunks that arrived ahead of `next`, by start.
    ahead: BTreeMap<u64, Vec<R>>,
    /// The starts of the chunks delivered.
    delivered: BTreeSet<u64>,
    total: u64,
    remaining: u64,
    /// The error of the lowest failed index (values are no longer kept then).
    error: Option<(u64, Error)>,
    finish: Option<Finish<R>>,
}

impl<R> Collect<R> {
    fn new(n: u64, finish: Finish<R>) -> Collect<R> {
        Collect {
            state: Mutex::new(CollectState {
                out: Vec::new(),
                next: 0,
                ahead: BTreeMap::new(),
                delivered: BTreeSet::new(),
                total: n,
                remaining: n,
                error: None,
                finish: Some(finish),
            }),
        }
    }
}

impl<R> CollectState<R> {
    fn fail(&mut self, index: u64, e: Error) {
        if self.error.as_ref().is_none_or(|(i, _)| index < *i) {
            self.error = Some((index, e));
        }
        self.out = Vec::new();
        self.ahead.clear();
    }
}

impl<R: DeserializeOwned + Send + 'static> Sink for Collect<R> {
    fn deliver(&self, start: u64, count: u64, result: ChunkOutcome<'_>) -> bool {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let s = &mut *guard;
        if s.delivered.contains(&start) || start.saturating_add(count) > s.total {
            return s.remaining == 0;
        }
        s.delivered.insert(start);
        if s.error.is_none() {
            if start == s.next {
                if s.out.is_empty() {
                    s.out.reserve(usize::try_from(s.total).unwrap_or(0));
                }
                let errors = decode_chunk::<R>(count, result, &mut s.out);
                if let Some((i, e)) = errors.into_iter().next() {
                    s.fail(start + i, e);
                } else {
                    s.next += count;
                    while let Some(entry) = s.ahead.first_entry()
                        && *entry.key() == s.next
                    {
                        let values = entry.remove();
                        s.next += values.len() as u64;
                        s.out.extend(values);
                    }
                }
            } else {
                let mut values = Vec::new();
                let errors = decode_chunk::<R>(count, result, &mut values);
                if let Some((i, e)) = errors.into_iter().next() {
                    s.fail(start + i, e);
                } else {
                    s.ahead.insert(start, values);
                }
            }
        } else if let Err(make) = result {
            // Only an earlier failure can still replace the one kept.
            s.fail(start, make());
        } else if s.error.as_ref().is_some_and(|(i, _)| start < *i) {
            let errors = decode_chunk::<R>(count, result, &mut Vec::new());
            if let Some((i, e)) = errors.into_iter().next() {
                s.fail(start + i, e);
            }
        }
        s.remaining = s.remaining.saturating_sub(count);
        if s.remaining > 0 {
            return false;
        }
        let Some(finish) = s.finish.take() else {
            return true;
        };
        let outcome = match s.error.take() {
            Some((_, e)) => Err(e),
            None => Ok(std::mem::take(&mut s.out)),
        };
        drop(guard);
        finish(outcome);
        true
    }

    fn abandon(&self, make: &dyn Fn() -> Error) {
        let finish = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .finish
            .take();
        if let Some(finish) = finish {
            finish(Err(make()));
        }
    }
}

/// A job whose results are handed out one by one (imap, imap_unordered).
struct Stream<R> {
    state: Mutex<StreamState<R>>,
}

struct StreamState<R> {
    ready: BTreeMap<u64, Result<R>>,
    delivered: u64,
    /// How many items the job has, once its input is exhausted.
    total: Option<u64>,
    abandoned: Option<Error>,
}

impl<R: DeserializeOwned + Send + 'static> Sink for Stream<R> {
    fn deliver(&self, start: u64, count: u64, result: ChunkOutcome<'_>) -> bool {
        let mut values = Vec::new();
        let errors = decode_chunk::<R>(count, result, &mut values);
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut errors = errors.into_iter().peekable();
        let mut values = values.into_iter();
        for i in 0..count {
            let r = match errors.next_if(|(k, _)| *k == i) {
                Some((_, e)) => Err(e),
                None => match values.next() {
                    Some(v) => Ok(v),
                    None => break,
                },
            };
            s.ready.insert(start + i, r);
            s.delivered += 1;
        }
        s.total == Some(s.delivered)
    }

    fn abandon(&self, make: &dyn Fn() -> Error) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.total != Some(s.delivered) {
            s.abandoned = Some(make());
        }
    }
}

/// Hashes the pool's own `(job, start)` keys (no outside input) with one multiply per word,
/// instead of SipHash.
#[derive(Default, Clone, Copy)]
struct KeyHash;

impl std::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A running worker.
struct Worker {
    process: Process,
    tasks: Queue<Task>,
    /// Write end of its registration pipe.
    control: File,
    /// The pool's end of its segment socket (descriptor-carrying).
    segments: OwnedFd,
    /// Segments it maps: the default heap, and those sent on `segments`.
    mapped: HashSet<u64>,
    /// Chunks in its queue or running.
    outstanding: usize,
}

struct Config {
    processes: usize,
    /// How the first workers start; replacements too, except in a `Fork` pool (see
    /// [`PoolBuilder::start_method`]).
    method: StartMethod,
    max_tasks: Option<u64>,
    initializer: Option<(Target, Vec<u8>)>,
    prefix: String,
}

struct State {
    workers: Vec<Option<Worker>>,
    registry: HashMap<Target, u32>,
    /// Every registration frame, in id order (id = index + 1).
    frames: Vec<Vec<u8>>,
    pending: VecDeque<Chunk>,
    /// Chunks handed to a worker: `(job, start)` → (slot, chunk).
    in_flight: HashMap<(u64, u64), (usize, Chunk), KeyHash>,
    jobs: HashMap<u64, Arc<dyn Sink>>,
    next_job: u64,
    started: u64,
    closed: bool,
    shut: bool,
}

/// Who takes replies and who waits for them (see [`Inner::wait_until`]).
struct Takers {
    /// Threads inside `wait_until`.
    waiting: usize,
    /// How many waits began so far (the handler compares it across a `HANDOFF`).
    entries: u64,
    /// The handler needs the taker role (to settle ended workers): waiters leave it.
    handler_wants: bool,
    /// Bumped after every delivery and every release of the taker role.
    seq: u64,
    /// Waiters asleep on `Inner::events`.
    sleepers: usize,
    /// Workers (slot, pid) that announced they retire, for the handler to reap and replace.
    retiring: Vec<(usize, i32)>,
}

pub(crate) struct Inner {
    state: Mutex<State>,
    /// Held by the one thread that takes replies from `replies` at a time.
    taker: Mutex<()>,
    takers: Mutex<Takers>,
    /// Waiters that are not the taker sleep here until a delivery.
    events: Condvar,
    /// The handler sleeps here while waiters take the replies.
    handler_wake: Condvar,
    replies: Queue<Reply>,
    claims: RawArray<u64>,
    config: Config,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spawn_worker(&self, slot: usize, st: &mut State, method: StartMethod) -> Result<Worker> {
        let (r, mut w) = sys::pipe().map_err(|e| Error::io("pipe", e))?;
        let (seg_ours, seg_theirs) = sys::socket_pair().map_err(|e| Error::io("socketpair", e))?;
        for f in &st.frames {
            w.write_all(f)
                .map_err(|e| Error::io("write registration", e))?;
        }
        self.claims.set(2 * slot, 0)?;
        self.claims.set(2 * slot + 1, 0)?;
        let tasks = Queue::with_capacity(TASK_QUEUE)?;
        let initializer = match &self.config.initializer {
            Some((t, args)) => Some((st.registry.get(t).copied().unwrap_or(0), args.clone())),
            None => None,
        };
        let args = WorkerArgs {
            slot: u32::try_from(slot).map_err(|_| Error::InvalidSize {
                reason: "too many pool workers",
            })?,
            tasks: tasks.clone(),
            replies: self.replies.clone(),
            claims: self.claims.clone(),
            max_tasks: self.config.max_tasks,
            initializer,
        };
        st.started += 1;
        let process = Process::new(worker_main, args)
            .name(format!("{}-{}", self.config.prefix, st.started))
            .daemon(true)
            .start_method(method)
            .start_with(&[r.as_fd(), seg_theirs.as_fd()])?;
        Ok(Worker {
            process,
            tasks,
            control: w,
            segments: seg_ours,
            mapped: HashSet::from([crate::runtime::default_segment()?.id()]),
            outstanding: 0,
        })
    }

    /// Hands pending chunks to the least busy workers, the chunks for one worker in one
    /// message.
    fn dispatch(&self, st: &mut State) {
        if st.pending.is_empty() {
            return;
        }
        let mut load: Vec<(usize, usize)> = st
            .workers
            .iter()
            .enumerate()
            .filter_map(|(i, w)| w.as_ref().map(|w| (w.outstanding, i)))
            .collect();
        let mut batches: Vec<(usize, Vec<Chunk>)> = Vec::new();
        while !st.pending.is_empty() {
            let Some(best) = load
                .iter_mut()
                .filter(|(n, _)| *n < PER_WORKER)
                .min_by_key(|(n, i)| (*n, *i))
            else {
                break;
            };
            best.0 += 1;
            let slot = best.1;
            let Some(chunk) = st.pending.pop_front() else {
                break;
            };
            match batches.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, b)) => b.push(chunk),
                None => batches.push((slot, vec![chunk])),
            }
        }
        // Chunks a worker's queue refused go back to the front, in order.
        let mut refused = Vec::new();
        for (slot, batch) in batches {
            let Some(w) = st.workers.get_mut(slot).and_then(Option::as_mut) else {
                refused.extend(batch);
                continue;
            };
            // Segments first: the worker maps them before it decodes the chunk.
            for seg in batch.iter().flat_map(|c| &c.keep) {
                if !w.mapped.contains(&seg.id())
                    && sys::send_frame(w.segments.as_fd(), &seg.id().to_le_bytes(), &[seg.as_fd()])
                        .is_ok()
                {
                    w.mapped.insert(seg.id());
                }
            }
            let task = Task::Run(batch);
            let put = w.tasks.try_put(&task);
            let Task::Run(batch) = task else {
                continue;
            };
            if put.is_err() {
                refused.extend(batch);
                continue;
            }
            w.outstanding += batch.len();
            for chunk in batch {
                st.in_flight.insert((chunk.job, chunk.start), (slot, chunk));
            }
        }
        refused.sort_by_key(|c| (c.job, c.start));
        for chunk in refused.into_iter().rev() {
            st.pending.push_front(chunk);
        }
    }

    fn takers(&self) -> MutexGuard<'_, Takers> {
        self.takers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells waiters that something was delivered (or the taker role is free): each looks
    /// again. Costs one uncontended lock when nobody sleeps.
    fn bump(&self) {
        let mut t = self.takers();
        t.seq = t.seq.wrapping_add(1);
        if t.sleepers > 0 {
            self.events.notify_all();
        }
    }

    /// Wakes the thread blocked on the reply queue (if any) with an empty message.
    fn wake_taker(&self) {
        let _ = self.replies.try_put(&Reply::Wake);
    }

    /// Waits until `done()` (checked after every delivery) or `deadline`; returns whether
    /// `done()` held.
    ///
    /// The waiting thread takes the replies itself while no other thread does (the *taker*
    /// role): a worker's reply then goes straight to the thread that waits for it, without a
    /// hop through the handler thread and its wake-ups. Other waiters sleep until a delivery.
    fn wait_until(&self, done: &mut dyn FnMut() -> bool, deadline: Option<Instant>) -> bool {
        {
            let mut t = self.takers();
            t.waiting += 1;
            t.entries = t.entries.wrapping_add(1);
        }
        let r = self.wait_loop(done, deadline);
        self.takers().waiting -= 1;
        r
    }

    fn wait_loop(&self, done: &mut dyn FnMut() -> bool, deadline: Option<Instant>) -> bool {
        loop {
            let (seq, wants) = {
                let t = self.takers();
                (t.seq, t.handler_wants)
            };
            if done() {
                return true;
            }
            let slice = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    left.min(TAKE_SLICE)
                }
                None => TAKE_SLICE,
            };
            let guard = if wants {
                None
            } else {
                self.taker.try_lock().ok()
            };
            if let Some(guard) = guard {
                let got = self.replies.get_timeout(slice);
                match got {
                    Ok(r) => {
                        self.on_reply(r);
                        drop(guard);
                    }
                    Err(Error::Timeout) => drop(guard),
                    Err(_) => {
                        // The queue refuses (closed or damaged): leave the replies to the
                        // handler, which settles the workers.
                        drop(guard);
                        self.bump();
                        self.sleep_events(seq, slice);
                        continue;
                    }
                }
                self.bump();
                continue;
            }
            self.sleep_events(seq, slice);
        }
    }

    /// Sleeps at most `slice` unless something was delivered since `seq` was read.
    fn sleep_events(&self, seq: u64, slice: Duration) {
        let mut t = self.takers();
        if t.seq != seq {
            return;
        }
        t.sleepers += 1;
        let (mut t, _) = self
            .events
            .wait_timeout(t, slice)
            .unwrap_or_else(PoisonError::into_inner);
        t.sleepers -= 1;
    }

    /// Runs `f` in the taker role, taking it from a waiter if one holds it.
    fn as_taker<T>(&self, f: impl FnOnce() -> T) -> T {
        let guard = match self.taker.try_lock() {
            Ok(g) => g,
            Err(_) => {
                self.takers().handler_wants = true;
                self.wake_taker();
                self.taker.lock().unwrap_or_else(PoisonError::into_inner)
            }
        };
        let r = f();
        self.takers().handler_wants = false;
        drop(guard);
        self.bump();
        r
    }

    /// Handles one reply (in the taker role).
    fn on_reply(&self, reply: Reply) {
        let (job, start, result) = match reply {
            Reply::Done {
                slot: _,
                job,
                start,
                result,
            } => (job, start, result),
            Reply::Retiring { slot } => {
                // Named by pid too: the handler may have replaced it already.
                let slot = usize::try_from(slot).unwrap_or(usize::MAX);
                let pid = self
                    .lock()
                    .workers
                    .get(slot)
                    .and_then(Option::as_ref)
                    .map(|w| w.process.pid());
                if let Some(pid) = pid {
                    self.takers().retiring.push((slot, pid));
                    self.handler_wake.notify_all();
                }
                return;
            }
            Reply::Wake => return,
        };
        let (sink, count) = {
            let mut st = self.lock();
            let Some((slot, chunk)) = st.in_flight.remove(&(job, start)) else {
                return;
            };
            let low = match st.workers.get_mut(slot).and_then(Option::as_mut) {
                Some(w) => {
                    w.outstanding = w.outstanding.saturating_sub(1);
                    w.outstanding <= PER_WORKER / 2
                }
                None => true,
            };
            // Refill a worker once it ran half empty, so that chunks travel several to a
            // message.
            if low {
                self.dispatch(&mut st);
            }
            (st.jobs.get(&job).cloned(), chunk.count)
        };
        let Some(sink) = sink else {
            return;
        };
        let complete = match result {
            ChunkResult::Returned(bytes) => sink.deliver(start, count, Ok(bytes)),
            ChunkResult::Failed(reason) => sink.deliver(
                start,
                count,
                Err(&|| Error::TaskFailed {
                    reason: reason.clone(),
                }),
            ),
        };
        if complete {
            self.job_done(job);
        }
    }

    fn job_done(&self, job: u64) {
        self.lock().jobs.remove(&job);
        self.bump();
    }

    /// Handles workers that ended: `wait` names the ones that announced their exit.
    fn check_workers(&self, wait: &[(usize, i32)]) {
        let mut ended = Vec::new();
        {
            let st = self.lock();
            if st.shut {
                return;
            }
            for (slot, w) in st.workers.iter().enumerate() {
                let Some(w) = w else {
                    ended.push((slot, 0, 0));
                    continue;
                };
                let code = if wait.contains(&(slot, w.process.pid())) {
                    w.process.join_timeout(STOP_GRACE).ok().flatten()
                } else {
                    w.process.exitcode()
                };
                if let Some(code) = code {
                    ended.push((slot, w.process.pid(), code));
                }
            }
        }
        if ended.is_empty() {
            return;
        }
        self.as_taker(|| {
            // Every reply the ended workers sent is in the queue by now, and no other thread
            // holds one taken but unhandled (the taker role is ours): take them first, so only
            // the chunk a worker was running when it died counts as lost.
            while let Ok(r) = self.replies.try_get() {
                self.on_reply(r);
            }
            for (slot, pid, code) in ended {
                self.on_ended(slot, pid, code);
            }
        });
    }

    fn on_ended(&self, slot: usize, pid: i32, code: i32) {
        let mut failed = Vec::new();
        let mut start_error = None;
        {
            let mut st = self.lock();
            if st.shut {
                return;
            }
            let claim = (
                self.claims.get(2 * slot).unwrap_or(0),
                self.claims.get(2 * slot + 1).unwrap_or(0),
            );
            let mine: Vec<(u64, u64)> = st
                .in_flight
                .iter()
                .filter(|(_, (s, _))| *s == slot)
                .map(|(k, _)| *k)
                .collect();
            let mut resubmit = Vec::new();
            for key in mine {
                let Some((_, chunk)) = st.in_flight.remove(&key) else {
                    continue;
                };
                if claim == (key.0, key.1 + 1) {
                    let sink = st.jobs.get(&key.0).cloned();
                    failed.push((sink, key, chunk.count));
                } else {
                    resubmit.push(chunk);
                }
            }
            resubmit.sort_by_key(|c| (c.job, c.start));
            for chunk in resubmit.into_iter().rev() {
                st.pending.push_front(chunk);
            }
            if let Some(w) = st.workers.get_mut(slot) {
                *w = None;
            }
            // A replacement starts while the pool's own threads run: a `Fork` pool spawns it.
            let method = match self.config.method {
                StartMethod::Fork => StartMethod::Spawn,
                m => m,
            };
            match self.spawn_worker(slot, &mut st, method) {
                Ok(w) => {
                    if let Some(s) = st.workers.get_mut(slot) {
                        *s = Some(w);
                    }
                }
                Err(e) => start_error = Some(e.to_string()),
            }
            self.dispatch(&mut st);
        }
        for (sink, (job, start), n) in failed {
            let Some(sink) = sink else {
                continue;
            };
            let died = || Error::WorkerDied {
                pid,
                exitcode: code,
            };
            if sink.deliver(start, n, Err(&died)) {
                self.job_done(job);
            }
        }
        if let Some(reason) = start_error {
            // Without workers nothing would ever finish: fail what waits, never hang.
            let st = self.lock();
            if st.workers.iter().all(Option::is_none) {
                drop(st);
                self.abandon_all(&|| Error::TaskFailed {
                    reason: format!("cannot start a pool worker: {reason}"),
                });
            }
        }
    }

    fn abandon_all(&self, make: &dyn Fn() -> Error) {
        let sinks: Vec<Arc<dyn Sink>> = {
            let mut st = self.lock();
            st.pending.clear();
            st.in_flight.clear();
            st.jobs.drain().map(|(_, s)| s).collect()
        };
        for s in sinks {
            s.abandon(make);
        }
        self.bump();
        self.wake_taker();
    }

    /// Whether a thread waits for results, or began a wait since the handler last looked
    /// (`seen`, updated).
    fn waiters_active(&self, seen: &mut u64) -> bool {
        let t = self.takers();
        let active = t.waiting > 0 || t.entries != *seen;
        *seen = t.entries;
        active
    }

    /// The handler thread: reaps and replaces ended workers, and takes the replies while no
    /// thread waits for them (async results nobody waits on, callbacks).
    fn handler(&self) {
        let mut last_check = Instant::now();
        let mut seen = 0;
        loop {
            if self.lock().shut {
                return;
            }
            let retiring = std::mem::take(&mut self.takers().retiring);
            if !retiring.is_empty() || last_check.elapsed() >= TICK {
                self.check_workers(&retiring);
                last_check = Instant::now();
                continue;
            }
            let until_check = TICK.saturating_sub(last_check.elapsed());
            if self.waiters_active(&mut seen) {
                let t = self.takers();
                if t.retiring.is_empty() {
                    let _ = self
                        .handler_wake
                        .wait_timeout(t, HANDOFF.min(until_check))
                        .unwrap_or_else(PoisonError::into_inner);
                }
                continue;
            }
            let Ok(guard) = self.taker.try_lock() else {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            };
            match self
                .replies
                .get_timeout(until_check.max(Duration::from_millis(1)))
            {
                Ok(r) => self.on_reply(r),
                Err(Error::Timeout) => {}
                Err(_) => std::thread::sleep(TICK),
            }
            drop(guard);
            self.bump();
        }
    }
}

/// A pool of worker processes, like Python's `multiprocessing.Pool`, that never hangs on a
/// dying worker.
///
/// Functions are `fn` items or non-capturing closures (`fn(A) -> R`), as for
/// [`spawn`](crate::spawn); their argument and result types own their data (`'static`).
/// Arguments and results travel encoded (primitive numbers as plain bytes, other types with
/// the [`codec`](crate::codec)), and shared objects in them
/// (an [`Array`](crate::Array), a [`Value`](crate::Value), a [`Queue`], containers)
/// re-attach in the worker. Each chunk's arguments are sealed in a transfer envelope: a
/// segment its handles live in that a worker does not map yet (one created after the worker
/// started) is sent to that worker over its private socket before the chunk, so it reaches
/// the worker; a handle that carries descriptors (a
/// [`Connection`](crate::Connection)) is refused at the call with
/// [`Error::NoDescriptorChannel`], since the task queues carry bytes only. As with
/// `multiprocessing`, keep the shared objects alive until the task's result arrives.
/// Workers start with the process-wide [`start_method`](crate::start_method) or the one
/// given to [`PoolBuilder::start_method`].
///
/// Failures are results: a task that panics gives [`Error::TaskPanicked`] (message and
/// location) and its worker goes on; a worker that dies while running a task (abort,
/// `SIGKILL`, out of memory) gives that task [`Error::WorkerDied`], is replaced, and every
/// other task completes.
///
/// Dropping a pool [terminates](Pool::terminate) it; [`Pool::scope`] closes and joins it
/// instead.
///
/// # Examples
/// ```no_run
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn main() -> shmproc::Result<()> {
///     shmproc::init();
///     let pool = shmproc::Pool::new(4)?;
///     assert_eq!(pool.map(square, 0..10)?, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
///     let r = pool.apply_async(square, 10)?;
///     assert_eq!(r.get()?, 100);
///     Ok(())
/// }
/// ```
pub struct Pool {
    inner: Arc<Inner>,
    handler: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.inner.config.processes)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Pool`]: see [`Pool::builder`].
pub struct PoolBuilder {
    processes: Option<usize>,
    method: Option<StartMethod>,
    max_tasks: Option<u64>,
    initializer: Option<(Target, Result<Vec<u8>>)>,
    prefix: String,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("max_tasks_per_child", &self.max_tasks)
            .finish_non_exhaustive()
    }
}

impl PoolBuilder {
    /// The number of workers (default: [`cpu_count`](crate::cpu_count)).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Runs `f(args)` in every worker when it starts (a worker whose initializer panics
    /// exits and is replaced).
    pub fn initializer<A, R>(mut self, f: fn(A) -> R, args: A) -> Self
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize,
    {
        // Decoded by every worker, replacements included: a proxy in them takes a lasting pin.
        let args = crate::manager::storing(|| codec::to_bytes(&args));
        self.initializer = Some((Target::returning(f), args));
        self
    }

    /// Replaces a worker after it ran `n` chunks (tasks, for `apply`); results stay correct.
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks = Some(n);
        self
    }

    /// How the workers start (default: the process-wide
    /// [`start_method`](crate::start_method), like a CPython pool's context).
    ///
    /// - `Spawn` and `ForkServer`: every worker, replacements included.
    /// - `Fork`: the first workers are forked in [`build`](Self::build), before the pool
    ///   starts its handler thread, so the caller must be single-threaded then
    ///   ([`Error::ForkWhileThreaded`] otherwise). A worker that replaces one (after
    ///   `max_tasks_per_child`, or a death) is started with `Spawn`: the pool's own threads
    ///   run by then, and forking a threaded process is what the `Fork` method refuses.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Names the workers `"{prefix}-{n}"` (default `"PoolWorker"`).
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Starts the pool.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] for 0 processes or `max_tasks_per_child(0)`; the errors of
    /// starting a process; [`Error::Codec`] if the initializer's arguments cannot be encoded.
    pub fn build(self) -> Result<Pool> {
        let processes = self.processes.unwrap_or_else(cpu_count);
        if processes == 0 {
            return Err(Error::InvalidSize {
                reason: "a pool needs at least one process",
            });
        }
        if self.max_tasks == Some(0) {
            return Err(Error::InvalidSize {
                reason: "max_tasks_per_child must be at least 1",
            });
        }
        let initializer = match self.initializer {
            Some((t, args)) => Some((t, args?)),
            None => None,
        };
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                workers: (0..processes).map(|_| None).collect(),
                registry: HashMap::new(),
                frames: Vec::new(),
                pending: VecDeque::new(),
                in_flight: HashMap::default(),
                jobs: HashMap::new(),
                next_job: 0,
                started: 0,
                closed: false,
                shut: false,
            }),
            taker: Mutex::new(()),
            takers: Mutex::new(Takers {
                waiting: 0,
                entries: 0,
                handler_wants: false,
                seq: 0,
                sleepers: 0,
                retiring: Vec::new(),
            }),
            events: Condvar::new(),
            handler_wake: Condvar::new(),
            replies: Queue::new()?,
            claims: RawArray::new(2 * processes)?,
            config: Config {
                processes,
                method: self.method.unwrap_or_else(start_method),
                max_tasks: self.max_tasks,
                initializer,
                prefix: self.prefix,
            },
        });
        let pool = Pool {
            inner: Arc::clone(&inner),
            handler: Mutex::new(None),
        };
        if let Some((t, _)) = &inner.config.initializer {
            pool.register(*t)?;
        }
        {
            let mut st = inner.lock();
            for slot in 0..processes {
                let w = inner.spawn_worker(slot, &mut st, inner.config.method)?;
                if let Some(s) = st.workers.get_mut(slot) {
                    *s = Some(w);
                }
            }
        }
        let h = Arc::clone(&inner);
        let handle = std::thread::Builder::new()
            .name("shmproc-pool".to_owned())
            .spawn(move || h.handler())
            .map_err(|e| Error::io("start the pool's handler thread", e))?;
        *pool.handler.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Ok(pool)
    }
}

/// `chunksize, extra = divmod(len, 4 * processes); chunksize + (extra > 0)`, at least 1.
fn default_chunksize(len: usize, processes: usize) -> usize {
    let per = processes.saturating_mul(4).max(1);
    (len / per + usize::from(!len.is_multiple_of(per))).max(1)
}

/// Reads `input` whole; a panic inside the iterator is [`Error::InputPanicked`].
fn collect_input<I: IntoIterator>(input: I) -> Result<Vec<I::Item>> {
    catch_unwind(AssertUnwindSafe(|| input.into_iter().collect::<Vec<_>>())).map_err(|p| {
        Error::InputPanicked {
            message: crate::process::panic_message(p.as_ref()),
        }
    })
}

/// Encodes `items` as chunks of `chunksize` (the last may be shorter), lazily: `(count,
/// bytes)`.
fn encode_chunks<T: Serialize + 'static>(
    items: &[T],
    chunksize: usize,
) -> impl Iterator<Item = Result<(u64, Sealed)>> + '_ {
    items
        .chunks(chunksize.max(1))
        .map(|c| Ok((c.len() as u64, seal_items(c)?)))
}

impl Sealed {
    fn into_chunk(self, job: u64, start: u64, count: u64, target: u32) -> Chunk {
        Chunk {
            job,
            start,
            count,
            target,
            args: self.bytes,
            segments: self.segments.iter().map(Segment::id).collect(),
            keep: self.segments,
        }
    }
}

impl Pool {
    /// Starts a pool of `processes` workers.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] for 0; as for [`PoolBuilder::build`].
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// A builder: processes (default [`cpu_count`](crate::cpu_count)), initializer,
    /// `max_tasks_per_child`, name prefix.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            method: None,
            max_tasks: None,
            initializer: None,
            prefix: "PoolWorker".to_owned(),
        }
    }

    /// Runs `f` with a pool of `processes` workers, then closes and joins it (waits for every
    /// task submitted) — the form that needs no explicit `close`/`join`.
    ///
    /// # Errors
    /// As for [`Pool::new`]; the error of joining.
    pub fn scope<T>(processes: usize, f: impl FnOnce(&Pool) -> T) -> Result<T> {
        let pool = Pool::new(processes)?;
        let r = f(&pool);
        pool.join()?;
        Ok(r)
    }

    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.inner.config.processes
    }

    /// The pids of the current workers (replaced workers have new pids).
    pub fn worker_pids(&self) -> Vec<i32> {
        self.inner
            .lock()
            .workers
            .iter()
            .flatten()
            .map(|w| w.process.pid())
            .collect()
    }

    fn register(&self, target: Target) -> Result<u32> {
        let mut st = self.inner.lock();
        if let Some(&id) = st.registry.get(&target) {
            return Ok(id);
        }
        let id = u32::try_from(st.frames.len() + 1).map_err(|_| Error::InvalidSize {
            reason: "too many pool functions",
        })?;
        let frame = registration_frame(target)?;
        for w in st.workers.iter_mut().flatten() {
            // A worker that died cannot read it; its replacement gets every frame at start.
            let _ = w.control.write_all(&frame);
        }
        st.frames.push(frame);
        st.registry.insert(target, id);
        Ok(id)
    }

    fn new_job(&self, sink: Arc<dyn Sink>) -> Result<u64> {
        let mut st = self.inner.lock();
        if st.shut {
            return Err(Error::PoolTerminated);
        }
        if st.closed {
            return Err(Error::Closed);
        }
        let job = st.next_job;
        st.next_job += 1;
        st.jobs.insert(job, sink);
        Ok(job)
    }

    fn submit(&self, chunk: Chunk) -> Result<()> {
        self.submit_all(vec![chunk])
    }

    /// Submits chunks together: the ones for the same worker travel in one message.
    fn submit_all(&self, chunks: Vec<Chunk>) -> Result<()> {
        let mut st = self.inner.lock();
        if st.shut {
            return Err(Error::PoolTerminated);
        }
        st.pending.extend(chunks);
        self.inner.dispatch(&mut st);
        Ok(())
    }

    /// Submits `n` items as one job, each chunk as soon as it is encoded (so the workers
    /// start while the rest is encoded); `finish` receives the results. If a chunk does not
    /// encode, the job is withdrawn (`finish` never runs) and that is the error.
    fn run_collect<R>(
        &self,
        target: Target,
        n: u64,
        chunks: impl Iterator<Item = Result<(u64, Sealed)>>,
        finish: Finish<R>,
    ) -> Result<()>
    where
        R: DeserializeOwned + Send + 'static,
    {
        let id = self.register(target)?;
        let sink = Arc::new(Collect::new(n, finish));
        let job = self.new_job(sink.clone())?;
        if n == 0 {
            // No values and no panics: what a chunk of no items encodes to.
            if sink.deliver(0, 0, Ok(wire::seal_results::<()>(&[], &Vec::new())?)) {
                self.inner.job_done(job);
            }
            return Ok(());
        }
        let mut start = 0u64;
        for chunk in chunks {
            let submitted = chunk.and_then(|(count, sealed)| {
                self.submit(sealed.into_chunk(job, start, count, id))?;
                Ok(count)
            });
            match submitted {
                Ok(count) => start += count,
                Err(e) => {
                    self.withdraw(job);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Forgets job `job`: its queued chunks are dropped, replies of its running ones ignored,
    /// and its results never delivered.
    fn withdraw(&self, job: u64) {
        let mut st = self.inner.lock();
        st.pending.retain(|c| c.job != job);
        st.jobs.remove(&job);
        drop(st);
        self.inner.bump();
    }

    fn collect_async<R, T>(
        &self,
        target: Target,
        n: u64,
        chunks: impl Iterator<Item = Result<(u64, Sealed)>>,
        convert: fn(Vec<R>) -> Result<T>,
        callbacks: Callbacks<T>,
    ) -> Result<AsyncResult<T>>
    where
        R: DeserializeOwned + Send + 'static,
        T: Send + 'static,
    {
        let slot = ResultSlot::new();
        let out = Arc::clone(&slot);
        let finish: Finish<R> = Box::new(move |r: Result<Vec<R>>| {
            let r = r.and_then(convert);
            match &r {
                Ok(v) => {
                    if let Some(cb) = callbacks.success {
                        cb(v);
                    }
                }
                Err(e) => {
                    if let Some(cb) = callbacks.error {
                        cb(e);
                    }
                }
            }
            out.set(r);
        });
        self.run_collect(target, n, chunks, finish)?;
        Ok(AsyncResult::new(slot, Arc::clone(&self.inner)))
    }

    /// Runs `f(args)` in a worker and waits for the result.
    ///
    /// # Errors
    /// [`Error::TaskPanicked`], [`Error::WorkerDied`], [`Error::TaskFailed`];
    /// [`Error::Closed`] after [`close`](Pool::close); [`Error::Codec`] if `args` cannot be
    /// encoded.
    pub fn apply<A, R>(&self, f: fn(A) -> R, args: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async(f, args)?.get()
    }

    /// Starts `f(args)` in a worker; the result arrives in the [`AsyncResult`].
    ///
    /// # Errors
    /// As for [`apply`](Pool::apply), for the submission.
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, args: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async_with(f, args, Callbacks::none())
    }

    /// [`apply_async`](Pool::apply_async) with callbacks, run in this process (by the thread
    /// that takes the reply, see [`Callbacks`]) before the result becomes ready.
    ///
    /// # Errors
    /// As for [`apply`](Pool::apply), for the submission.
    pub fn apply_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        args: A,
        callbacks: Callbacks<R>,
    ) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let chunks = std::iter::once(seal_items(std::slice::from_ref(&args)).map(|b| (1, b)));
        self.collect_async(Target::batch(f), 1, chunks, first::<R>, callbacks)
    }

    /// Applies `f` to every item of `input` in the workers; results in input order.
    ///
    /// The input is read whole first; the default chunk size is about
    /// `len / (4 × processes)`.
    ///
    /// # Errors
    /// The error of the lowest-indexed failed item; [`Error::InputPanicked`] if the input
    /// iterator panicked (nothing is submitted, the pool goes on); as for
    /// [`apply`](Pool::apply).
    pub fn map<A, R, I>(&self, f: fn(A) -> R, input: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, input, None, Callbacks::none())?.get()
    }

    /// [`map`](Pool::map) with an explicit chunk size.
    ///
    /// # Errors
    /// As for [`map`](Pool::map).
    pub fn map_chunked<A, R, I>(&self, f: fn(A) -> R, input: I, chunksize: usize) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, input, Some(chunksize), Callbacks::none())?
            .get()
    }

    /// Starts [`map`](Pool::map); `chunksize` `None` is the default.
    ///
    /// # Errors
    /// As for [`map`](Pool::map), for the submission.
    pub fn map_async<A, R, I>(
        &self,
        f: fn(A) -> R,
        input: I,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let items = collect_input(input)?;
        let cs = chunksize.unwrap_or_else(|| default_chunksize(items.len(), self.processes()));
        let chunks = encode_chunks(&items, cs);
        self.collect_async(Target::batch(f), items.len() as u64, chunks, Ok, callbacks)
    }

    /// Like [`map`](Pool::map) for a two-argument function over pairs (Python's
    /// `starmap(f, [(a, b), …])`).
    ///
    /// # Errors
    /// As for [`map`](Pool::map).
    pub fn starmap<A, B, R, I>(&self, f: fn(A, B) -> R, input: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = (A, B)>,
    {
        self.starmap_async(f, input, None, Callbacks::none())?.get()
    }

    /// Starts [`starmap`](Pool::starmap); `chunksize` `None` is the default.
    ///
    /// # Errors
    /// As for [`map`](Pool::map), for the submission.
    pub fn starmap_async<A, B, R, I>(
        &self,
        f: fn(A, B) -> R,
        input: I,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + 'static,
        B: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = (A, B)>,
    {
        let items = collect_input(input)?;
        let cs = chunksize.unwrap_or_else(|| default_chunksize(items.len(), self.processes()));
        let chunks = encode_chunks(&items, cs);
        self.collect_async(Target::batch2(f), items.len() as u64, chunks, Ok, callbacks)
    }

    /// Applies `f` lazily: the input is read as results are taken, and results come in input
    /// order (chunk size 1).
    ///
    /// # Errors
    /// [`Error::Closed`] after [`close`](Pool::close). Each item's own error comes from the
    /// iterator; a panic in the input iterator comes as a last `Err(InputPanicked)`.
    pub fn imap<A, R, I>(&self, f: fn(A) -> R, input: I) -> Result<Imap<'_, I::IntoIter, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(Target::batch(f), input.into_iter(), 1, true)
    }

    /// [`imap`](Pool::imap) with an explicit chunk size.
    ///
    /// # Errors
    /// As for [`imap`](Pool::imap).
    pub fn imap_chunked<A, R, I>(
        &self,
        f: fn(A) -> R,
        input: I,
        chunksize: usize,
    ) -> Result<Imap<'_, I::IntoIter, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(Target::batch(f), input.into_iter(), chunksize, true)
    }

    /// Like [`imap`](Pool::imap), yielding results as they complete.
    ///
    /// # Errors
    /// As for [`imap`](Pool::imap).
    pub fn imap_unordered<A, R, I>(
        &self,
        f: fn(A) -> R,
        input: I,
        chunksize: usize,
    ) -> Result<Imap<'_, I::IntoIter, R>>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(Target::batch(f), input.into_iter(), chunksize, false)
    }

    fn imap_with<I, R>(
        &self,
        target: Target,
        input: I,
        chunksize: usize,
        ordered: bool,
    ) -> Result<Imap<'_, I, R>>
    where
        I: Iterator,
        I::Item: Serialize + 'static,
        R: DeserializeOwned + Send + 'static,
    {
        let id = self.register(target)?;
        let stream = Arc::new(Stream {
            state: Mutex::new(StreamState {
                ready: BTreeMap::new(),
                delivered: 0,
                total: None,
                abandoned: None,
            }),
        });
        let job = self.new_job(stream.clone())?;
        let chunksize = chunksize.max(1);
        let window = (2 * PER_WORKER * self.processes()).max(16) * chunksize;
        Ok(Imap {
            pool: self,
            input: Some(input),
            target: id,
            job,
            chunksize,
            window: window as u64,
            submitted: 0,
            yielded: 0,
            stream,
            ordered,
            input_error: None,
            finished: false,
        })
    }

    /// Prevents new tasks: submitting afterwards is [`Error::Closed`]; submitted tasks run
    /// on.
    pub fn close(&self) {
        self.inner.lock().closed = true;
    }

    /// Closes the pool, waits for every submitted task, then stops the workers and reaps
    /// them.
    ///
    /// Waits for [`Imap`] iterators still alive to be exhausted or dropped.
    ///
    /// # Errors
    /// [`Error::Io`] if a worker cannot be reaped.
    pub fn join(&self) -> Result<()> {
        self.inner.lock().closed = true;
        self.inner.wait_until(
            &mut || {
                let st = self.inner.lock();
                st.jobs.is_empty() || st.shut
            },
            None,
        );
        self.shutdown(true)
    }

    /// Stops the workers now (`SIGKILL`), reaps them, and ends every unfinished task with
    /// [`Error::PoolTerminated`]. Prompt however many tasks are queued.
    ///
    /// # Errors
    /// [`Error::Io`] if a worker cannot be reaped.
    pub fn terminate(&self) -> Result<()> {
        self.shutdown(false)
    }

    fn shutdown(&self, graceful: bool) -> Result<()> {
        let workers: Vec<Worker> = {
            let mut st = self.inner.lock();
            st.shut = true;
            st.closed = true;
            st.workers.iter_mut().filter_map(Option::take).collect()
        };
        self.inner.abandon_all(&|| Error::PoolTerminated);
        let mut result = Ok(());
        if graceful {
            for w in &workers {
                let _ = w.tasks.try_put(&Task::Stop);
            }
        } else {
            for w in &workers {
                let _ = w.process.kill();
            }
        }
        for w in &workers {
            let ended = match w.process.join_timeout(STOP_GRACE) {
                Ok(Some(_)) => Ok(()),
                _ => w.process.kill().and_then(|()| w.process.join().map(drop)),
            };
            if result.is_ok() {
                result = ended;
            }
        }
        let handle = self
            .handler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        result
    }

    /// Submits a task that names function `id` directly, as a forged message would: the
    /// worker must refuse it.
    #[cfg(feature = "test-support")]
    #[doc(hidden)]
    pub fn apply_raw_id(&self, id: u32) -> Result<()> {
        let slot = ResultSlot::new();
        let out = Arc::clone(&slot);
        let finish: Finish<()> = Box::new(move |r: Result<Vec<()>>| out.set(r.map(drop)));
        let sink = Arc::new(Collect::new(1, finish));
        let job = self.new_job(sink)?;
        self.submit(seal_items(&[()])?.into_chunk(job, 0, 1, id))?;
        AsyncResult::new(slot, Arc::clone(&self.inner)).get()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let running = !self.inner.lock().shut;
        if running {
            let _ = self.shutdown(false);
        }
    }
}

fn first<R>(v: Vec<R>) -> Result<R> {
    v.into_iter().next().ok_or(Error::Empty)
}

/// Success and error callbacks of an async call; they run in this process before the result
/// becomes ready, on the thread that takes the reply: the pool's handler thread, or a thread
/// of this process waiting on a pool result at that moment. Like CPython's, a callback should
/// return quickly, and must not itself wait on the pool (that would wait on the thread that
/// runs it).
pub struct Callbacks<T> {
    success: Option<OnSuccess<T>>,
    error: Option<OnError>,
}

impl<T> fmt::Debug for Callbacks<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callbacks")
            .field("success", &self.success.is_some())
            .field("error", &self.error.is_some())
            .finish()
    }
}

impl<T> Callbacks<T> {
    /// No callbacks.
    pub fn none() -> Callbacks<T> {
        Callbacks {
            success: None,
            error: None,
        }
    }

    /// Calls `f` with the result when the call succeeds.
    pub fn on_success(mut self, f: impl FnOnce(&T) + Send + 'static) -> Self {
        self.success = Some(Box::new(f));
        self
    }

    /// Calls `f` with the error when the call fails.
    pub fn on_error(mut self, f: impl FnOnce(&Error) + Send + 'static) -> Self {
        self.error = Some(Box::new(f));
        self
    }
}

/// The iterator of [`Pool::imap`] and [`Pool::imap_unordered`]: reads its input as results
/// are taken (a bounded window ahead), and yields one `Result` per input item.
pub struct Imap<'p, I, R> {
    pool: &'p Pool,
    input: Option<I>,
    target: u32,
    job: u64,
    chunksize: usize,
    window: u64,
    submitted: u64,
    yielded: u64,
    stream: Arc<Stream<R>>,
    ordered: bool,
    input_error: Option<Error>,
    finished: bool,
}

impl<I, R> fmt::Debug for Imap<'_, I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("submitted", &self.submitted)
            .field("yielded", &self.yielded)
            .field("ordered", &self.ordered)
            .finish_non_exhaustive()
    }
}

impl<I, R> Imap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize + 'static,
{
    /// Once half the window is free, submits input chunks until it is full or the input
    /// ends, all at once (so they travel several to a message).
    fn feed(&mut self) {
        if self.input.is_none() || self.submitted - self.yielded > self.window / 2 {
            return;
        }
        let mut batch = Vec::new();
        let mut next = self.submitted;
        let mut end = None;
        while let Some(input) = self.input.as_mut()
            && next - self.yielded < self.window
        {
            let cs = self.chunksize;
            let pulled = catch_unwind(AssertUnwindSafe(|| {
                input.by_ref().take(cs).collect::<Vec<_>>()
            }));
            let (len, args) = match pulled.map(|items| (items.len() as u64, seal_items(&items))) {
                Ok((len, Ok(bytes))) => (len, bytes),
                Ok((_, Err(e))) => {
                    end = Some(Some(e));
                    break;
                }
                Err(p) => {
                    let message = crate::process::panic_message(p.as_ref());
                    end = Some(Some(Error::InputPanicked { message }));
                    break;
                }
            };
            if len > 0 {
                batch.push(args.into_chunk(self.job, next, len, self.target));
                next += len;
            }
            if len < cs as u64 {
                end = Some(None);
                break;
            }
        }
        if !batch.is_empty() {
            match self.pool.submit_all(batch) {
                Ok(()) => self.submitted = next,
                Err(e) => end = Some(Some(e)),
            }
        }
        if let Some(error) = end {
            self.end_input(error);
        }
    }
}

impl<I, R> Imap<'_, I, R> {
    /// No more input: the job has `submitted` items.
    fn end_input(&mut self, error: Option<Error>) {
        self.input = None;
        if self.input_error.is_none() {
            self.input_error = error;
        }
        let mut s = self
            .stream
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        s.total = Some(self.submitted);
        let complete = s.delivered == self.submitted;
        drop(s);
        if complete {
            self.pool.inner.job_done(self.job);
        }
    }
}

impl<I, R> Iterator for Imap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize + 'static,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        if self.finished {
            return None;
        }
        self.feed();
        let stream = Arc::clone(&self.stream);
        loop {
            {
                let mut s = stream.state.lock().unwrap_or_else(PoisonError::into_inner);
                let got = if self.ordered {
                    s.ready.remove(&self.yielded)
                } else {
                    s.ready.pop_first().map(|(_, r)| r)
                };
                if let Some(r) = got {
                    self.yielded += 1;
                    return Some(r);
                }
                if let Some(e) = s.abandoned.take() {
                    self.finished = true;
                    return Some(Err(e));
                }
            }
            if self.yielded >= self.submitted {
                if self.input.is_none() {
                    self.finished = true;
                    return self.input_error.take().map(Err);
                }
                self.feed();
                continue;
            }
            let (ordered, next) = (self.ordered, self.yielded);
            self.pool.inner.wait_until(
                &mut || {
                    let s = stream.state.lock().unwrap_or_else(PoisonError::into_inner);
                    s.abandoned.is_some()
                        || if ordered {
                            s.ready.contains_key(&next)
                        } else {
                            !s.ready.is_empty()
                        }
                },
                None,
            );
        }
    }
}

impl<I, R> Drop for Imap<'_, I, R> {
    fn drop(&mut self) {
        if self.input.is_some() {
            self.end_input(None);
        }
    }
}
