extern crate renamed_shmproc as shmproc;

use shmproc::SharedStruct;

#[derive(SharedStruct)]
#[repr(C)]
enum State {
    Idle,
    Busy,
}

#[derive(SharedStruct)]
#[repr(C)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
