//! pprocess's `pmap` (as in its `simple_pmap.py`): the grid computed by a parallel map over
//! reusable worker processes, results in input order.
//!
//! Prints the numbers 0..100, ten per line, each followed by a space.

#![allow(clippy::print_stdout)]

use shmproc::exchange::pmap;
use std::time::Duration;

const N: u64 = 10;

fn calculate((i, j): (u64, u64)) -> u64 {
    std::thread::sleep(Duration::from_millis(1));
    i * N + j
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let sequence: Vec<(u64, u64)> = (0..N).flat_map(|i| (0..N).map(move |j| (i, j))).collect();
    let results = pmap(calculate, sequence, 4)?;
    for row in results.chunks(N as usize) {
        for result in row {
            print!("{result} ");
        }
        println!();
    }
    Ok(())
}
