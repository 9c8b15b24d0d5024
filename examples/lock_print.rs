//! Twin of the `processing` introduction's synchronization example: ten processes print
//! under one lock, so their lines never mix.
//!
//! ```python
//! from processing import Process, Lock
//!
//! def f(l, i):
//!     l.acquire()
//!     print 'hello world', i
//!     l.release()
//!
//! if __name__ == '__main__':
//!     lock = Lock()
//!
//!     for num in range(10):
//!         Process(target=f, args=(lock, num)).start()
//! ```
//!
//! Prints `hello world 0` … `hello world 9`, one line each, in whatever order the processes
//! get the lock.

#![allow(clippy::print_stdout)]

use shmproc::{Lock, Process};
use std::io::Write;

fn f((l, i): (Lock, u32)) -> shmproc::Result<()> {
    l.acquire()?;
    println!("hello world {i}");
    // The line must reach the terminal before another process may print.
    let _ = std::io::stdout().flush();
    l.release()
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let lock = Lock::new()?;
    let children = (0..10)
        .map(|num| Process::new(f, (lock.clone(), num)).start())
        .collect::<shmproc::Result<Vec<_>>>()?;
    // Python joins non-daemon children at exit; Rust does it explicitly.
    for p in children {
        p.join()?;
    }
    Ok(())
}
