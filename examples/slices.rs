//! Parallel slices: four worker processes square their own disjoint slice of one `RawArray`,
//! each reading and writing its slice in bulk (`read_range`, `write_from`); no lock, so they
//! run in parallel. The parent checks the result with `copy_to_slice`.
//!
//! Prints `squared 1000000 elements in 4 slices; sum = 333332833333500000`.

#![allow(clippy::print_stdout)]

use shmproc::RawArray;

/// Squares every element of `data[start..end]` in place; returns how many it squared.
fn square_slice((data, start, end): (RawArray<u64>, usize, usize)) -> shmproc::Result<usize> {
    let mut chunk = data.read_range(start..end)?;
    for x in &mut chunk {
        *x *= *x;
    }
    data.write_from(start, &chunk)?;
    Ok(chunk.len())
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    const N: usize = 1_000_000;
    const WORKERS: usize = 4;
    let data = RawArray::<u64>::new(N)?;
    let numbers: Vec<u64> = (0..N as u64).collect();
    data.copy_from_slice(&numbers)?;
    let step = N.div_ceil(WORKERS);
    let workers = (0..WORKERS)
        .map(|k| {
            let range = (data.clone(), k * step, ((k + 1) * step).min(N));
            shmproc::spawn(square_slice, range)
        })
        .collect::<shmproc::Result<Vec<_>>>()?;
    let mut squared = 0;
    for w in workers {
        squared += w.join()??;
    }
    let mut out = vec![0u64; N];
    data.copy_to_slice(&mut out)?;
    assert!(
        out.iter()
            .enumerate()
            .all(|(i, &x)| x == (i as u64) * (i as u64))
    );
    let sum: u64 = out.iter().sum();
    println!("squared {squared} elements in {WORKERS} slices; sum = {sum}");
    Ok(())
}
