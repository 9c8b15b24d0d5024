//! Twin of the programming guidelines' "joining processes that use queues" example, which
//! deadlocks with `processing`: the child's feeder thread cannot flush a 1 MB item into the
//! pipe while the parent waits in `join()` instead of reading.
//!
//! ```python
//! from processing import Process, Queue
//!
//! def f(q):
//!     q.put('X' * 1000000)
//!
//! if __name__ == '__main__':
//!     queue = Queue()
//!     p = Process(target=f, args=(queue,))
//!     p.start()
//!     p.join()                    # this deadlocks
//!     obj = queue.get()
//! ```
//!
//! shmproc's queues have no feeder thread: the item is in shared memory when `put` returns,
//! so the child exits, `join` returns, and `get` finds the item. Like the Python program, it
//! prints nothing; it simply completes.

use shmproc::{Process, Queue};

fn f(q: Queue<String>) -> shmproc::Result<()> {
    q.put(&"X".repeat(1_000_000))
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let queue = Queue::new()?;
    let p = Process::new(f, queue.clone()).start()?;
    p.join()?; // no deadlock
    let obj = queue.get()?;
    assert_eq!(obj.len(), 1_000_000);
    Ok(())
}
