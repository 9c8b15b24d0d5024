//! The Pool on MPI ranks: the [`Pool`](crate::Pool)'s API with workers that are the ranks of
//! an `mpiexec` job, for work that outgrows one machine (cargo feature `mpi`).
//!
//! # Shape
//! The program is started by MPI, every rank running the same executable:
//!
//! ```text
//! mpiexec -n 4 ./target/release/my_program                 # one machine: 1 main rank + 3 workers
//! mpiexec --hostfile hosts -n 16 ./target/release/my_program  # a cluster (same path on every host)
//! ```
//!
//! Every rank runs `main` up to [`MpiPoolBuilder::start`]. There rank 0 gets the pool and
//! goes on with `main`; every other rank becomes a worker: it serves tasks until rank 0 drops
//! the pool, then exits (status 0) without returning. This is the shape of
//! `python -m mpi4py.futures`: the program needs no rank checks of its own.
//!
//! ```no_run
//! use shmproc::mpi_pool::MpiPool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> shmproc::Result<()> {
//!     shmproc::init();
//!     let pool = MpiPool::builder().register(square).start()?; // workers never return
//!     let squares = pool.map(square, 0..100_000u64)?;
//!     assert_eq!(squares[3], 9);
//!     Ok(())
//! }
//! ```
//!
//! # Functions travel by id
//! A function is never sent: each rank builds the same table of the functions registered with
//! [`MpiPoolBuilder::register`] (and [`register2`](MpiPoolBuilder::register2) for
//! `starmap`), in the same order, before any message is exchanged, and a task names an entry
//! by its index. A worker checks every index against its own table, so a task can only ever
//! run a function that this executable registered. Register unconditionally, on every rank, in
//! the same order; at start every worker sends rank 0 a fingerprint of its table (the
//! functions' type names and where their code lies in the executable, in order), and a
//! mismatch is an error: two functions of one type registered in another order are caught
//! too. Every rank must run the same build of the executable (a rebuilt binary on one host
//! is refused the same way). Calling the pool with a
//! function that was not registered is [`Error::Mpi`] naming it.
//!
//! # Data
//! Arguments and results are serde values (the crate's [`codec`](crate::codec)). A shared
//! memory handle (`Value`, `Array`, `Queue`, …) names memory of one machine and cannot travel
//! to another host: arguments that contain one are [`Error::Mpi`] at the call, never a
//! dangling token on the worker.
//!
//! # Failures
//! A task that panics gives that item [`Error::TaskPanicked`] (with the message and location)
//! and the pool goes on; arguments that fail to decode on the worker, and results that fail
//! to encode there, give their chunk's items [`Error::TaskFailed`]. A rank that dies ends the
//! whole job the way MPI does: `mpiexec` aborts every rank. There is no recovery from a lost rank, and this pool does not pretend
//! otherwise; use the local [`Pool`](crate::Pool) where dying workers must be survived.
//!
//! # Threads
//! All MPI calls are made by the thread that uses the pool; `MpiPool` is not `Sync`.
//! MPI is initialised with `MPI_THREAD_SERIALIZED`.

use crate::codec;
use crate::error::{Error, Result};
use crate::process::{catch_item, record_panic_location};
use crate::transfer::Envelope;
use ::mpi::Threading;
use ::mpi::environment::Universe;
use ::mpi::point_to_point::Status;
use ::mpi::topology::SimpleCommunicator;
use ::mpi::traits::{Communicator, Destination, Source};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Tag of a task, rank 0 → worker.
const TAG_TASK: i32 = 11;
/// Tag of the stop message, rank 0 → worker.
const TAG_STOP: i32 = 12;
/// Tag of a chunk's results, worker → rank 0.
const TAG_RESULT: i32 = 13;
/// Tag of a worker's table fingerprint at start, worker → rank 0.
const TAG_HELLO: i32 = 14;
/// Chunks in flight per worker: one running, one waiting, so a worker never idles for a
/// round trip.
const WINDOW: usize = 2;

/// A task: run function `func` on the encoded `Vec` of items of the chunk at `start`.
#[derive(Debug, Serialize, Deserialize)]
struct Task {
    job: u64,
    start: u64,
    func: u32,
    items: Vec<u8>,
}

/// A chunk's results: an encoded `Vec<Result<R, String>>`, or why none could be made.
#[derive(Debug, Serialize, Deserialize)]
struct Done {
    job: u64,
    start: u64,
    results: std::result::Result<Vec<u8>, String>,
}

/// Runs one chunk: decodes the items, calls the function on each (catching panics), encodes
/// the results.
type Runner = Box<dyn Fn(&[u8]) -> std::result::Result<Vec<u8>, String>>;

struct Entry {
    /// This process's address of the function: only ever compared locally, never sent.
    key: usize,
    /// The function's type, for the table fingerprint and error messages.
    name: &'static str,
    /// Where the function's code lies relative to this module's: the same on every rank of
    /// one executable (the load address differs, the layout does not), and it tells apart
    /// functions of one type, which `name` cannot.
    offset: u64,
    run: Runner,
}

/// Builds an [`MpiPool`]: the functions it may run, then [`start`](MpiPoolBuilder::start).
pub struct MpiPoolBuilder {
    entries: Vec<Entry>,
}

impl fmt::Debug for MpiPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpiPoolBuilder")
            .field(
                "functions",
                &self.entries.iter().map(|e| e.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn decode_items<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<Vec<T>, String> {
    codec::from_bytes(bytes).map_err(|e| format!("arguments: {e}"))
}

/// Encodes a chunk's results: each item's own encoding (so rank 0 can file them before it
/// knows their type), or its panic message. A result that fails to encode fails the whole
/// chunk (as in the local pool): it did not panic.
fn encode_results<R: Serialize>(
    results: Vec<std::result::Result<R, String>>,
) -> std::result::Result<Vec<u8>, String> {
    let items = results
        .into_iter()
        .map(|r| match r {
            Ok(v) => codec::to_bytes(&v).map(Ok),
            Err(panicked) => Ok(Err(panicked)),
        })
        .collect::<Result<Vec<std::result::Result<Vec<u8>, String>>>>()
        .map_err(|e| format!("result: {e}"))?;
    codec::to_bytes(&items).map_err(|e| format!("result: {e}"))
}

impl MpiPoolBuilder {
    /// Registers `f` for [`MpiPool::apply`], [`map`](MpiPool::map) and
    /// [`imap`](MpiPool::imap). Every rank must register the same functions in the same order.
    pub fn register<A, R>(mut self, f: fn(A) -> R) -> Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        self.entries.push(Entry {
            key: f as usize,
            name: std::any::type_name::<fn(A) -> R>(),
            offset: code_offset(f as usize),
            run: Box::new(move |bytes| {
                let items: Vec<A> = decode_items(bytes)?;
                let results: Vec<_> = items.into_iter().map(|a| catch_item(|| f(a))).collect();
                encode_results(results)
            }),
        });
        self
    }

    /// Registers a two-argument `f` for [`MpiPool::starmap`].
    pub fn register2<A, B, R>(mut self, f: fn(A, B) -> R) -> Self
    where
        A: DeserializeOwned + 'static,
        B: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        self.entries.push(Entry {
            key: f as usize,
            name: std::any::type_name::<fn(A, B) -> R>(),
            offset: code_offset(f as usize),
            run: Box::new(move |bytes| {
                let items: Vec<(A, B)> = decode_items(bytes)?;
                let results: Vec<_> = items
                    .into_iter()
                    .map(|(a, b)| catch_item(|| f(a, b)))
                    .collect();
                encode_results(results)
            }),
        });
        self
    }

    /// Initialises MPI and starts the pool: on rank 0, returns it; on every other rank, serves
    /// tasks until rank 0 drops the pool, then exits the process with status 0.
    ///
    /// # Errors
    /// [`Error::Mpi`] if MPI was initialised already, if the program was not started by
    /// `mpiexec` with at least two ranks (the message names the command), or if a worker
    /// registered different functions.
    pub fn start(self) -> Result<MpiPool> {
        let (universe, _) =
            ::mpi::initialize_with_threading(Threading::Serialized).ok_or_else(|| {
                mpi_error("MPI was initialised already in this process: start one MpiPool")
            })?;
        let world = universe.world();
        let fingerprint = table_fingerprint(&self.entries);
        if world.rank() != 0 {
            serve(&world, &self.entries, fingerprint);
            drop(world);
            drop(universe);
            std::process::exit(0);
        }
        let workers = usize::try_from(world.size()).unwrap_or(0).saturating_sub(1);
        if workers == 0 {
            return Err(mpi_error(
                "no worker ranks: start the program with `mpiexec -n 3 <program>` (rank 0 runs \
                 main, the other ranks are the pool's workers)",
            ));
        }
        let pool = MpiPool {
            world,
            entries: self.entries,
            state: RefCell::new(State::new(workers)),
            universe: Some(universe),
        };
        for _ in 0..workers {
            let (hello, status): (Vec<u64>, Status) =
                pool.world.any_process().receive_vec_with_tag(TAG_HELLO);
            if hello.first() != Some(&fingerprint) {
                return Err(mpi_error(&format!(
                    "rank {} registered other functions than rank 0: register the same \
                     functions in the same order on every rank, and run one build of the \
                     executable",
                    status.source_rank()
                )));
            }
        }
        Ok(pool)
    }
}

fn mpi_error(reason: &str) -> Error {
    Error::Mpi {
        reason: reason.to_owned(),
    }
}

/// The distance of the code at `addr` from [`table_fingerprint`]'s, as bits.
fn code_offset(addr: usize) -> u64 {
    let anchor = table_fingerprint as fn(&[Entry]) -> u64 as usize;
    addr.wrapping_sub(anchor) as u64
}

/// FNV-1a over the registered functions' type names and code offsets, in order.
fn table_fingerprint(entries: &[Entry]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for e in entries {
        for b in e.name.bytes().chain([0]).chain(e.offset.to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A worker rank's loop: tasks in, results out, until the stop message.
///
/// Results are sent without blocking, and while a result is on its way the worker keeps
/// taking the tasks rank 0 sends: a large message is handed over only when its receiver
/// takes it (MPI's rendezvous), so a worker blocked in sending to rank 0 while rank 0 is
/// blocked in sending it the next task would deadlock both.
fn serve(world: &SimpleCommunicator, entries: &[Entry], fingerprint: u64) {
    std::panic::set_hook(Box::new(|info| {
        record_panic_location(info.location().map(|l| l.to_string()));
    }));
    let root = world.process_at_rank(0);
    root.send_with_tag(&[fingerprint][..], TAG_HELLO);
    let mut tasks: VecDeque<Vec<u8>> = VecDeque::new();
    let mut stopping = false;
    loop {
        let bytes = match tasks.pop_front() {
            Some(b) => b,
            None if stopping => return,
            None => {
                let (bytes, status): (Vec<u8>, Status) = root.receive_vec();
                if status.tag() != TAG_TASK {
                    return;
                }
                bytes
            }
        };
        let reply = run_task(entries, &bytes);
        ::mpi::request::scope(|scope| {
            let mut req = root.immediate_send_with_tag(scope, &reply[..], TAG_RESULT);
            loop {
                match req.test() {
                    Ok(_) => break,
                    Err(r) => req = r,
                }
                if root.immediate_probe().is_some() {
                    let (bytes, status): (Vec<u8>, Status) = root.receive_vec();
                    if status.tag() == TAG_TASK {
                        tasks.push_back(bytes);
                    } else {
                        stopping = true;
                    }
                } else {
                    std::thread::yield_now();
                }
            }
        });
    }
}

/// Runs one encoded [`Task`] and returns the encoded [`Done`] (always answerable: a task that
/// does not decode is reported on job 0, which rank 0 never uses).
fn run_task(entries: &[Entry], bytes: &[u8]) -> Vec<u8> {
    let done = match codec::from_bytes::<Task>(bytes) {
        Ok(task) => {
            let results = match usize::try_from(task.func).ok().and_then(|i| entries.get(i)) {
                Some(e) => catch_unwind(AssertUnwindSafe(|| (e.run)(&task.items)))
                    .unwrap_or_else(|_| Err("the chunk's runner panicked".to_owned())),
                None => Err(format!(
                    "unknown function id {}: this rank registered {}",
                    task.func,
                    entries.len()
                )),
            };
            Done {
                job: task.job,
                start: task.start,
                results,
            }
        }
        Err(e) => Done {
            job: 0,
            start: 0,
            results: Err(format!("malformed task: {e}")),
        },
    };
    let (job, start) = (done.job, done.start);
    codec::to_bytes(&done).unwrap_or_else(|e| {
        // Results too large for the codec: report that instead, so rank 0 is never left
        // waiting for this chunk.
        let failed = Done {
            job,
            start,
            results: Err(format!("result: {e}")),
        };
        codec::to_bytes(&failed).unwrap_or_default()
    })
}

/// A job's items as they come back, by index.
struct Job {
    /// Results that arrived and were not taken yet, by item index: an `imap` over a long
    /// input keeps only those, not a slot per item it ever took.
    items: HashMap<u64, Result<Vec<u8>>>,
    /// The number of items (for `map`: every index below it is collected).
    len: u64,
    /// Chunk sizes by start, to fill a whole chunk's items when it failed.
    chunks: HashMap<u64, u64>,
    remaining: u64,
    /// Nobody will collect the results: the job goes once the last chunk is back.
    abandoned: bool,
}

struct State {
    next_job: u64,
    /// Chunks sent to each worker (index = rank - 1) and not answered yet.
    in_flight: Vec<usize>,
    /// Chunks waiting for a free worker.
    queue: VecDeque<Task>,
    jobs: HashMap<u64, Job>,
    /// Chunk results that arrived, by job, in arrival order (for `imap_unordered`).
    arrived: HashMap<u64, VecDeque<u64>>,
    /// No new tasks ([`MpiPool::close`]).
    closed: bool,
    /// The workers were told to stop ([`MpiPool::join`]).
    stopped: bool,
}

impl State {
    fn new(workers: usize) -> State {
        State {
            next_job: 1,
            in_flight: vec![0; workers],
            queue: VecDeque::new(),
            jobs: HashMap::new(),
            arrived: HashMap::new(),
            closed: false,
            stopped: false,
        }
    }
}

/// A pool whose workers are the other ranks of an MPI job. See the [module docs](self).
pub struct MpiPool {
    world: SimpleCommunicator,
    entries: Vec<Entry>,
    state: RefCell<State>,
    /// Finalises MPI when dropped, after the workers were told to stop.
    universe: Option<Universe>,
}

impl fmt::Debug for MpiPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpiPool")
            .field("workers", &self.processes())
            .finish_non_exhaustive()
    }
}

/// About `len / (4 × workers)` items per chunk, as the local pool's `map`.
fn default_chunksize(len: usize, workers: usize) -> usize {
    len.div_ceil(4 * workers.max(1)).max(1)
}

impl MpiPool {
    /// Returns a builder: register the functions, then start.
    pub fn builder() -> MpiPoolBuilder {
        MpiPoolBuilder {
            entries: Vec::new(),
        }
    }

    /// Returns the number of worker ranks.
    pub fn processes(&self) -> usize {
        self.state.borrow().in_flight.len()
    }

    fn func_id(&self, key: usize, name: &str) -> Result<u32> {
        self.entries
            .iter()
            .position(|e| e.key == key)
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| {
                mpi_error(&format!(
                    "function {name} is not registered: add `.register(f)` (or `.register2`) to \
                     MpiPool::builder() on every rank"
                ))
            })
    }

    /// Encodes a chunk, refusing shared-memory handles (they name memory of one machine).
    fn encode<T: Serialize>(items: &[T]) -> Result<Vec<u8>> {
        let env = Envelope::seal(items)?;
        if !env.segments.is_empty() || env.needs_descriptors() {
            return Err(mpi_error(
                "the arguments hold a shared-memory handle or a descriptor, which cannot travel \
                 to another host: send plain values",
            ));
        }
        Ok(env.bytes)
    }

    /// Opens a job of `len` items.
    fn new_job(&self, len: usize) -> u64 {
        let mut st = self.state.borrow_mut();
        let job = st.next_job;
        st.next_job += 1;
        st.jobs.insert(
            job,
            Job {
                items: HashMap::new(),
                len: len as u64,
                chunks: HashMap::new(),
                remaining: len as u64,
                abandoned: false,
            },
        );
        job
    }

    /// Queues the chunk of `items` at `start` and sends what the workers have room for.
    fn submit<T: Serialize>(&self, job: u64, func: u32, start: u64, items: &[T]) -> Result<()> {
        if self.state.borrow().closed {
            return Err(Error::Closed);
        }
        let bytes = Self::encode(items)?;
        {
            let mut st = self.state.borrow_mut();
            if let Some(j) = st.jobs.get_mut(&job) {
                j.chunks.insert(start, items.len() as u64);
            }
            st.queue.push_back(Task {
                job,
                start,
                func,
                items: bytes,
            });
        }
        self.dispatch()
    }

    fn dispatch(&self) -> Result<()> {
        let mut st = self.state.borrow_mut();
        while !st.queue.is_empty() {
            let Some(w) = (0..st.in_flight.len()).min_by_key(|&w| st.in_flight[w]) else {
                break;
            };
            if st.in_flight[w] >= WINDOW {
                break;
            }
            let Some(task) = st.queue.pop_front() else {
                break;
            };
            let bytes = codec::to_bytes(&task)?;
            let rank = i32::try_from(w + 1).map_err(|_| mpi_error("too many ranks"))?;
            self.world
                .process_at_rank(rank)
                .send_with_tag(&bytes[..], TAG_TASK);
            st.in_flight[w] += 1;
        }
        Ok(())
    }

    /// Waits for one chunk's results and files them.
    fn progress(&self) -> Result<()> {
        let (bytes, status): (Vec<u8>, Status) =
            self.world.any_process().receive_vec_with_tag(TAG_RESULT);
        {
            let mut st = self.state.borrow_mut();
            let w = usize::try_from(status.source_rank())
                .ok()
                .and_then(|r| r.checked_sub(1));
            if let Some(n) = w.and_then(|w| st.in_flight.get_mut(w)) {
                *n = n.saturating_sub(1);
            }
            let done: Done = codec::from_bytes(&bytes)?;
            let State { jobs, arrived, .. } = &mut *st;
            if let Some(job) = jobs.get_mut(&done.job) {
                let count = job.chunks.remove(&done.start).unwrap_or(0);
                let outcome = match done.results {
                    Ok(b) => codec::from_bytes::<Vec<std::result::Result<Vec<u8>, String>>>(&b)
                        .map_err(|e| format!("result: {e}")),
                    Err(reason) => Err(reason),
                };
                let slots = done.start..done.start.saturating_add(count);
                match outcome {
                    Ok(v) if v.len() as u64 == count => {
                        for (i, r) in slots.zip(v) {
                            let r = r.map_err(|message| Error::TaskPanicked { message });
                            job.items.insert(i, r);
                        }
                    }
                    other => {
                        let reason = match other {
                            Err(r) => r,
                            Ok(_) => "malformed reply".to_owned(),
                        };
                        for i in slots {
                            let reason = reason.clone();
                            job.items.insert(i, Err(Error::TaskFailed { reason }));
                        }
                    }
                }
                job.remaining = job.remaining.saturating_sub(count);
                if job.abandoned && job.remaining == 0 {
                    jobs.remove(&done.job);
                    arrived.remove(&done.job);
                } else {
                    arrived.entry(done.job).or_default().push_back(done.start);
                }
            }
        }
        self.dispatch()
    }

    /// Waits until `job` is complete and returns its items in order.
    fn finish<R: DeserializeOwned>(&self, job: u64) -> Result<Vec<Result<R>>> {
        while self
            .state
            .borrow()
            .jobs
            .get(&job)
            .is_some_and(|j| j.remaining > 0)
        {
            self.progress()?;
        }
        let mut st = self.state.borrow_mut();
        st.arrived.remove(&job);
        let j = st
            .jobs
            .remove(&job)
            .ok_or_else(|| mpi_error("unknown job"))?;
        let mut items = j.items;
        Ok((0..j.len).map(|i| decode_item(items.remove(&i))).collect())
    }

    /// Forgets `job` (its handle is gone): now if complete, else when its last chunk is back.
    fn abandon(&self, job: u64) {
        let mut st = self.state.borrow_mut();
        let State { jobs, arrived, .. } = &mut *st;
        if let Some(j) = jobs.get_mut(&job) {
            j.abandoned = true;
            if j.remaining == 0 {
                jobs.remove(&job);
                arrived.remove(&job);
            }
        }
    }

    /// Runs `f(args)` on a worker and returns its result.
    ///
    /// # Errors
    /// [`Error::TaskPanicked`], [`Error::TaskFailed`]; [`Error::Mpi`] for an unregistered
    /// function or arguments holding a shared-memory handle; [`Error::Codec`];
    /// [`Error::Closed`] after [`close`](MpiPool::close) or [`join`](MpiPool::join).
    pub fn apply<A, R>(&self, f: fn(A) -> R, args: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.apply_async(f, args)?.get()
    }

    /// Starts `f(args)` on a worker; the result is collected by [`MpiAsyncResult::get`].
    ///
    /// # Errors
    /// As for [`apply`](MpiPool::apply), for what fails before the task is sent.
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, args: A) -> Result<MpiAsyncResult<'_, R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let func = self.func_id(f as usize, std::any::type_name::<fn(A) -> R>())?;
        if self.state.borrow().closed {
            return Err(Error::Closed);
        }
        let job = self.new_job(1);
        if let Err(e) = self.submit(job, func, 0, std::slice::from_ref(&args)) {
            self.abandon(job);
            return Err(e);
        }
        Ok(MpiAsyncResult {
            pool: self,
            job,
            single: true,
            _r: PhantomData,
        })
    }

    /// Applies `f` to every item, in chunks of about `len / (4 × workers)` items; results in
    /// input order.
    ///
    /// # Errors
    /// The error of the first item (in input order) that failed; as for
    /// [`apply`](MpiPool::apply).
    pub fn map<A, R, I>(&self, f: fn(A) -> R, input: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, input, None)?.get_all()
    }

    /// [`map`](MpiPool::map) with `chunksize` items per task.
    ///
    /// # Errors
    /// As for [`map`](MpiPool::map).
    pub fn map_chunked<A, R, I>(&self, f: fn(A) -> R, input: I, chunksize: usize) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, input, Some(chunksize))?.get_all()
    }

    /// Starts a [`map`](MpiPool::map) (`chunksize` `None` for the default); collect it with
    /// [`MpiAsyncResult::get_all`].
    ///
    /// # Errors
    /// As for [`apply_async`](MpiPool::apply_async); [`Error::InputPanicked`] if the input
    /// iterator panicked.
    pub fn map_async<A, R, I>(
        &self,
        f: fn(A) -> R,
        input: I,
        chunksize: Option<usize>,
    ) -> Result<MpiAsyncResult<'_, R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        let func = self.func_id(f as usize, std::any::type_name::<fn(A) -> R>())?;
        let items = collect_input(input)?;
        self.start_chunks(func, &items, chunksize)
    }

    /// Applies `f` to every pair; results in input order.
    ///
    /// # Errors
    /// As for [`map`](MpiPool::map).
    pub fn starmap<A, B, R, I>(&self, f: fn(A, B) -> R, input: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = (A, B)>,
    {
        let func = self.func_id(f as usize, std::any::type_name::<fn(A, B) -> R>())?;
        let items = collect_input(input)?;
        self.start_chunks(func, &items, None)?.get_all()
    }

    fn start_chunks<T: Serialize, R>(
        &self,
        func: u32,
        items: &[T],
        chunksize: Option<usize>,
    ) -> Result<MpiAsyncResult<'_, R>> {
        let cs = chunksize
            .unwrap_or_else(|| default_chunksize(items.len(), self.processes()))
            .max(1);
        if self.state.borrow().closed {
            return Err(Error::Closed);
        }
        let job = self.new_job(items.len());
        for (i, chunk) in items.chunks(cs).enumerate() {
            if let Err(e) = self.submit(job, func, (i * cs) as u64, chunk) {
                // The chunks sent already come back to a job nobody waits for.
                self.abandon(job);
                return Err(e);
            }
        }
        Ok(MpiAsyncResult {
            pool: self,
            job,
            single: false,
            _r: PhantomData,
        })
    }

    /// A lazy, ordered `map`: takes items from `input` as workers have room, yields results
    /// in input order, one task per item.
    ///
    /// # Errors
    /// As for [`apply_async`](MpiPool::apply_async) ([`Error::Closed`] on a closed pool); each
    /// item's own error is yielded in its place.
    pub fn imap<A, R, I>(&self, f: fn(A) -> R, input: I) -> Result<MpiImap<'_, I::IntoIter, R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(f, input, 1, true)
    }

    /// Like [`imap`](MpiPool::imap), yielding results in completion order, `chunksize` items
    /// per task.
    ///
    /// # Errors
    /// As for [`imap`](MpiPool::imap).
    pub fn imap_unordered<A, R, I>(
        &self,
        f: fn(A) -> R,
        input: I,
        chunksize: usize,
    ) -> Result<MpiImap<'_, I::IntoIter, R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.imap_with(f, input, chunksize, false)
    }

    fn imap_with<A, R, I>(
        &self,
        f: fn(A) -> R,
        input: I,
        chunksize: usize,
        ordered: bool,
    ) -> Result<MpiImap<'_, I::IntoIter, R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        let func = self.func_id(f as usize, std::any::type_name::<fn(A) -> R>())?;
        if self.state.borrow().closed {
            return Err(Error::Closed);
        }
        let job = self.new_job(0);
        Ok(MpiImap {
            pool: self,
            input: Some(input.into_iter()),
            func,
            job,
            chunksize: chunksize.max(1),
            ordered,
            taken: 0,
            next_out: 0,
            ready: VecDeque::new(),
            error: None,
            _r: PhantomData,
        })
    }
}

impl MpiPool {
    /// Accepts no new tasks: submitting after it is [`Error::Closed`]. Tasks already
    /// submitted still run.
    pub fn close(&self) {
        self.state.borrow_mut().closed = true;
    }

    /// Closes the pool, waits until every submitted task has finished (their results stay
    /// collectable), and stops the worker ranks (they exit).
    ///
    /// # Errors
    /// [`Error::Codec`] if a worker's reply does not decode.
    pub fn join(&self) -> Result<()> {
        self.close();
        while {
            let st = self.state.borrow();
            !st.queue.is_empty() || st.in_flight.iter().any(|&n| n > 0)
        } {
            self.progress()?;
        }
        self.stop_workers();
        Ok(())
    }

    fn stop_workers(&self) {
        if std::mem::replace(&mut self.state.borrow_mut().stopped, true) {
            return;
        }
        for w in 0..self.processes() {
            if let Ok(rank) = i32::try_from(w + 1) {
                self.world
                    .process_at_rank(rank)
                    .send_with_tag(&[0u8][..], TAG_STOP);
            }
        }
    }
}

impl Drop for MpiPool {
    fn drop(&mut self) {
        // Let the workers finish what they were sent, then stop them and finalise MPI (which
        // waits for every rank).
        if !self.state.borrow().stopped {
            self.state.borrow_mut().queue.clear();
            while self.state.borrow().in_flight.iter().any(|&n| n > 0) {
                if self.progress().is_err() {
                    break;
                }
            }
        }
        self.stop_workers();
        drop(self.universe.take());
    }
}

fn decode_item<R: DeserializeOwned>(slot: Option<Result<Vec<u8>>>) -> Result<R> {
    match slot {
        Some(Ok(bytes)) => codec::from_bytes(&bytes),
        Some(Err(e)) => Err(e),
        None => Err(mpi_error("a result never arrived")),
    }
}

/// Collects the input, turning a panic of the iterator into an error.
fn collect_input<I: IntoIterator>(input: I) -> Result<Vec<I::Item>> {
    catch_unwind(AssertUnwindSafe(|| input.into_iter().collect())).map_err(|p| {
        Error::InputPanicked {
            message: crate::process::panic_message(p.as_ref()),
        }
    })
}

/// A task started on the MPI pool; its results are collected when asked for (all MPI calls
/// are made by the thread that uses the pool).
pub struct MpiAsyncResult<'p, R> {
    pool: &'p MpiPool,
    job: u64,
    single: bool,
    _r: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for MpiAsyncResult<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpiAsyncResult")
            .field("job", &self.job)
            .finish_non_exhaustive()
    }
}

impl<R: DeserializeOwned> MpiAsyncResult<'_, R> {
    /// Returns whether every result has arrived (never waits).
    pub fn ready(&self) -> bool {
        self.pool
            .state
            .borrow()
            .jobs
            .get(&self.job)
            .is_none_or(|j| j.remaining == 0)
    }

    /// Waits for the result of an [`apply_async`](MpiPool::apply_async).
    ///
    /// # Errors
    /// The task's error.
    pub fn get(self) -> Result<R> {
        let single = self.single;
        let mut v = self.get_all()?;
        match (single, v.pop()) {
            (true, Some(r)) if v.is_empty() => Ok(r),
            _ => Err(mpi_error("not the result of one task")),
        }
    }

    /// Waits for every result of a [`map_async`](MpiPool::map_async), in input order.
    ///
    /// # Errors
    /// The error of the first item (in input order) that failed.
    pub fn get_all(self) -> Result<Vec<R>> {
        self.pool.finish::<R>(self.job)?.into_iter().collect()
    }
}

/// The iterator of [`MpiPool::imap`] and [`MpiPool::imap_unordered`].
pub struct MpiImap<'p, I, R> {
    pool: &'p MpiPool,
    input: Option<I>,
    func: u32,
    job: u64,
    chunksize: usize,
    ordered: bool,
    /// Items taken from the input so far.
    taken: u64,
    /// The next index to yield (ordered).
    next_out: u64,
    /// Results ready to yield (unordered).
    ready: VecDeque<Result<Vec<u8>>>,
    /// An error of the input iterator, yielded after the results before it.
    error: Option<Error>,
    _r: PhantomData<fn() -> R>,
}

impl<I, R> fmt::Debug for MpiImap<'_, I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpiImap")
            .field("taken", &self.taken)
            .finish_non_exhaustive()
    }
}

impl<I, R> MpiImap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
{
    /// Takes chunks from the input until every worker has a full window.
    fn feed(&mut self) -> Result<()> {
        let room = self.pool.processes() * WINDOW;
        loop {
            let queued = {
                let st = self.pool.state.borrow();
                st.queue.len() + st.in_flight.iter().sum::<usize>()
            };
            if queued >= room {
                return Ok(());
            }
            let Some(input) = self.input.as_mut() else {
                return Ok(());
            };
            let cs = self.chunksize;
            let chunk = match catch_unwind(AssertUnwindSafe(|| {
                input.by_ref().take(cs).collect::<Vec<_>>()
            })) {
                Ok(c) => c,
                Err(p) => {
                    self.input = None;
                    self.error = Some(Error::InputPanicked {
                        message: crate::process::panic_message(p.as_ref()),
                    });
                    return Ok(());
                }
            };
            if chunk.len() < cs {
                self.input = None;
            }
            if chunk.is_empty() {
                return Ok(());
            }
            // Counted only once submitted: a chunk that was never sent must not be waited for.
            let start = self.taken;
            self.pool.submit(self.job, self.func, start, &chunk)?;
            self.taken += chunk.len() as u64;
            let mut st = self.pool.state.borrow_mut();
            if let Some(j) = st.jobs.get_mut(&self.job) {
                j.len = self.taken;
                j.remaining += chunk.len() as u64;
            }
        }
    }

    fn outstanding(&self) -> bool {
        self.pool
            .state
            .borrow()
            .jobs
            .get(&self.job)
            .is_some_and(|j| j.remaining > 0)
    }

    /// Moves the chunks that arrived into `ready` (unordered).
    fn take_arrived(&mut self) {
        let mut st = self.pool.state.borrow_mut();
        let State { jobs, arrived, .. } = &mut *st;
        let (Some(job), Some(starts)) = (jobs.get_mut(&self.job), arrived.get_mut(&self.job))
        else {
            return;
        };
        while let Some(start) = starts.pop_front() {
            for i in start.. {
                match job.items.remove(&i) {
                    Some(r) => self.ready.push_back(r),
                    None => break,
                }
            }
        }
    }
}

impl<I, R> Iterator for MpiImap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        loop {
            if let Err(e) = self.feed() {
                self.input = None;
                return Some(Err(e));
            }
            if self.ordered {
                let mut st = self.pool.state.borrow_mut();
                // The arrival order only serves `imap_unordered`.
                st.arrived.remove(&self.job);
                let got = st
                    .jobs
                    .get_mut(&self.job)
                    .and_then(|j| j.items.remove(&self.next_out));
                drop(st);
                if let Some(r) = got {
                    self.next_out += 1;
                    return Some(decode_item(Some(r)));
                }
            } else {
                self.take_arrived();
                if let Some(r) = self.ready.pop_front() {
                    self.next_out += 1;
                    return Some(decode_item(Some(r)));
                }
            }
            if self.next_out >= self.taken && self.input.is_none() && !self.outstanding() {
                return self.error.take().map(Err);
            }
            if let Err(e) = self.pool.progress() {
                return Some(Err(e));
            }
        }
    }
}

impl<I, R> Drop for MpiImap<'_, I, R> {
    fn drop(&mut self) {
        self.pool.abandon(self.job);
    }
}

impl<R> Drop for MpiAsyncResult<'_, R> {
    fn drop(&mut self) {
        self.pool.abandon(self.job);
    }
}
