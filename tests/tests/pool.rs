//! Pool: CPython's pool behaviours, dying workers, terminate, forged ids, leaks.

use shmproc::testing::{assert_no_leaks, watchdog};
use shmproc::{Array, Callbacks, Connection, Error, Pool, Queue, RawArray, Segment, StartMethod};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

fn square(x: u64) -> u64 {
    x * x
}

fn mul(a: u64, b: u64) -> u64 {
    a * b
}

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(x % 7));
    x * x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn pid(_: ()) -> u32 {
    std::process::id()
}

fn boom(x: u64) -> u64 {
    if x == 3 {
        panic!("three is not allowed");
    }
    x
}

fn boom_on_threes(x: i32) -> i32 {
    if x % 3 == 0 {
        panic!("{x} is a multiple of three");
    }
    -x
}

fn abort_on(x: u64) -> u64 {
    if x == 5 {
        std::process::abort();
    }
    x + 1
}

/// Reports its pid through the array, then waits to be killed.
fn wait_to_be_killed((pids, slot): (RawArray<u64>, usize)) -> u64 {
    pids.set(slot, u64::from(std::process::id())).unwrap();
    std::thread::sleep(Duration::from_secs(60));
    0
}

#[test]
fn apply_map_chunksize_and_starmap() {
    watchdog(LIMIT, "apply_map", || {
        assert_no_leaks(|| {
            let pool = Pool::new(2).unwrap();
            assert_eq!(pool.apply(square, 10).unwrap(), 100);
            let want: Vec<u64> = (0..100).map(|x| x * x).collect();
            assert_eq!(pool.map(square, 0..100).unwrap(), want);
            for cs in [1, 3, 7, 100, 1000] {
                assert_eq!(pool.map_chunked(slow_square, 0..100, cs).unwrap(), want);
            }
            let pairs: Vec<(u64, u64)> = (0..20).map(|i| (i, i + 1)).collect();
            let got = pool.starmap(mul, pairs.clone()).unwrap();
            assert_eq!(got, pairs.iter().map(|(a, b)| a * b).collect::<Vec<_>>());
            pool.join().unwrap();
        });
    });
}

#[test]
fn empty_input_gives_empty_results() {
    watchdog(LIMIT, "empty", || {
        let pool = Pool::new(2).unwrap();
        assert_eq!(
            pool.map(square, Vec::<u64>::new()).unwrap(),
            Vec::<u64>::new()
        );
        assert_eq!(pool.imap(square, Vec::<u64>::new()).unwrap().count(), 0);
        assert_eq!(
            pool.imap_unordered(square, Vec::<u64>::new(), 1)
                .unwrap()
                .count(),
            0
        );
        assert_eq!(pool.starmap(mul, Vec::<(u64, u64)>::new()).unwrap(), vec![]);
        pool.join().unwrap();
    });
}

#[test]
fn imap_is_in_order_and_unordered_has_the_same_set() {
    watchdog(LIMIT, "imap", || {
        let pool = Pool::new(2).unwrap();
        let got: Vec<u64> = pool
            .imap(slow_square, 0..200)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, (0..200).map(|x| x * x).collect::<Vec<_>>());
        let got: Vec<u64> = pool
            .imap_chunked(square, 0..1000, 7)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, (0..1000).map(|x| x * x).collect::<Vec<_>>());
        let got: BTreeSet<u64> = pool
            .imap_unordered(slow_square, 0..200, 1)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, (0..200).map(|x| x * x).collect::<BTreeSet<_>>());
        // Lazy: an endless input is fine as long as results are taken.
        let first: Vec<u64> = pool
            .imap(square, 0..)
            .unwrap()
            .take(50)
            .map(Result::unwrap)
            .collect();
        assert_eq!(first, (0..50).map(|x| x * x).collect::<Vec<_>>());
        pool.join().unwrap();
    });
}

#[test]
fn map_async_callbacks_run_in_the_caller() {
    watchdog(LIMIT, "callbacks", || {
        let pool = Pool::new(2).unwrap();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (s1, s2) = (Arc::clone(&seen), Arc::clone(&seen));
        let me = std::process::id();
        let r = pool
            .map_async(
                square,
                0..10,
                None,
                Callbacks::none()
                    .on_success(move |v: &Vec<u64>| {
                        assert_eq!(std::process::id(), me);
                        s1.lock().unwrap().push(format!("ok {}", v.len()));
                    })
                    .on_error(|_| panic!("no error expected")),
            )
            .unwrap();
        assert_eq!(r.get().unwrap().len(), 10);
        let r = pool
            .apply_async_with(
                boom,
                3,
                Callbacks::none()
                    .on_success(|_| panic!("no success expected"))
                    .on_error(move |e| s2.lock().unwrap().push(format!("err {e}"))),
            )
            .unwrap();
        assert!(r.get().is_err());
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0], "ok 10");
        assert!(seen[1].starts_with("err pool task panicked: three is not allowed at "));
        assert!(seen[1].contains("pool.rs"), "{}", seen[1]);
    });
}

#[test]
fn get_with_timeout_and_ready_state() {
    watchdog(LIMIT, "timeout", || {
        let pool = Pool::new(1).unwrap();
        let mut r = pool.apply_async(sleep_ms, 300).unwrap();
        assert!(!r.ready());
        assert_eq!(r.successful(), None);
        let t = Instant::now();
        assert!(matches!(
            r.get_timeout(Duration::from_millis(50)),
            Err(Error::Timeout)
        ));
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(!r.wait_timeout(Duration::from_millis(10)));
        r.wait();
        assert!(r.ready());
        assert_eq!(r.successful(), Some(true));
        assert_eq!(r.get_timeout(Duration::from_secs(5)).unwrap(), 300);
        let mut r = pool.apply_async(square, 10).unwrap();
        assert_eq!(r.get_timeout(Duration::from_secs(10)).unwrap(), 100);
    });
}

#[test]
fn panics_are_results_and_the_pool_goes_on() {
    watchdog(LIMIT, "panic", || {
        let pool = Pool::new(2).unwrap();
        let r = pool.imap(boom, 0..6).unwrap().collect::<Vec<_>>();
        assert_eq!(r.len(), 6);
        for (i, r) in r.into_iter().enumerate() {
            match r {
                Ok(v) => assert_eq!(v, i as u64),
                Err(Error::TaskPanicked { message }) => {
                    assert_eq!(i, 3);
                    assert!(message.contains("three is not allowed"), "{message}");
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(matches!(
            pool.map(boom, 0..10),
            Err(Error::TaskPanicked { .. })
        ));
        assert_eq!(pool.apply(square, 4).unwrap(), 16);
    });
}

/// Several panics in one chunk (its first and last item among them): each is that item's
/// error, and every other item of the chunk returns its value.
#[test]
fn several_panics_in_one_chunk_each_hit_their_own_item() {
    watchdog(LIMIT, "panics in a chunk", || {
        let pool = Pool::new(2).unwrap();
        let got: Vec<_> = pool
            .imap_chunked(boom_on_threes, 0..40, 7)
            .unwrap()
            .collect();
        assert_eq!(got.len(), 40);
        for (x, r) in (0..).zip(got) {
            match r {
                Ok(v) => assert_eq!((x % 3 != 0, v), (true, -x)),
                Err(Error::TaskPanicked { message }) => {
                    assert_eq!(x % 3, 0);
                    assert!(message.contains(&format!("{x} is a multiple")), "{message}");
                }
                Err(e) => panic!("{e}"),
            }
        }
        // `map` reports the lowest failed item, whichever chunk's reply comes first.
        for _ in 0..5 {
            match pool.map_chunked(boom_on_threes, (1..200).rev().chain(1..3), 5) {
                Err(Error::TaskPanicked { message }) => {
                    assert!(message.contains("198 is a multiple"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
        let wide = [i32::MIN + 1, -1, 1, i32::MAX];
        assert_eq!(pool.map(boom_on_threes, wide).unwrap(), wide.map(|x| -x));
        pool.join().unwrap();
    });
}

#[test]
fn errors_from_the_input_iterator_surface_and_the_pool_goes_on() {
    watchdog(LIMIT, "input", || {
        let pool = Pool::new(2).unwrap();
        let bad = (0..10u64).map(|x| if x == 5 { panic!("bad input") } else { x });
        assert!(matches!(
            pool.map(square, bad),
            Err(Error::InputPanicked { message }) if message == "bad input"
        ));
        let bad = (0..10u64).map(|x| if x == 5 { panic!("bad input") } else { x });
        let got: Vec<_> = pool.imap(square, bad).unwrap().collect();
        assert_eq!(got.len(), 6);
        for (i, r) in got.iter().take(5).enumerate() {
            assert_eq!(*r.as_ref().unwrap(), (i * i) as u64);
        }
        assert!(matches!(got[5], Err(Error::InputPanicked { .. })));
        assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
        pool.join().unwrap();
    });
}

#[test]
fn terminate_is_prompt_with_ten_thousand_queued_tasks() {
    watchdog(LIMIT, "terminate", || {
        assert_no_leaks(|| {
            let pool = Pool::new(2).unwrap();
            let r = pool.map_async(sleep_ms, vec![100; 10_000], Some(1), Callbacks::none());
            let r = r.unwrap();
            std::thread::sleep(Duration::from_millis(50));
            let t = Instant::now();
            pool.terminate().unwrap();
            // The queued work is 10,000 × 100 ms on 2 workers (over 8 minutes): a terminate
            // that waited for it would take far longer than this generous bound.
            assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
            assert!(matches!(r.get(), Err(Error::PoolTerminated)));
            assert!(matches!(pool.apply(square, 1), Err(Error::PoolTerminated)));
        });
    });
}

#[test]
fn close_refuses_new_tasks_and_drop_terminates() {
    watchdog(LIMIT, "close", || {
        assert_no_leaks(|| {
            let pool = Pool::new(2).unwrap();
            let r = pool.apply_async(sleep_ms, 50).unwrap();
            pool.close();
            assert!(matches!(pool.apply(square, 1), Err(Error::Closed)));
            assert!(matches!(pool.map(square, 0..3), Err(Error::Closed)));
            pool.join().unwrap();
            assert_eq!(r.get().unwrap(), 50);
            let pool = Pool::new(2).unwrap();
            let r = pool.apply_async(sleep_ms, 10_000).unwrap();
            drop(pool);
            assert!(matches!(r.get(), Err(Error::PoolTerminated)));
            let n = Pool::scope(2, |p| p.map(square, 0..10).unwrap()).unwrap();
            assert_eq!(n[9], 81);
        });
    });
}

#[test]
fn zero_processes_is_an_error() {
    assert!(matches!(Pool::new(0), Err(Error::InvalidSize { .. })));
}

#[test]
fn max_tasks_per_child_replaces_workers() {
    watchdog(LIMIT, "max_tasks", || {
        assert_no_leaks(|| {
            let pool = Pool::builder()
                .processes(2)
                .max_tasks_per_child(3)
                .build()
                .unwrap();
            let first = pool.worker_pids();
            let pids: Vec<u32> = (0..30).map(|_| pool.apply(pid, ()).unwrap()).collect();
            let distinct: BTreeSet<u32> = pids.iter().copied().collect();
            assert!(distinct.len() >= 10, "{distinct:?}");
            let want: Vec<u64> = (0..200).map(|x| x * x).collect();
            assert_eq!(pool.map_chunked(square, 0..200, 5).unwrap(), want);
            let later = pool.worker_pids();
            assert!(later.iter().all(|p| !first.contains(p)));
            pool.join().unwrap();
        });
    });
}

#[test]
fn dying_workers_fail_only_their_task() {
    watchdog(LIMIT, "dying", || {
        assert_no_leaks(|| {
            let pool = Pool::new(2).unwrap();
            // abort(): only item 5's result is an error.
            let got: Vec<_> = pool.imap(abort_on, 0..20).unwrap().collect();
            for (i, r) in got.into_iter().enumerate() {
                match (i, r) {
                    (5, Err(Error::WorkerDied { exitcode, .. })) => {
                        assert_eq!(exitcode, -libc::SIGABRT);
                    }
                    (i, Ok(v)) => assert_eq!(v, i as u64 + 1),
                    (i, r) => panic!("{i}: {r:?}"),
                }
            }
            // SIGKILL from outside while the task runs.
            let pids = RawArray::<u64>::new(1).unwrap();
            let victim = pool
                .apply_async(wait_to_be_killed, (pids.clone(), 0))
                .unwrap();
            let others: Vec<_> = (0..20)
                .map(|i| pool.apply_async(square, i).unwrap())
                .collect();
            let t = Instant::now();
            while pids.get(0).unwrap() == 0 {
                assert!(t.elapsed() < Duration::from_secs(30));
                std::thread::sleep(Duration::from_millis(5));
            }
            let victim_pid = pids.get(0).unwrap() as i32;
            // SAFETY: sending a signal to our own worker child.
            assert_eq!(unsafe { libc::kill(victim_pid, libc::SIGKILL) }, 0);
            match victim.get() {
                Err(Error::WorkerDied { pid, exitcode }) => {
                    assert_eq!(pid, victim_pid);
                    assert_eq!(exitcode, -libc::SIGKILL);
                }
                r => panic!("{r:?}"),
            }
            for (i, r) in others.into_iter().enumerate() {
                assert_eq!(r.get().unwrap(), (i * i) as u64);
            }
            assert!(!pool.worker_pids().contains(&victim_pid));
            assert_eq!(pool.map(square, 0..10).unwrap()[3], 9);
            pool.join().unwrap();
        });
    });
}

#[test]
fn forged_task_ids_are_refused() {
    watchdog(LIMIT, "forged", || {
        let pool = Pool::new(1).unwrap();
        assert_eq!(pool.apply(square, 3).unwrap(), 9);
        for id in [0, 2, 99, u32::MAX] {
            match pool.apply_raw_id(id) {
                Err(Error::TaskFailed { reason }) => {
                    assert!(reason.contains("unknown target"), "{reason}");
                }
                r => panic!("{id}: {r:?}"),
            }
        }
        assert_eq!(pool.apply(square, 5).unwrap(), 25);
        pool.join().unwrap();
    });
}

static GREETING: Mutex<String> = Mutex::new(String::new());

fn set_greeting(s: String) {
    *GREETING.lock().unwrap() = s;
}

fn greeting(_: ()) -> String {
    GREETING.lock().unwrap().clone()
}

#[test]
fn initializer_runs_in_every_worker_and_replacements() {
    watchdog(LIMIT, "initializer", || {
        let pool = Pool::builder()
            .processes(2)
            .initializer(set_greeting, "hi".to_owned())
            .max_tasks_per_child(2)
            .build()
            .unwrap();
        for _ in 0..10 {
            assert_eq!(pool.apply(greeting, ()).unwrap(), "hi");
        }
        pool.join().unwrap();
    });
}

#[test]
fn a_panicking_item_spoils_nothing_else_in_its_chunk() {
    watchdog(LIMIT, "chunk_panic", || {
        let pool = Pool::new(2).unwrap();
        let got: Vec<_> = pool.imap_chunked(boom, 0..10, 10).unwrap().collect();
        for (i, r) in got.into_iter().enumerate() {
            if i == 3 {
                assert!(matches!(r, Err(Error::TaskPanicked { .. })));
            } else {
                assert_eq!(r.unwrap(), i as u64);
            }
        }
        pool.join().unwrap();
    });
}

/// Fails to encode.
#[derive(Debug, serde::Deserialize)]
struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("cannot encode"))
    }
}

fn take_unencodable(_: Unencodable) -> u64 {
    1
}

fn make_unencodable(_: ()) -> Unencodable {
    Unencodable
}

#[test]
fn unencodable_arguments_and_results_are_errors() {
    watchdog(LIMIT, "encode", || {
        let pool = Pool::new(1).unwrap();
        assert!(matches!(
            pool.apply(take_unencodable, Unencodable),
            Err(Error::Codec { .. })
        ));
        assert!(matches!(
            pool.map(take_unencodable, [Unencodable]),
            Err(Error::Codec { .. })
        ));
        assert!(matches!(
            pool.apply(make_unencodable, ()),
            Err(Error::TaskFailed { .. })
        ));
        assert_eq!(pool.apply(square, 2).unwrap(), 4);
        pool.join().unwrap();
    });
}

/// Writes `i²` into the array and sends `i` on the queue.
fn write_square((squares, done, i): (Array<u64>, Queue<u64>, usize)) -> u64 {
    squares.set(i, (i * i) as u64).unwrap();
    done.put(&(i as u64)).unwrap();
    i as u64
}

fn write_cube((cubes, i): (Array<u64>, usize)) -> u64 {
    cubes.set(i, (i * i * i) as u64).unwrap();
    i as u64
}

fn recv_nothing(_: Connection) -> u64 {
    0
}

#[test]
fn shared_objects_in_arguments_reach_the_workers() {
    watchdog(LIMIT, "shared_args", || {
        assert_no_leaks(|| {
            let pool = Pool::new(2).unwrap();
            // In the default heap, which every worker maps.
            let squares = Array::<u64>::new(16).unwrap();
            let done = Queue::<u64>::new().unwrap();
            let args = (0..16).map(|i| (squares.clone(), done.clone(), i));
            let out = pool.map_chunked(write_square, args, 3).unwrap();
            assert_eq!(out, (0..16).collect::<Vec<u64>>());
            assert_eq!(
                squares.to_vec().unwrap(),
                (0..16).map(|i| i * i).collect::<Vec<u64>>()
            );
            let mut got: Vec<u64> = (0..16).map(|_| done.get().unwrap()).collect();
            got.sort_unstable();
            assert_eq!(got, (0..16).collect::<Vec<u64>>());
            // In a segment created after the workers started: it travels to each worker with
            // the first task that needs it (and again to a replacement).
            let seg = Segment::create(1 << 20).unwrap();
            let cubes = Array::<u64>::new_in(&seg, 16).unwrap();
            let out = pool
                .map_chunked(write_cube, (0..16).map(|i| (cubes.clone(), i)), 2)
                .unwrap();
            assert_eq!(out, (0..16).collect::<Vec<u64>>());
            assert_eq!(
                cubes.to_vec().unwrap(),
                (0..16).map(|i| i * i * i).collect::<Vec<u64>>()
            );
            let r = pool.apply_async(write_cube, (cubes.clone(), 3)).unwrap();
            assert_eq!(r.get().unwrap(), 3);
            // A connection carries descriptors, which the task queues cannot.
            let (a, _b) = shmproc::pipe().unwrap();
            match pool.apply(recv_nothing, a) {
                Err(Error::NoDescriptorChannel { .. }) => {}
                r => panic!("expected NoDescriptorChannel, got {r:?}"),
            }
            pool.join().unwrap();
        });
    });
}

/// Set before a `Fork` pool starts: a forked worker has it, a spawned one does not.
static MARK: Mutex<u64> = Mutex::new(0);

fn read_mark(_: ()) -> u64 {
    *MARK.lock().unwrap()
}

/// A pool started with `method`: map, imap, apply, a panic, a dying worker and a replacement
/// after `max_tasks_per_child`; returns the workers' pids before and after.
fn pool_with_method(method: StartMethod) -> (Vec<i32>, Vec<i32>) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .max_tasks_per_child(50)
        .build()
        .unwrap();
    let before = pool.worker_pids();
    // Forked workers copy this process's memory; spawned ones start afresh.
    let marked = pool.apply(read_mark, ()).unwrap();
    assert_eq!(marked, if method == StartMethod::Fork { 42 } else { 0 });
    let want: Vec<u64> = (0..40).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..40).unwrap(), want);
    let got: Vec<u64> = pool
        .imap(square, 0..40)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, want);
    assert_eq!(pool.apply(square, 12).unwrap(), 144);
    assert!(matches!(
        pool.apply(boom, 3),
        Err(Error::TaskPanicked { .. })
    ));
    match pool.apply(abort_on, 5) {
        Err(Error::WorkerDied { .. }) => {}
        r => panic!("expected WorkerDied, got {r:?}"),
    }
    // More than 50 chunks per worker: every first worker retires or died by now.
    let got: Vec<u64> = pool
        .imap(square, 0..200)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, (0..200).map(|x| x * x).collect::<Vec<u64>>());
    let after = pool.worker_pids();
    pool.join().unwrap();
    (before, after)
}

fn check_replaced((before, after): (Vec<i32>, Vec<i32>)) {
    assert_eq!(before.len(), 2);
    assert_eq!(after.len(), 2);
    assert!(
        before.iter().all(|p| !after.contains(p)),
        "{before:?} {after:?}"
    );
}

#[test]
fn workers_start_with_every_start_method() {
    watchdog(LIMIT, "start_methods", || {
        shmproc::ensure_forkserver().unwrap();
        assert_no_leaks(|| {
            check_replaced(pool_with_method(StartMethod::Spawn));
            check_replaced(pool_with_method(StartMethod::ForkServer));
            // Fork needs a single-threaded caller: a spawned child builds that pool.
            let h = shmproc::spawn(
                |()| {
                    *MARK.lock().unwrap() = 42;
                    assert_no_leaks(|| pool_with_method(StartMethod::Fork))
                },
                (),
            )
            .unwrap();
            check_replaced(h.join().unwrap());
        });
    });
}

#[test]
fn a_fork_pool_refuses_a_threaded_caller() {
    watchdog(LIMIT, "fork_threaded", || {
        let _t = std::thread::spawn(|| std::thread::sleep(Duration::from_secs(2)));
        match Pool::builder()
            .processes(1)
            .start_method(StartMethod::Fork)
            .build()
        {
            Err(Error::ForkWhileThreaded { threads }) => assert!(threads >= 2),
            r => panic!("expected ForkWhileThreaded, got {r:?}"),
        }
    });
}
