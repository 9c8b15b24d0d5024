//! The Pool on MPI ranks: a `map` over 100,000 items and an `imap_unordered`, on workers that
//! are the other ranks of an `mpiexec` job (cargo feature `mpi`).
//!
//! ```text
//! cargo build --release --features mpi --example mpi_pool
//! mpiexec -n 3 target/release/examples/mpi_pool            # one machine: rank 0 + 2 workers
//! mpiexec --hostfile hosts -n 16 target/release/examples/mpi_pool   # several machines
//! mpiexec -n 3 target/release/examples/mpi_pool --bench     # beside the local Pool(2)
//! ```
//!
//! Prints the sum of the squares of 0..100,000 (`333328333350000`), then the sorted results of
//! an `imap_unordered` of `f` over `range(10)` (`[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]`).

#![allow(clippy::print_stdout)]

use shmproc::Pool;
use shmproc::mpi_pool::MpiPool;
use std::time::Instant;

fn f(x: u64) -> u64 {
    x * x
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    // Every rank registers the same functions; ranks 1.. become workers here and never return.
    let pool = MpiPool::builder().register(f).start()?;
    let squares = pool.map(f, 0..100_000u64)?;
    println!("{}", squares.iter().sum::<u64>());
    let mut unordered = pool
        .imap_unordered(f, 0..10u64, 1)?
        .collect::<shmproc::Result<Vec<_>>>()?;
    unordered.sort_unstable();
    println!("{unordered:?}");
    if std::env::args().any(|a| a == "--bench") {
        bench(&pool)?;
    }
    Ok(())
}

/// `map` of `f` over 100,000 integers with the default chunk size: the MPI pool beside the
/// local `Pool` with 2 workers, same input, best of 5 each.
fn bench(pool: &MpiPool) -> shmproc::Result<()> {
    const N: u64 = 100_000;
    let best = |run: &mut dyn FnMut() -> shmproc::Result<()>| -> shmproc::Result<f64> {
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t = Instant::now();
            run()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(N as f64 / best)
    };
    let mpi = best(&mut || pool.map(f, 0..N).map(drop))?;
    let local_pool = Pool::new(2)?;
    let local = best(&mut || local_pool.map(f, 0..N).map(drop))?;
    println!(
        "map of {N} items: MPI pool ({} worker ranks) {:.2} M tasks/s, local Pool(2) {:.2} M tasks/s ({:.2}x)",
        pool.processes(),
        mpi / 1e6,
        local / 1e6,
        mpi / local
    );
    Ok(())
}
