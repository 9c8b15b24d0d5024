extern crate renamed_shmproc as shmproc;

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Serialize, Deserialize)]
struct Store<T> {
    items: Vec<T>,
}

#[shmproc::managed]
impl<T: Clone> Store<T> {
    pub fn first(&self) -> Option<T> {
        self.items.first().cloned()
    }
}

#[shmproc::managed]
impl Store<u64> {
    pub fn sum(&self) -> u64 {
        self.items.iter().sum()
    }
}

#[shmproc::managed]
impl fmt::Debug for Store<u8> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Store")
    }
}

#[shmproc::managed]
struct NotAnImpl;

fn main() {}
