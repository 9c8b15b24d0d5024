extern crate renamed_shmproc as shmproc;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Store {
    items: Vec<u64>,
}

#[shmproc::managed]
impl Store {
    // Accepted: sent as they are, decoded as `String`, `Vec<u64>` and `u64`.
    pub fn fine(&self, name: &str, items: &[u64], item: &u64) -> &[u64] {
        let _ = (name, items, item);
        &self.items
    }

    pub fn fill(&self, out: &mut Vec<u64>) {
        out.extend(&self.items);
    }

    pub fn items_mut(&mut self) -> &mut Vec<u64> {
        &mut self.items
    }

    pub fn find(&self, names: Vec<&str>) -> Option<&u64> {
        let _ = names;
        self.items.first()
    }

    pub fn apply(&mut self, f: fn(u64) -> u64, g: &dyn Fn(u64) -> u64, p: *const u64) {
        let _ = (f, g, p);
    }
}

fn main() {}
