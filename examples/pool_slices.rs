//! Parallel slices: a `RawArray` in shared memory split among a pool's workers; each worker
//! fills its own slice in place (nothing but the slice bounds travels), and the parent sums.
//!
//! Prints `sum of squares below 1000000: 333332833333500000`, then `slices: 8`.

#![allow(clippy::print_stdout)]

use shmproc::{Pool, RawArray};

/// Writes `i * i` into every element of `[start, end)`; returns how many it wrote.
fn fill((data, start, end): (RawArray<u64>, usize, usize)) -> Result<usize, String> {
    for i in start..end {
        data.set(i, (i as u64) * (i as u64))
            .map_err(|e| e.to_string())?;
    }
    Ok(end - start)
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    const N: usize = 1_000_000;
    const SLICES: usize = 8;
    let data = RawArray::<u64>::new(N)?;
    let step = N.div_ceil(SLICES);
    let slices: Vec<_> = (0..SLICES)
        .map(|k| (data.clone(), k * step, ((k + 1) * step).min(N)))
        .collect();
    let done = Pool::scope(4, |pool| pool.map_chunked(fill, slices, 1))??;
    assert_eq!(
        done.iter()
            .try_fold(0usize, |a, r| r.as_ref().ok().map(|n| a + n)),
        Some(N)
    );
    let sum: u64 = data.iter().sum();
    println!("sum of squares below {N}: {sum}");
    println!("slices: {}", done.len());
    Ok(())
}
