//! Parallel slices of a locked `Array`: four worker processes each lock their own disjoint
//! range (`Array::lock_range`) and square it in place. The ranges do not overlap, so all four
//! guards are held at once: every worker waits at a barrier while holding its range, which
//! could not complete if the workers ran one after another.
//!
//! Prints `squared 100000 elements in 4 locked ranges; sum = 333328333350000`.

#![allow(clippy::print_stdout)]

use shmproc::{Array, Barrier};
use std::time::Duration;

/// Squares every element of `data[start..end]` in place, holding the range meanwhile.
fn square_range(
    (data, all_in, start, end): (Array<u64>, Barrier, usize, usize),
) -> shmproc::Result<usize> {
    let mut part = data.lock_range(start..end)??;
    // Every worker holds its range here at the same time.
    all_in.wait_timeout(Duration::from_secs(30))?;
    for x in part.iter_mut() {
        *x *= *x;
    }
    Ok(part.len())
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    const N: usize = 100_000;
    const WORKERS: usize = 4;
    let numbers: Vec<u64> = (0..N as u64).collect();
    let data = Array::from_slice(&numbers)?;
    let all_in = Barrier::new(WORKERS as u32)?;
    let step = N.div_ceil(WORKERS);
    let workers = (0..WORKERS)
        .map(|k| {
            let args = (
                data.clone(),
                all_in.clone(),
                k * step,
                ((k + 1) * step).min(N),
            );
            shmproc::spawn(square_range, args)
        })
        .collect::<shmproc::Result<Vec<_>>>()?;
    let mut squared = 0;
    for w in workers {
        squared += w.join()??;
    }
    let out = data.to_vec()?;
    assert!(
        out.iter()
            .enumerate()
            .all(|(i, &x)| x == (i as u64) * (i as u64))
    );
    let sum: u64 = out.iter().sum();
    println!("squared {squared} elements in {WORKERS} locked ranges; sum = {sum}");
    Ok(())
}
