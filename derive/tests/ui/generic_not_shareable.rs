extern crate renamed_shmproc as shmproc;

use shmproc::{SharedStruct, Value};

#[derive(SharedStruct)]
#[repr(C)]
struct Pair<T> {
    a: T,
    b: T,
}

fn main() {
    let _ = Value::new(Pair { a: String::new(), b: String::new() });
}
