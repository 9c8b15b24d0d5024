//! Queues: CPython's behaviours, many producers and consumers across processes, and kills.

use shmproc::testing::{ForkPermit, assert_no_leaks, fork, watchdog};
use shmproc::{Error, JoinableQueue, Queue, RawArray, ShareableQueue, SimpleQueue};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn capacity_six_queue_fills_and_times_out() {
    watchdog(LIMIT, "capacity", || {
        let q = Queue::<u32>::with_capacity(6).unwrap();
        for i in 0..6 {
            q.try_put(&i).unwrap();
        }
        assert!(q.is_full());
        assert_eq!(q.len(), 6);
        assert!(matches!(q.try_put(&6), Err(Error::Full)));
        let t = Instant::now();
        assert!(matches!(
            q.put_timeout(&6, Duration::from_millis(100)),
            Err(Error::Timeout)
        ));
        assert!(t.elapsed() >= Duration::from_millis(100));
        let got: Vec<u32> = (0..6).map(|_| q.get().unwrap()).collect();
        assert_eq!(got, [0, 1, 2, 3, 4, 5]);
        assert!(q.is_empty());
        assert!(matches!(q.try_get(), Err(Error::Empty)));
        let t = Instant::now();
        assert!(matches!(
            q.get_timeout(Duration::from_millis(100)),
            Err(Error::Timeout)
        ));
        assert!(t.elapsed() >= Duration::from_millis(100));
    });
}

#[test]
fn closed_queue_refuses_puts_and_drains_then_errors() {
    let q = Queue::<String>::new().unwrap();
    q.put(&"a".into()).unwrap();
    q.close();
    assert!(q.is_closed());
    assert!(matches!(q.put(&"b".into()), Err(Error::Closed)));
    assert_eq!(q.get().unwrap(), "a");
    assert!(matches!(q.get(), Err(Error::Closed)));
    assert!(matches!(q.try_get(), Err(Error::Closed)));
}

#[test]
fn large_messages_round_trip_and_are_freed() {
    let q = Queue::<Vec<u8>>::with_capacity(4).unwrap();
    let seg = shmproc::default_segment().unwrap();
    let used = seg.stats().used;
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    q.put(&big).unwrap();
    q.put(&vec![]).unwrap();
    assert_eq!(q.get().unwrap(), big);
    assert_eq!(q.get().unwrap(), Vec::<u8>::new());
    assert_eq!(seg.stats().used, used, "message blocks freed after get");
}

#[test]
fn queue_get_into_reuses_the_callers_buffer_and_reports_like_get() {
    watchdog(LIMIT, "get_into", || {
        assert_no_leaks(|| {
            let q = Queue::<String>::with_capacity(4).unwrap();
            let mut s = String::with_capacity(1024);
            let ptr = s.as_ptr();
            for text in ["0".repeat(256), "é".to_owned(), String::new()] {
                q.put(&text).unwrap();
                q.get_into(&mut s).unwrap();
                assert_eq!(s, text);
                assert_eq!(s.as_ptr(), ptr, "decoded into the caller's buffer");
            }
            // A message larger than a slot goes through its own heap block.
            let big = "y".repeat(100_000);
            q.put(&big).unwrap();
            q.try_get_into(&mut s).unwrap();
            assert_eq!(s, big);
            assert!(matches!(q.try_get_into(&mut s), Err(Error::Empty)));
            assert!(matches!(
                q.get_into_timeout(&mut s, Duration::from_millis(20)),
                Err(Error::Timeout)
            ));
            // From another process, then end of stream.
            let q2 = q.clone();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                for i in 0..100 {
                    q2.put(&format!("{i:0>256}")).unwrap();
                }
                q2.close();
                0
            });
            for i in 0..100 {
                q.get_into(&mut s).unwrap();
                assert_eq!(s, format!("{i:0>256}"));
            }
            assert!(matches!(q.get_into(&mut s), Err(Error::Closed)));
            assert_eq!(child.wait(), Ok(0));
        })
    });
}

/// A `ByteBuf` consumer receives every payload, from another process, into the buffer it
/// keeps (malformed input: the codec's unit tests).
#[test]
fn queue_of_byte_bufs_receives_into_one_buffer() {
    use shmproc::codec::ByteBuf;
    watchdog(LIMIT, "bytebuf get_into", || {
        assert_no_leaks(|| {
            let q = Queue::<ByteBuf>::with_capacity(8).unwrap();
            let mut b = ByteBuf::with_capacity(256);
            let ptr = b.as_ptr();
            let q2 = q.clone();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                for i in 0..1000u32 {
                    let len = (i % 257) as usize;
                    q2.put(&ByteBuf::from(vec![(i % 251) as u8; len])).unwrap();
                }
                q2.close();
                0
            });
            for i in 0..1000u32 {
                q.get_into(&mut b).unwrap();
                assert_eq!(b[..], vec![(i % 251) as u8; (i % 257) as usize][..]);
                assert_eq!(b.as_ptr(), ptr, "decoded into the kept buffer");
            }
            assert!(matches!(q.get_into(&mut b), Err(Error::Closed)));
            assert_eq!(child.wait(), Ok(0));
        })
    });
}

#[test]
fn a_queue_attaches_only_with_its_element_type() {
    let q = Queue::<u32>::new().unwrap();
    let bytes = shmproc::codec::to_bytes(&q).unwrap();
    let same: Queue<u32> = shmproc::codec::from_bytes(&bytes).unwrap();
    same.put(&7).unwrap();
    assert_eq!(q.get().unwrap(), 7);
    assert!(matches!(
        shmproc::codec::from_bytes::<Queue<String>>(&bytes),
        Err(Error::TypeMismatch { .. })
    ));
}

#[test]
fn child_put_of_a_megabyte_completes_before_parent_gets() {
    // The programming guidelines' join-before-get deadlock cannot happen: no feeder thread.
    watchdog(LIMIT, "join_before_get", || {
        assert_no_leaks(|| {
            let q = Queue::<String>::new().unwrap();
            let q2 = q.clone();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                q2.put(&"X".repeat(1_000_000)).unwrap();
                0
            });
            assert_eq!(child.wait(), Ok(0)); // join first...
            assert_eq!(q.get().unwrap().len(), 1_000_000); // ...then get
        })
    });
}

#[test]
fn stress_two_producers_two_consumers_deliver_everything_in_order() {
    watchdog(LIMIT, "mpmc", || {
        assert_no_leaks(|| {
            const N: u64 = 20_000;
            let q = Queue::<(u64, u64)>::with_capacity(64).unwrap();
            let out = Queue::<Vec<(u64, u64)>>::new().unwrap();
            let mut kids = Vec::new();
            for p in 0..2u64 {
                let q = q.clone();
                // SAFETY: no other thread of this process holds a lock that the child takes.
                kids.push(fork(unsafe { ForkPermit::new() }, move || {
                    for i in 0..N {
                        q.put(&(p, i)).unwrap();
                    }
                    0
                }));
            }
            for _ in 0..2 {
                let (q, out) = (q.clone(), out.clone());
                // SAFETY: no other thread of this process holds a lock that the child takes.
                kids.push(fork(unsafe { ForkPermit::new() }, move || {
                    let mut got = Vec::new();
                    loop {
                        match q.get() {
                            Ok(m) => got.push(m),
                            Err(Error::Closed) => break,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    out.put(&got).unwrap();
                    0
                }));
            }
            for k in &mut kids[..2] {
                assert_eq!(k.wait(), Ok(0));
            }
            q.close();
            let mut all = Vec::new();
            for _ in 0..2 {
                let got = out.get().unwrap();
                // Per consumer, each producer's items come out in increasing order.
                for p in 0..2 {
                    let seq: Vec<u64> = got.iter().filter(|m| m.0 == p).map(|m| m.1).collect();
                    assert!(seq.windows(2).all(|w| w[0] < w[1]));
                }
                all.extend(got);
            }
            for k in &mut kids[2..] {
                assert_eq!(k.wait(), Ok(0));
            }
            all.sort_unstable();
            let want: Vec<(u64, u64)> = (0..2).flat_map(|p| (0..N).map(move |i| (p, i))).collect();
            assert_eq!(all, want, "every message exactly once");
        })
    });
}

#[test]
fn joinable_queue_counts_tasks() {
    watchdog(LIMIT, "joinable", || {
        let q = JoinableQueue::<u32>::new().unwrap();
        for i in 0..10 {
            q.put(&i).unwrap();
        }
        assert!(matches!(
            q.join_timeout(Duration::from_millis(50)),
            Err(Error::Timeout)
        ));
        let q2 = q.clone();
        // SAFETY: no other thread of this process holds a lock that the child takes.
        let mut child = fork(unsafe { ForkPermit::new() }, move || {
            for _ in 0..10 {
                q2.get().unwrap();
                q2.task_done().unwrap();
            }
            0
        });
        q.join().unwrap();
        assert_eq!(child.wait(), Ok(0));
        assert!(matches!(q.task_done(), Err(Error::TaskDoneTooMany)));
        let s = SimpleQueue::<u8>::new().unwrap();
        s.put(&1).unwrap();
        assert!(!s.is_empty());
        assert_eq!(s.get().unwrap(), 1);
    });
}

fn iters() -> u32 {
    std::env::var("SHMPROC_KILL_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

#[test]
fn kill_producers_mid_put_loses_nothing_acknowledged() {
    watchdog(LIMIT, "kill_producers", || {
        assert_no_leaks(|| {
            let q = Queue::<(u32, u64, Vec<u8>)>::with_capacity(16).unwrap();
            let acked = RawArray::<u64>::new(2).unwrap();
            let mut next = [0u64; 2];
            for round in 0..iters() {
                let mut kids: Vec<_> = (0..2u32)
                    .map(|p| {
                        let (q, acked) = (q.clone(), acked.clone());
                        let start = next[p as usize];
                        // SAFETY: no other thread of this process holds a lock that the child takes.
                        fork(unsafe { ForkPermit::new() }, move || {
                            let mut i = start;
                            loop {
                                // Mix inline and out-of-slot messages.
                                let body = vec![p as u8; if i % 7 == 0 { 1000 } else { 8 }];
                                q.put(&(p, i, body)).unwrap();
                                acked.set(p as usize, i + 1).unwrap();
                                i += 1;
                            }
                        })
                    })
                    .collect();
                // Consume for a moment, then kill both producers at a random point.
                let until =
                    Instant::now() + Duration::from_micros(300 + u64::from(round % 7) * 200);
                let mut seen = [Vec::new(), Vec::new()];
                while Instant::now() < until {
                    if let Ok((p, i, body)) = q.try_get() {
                        assert!(body.iter().all(|&b| b == p as u8), "torn message");
                        seen[p as usize].push(i);
                    }
                }
                for k in &mut kids {
                    assert_eq!(k.kill(), Err(9));
                }
                while let Ok((p, i, body)) = q.try_get() {
                    assert!(body.iter().all(|&b| b == p as u8), "torn message");
                    seen[p as usize].push(i);
                }
                for p in 0..2 {
                    let a = acked.get(p).unwrap();
                    let s = &seen[p];
                    // In order, no duplicates, nothing acknowledged missing; at most one extra
                    // (put completed, killed before recording the acknowledgement).
                    let want: Vec<u64> = (next[p]..next[p] + s.len() as u64).collect();
                    assert_eq!(s, &want, "producer {p} round {round}");
                    assert!(next[p] + s.len() as u64 >= a);
                    assert!(next[p] + s.len() as u64 <= a + 1);
                    next[p] += s.len() as u64;
                }
            }
            assert!(next.iter().sum::<u64>() > 0, "producers never got to put");
            // The queue still works.
            q.put(&(9, 9, vec![])).unwrap();
            assert_eq!(q.get().unwrap().0, 9);
        })
    });
}

#[test]
fn kill_consumers_mid_get_leaves_messages_to_others() {
    watchdog(LIMIT, "kill_consumers", || {
        assert_no_leaks(|| {
            let q = Queue::<u64>::with_capacity(32).unwrap();
            let taken = RawArray::<u64>::new(1 << 16).unwrap();
            let mut next = 0u64;
            let mut delivered = std::collections::BTreeSet::new();
            for round in 0..iters() {
                for _ in 0..32 {
                    if q.try_put(&next).is_ok() {
                        next += 1;
                    }
                }
                let (q2, t2) = (q.clone(), taken.clone());
                // SAFETY: no other thread of this process holds a lock that the child takes.
                let mut child = fork(unsafe { ForkPermit::new() }, move || {
                    loop {
                        if let Ok(v) = q2.get() {
                            // Record what this consumer returned.
                            t2.set((v % (1 << 16)) as usize, v + 1).unwrap();
                        }
                    }
                });
                // Let the child start and take some, then kill it at a random point.
                let start = Instant::now();
                while q.len() > 16 && start.elapsed() < Duration::from_secs(5) {
                    std::hint::spin_loop();
                }
                std::thread::sleep(Duration::from_micros(u64::from(round % 5) * 50));
                assert_eq!(child.kill(), Err(9));
                while let Ok(v) = q.try_get() {
                    assert!(delivered.insert(v), "{v} delivered twice");
                }
                for v in 0..next {
                    if taken.get((v % (1 << 16)) as usize).unwrap() == v + 1 {
                        delivered.insert(v);
                    }
                }
            }
            // Every message was returned by exactly one get, except at most one per kill that
            // a consumer took and died holding before it could record it.
            let by_children = (0..next)
                .filter(|&v| taken.get((v % (1 << 16)) as usize).unwrap() == v + 1)
                .count();
            assert!(by_children > 0, "the consumers never took anything");
            let missing = (0..next).filter(|v| !delivered.contains(v)).count();
            assert!(missing <= iters() as usize, "{missing} lost");
            q.put(&1).unwrap();
            assert_eq!(q.get().unwrap(), 1);
        })
    });
}

/// Issue 18: a queue that was dropped, looked up by its published token or re-attached from
/// its bytes, is `ObjectGone`, also after its block was reused by a new queue.
#[test]
fn a_dropped_queue_looked_up_is_object_gone() {
    let seg = shmproc::Segment::create(1 << 20).unwrap();
    let q = Queue::<u32>::with_capacity_in(&seg, 4).unwrap();
    seg.publish(&q).unwrap();
    let bytes = shmproc::codec::to_bytes(&q).unwrap();
    drop(q);
    let gone = |r: shmproc::Result<Queue<u32>>| matches!(r, Err(shmproc::Error::ObjectGone));
    assert!(gone(seg.lookup::<Queue<u32>>()));
    assert!(gone(shmproc::codec::from_bytes::<Queue<u32>>(&bytes)));
    // The same size class again: the freed block is likely reused, with a new generation.
    let again = Queue::<u32>::with_capacity_in(&seg, 4).unwrap();
    again.put(&1).unwrap();
    assert!(gone(seg.lookup::<Queue<u32>>()));
    assert!(gone(shmproc::codec::from_bytes::<Queue<u32>>(&bytes)));
    let msg = shmproc::codec::from_bytes::<Queue<u32>>(&bytes)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(msg, "shared object no longer exists");
}

/// A 256-byte shareable message whose every word carries the same stamp, so a torn copy shows.
type Msg256 = [u64; 32];

fn stamp(p: u32, i: u64) -> u64 {
    (u64::from(p) << 48) | i
}

fn untorn(m: &Msg256) -> u64 {
    assert!(m.iter().all(|&w| w == m[0]), "torn message");
    m[0]
}

#[test]
fn shareable_queue_copies_loans_and_checks_kind() {
    watchdog(LIMIT, "shareable_basics", || {
        assert_no_leaks(|| {
            let q = ShareableQueue::<Msg256>::with_capacity(2).unwrap();
            q.put(&[5; 32]).unwrap();
            q.put_with(|s| s.fill(6)).unwrap();
            assert!(matches!(q.try_put(&[0; 32]), Err(Error::Full)));
            assert!(matches!(
                q.put_with_timeout(|_| panic!("not called"), Duration::from_millis(5)),
                Err(Error::Timeout)
            ));
            assert_eq!(q.get().unwrap(), [5; 32]);
            assert_eq!(q.get_with(untorn).unwrap(), 6);
            assert!(matches!(q.try_get(), Err(Error::Empty)));
            // A panicking loan puts nothing, a panicking read gives the value back.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                q.put_with(|s| {
                    s.fill(1);
                    panic!("fill fails");
                })
            }));
            assert!(r.is_err());
            assert!(q.is_empty());
            q.put(&[7; 32]).unwrap();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                q.get_with(|_| panic!("read fails"))
            }));
            assert!(r.is_err());
            assert_eq!(q.try_get_with(untorn).unwrap(), 7);
            // Small values take one 64-byte slot; tokens attach only as their own kind and type.
            let small = ShareableQueue::<u64>::new().unwrap();
            small.put(&9).unwrap();
            let bytes = shmproc::codec::to_bytes(&small).unwrap();
            let again: ShareableQueue<u64> = shmproc::codec::from_bytes(&bytes).unwrap();
            assert_eq!(again.get().unwrap(), 9);
            assert!(matches!(
                shmproc::codec::from_bytes::<ShareableQueue<u32>>(&bytes),
                Err(Error::TypeMismatch { .. })
            ));
            assert!(matches!(
                shmproc::codec::from_bytes::<Queue<u64>>(&bytes),
                Err(Error::WrongKind { .. })
            ));
            q.close();
            assert!(matches!(q.put(&[0; 32]), Err(Error::Closed)));
            assert!(matches!(q.get(), Err(Error::Closed)));
        })
    });
}

/// `get_into` copies the value into the caller's place, and leaves the place as it was when
/// it fails (empty, timed out, closed).
#[test]
fn shareable_queue_get_into_fills_the_place_or_leaves_it() {
    watchdog(LIMIT, "shareable_get_into", || {
        assert_no_leaks(|| {
            let q = ShareableQueue::<Msg256>::with_capacity(4).unwrap();
            let mut place: Msg256 = [1; 32];
            assert!(matches!(q.try_get_into(&mut place), Err(Error::Empty)));
            assert!(matches!(
                q.get_into_timeout(&mut place, Duration::from_millis(5)),
                Err(Error::Timeout)
            ));
            assert_eq!(place, [1; 32]);
            let mut sent: Msg256 = [0; 32];
            for (i, w) in sent.iter_mut().enumerate() {
                *w = i as u64 * 3;
            }
            q.put(&sent).unwrap();
            q.put_with(|s| s.fill(8)).unwrap();
            q.put(&[9; 32]).unwrap();
            q.get_into(&mut place).unwrap();
            assert_eq!(place, sent);
            q.try_get_into(&mut place).unwrap();
            assert_eq!(place, [8; 32]);
            q.get_into_timeout(&mut place, Duration::from_secs(5))
                .unwrap();
            assert_eq!(place, [9; 32]);
            q.put(&[4; 32]).unwrap();
            q.close();
            assert_eq!(q.try_get().unwrap(), [4; 32]);
            assert!(matches!(q.get_into(&mut place), Err(Error::Closed)));
            assert_eq!(place, [9; 32]);
        })
    });
}

#[test]
fn shareable_queue_two_producers_two_consumers_across_processes() {
    watchdog(LIMIT, "shareable_mpmc", || {
        assert_no_leaks(|| {
            const N: u64 = 20_000;
            // 8 KiB values: the 64-byte aligned, in-place path.
            let q = ShareableQueue::<[u64; 1024]>::with_capacity(8).unwrap();
            let out = Queue::<Vec<u64>>::new().unwrap();
            let mut kids = Vec::new();
            for p in 0..2u32 {
                let q = q.clone();
                // SAFETY: no other thread of this process holds a lock that the child takes.
                kids.push(fork(unsafe { ForkPermit::new() }, move || {
                    for i in 0..N {
                        if i % 2 == 0 {
                            q.put(&[stamp(p, i); 1024]).unwrap();
                        } else {
                            q.put_with(|s| s.fill(stamp(p, i))).unwrap();
                        }
                    }
                    0
                }));
            }
            for c in 0..2 {
                let (q, out) = (q.clone(), out.clone());
                // SAFETY: no other thread of this process holds a lock that the child takes.
                kids.push(fork(unsafe { ForkPermit::new() }, move || {
                    let mut got = Vec::new();
                    loop {
                        let r = if c == 0 {
                            q.get().map(|m| untorn_big(&m))
                        } else {
                            q.get_with(|m| {
                                assert!(m.iter().all(|&w| w == m[0]), "torn message");
                                m[0]
                            })
                        };
                        match r {
                            Ok(m) => got.push(m),
                            Err(Error::Closed) => break,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    out.put(&got).unwrap();
                    0
                }));
            }
            for k in &mut kids[..2] {
                assert_eq!(k.wait(), Ok(0));
            }
            q.close();
            let mut all = Vec::new();
            for _ in 0..2 {
                let got = out.get().unwrap();
                for p in 0..2u64 {
                    let seq: Vec<u64> = got.iter().filter(|&&m| m >> 48 == p).copied().collect();
                    assert!(seq.windows(2).all(|w| w[0] < w[1]), "order per producer");
                }
                all.extend(got);
            }
            for k in &mut kids[2..] {
                assert_eq!(k.wait(), Ok(0));
            }
            all.sort_unstable();
            let want: Vec<u64> = (0..2)
                .flat_map(|p| (0..N).map(move |i| stamp(p, i)))
                .collect();
            assert_eq!(all, want, "every message exactly once");
        })
    });
}

#[test]
fn shareable_queue_kill_producers_mid_put_loses_nothing_acknowledged() {
    watchdog(LIMIT, "shareable_kill_producers", || {
        assert_no_leaks(|| {
            let q = ShareableQueue::<Msg256>::with_capacity(16).unwrap();
            let acked = RawArray::<u64>::new(2).unwrap();
            let mut next = [0u64; 2];
            for round in 0..iters() {
                let mut kids: Vec<_> = (0..2u32)
                    .map(|p| {
                        let (q, acked) = (q.clone(), acked.clone());
                        let start = next[p as usize];
                        // SAFETY: no other thread of this process holds a lock that the child takes.
                        fork(unsafe { ForkPermit::new() }, move || {
                            let mut i = start;
                            loop {
                                // Both forms: a copy, and a loan filled word by word.
                                if i % 3 == 0 {
                                    q.put(&[stamp(p, i); 32]).unwrap();
                                } else {
                                    q.put_with(|s| {
                                        for w in s.iter_mut() {
                                            *w = stamp(p, i);
                                        }
                                    })
                                    .unwrap();
                                }
                                acked.set(p as usize, i + 1).unwrap();
                                i += 1;
                            }
                        })
                    })
                    .collect();
                let until =
                    Instant::now() + Duration::from_micros(300 + u64::from(round % 7) * 200);
                let mut seen = [Vec::new(), Vec::new()];
                let mut take = |m: &Msg256| {
                    let s = untorn(m);
                    seen[(s >> 48) as usize].push(s & 0xffff_ffff_ffff);
                };
                while Instant::now() < until {
                    let _ = q.try_get_with(&mut take);
                }
                for k in &mut kids {
                    assert_eq!(k.kill(), Err(9));
                }
                while q.try_get_with(&mut take).is_ok() {}
                for p in 0..2 {
                    let a = acked.get(p).unwrap();
                    let s = &seen[p];
                    // In order, no duplicates, every acknowledged put delivered; at most one
                    // extra (put returned, killed before recording the acknowledgement).
                    let want: Vec<u64> = (next[p]..next[p] + s.len() as u64).collect();
                    assert_eq!(s, &want, "producer {p} round {round}");
                    assert!(next[p] + s.len() as u64 >= a);
                    assert!(next[p] + s.len() as u64 <= a + 1);
                    next[p] += s.len() as u64;
                }
            }
            assert!(next.iter().sum::<u64>() > 0, "producers never got to put");
            q.put(&[3; 32]).unwrap();
            assert_eq!(q.get().unwrap(), [3; 32]);
        })
    });
}

#[test]
fn shareable_queue_kill_consumers_mid_get_leaves_messages_to_others() {
    watchdog(LIMIT, "shareable_kill_consumers", || {
        assert_no_leaks(|| {
            let q = ShareableQueue::<Msg256>::with_capacity(32).unwrap();
            let taken = RawArray::<u64>::new(1 << 16).unwrap();
            let mut next = 0u64;
            let mut delivered = std::collections::BTreeSet::new();
            for round in 0..iters() {
                for _ in 0..32 {
                    if q.try_put(&[next; 32]).is_ok() {
                        next += 1;
                    }
                }
                let (q2, t2) = (q.clone(), taken.clone());
                // SAFETY: no other thread of this process holds a lock that the child takes.
                let mut child = fork(unsafe { ForkPermit::new() }, move || {
                    loop {
                        let got = if round % 2 == 0 {
                            q2.get_with(untorn)
                        } else {
                            q2.get().map(|m| untorn(&m))
                        };
                        if let Ok(v) = got {
                            t2.set((v % (1 << 16)) as usize, v + 1).unwrap();
                        }
                    }
                });
                let start = Instant::now();
                while q.len() > 16 && start.elapsed() < Duration::from_secs(5) {
                    std::hint::spin_loop();
                }
                std::thread::sleep(Duration::from_micros(u64::from(round % 5) * 50));
                assert_eq!(child.kill(), Err(9));
                while let Ok(v) = q.try_get_with(untorn) {
                    assert!(delivered.insert(v), "{v} delivered twice");
                }
                for v in 0..next {
                    if taken.get((v % (1 << 16)) as usize).unwrap() == v + 1 {
                        delivered.insert(v);
                    }
                }
            }
            let by_children = (0..next)
                .filter(|&v| taken.get((v % (1 << 16)) as usize).unwrap() == v + 1)
                .count();
            assert!(by_children > 0, "the consumers never took anything");
            let missing = (0..next).filter(|v| !delivered.contains(v)).count();
            assert!(missing <= iters() as usize, "{missing} lost");
        })
    });
}

fn untorn_big(m: &[u64; 1024]) -> u64 {
    assert!(m.iter().all(|&w| w == m[0]), "torn message");
    m[0]
}

/// Whether `ready` is readable within `timeout`.
fn readable(ready: &shmproc::QueueReadiness, timeout: Duration) -> bool {
    use shmproc::connection::{Waitable, wait};
    !wait(&[Waitable::fd(ready)], Some(timeout))
        .unwrap()
        .is_empty()
}

/// Issue 18: a queue's readiness descriptor becomes readable when another process puts (and
/// when the queue is closed), stays quiet after `clear` while the queue is empty, and its
/// eventfd and thread go away with it.
#[test]
fn queue_readiness_signals_a_put_from_another_process_and_close() {
    watchdog(LIMIT, "queue_readiness", || {
        assert_no_leaks(|| {
            let q = JoinableQueue::<u32>::new().unwrap();
            let ready = q.readiness().unwrap();
            assert!(!readable(&ready, Duration::from_millis(20)));
            let q2 = q.clone();
            // SAFETY: no other thread of this process holds a lock the child takes (the
            // readiness thread only sleeps on the queue's futex).
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                std::thread::sleep(Duration::from_millis(20));
                q2.put(&7).unwrap();
                0
            });
            assert!(readable(&ready, Duration::from_secs(30)));
            ready.clear();
            assert_eq!(q.try_get().unwrap(), 7);
            q.task_done().unwrap();
            assert!(matches!(q.try_get(), Err(Error::Empty)));
            assert_eq!(child.wait(), Ok(0));
            // The watcher, re-armed by `clear` before the get, may have signalled again for
            // the value then still there; cleared once the queue is empty, it stays quiet.
            ready.clear();
            assert!(!readable(&ready, Duration::from_millis(20)));
            // A put after `clear` signals again, even from this process.
            q.put(&8).unwrap();
            assert!(readable(&ready, Duration::from_secs(30)));
            ready.clear();
            assert_eq!(q.get().unwrap(), 8);
            q.task_done().unwrap();
            q.close();
            assert!(readable(&ready, Duration::from_secs(30)));
            drop(ready);
        });
    });
}

/// Issue 18: a consumer blocked in `get` still gets a value while a readiness watcher
/// sleeps on the same queue (the watcher passes the put's wake-up on).
#[test]
fn queue_readiness_does_not_starve_a_blocked_consumer() {
    watchdog(LIMIT, "queue_readiness_consumer", || {
        assert_no_leaks(|| {
            let q = Queue::<u32>::new().unwrap();
            let ready = q.readiness().unwrap();
            let q2 = q.clone();
            let consumer = std::thread::spawn(move || q2.get().unwrap());
            std::thread::sleep(Duration::from_millis(20));
            q.put(&9).unwrap();
            assert_eq!(consumer.join().unwrap(), 9);
            // The watcher saw the value too (or it was taken first): either way no value is
            // left behind and the watcher is still armed for the next.
            ready.clear();
            q.put(&10).unwrap();
            assert!(readable(&ready, Duration::from_secs(30)));
            assert_eq!(q.try_get().unwrap(), 10);
        });
    });
}

/// Readiness objects made and dropped, many at a time on one queue, while a producer process
/// floods it and a consumer thread drains it: every drop returns, every live one signals, and
/// no value is lost or duplicated.
#[test]
fn queue_readiness_drop_while_a_producer_floods_with_many_watchers() {
    watchdog(Duration::from_secs(10), "queue_readiness_flood", || {
        assert_no_leaks(|| {
            const N: u32 = 20_000;
            let q = Queue::<u32>::with_capacity(64).unwrap();
            let q2 = q.clone();
            // SAFETY: the child only puts (no lock of another thread of this process).
            let mut producer = fork(unsafe { ForkPermit::new() }, move || {
                for i in 0..N {
                    q2.put(&i).unwrap();
                }
                0
            });
            let q3 = q.clone();
            let consumer = std::thread::spawn(move || {
                let mut next = 0u32;
                while next < N {
                    let v = q3.get_timeout(Duration::from_secs(5)).unwrap();
                    assert_eq!(v, next, "lost or duplicated value");
                    next += 1;
                }
            });
            let mut rng = shmproc_tests::Rng::new(18);
            let mut live: Vec<shmproc::QueueReadiness> = Vec::new();
            for _ in 0..200 {
                if live.len() < 8 && rng.below(2) == 0 {
                    live.push(q.readiness().unwrap());
                } else if !live.is_empty() {
                    let i = rng.below(live.len() as u64) as usize;
                    drop(live.swap_remove(i));
                }
                if let Some(r) = live.first() {
                    r.clear();
                }
            }
            assert_eq!(producer.wait(), Ok(0));
            consumer.join().unwrap();
            // The queue is empty now; every live watcher still signals the next put.
            for r in &live {
                r.clear();
            }
            q.put(&1).unwrap();
            for r in &live {
                assert!(
                    readable(r, Duration::from_secs(5)),
                    "a watcher missed a put"
                );
            }
            assert_eq!(q.try_get().unwrap(), 1);
            drop(live);
        });
    });
}

/// A consumer that never drains: each `clear` makes the descriptor readable again while a
/// value waits (nothing is missed), a producer blocked on the full queue is not disturbed,
/// and dropping the readiness returns.
#[test]
fn queue_readiness_with_a_consumer_that_never_drains() {
    watchdog(Duration::from_secs(10), "queue_readiness_undrained", || {
        assert_no_leaks(|| {
            let q = Queue::<u32>::with_capacity(2).unwrap();
            let readies: Vec<_> = (0..4).map(|_| q.readiness().unwrap()).collect();
            let q2 = q.clone();
            let producer = std::thread::spawn(move || {
                for i in 0..3 {
                    q2.put(&i).unwrap();
                }
            });
            for _ in 0..100 {
                for r in &readies {
                    assert!(readable(r, Duration::from_secs(5)));
                    r.clear();
                }
            }
            // The producer's third put still waits: the watchers took nothing.
            assert_eq!(q.len(), 2);
            assert!(!producer.is_finished());
            drop(readies);
            assert_eq!(q.get().unwrap(), 0);
            producer.join().unwrap();
            assert_eq!((q.get().unwrap(), q.get().unwrap()), (1, 2));
        });
    });
}

fn readiness_fork_target(_: ()) {}

/// A process that is single-threaded but for a queue readiness watcher cannot use the `Fork`
/// start method while the readiness exists, and can again once it is dropped.
#[test]
fn queue_readiness_refuses_fork_while_it_exists() {
    watchdog(Duration::from_secs(10), "queue_readiness_fork", || {
        let q = Queue::<u32>::new().unwrap();
        // SAFETY: the child only starts processes of its own (no lock of another thread).
        let mut child = fork(unsafe { ForkPermit::new() }, move || {
            let ready = q.readiness().unwrap();
            match shmproc::Process::new(readiness_fork_target, ())
                .start_method(shmproc::StartMethod::Fork)
                .start()
            {
                Err(Error::ForkWhileThreaded { threads }) if threads >= 2 => {}
                _ => return 1,
            }
            drop(ready);
            match shmproc::Process::new(readiness_fork_target, ())
                .start_method(shmproc::StartMethod::Fork)
                .start()
            {
                Ok(p) => match p.join() {
                    Ok(_) => 0,
                    Err(_) => 3,
                },
                Err(_) => 2,
            }
        });
        assert_eq!(child.wait(), Ok(0));
    });
}

/// Many armed readiness watchers and two consumers blocked in `get` (one in another process)
/// on one queue: two puts reach both consumers (every watcher woken passes the wake-up on).
#[test]
fn queue_readiness_many_watchers_do_not_swallow_wakeups() {
    watchdog(
        Duration::from_secs(10),
        "queue_readiness_many_watchers",
        || {
            assert_no_leaks(|| {
                let q = Queue::<u32>::new().unwrap();
                let q2 = q.clone();
                // SAFETY: no other thread exists yet that holds a lock the child takes.
                let mut remote = fork(unsafe { ForkPermit::new() }, move || {
                    match q2.get_timeout(Duration::from_secs(5)) {
                        Ok(v) if v < 2 => 0,
                        _ => 1,
                    }
                });
                let readies: Vec<_> = (0..6).map(|_| q.readiness().unwrap()).collect();
                let q3 = q.clone();
                let local = std::thread::spawn(move || q3.get_timeout(Duration::from_secs(5)));
                std::thread::sleep(Duration::from_millis(50));
                q.put(&0).unwrap();
                q.put(&1).unwrap();
                assert!(local.join().unwrap().unwrap() < 2);
                assert_eq!(remote.wait(), Ok(0));
                // The consumers may have taken both before a watcher looked (then it need not
                // signal); every watcher still signals the next put.
                for r in &readies {
                    r.clear();
                }
                q.put(&2).unwrap();
                for r in &readies {
                    assert!(
                        readable(r, Duration::from_secs(5)),
                        "a watcher missed a put"
                    );
                }
                assert_eq!(q.try_get().unwrap(), 2);
                drop(readies);
            });
        },
    );
}

/// Blocking gets and puts behind a party busy in its loaned slot sleep until it finishes and
/// then go on (they are woken by its release or publish), while the try and timed forms beside
/// it return: `Empty`/`Full` and `Timeout`, never a spin past their deadline.
#[test]
fn shareable_waiters_behind_a_busy_loan_are_woken_when_it_finishes() {
    watchdog(LIMIT, "busy loan", || {
        for reader in [true, false] {
            let q = ShareableQueue::<[u64; 8]>::with_capacity(4).unwrap();
            if reader {
                q.put(&[1; 8]).unwrap();
                q.put(&[2; 8]).unwrap();
            }
            let inside = std::sync::atomic::AtomicBool::new(false);
            let release = std::sync::atomic::AtomicBool::new(false);
            let hold = || {
                inside.store(true, std::sync::atomic::Ordering::SeqCst);
                while !release.load(std::sync::atomic::Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            };
            std::thread::scope(|s| {
                let holder = s.spawn(|| {
                    if reader {
                        q.get_with(|v| {
                            hold();
                            v[0]
                        })
                        .unwrap()
                    } else {
                        q.put_with(|v| {
                            hold();
                            v.fill(1);
                        })
                        .unwrap();
                        1
                    }
                });
                while !inside.load(std::sync::atomic::Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if reader {
                    assert!(matches!(q.try_get(), Err(Error::Empty)));
                    assert!(matches!(
                        q.get_timeout(Duration::from_millis(20)),
                        Err(Error::Timeout)
                    ));
                } else {
                    assert!(matches!(q.try_put(&[9; 8]), Err(Error::Full)));
                    assert!(matches!(
                        q.put_timeout(&[9; 8], Duration::from_millis(20)),
                        Err(Error::Timeout)
                    ));
                }
                let waiter = s.spawn(|| {
                    if reader {
                        q.get().unwrap()[0]
                    } else {
                        q.put(&[2; 8]).unwrap();
                        2
                    }
                });
                std::thread::sleep(Duration::from_millis(30));
                release.store(true, std::sync::atomic::Ordering::SeqCst);
                assert_eq!(holder.join().unwrap(), 1);
                assert_eq!(waiter.join().unwrap(), 2);
            });
            if !reader {
                assert_eq!(q.get().unwrap(), [1; 8]);
                assert_eq!(q.get().unwrap(), [2; 8]);
            }
            assert!(q.is_empty());
        }
    });
}
