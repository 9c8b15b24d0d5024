//! pprocess's thread-style processing (`start(fn, args)`, as in its `simple_start.py`): one
//! child per row of an N×N grid computes `i * N + j` for every column after a short delay
//! and sends the row back on its channel; the creator receives the rows and prints the grid.
//!
//! Prints the numbers 0..100, ten per line, each followed by a space (Python's
//! `print(result, end=' ')`), as the original does after its timing line.

#![allow(clippy::print_stdout)]

use shmproc::exchange::{self, Channel};
use std::time::Duration;

const N: u64 = 10;

fn calculate(channel: Channel, i: u64) {
    std::thread::sleep(Duration::from_millis(10));
    let row: Vec<u64> = (0..N).map(|j| i * N + j).collect();
    channel.send(&(i, row)).expect("send the row");
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let channels = (0..N)
        .map(|i| exchange::start(calculate, i))
        .collect::<shmproc::Result<Vec<_>>>()?;
    let mut results = vec![Vec::new(); N as usize];
    for mut channel in channels {
        let (i, row): (u64, Vec<u64>) = channel.receive()?;
        results[i as usize] = row;
    }
    exchange::waitall()?;
    for row in results {
        for result in row {
            print!("{result} ");
        }
        println!();
    }
    Ok(())
}
