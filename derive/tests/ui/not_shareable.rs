extern crate renamed_shmproc as shmproc;

use shmproc::SharedStruct;
use std::rc::Rc;
use std::sync::Arc;

#[derive(SharedStruct)]
#[repr(C)]
struct Heapy {
    fine: u64,
    boxed: Box<u32>,
    list: Vec<u8>,
    name: String,
    shared: Rc<u32>,
    synced: Arc<u32>,
    pair: (u32, u32),
    maybe: Option<u32>,
}

struct NotDerived {
    x: u32,
}

#[derive(SharedStruct)]
#[repr(C)]
struct Outer {
    inner: NotDerived,
    nested: [NotDerived; 2],
}

fn main() {}
