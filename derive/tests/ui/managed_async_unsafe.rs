extern crate renamed_shmproc as shmproc;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Store {
    items: Vec<u64>,
}

#[shmproc::managed]
impl Store {
    pub async fn len(&self) -> usize {
        self.items.len()
    }

    pub unsafe fn get_unchecked(&self, i: usize) -> u64 {
        unsafe { *self.items.get_unchecked(i) }
    }
}

fn main() {}
