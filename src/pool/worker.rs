//! The worker side of a pool: the loop a worker process runs, and the messages it exchanges
//! with the pool.
//!
//! A worker takes [`Task`]s from its own queue, records which chunk it is about to run in its
//! claim slot (so the pool can tell, if the worker dies, which chunk it was running and which
//! ones it never started), runs each item by [`TargetId`] and puts one [`Reply`] per chunk in
//! the pool's reply queue. Functions reach it only through its private registration pipe
//! (see `process::target`); a task naming an id the pipe never delivered is refused.

#![allow(unsafe_code)]

use crate::error::Error;
use crate::process::{Outcome, Registrations, TargetId, run_installed, take_inherited};
use crate::queue::Queue;
use crate::shared::RawArray;
use crate::transfer::Received;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::fs::File;

/// A message in a worker's task queue.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Task {
    /// Run a chunk.
    Run(Chunk),
    /// Leave the loop and exit.
    Stop,
}

/// Function `target` on every item (encoded arguments) of the chunk that starts at index
/// `start` of job `job`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Chunk {
    pub(crate) job: u64,
    pub(crate) start: u64,
    pub(crate) target: u32,
    pub(crate) items: Vec<Vec<u8>>,
}

/// What one item of a chunk gave.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ItemResult {
    /// The encoded return value.
    Returned(Vec<u8>),
    /// The function panicked: message and location.
    Panicked(String),
    /// The item could not run (arguments, result encoding, unknown function).
    Failed(String),
}

impl ItemResult {
    /// The encoded value, or the error it stands for.
    pub(crate) fn into_result(self) -> crate::Result<Vec<u8>> {
        match self {
            ItemResult::Returned(b) => Ok(b),
            ItemResult::Panicked(message) => Err(Error::TaskPanicked { message }),
            ItemResult::Failed(reason) => Err(Error::TaskFailed { reason }),
        }
    }
}

/// A message in the pool's reply queue.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// The chunk `(job, start)` ran on the worker in `slot`.
    Done {
        slot: u32,
        job: u64,
        start: u64,
        results: Vec<ItemResult>,
    },
    /// The worker in `slot` reached `max_tasks_per_child` and exits now.
    Retiring { slot: u32 },
}

/// A worker's arguments (its private registration pipe is its first inherited descriptor).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub(crate) slot: u32,
    pub(crate) tasks: Queue<Task>,
    pub(crate) replies: Queue<Reply>,
    /// Two words per slot: the job and `start + 1` of the chunk being run (0: none yet).
    pub(crate) claims: RawArray<u64>,
    pub(crate) max_tasks: Option<u64>,
    /// The initializer's id and encoded arguments.
    pub(crate) initializer: Option<(u32, Vec<u8>)>,
}

thread_local! {
    /// Where the last panic on this thread happened (set by the worker's panic hook).
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The loop of a pool worker process.
pub(crate) fn worker_main(args: WorkerArgs) {
    let Some(fd) = take_inherited(0) else {
        return;
    };
    // SAFETY: descriptor 0 of this process's `extra` list is the read end of the registration
    // pipe the pool created for this worker and passed in its validated start-up message
    // (`ProcessBuilder::start_spawn_with`); the pool keeps the write end close-on-exec and
    // writes only registration frames to it.
    let mut regs = unsafe { Registrations::new(File::from(fd)) };
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| l.to_string());
        PANIC_AT.with(|p| *p.borrow_mut() = at);
    }));
    if regs.drain().is_err() {
        return;
    }
    if let Some((id, bytes)) = &args.initializer {
        // An initializer that fails leaves the worker without its set-up: stop it, like an
        // exception in a CPython initializer ends that worker.
        if !matches!(run_item(&mut regs, *id, bytes), ItemResult::Returned(_)) {
            std::process::exit(1);
        }
    }
    let base = usize::try_from(args.slot).unwrap_or(usize::MAX / 4) * 2;
    let mut done = 0u64;
    loop {
        let Ok(Task::Run(Chunk {
            job,
            start,
            target,
            items,
        })) = args.tasks.get()
        else {
            return;
        };
        // The claim must be visible before the chunk runs: if this process dies from here on,
        // the pool reports this chunk as `WorkerDied` and resubmits the others it had queued.
        if args.claims.set(base, job).is_err() || args.claims.set(base + 1, start + 1).is_err() {
            return;
        }
        let results = items
            .iter()
            .map(|a| run_item(&mut regs, target, a))
            .collect();
        let reply = Reply::Done {
            slot: args.slot,
            job,
            start,
            results,
        };
        if args.replies.put(&reply).is_err() {
            return;
        }
        done += 1;
        if args.max_tasks.is_some_and(|m| done >= m) {
            let _ = args.replies.put(&Reply::Retiring { slot: args.slot });
            return;
        }
    }
}

/// Runs one item: function `target` of the registered table on encoded arguments.
fn run_item(regs: &mut Registrations, target: u32, args: &[u8]) -> ItemResult {
    // Id 0 is this worker's own loop (its start-up table); pool functions start at 1.
    if target == 0 {
        return ItemResult::Failed(
            Error::UnknownTarget {
                id: 0,
                registered: 0,
            }
            .to_string(),
        );
    }
    let id = TargetId(target);
    let mut ran = run_installed(id, args, Received::none());
    if matches!(ran, Err(Error::UnknownTarget { .. })) {
        // The pool writes a registration before any task that names it: it is in the pipe.
        ran = regs
            .drain()
            .and_then(|_| run_installed(id, args, Received::none()));
    }
    match ran {
        Ok(Outcome::Returned(b)) => ItemResult::Returned(b),
        Ok(Outcome::Panicked(m)) => match PANIC_AT.with(|p| p.borrow_mut().take()) {
            Some(at) => ItemResult::Panicked(format!("{m} at {at}")),
            None => ItemResult::Panicked(m),
        },
        Ok(Outcome::Failed(reason)) => ItemResult::Failed(reason),
        Ok(Outcome::Exited(code)) => ItemResult::Failed(format!("exit code {code}")),
        Err(e) => ItemResult::Failed(e.to_string()),
    }
}
