extern crate renamed_shmproc as shmproc;

use shmproc::SharedStruct;

#[derive(SharedStruct)]
#[repr(C)]
struct Flags {
    count: u32,
    ready: bool,
    initial: char,
    many: [bool; 8],
    spelled_out: core::primitive::bool,
}

fn main() {}
