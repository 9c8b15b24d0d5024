//! Twin of the `processing` introduction's first example: run `f('bob')` in a child.
//!
//! ```python
//! from processing import Process
//!
//! def f(name):
//!     print 'hello', name
//!
//! if __name__ == '__main__':
//!     p = Process(target=f, args=('bob',))
//!     p.start()
//!     p.join()
//! ```
//!
//! Prints `hello bob`.

#![allow(clippy::print_stdout)]

use shmproc::Process;

fn f(name: String) {
    println!("hello {name}");
}

fn main() -> shmproc::Result<()> {
    // The Rust form of `if __name__ == '__main__'`: a child re-executing this program goes
    // straight to its target from here.
    shmproc::init();
    let p = Process::new(f, "bob".to_owned()).start()?;
    p.join()?;
    Ok(())
}
