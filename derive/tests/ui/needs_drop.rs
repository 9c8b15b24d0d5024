extern crate renamed_shmproc as shmproc;

use shmproc::SharedStruct;

#[derive(SharedStruct)]
#[repr(C)]
struct Guarded {
    count: u32,
}

impl Drop for Guarded {
    fn drop(&mut self) {}
}

fn main() {}
