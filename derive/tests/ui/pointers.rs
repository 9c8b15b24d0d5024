extern crate renamed_shmproc as shmproc;

use shmproc::SharedStruct;

#[derive(SharedStruct)]
#[repr(C)]
struct Pointers {
    ok: u64,
    reference: &'static u32,
    constant: *const u8,
    mutable: *mut u8,
    callback: fn(u32) -> u32,
    in_array: [&'static [u8]; 2],
}

#[derive(SharedStruct)]
#[repr(C)]
struct Borrowed<'a> {
    data: [u8; 4],
    marker: std::marker::PhantomData<&'a u8>,
}

fn main() {}
