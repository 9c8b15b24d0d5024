//! Twin of the `processing` introduction's Queue example: a child puts a list, the parent
//! gets and prints it.
//!
//! ```python
//! from processing import Process, Queue
//!
//! def f(q):
//!     q.put([42, None, 'hello'])
//!
//! if __name__ == '__main__':
//!     q = Queue()
//!     p = Process(target=f, args=(q,))
//!     p.start()
//!     print q.get()    # prints "[42, None, 'hello']"
//!     p.join()
//! ```
//!
//! Prints `[42, None, 'hello']`.

#![allow(clippy::print_stdout)]

use shmproc::{Process, Queue};

/// Python's `[42, None, 'hello']`: a heterogeneous list becomes a tuple.
type Item = (i32, Option<i32>, String);

fn f(q: Queue<Item>) -> shmproc::Result<()> {
    q.put(&(42, None, "hello".to_owned()))
}

/// Formats an item the way Python prints the list.
fn python_repr((a, b, c): &Item) -> String {
    let b = b.map_or_else(|| "None".to_owned(), |v| v.to_string());
    format!("[{a}, {b}, '{c}']")
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let q = Queue::new()?;
    let p = Process::new(f, q.clone()).start()?;
    println!("{}", python_repr(&q.get()?));
    p.join()?;
    Ok(())
}
