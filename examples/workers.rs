//! The task-queue / result-queue pattern of the programming guidelines: a main process pushes
//! tasks onto a bounded task queue, a pool of worker processes takes them, and the main
//! process collects the results from a result queue.
//!
//! With `processing` this pattern deadlocks if the main process pushes too many tasks on an
//! unbuffered queue without reading results; here the task queue is bounded (`put` waits for
//! room, which the workers make) and the result queue holds every result, so it completes.
//!
//! Prints `square(i) = i*i` for i in 0..20 (in task order), then `workers done: 4`.

#![allow(clippy::print_stdout)]

use shmproc::{Process, Queue};

const WORKERS: usize = 4;

fn worker((tasks, results): (Queue<Option<u64>>, Queue<(u64, u64)>)) -> shmproc::Result<()> {
    // `None` is the "no more tasks" marker, one per worker.
    while let Some(i) = tasks.get()? {
        results.put(&(i, i * i))?;
    }
    Ok(())
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let tasks = Queue::with_capacity(4)?;
    let results = Queue::new()?;
    let pool: Vec<Process> = (0..WORKERS)
        .map(|_| Process::new(worker, (tasks.clone(), results.clone())).start())
        .collect::<Result<_, _>>()?;
    for i in 0..20 {
        tasks.put(&Some(i))?;
    }
    for _ in 0..WORKERS {
        tasks.put(&None)?;
    }
    let mut out: Vec<(u64, u64)> = (0..20).map(|_| results.get()).collect::<Result<_, _>>()?;
    out.sort_unstable();
    for (i, sq) in out {
        println!("square({i}) = {sq}");
    }
    let mut done = 0;
    for p in pool {
        p.join()?;
        done += 1;
    }
    println!("workers done: {done}");
    Ok(())
}
