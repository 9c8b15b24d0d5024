extern crate renamed_shmproc as shmproc;

use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Serialize, Deserialize)]
struct Store {
    items: Vec<u64>,
}

#[shmproc::managed]
impl Store {
    pub fn into_items(self) -> Vec<u64> {
        self.items
    }

    pub fn boxed(self: Box<Self>) -> usize {
        self.items.len()
    }

    pub fn shared(self: Arc<Self>) -> usize {
        self.items.len()
    }

    pub fn explicit(self: &Self) -> usize {
        self.items.len()
    }

    // Not managed: no receiver.
    pub fn new() -> Self {
        Store { items: Vec::new() }
    }
}

fn main() {}
