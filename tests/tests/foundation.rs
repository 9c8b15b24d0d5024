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
                |(n, a): (Value<f64>, Array<i32>)| {
                    n.set(3.1415927).unwrap();
                    let mut g = a.lock().unwrap();
                    for x in g.iter_mut() {
                        *x = -*x;
                    }
                },
                (num.clone(), arr.clone()),
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

// ---- a token attaches only as the handle it was made by --------------------------

/// Regression: a value re-attached with a lock other than its own would let two
/// guards hold `&mut T` at once; the block records its lock, so it is refused.
#[test]
fn value_and_array_refuse_a_foreign_lock_token() {
    let v = Value::new(1u64).unwrap();
    let a = Array::<u64>::new(4).unwrap();
    let foreign = Lock::new().unwrap();
    let (vt, vl) = v.token();
    let (at, al) = a.token();
    assert!(matches!(
        Value::<u64>::from_token(&vt, &foreign.token()),
        Err(Error::LockMismatch)
    ));
    assert!(matches!(
        Array::<u64>::from_token(&at, &foreign.token()),
        Err(Error::LockMismatch)
    ));
    // Another object's lock is foreign too, even one in the same segment.
    assert!(matches!(
        Value::<u64>::from_token(&vt, &al),
        Err(Error::LockMismatch)
    ));
    // Its own lock attaches, and shares the lock with the original.
    let v2 = Value::<u64>::from_token(&vt, &vl).unwrap();
    let g = v.lock().unwrap();
    assert!(v2.get_lock().is_locked());
    drop(g);
    v2.set(5).unwrap();
    assert_eq!(v.get().unwrap(), 5);
    // A value sharing a lock with another records that lock.
    let shared = Value::with_lock(2u64, v.get_lock().clone()).unwrap();
    let (st, sl) = shared.token();
    assert_eq!(sl, vl);
    assert!(Value::<u64>::from_token(&st, &vl).is_ok());
    assert!(matches!(
        Value::<u64>::from_token(&st, &foreign.token()),
        Err(Error::LockMismatch)
    ));
}

/// Regression: a raw handle stores atomically with no lock, so attaching one to a
/// locked value's block would race a guard's `&mut T`.
#[test]
fn raw_value_from_a_value_token_is_refused() {
    let v = Value::new(7u64).unwrap();
    let a = Array::<u32>::new(1).unwrap();
    assert!(matches!(
        RawValue::<u64>::from_token(&v.token().0),
        Err(Error::WrongKind {
            expected: "RawValue",
            found: "Value"
        })
    ));
    assert!(matches!(
        RawArray::<u32>::from_token(&a.token().0),
        Err(Error::WrongKind {
            expected: "RawArray",
            found: "Array"
        })
    ));
    let r = RawValue::new(3u32).unwrap();
    let lock = Lock::new().unwrap();
    assert!(matches!(
        Value::<u32>::from_token(&r.token(), &lock.token()),
        Err(Error::WrongKind { .. })
    ));
    assert!(matches!(
        RawArray::<u32>::from_token(&r.token()),
        Err(Error::WrongKind { .. })
    ));
    assert!(matches!(
        shmproc::codec::from_bytes::<RawValue<u64>>(&shmproc::codec::to_bytes(&v).unwrap()),
        Err(Error::Codec { .. }) | Err(Error::WrongKind { .. })
    ));
}

/// Regression: a published `Value<u32>` is one `u32`, not an `Array<u32>`.
#[test]
fn value_token_as_array_is_refused() {
    let v = Value::new(9u32).unwrap();
    let (vt, vl) = v.token();
    assert!(matches!(
        Array::<u32>::from_token(&vt, &vl),
        Err(Error::WrongKind {
            expected: "Array",
            found: "Value"
        })
    ));
    let a = Array::<u32>::new(1).unwrap();
    let (at, al) = a.token();
    assert!(matches!(
        Value::<u32>::from_token(&at, &al),
        Err(Error::WrongKind {
            expected: "Value",
            found: "Array"
        })
    ));
    assert_eq!(v.get().unwrap(), 9);
}

/// Regression: the token of a freed object is `ObjectGone`, also for payloads
/// that needed a forward header (alignment above 32 bytes) and after the block is reused.
#[test]
fn freed_object_token_is_object_gone() {
    let seg = shmproc::Segment::create(8 << 20).unwrap();
    let v = Value::new_in(&seg, 1u64).unwrap();
    let (vt, vl) = v.token();
    drop(v);
    assert!(matches!(
        Value::<u64>::from_token(&vt, &vl),
        Err(Error::ObjectGone)
    ));
    // A large array is page-aligned with its payload 64 bytes in: a forward header.
    let big = RawArray::<u8>::new_in(&seg, 100_000).unwrap();
    let bt = big.token();
    let small = RawArray::<u64>::new_in(&seg, 3).unwrap();
    let st = small.token();
    drop((big, small));
    assert!(matches!(
        RawArray::<u8>::from_token(&bt),
        Err(Error::ObjectGone)
    ));
    assert!(matches!(
        RawArray::<u64>::from_token(&st),
        Err(Error::ObjectGone)
    ));
    // Reused for another object: still gone, never an alias.
    let _reuse = RawArray::<u8>::new_in(&seg, 100_000).unwrap();
    let _reuse2 = RawArray::<u64>::new_in(&seg, 3).unwrap();
    assert!(matches!(
        RawArray::<u8>::from_token(&bt),
        Err(Error::ObjectGone)
    ));
    assert!(matches!(
        RawArray::<u64>::from_token(&st),
        Err(Error::ObjectGone)
    ));
}

/// Every kind of handle refuses the token of every other kind: built through the
/// `Handle` trait, so it covers each handle the same way.
#[test]
fn every_handle_refuses_every_other_kinds_token() {
    use shmproc::{
        Barrier, BoundedSemaphore, Condition, Event, Handle, JoinableQueue, ObjectToken, Queue,
        RLock, Semaphore, SimpleQueue,
    };

    fn object_token<H: Handle>(h: &H) -> ObjectToken {
        // The object's own token: the whole token, or the first of an (object, lock) pair.
        let bytes = shmproc::codec::to_bytes(&h.token()).unwrap();
        shmproc::codec::from_bytes::<ObjectToken>(&bytes)
            .or_else(|_| {
                shmproc::codec::from_bytes::<(ObjectToken, ObjectToken)>(&bytes).map(|p| p.0)
            })
            .unwrap()
    }

    let lock = Lock::new().unwrap();
    let rlock = RLock::new().unwrap();
    let value = Value::with_lock(1u32, lock.clone()).unwrap();
    let array = Array::<u32>::with_lock(1, lock.clone()).unwrap();
    let cond = Condition::with_lock(lock.clone()).unwrap();
    // The handles stay alive while their tokens are tried (a token does not keep its object).
    let (sem, bsem) = (
        Semaphore::new(1).unwrap(),
        BoundedSemaphore::new(1).unwrap(),
    );
    let (event, barrier) = (Event::new().unwrap(), Barrier::new(1).unwrap());
    let queue = Queue::<u32>::new().unwrap();
    let simple = SimpleQueue::<u32>::new().unwrap();
    let joinable = JoinableQueue::<u32>::new().unwrap();
    let raw_value = RawValue::new(1u32).unwrap();
    let raw_array = RawArray::<u32>::new(1).unwrap();
    let tokens: Vec<(&str, ObjectToken)> = vec![
        ("Lock", object_token(&lock)),
        ("RLock", object_token(&rlock)),
        ("Semaphore", object_token(&sem)),
        ("BoundedSemaphore", object_token(&bsem)),
        ("Event", object_token(&event)),
        ("Barrier", object_token(&barrier)),
        ("Condition", object_token(&cond)),
        ("Queue", object_token(&queue)),
        ("SimpleQueue", object_token(&simple)),
        ("JoinableQueue", object_token(&joinable)),
        ("Value", object_token(&value)),
        ("Array", object_token(&array)),
        ("RawValue", object_token(&raw_value)),
        ("RawArray", object_token(&raw_array)),
    ];

    fn check<H: Handle>(tokens: &[(&str, ObjectToken)], make: impl Fn(&ObjectToken) -> H::Token) {
        for (kind, tok) in tokens {
            let r = H::from_token(&make(tok));
            if *kind == H::KIND {
                assert!(r.is_ok(), "{kind} refused its own token: {r:?}");
            } else {
                assert!(r.is_err(), "{} accepted a {kind} token", H::KIND);
            }
        }
    }
    let own = |t: &ObjectToken| t.clone();
    let with_lock = |t: &ObjectToken| (t.clone(), lock.token());
    check::<Lock>(&tokens, own);
    check::<RLock>(&tokens, own);
    check::<Semaphore>(&tokens, own);
    check::<BoundedSemaphore>(&tokens, own);
    check::<Event>(&tokens, own);
    check::<Barrier>(&tokens, own);
    check::<Queue<u32>>(&tokens, own);
    check::<SimpleQueue<u32>>(&tokens, own);
    check::<JoinableQueue<u32>>(&tokens, own);
    check::<RawValue<u32>>(&tokens, own);
    check::<RawArray<u32>>(&tokens, own);
    check::<Value<u32>>(&tokens, with_lock);
    check::<Array<u32>>(&tokens, with_lock);
    check::<Condition>(&tokens, with_lock);

    // A condition re-attached with a foreign lock is refused like a value.
    assert!(matches!(
        Condition::from_token(&cond.token(), Lock::new().unwrap()),
        Err(Error::LockMismatch)
    ));
    assert!(matches!(
        Condition::from_token(&cond.token(), rlock.clone()),
        Err(Error::LockMismatch)
    ));
    assert!(Condition::from_token(&cond.token(), lock.clone()).is_ok());
    let c2 = <Condition as Handle>::from_token(&Handle::token(&cond)).unwrap();
    assert!(c2.same_as(&cond));
}
