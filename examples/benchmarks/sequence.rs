//! "Number of integers retrieved from a sequence per sec".

use std::hint::black_box;

use shmproc::{Array, List, RawArray};

use crate::limits::Limit;
use crate::measure::Workload;
use crate::row::{Spec, Unit};

/// Elements per sequence (4 KB of `i32`: L1-resident, like the limits it is compared with).
pub(crate) const LEN: usize = 1000;

const UNIT: Unit = Unit::Rate("reads/s");

/// The rows of this family.
pub(crate) fn specs() -> Vec<Spec> {
    let row = |case, shmproc, python, limit, goal| Spec {
        family: "sequence",
        case,
        unit: UNIT,
        shmproc,
        python: Some(python),
        limit: Some(limit),
        goal,
    };
    vec![
        row(
            "Vec<i32> / list, local",
            vec_sum,
            "list",
            Limit::Volatile,
            None,
        ),
        row(
            "RawArray<i32> iter()",
            raw_iter,
            "rawarray",
            Limit::Volatile,
            Some(0.8),
        ),
        row(
            "RawArray<i32> get(i)",
            raw_get,
            "rawarray",
            Limit::Volatile,
            Some(0.8),
        ),
        row(
            "RawArray<i32> get(i) (vs atomic loads)",
            raw_get,
            "rawarray",
            Limit::AtomicLoad,
            None,
        ),
        row(
            "Array<i32> get(i), lock per element",
            array_get,
            "array",
            Limit::SpinLoad,
            Some(0.5),
        ),
        row(
            "Array<i32> lock() + slice, one lock",
            array_slice,
            "array_one_lock",
            Limit::Volatile,
            None,
        ),
        Spec {
            limit: None,
            ..row(
                "List<i32> get(i) / managed list",
                managed_list,
                "managed_list",
                Limit::Volatile,
                None,
            )
        },
    ]
}

fn data() -> Vec<i32> {
    (0..LEN as i32).collect()
}

/// A local `Vec<i32>`, summed.
pub(crate) fn vec_sum() -> Option<Workload> {
    let v = data();
    Some(Workload::new(LEN as u64, move |reps| {
        for _ in 0..reps {
            black_box(black_box(&v).iter().fold(0i64, |a, &x| a + i64::from(x)));
        }
    }))
}

/// `RawArray<i32>` read through `iter()` (one atomic load per element).
pub(crate) fn raw_iter() -> Option<Workload> {
    let a = RawArray::<i32>::from_slice(&data()).expect("RawArray");
    Some(Workload::new(LEN as u64, move |reps| {
        for _ in 0..reps {
            black_box(black_box(&a).iter().fold(0i64, |s, x| s + i64::from(x)));
        }
    }))
}

/// `RawArray<i32>` read through `get(i)` (bounds check + one atomic load).
pub(crate) fn raw_get() -> Option<Workload> {
    let a = RawArray::<i32>::from_slice(&data()).expect("RawArray");
    Some(Workload::new(LEN as u64, move |reps| {
        for _ in 0..reps {
            let a = black_box(&a);
            let mut s = 0i64;
            for i in 0..a.len() {
                s += i64::from(a.get(i).unwrap_or(0));
            }
            black_box(s);
        }
    }))
}

/// `Array<i32>` read through `get(i)`: the lock taken and released per element.
pub(crate) fn array_get() -> Option<Workload> {
    let a = Array::<i32>::from_slice(&data()).expect("Array");
    Some(Workload::new(LEN as u64, move |reps| {
        for _ in 0..reps {
            let a = black_box(&a);
            let mut s = 0i64;
            for i in 0..a.len() {
                s += i64::from(a.get(i).unwrap_or(0));
            }
            black_box(s);
        }
    }))
}

/// `Array<i32>` read as a slice under one `lock()` per pass.
pub(crate) fn array_slice() -> Option<Workload> {
    let a = Array::<i32>::from_slice(&data()).expect("Array");
    Some(Workload::new(LEN as u64, move |reps| {
        for _ in 0..reps {
            let g = black_box(&a).lock().expect("lock");
            black_box(g.iter().fold(0i64, |s, &x| s + i64::from(x)));
        }
    }))
}

/// Python's managed list, read element by element, done the shmproc way: a `List<i32>` in
/// shared memory read through `get(i)` (the lock taken per element, the element decoded),
/// with no server in the path. The manager's server form comes beside it once it exists.
pub(crate) fn managed_list() -> Option<Workload> {
    let l = List::<i32>::new().expect("List");
    l.extend(data()).expect("extend");
    Some(Workload::new(LEN as u64, move |reps| {
        for _ in 0..reps {
            let l = black_box(&l);
            let mut s = 0i64;
            for i in 0..LEN {
                s += i64::from(l.get(i).expect("get").unwrap_or(0));
            }
            black_box(s);
        }
    }))
}
