//! Twin of the programming guidelines' "explicitly pass resources to child processes": the
//! lock is an argument of the target, not a global.
//!
//! ```python
//! from processing import Process, Lock
//!
//! def f(l):
//!     ... do something using "l" ...
//!
//! if __name__ == '__main__':
//!     lock = Lock()
//!     for i in range(10):
//!         Process(target=f, args=(lock,)).start()
//! ```
//!
//! In shmproc this is the only way: a spawned child is a fresh run of the program, so a global
//! lock made in the parent does not exist in it. Passing the lock also keeps it alive in the
//! parent for as long as the child may use it (the parent holds its copy of the arguments
//! until the child is reaped). Like the Python, it prints nothing.

use shmproc::{Lock, Process};

fn f(l: Lock) -> shmproc::Result<()> {
    // ... do something using `l` ...
    let _guard = l.lock()?;
    Ok(())
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let lock = Lock::new()?;
    let children = (0..10)
        .map(|_| Process::new(f, lock.clone()).start())
        .collect::<shmproc::Result<Vec<_>>>()?;
    // Python joins non-daemon children when the main process exits; Rust has no such hook,
    // so the program says so.
    for p in children {
        p.join()?;
    }
    Ok(())
}
