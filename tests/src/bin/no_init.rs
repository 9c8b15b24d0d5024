//! A program that forgets `shmproc::init()`.
//!
//! Run with `SHMPROC_NO_TEST_INIT=1` (this binary links shmproc's `test-support` constructor,
//! which would otherwise call `init()` for it). The parent knows `init()` never ran, so
//! starting a `Spawn` or `ForkServer` child (which would re-execute this `main`) fails at
//! `start()` with `Error::NotInitialized`; a `Fork` child (no re-execution) runs. Prints one
//! line per attempt and exits 0.

#![allow(clippy::print_stdout)]

use shmproc::{Error, Process, StartMethod};

fn target(_: ()) {
    println!("target ran");
}

fn main() {
    // No `shmproc::init()` here, on purpose.
    for method in [
        StartMethod::Spawn,
        StartMethod::ForkServer,
        StartMethod::Fork,
    ] {
        match Process::new(target, ()).start_method(method).start() {
            Ok(p) => match p.join() {
                Ok(code) => println!("{method:?}: child exited with {code}"),
                Err(e) => println!("{method:?}: join failed: {e}"),
            },
            Err(e @ Error::NotInitialized) => println!("{method:?}: NotInitialized: {e}"),
            Err(e) => println!("{method:?}: other error: {e}"),
        }
    }
    match shmproc::spawn(target, ()) {
        Ok(h) => println!("spawn: started: {:?}", h.join()),
        Err(e @ Error::NotInitialized) => println!("spawn: NotInitialized: {e}"),
        Err(e) => println!("spawn: other error: {e}"),
    }
    match shmproc::Value::new(1u8) {
        Ok(_) => println!("value ok"),
        Err(e) => println!("value failed: {e}"),
    }
}
