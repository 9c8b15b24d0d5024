extern crate renamed_shmproc as shmproc;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Store {
    items: Vec<u64>,
}

#[shmproc::managed]
impl Store {
    pub fn push<T: Into<u64>>(&mut self, item: T) {
        self.items.push(item.into());
    }

    pub fn first_n<const N: usize>(&self) -> Vec<u64> {
        self.items.iter().take(N).copied().collect()
    }

    pub fn extend(&mut self, items: impl IntoIterator<Item = u64>) {
        self.items.extend(items);
    }

    // Private generic methods are not managed, so they are fine.
    fn sum<T: From<u64>>(&self) -> T {
        T::from(self.items.iter().sum())
    }
}

fn main() {}
