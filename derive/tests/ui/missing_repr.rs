extern crate renamed_shmproc as shmproc;

use shmproc::SharedStruct;

#[derive(SharedStruct)]
struct NoRepr {
    x: u32,
}

#[derive(SharedStruct)]
#[repr(align(8))]
struct AlignOnly {
    x: u32,
}

#[derive(SharedStruct)]
#[repr(Rust)]
struct RustRepr(u64);

fn main() {}
