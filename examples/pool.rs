//! Twin of the `processing` introduction's pool example: evaluate `f(10)` asynchronously in
//! a pool of four workers, then map `f` over `range(10)`.
//!
//! ```python
//! from processing import Pool
//!
//! def f(x):
//!     return x*x
//!
//! if __name__ == '__main__':
//!     pool = Pool(processes=4)            # start 4 worker processes
//!     result = pool.applyAsync(f, [10])   # evaluate "f(10)" asynchronously
//!     print result.get(timeout=1)         # prints "100" unless your computer is *very* slow
//!     print pool.map(f, range(10))        # prints "[0, 1, 4,..., 81]"
//! ```
//!
//! Prints `100`, then `[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]`.

#![allow(clippy::print_stdout)]

use shmproc::Pool;
use std::time::Duration;

fn f(x: i64) -> i64 {
    x * x
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let pool = Pool::new(4)?;
    let mut result = pool.apply_async(f, 10)?;
    println!("{}", result.get_timeout(Duration::from_secs(1))?);
    println!("{:?}", pool.map(f, 0..10)?);
    pool.join()
}
