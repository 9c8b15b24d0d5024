extern crate renamed_shmproc as shmproc;

use shmproc::SharedStruct;

#[derive(SharedStruct)]
#[repr(C, packed)]
struct Packed {
    tag: u8,
    counter: u64,
}

#[derive(SharedStruct)]
#[repr(C)]
#[repr(packed(2))]
struct PackedTwo {
    tag: u8,
    value: u32,
}

fn main() {}
