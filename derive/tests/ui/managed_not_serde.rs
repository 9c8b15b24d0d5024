extern crate renamed_shmproc as shmproc;

use serde::{Deserialize, Serialize};

struct Plain(u64);

// The managed value itself travels to the server.
#[shmproc::managed]
impl Plain {
    pub fn get(&self) -> u64 {
        self.0
    }
}

#[derive(Debug)]
struct NotSerde;

#[derive(Debug, Serialize, Deserialize)]
struct NoDisplay;

#[derive(Serialize, Deserialize)]
struct Store {
    items: Vec<u64>,
}

#[shmproc::managed]
impl Store {
    pub fn take(&mut self, n: u64, what: NotSerde) -> u64 {
        let _ = what;
        n
    }

    pub fn give(&self) -> NotSerde {
        NotSerde
    }

    pub fn check(&self) -> Result<u64, NoDisplay> {
        Err(NoDisplay)
    }
}

fn main() {}
