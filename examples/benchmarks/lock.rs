//! "Number of acquires/releases of a lock per sec".

use std::hint::black_box;

use shmproc::{Lock, RLock};

use crate::limits::Limit;
use crate::measure::Workload;
use crate::row::{Spec, Unit};

/// The rows of this family.
pub(crate) fn specs() -> Vec<Spec> {
    let row = |case, shmproc, python, goal| Spec {
        family: "lock",
        case,
        unit: Unit::Rate("acq+rel/s"),
        shmproc,
        python: Some(python),
        limit: Some(Limit::Spinlock),
        goal,
    };
    vec![
        // The robust lock against the process-private std::sync::Mutex, paired run by run:
        // it must be at least as fast.
        Spec {
            limit: Some(Limit::StdMutex),
            ..row("Lock, lock() guard", lock_guard, "lock", Some(1.0))
        },
        row(
            "Lock, lock() guard (vs spinlock)",
            lock_guard,
            "lock",
            Some(0.5),
        ),
        row(
            "Lock, acquire() + release()",
            lock_acquire_release,
            "lock",
            Some(0.5),
        ),
        row("RLock, lock() guard", rlock, "rlock", Some(0.5)),
        row("Lock managed by server", managed_lock, "managed_lock", None),
        row(
            "RLock managed by server",
            managed_rlock,
            "managed_rlock",
            None,
        ),
    ]
}

/// `Lock::lock()` and dropping the guard.
pub(crate) fn lock_guard() -> Option<Workload> {
    let lock = Lock::new().expect("Lock");
    Some(Workload::new(1, move |reps| {
        for _ in 0..reps {
            drop(black_box(&lock).lock());
        }
    }))
}

/// `Lock::acquire()` + `Lock::release()`.
pub(crate) fn lock_acquire_release() -> Option<Workload> {
    let lock = Lock::new().expect("Lock");
    Some(Workload::new(1, move |reps| {
        for _ in 0..reps {
            let l = black_box(&lock);
            let _ = l.acquire();
            let _ = l.release();
        }
    }))
}

/// `RLock` acquire + release.
pub(crate) fn rlock() -> Option<Workload> {
    let lock = RLock::new().expect("RLock");
    Some(Workload::new(1, move |reps| {
        for _ in 0..reps {
            drop(black_box(&lock).lock());
        }
    }))
}

/// A lock held by a manager process, acquire + release (two round trips to the server).
pub(crate) fn managed_lock() -> Option<Workload> {
    let m = shmproc::Manager::start().expect("Manager");
    let lock = m.lock().expect("managed lock");
    Some(Workload::new(1, move |reps| {
        let _server = &m;
        for _ in 0..reps {
            lock.acquire().expect("acquire");
            lock.release().expect("release");
        }
    }))
}

/// An RLock held by a manager process, acquire + release.
pub(crate) fn managed_rlock() -> Option<Workload> {
    let m = shmproc::Manager::start().expect("Manager");
    let lock = m.rlock().expect("managed rlock");
    Some(Workload::new(1, move |reps| {
        let _server = &m;
        for _ in 0..reps {
            lock.acquire().expect("acquire");
            lock.release().expect("release");
        }
    }))
}
