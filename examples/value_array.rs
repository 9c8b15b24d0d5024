//! Twin of the `processing` introduction's shared-memory example: a child writes a `Value`
//! and negates an `Array` that the parent then prints.
//!
//! ```python
//! from processing import Process, Value, Array
//!
//! def f(n, a):
//!     n.value = 3.1415927
//!     for i in range(len(a)):
//!         a[i] = -a[i]
//!
//! if __name__ == '__main__':
//!     num = Value('d', 0.0)
//!     arr = Array('i', range(10))
//!
//!     p = Process(target=f, args=(num, arr))
//!     p.start()
//!     p.join()
//!
//!     print num.value
//!     print arr[:]
//! ```
//!
//! Prints `3.1415927` and `[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]`.

#![allow(clippy::print_stdout)]
// The reference example writes 3.1415927 (and prints it), not PI.
#![allow(clippy::approx_constant)]

use shmproc::{Array, Process, Value};

fn f((n, a): (Value<f64>, Array<i32>)) -> shmproc::Result<()> {
    n.set(3.1415927)?;
    for i in 0..a.len() {
        a.set(i, -a.get(i)?)?;
    }
    Ok(())
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let num = Value::new(0.0f64)?;
    let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>())?;

    let p = Process::new(f, (num.clone(), arr.clone())).start()?;
    p.join()?;

    println!("{}", num.get()?);
    println!("{:?}", arr.to_vec()?);
    Ok(())
}
