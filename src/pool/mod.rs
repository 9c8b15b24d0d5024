//! `Pool`: a fixed set of worker processes that run `fn` items on encoded arguments
//! (`apply`, `map`, `imap`, `starmap` and their async forms), and [`AsyncResult`].
//!
//! # How it works
//! - **Functions.** A `fn` item reaches a worker only through that worker's private
//!   registration pipe (a kernel pipe created for it and inherited by it alone; see
//!   `process::target`). The pool registers each function once, writes the registration to
//!   every worker (and replays all of them to a replacement before it starts), and tasks then
//!   name it by id. A task naming an id that was never registered is refused by the worker.
//! - **Tasks.** Each worker has its own shared-memory [`Queue`] of chunks (a few at a time, so
//!   the load stays balanced); results come back through one shared reply queue. A thread in
//!   the pool's process (the *handler*) takes the replies, hands out the next chunks, decodes
//!   results and runs callbacks.
//! - **Dying workers.** A worker writes which chunk it is about to run into its claim slot in
//!   shared memory before running it. The handler watches the workers; when one ends, it first
//!   takes every reply already queued, then gives the claimed chunk's items
//!   [`Error::WorkerDied`], hands the chunks the worker had not started to other workers, and
//!   starts a replacement. No task waits forever on a dead worker.

mod async_result;
mod worker;

pub use async_result::AsyncResult;

use crate::codec;
use crate::error::{Error, Result};
use crate::process::{Process, Target, cpu_count, registration_frame};
use crate::queue::Queue;
use crate::shared::RawArray;
use crate::sys;
use crate::transfer::{self, Received};
use async_result::ResultSlot;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use worker::{Chunk, ChunkResult, Reply, Task, WorkerArgs, worker_main};

/// Chunks queued to one worker at a time.
const PER_WORKER: usize = 8;
/// Capacity of a worker's task queue (the chunks plus a stop message).
const TASK_QUEUE: usize = 2 * PER_WORKER + 2;
/// How often the handler looks for ended workers.
const TICK: Duration = Duration::from_millis(20);
/// How long a graceful shutdown waits for a worker before killing it.
const STOP_GRACE: Duration = Duration::from_secs(5);

type Finish<R> = Box<dyn FnOnce(Result<Vec<R>>) + Send>;
type OnSuccess<T> = Box<dyn FnOnce(&T) + Send>;
type OnError = Box<dyn FnOnce(&Error) + Send>;

/// Where a job's results go (typed behind this trait).
trait Sink: Send + Sync {
    /// Takes the results of the `count` items of the chunk at `start` (an encoded
    /// `Vec<Result<R, String>>`, or what every item failed with); returns whether the job is
    /// complete.
    fn deliver(&self, start: u64, count: u64, result: ChunkOutcome<'_>) -> bool;
    /// Ends the job: everything still missing is `make()`.
    fn abandon(&self, make: &dyn Fn() -> Error);
}

/// A chunk's results as they reach a sink.
type ChunkOutcome<'a> = std::result::Result<Vec<u8>, &'a dyn Fn() -> Error>;

/// Decodes a chunk's results into one `Result` per item.
fn decode_chunk<R: DeserializeOwned>(count: u64, result: ChunkOutcome<'_>) -> Vec<Result<R>> {
    let all = |make: &dyn Fn() -> Error| (0..count).map(|_| Err(make())).collect();
    match result {
        Ok(bytes) => {
            match transfer::open::<Vec<std::result::Result<R, String>>>(&bytes, Received::none()) {
                // The reply came through shared memory: trust it only if its length matches.
                Ok(v) if v.len() as u64 == count => v
                    .into_iter()
                    .map(|r| r.map_err(|message| Error::TaskPanicked { message }))
                    .collect(),
                Ok(_) => all(&|| Error::TaskFailed {
                    reason: "malformed reply".to_owned(),
                }),
                Err(e) => {
                    let reason = format!("result: {e}");
                    all(&|| Error::TaskFailed {
                        reason: reason.clone(),
                    })
                }
            }
        }
        Err(make) => all(make),
    }
}

/// A job whose results are collected into one `Vec` (apply, map, starmap).
struct Collect<R> {
    state: Mutex<CollectState<R>>,
}

struct CollectState<R> {
    items: Vec<Option<R>>,
    remaining: usize,
    /// The error of the lowest failed index.
    error: Option<(u64, Error)>,
    finish: Option<Finish<R>>,
}

impl<R> Collect<R> {
    fn new(n: usize, finish: Finish<R>) -> Collect<R> {
        Collect {
            state: Mutex::new(CollectState {
                items: (0..n).map(|_| None).collect(),
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
    }
}

impl<R: DeserializeOwned + Send> Sink for Collect<R> {
    fn deliver(&self, start: u64, count: u64, result: ChunkOutcome<'_>) -> bool {
        let results = decode_chunk::<R>(count, result);
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, r) in (start..).zip(results) {
            let slot = usize::try_from(i).ok().and_then(|k| s.items.get_mut(k));
            match (slot, r) {
                (Some(slot @ None), Ok(v)) => *slot = Some(v),
                (Some(None), Err(e)) => s.fail(i, e),
                _ => continue,
            }
            s.remaining = s.remaining.saturating_sub(1);
        }
        if s.remaining > 0 {
            return false;
        }
        let Some(finish) = s.finish.take() else {
            return true;
        };
        let outcome = match s.error.take() {
            Some((_, e)) => Err(e),
            None => Ok(s.items.drain(..).flatten().collect()),
        };
        drop(s);
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
    arrived: Condvar,
}

struct StreamState<R> {
    ready: BTreeMap<u64, Result<R>>,
    delivered: u64,
    /// How many items the job has, once its input is exhausted.
    total: Option<u64>,
    abandoned: Option<Error>,
}

impl<R: DeserializeOwned + Send> Sink for Stream<R> {
    fn deliver(&self, start: u64, count: u64, result: ChunkOutcome<'_>) -> bool {
        let results = decode_chunk::<R>(count, result);
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, r) in (start..).zip(results) {
            s.ready.insert(i, r);
            s.delivered += 1;
        }
        let complete = s.total == Some(s.delivered);
        drop(s);
        self.arrived.notify_all();
        complete
    }

    fn abandon(&self, make: &dyn Fn() -> Error) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.total != Some(s.delivered) {
            s.abandoned = Some(make());
        }
        drop(s);
        self.arrived.notify_all();
    }
}

/// A running worker.
struct Worker {
    process: Process,
    tasks: Queue<Task>,
    /// Write end of its registration pipe.
    control: File,
    /// Chunks in its queue or running.
    outstanding: usize,
}

struct Config {
    processes: usize,
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
    in_flight: HashMap<(u64, u64), (usize, Chunk)>,
    jobs: HashMap<u64, Arc<dyn Sink>>,
    next_job: u64,
    started: u64,
    closed: bool,
    shut: bool,
}

struct Inner {
    state: Mutex<State>,
    idle: Condvar,
    replies: Queue<Reply>,
    claims: RawArray<u64>,
    config: Config,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn spawn_worker(&self, slot: usize, st: &mut State) -> Result<Worker> {
        let (r, mut w) = sys::pipe().map_err(|e| Error::io("pipe", e))?;
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
            .start_spawn_with(&[r.as_fd()])?;
        Ok(Worker {
            process,
            tasks,
            control: w,
            outstanding: 0,
        })
    }

    /// Hands pending chunks to the least busy workers.
    fn dispatch(&self, st: &mut State) {
        while !st.pending.is_empty() {
            let best = st
                .workers
                .iter()
                .enumerate()
                .filter_map(|(i, w)| w.as_ref().map(|w| (w.outstanding, i)))
                .filter(|(n, _)| *n < PER_WORKER)
                .min();
            let Some((_, slot)) = best else {
                return;
            };
            let Some(chunk) = st.pending.pop_front() else {
                return;
            };
            let Some(w) = st.workers.get_mut(slot).and_then(Option::as_mut) else {
                return;
            };
            let task = Task::Run(chunk);
            let put = w.tasks.try_put(&task);
            let Task::Run(chunk) = task else {
                return;
            };
            if put.is_err() {
                st.pending.push_front(chunk);
                return;
            }
            w.outstanding += 1;
            st.in_flight.insert((chunk.job, chunk.start), (slot, chunk));
        }
    }

    fn on_reply(&self, reply: Reply, retiring: &mut Vec<usize>) {
        let Reply::Done {
            slot: _,
            job,
            start,
            result,
        } = reply
        else {
            if let Reply::Retiring { slot } = reply {
                retiring.push(usize::try_from(slot).unwrap_or(usize::MAX));
            }
            return;
        };
        let (sink, count) = {
            let mut st = self.lock();
            let Some((slot, chunk)) = st.in_flight.remove(&(job, start)) else {
                return;
            };
            if let Some(w) = st.workers.get_mut(slot).and_then(Option::as_mut) {
                w.outstanding = w.outstanding.saturating_sub(1);
            }
            self.dispatch(&mut st);
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
        let mut st = self.lock();
        st.jobs.remove(&job);
        if st.jobs.is_empty() {
            self.idle.notify_all();
        }
    }

    /// Handles workers that ended: `wait` names the ones that announced their exit.
    fn check_workers(&self, wait: &[usize]) {
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
                let code = if wait.contains(&slot) {
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
        // Every reply the ended workers sent is in the queue by now: take them first, so only
        // the chunk a worker was running when it died counts as lost.
        let mut more = Vec::new();
        while let Ok(r) = self.replies.try_get() {
            self.on_reply(r, &mut more);
        }
        for (slot, pid, code) in ended {
            self.on_ended(slot, pid, code);
        }
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
            match self.spawn_worker(slot, &mut st) {
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
            let sinks = st.jobs.drain().map(|(_, s)| s).collect();
            self.idle.notify_all();
            sinks
        };
        for s in sinks {
            s.abandon(make);
        }
    }

    fn handler(&self) {
        let mut last = Instant::now();
        let mut retiring = Vec::new();
        loop {
            match self.replies.get_timeout(TICK) {
                Ok(r) => self.on_reply(r, &mut retiring),
                Err(Error::Timeout) => {}
                Err(_) => std::thread::sleep(TICK),
            }
            if !retiring.is_empty() || last.elapsed() >= TICK {
                if self.lock().shut {
                    return;
                }
                self.check_workers(&retiring);
                retiring.clear();
                last = Instant::now();
            }
        }
    }
}

/// A pool of worker processes, like Python's `multiprocessing.Pool`, that never hangs on a
/// dying worker.
///
/// Functions are `fn` items or non-capturing closures (`fn(A) -> R`), as for
/// [`spawn`](crate::spawn); arguments and results travel encoded, and shared objects in them
/// (an [`Array`](crate::Array), a [`Value`](crate::Value), a [`Queue`]) re-attach in the
/// worker. Workers are started with the `Spawn` method (each needs its private registration
/// pipe at start), whatever [`set_start_method`](crate::set_start_method) says.
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
        A: Serialize + DeserializeOwned,
        R: Serialize,
    {
        self.initializer = Some((Target::returning(f), codec::to_bytes(&args)));
        self
    }

    /// Replaces a worker after it ran `n` chunks (tasks, for `apply`); results stay correct.
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks = Some(n);
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
                in_flight: HashMap::new(),
                jobs: HashMap::new(),
                next_job: 0,
                started: 0,
                closed: false,
                shut: false,
            }),
            idle: Condvar::new(),
            replies: Queue::new()?,
            claims: RawArray::new(2 * processes)?,
            config: Config {
                processes,
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
                let w = inner.spawn_worker(slot, &mut st)?;
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

/// Encodes `items` as chunks of `chunksize` (the last may be shorter): `(count, bytes)`.
fn encode_chunks<T: Serialize>(items: &[T], chunksize: usize) -> Result<Vec<(u64, Vec<u8>)>> {
    items
        .chunks(chunksize.max(1))
        .map(|c| Ok((c.len() as u64, codec::to_bytes(c)?)))
        .collect()
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
        let mut st = self.inner.lock();
        if st.shut {
            return Err(Error::PoolTerminated);
        }
        st.pending.push_back(chunk);
        self.inner.dispatch(&mut st);
        Ok(())
    }

    /// Submits encoded chunks as one job; `finish` receives the results.
    fn run_collect<R>(
        &self,
        target: Target,
        chunks: Vec<(u64, Vec<u8>)>,
        finish: Finish<R>,
    ) -> Result<()>
    where
        R: DeserializeOwned + Send + 'static,
    {
        let id = self.register(target)?;
        let n: u64 = chunks.iter().map(|(c, _)| c).sum();
        let sink = Arc::new(Collect::new(
            usize::try_from(n).unwrap_or(usize::MAX),
            finish,
        ));
        let job = self.new_job(sink.clone())?;
        if n == 0 {
            if sink.deliver(0, 0, Ok(codec::to_bytes(&Vec::<u8>::new())?)) {
                self.inner.job_done(job);
            }
            return Ok(());
        }
        let mut start = 0u64;
        for (count, args) in chunks {
            self.submit(Chunk {
                job,
                start,
                count,
                target: id,
                args,
            })?;
            start += count;
        }
        Ok(())
    }

    fn collect_async<R, T>(
        &self,
        target: Target,
        chunks: Vec<(u64, Vec<u8>)>,
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
        self.run_collect(target, chunks, finish)?;
        Ok(AsyncResult::new(slot))
    }

    /// Runs `f(args)` in a worker and waits for the result.
    ///
    /// # Errors
    /// [`Error::TaskPanicked`], [`Error::WorkerDied`], [`Error::TaskFailed`];
    /// [`Error::Closed`] after [`close`](Pool::close); [`Error::Codec`] if `args` cannot be
    /// encoded.
    pub fn apply<A, R>(&self, f: fn(A) -> R, args: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned,
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
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async_with(f, args, Callbacks::none())
    }

    /// [`apply_async`](Pool::apply_async) with callbacks, run in this process (on the pool's
    /// handler thread) before the result becomes ready.
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
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let chunks = vec![(1, codec::to_bytes(std::slice::from_ref(&args))?)];
        self.collect_async(Target::batch(f), chunks, first::<R>, callbacks)
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
        A: Serialize + DeserializeOwned,
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
        A: Serialize + DeserializeOwned,
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
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let items = collect_input(input)?;
        let cs = chunksize.unwrap_or_else(|| default_chunksize(items.len(), self.processes()));
        let chunks = encode_chunks(&items, cs)?;
        self.collect_async(Target::batch(f), chunks, Ok, callbacks)
    }

    /// Like [`map`](Pool::map) for a two-argument function over pairs (Python's
    /// `starmap(f, [(a, b), …])`).
    ///
    /// # Errors
    /// As for [`map`](Pool::map).
    pub fn starmap<A, B, R, I>(&self, f: fn(A, B) -> R, input: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
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
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = (A, B)>,
    {
        let items = collect_input(input)?;
        let cs = chunksize.unwrap_or_else(|| default_chunksize(items.len(), self.processes()));
        let chunks = encode_chunks(&items, cs)?;
        self.collect_async(Target::batch2(f), chunks, Ok, callbacks)
    }

    /// Applies `f` lazily: the input is read as results are taken, and results come in input
    /// order (chunk size 1).
    ///
    /// # Errors
    /// [`Error::Closed`] after [`close`](Pool::close). Each item's own error comes from the
    /// iterator; a panic in the input iterator comes as a last `Err(InputPanicked)`.
    pub fn imap<A, R, I>(&self, f: fn(A) -> R, input: I) -> Result<Imap<'_, I::IntoIter, R>>
    where
        A: Serialize + DeserializeOwned,
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
        A: Serialize + DeserializeOwned,
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
        A: Serialize + DeserializeOwned,
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
        I::Item: Serialize,
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
            arrived: Condvar::new(),
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
        {
            let mut st = self.inner.lock();
            st.closed = true;
            while !st.jobs.is_empty() && !st.shut {
                st = self
                    .inner
                    .idle
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
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
        self.submit(Chunk {
            job,
            start: 0,
            count: 1,
            target: id,
            args: codec::to_bytes(&[()])?,
        })?;
        AsyncResult::new(slot).get()
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

/// Success and error callbacks of an async call; they run in this process, on the pool's
/// handler thread, before the result becomes ready.
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
    I::Item: Serialize,
{
    /// Submits input chunks until the window is full or the input ends.
    fn feed(&mut self) {
        while self.input.is_some() && self.submitted - self.yielded < self.window {
            let Some(input) = self.input.as_mut() else {
                return;
            };
            let cs = self.chunksize;
            let pulled = catch_unwind(AssertUnwindSafe(|| {
                input.by_ref().take(cs).collect::<Vec<_>>()
            }));
            let items = match pulled.map(|items| (items.len() as u64, codec::to_bytes(&items))) {
                Ok((len, Ok(bytes))) => (len, bytes),
                Ok((_, Err(e))) => {
                    self.end_input(Some(e));
                    return;
                }
                Err(p) => {
                    let message = crate::process::panic_message(p.as_ref());
                    self.end_input(Some(Error::InputPanicked { message }));
                    return;
                }
            };
            let (len, args) = items;
            if len > 0 {
                let chunk = Chunk {
                    job: self.job,
                    start: self.submitted,
                    count: len,
                    target: self.target,
                    args,
                };
                if let Err(e) = self.pool.submit(chunk) {
                    self.end_input(Some(e));
                    return;
                }
                self.submitted += len;
            }
            if len < cs as u64 {
                self.end_input(None);
            }
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
    I::Item: Serialize,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        if self.finished {
            return None;
        }
        self.feed();
        let stream = Arc::clone(&self.stream);
        let mut s = stream.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
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
            if self.yielded >= self.submitted {
                if self.input.is_none() {
                    self.finished = true;
                    return self.input_error.take().map(Err);
                }
                drop(s);
                self.feed();
                s = stream.state.lock().unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            s = stream
                .arrived
                .wait(s)
                .unwrap_or_else(PoisonError::into_inner);
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
