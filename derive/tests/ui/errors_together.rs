extern crate renamed_shmproc as shmproc;

use shmproc::SharedStruct;

// Every problem is reported at once, and no `Shareable` impl is emitted.
#[derive(SharedStruct)]
#[shmproc(crate = "::shmproc", crate = "::shmproc")]
struct Everything {
    name: &'static str,
    done: bool,
    next: *const Everything,
}

fn assert_shareable<T: shmproc::Shareable>() {}

fn main() {
    assert_shareable::<Everything>();
}
