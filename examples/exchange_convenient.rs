//! pprocess's convenient message exchanges: a `store_data` (here a closure; a type
//! implementing `StoreData` works too), a limit of 3 running children, `start` queueing the
//! rest, and `finish` (as in its `simple_managed_queue.py` style).
//!
//! Prints the numbers 0..100, ten per line, each followed by a space.

#![allow(clippy::print_stdout)]

use shmproc::exchange::{Channel, Exchange};
use std::time::Duration;

const N: u64 = 10;

fn calculate(channel: Channel, i: u64) {
    std::thread::sleep(Duration::from_millis(10));
    let row: Vec<u64> = (0..N).map(|j| i * N + j).collect();
    channel.send(&(i, row)).expect("send the row");
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let mut results = vec![Vec::new(); N as usize];
    let mut exchange = Exchange::with_limit(3).with_store(|channel: &mut Channel| {
        let (i, row): (u64, Vec<u64>) = channel.receive()?;
        results[i as usize] = row;
        Ok(())
    });
    for i in 0..N {
        exchange.start(calculate, i)?;
    }
    exchange.finish()?;
    drop(exchange);
    for row in results {
        for result in row {
            print!("{result} ");
        }
        println!();
    }
    Ok(())
}
