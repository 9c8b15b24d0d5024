//! shmproc's cost per operation beside the bare mechanism it is built on (ns per operation).

use crate::limits::Limit;
use crate::row::{Spec, Unit};
use crate::{condition, lock, objects, sequence, spawn};

/// The rows of this family; each reuses the measurement of its row in another family.
pub(crate) fn specs() -> Vec<Spec> {
    let row = |case, shmproc, python, limit| Spec {
        family: "overhead",
        case,
        unit: Unit::NsPerOp,
        shmproc,
        python: Some(python),
        limit: Some(limit),
        goal: None,
    };
    vec![
        row(
            "RawArray read vs volatile load",
            sequence::raw_iter,
            "rawarray",
            Limit::Volatile,
        ),
        row(
            "Array read vs spinlock+load",
            sequence::array_get,
            "array",
            Limit::SpinLoad,
        ),
        row(
            "Lock acq+rel vs spinlock",
            lock::lock_guard,
            "lock",
            Limit::Spinlock,
        ),
        row(
            "Queue object vs SPSC ring",
            objects::queue_1to1,
            "queue",
            Limit::Ring,
        ),
        row(
            "Condition wait vs futex wait",
            condition::condition,
            "condition",
            Limit::FutexWaits,
        ),
        row(
            "spawn start vs posix_spawn",
            spawn::start_spawn,
            "spawn",
            Limit::PosixSpawn,
        ),
        row("fork start vs fork", spawn::start_fork, "fork", Limit::Fork),
    ]
}
