//! pprocess's fork-style processing (`create()`, as in its `simple_create.py`): the program
//! forks one child per row; `Forked::Child` computes the row and sends it, then exits;
//! `Forked::Parent` keeps the channel and later receives the rows through an exchange.
//!
//! Prints the numbers 0..100, ten per line, each followed by a space.

#![allow(clippy::print_stdout)]

use shmproc::Exchange;
use shmproc::exchange::{self, Forked};
use std::time::Duration;

const N: u64 = 10;

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let mut ex = Exchange::new();
    for i in 0..N {
        match exchange::create()? {
            Forked::Child(channel) => {
                // This code is run by the created process.
                std::thread::sleep(Duration::from_millis(10));
                let row: Vec<u64> = (0..N).map(|j| i * N + j).collect();
                channel.send(&(i, row))?;
                drop(channel);
                exchange::exit(0);
            }
            // This code is run by the creating process.
            Forked::Parent(channel) => ex.add(channel),
        }
    }
    let mut results = vec![Vec::new(); N as usize];
    while !ex.active().is_empty() {
        for channel in ex.ready(None)? {
            if let Ok((i, row)) = channel.receive::<(u64, Vec<u64>)>() {
                results[i as usize] = row;
            }
        }
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
