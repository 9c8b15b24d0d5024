//! pprocess's message exchanges: an `Exchange` populated with channels, polled with
//! `ready()`, reading from whichever child has data first (as in its `simple_managed.py`,
//! with the raw exchange API).
//!
//! Prints the numbers 0..100, ten per line, each followed by a space.

#![allow(clippy::print_stdout)]

use shmproc::Exchange;
use shmproc::exchange::{self, Channel};
use std::time::Duration;

const N: u64 = 10;

fn calculate(channel: Channel, i: u64) {
    // Later rows finish first: the exchange reads them as they come.
    std::thread::sleep(Duration::from_millis(5 * (N - i)));
    let row: Vec<u64> = (0..N).map(|j| i * N + j).collect();
    channel.send(&(i, row)).expect("send the row");
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let channels = (0..N)
        .map(|i| exchange::start(calculate, i))
        .collect::<shmproc::Result<Vec<_>>>()?;
    let mut exchange = Exchange::from_channels(channels);
    let mut results = vec![Vec::new(); N as usize];
    while !exchange.active().is_empty() {
        for channel in exchange.ready(None)? {
            // A channel whose child ended is listed once more, with nothing left to read.
            if let Ok((i, row)) = channel.receive::<(u64, Vec<u64>)>() {
                results[i as usize] = row;
            }
        }
    }
    for row in results {
        for result in row {
            print!("{result} ");
        }
        println!();
    }
    Ok(())
}
