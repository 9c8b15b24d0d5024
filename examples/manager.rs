//! Twin of the `processing` introduction's server-process example: a manager process holds a
//! dict and a list; a child fills the dict and reverses the list through proxies, and the
//! parent prints them.
//!
//! ```python
//! from processing import Process, Manager
//!
//! def f(d, l):
//!     d[1] = '1'
//!     d['2'] = 2
//!     d[0.25] = None
//!     l.reverse()
//!
//! if __name__ == '__main__':
//!     manager = Manager()
//!
//!     d = manager.dict()
//!     l = manager.list(range(10))
//!
//!     p = Process(target=f, args=(d, l))
//!     p.start()
//!     p.join()
//!
//!     print d
//!     print l
//! ```
//!
//! Prints `{0.25: None, 1: '1', '2': 2}` and `[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]` (the dict in
//! Python 2's order of mixed keys, as the reference shows it).

#![allow(clippy::print_stdout)]

use serde::{Deserialize, Serialize};
use shmproc::manager::{DictProxy, ListProxy};
use shmproc::{Manager, Process};
use std::cmp::Ordering;
use std::fmt;

/// A Python value of the kinds the example mixes as keys and values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Py {
    None,
    Int(i64),
    Float(f64),
    Str(String),
}

impl fmt::Display for Py {
    /// Python's `repr`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Py::None => write!(f, "None"),
            Py::Int(i) => write!(f, "{i}"),
            Py::Float(x) => write!(f, "{x:?}"),
            Py::Str(s) => write!(f, "'{s}'"),
        }
    }
}

impl Py {
    /// Python 2's ordering of mixed keys: `None`, then numbers by value, then strings.
    fn cmp_py(&self, other: &Py) -> Ordering {
        fn rank(p: &Py) -> (u8, f64, &str) {
            match p {
                Py::None => (0, 0.0, ""),
                Py::Int(i) => (1, *i as f64, ""),
                Py::Float(x) => (1, *x, ""),
                Py::Str(s) => (2, 0.0, s),
            }
        }
        let (a, b) = (rank(self), rank(other));
        a.0.cmp(&b.0)
            .then(a.1.total_cmp(&b.1))
            .then_with(|| a.2.cmp(b.2))
    }
}

fn f((d, l): (DictProxy<Py, Py>, ListProxy<i64>)) -> shmproc::Result<()> {
    d.insert(Py::Int(1), Py::Str("1".to_owned()))?;
    d.insert(Py::Str("2".to_owned()), Py::Int(2))?;
    d.insert(Py::Float(0.25), Py::None)?;
    l.reverse()
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let manager = Manager::start()?;

    let d = manager.dict::<Py, Py>()?;
    let l = manager.list_from(0..10i64)?;

    let p = Process::new(f, (d.clone(), l.clone())).start()?;
    p.join()?;

    let mut items = d.items()?;
    items.sort_by(|a, b| a.0.cmp_py(&b.0));
    let items: Vec<String> = items.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    println!("{{{}}}", items.join(", "));
    println!("{:?}", l.to_vec()?);
    Ok(())
}
