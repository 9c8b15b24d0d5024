//! A crate that forbids unsafe code can still derive: the `unsafe impl` is the derive's.
#![forbid(unsafe_code)]

extern crate renamed_shmproc as shmproc;

use shmproc::SharedStruct;

#[derive(SharedStruct)]
#[repr(C)]
struct Counter {
    hits: u64,
}

fn main() {
    let _ = Counter { hits: 0 }.hits;
}
