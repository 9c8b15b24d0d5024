//! Twin of the `processing` introduction's Pipe example: a child sends a list through one end
//! of a duplex pipe, the parent receives and prints it.
//!
//! ```python
//! from processing import Process, Pipe
//!
//! def f(conn):
//!     conn.send([42, None, 'hello'])
//!     conn.close()
//!
//! if __name__ == '__main__':
//!     parent_conn, child_conn = Pipe()
//!     p = Process(target=f, args=(child_conn,))
//!     p.start()
//!     print parent_conn.recv()   # prints "[42, None, 'hello']"
//!     p.join()
//! ```
//!
//! Prints `[42, None, 'hello']`.

#![allow(clippy::print_stdout)]

use shmproc::{Connection, Process};

/// Python's `[42, None, 'hello']`: a heterogeneous list becomes a tuple.
type Item = (i32, Option<i32>, String);

fn f(mut conn: Connection) -> shmproc::Result<()> {
    conn.send(&(42, None::<i32>, "hello"))?;
    conn.close();
    Ok(())
}

/// Formats an item the way Python prints the list.
fn python_repr((a, b, c): &Item) -> String {
    let b = b.map_or_else(|| "None".to_owned(), |v| v.to_string());
    format!("[{a}, {b}, '{c}']")
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let (parent_conn, child_conn) = shmproc::pipe()?;
    let p = Process::new(f, child_conn).start()?;
    let item: Item = parent_conn.recv()?;
    println!("{}", python_repr(&item));
    p.join()?;
    Ok(())
}
