//! A program that forgets `shmproc::init()`: its child must get `Error::NotInitialized`
//! instead of starting children of its own, recursively.
//!
//! Run with `SHMPROC_NO_TEST_INIT=1` (this binary links shmproc's `test-support` constructor,
//! which would otherwise call `init()` for it). Prints what happened and exits 0 in the parent;
//! the child exits with 3 after printing the error it got.

#![allow(clippy::print_stdout, clippy::print_stderr)]

fn target(_: ()) {
    println!("target ran (unexpected)");
}

fn main() {
    // No `shmproc::init()` here, on purpose.
    let is_child =
        shmproc::parent_process().is_some() || std::env::var_os("SHMPROC_CHILD").is_some();
    match shmproc::Process::new(target, ()).start() {
        Ok(p) => match p.join() {
            Ok(code) => println!("parent: child exited with {code}"),
            Err(e) => println!("parent: join failed: {e}"),
        },
        Err(e) => {
            eprintln!("child={is_child} error: {e}");
            let code = if matches!(e, shmproc::Error::NotInitialized) {
                3
            } else {
                4
            };
            std::process::exit(code);
        }
    }
    match shmproc::Value::new(1u8) {
        Ok(_) => println!("parent: value ok"),
        Err(e) => println!("parent: value failed: {e}"),
    }
}
