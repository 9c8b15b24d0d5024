//! Foundation: values, arrays and locks shared between real processes.
//!
//! The children are started with `shmproc::spawn`/`Process` (the `Spawn` start method: a
//! re-executed copy of this test binary, diverted to its target by the `test-support`
//! constructor), so the handles really travel as tokens and re-attach.

use shmproc::testing::{assert_no_leaks, watchdog};
use shmproc::{Array, Error, Lock, Process, RawArray, RawValue, Value};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn value_and_array_written_in_child_are_seen_by_parent() {
    watchdog(LIMIT, "value_and_array", || {
        assert_no_leaks(|| {
            let num = Value::new(0.0f64).unwrap();
            let arr = Array::<i32>::from_slice(&(0..10).collect::<Vec<_>>()).unwrap();
            let child = shmproc::spawn(
                (num.clone(), arr.clone()),
                |(n, a): (Value<f64>, Array<i32>)| {
                    n.set(3.1415927).unwrap();
                    let mut g = a.lock().unwrap();
                    for x in g.iter_mut() {
                        *x = -*x;
                    }
                },
            )
            .unwrap();
            child.join().unwrap();
            assert_eq!(num.get().unwrap(), 3.1415927);
            assert_eq!(
                arr.to_vec().unwrap(),
                [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]
            );
        })
    });
}

#[test]
fn four_processes_increment_exactly_under_lock() {
    watchdog(LIMIT, "increments", || {
        assert_no_leaks(|| {
            let counter = Value::new(0u64).unwrap();
            let arr = Array::<i64>::new(4).unwrap();
            let kids: Vec<_> = (0..4)
                .map(|_| {
                    Process::new(
                        |(c, a): (Value<u64>, Array<i64>)| {
                            for _ in 0..2000 {
                                *c.lock().unwrap() += 1;
                                let mut g = a.lock().unwrap();
                                for x in g.iter_mut() {
                                    *x += 1;
                                }
                            }
                        },
                        (counter.clone(), arr.clone()),
                    )
                    .start()
                    .unwrap()
                })
                .collect();
            for k in &kids {
                assert_eq!(k.join().unwrap(), 0);
            }
            assert_eq!(counter.get().unwrap(), 8000);
            assert_eq!(arr.to_vec().unwrap(), [8000; 4]);
        })
    });
}

#[test]
fn disjoint_writers_to_raw_array_need_no_lock() {
    watchdog(LIMIT, "raw_array", || {
        assert_no_leaks(|| {
            let arr = RawArray::<u32>::new(4 * 10_000).unwrap();
            let kids: Vec<_> = (0..4u32)
                .map(|k| {
                    Process::new(
                        |(a, k): (RawArray<u32>, u32)| {
                            for i in 0..10_000u32 {
                                a.set((k * 10_000 + i) as usize, k * 1_000_000 + i).unwrap();
                            }
                        },
                        (arr.clone(), k),
                    )
                    .start()
                    .unwrap()
                })
                .collect();
            for k in &kids {
                assert_eq!(k.join().unwrap(), 0);
            }
            for (i, v) in arr.iter().enumerate() {
                let (k, j) = (i as u32 / 10_000, i as u32 % 10_000);
                assert_eq!(v, k * 1_000_000 + j);
            }
        })
    });
}

#[test]
fn acquire_reports_owner_died_after_sigkill() {
    watchdog(LIMIT, "owner_died", || {
        assert_no_leaks(|| {
            let v = Value::new(0i32).unwrap();
            let ready = RawValue::new(0u32).unwrap();
            let child = Process::new(
                |(v, r): (Value<i32>, RawValue<u32>)| {
                    let mut g = v.lock().unwrap();
                    *g = 42;
                    r.set(1);
                    std::thread::sleep(Duration::from_secs(600));
                },
                (v.clone(), ready.clone()),
            )
            .start()
            .unwrap();
            while ready.get() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(v.get_lock().is_locked());
            child.kill().unwrap();
            assert_eq!(child.join().unwrap(), -9);
            let start = std::time::Instant::now();
            match v.lock() {
                Err(died) => {
                    assert_eq!(*died.get_ref().deref_value(), 42);
                    drop(died.into_inner());
                }
                Ok(_) => panic!("expected OwnerDied"),
            }
            assert!(start.elapsed() < Duration::from_secs(30));
            // Afterwards the lock works normally, and is not reported again.
            v.set(7).unwrap();
            assert_eq!(v.get().unwrap(), 7);
        })
    });
}

trait DerefValue<T> {
    fn deref_value(&self) -> &T;
}

impl<T: shmproc::Shareable> DerefValue<T> for shmproc::ValueGuard<'_, T> {
    fn deref_value(&self) -> &T {
        self
    }
}

#[test]
fn lock_timeout_and_try_lock_see_a_lock_held_in_another_process() {
    watchdog(LIMIT, "lock_timeout", || {
        assert_no_leaks(|| {
            let lock = Lock::new().unwrap();
            let ready = RawValue::new(0u32).unwrap();
            let child = Process::new(
                |(l, r): (Lock, RawValue<u32>)| {
                    let _g = l.lock().unwrap();
                    r.set(1);
                    while r.get() != 2 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                },
                (lock.clone(), ready.clone()),
            )
            .start()
            .unwrap();
            while ready.get() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(!lock.try_acquire().unwrap());
            let t = std::time::Instant::now();
            assert!(
                lock.lock_timeout(Duration::from_millis(100))
                    .unwrap()
                    .is_none()
            );
            assert!(t.elapsed() >= Duration::from_millis(100));
            ready.set(2);
            assert_eq!(child.join().unwrap(), 0);
            assert!(lock.acquire_timeout(Duration::from_secs(5)).unwrap());
            lock.release().unwrap();
            assert!(matches!(lock.release(), Err(Error::NotOwner)));
        })
    });
}

#[test]
fn test_support_constructor_is_linked_into_this_binary() {
    assert!(shmproc::testing::init_ran());
}
