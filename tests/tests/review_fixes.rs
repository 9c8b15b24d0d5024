//! Adversarial tests: joinable task counting inside the slot claim, items at the slot's edge
//! (the slot-or-spill encoder), and producers killed in a loop of joinable puts.

use shmproc::testing::{ForkPermit, fork, watchdog};
use shmproc::{Error, JoinableQueue, Queue};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

/// Two producer and two consumer processes on a joinable queue: `join` returns only once
/// every item was handed to a consumer and marked done (each consumer records an item before
/// its `task_done`, so at `join` the record holds exactly every item), and one more
/// `task_done` is refused.
#[test]
fn joinable_join_waits_for_every_task_across_processes() {
    watchdog(LIMIT, "joinable_mpmc", || {
        const N: u64 = 3_000;
        let q = JoinableQueue::<(u64, u64)>::with_capacity(8).unwrap();
        let done = Queue::<(u64, u64)>::with_capacity(4 * N as usize).unwrap();
        let mut kids = Vec::new();
        for _ in 0..2 {
            let (q, done) = (q.clone(), done.clone());
            // SAFETY: no other thread of this process holds a lock that the child takes.
            kids.push(fork(unsafe { ForkPermit::new() }, move || {
                loop {
                    match q.get() {
                        Ok(m) => {
                            done.put(&m).unwrap();
                            q.task_done().unwrap();
                        }
                        Err(Error::Closed) => return 0,
                        Err(e) => panic!("{e}"),
                    }
                }
            }));
        }
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
        for k in &mut kids[2..] {
            assert_eq!(k.wait(), Ok(0));
        }
        q.join().unwrap();
        // Every item was recorded before its task_done: the record is complete at join.
        let mut all = Vec::new();
        while let Ok(m) = done.try_get() {
            all.push(m);
        }
        all.sort_unstable();
        let want: Vec<(u64, u64)> = (0..2).flat_map(|p| (0..N).map(move |i| (p, i))).collect();
        assert_eq!(
            all.len(),
            want.len(),
            "join returned before every task was done"
        );
        assert_eq!(all, want);
        assert!(matches!(q.task_done(), Err(Error::TaskDoneTooMany)));
        q.close();
        for k in &mut kids[..2] {
            assert_eq!(k.wait(), Ok(0));
        }
    });
}

/// Producers SIGKILLed in a loop of joinable puts: every delivered item is marked done; then
/// at most one task per killed producer may be left counted without its message (the window
/// between the count and the publish, which the ring documents), and once those are marked
/// done `join` returns and the queue works.
#[test]
fn joinable_producers_killed_mid_put_leave_at_most_one_task_each() {
    watchdog(LIMIT, "joinable_kill", || {
        let q = JoinableQueue::<(u64, Vec<u8>)>::with_capacity(4).unwrap();
        let mut killed = 0u64;
        let mut got = 0u64;
        for round in 0..30u64 {
            let mut kids: Vec<_> = (0..2u64)
                .map(|p| {
                    let q = q.clone();
                    // SAFETY: no other thread of this process holds a lock that the child takes.
                    fork(unsafe { ForkPermit::new() }, move || {
                        let mut i = 0u64;
                        loop {
                            let body = vec![p as u8; if i.is_multiple_of(5) { 2000 } else { 16 }];
                            q.put(&(p, body)).unwrap();
                            i += 1;
                        }
                    })
                })
                .collect();
            let until = Instant::now() + Duration::from_micros(200 + (round % 7) * 300);
            while Instant::now() < until {
                if let Ok((p, body)) = q.try_get() {
                    assert!(body.iter().all(|&b| b == p as u8), "torn message");
                    q.task_done().unwrap();
                    got += 1;
                }
            }
            for k in &mut kids {
                assert_eq!(k.kill(), Err(9));
                killed += 1;
            }
            while let Ok((p, body)) = q.try_get() {
                assert!(body.iter().all(|&b| b == p as u8), "torn message");
                q.task_done().unwrap();
                got += 1;
            }
        }
        assert!(got > 0, "producers never got to put");
        // Tasks counted without a message: at most one per killed producer.
        let mut extra = 0u64;
        loop {
            match q.task_done() {
                Ok(()) => extra += 1,
                Err(Error::TaskDoneTooMany) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(
                extra <= killed,
                "more orphan tasks ({extra}) than kills ({killed})"
            );
        }
        q.join_timeout(Duration::from_secs(5)).unwrap();
        q.put(&(7, vec![7])).unwrap();
        assert_eq!(q.get().unwrap().0, 7);
        q.task_done().unwrap();
        q.join_timeout(Duration::from_secs(5)).unwrap();
    });
}

/// A `Vec<u8>` of `n` bytes encodes as its length's varint then the bytes: around the
/// slot's inline size (304 bytes) every size goes in and out intact, in order, on a plain
/// and on a joinable queue, inside one process and to another.
#[test]
fn items_at_and_around_the_slot_size_round_trip() {
    watchdog(LIMIT, "slot_edge", || {
        let sizes: Vec<usize> = (280..=330)
            .chain([0, 1, 126, 127, 128, 4096, 1 << 20, 4 << 20])
            .collect();
        let body = |n: usize| -> Vec<u8> { (0..n).map(|i| (i * 31 + n) as u8).collect() };
        let q = Queue::<Vec<u8>>::with_capacity(4).unwrap();
        let j = JoinableQueue::<Vec<u8>>::with_capacity(4).unwrap();
        for &n in &sizes {
            q.put(&body(n)).unwrap();
            assert_eq!(q.get().unwrap(), body(n), "queue, size {n}");
            j.put(&body(n)).unwrap();
            assert_eq!(j.get().unwrap(), body(n), "joinable, size {n}");
            j.task_done().unwrap();
        }
        j.join_timeout(Duration::from_secs(5)).unwrap();
        let (q2, sz) = (q.clone(), sizes.clone());
        // SAFETY: no other thread of this process holds a lock that the child takes.
        let mut child = fork(unsafe { ForkPermit::new() }, move || {
            for &n in &sz {
                q2.put(&body(n)).unwrap();
            }
            0
        });
        for &n in &sizes {
            assert_eq!(q.get().unwrap(), body(n), "across processes, size {n}");
        }
        assert_eq!(child.wait(), Ok(0));
    });
}

/// A value whose `Serialize` panics after writing some bytes, small or past the slot.
#[derive(Debug, serde::Deserialize)]
struct Bomb {
    len: usize,
}

impl serde::Serialize for Bomb {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(self.len + 1)?;
        for _ in 0..self.len {
            t.serialize_element(&0xabu8)?;
        }
        panic!("boom");
    }
}

/// A joinable put whose encoding panics, in the slot or after spilling, counts no task and
/// leaves no slot claimed: `join` returns at once and the queue keeps working in order.
#[test]
fn a_panicking_serialize_counts_no_task_and_frees_its_slot() {
    watchdog(LIMIT, "bomb", || {
        let j = JoinableQueue::<Bomb>::with_capacity(2).unwrap();
        for len in [0usize, 10, 303, 304, 305, 5000] {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| j.put(&Bomb { len })));
            assert!(r.is_err(), "the serializer panics");
            assert!(j.is_empty(), "len {len}: the slot was left published");
            j.join_timeout(Duration::from_millis(0))
                .unwrap_or_else(|e| panic!("len {len}: a task was counted: {e}"));
        }
        // Both slots still usable (capacity 2), more times than the capacity.
        let v = JoinableQueue::<Vec<u8>>::with_capacity(2).unwrap();
        for round in 0..5u8 {
            v.put(&vec![round; 400]).unwrap();
            v.put(&vec![round; 4]).unwrap();
            assert_eq!(v.get().unwrap(), vec![round; 400]);
            assert_eq!(v.get().unwrap(), vec![round; 4]);
            v.task_done().unwrap();
            v.task_done().unwrap();
        }
        assert!(matches!(v.task_done(), Err(Error::TaskDoneTooMany)));
    });
}

/// The manager's calls with client and server on one CPU (the polling window skipped when
/// the other end last sent on this CPU): a served dict, an attached queue and a joinable
/// queue fed by a forked client, a list appended to by two threads; counts exact, no
/// livelock. The test re-runs itself under `taskset -c 0` so the server inherits the
/// affinity; the outer run is the watchdog.
#[test]
fn manager_calls_complete_with_both_ends_on_one_cpu() {
    const INNER: &str = "SHMPROC_REVIEW_PINNED";
    if std::env::var_os(INNER).is_none() {
        let exe = std::env::current_exe().unwrap();
        let mut child = std::process::Command::new("taskset")
            .args(["-c", "0"])
            .arg(&exe)
            .args([
                "--exact",
                "manager_calls_complete_with_both_ends_on_one_cpu",
                "--test-threads",
                "1",
                "--nocapture",
            ])
            .env(INNER, "1")
            .spawn()
            .unwrap();
        let until = Instant::now() + LIMIT;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                assert!(st.success(), "the pinned run failed: {st}");
                return;
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the pinned run did not finish in {LIMIT:?}: a livelock");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(
        status.lines().any(|l| l == "Cpus_allowed_list:\t0"),
        "not pinned: {status}"
    );
    use shmproc::Manager;
    let m = Manager::start().unwrap();
    let d = m.dict::<u32, u32>().unwrap();
    for i in 0..2000u32 {
        d.insert(i, i).unwrap();
    }
    assert_eq!(d.len().unwrap(), 2000);
    let l = m.list::<u32>().unwrap();
    std::thread::scope(|s| {
        for t in 0..2u32 {
            let l = &l;
            s.spawn(move || {
                for i in 0..1000u32 {
                    l.push(t * 1000 + i).unwrap();
                }
            });
        }
    });
    assert_eq!(l.len().unwrap(), 2000);
    let q = m.queue_with_capacity::<u64>(4).unwrap();
    let jq = m.joinable_queue::<u64>().unwrap();
    let (q2, jq2) = (q.clone(), jq.clone());
    // SAFETY: the list threads ended; the harness runs one test at a time here.
    let mut child = fork(unsafe { ForkPermit::new() }, move || {
        for i in 0..3000u64 {
            q2.put(&i).unwrap();
            let v = jq2.get().unwrap();
            assert_eq!(v, i);
            jq2.task_done().unwrap();
        }
        0
    });
    for i in 0..3000u64 {
        jq.put(&i).unwrap();
        assert_eq!(q.get().unwrap(), i);
    }
    jq.join().unwrap();
    assert_eq!(child.wait(), Ok(0));
    assert!(matches!(jq.task_done(), Err(Error::TaskDoneTooMany)));
    // A served lock and an attached condition handed between two processes on the CPU: a
    // counter bumped non-atomically under each ends exact.
    let lock = m.lock().unwrap();
    let cond = m.condition().unwrap();
    let counts = shmproc::RawArray::<u64>::new(2).unwrap();
    const BUMPS: u64 = 400;
    let mut kids: Vec<_> = (0..2)
        .map(|_| {
            let (lock, cond, counts) = (lock.clone(), cond.clone(), counts.clone());
            // SAFETY: this process's other threads ended; the harness runs one test here.
            fork(unsafe { ForkPermit::new() }, move || {
                for _ in 0..BUMPS {
                    lock.acquire().unwrap();
                    let v = counts.get(0).unwrap();
                    std::thread::yield_now();
                    counts.set(0, v + 1).unwrap();
                    lock.release().unwrap();
                    cond.acquire().unwrap();
                    let v = counts.get(1).unwrap();
                    std::thread::yield_now();
                    counts.set(1, v + 1).unwrap();
                    cond.notify_all().unwrap();
                    cond.release().unwrap();
                }
                0
            })
        })
        .collect();
    for k in &mut kids {
        assert_eq!(k.wait(), Ok(0));
    }
    assert_eq!(
        counts.get(0).unwrap(),
        2 * BUMPS,
        "the served lock let two in"
    );
    assert_eq!(
        counts.get(1).unwrap(),
        2 * BUMPS,
        "the condition's lock let two in"
    );
    drop((d, l, q, jq, lock, cond));
    m.shutdown().unwrap();
}

/// Served gets on a queue the server holds in its in-heap form (a TCP client): remote
/// getters SIGKILLed while they wait, among two live getters, while items keep coming. No
/// item is delivered twice, each live getter sees the items in increasing order (one
/// producer, a FIFO), and none is lost (each getter was killed before the items were put).
#[test]
fn served_getters_killed_among_live_ones_neither_duplicate_nor_reorder() {
    watchdog(LIMIT, "served leave", || {
        let m = shmproc::Manager::builder()
            .address(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .authkey(&b"review leave"[..])
            .start()
            .unwrap();
        for cap in [0usize, 2] {
            let q = if cap == 0 {
                m.queue::<u32>().unwrap()
            } else {
                m.queue_with_capacity::<u32>(cap).unwrap()
            };
            assert!(!q.is_attached());
            let out = Queue::<Vec<u32>>::new().unwrap();
            const STOP: u32 = u32::MAX;
            let mut live = Vec::new();
            for _ in 0..2 {
                let (q, out) = (q.clone(), out.clone());
                // SAFETY: no other thread of this process holds a lock that the child takes.
                live.push(fork(unsafe { ForkPermit::new() }, move || {
                    let mut got = Vec::new();
                    loop {
                        let v = q.get().unwrap();
                        if v == STOP {
                            break;
                        }
                        got.push(v);
                    }
                    out.put(&got).unwrap();
                    0
                }));
            }
            let mut next = 0u32;
            let mut kills = 0u32;
            for round in 0..12u32 {
                // The live getters took the last round's items: the doomed ones find none.
                while q.len().unwrap() > 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let doomed: Vec<_> = (0..2)
                    .map(|_| {
                        let q = q.clone();
                        // SAFETY: no other thread of this process holds a lock that the child takes.
                        fork(unsafe { ForkPermit::new() }, move || {
                            // Killed while this get waits: the queue is empty until then.
                            i32::from(q.get().is_ok())
                        })
                    })
                    .collect();
                std::thread::sleep(Duration::from_millis(20 + u64::from(round % 4) * 15));
                for mut k in doomed {
                    assert_eq!(k.kill(), Err(9));
                    kills += 1;
                }
                // Right after the kills: the server may still be serving the dead getters'
                // waits when these arrive.
                for _ in 0..20 {
                    q.put(&next).unwrap();
                    next += 1;
                }
            }
            q.put(&STOP).unwrap();
            q.put(&STOP).unwrap();
            let mut all = Vec::new();
            for _ in 0..2 {
                let got = out.get().unwrap();
                assert!(
                    got.windows(2).all(|w| w[0] < w[1]),
                    "capacity {cap}: a live getter saw items out of order: {got:?}"
                );
                all.extend(got);
            }
            for mut k in live {
                assert_eq!(k.wait(), Ok(0));
            }
            while let Ok(v) = q.try_get() {
                all.push(v);
            }
            all.sort_unstable();
            let before = all.len();
            all.dedup();
            assert_eq!(before, all.len(), "capacity {cap}: an item delivered twice");
            let want: Vec<u32> = (0..next).collect();
            assert_eq!(
                all, want,
                "capacity {cap}: items lost to getters killed before the puts ({kills} kills)"
            );
        }
        m.shutdown().unwrap();
    });
}

/// Whether `r` is how a stale proxy's call is refused: the connection to its server is gone
/// (`Disconnected`), or a server at the same address does not know its object (ids count
/// from a random base in each server process, so the new server's objects have others).
fn refused<T>(r: &Result<T, Error>) -> bool {
    matches!(
        r,
        Err(Error::Disconnected)
            | Err(Error::Remote {
                kind: shmproc::RemoteErrorKind::UnknownObject,
                ..
            })
    )
}

/// A proxy of a server stopped (or SIGKILLed) at a Unix path, when another process starts a
/// new server at that path and makes an object of the same kind (so the same object id):
/// the stale proxy, called from this process (whose client never saw the new server) and
/// from a forked child, is refused (see [`refused`]) and never reaches the new server's
/// object.
///
/// Bug seen while ids counted from 1 in every server (every run, stopped or killed first
/// server): all three stale inserts go through to the new server's dict (`Ok(None)` here,
/// `Ok` in the child, the new dict ends with 2 entries). `Held::client` compares the
/// proxy's epoch with the client's *before* the call, but the epoch only moves inside the
/// call: `Client::round_trip` finds the idle connection to the old server dead, the request
/// unread (`sent_unread`), and sends the already encoded request (with the old object id)
/// again on a fresh connection, whose greeting (`Client::greeted`) starts the new epoch,
/// too late. In a forked child the call goes through `forked_client`, a new `Client` of the
/// endpoint that never knew the old server. A fix: remember in each proxy the server
/// identity of its epoch (the greeting's answer), and have the connection used for the
/// request (fresh or pooled) carry the identity it greeted; refuse with `Disconnected` when
/// they differ, after `connect` and in the forked child's client alike.
#[test]
fn a_stale_proxy_never_reaches_a_new_servers_object_with_its_id() {
    watchdog(LIMIT, "stale proxy same id", || {
        let mut wrong = Vec::new();
        for kill in [false, true] {
            let path = std::env::temp_dir().join(format!(
                "shmproc-review-stale-{}-{kill}.sock",
                std::process::id()
            ));
            let _ = std::fs::remove_file(&path);
            let start = |path: &std::path::Path| {
                shmproc::Manager::builder()
                    .address(shmproc::connection::Address::Unix(path.to_path_buf()))
                    .authkey(&b"stale"[..])
                    .start()
                    .unwrap()
            };
            let first = start(&path);
            let stale = first.dict::<u8, u8>().unwrap();
            stale.insert(1, 1).unwrap();
            if kill {
                first.process().unwrap().kill().unwrap();
                let _ = std::fs::remove_file(&path);
            } else {
                first.shutdown().unwrap();
            }
            // The new server and its object, in another process.
            let ready = Queue::<u8>::new().unwrap();
            let check = Queue::<u8>::new().unwrap();
            let (r2, c2, p2) = (ready.clone(), check.clone(), path.clone());
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut host = fork(unsafe { ForkPermit::new() }, move || {
                let m = start(&p2);
                let d = m.dict::<u8, u8>().unwrap();
                r2.put(&0).unwrap();
                c2.get().unwrap();
                let n = d.len().unwrap() as i32;
                drop(d);
                m.shutdown().unwrap();
                n
            });
            ready.get().unwrap();
            let s2 = stale.clone();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                let r = s2.insert(2, 2);
                if refused(&r) {
                    0
                } else if r.is_ok() {
                    1
                } else {
                    2
                }
            });
            let child_call = child.wait();
            let parent_call = stale.insert(3, 3);
            check.put(&0).unwrap();
            let in_new = host.wait();
            drop(stale);
            let _ = first.shutdown();
            let _ = std::fs::remove_file(&path);
            if !refused(&parent_call) {
                wrong.push(format!(
                    "kill {kill}: this process's stale call: {parent_call:?}"
                ));
            }
            if child_call != Ok(0) {
                wrong.push(format!(
                    "kill {kill}: a forked child's stale call: {child_call:?} (1: went through)"
                ));
            }
            if in_new != Ok(0) {
                wrong.push(format!(
                    "kill {kill}: the new server's dict holds {in_new:?} stale inserts"
                ));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    });
}

/// A manager's joinable queue, attached (local client) and served (TCP client): two
/// producer and two consumer processes, `join` from this process returns once every item
/// was recorded by a consumer, and one `task_done` more than items is refused.
#[test]
fn managed_joinable_queue_join_is_exact_attached_and_served() {
    watchdog(LIMIT, "managed joinable", || {
        for tcp in [false, true] {
            let m = if tcp {
                shmproc::Manager::builder()
                    .address(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
                    .authkey(&b"review joinable"[..])
                    .start()
                    .unwrap()
            } else {
                shmproc::Manager::start().unwrap()
            };
            let q = m.joinable_queue::<(u64, u64)>().unwrap();
            assert_eq!(q.is_attached(), !tcp);
            const N: u64 = 300;
            let done = Queue::<(u64, u64)>::with_capacity(4 * N as usize).unwrap();
            let mut kids = Vec::new();
            for _ in 0..2 {
                let (q, done) = (q.clone(), done.clone());
                // SAFETY: no other thread of this process holds a lock that the child takes.
                kids.push(fork(unsafe { ForkPermit::new() }, move || {
                    loop {
                        match q.get() {
                            Ok((u64::MAX, _)) => return 0,
                            Ok(v) => {
                                done.put(&v).unwrap();
                                q.task_done().unwrap();
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                }));
            }
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
            for k in &mut kids[2..] {
                assert_eq!(k.wait(), Ok(0));
            }
            q.join().unwrap();
            let mut all = Vec::new();
            while let Ok(v) = done.try_get() {
                all.push(v);
            }
            all.sort_unstable();
            let want: Vec<(u64, u64)> = (0..2).flat_map(|p| (0..N).map(move |i| (p, i))).collect();
            assert_eq!(
                all, want,
                "tcp {tcp}: join returned before every task was done"
            );
            let extra = q.task_done();
            assert!(
                matches!(extra, Err(Error::TaskDoneTooMany)),
                "tcp {tcp}: one task_done too many: {extra:?}"
            );
            // Stop the consumers (their stop items are never marked done).
            q.put(&(u64::MAX, 0)).unwrap();
            q.put(&(u64::MAX, 0)).unwrap();
            for k in &mut kids[..2] {
                assert_eq!(k.wait(), Ok(0));
            }
            drop(q);
            m.shutdown().unwrap();
        }
    });
}

/// Items around a slot's size and large ones through a manager's queue, attached (local)
/// and served (TCP), from a forked producer into a capacity-1 queue whose consumer lags, so
/// puts wait across several slices with their encoding kept: every item intact, in order.
#[test]
fn managed_queue_items_around_the_slot_size_wait_intact() {
    watchdog(LIMIT, "managed slot edge", || {
        for tcp in [false, true] {
            let m = if tcp {
                shmproc::Manager::builder()
                    .address(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
                    .authkey(&b"review slot"[..])
                    .start()
                    .unwrap()
            } else {
                shmproc::Manager::start().unwrap()
            };
            let q = m.queue_with_capacity::<Vec<u8>>(1).unwrap();
            assert_eq!(q.is_attached(), !tcp);
            let sizes: Vec<usize> = (290..=320).chain([0, 4096, 1 << 20, 3 << 20]).collect();
            let body = |n: usize| -> Vec<u8> { (0..n).map(|i| (i * 7 + n) as u8).collect() };
            let (q2, sz) = (q.clone(), sizes.clone());
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                for &n in &sz {
                    q2.put(&body(n)).unwrap();
                }
                0
            });
            for (k, &n) in sizes.iter().enumerate() {
                if k % 8 == 0 {
                    // Lag: the producer's put waits on the full queue meanwhile.
                    std::thread::sleep(Duration::from_millis(60));
                }
                let got = q.get().unwrap();
                assert!(
                    got == body(n),
                    "tcp {tcp}: size {n} came back as {} bytes",
                    got.len()
                );
            }
            assert_eq!(child.wait(), Ok(0));
            drop(q);
            m.shutdown().unwrap();
        }
    });
}

/// Joinable puts that fail (a full queue's `try_put` and timed `put`, a closed queue's put,
/// small and large items) count no task: after the items that went in are done, `join`
/// returns at once and one more `task_done` is refused.
#[test]
fn failed_joinable_puts_count_no_task() {
    watchdog(LIMIT, "failed joinable puts", || {
        let j = JoinableQueue::<Vec<u8>>::with_capacity(1).unwrap();
        j.put(&vec![1; 8]).unwrap();
        for n in [8usize, 304, 305, 100_000] {
            assert!(
                matches!(j.try_put(&vec![2; n]), Err(Error::Full)),
                "try_put {n}"
            );
            let r = j.put_timeout(&vec![3; n], Duration::from_millis(5));
            assert!(
                matches!(r, Err(Error::Full | Error::Timeout)),
                "put_timeout {n}: {r:?}"
            );
        }
        assert_eq!(j.get().unwrap(), vec![1; 8]);
        j.task_done().unwrap();
        j.join_timeout(Duration::ZERO)
            .expect("a failed put counted a task");
        j.close();
        for n in [8usize, 100_000] {
            assert!(matches!(j.put(&vec![4; n]), Err(Error::Closed)));
        }
        j.join_timeout(Duration::ZERO)
            .expect("a put refused as closed counted a task");
        assert!(matches!(j.task_done(), Err(Error::TaskDoneTooMany)));
    });
}

/// A manager's joinable queue (attached and served): a put whose encoding panics, in the
/// slot or past it, counts no task and leaves the queue usable, so `join` returns at once.
#[test]
fn a_panicking_serialize_counts_no_task_in_a_managed_joinable_queue() {
    watchdog(LIMIT, "managed bomb", || {
        for tcp in [false, true] {
            let m = if tcp {
                shmproc::Manager::builder()
                    .address(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
                    .authkey(&b"review bomb"[..])
                    .start()
                    .unwrap()
            } else {
                shmproc::Manager::start().unwrap()
            };
            let j = m.joinable_queue::<Bomb>().unwrap();
            for len in [0usize, 303, 304, 305, 5000] {
                let r =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| j.put(&Bomb { len })));
                assert!(r.is_err(), "the serializer panics");
                assert!(
                    j.is_empty().unwrap(),
                    "tcp {tcp} len {len}: an item went in"
                );
                let joined = j.join_timeout(Duration::ZERO);
                assert!(
                    joined.is_ok(),
                    "tcp {tcp} len {len}: a task was counted: {joined:?}"
                );
            }
            let v = m.joinable_queue::<Vec<u8>>().unwrap();
            v.put(&vec![1; 400]).unwrap();
            assert_eq!(v.get().unwrap(), vec![1; 400]);
            v.task_done().unwrap();
            v.join_timeout(Duration::ZERO).unwrap();
            drop((j, v));
            m.shutdown().unwrap();
        }
    });
}

/// A forked child that inherited a proxy of a stopped server starts a new server at the same
/// path and makes an object of the same kind there (the same id), then drops the inherited
/// proxy: its own proxy's object must live on.
///
/// Bug seen (with `a_stale_proxy_never_reaches_a_new_servers_object_with_its_id`): the
/// inherited proxy's drop goes through the child's own client (`forked_client`), which only
/// knows the new server, and releases the child's reference to the new object of that id:
/// the live proxy's calls then fail (exit code 1 below) as its object is gone.
#[test]
fn a_stale_inherited_proxy_dropped_keeps_the_new_servers_object() {
    watchdog(LIMIT, "stale drop", || {
        let path = std::env::temp_dir().join(format!(
            "shmproc-review-stale-drop-{}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let start = |path: &std::path::Path| {
            shmproc::Manager::builder()
                .address(shmproc::connection::Address::Unix(path.to_path_buf()))
                .authkey(&b"stale drop"[..])
                .start()
                .unwrap()
        };
        let first = start(&path);
        let stale = first.dict::<u8, u8>().unwrap();
        stale.insert(1, 1).unwrap();
        first.shutdown().unwrap();
        let p2 = path.clone();
        // SAFETY: no other thread of this process holds a lock that the child takes.
        let mut child = fork(unsafe { ForkPermit::new() }, move || {
            let m = start(&p2);
            let mine = m.dict::<u8, u8>().unwrap();
            mine.insert(9, 9).unwrap();
            drop(stale);
            let code = match mine.get(&9) {
                Ok(Some(9)) => 0,
                Ok(_) => 2,
                Err(_) => 1,
            };
            drop(mine);
            let _ = m.shutdown();
            code
        });
        let ended = child.wait();
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            ended,
            Ok(0),
            "the child's own proxy after it dropped the stale one (1: object gone)"
        );
    });
}

/// As `a_stale_proxy_never_reaches_a_new_servers_object_with_its_id`, for a server on TCP
/// restarted at the same port by another process: this process's stale proxy must not
/// reach the new server's object of the same id.
///
/// Bug seen while ids counted from 1 in every server (every run): the first stale call
/// fails (`Disconnected`, its pooled TCP connection broke and a TCP call is never sent
/// again), but the second opens a fresh connection (`Client::tcp_round_trip` -> `connect`)
/// to the new server and its insert goes through (`Ok(None)`; the new dict ends with 1
/// entry). A TCP client has no server identity (only a local greeting's answer carries one,
/// `Client::greeted`), so no epoch ever moves. A fix: carry the identity in the remote
/// greeting's answer too and compare it with the proxy's as for a local server.
#[test]
fn a_stale_tcp_proxy_never_reaches_a_new_servers_object_with_its_id() {
    watchdog(LIMIT, "stale tcp proxy", || {
        let start = |addr: std::net::SocketAddr| {
            shmproc::Manager::builder()
                .address(addr)
                .authkey(&b"stale tcp"[..])
                .start()
        };
        let first = start(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let shmproc::connection::Address::Tcp(addr) = first.address() else {
            panic!("not a TCP address: {:?}", first.address());
        };
        let stale = first.dict::<u8, u8>().unwrap();
        stale.insert(1, 1).unwrap();
        first.shutdown().unwrap();
        let ready = Queue::<i32>::new().unwrap();
        let check = Queue::<u8>::new().unwrap();
        let (r2, c2) = (ready.clone(), check.clone());
        // SAFETY: no other thread of this process holds a lock that the child takes.
        let mut host = fork(unsafe { ForkPermit::new() }, move || {
            let Ok(m) = start(addr) else {
                r2.put(&1).unwrap();
                return 100;
            };
            let d = m.dict::<u8, u8>().unwrap();
            r2.put(&0).unwrap();
            c2.get().unwrap();
            let n = d.len().unwrap() as i32;
            drop(d);
            m.shutdown().unwrap();
            n
        });
        if ready.get().unwrap() != 0 {
            assert_eq!(host.wait(), Ok(100));
            eprintln!("the port was not free again; nothing checked");
            return;
        }
        // The first call finds the pooled connection broken; the second opens a fresh one.
        let call = stale.insert(3, 3);
        let again = stale.insert(4, 4);
        check.put(&0).unwrap();
        let in_new = host.wait();
        drop(stale);
        assert!(
            refused(&call) && refused(&again) && in_new == Ok(0),
            "stale calls {call:?}, {again:?}; the new server's dict holds {in_new:?} entries"
        );
    });
}

/// Sends a `Vec<u8>` queue's proxy and receives it as a `String` one, under one type name.
#[derive(Debug)]
struct Retype {
    bytes: Option<shmproc::manager::QueueProxy<Vec<u8>>>,
    string: Option<shmproc::manager::QueueProxy<String>>,
}

impl serde::Serialize for Retype {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.bytes.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Retype {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Retype {
            bytes: None,
            string: Option::deserialize(d)?,
        })
    }
}

/// Malformed items for the element type (bytes that are no UTF-8 `String`, small and past a
/// slot) reach a `String` proxy of a `Vec<u8>` queue through an untyped pipe: decoding them
/// errors (no panic, no garbage), attached (local) and served (TCP), and the queue keeps
/// working for its own type.
#[test]
fn malformed_items_for_the_element_type_error_on_decode() {
    watchdog(LIMIT, "malformed decode", || {
        for tcp in [false, true] {
            let m = if tcp {
                shmproc::Manager::builder()
                    .address(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
                    .authkey(&b"review malformed"[..])
                    .start()
                    .unwrap()
            } else {
                shmproc::Manager::start().unwrap()
            };
            let q = m.queue::<Vec<u8>>().unwrap();
            let (a, b) = shmproc::connection::pipe().unwrap();
            a.send(&Retype {
                bytes: Some(q.clone()),
                string: None,
            })
            .unwrap();
            let s = b.recv::<Retype>().unwrap().string.unwrap();
            for n in [2usize, 303, 304, 5000] {
                let mut bad = vec![0xffu8; n];
                bad[0] = 0xc3;
                q.put(&bad).unwrap();
                let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.get()));
                match got {
                    Ok(Err(e)) => eprintln!("tcp {tcp} {n}: {e}"),
                    Ok(Ok(v)) => panic!("tcp {tcp} {n}: decoded as {v:?}"),
                    Err(_) => panic!("tcp {tcp} {n}: decoding panicked"),
                }
                // The queue keeps working for its own type.
                q.put(&vec![1, 2, 3]).unwrap();
                let next = q.get().unwrap();
                if next != vec![1, 2, 3] {
                    // The malformed item was left in place: it comes out first, intact.
                    assert_eq!(next, bad, "tcp {tcp} {n}");
                    assert_eq!(q.get().unwrap(), vec![1, 2, 3]);
                }
            }
            drop((q, s));
            m.shutdown().unwrap();
        }
    });
}

/// A manager's attached joinable queue with producer clients SIGKILLed in a loop of puts:
/// every delivered item is marked done; at most one task per killed producer is left
/// counted without its message, and once those are marked done `join` returns.
#[test]
fn managed_joinable_producers_killed_mid_put_leave_at_most_one_task_each() {
    watchdog(LIMIT, "managed joinable kill", || {
        let m = shmproc::Manager::start().unwrap();
        let q = m.joinable_queue::<(u64, Vec<u8>)>().unwrap();
        assert!(q.is_attached());
        let mut killed = 0u64;
        let mut got = 0u64;
        for round in 0..20u64 {
            let mut kids: Vec<_> = (0..2u64)
                .map(|p| {
                    let q = q.clone();
                    // SAFETY: no other thread of this process holds a lock that the child takes.
                    fork(unsafe { ForkPermit::new() }, move || {
                        let mut i = 0u64;
                        loop {
                            let n = if i.is_multiple_of(5) { 2000 } else { 16 };
                            q.put(&(p, vec![p as u8; n])).unwrap();
                            i += 1;
                        }
                    })
                })
                .collect();
            let until = Instant::now() + Duration::from_millis(2 + round % 7);
            while Instant::now() < until {
                if let Ok((p, body)) = q.try_get() {
                    assert!(body.iter().all(|&b| b == p as u8), "torn message");
                    q.task_done().unwrap();
                    got += 1;
                }
            }
            for k in &mut kids {
                assert_eq!(k.kill(), Err(9));
                killed += 1;
            }
            while let Ok((p, body)) = q.try_get() {
                assert!(body.iter().all(|&b| b == p as u8), "torn message");
                q.task_done().unwrap();
                got += 1;
            }
        }
        assert!(got > 0, "producers never got to put");
        let mut extra = 0u64;
        loop {
            match q.task_done() {
                Ok(()) => extra += 1,
                Err(Error::TaskDoneTooMany) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(
                extra <= killed,
                "more orphan tasks ({extra}) than kills ({killed})"
            );
        }
        eprintln!("{got} items, {extra} orphan tasks, {killed} kills");
        q.join_timeout(Duration::from_secs(5)).unwrap();
        q.put(&(7, vec![7])).unwrap();
        assert_eq!(q.get().unwrap().0, 7);
        q.task_done().unwrap();
        q.join_timeout(Duration::from_secs(5)).unwrap();
        drop(q);
        m.shutdown().unwrap();
    });
}
