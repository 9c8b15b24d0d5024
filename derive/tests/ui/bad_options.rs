extern crate renamed_shmproc as shmproc;

use shmproc::SharedStruct;

#[derive(SharedStruct)]
#[shmproc(krate = "shmproc")]
#[repr(C)]
struct UnknownOption {
    x: u32,
}

#[derive(SharedStruct)]
#[shmproc(crate = "not a path")]
#[repr(C)]
struct NotAPath {
    x: u32,
}

#[derive(SharedStruct)]
#[shmproc(crate = shmproc)]
#[repr(C)]
struct NotAString {
    x: u32,
}

#[derive(SharedStruct)]
#[repr(C)]
struct FieldOption {
    #[shmproc(crate = "shmproc")]
    x: u32,
}

fn main() {}
