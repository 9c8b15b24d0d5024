//! The machine's limits: the bare mechanisms shmproc is built on, measured in the same run.

use std::hint::black_box;

use crate::bare;
use crate::measure::Workload;
use crate::sequence::LEN;

/// One bare mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// One volatile load per `i32` of an L1-resident buffer.
    Volatile,
    /// One relaxed atomic load per `i32` of an L1-resident buffer.
    AtomicLoad,
    /// An uncontended spinlock: CAS acquire + release store.
    Spinlock,
    /// An uncontended `std::sync::Mutex` (process-private futex): lock + unlock.
    StdMutex,
    /// Spinlock + load + unlock per element.
    SpinLoad,
    /// Futex wait/wake ping-pong between two processes, round trips.
    FutexRoundTrip,
    /// The same ping-pong counted in waits (two per round trip).
    FutexWaits,
    /// Busy-wait ping-pong on a shared word between two processes, round trips.
    SpinRoundTrip,
    /// SPSC ring of 256-byte messages in a shared mapping between two processes.
    Ring,
    /// Kernel pipe ping-pong between two processes.
    PipeRoundTrip,
    /// `posix_spawn` of `/bin/true` + `waitpid`.
    PosixSpawn,
    /// `fork` + `_exit` + `waitpid`.
    Fork,
}

impl Limit {
    /// Every limit, in display order.
    pub(crate) const ALL: [Limit; 12] = [
        Limit::Volatile,
        Limit::AtomicLoad,
        Limit::Spinlock,
        Limit::StdMutex,
        Limit::SpinLoad,
        Limit::FutexRoundTrip,
        Limit::FutexWaits,
        Limit::SpinRoundTrip,
        Limit::Ring,
        Limit::PipeRoundTrip,
        Limit::PosixSpawn,
        Limit::Fork,
    ];

    /// What is measured.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Limit::Volatile => "volatile i32 loads (L1)",
            Limit::AtomicLoad => "relaxed atomic i32 loads (L1)",
            Limit::Spinlock => "spinlock CAS + release store",
            Limit::StdMutex => "std::sync::Mutex lock + unlock",
            Limit::SpinLoad => "spinlock + load + unlock per element",
            Limit::FutexRoundTrip => "futex ping-pong, 2 processes",
            Limit::FutexWaits => "futex ping-pong, 2 waits per round trip",
            Limit::SpinRoundTrip => "busy-wait ping-pong, 2 processes",
            Limit::Ring => "SPSC ring in MAP_SHARED, 256 B, 2 processes",
            Limit::PipeRoundTrip => "kernel pipe ping-pong, 2 processes",
            Limit::PosixSpawn => "posix_spawn /bin/true + waitpid",
            Limit::Fork => "fork + _exit + waitpid",
        }
    }

    /// The unit of the rate.
    pub(crate) fn unit(self) -> &'static str {
        match self {
            Limit::Volatile | Limit::AtomicLoad | Limit::SpinLoad => "reads/s",
            Limit::Spinlock | Limit::StdMutex => "acq+rel/s",
            Limit::FutexRoundTrip | Limit::PipeRoundTrip | Limit::SpinRoundTrip => "round trips/s",
            Limit::FutexWaits => "waits/s",
            Limit::Ring => "objects/s",
            Limit::PosixSpawn | Limit::Fork => "starts/s",
        }
    }

    /// The bare workload (its rate is the limit).
    pub(crate) fn workload(self) -> Workload {
        match self {
            Limit::Volatile => {
                let buf: Vec<i32> = (0..LEN as i32).collect();
                Workload::new(LEN as u64, move |reps| {
                    for _ in 0..reps {
                        black_box(bare::volatile_sum(black_box(&buf)));
                    }
                })
            }
            Limit::AtomicLoad => {
                let buf = bare::atomic_i32s(LEN as i32);
                Workload::new(LEN as u64, move |reps| {
                    for _ in 0..reps {
                        black_box(bare::atomic_sum(black_box(&buf)));
                    }
                })
            }
            Limit::Spinlock => {
                let lock = bare::SpinLock::new();
                Workload::new(1, move |reps| bare::spin_cycles(&lock, reps))
            }
            Limit::StdMutex => {
                let mutex = std::sync::Mutex::new(0u64);
                Workload::new(1, move |reps| {
                    for _ in 0..reps {
                        drop(black_box(&mutex).lock());
                    }
                })
            }
            Limit::SpinLoad => {
                let buf: Vec<i32> = (0..LEN as i32).collect();
                let lock = bare::SpinLock::new();
                Workload::new(LEN as u64, move |reps| {
                    for _ in 0..reps {
                        black_box(bare::spin_load_sum(&lock, black_box(&buf)));
                    }
                })
            }
            Limit::FutexRoundTrip | Limit::FutexWaits => {
                let pp = bare::FutexPingPong::new();
                // Each round trip is one wait on each side.
                let per = if self == Limit::FutexWaits { 2 } else { 1 };
                Workload::new(per, move |reps| pp.round_trips(reps))
            }
            Limit::SpinRoundTrip => {
                let pp = bare::SpinPingPong::new();
                Workload::new(1, move |reps| pp.round_trips(reps))
            }
            Limit::Ring => {
                let mut ring = bare::Ring::new();
                Workload::new(1, move |reps| ring.send(reps))
            }
            Limit::PipeRoundTrip => {
                let pp = bare::PipePingPong::new();
                Workload::new(1, move |reps| pp.round_trips(reps))
            }
            Limit::PosixSpawn => Workload::new(1, |reps| {
                for _ in 0..reps {
                    bare::posix_spawn_true();
                }
            }),
            Limit::Fork => Workload::new(1, |reps| {
                for _ in 0..reps {
                    bare::fork_exit_wait();
                }
            }),
        }
    }
}
