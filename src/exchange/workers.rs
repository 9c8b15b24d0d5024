//! Reusable workers and the parallel maps built on them.

use super::{Channel, remember};
use crate::connection::{Waitable, pipe, wait};
use crate::error::{Error, Result};
use crate::process::{Driver, spawn_driven};
use crate::transfer::Envelope;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

/// The worker loop: take `Some(job)`, send back `f(job)`, until `None`, or the creator
/// closed its side or is gone.
struct Serve<A, R>(PhantomData<fn(A) -> R>);

impl<A: DeserializeOwned + 'static, R: Serialize + 'static> Driver for Serve<A, R> {
    type Function = fn(A) -> R;
    type Args = Channel;
    fn drive(f: fn(A) -> R, mut channel: Channel) {
        while let Ok(Some(job)) = channel.receive::<Option<A>>() {
            if channel.send(&f(job)).is_err() {
                return;
            }
        }
    }
}

/// Jobs sent to one worker ahead of their results, so it never waits for the creator.
const DEPTH: usize = 2;

/// One worker and the jobs sent to it, oldest (the one it is running) first.
struct Slot {
    channel: Channel,
    jobs: VecDeque<(u64, Vec<u8>)>,
}

/// Encodes a job message as `Channel::send` would.
fn encode<A: Serialize>(job: &Option<A>) -> Result<Vec<u8>> {
    let env = Envelope::seal(job)?;
    if env.needs_descriptors() {
        return Err(Error::NoDescriptorChannel {
            channel: "a shared-memory pipe",
            count: env.fds.len(),
        });
    }
    Ok(env.bytes)
}

/// Whether `e` means the worker's process is gone (rather than one bad message).
fn worker_gone(e: &Error) -> bool {
    matches!(
        e,
        Error::Disconnected
            | Error::ChildPanicked { .. }
            | Error::ChildFailed { .. }
            | Error::ChildStartFailed { .. }
    )
}

/// A fixed set of reusable worker processes running `f` on jobs, so that many small jobs do
/// not start a process each (pprocess's reusable processes).
///
/// Each worker loops on its [`Channel`]: it takes a job, sends back `f(job)`, and takes the
/// next, until told to stop (on drop). Each worker has up to two jobs sent ahead, so it does
/// not wait for the creator between jobs; the rest wait here, in order, and go to the next
/// worker with room. Jobs are encoded when submitted.
/// Shared objects inside a job travel as handles: keep them alive until its result arrives. A worker that dies mid-job (panic, `SIGKILL`) gives
/// that job the error that describes its end and is replaced; the other jobs complete.
///
/// [`Map`], [`Queue`] and [`pmap`] are built on it.
pub struct Workers<A, R> {
    f: fn(A) -> R,
    slots: Vec<Slot>,
    pending: VecDeque<(u64, Vec<u8>)>,
    next_id: u64,
    _result: PhantomData<fn() -> R>,
}

impl<A, R> fmt::Debug for Workers<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workers")
            .field("workers", &self.slots.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<A, R> Workers<A, R>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    /// Starts `count` (at least 1) worker processes running `f`.
    ///
    /// # Errors
    /// As for [`start`](super::start()).
    pub fn new(f: fn(A) -> R, count: usize) -> Result<Workers<A, R>> {
        let mut w = Workers {
            f,
            slots: Vec::new(),
            pending: VecDeque::new(),
            next_id: 0,
            _result: PhantomData,
        };
        for _ in 0..count.max(1) {
            let channel = w.start_worker()?;
            w.slots.push(Slot {
                channel,
                jobs: VecDeque::new(),
            });
        }
        Ok(w)
    }

    fn start_worker(&self) -> Result<Channel> {
        let (mine, theirs) = pipe()?;
        let handle = spawn_driven::<Serve<A, R>>(self.f, Channel::child_side(theirs))?;
        remember(handle.process());
        Ok(Channel::started(mine, handle))
    }

    /// The workers' pids.
    pub fn pids(&self) -> Vec<i32> {
        self.slots.iter().map(|s| s.channel.pid()).collect()
    }

    /// The number of jobs submitted whose result has not been returned by
    /// [`next`](Workers::next) yet.
    pub fn outstanding(&self) -> usize {
        self.pending.len() + self.slots.iter().map(|s| s.jobs.len()).sum::<usize>()
    }

    /// Submits `job` and returns its number (0, 1, 2, … in submission order).
    ///
    /// # Errors
    /// [`Error::Codec`] if the job cannot be encoded, [`Error::NoDescriptorChannel`] if it
    /// holds a connection; the errors of sending it to a worker.
    pub fn submit(&mut self, job: A) -> Result<u64> {
        let bytes = encode(&Some(job))?;
        let id = self.next_id;
        self.next_id += 1;
        self.pending.push_back((id, bytes));
        self.dispatch()?;
        Ok(id)
    }

    /// Hands pending jobs to the workers, least loaded first, up to [`DEPTH`] each.
    fn dispatch(&mut self) -> Result<()> {
        for level in 0..DEPTH {
            for slot in self.slots.iter_mut().filter(|s| s.jobs.len() <= level) {
                let Some((id, job)) = self.pending.pop_front() else {
                    return Ok(());
                };
                slot.channel.send_raw(&job)?;
                slot.jobs.push_back((id, job));
            }
        }
        Ok(())
    }

    /// Waits up to `timeout` (`None`: without limit) for the next result to arrive and
    /// returns it with its job number: `Ok(None)` when no job is outstanding or the time
    /// passed. A job whose worker died has the error describing that death as its result.
    ///
    /// # Errors
    /// The errors of waiting, of starting a replacement worker, or of handing it a job.
    pub fn next(&mut self, timeout: Option<Duration>) -> Result<Option<(u64, Result<R>)>> {
        let busy: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots.get(i).is_some_and(|s| !s.jobs.is_empty()))
            .collect();
        if busy.is_empty() {
            return Ok(None);
        }
        let ready = {
            let waitables: Vec<Waitable<'_>> = busy
                .iter()
                .filter_map(|&i| self.slots.get(i))
                .map(|s| Waitable::from(&s.channel))
                .collect();
            wait(&waitables, timeout)?
        };
        let Some(&i) = ready.first().and_then(|&k| busy.get(k)) else {
            return Ok(None);
        };
        let Some(slot) = self.slots.get_mut(i) else {
            return Ok(None);
        };
        let Some((id, _)) = slot.jobs.pop_front() else {
            return Ok(None);
        };
        let result = slot.channel.receive::<R>();
        if let Err(e) = &result
            && worker_gone(e)
        {
            // The jobs queued behind the failed one never ran: they go first to the others.
            let behind = std::mem::take(&mut slot.jobs);
            for job in behind.into_iter().rev() {
                self.pending.push_front(job);
            }
            let fresh = self.start_worker()?;
            if let Some(slot) = self.slots.get_mut(i) {
                let mut old = std::mem::replace(&mut slot.channel, fresh);
                old.wait()?;
            }
        }
        self.dispatch()?;
        Ok(Some((id, result)))
    }
}

impl<A, R> Drop for Workers<A, R> {
    /// Tells every worker to stop (closing its channel ends its loop) and reaps it; a worker
    /// finishes its current job first.
    fn drop(&mut self) {
        for slot in &mut self.slots {
            slot.channel.close();
        }
        for slot in &mut self.slots {
            let _ = slot.channel.wait();
        }
    }
}

/// Results in submission order: push jobs, then iterate (pprocess's `Map`).
///
/// # Examples
/// ```no_run
/// fn main() -> shmproc::Result<()> {
///     shmproc::init();
///     let mut m = shmproc::exchange::Map::new(|x: u32| x * 2, 2)?;
///     for x in [3, 1, 2] {
///         m.push(x)?;
///     }
///     let out: Vec<u32> = m.collect::<shmproc::Result<_>>()?;
///     assert_eq!(out, [6, 2, 4]);
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct Map<A, R> {
    workers: Workers<A, R>,
    next: u64,
    arrived: BTreeMap<u64, Result<R>>,
}

impl<A, R> Map<A, R>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    /// A map over `limit` reusable workers running `f`.
    ///
    /// # Errors
    /// As for [`Workers::new`].
    pub fn new(f: fn(A) -> R, limit: usize) -> Result<Map<A, R>> {
        Ok(Map {
            workers: Workers::new(f, limit)?,
            next: 0,
            arrived: BTreeMap::new(),
        })
    }

    /// Submits a job; its result comes out after those of the jobs pushed before it.
    ///
    /// # Errors
    /// As for [`Workers::submit`].
    pub fn push(&mut self, job: A) -> Result<()> {
        self.workers.submit(job).map(drop)
    }
}

impl<A, R> Iterator for Map<A, R>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    type Item = Result<R>;

    /// The next result in submission order (waiting for it); `None` when all were returned.
    fn next(&mut self) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.arrived.remove(&self.next) {
                self.next += 1;
                return Some(r);
            }
            match self.workers.next(None) {
                Ok(Some((id, r))) => {
                    self.arrived.insert(id, r);
                }
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Results in arrival order: push jobs, then iterate (pprocess's `Queue`).
#[derive(Debug)]
pub struct Queue<A, R> {
    workers: Workers<A, R>,
}

impl<A, R> Queue<A, R>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    /// A queue over `limit` reusable workers running `f`.
    ///
    /// # Errors
    /// As for [`Workers::new`].
    pub fn new(f: fn(A) -> R, limit: usize) -> Result<Queue<A, R>> {
        Ok(Queue {
            workers: Workers::new(f, limit)?,
        })
    }

    /// Submits a job and returns its number (0, 1, … in push order).
    ///
    /// # Errors
    /// As for [`Workers::submit`].
    pub fn push(&mut self, job: A) -> Result<u64> {
        self.workers.submit(job)
    }

    /// The next result to arrive with its job number, waiting up to `timeout`.
    ///
    /// # Errors
    /// As for [`Workers::next`].
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<(u64, Result<R>)>> {
        self.workers.next(Some(timeout))
    }
}

impl<A, R> Iterator for Queue<A, R>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    type Item = Result<R>;

    /// The next result to arrive (waiting for it); `None` when all were returned.
    fn next(&mut self) -> Option<Result<R>> {
        match self.workers.next(None) {
            Ok(Some((_, r))) => Some(r),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// Applies `f` to every item on `limit` reusable worker processes and returns the results in
/// input order (pprocess's `pmap`; equal to `iterable.into_iter().map(f).collect()`).
///
/// # Errors
/// The first failed job's error (a panic in `f` is
/// [`Error::ChildPanicked`]); as for [`Workers::new`].
pub fn pmap<A, R>(
    f: fn(A) -> R,
    iterable: impl IntoIterator<Item = A>,
    limit: usize,
) -> Result<Vec<R>>
where
    A: Serialize + DeserializeOwned + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    let mut workers = Workers::new(f, limit)?;
    for job in iterable {
        workers.submit(job)?;
    }
    let mut out: Vec<Option<R>> = (0..workers.outstanding()).map(|_| None).collect();
    while let Some((id, r)) = workers.next(None)? {
        let slot = usize::try_from(id).ok().and_then(|i| out.get_mut(i));
        if let Some(slot) = slot {
            *slot = Some(r?);
        }
    }
    out.into_iter()
        .map(|r| r.ok_or(Error::Disconnected))
        .collect()
}
