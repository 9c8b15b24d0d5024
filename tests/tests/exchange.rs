//! The pprocess API: `start`, `create`, `Channel`, `Exchange`, `waitall`, `pmap`, `Map`,
//! `Queue` and reusable workers; with watchdogs and leak accounting.
//!
//! `create` forks, which needs a single-threaded caller; its scenario runs inside a `Spawn`
//! child, as in `process.rs`.

use shmproc::exchange::{self, Channel, Exchange, Forked, Map, Queue, Workers, pmap};
use shmproc::testing::{assert_no_leaks, resources, watchdog};
use shmproc::{Error, active_children};
use std::collections::BTreeSet;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

fn checked<R>(name: &str, f: impl FnOnce() -> R) -> R {
    watchdog(LIMIT, name, || assert_no_leaks(f))
}

// ---- targets ----

fn square(ch: Channel, i: u64) {
    std::thread::sleep(Duration::from_millis(5 * (i % 4)));
    ch.send(&(i, i * i)).unwrap();
}

fn echo_twice(mut ch: Channel, tag: String) {
    let x: u32 = ch.receive().unwrap();
    ch.send(&format!("{tag}:{x}")).unwrap();
    ch.send(&(x * 2)).unwrap();
}

fn send_then_panic(ch: Channel, _: ()) {
    ch.send(&1u8).unwrap();
    panic!("child panicked on purpose");
}

fn sleep_then_send(ch: Channel, ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    ch.send(&ms).unwrap();
}

fn exit_3(_: Channel, _: ()) {
    std::process::exit(3);
}

fn double(x: u64) -> u64 {
    x * 2
}

fn pid_of(_: u32) -> u32 {
    std::process::id()
}

/// Job 7 SIGKILLs its own worker mid-job.
fn killed_at_7(x: u32) -> u32 {
    if x == 7 {
        let me = std::process::id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &me])
            .status();
        std::thread::sleep(Duration::from_secs(60));
    }
    x + 1000
}

// ---- tests ----

#[test]
fn start_runs_the_function_with_a_channel_both_ways() {
    checked("start", || {
        let mut ch = exchange::start(echo_twice, "t".to_owned()).unwrap();
        assert!(ch.pid() > 0);
        ch.send(&21u32).unwrap();
        assert_eq!(ch.receive::<String>().unwrap(), "t:21");
        assert_eq!(ch.receive::<u32>().unwrap(), 42);
        assert!(matches!(ch.receive::<u32>(), Err(Error::Disconnected)));
        assert_eq!(ch.wait().unwrap(), Some(0));
    });
}

#[test]
fn a_panic_in_the_child_is_an_error_on_receive() {
    checked("panic", || {
        let mut ch = exchange::start(send_then_panic, ()).unwrap();
        assert_eq!(ch.receive::<u8>().unwrap(), 1);
        match ch.receive::<u8>() {
            Err(Error::ChildPanicked { message }) => {
                assert!(message.contains("on purpose"), "{message}")
            }
            other => panic!("expected ChildPanicked, got {other:?}"),
        }
        assert_eq!(ch.exitcode(), Some(1));
        let mut ch = exchange::start(exit_3, ()).unwrap();
        assert!(matches!(
            ch.receive::<u8>(),
            Err(Error::ChildFailed { exitcode: 3 })
        ));
    });
}

#[test]
fn receive_timeout_returns_none_then_the_value() {
    checked("receive_timeout", || {
        let mut ch = exchange::start(sleep_then_send, 300).unwrap();
        assert_eq!(
            ch.receive_timeout::<u64>(Duration::from_millis(20))
                .unwrap(),
            None
        );
        assert_eq!(
            ch.receive_timeout::<u64>(Duration::from_secs(30)).unwrap(),
            Some(300)
        );
        ch.wait().unwrap();
    });
}

/// Twelve jobs, limit 3: every result exactly once, never more than 3 children alive.
#[test]
fn twelve_jobs_limit_three_every_result_once() {
    checked("twelve jobs", || {
        let mut ex = Exchange::with_limit(3);
        let mut max_alive = 0;
        for i in 0..12 {
            ex.start(square, i).unwrap();
            max_alive = max_alive.max(active_children().len());
            assert!(ex.active().len() <= 3);
        }
        assert_eq!(ex.queued(), 9);
        let mut seen = Vec::new();
        while !ex.active().is_empty() || ex.queued() > 0 {
            for ch in ex.ready(None).unwrap() {
                match ch.receive::<(u64, u64)>() {
                    Ok(r) => seen.push(r),
                    Err(Error::Disconnected) => assert_eq!(ch.exitcode(), Some(0)),
                    Err(e) => panic!("{e}"),
                }
            }
            assert!(ex.active().len() <= 3);
            // Every child not yet reaped counts, running or not.
            max_alive = max_alive.max(resources().children.len());
        }
        assert!(max_alive <= 3, "{max_alive} children alive at once");
        seen.sort_unstable();
        let want: Vec<(u64, u64)> = (0..12).map(|i| (i, i * i)).collect();
        assert_eq!(seen, want);
    });
}

/// The convenient form: a `store_data` closure, `start` queueing at the limit, `finish`.
#[test]
fn store_data_closure_with_wait_and_finish() {
    checked("store_data", || {
        let mut seen = BTreeSet::new();
        let mut ex = Exchange::with_limit(3).with_store(|ch: &mut Channel| {
            let (i, sq) = ch.receive::<(u64, u64)>()?;
            assert!(seen.insert(i), "result {i} twice");
            assert_eq!(sq, i * i);
            Ok(())
        });
        for i in 0..6 {
            ex.start(square, i).unwrap();
        }
        for i in 6..12 {
            ex.add_wait(exchange::start(square, i).unwrap()).unwrap();
            assert!(ex.active().len() <= 3);
        }
        ex.finish().unwrap();
        assert!(ex.active().is_empty());
        drop(ex);
        assert_eq!(seen, (0..12).collect());
    });
}

/// A store that is a type, like pprocess's subclass.
#[test]
fn store_data_trait_object() {
    struct Sum(u64);
    impl exchange::StoreData for Sum {
        fn store_data(&mut self, ch: &mut Channel) -> shmproc::Result<()> {
            self.0 += ch.receive::<(u64, u64)>()?.1;
            Ok(())
        }
    }
    checked("store trait", || {
        let mut ex = Exchange::with_limit(2).with_store(Sum(0));
        for i in 0..5 {
            ex.start(square, i).unwrap();
        }
        ex.finish().unwrap();
        assert_eq!(ex.into_store().0, 1 + 4 + 9 + 16);
    });
}

#[test]
fn finish_with_a_closure_and_try_receive() {
    checked("finish_with", || {
        let mut ch = exchange::start(sleep_then_send, 200).unwrap();
        assert_eq!(ch.try_receive::<u64>().unwrap(), None);
        assert_eq!(ch.receive::<u64>().unwrap(), 200);
        ch.wait().unwrap();
        let mut ex = Exchange::with_limit(2);
        ex.add(exchange::start(square, 100).unwrap());
        for i in 0..4 {
            ex.start(square, i).unwrap();
        }
        let mut got = Vec::new();
        ex.finish_with(|ch: &mut Channel| {
            match ch.receive::<(u64, u64)>() {
                Ok(r) => got.push(r.0),
                Err(e) => return Err(e),
            }
            Ok(())
        })
        .unwrap();
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2, 3, 100]);
    });
}

#[test]
fn ready_with_zero_timeout_never_blocks() {
    checked("ready zero", || {
        let mut ex = Exchange::new();
        assert!(ex.ready(Some(Duration::ZERO)).unwrap().is_empty());
        ex.add(exchange::start(sleep_then_send, 1500).unwrap());
        ex.add(exchange::start(sleep_then_send, 1500).unwrap());
        for _ in 0..100 {
            assert!(ex.ready(Some(Duration::ZERO)).unwrap().is_empty());
        }
        // Had any call waited for a child (each sleeps 1.5 s), it would have returned it.
        let mut got = 0;
        while !ex.active().is_empty() {
            for ch in ex.ready(Some(Duration::from_millis(50))).unwrap() {
                if ch.receive::<u64>().is_ok() {
                    got += 1;
                }
            }
        }
        assert_eq!(got, 2);
    });
}

#[test]
fn dead_children_are_removed_and_reaped() {
    checked("dead children", || {
        let a = exchange::start(send_then_panic, ()).unwrap();
        let b = exchange::start(exit_3, ()).unwrap();
        let pids = [a.pid(), b.pid()];
        let mut ex = Exchange::from_channels(vec![a, b]);
        let mut ended = Vec::new();
        while !ex.active().is_empty() {
            for ch in ex.ready(None).unwrap() {
                match ch.receive::<u8>() {
                    Ok(1) => {}
                    Ok(x) => panic!("{x}"),
                    Err(e) => ended.push((ch.pid(), ch.exitcode(), e.to_string())),
                }
            }
        }
        ended.sort();
        assert_eq!(ended.len(), 2, "{ended:?}");
        assert_eq!(ended[0].0.min(ended[1].0), pids[0].min(pids[1]));
        assert!(ended.iter().any(|e| e.1 == Some(1)), "{ended:?}");
        assert!(ended.iter().any(|e| e.1 == Some(3)), "{ended:?}");
        for p in pids {
            assert!(!resources().children.contains(&p), "{p} not reaped");
        }
    });
}

#[test]
fn remove_gives_the_channel_back() {
    checked("remove", || {
        let ch = exchange::start(sleep_then_send, 10).unwrap();
        let pid = ch.pid();
        let mut ex = Exchange::from(vec![ch]);
        let mut ch = ex.remove(pid).unwrap();
        assert!(ex.active().is_empty());
        assert!(ex.remove(pid).is_none());
        assert_eq!(ch.receive::<u64>().unwrap(), 10);
        assert_eq!(ch.wait().unwrap(), Some(0));
    });
}

#[test]
fn waitall_leaves_no_zombie() {
    checked("waitall", || {
        for ms in [1, 50, 100, 150, 200] {
            drop(exchange::start(sleep_then_send, ms).unwrap());
        }
        assert!(!resources().children.is_empty());
        exchange::waitall().unwrap();
        let zombies = resources().children;
        assert!(
            zombies.is_empty(),
            "children left after waitall: {zombies:?}"
        );
    });
}

#[test]
fn pmap_equals_a_sequential_map() {
    checked("pmap", || {
        let input: Vec<u64> = (0..500).collect();
        let want: Vec<u64> = input.iter().copied().map(double).collect();
        assert_eq!(pmap(double, input.clone(), 3).unwrap(), want);
        assert_eq!(pmap(double, Vec::new(), 2).unwrap(), Vec::<u64>::new());
        let mut m = Map::new(double, 2).unwrap();
        for x in [5, 1, 4] {
            m.push(x).unwrap();
        }
        assert_eq!(m.collect::<shmproc::Result<Vec<_>>>().unwrap(), [10, 2, 8]);
        let mut q = Queue::new(double, 2).unwrap();
        for x in 0..20 {
            q.push(x).unwrap();
        }
        let mut got: Vec<u64> = q.collect::<shmproc::Result<_>>().unwrap();
        got.sort_unstable();
        assert_eq!(got, (0..20).map(double).collect::<Vec<_>>());
    });
}

#[test]
fn reusable_workers_run_ten_thousand_jobs_on_two_processes() {
    checked("10k jobs", || {
        let mut w = Workers::new(pid_of, 2).unwrap();
        let pids: BTreeSet<u32> = w.pids().iter().map(|&p| p as u32).collect();
        assert_eq!(pids.len(), 2);
        for i in 0..10_000 {
            w.submit(i).unwrap();
        }
        let mut seen = BTreeSet::new();
        let mut count = 0;
        while let Some((id, r)) = w.next(None).unwrap() {
            assert!(seen.insert(id));
            assert!(pids.contains(&r.unwrap()));
            count += 1;
        }
        assert_eq!(count, 10_000);
        assert_eq!(seen.len(), 10_000);
        let now: BTreeSet<u32> = w.pids().iter().map(|&p| p as u32).collect();
        assert_eq!(now, pids, "a worker was replaced");
    });
}

#[test]
fn a_worker_killed_mid_job_fails_that_job_only() {
    checked("killed worker", || {
        let mut q = Queue::new(killed_at_7, 2).unwrap();
        for x in 0..20 {
            q.push(x).unwrap();
        }
        let mut ok = BTreeSet::new();
        let mut failed = Vec::new();
        while let Some((id, r)) = q.next_timeout(Duration::from_secs(60)).unwrap() {
            match r {
                Ok(v) => assert!(ok.insert(v - 1000)),
                Err(e) => failed.push((id, e.to_string())),
            }
        }
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].0, 7);
        let want: BTreeSet<u32> = (0..20).filter(|&x| x != 7).collect();
        assert_eq!(ok, want);
    });
}

fn fork_style(_: ()) {
    assert_no_leaks(|| {
        // A child started before the fork is the creator's, not the forked child's.
        let earlier = exchange::start(sleep_then_send, 200).unwrap();
        match exchange::create().unwrap() {
            Forked::Child(mut ch) => {
                assert_eq!(ch.pid(), 0);
                exchange::waitall().unwrap();
                let x: u32 = ch.receive().unwrap();
                ch.send(&(x + 1)).unwrap();
                drop(ch);
                exchange::exit(0);
            }
            Forked::Parent(mut ch) => {
                assert!(ch.pid() > 0);
                ch.send(&41u32).unwrap();
                assert_eq!(ch.receive::<u32>().unwrap(), 42);
                assert!(matches!(ch.receive::<u32>(), Err(Error::Disconnected)));
                assert_eq!(ch.wait().unwrap(), Some(0));
            }
        }
        drop(earlier);
        exchange::waitall().unwrap();
    });
}

#[test]
fn create_forks_with_a_channel_and_refuses_threads() {
    checked("create", || {
        // This test process has threads (the watchdog): `create` refuses, as `Fork` does.
        assert!(matches!(
            exchange::create(),
            Err(Error::ForkWhileThreaded { .. })
        ));
        shmproc::spawn(fork_style, ()).unwrap().join().unwrap();
    });
}

fn panics_at_3(x: u32) -> u32 {
    assert_ne!(x, 3, "job 3 panicked on purpose");
    x
}

#[test]
fn a_panicking_job_fails_pmap_and_only_its_entry_in_a_map() {
    checked("panicking job", || {
        match pmap(panics_at_3, 0..8, 2) {
            Err(Error::ChildPanicked { message }) => {
                assert!(message.contains("job 3"), "{message}")
            }
            other => panic!("expected ChildPanicked, got {other:?}"),
        }
        let mut m = Map::new(panics_at_3, 2).unwrap();
        for x in 0..8 {
            m.push(x).unwrap();
        }
        let out: Vec<Result<u32, String>> = m.map(|r| r.map_err(|e| e.to_string())).collect();
        assert_eq!(out.len(), 8);
        for (x, r) in out.iter().enumerate() {
            if x == 3 {
                assert!(r.is_err());
            } else {
                assert_eq!(r.as_ref().ok(), Some(&(x as u32)));
            }
        }
    });
}
