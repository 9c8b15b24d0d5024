//! Managers under attack: clients killed at each step of handing a proxy to another process,
//! forked and spawned clients killed while holding primitives, many clients dying at once,
//! releases of objects a client did not create, oversized requests, silent and garbage
//! greetings, calls after a shutdown and after the server was killed, forged, replayed and
//! stolen tokens and pins, forks with a stopped, hung or dead server and forks of forks.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests: a failed unwrap is the assertion

use shmproc::codec::{from_bytes, to_bytes};
use shmproc::connection::Address;
use shmproc::manager::{DictProxy, LockProxy, QueueProxy, SemaphoreProxy};
use shmproc::testing::{assert_no_leaks, watchdog};
use shmproc::{Manager, Process};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);
const LONG: Duration = Duration::from_secs(30);

use shmproc_tests::WireRequest;

/// A raw, greeted connection to the server at `addr` as client `nonce`.
fn raw_client(addr: &Address, key: &[u8], nonce: u64) -> shmproc::Connection {
    let c = shmproc::Client::connect(addr.clone(), Some(key)).unwrap();
    c.send_bytes(&to_bytes(&(nonce, None::<u8>)).unwrap())
        .unwrap();
    assert_eq!(c.recv_bytes().unwrap(), [0, 0], "greeting refused");
    c
}

/// Sends one request; `Ok(body)` or `Err(())` for an error reply.
fn request(c: &shmproc::Connection, req: &WireRequest) -> Result<Vec<u8>, ()> {
    c.send_bytes(&to_bytes(req).unwrap()).unwrap();
    let reply = c.recv_bytes().unwrap();
    match reply.first() {
        Some(0) => Ok(from_bytes::<(u8, Vec<u8>)>(&reply).unwrap().1),
        Some(1) => Err(()),
        other => panic!("reply {other:?} is neither Ok nor Err"),
    }
}

/// The objects the server holds among the shared namespace (0) and the `max` ids made last,
/// with their types. Ids count up from a random base in each server process: where the
/// count is is learnt by making (and dropping) a namespace.
fn live_objects(c: &shmproc::Connection, max: u64) -> BTreeSet<(u64, String)> {
    let create = WireRequest::Create {
        kind: "shmproc.namespace".to_owned(),
        init: Vec::new(),
    };
    let next: u64 = from_bytes(&request(c, &create).expect("create")).unwrap();
    request(c, &WireRequest::Release { object: next }).expect("release");
    std::iter::once(0)
        .chain(next.saturating_sub(max)..next)
        .filter_map(|object| {
            let body = request(c, &WireRequest::TypeOf { object }).ok()?;
            Some((object, from_bytes::<String>(&body).unwrap()))
        })
        .collect()
}

/// Polls `cond` every 20 ms for up to 30 s.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < LONG {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

fn abstract_name(m: &Manager) -> Vec<u8> {
    match m.address() {
        Address::Abstract(name) => name,
        other => panic!("not an abstract socket: {other:?}"),
    }
}

// ------------------------------------------------------------------ oversized requests

/// A request over the cap is an error for that call only: the connection it would have
/// used, and with it what the client created and holds, stays (over TCP the sender refuses
/// it before writing; over a pipe the server discards it).
fn oversized_request_keeps_state(m: &Manager) {
    let d = m.dict::<u8, u8>().unwrap();
    d.insert(1, 10).unwrap();
    let lock = m.lock().unwrap();
    lock.acquire().unwrap();
    let v = m.value(String::new()).unwrap();
    assert!(
        v.set("x".repeat((64 << 20) + 1)).is_err(),
        "a request over 64 MiB was served"
    );
    // The server has had the time to notice a connection that ended.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        d.get(&1).unwrap(),
        Some(10),
        "an object outlived its creator's failed call"
    );
    assert!(
        !lock.try_acquire().unwrap(),
        "a lock the client still holds was given back"
    );
    lock.release().unwrap();
    assert_eq!(v.get().unwrap(), "");
}

#[test]
fn an_oversized_request_over_tcp_keeps_what_the_client_created_and_holds() {
    watchdog(LIMIT, "manager oversized tcp", || {
        let m = Manager::serve(SocketAddr::from(([127, 0, 0, 1], 0)), b"big").unwrap();
        let remote = Manager::connect(m.address(), b"big").unwrap();
        oversized_request_keeps_state(&remote);
        m.shutdown().unwrap();
    });
}

#[test]
fn an_oversized_request_over_a_pipe_keeps_what_the_client_created_and_holds() {
    watchdog(LIMIT, "manager oversized pipe", || {
        let m = Manager::start().unwrap();
        oversized_request_keeps_state(&m);
        m.shutdown().unwrap();
    });
}

// ------------------------------------------------------------------ kill during handoff

fn create_and_share_forever((name, key, q): (Vec<u8>, Vec<u8>, QueueProxy<DictProxy<u8, u64>>)) {
    let m = Manager::connect(Address::Abstract(name), &key).unwrap();
    let mut i = 0u64;
    loop {
        let d = m.dict::<u8, u64>().unwrap();
        d.insert(0, i).unwrap();
        q.put(&d).unwrap();
        // A private object too: it must go with this process.
        let private = m.list::<u64>().unwrap();
        private.push(i).unwrap();
        drop((d, private));
        i += 1;
    }
}

/// A creator SIGKILLed at an arbitrary point of its create, serialize, put loop: every proxy
/// that reached the queue still finds its object, and of what it created only those (and
/// at most one pinned while the kill cut its `put` short) outlive it.
#[test]
fn a_creator_killed_mid_handoff_loses_nothing_in_flight_and_leaks_at_most_one() {
    watchdog(LIMIT, "manager handoff kill", || {
        let m = Manager::builder().authkey(&b"handoff"[..]).start().unwrap();
        let q = m.queue::<DictProxy<u8, u64>>().unwrap();
        let probe = raw_client(&m.address(), b"handoff", 0x5eed);
        let before = live_objects(&probe, 8);
        let child = Process::new(
            create_and_share_forever,
            (abstract_name(&m), b"handoff".to_vec(), q.clone()),
        )
        .start()
        .unwrap();
        assert!(eventually(|| q.len().unwrap() >= 25));
        child.kill().unwrap();
        child.join().unwrap();
        std::thread::sleep(Duration::from_millis(400));
        let mut got = Vec::new();
        while let Ok(d) = q.try_get() {
            got.push(d);
        }
        for (i, d) in got.iter().enumerate() {
            assert_eq!(
                d.get(&0).unwrap(),
                Some(i as u64),
                "proxy {i} in flight lost its object"
            );
        }
        let max = 4 * got.len() as u64 + 16;
        assert!(eventually(|| {
            let live = live_objects(&probe, max);
            let extra: Vec<_> = live.difference(&before).collect();
            // Every queued dict, and at most one more (pinned, its put cut short); no list.
            extra.iter().all(|(_, t)| t == "shmproc.dict")
                && (got.len()..=got.len() + 1).contains(&extra.len())
        }));
        drop(got);
        m.shutdown().unwrap();
    });
}

// ------------------------------------------------------------------ forked clients

/// A forked child (calling through proxies it inherited in memory) SIGKILLed while it holds a
/// lock, an rlock twice, a semaphore unit and a condition gives them all back.
#[test]
fn a_sigkilled_forked_child_gives_back_what_it_held() {
    watchdog(LIMIT, "manager forked child killed", || {
        let m = Manager::start().unwrap();
        let lock = m.lock().unwrap();
        let rlock = m.rlock().unwrap();
        let sem = m.semaphore(1).unwrap();
        let cond = m.condition().unwrap();
        let (rx, tx) = shmproc::pipe_simplex().unwrap();
        let (l2, r2, s2, c2) = (lock.clone(), rlock.clone(), sem.clone(), cond.clone());
        // SAFETY: this test's thread holds no lock the child takes; the watchdog's thread
        // only waits on its channel.
        let mut child =
            shmproc::testing::fork(unsafe { shmproc::testing::ForkPermit::new() }, move || {
                l2.acquire().unwrap();
                r2.acquire().unwrap();
                r2.acquire().unwrap();
                s2.acquire().unwrap();
                c2.acquire().unwrap();
                tx.send(&()).unwrap();
                std::thread::sleep(Duration::from_secs(600));
                0
            });
        rx.recv::<()>().unwrap();
        assert!(!lock.try_acquire().unwrap());
        assert!(!rlock.try_acquire().unwrap());
        assert!(!sem.try_acquire().unwrap());
        assert!(!cond.try_acquire().unwrap());
        assert!(child.kill().is_err(), "the child was not killed");
        assert!(lock.acquire_timeout(LONG).unwrap(), "lock kept");
        assert!(rlock.acquire_timeout(LONG).unwrap(), "rlock kept");
        assert!(sem.acquire_timeout(LONG).unwrap(), "semaphore unit kept");
        assert!(cond.acquire_timeout(LONG).unwrap(), "condition kept");
        m.shutdown().unwrap();
    });
}

/// Objects a forked child creates go when it is SIGKILLed, as a spawned creator's do.
#[test]
fn objects_a_sigkilled_forked_child_created_are_released() {
    watchdog(LIMIT, "manager forked creator killed", || {
        let m = Manager::builder().authkey(&b"forked"[..]).start().unwrap();
        let probe = raw_client(&m.address(), b"forked", 0xf0f0);
        let before = live_objects(&probe, 16);
        let (rx, tx) = shmproc::pipe_simplex().unwrap();
        let m2 = m.clone();
        // SAFETY: as above: no other thread of this test holds a lock the child takes.
        let mut child =
            shmproc::testing::fork(unsafe { shmproc::testing::ForkPermit::new() }, move || {
                let d = m2.dict::<u8, u8>().unwrap();
                d.insert(1, 1).unwrap();
                let l = m2.lock().unwrap();
                l.acquire().unwrap();
                tx.send(&()).unwrap();
                std::thread::sleep(Duration::from_secs(600));
                drop((d, l));
                0
            });
        rx.recv::<()>().unwrap();
        let with_child = live_objects(&probe, 16);
        assert_eq!(with_child.len(), before.len() + 2, "{with_child:?}");
        assert!(child.kill().is_err());
        assert!(
            eventually(|| live_objects(&probe, 16) == before),
            "objects outlived their forked creator"
        );
        drop(probe);
        m.shutdown().unwrap();
    });
}

/// A forked child holding a copy of a proxy it inherited in memory (a global, say: not
/// serialized, so never pinned) still reaches the object once the parent has dropped its
/// own proxies, as a Python child's inherited proxy does (it takes a reference after the
/// fork).
#[test]
fn a_proxy_inherited_in_memory_outlives_the_parents_drop() {
    watchdog(LIMIT, "manager inherited proxy", || {
        let m = Manager::start().unwrap();
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 1).unwrap();
        let (rx, tx) = shmproc::pipe_simplex().unwrap();
        let (go_rx, go_tx) = shmproc::pipe_simplex().unwrap();
        let d2 = d.clone();
        // SAFETY: no other thread of this test holds a lock the child takes.
        let mut child =
            shmproc::testing::fork(unsafe { shmproc::testing::ForkPermit::new() }, move || {
                go_rx.recv::<()>().unwrap();
                tx.send(&d2.get(&1).ok().flatten()).unwrap();
                0
            });
        drop(d);
        std::thread::sleep(Duration::from_millis(200));
        go_tx.send(&()).unwrap();
        let seen: Option<u8> = rx.recv().unwrap();
        assert_eq!(child.wait(), Ok(0));
        assert_eq!(seen, Some(1), "the child's inherited proxy lost its object");
        m.shutdown().unwrap();
    });
}

fn hold_over_tcp(
    (addr, lock, sem, ready): (SocketAddr, LockProxy, SemaphoreProxy, QueueProxy<u8>),
) {
    // Its own remote manager: the proxies it was given reach the server over TCP too.
    let m = Manager::connect(addr, b"tcp holder").unwrap();
    let d = m.dict::<u8, u8>().unwrap();
    d.insert(1, 1).unwrap();
    lock.acquire().unwrap();
    sem.acquire().unwrap();
    ready.put(&1).unwrap();
    std::thread::sleep(Duration::from_secs(600));
    drop(d);
}

/// A remote client (over TCP) SIGKILLed while holding a lock and a semaphore unit gives them
/// back, and what it created goes.
#[test]
fn a_sigkilled_tcp_client_gives_back_what_it_held() {
    watchdog(LIMIT, "manager tcp client killed", || {
        let m = Manager::builder()
            .address(SocketAddr::from(([127, 0, 0, 1], 0)))
            .authkey(&b"tcp holder"[..])
            .start()
            .unwrap();
        let Address::Tcp(addr) = m.address() else {
            panic!("not TCP");
        };
        let lock = m.lock().unwrap();
        let sem = m.semaphore(1).unwrap();
        let ready = m.queue::<u8>().unwrap();
        let probe = raw_client(&m.address(), b"tcp holder", 0x7c9);
        let before = live_objects(&probe, 16);
        let child = Process::new(
            hold_over_tcp,
            (addr, lock.clone(), sem.clone(), ready.clone()),
        )
        .start()
        .unwrap();
        assert_eq!(ready.get_timeout(Duration::from_secs(60)).unwrap(), 1);
        assert!(!lock.try_acquire().unwrap());
        assert!(!sem.try_acquire().unwrap());
        assert_eq!(live_objects(&probe, 16).len(), before.len() + 1);
        child.kill().unwrap();
        child.join().unwrap();
        assert!(lock.acquire_timeout(LONG).unwrap(), "lock kept");
        assert!(sem.acquire_timeout(LONG).unwrap(), "semaphore unit kept");
        assert!(eventually(|| live_objects(&probe, 16) == before));
        drop(probe);
        m.shutdown().unwrap();
    });
}

// ------------------------------------------------------------------ many deaths at once

type Dying = (Vec<u8>, Vec<u8>, SemaphoreProxy, LockProxy, QueueProxy<u32>);

fn hold_and_wait((name, key, sem, lock, ready): Dying) {
    let m = Manager::connect(Address::Abstract(name), &key).unwrap();
    let mut mine = Vec::new();
    for i in 0..4u8 {
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(i, i).unwrap();
        mine.push(d);
    }
    sem.acquire().unwrap();
    // One of them gets the lock; the others wait for it, blocked in the server.
    let first = lock.try_acquire().unwrap();
    ready.put(&u32::from(first)).unwrap();
    if !first {
        lock.acquire().unwrap();
    }
    std::thread::sleep(Duration::from_secs(600));
    drop(mine);
}

/// Eight clients, each holding a semaphore unit and objects, one holding a lock the others
/// wait for, all SIGKILLed together: every unit and the lock come back, every object they
/// created goes, nothing is left behind.
#[test]
fn many_clients_dying_at_once_give_everything_back() {
    watchdog(LIMIT, "manager mass death", || {
        assert_no_leaks(|| {
            const N: u32 = 8;
            let m = Manager::builder().authkey(&b"mass"[..]).start().unwrap();
            let sem = m.semaphore(N).unwrap();
            let lock = m.lock().unwrap();
            let ready = m.queue::<u32>().unwrap();
            let probe = raw_client(&m.address(), b"mass", 0xabc);
            let before = live_objects(&probe, 64);
            let children: Vec<Process> = (0..N)
                .map(|_| {
                    Process::new(
                        hold_and_wait,
                        (
                            abstract_name(&m),
                            b"mass".to_vec(),
                            sem.clone(),
                            lock.clone(),
                            ready.clone(),
                        ),
                    )
                    .start()
                    .unwrap()
                })
                .collect();
            let mut firsts = 0;
            for _ in 0..N {
                firsts += ready.get_timeout(Duration::from_secs(60)).unwrap();
            }
            assert_eq!(firsts, 1);
            assert!(!sem.try_acquire().unwrap());
            assert_eq!(
                live_objects(&probe, 64).len(),
                before.len() + 4 * N as usize
            );
            for c in &children {
                c.kill().unwrap();
            }
            for c in &children {
                c.join().unwrap();
            }
            for i in 0..N {
                assert!(
                    sem.acquire_timeout(LONG).unwrap(),
                    "unit {i} never came back"
                );
            }
            assert!(
                lock.acquire_timeout(LONG).unwrap(),
                "the lock never came back"
            );
            assert!(
                eventually(|| live_objects(&probe, 64) == before),
                "objects outlived their killed creators"
            );
            drop(probe);
            m.shutdown().unwrap();
        });
    });
}

// ------------------------------------------------------------------ hostile releases

/// Releases from a client that did not create an object never take it from its creator, and
/// a stranger cannot release an `RLock` this process holds (a plain `Lock` may be released
/// by anybody, as in Python); the creator's own last drop still frees its objects.
#[test]
fn releases_from_other_clients_do_not_free_an_object() {
    watchdog(LIMIT, "manager foreign release", || {
        let m = Manager::builder().authkey(&b"rel"[..]).start().unwrap();
        let probe = raw_client(&m.address(), b"rel", 0x1234);
        let before = live_objects(&probe, 16);
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 1).unwrap();
        let rlock = m.rlock().unwrap();
        rlock.acquire().unwrap();
        let mine: Vec<u64> = live_objects(&probe, 16)
            .difference(&before)
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(mine.len(), 2);
        for &object in &mine {
            for _ in 0..3 {
                let _ = request(&probe, &WireRequest::Release { object });
            }
            for thread in [0, 1, 2, u64::MAX] {
                let release = WireRequest::Call {
                    object,
                    thread,
                    method: "release".into(),
                    args: to_bytes(&()).unwrap(),
                };
                let _ = request(&probe, &release);
            }
        }
        // Releases of ids nobody holds, and of the shared namespace.
        for object in [0, u64::MAX, 999_999] {
            let _ = request(&probe, &WireRequest::Release { object });
        }
        assert_eq!(d.get(&1).unwrap(), Some(1));
        let r2 = rlock.clone();
        assert!(
            !std::thread::spawn(move || r2.try_acquire().unwrap())
                .join()
                .unwrap(),
            "a stranger released the rlock"
        );
        assert!(rlock.is_owned().unwrap());
        rlock.release().unwrap();
        assert!(m.shared().unwrap().set("x", &1u8).is_ok());
        drop((d, rlock));
        assert!(
            eventually(|| live_objects(&probe, 16) == before),
            "the creator's drop did not release"
        );
        m.shutdown().unwrap();
    });
}

// ------------------------------------------------------------------ hostile greetings

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Silent sockets, garbage handshakes and authenticated clients that never greet do not
/// delay a good client; shutting the server down ends the threads that wait for those
/// greetings instead of leaving them behind.
#[test]
fn silent_and_garbage_greetings_block_nobody_and_die_with_the_server() {
    use std::io::{Read, Write};
    watchdog(LIMIT, "manager slow loris", || {
        let threads = thread_count();
        let m = Manager::serve(SocketAddr::from(([127, 0, 0, 1], 0)), b"loris").unwrap();
        let Address::Tcp(addr) = m.address() else {
            panic!("not TCP");
        };
        let silent: Vec<std::net::TcpStream> = (0..16)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let partial: Vec<std::net::TcpStream> = (0..16)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.write_all(&[0, 0, 0]).unwrap();
                s
            })
            .collect();
        // Authenticated, then not a word: no greeting.
        let mute: Vec<shmproc::Connection> = (0..4)
            .map(|_| shmproc::Client::connect(m.address(), Some(b"loris")).unwrap())
            .collect();
        // Authenticated, then a greeting far over a nonce's size.
        let big = shmproc::Client::connect(m.address(), Some(b"loris")).unwrap();
        big.send_bytes(&vec![0xee; 4096]).unwrap();
        assert!(
            big.recv_bytes().is_err(),
            "an oversized greeting was answered"
        );
        let good = Manager::connect(addr, b"loris").unwrap();
        let l = good.list::<u32>().unwrap();
        for i in 0..50 {
            l.push(i).unwrap();
        }
        assert_eq!(l.len().unwrap(), 50);
        // Served while the silent ones still wait: the server has not closed them.
        for mut s in silent.into_iter().chain(partial) {
            s.set_nonblocking(true).unwrap();
            let mut b = [0u8; 64];
            match s.read(&mut b) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Ok(n) if n > 0 => {} // the server's challenge
                other => eprintln!("a silent socket already ended: {other:?}"),
            }
        }
        drop(l);
        drop(good);
        m.shutdown().unwrap();
        drop(m);
        assert!(
            eventually(|| thread_count() <= threads),
            "{} threads left behind by the server, {threads} before",
            thread_count()
        );
        drop(mute);
    });
}

/// Authenticated clients that start a greeting's frame (its length, a few bytes) and stall,
/// on a TCP and on a Unix socket server: others are served, and the server's shutdown ends
/// the threads reading those greetings rather than leaving them blocked.
#[test]
fn a_stalled_greeting_frame_does_not_outlive_the_server() {
    use std::io::Write;
    use std::os::fd::AsFd;
    watchdog(LIMIT, "manager stalled greeting", || {
        let threads = thread_count();
        let unix = Address::Abstract(
            format!("shmproc-test-adv-stall-{}", std::process::id()).into_bytes(),
        );
        // Both servers at once: each shutdown waits for its stalled readers. The stalled
        // clients stay connected until the end.
        let stalled: Vec<_> = std::thread::scope(|scope| {
            let servers: Vec<_> = [Address::from(SocketAddr::from(([127, 0, 0, 1], 0))), unix]
                .into_iter()
                .map(|addr| {
                    scope.spawn(move || {
                        let m = Manager::serve(addr, b"stall").unwrap();
                        let stalled: Vec<(shmproc::Connection, std::fs::File)> = (0..3)
                            .map(|_| {
                                let c =
                                    shmproc::Client::connect(m.address(), Some(b"stall")).unwrap();
                                let fd = c.readiness().unwrap().as_fd().try_clone_to_owned();
                                let mut f = std::fs::File::from(fd.unwrap());
                                f.write_all(&[12, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]).unwrap();
                                (c, f)
                            })
                            .collect();
                        let l = m.list::<u32>().unwrap();
                        l.push(1).unwrap();
                        assert_eq!(l.to_vec().unwrap(), [1]);
                        drop(l);
                        m.shutdown().unwrap();
                        drop(m);
                        stalled
                    })
                })
                .collect();
            servers.into_iter().map(|s| s.join().unwrap()).collect()
        });
        assert!(
            eventually(|| thread_count() <= threads),
            "{} threads left behind by the servers, {threads} before",
            thread_count()
        );
        drop(stalled);
    });
}

/// A remote client that greets, then stalls part-way through a request's frame: others are
/// served, and the in-process server's shutdown ends the thread reading that request.
#[test]
fn a_stalled_request_frame_does_not_outlive_the_server() {
    use std::io::Write;
    use std::os::fd::AsFd;
    watchdog(LIMIT, "manager stalled request", || {
        let threads = thread_count();
        let m = Manager::serve(SocketAddr::from(([127, 0, 0, 1], 0)), b"stall").unwrap();
        let c = raw_client(&m.address(), b"stall", 0x57a1);
        assert!(request(&c, &WireRequest::Ping).is_ok());
        let fd = c.readiness().unwrap().as_fd().try_clone_to_owned();
        let mut f = std::fs::File::from(fd.unwrap());
        f.write_all(&[40, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0]).unwrap();
        let l = m.list::<u32>().unwrap();
        l.push(1).unwrap();
        assert_eq!(l.to_vec().unwrap(), [1]);
        drop(l);
        m.shutdown().unwrap();
        drop(m);
        assert!(
            eventually(|| thread_count() <= threads),
            "{} threads left behind by the server, {threads} before",
            thread_count()
        );
        drop((c, f));
    });
}

// ------------------------------------------------------------------ after the server

/// Every kind of proxy errors (never hangs) after its server's shutdown, and so do the
/// manager's factories.
#[test]
fn every_proxy_errors_after_shutdown() {
    watchdog(LIMIT, "manager after shutdown", || {
        assert_no_leaks(|| {
            for serve in [false, true] {
                let m = if serve {
                    Manager::serve(
                        Address::Abstract(
                            format!("shmproc-test-adv-{}", std::process::id()).into_bytes(),
                        ),
                        b"k",
                    )
                    .unwrap()
                } else {
                    Manager::start().unwrap()
                };
                let d = m.dict::<u8, u8>().unwrap();
                let l = m.list::<u8>().unwrap();
                let lock = m.lock().unwrap();
                let sem = m.semaphore(0).unwrap();
                let cond = m.condition().unwrap();
                let ev = m.event().unwrap();
                let bar = m.barrier(2).unwrap();
                let q = m.queue::<u8>().unwrap();
                lock.acquire().unwrap();
                let (q2, sem2, ev2) = (q.clone(), sem.clone(), ev.clone());
                let blocked = std::thread::spawn(move || {
                    (
                        q2.get().is_err(),
                        sem2.acquire().is_err(),
                        ev2.wait(None).is_err(),
                    )
                });
                let bar2 = bar.clone();
                let barrier = std::thread::spawn(move || bar2.wait().is_err());
                std::thread::sleep(Duration::from_millis(300));
                m.shutdown().unwrap();
                assert!(d.get(&1).is_err());
                assert!(l.push(1).is_err());
                assert!(lock.release().is_err());
                assert!(lock.acquire().is_err());
                assert!(cond.acquire().is_err());
                assert!(ev.set().is_err());
                assert!(q.put(&1).is_err());
                assert!(m.dict::<u8, u8>().is_err());
                assert!(m.shared().and_then(|n| n.set("x", &1u8)).is_err());
                // The blocked calls end too (one of them may have been cut in turn).
                let (a, b, c) = blocked.join().unwrap();
                assert!(a, "a blocked get survived the shutdown");
                let _ = (b, c);
                assert!(
                    barrier.join().unwrap(),
                    "a barrier wait survived the shutdown"
                );
            }
        });
    });
}

/// A server on TCP that is SIGKILLed: calls, blocked ones included, get an error.
#[test]
fn a_sigkilled_tcp_server_gives_errors_not_hangs() {
    watchdog(LIMIT, "manager tcp server killed", || {
        let m = Manager::builder()
            .address(SocketAddr::from(([127, 0, 0, 1], 0)))
            .authkey(&b"tcp kill"[..])
            .start()
            .unwrap();
        let remote = Manager::connect(m.address(), b"tcp kill").unwrap();
        let d = remote.dict::<u8, u8>().unwrap();
        d.insert(1, 1).unwrap();
        let q = remote.queue::<u8>().unwrap();
        let q2 = q.clone();
        let waiter = std::thread::spawn(move || q2.get());
        std::thread::sleep(Duration::from_millis(300));
        m.process().unwrap().kill().unwrap();
        assert!(waiter.join().unwrap().is_err());
        assert!(d.get(&1).is_err());
        assert!(remote.dict::<u8, u8>().is_err());
        m.shutdown().unwrap();
    });
}

// ------------------------------------------------------------------ inherited proxies

/// A forked child's inherited proxies hold references of their own: once the parent dropped
/// its proxies the child still reaches the objects, and when the child is SIGKILLed they go
/// (nothing pins them for good).
#[test]
fn a_sigkilled_forked_child_takes_its_inherited_references_with_it() {
    watchdog(LIMIT, "manager inherited kill", || {
        assert_no_leaks(|| {
            let m = Manager::builder().authkey(&b"inherit"[..]).start().unwrap();
            let probe = raw_client(&m.address(), b"inherit", 0x1a1);
            let before = live_objects(&probe, 32);
            let d = m.dict::<u8, u8>().unwrap();
            d.insert(1, 1).unwrap();
            let l = m.list::<u8>().unwrap();
            let (d2, l2) = (d.clone(), l.clone());
            let (rx, tx) = shmproc::pipe_simplex().unwrap();
            let (go_rx, go_tx) = shmproc::pipe_simplex().unwrap();
            // SAFETY: no other thread of this test holds a lock the child takes.
            let mut child =
                shmproc::testing::fork(unsafe { shmproc::testing::ForkPermit::new() }, move || {
                    go_rx.recv::<()>().unwrap();
                    l2.push(7).unwrap();
                    tx.send(&d2.get(&1).ok().flatten()).unwrap();
                    std::thread::sleep(Duration::from_secs(600));
                    drop((d2, l2));
                    0
                });
            drop((d, l));
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(live_objects(&probe, 32).len(), before.len() + 2);
            go_tx.send(&()).unwrap();
            assert_eq!(rx.recv::<Option<u8>>().unwrap(), Some(1));
            assert!(child.kill().is_err(), "the child was not killed");
            assert!(
                eventually(|| live_objects(&probe, 32) == before),
                "objects outlived the killed child that inherited them"
            );
            drop(probe);
            m.shutdown().unwrap();
        });
    });
}

/// Forked children that drop their inherited proxies or exit release what the parent took
/// for them; the parent's own references stay until it drops its proxies.
#[test]
fn forked_children_release_their_inherited_references() {
    watchdog(LIMIT, "manager inherited release", || {
        let m = Manager::builder()
            .authkey(&b"inherit2"[..])
            .start()
            .unwrap();
        let probe = raw_client(&m.address(), b"inherit2", 0x1a2);
        let before = live_objects(&probe, 32);
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 1).unwrap();
        for i in 0..3 {
            let d2 = d.clone();
            // SAFETY: no other thread of this test holds a lock the child takes.
            let mut child =
                shmproc::testing::fork(unsafe { shmproc::testing::ForkPermit::new() }, move || {
                    d2.insert(2, i).unwrap();
                    // The first drops its copy itself; the others leave it to their exit.
                    if i == 0 {
                        drop(d2);
                    } else {
                        std::mem::forget(d2);
                    }
                    0
                });
            assert_eq!(child.wait(), Ok(0));
            assert_eq!(d.get(&2).unwrap(), Some(i));
        }
        assert_eq!(live_objects(&probe, 32).len(), before.len() + 1);
        drop(d);
        assert!(
            eventually(|| live_objects(&probe, 32) == before),
            "a forked child's inherited reference outlived it"
        );
        drop(probe);
        m.shutdown().unwrap();
    });
}

fn fork_forever((name, key, ready): (Vec<u8>, Vec<u8>, QueueProxy<u8>)) {
    let m = Manager::connect(Address::Abstract(name), &key).unwrap();
    // Held across every fork: each child inherits four proxies.
    let _kept: Vec<DictProxy<u8, u8>> = (0..4).map(|_| m.dict().unwrap()).collect();
    let mut n = 0u32;
    loop {
        // SAFETY: this process has one thread.
        let mut c = shmproc::testing::fork(unsafe { shmproc::testing::ForkPermit::new() }, || 0);
        let _ = c.wait();
        n += 1;
        if n == 5 {
            ready.put(&1).unwrap();
        }
    }
}

/// A process SIGKILLed at any point of a loop of forks (while it takes references for its
/// next child, between its fork and its closing of that connection, while a child runs)
/// leaves nothing behind: its objects and every reference taken for its children go.
#[test]
fn a_process_killed_mid_fork_leaves_no_reference_behind() {
    watchdog(LIMIT, "manager fork kill", || {
        let m = Manager::builder()
            .authkey(&b"forkkill"[..])
            .start()
            .unwrap();
        let ready = m.queue::<u8>().unwrap();
        let probe = raw_client(&m.address(), b"forkkill", 0x1a3);
        let before = live_objects(&probe, 4096);
        for round in 0..4u64 {
            let p = Process::new(
                fork_forever,
                (abstract_name(&m), b"forkkill".to_vec(), ready.clone()),
            )
            .start()
            .unwrap();
            assert_eq!(ready.get_timeout(Duration::from_secs(60)).unwrap(), 1);
            std::thread::sleep(Duration::from_millis(7 * round));
            p.kill().unwrap();
            p.join().unwrap();
        }
        assert!(
            eventually(|| live_objects(&probe, 4096) == before),
            "objects outlived a process killed mid-fork"
        );
        drop(probe);
        m.shutdown().unwrap();
    });
}

// ------------------------------------------------------------------ pins

type Handoff = (
    Vec<u8>,
    Vec<u8>,
    QueueProxy<DictProxy<u8, u8>>,
    QueueProxy<shmproc::manager::ListProxy<u8>>,
);

fn create_put_and_exit((name, key, qd, ql): Handoff) {
    let m = Manager::connect(Address::Abstract(name), &key).unwrap();
    let d = m.dict::<u8, u8>().unwrap();
    d.insert(1, 11).unwrap();
    qd.put(&d).unwrap();
    let l = m.list::<u8>().unwrap();
    l.push(5).unwrap();
    ql.put(&l).unwrap();
}

fn take_wait_and_read((q, wait): (QueueProxy<DictProxy<u8, u8>>, Duration)) -> Option<u8> {
    let d = q.get_timeout(Duration::from_secs(60)).unwrap();
    // Past the pin's grace: the object lives by this process's own reference.
    std::thread::sleep(wait);
    d.get(&1).unwrap()
}

/// Proxies put in queues by a process that then exits: the one a child takes out reaches
/// its object past the pin's grace, and it goes when that child exits; the one nobody takes
/// is released once the grace is over, while the server runs.
#[test]
fn pins_end_after_their_process_and_a_grace_unless_a_receiver_adopted() {
    watchdog(LIMIT, "manager pin grace", || {
        let grace = Duration::from_secs(1);
        let m = Manager::builder()
            .authkey(&b"pins"[..])
            .pin_grace(grace)
            .start()
            .unwrap();
        let qd = m.queue::<DictProxy<u8, u8>>().unwrap();
        let ql = m.queue::<shmproc::manager::ListProxy<u8>>().unwrap();
        let probe = raw_client(&m.address(), b"pins", 0x1a4);
        let before = live_objects(&probe, 64);
        let a = Process::new(
            create_put_and_exit,
            (abstract_name(&m), b"pins".to_vec(), qd.clone(), ql.clone()),
        )
        .start()
        .unwrap();
        a.join().unwrap();
        let b = shmproc::spawn(take_wait_and_read, (qd.clone(), grace * 3)).unwrap();
        // The list nobody takes goes after the grace; the dict lives while `b` holds it.
        assert!(
            eventually(|| {
                let live = live_objects(&probe, 64);
                let extra: Vec<_> = live.difference(&before).map(|(_, t)| t.clone()).collect();
                extra == ["shmproc.dict"]
            }),
            "the list pinned by a process gone for its grace is still held: {:?}",
            live_objects(&probe, 64)
                .difference(&before)
                .collect::<Vec<_>>()
        );
        assert_eq!(b.join().unwrap(), Some(11), "the adopted dict was lost");
        assert_eq!(ql.len().unwrap(), 1, "the list's token is still queued");
        assert!(
            eventually(|| live_objects(&probe, 64) == before),
            "the dict outlived its receiver and its pin's grace"
        );
        // The token left in the queue decodes, and its calls fail.
        let l = ql.try_get().unwrap();
        assert!(l.len().is_err());
        drop(probe);
        m.shutdown().unwrap();
    });
}

/// A proxy stored in a managed list keeps its object while the process that stored it
/// lives, though it dropped its own proxy and a child took another copy of it out of a
/// queue and exited: the list's copy can be read back any number of times.
#[test]
fn a_pinned_object_lives_while_its_pinner_lives() {
    watchdog(LIMIT, "manager pin alive", || {
        let m = Manager::builder()
            .pin_grace(Duration::from_millis(100))
            .start()
            .unwrap();
        let q = m.queue::<DictProxy<u8, u8>>().unwrap();
        let l = m.list::<DictProxy<u8, u8>>().unwrap();
        {
            let d = m.dict::<u8, u8>().unwrap();
            d.insert(1, 11).unwrap();
            q.put(&d).unwrap();
            l.push(d).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        let b =
            shmproc::spawn(take_wait_and_read, (q.clone(), Duration::from_millis(300))).unwrap();
        assert_eq!(b.join().unwrap(), Some(11));
        for _ in 0..3 {
            let d = l.get(0).unwrap().unwrap();
            assert_eq!(d.get(&1).unwrap(), Some(11));
        }
        m.shutdown().unwrap();
    });
}

// ------------------------------------------------------------------ TCP frames and keepalive

/// A raw TCP client's frame over the 64 MiB cap (its length, a few of its bytes, then a
/// well-formed ping) is never read into memory: that connection gets an error reply and
/// ends, rather than reading the frame's bytes as further frames, and the server goes on
/// serving a good client and new connections.
#[test]
fn an_over_cap_frame_over_tcp_ends_that_connection_only() {
    use std::io::Write;
    use std::os::fd::AsFd;
    watchdog(LIMIT, "manager over-cap frame", || {
        let m = Manager::serve(SocketAddr::from(([127, 0, 0, 1], 0)), b"cap").unwrap();
        let good = Manager::connect(m.address(), b"cap").unwrap();
        let l = good.list::<u32>().unwrap();
        l.push(1).unwrap();
        let c = raw_client(&m.address(), b"cap", 0xcab);
        assert!(request(&c, &WireRequest::Ping).is_ok());
        let fd = c.readiness().unwrap().as_fd().try_clone_to_owned();
        let mut f = std::fs::File::from(fd.unwrap());
        let mut bytes = ((64u64 << 20) + 1).to_le_bytes().to_vec();
        bytes.extend([0xff; 64]);
        let ping = to_bytes(&WireRequest::Ping).unwrap();
        bytes.extend((ping.len() as u64).to_le_bytes());
        bytes.extend(&ping);
        f.write_all(&bytes).unwrap();
        match c.recv_bytes() {
            Ok(reply) => {
                assert_eq!(reply.first(), Some(&1), "an over-cap frame was served");
                assert!(
                    c.recv_bytes().is_err(),
                    "the connection read on after an over-cap frame"
                );
            }
            Err(e) => eprintln!("the over-cap frame's connection ended before its reply: {e}"),
        }
        l.push(2).unwrap();
        assert_eq!(l.to_vec().unwrap(), [1, 2]);
        let c2 = raw_client(&m.address(), b"cap", 0xcac);
        assert!(request(&c2, &WireRequest::Ping).is_ok());
        drop((c, c2, f, l, good));
        m.shutdown().unwrap();
    });
}

/// Both ends of a manager's TCP connections have keepalive on (a peer host that vanished is
/// noticed): the server's accepted sockets and the remote client's.
#[test]
fn manager_tcp_connections_have_keepalive_on_both_ends() {
    watchdog(LIMIT, "manager keepalive", || {
        let m = Manager::serve(SocketAddr::from(([127, 0, 0, 1], 0)), b"ka").unwrap();
        let Address::Tcp(addr) = m.address() else {
            panic!("not TCP");
        };
        let remote = Manager::connect(addr, b"ka").unwrap();
        let d = remote.dict::<u8, u8>().unwrap();
        d.insert(1, 1).unwrap();
        let sockets = shmproc::testing::tcp_sockets();
        let server: Vec<_> = sockets
            .iter()
            .filter(|s| s.local.port() == addr.port())
            .collect();
        let client: Vec<_> = sockets
            .iter()
            .filter(|s| s.peer.port() == addr.port())
            .collect();
        assert!(!server.is_empty(), "no accepted socket in {sockets:?}");
        assert!(!client.is_empty(), "no client socket in {sockets:?}");
        for s in server.iter().chain(&client) {
            assert!(s.keepalive, "keepalive off: {s:?}");
            assert_eq!(s.keepalive_idle, Duration::from_secs(30), "{s:?}");
        }
        drop(d);
        m.shutdown().unwrap();
    });
}

/// A proxy passed through a queue is taken over by its receiver: once the creator dropped
/// its own and the receiving child exited, the object goes, while the creator still runs.
#[test]
fn a_pin_taken_over_by_its_receiver_ends_with_the_receiver() {
    watchdog(LIMIT, "manager pin taken over", || {
        assert_no_leaks(|| {
            let m = Manager::builder().authkey(&b"lend"[..]).start().unwrap();
            let q = m.queue::<DictProxy<u8, u8>>().unwrap();
            let probe = raw_client(&m.address(), b"lend", 0x1a5);
            let before = live_objects(&probe, 64);
            for i in 0..3 {
                let d = m.dict::<u8, u8>().unwrap();
                d.insert(1, i).unwrap();
                q.put(&d).unwrap();
                drop(d);
                let b = shmproc::spawn(take_wait_and_read, (q.clone(), Duration::ZERO)).unwrap();
                assert_eq!(b.join().unwrap(), Some(i), "the queued dict was lost");
            }
            assert!(
                eventually(|| live_objects(&probe, 64) == before),
                "objects handed over through a queue outlived their receivers"
            );
            drop(probe);
            m.shutdown().unwrap();
        });
    });
}

type Relay = (
    QueueProxy<DictProxy<u8, u8>>,
    QueueProxy<DictProxy<u8, u8>>,
    u8,
    u8,
);

fn relay((from, to, n, mark): Relay) {
    for _ in 0..n {
        let d = from.get_timeout(Duration::from_secs(60)).unwrap();
        d.insert(mark, mark).unwrap();
        to.put(&d).unwrap();
    }
}

/// Proxies relayed through two child processes and back, then dropped everywhere: every
/// object goes while the server and the creator run (each hop's pin was taken over), and
/// nothing is left in `/dev/shm` or among the descriptors.
#[test]
fn proxies_relayed_between_processes_and_dropped_leave_nothing() {
    watchdog(LIMIT, "manager relay", || {
        assert_no_leaks(|| {
            const N: u8 = 10;
            let m = Manager::builder().authkey(&b"relay"[..]).start().unwrap();
            let qs: Vec<QueueProxy<DictProxy<u8, u8>>> =
                (0..3).map(|_| m.queue().unwrap()).collect();
            let probe = raw_client(&m.address(), b"relay", 0x1a6);
            let before = live_objects(&probe, 256);
            for i in 0..N {
                let d = m.dict::<u8, u8>().unwrap();
                d.insert(0, i).unwrap();
                qs[0].put(&d).unwrap();
            }
            let a = shmproc::spawn(relay, (qs[0].clone(), qs[1].clone(), N, 1)).unwrap();
            let b = shmproc::spawn(relay, (qs[1].clone(), qs[2].clone(), N, 2)).unwrap();
            let back: Vec<DictProxy<u8, u8>> = (0..N)
                .map(|_| qs[2].get_timeout(Duration::from_secs(60)).unwrap())
                .collect();
            a.join().unwrap();
            b.join().unwrap();
            for (i, d) in back.iter().enumerate() {
                assert_eq!(d.items().unwrap(), [(0, i as u8), (1, 1), (2, 2)]);
            }
            assert_eq!(live_objects(&probe, 256).len(), before.len() + N as usize);
            drop(back);
            assert!(
                eventually(|| live_objects(&probe, 256) == before),
                "relayed objects outlived every proxy"
            );
            drop(probe);
            m.shutdown().unwrap();
        });
    });
}

// ------------------------------------------------------------------ forged and replayed tokens

/// The id of the one object the server holds beyond `before`.
fn the_new_object(probe: &shmproc::Connection, before: &BTreeSet<(u64, String)>) -> u64 {
    let new: Vec<u64> = live_objects(probe, 64)
        .difference(before)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(new.len(), 1, "expected one new object: {new:?}");
    new[0]
}

/// A client that never received a token cannot take over its pin: adopting pin ids near
/// one it lent itself (pin ids come from one counter) and releasing what it adopted must not
/// free an object whose only keeper is a token queued for another process.
#[test]
fn a_stranger_adopting_guessed_pins_cannot_free_an_object_in_flight() {
    watchdog(LIMIT, "manager pin theft", || {
        let m = Manager::builder().authkey(&b"theft"[..]).start().unwrap();
        let q = m.queue::<DictProxy<u8, u8>>().unwrap();
        let probe = raw_client(&m.address(), b"theft", 0x7e1);
        let before = live_objects(&probe, 64);
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 42).unwrap();
        q.put(&d).unwrap();
        drop(d);
        let x = the_new_object(&probe, &before);
        let thief = raw_client(&m.address(), b"theft", 0x7e2);
        let own: u64 =
            from_bytes(&request(&thief, &WireRequest::Lend { object: x }).unwrap()).unwrap();
        let mut adopted = 0;
        for pin in own.saturating_sub(64)..=own {
            if request(&thief, &WireRequest::Adopt { object: x, pin }).is_ok() {
                adopted += 1;
            }
        }
        for _ in 0..adopted {
            let _ = request(&thief, &WireRequest::Release { object: x });
        }
        let got = q.get_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            got.get(&1).ok().flatten(),
            Some(42),
            "a stranger's adopt-and-release freed an object in flight"
        );
        drop((got, thief, probe));
        m.shutdown().unwrap();
    });
}

fn decode_and_read(token: Vec<u8>) -> Option<u8> {
    let d: DictProxy<u8, u8> = from_bytes(&token).unwrap();
    d.get(&1).unwrap()
}

/// One token decoded twice in this process and once in a child (a replay): each copy holds
/// its own reference, the object lives until the last of them is dropped and then goes, and
/// the same bytes decoded after that give a proxy whose calls fail (no panic anywhere).
#[test]
fn a_token_decoded_again_and_again_keeps_and_frees_its_object_once() {
    watchdog(LIMIT, "manager token replay", || {
        assert_no_leaks(|| {
            let m = Manager::builder().authkey(&b"replay"[..]).start().unwrap();
            let probe = raw_client(&m.address(), b"replay", 0x7e3);
            let before = live_objects(&probe, 64);
            let d = m.dict::<u8, u8>().unwrap();
            d.insert(1, 5).unwrap();
            let token = to_bytes(&d).unwrap();
            let t1: DictProxy<u8, u8> = from_bytes(&token).unwrap();
            let t2: DictProxy<u8, u8> = from_bytes(&token).unwrap();
            drop(d);
            assert_eq!(t1.get(&1).unwrap(), Some(5));
            drop(t1);
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(
                t2.get(&1).unwrap(),
                Some(5),
                "a replayed copy lost its object"
            );
            let child = shmproc::spawn(decode_and_read, token.clone()).unwrap();
            assert_eq!(child.join().unwrap(), Some(5));
            assert_eq!(t2.get(&1).unwrap(), Some(5));
            drop(t2);
            assert!(
                eventually(|| live_objects(&probe, 64) == before),
                "an object decoded three times outlived every copy"
            );
            let late: DictProxy<u8, u8> = from_bytes(&token).unwrap();
            assert!(
                late.get(&1).is_err(),
                "a token of a freed object reached one"
            );
            drop((late, probe));
            m.shutdown().unwrap();
        });
    });
}

/// Forged lifetime requests from a client (references to another client's object in huge,
/// repeated and overflowing counts, to unknown objects and to the shared namespace, adoption
/// of pins never lent, releases beyond what it holds, a large `Inherit`) are answered without
/// a panic; they free nothing of another client; and what they took ends with the forger's
/// connection.
#[test]
fn forged_references_free_nothing_and_end_with_their_forger() {
    watchdog(LIMIT, "manager forged references", || {
        let m = Manager::builder().authkey(&b"forge"[..]).start().unwrap();
        let probe = raw_client(&m.address(), b"forge", 0x7e4);
        let before = live_objects(&probe, 64);
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 9).unwrap();
        let x = the_new_object(&probe, &before);
        let forger = raw_client(&m.address(), b"forge", 0x7e5);
        let huge = vec![
            (x, u32::MAX),
            (x, u32::MAX),
            (x, 0),
            (0, u32::MAX),
            (u64::MAX, 1),
            (999_999, u32::MAX),
        ];
        assert!(request(&forger, &WireRequest::Inherit { objects: huge }).is_ok());
        let many: Vec<(u64, u32)> = (0..200_000u64).map(|i| (i % 1024, 1)).collect();
        assert!(request(&forger, &WireRequest::Inherit { objects: many }).is_ok());
        assert!(request(&forger, &WireRequest::Inherit { objects: vec![] }).is_ok());
        for (object, pin) in [(x, 0), (x, u64::MAX), (0, 0), (0, 1)] {
            assert!(request(&forger, &WireRequest::Adopt { object, pin }).is_ok());
        }
        for object in [u64::MAX, 999_999] {
            assert!(request(&forger, &WireRequest::Adopt { object, pin: 1 }).is_err());
            assert!(request(&forger, &WireRequest::Lend { object }).is_err());
        }
        for _ in 0..10 {
            let _ = request(&forger, &WireRequest::Release { object: x });
        }
        assert_eq!(d.get(&1).unwrap(), Some(9), "a forger's releases freed it");
        // The forger still holds saturated references: the creator's drop keeps it ...
        drop(d);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            live_objects(&probe, 64).iter().any(|(id, _)| *id == x),
            "the forger's adopted references were not honoured"
        );
        // ... until the forger's connection ends.
        drop(forger);
        assert!(
            eventually(|| live_objects(&probe, 64) == before),
            "forged references outlived their forger"
        );
        assert!(request(&probe, &WireRequest::Ping).is_ok());
        drop(probe);
        m.shutdown().unwrap();
    });
}

/// Tokens encoded and never decoded (dropped bytes, a child that died before reading its
/// pipe) should not keep their object for the life of the encoding process: each encoding
/// adds one pin there that nothing but that process's exit ends.
#[test]
fn tokens_never_decoded_do_not_keep_their_object_while_the_encoder_lives() {
    watchdog(LIMIT, "manager undelivered tokens", || {
        let m = Manager::builder()
            .authkey(&b"undelivered"[..])
            .pin_grace(Duration::from_millis(100))
            .start()
            .unwrap();
        let probe = raw_client(&m.address(), b"undelivered", 0x7e6);
        let before = live_objects(&probe, 64);
        let d = m.dict::<u8, u8>().unwrap();
        for _ in 0..1000 {
            drop(to_bytes(&d).unwrap());
        }
        let (rx, tx) = shmproc::pipe_simplex().unwrap();
        // SAFETY: no other thread of this test holds a lock the child takes.
        let mut child =
            shmproc::testing::fork(unsafe { shmproc::testing::ForkPermit::new() }, move || {
                drop(rx);
                0
            });
        assert_eq!(child.wait(), Ok(0));
        let _ = tx.send(&d);
        drop((d, tx));
        assert!(
            eventually(|| live_objects(&probe, 64) == before),
            "undelivered tokens kept their object while the encoder lives"
        );
        drop(probe);
        m.shutdown().unwrap();
    });
}

// ------------------------------------------------------------------ forks at awkward times

fn signal(pid: i32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid} failed");
}

/// Forks (from a thread, with a watchdog) and returns the child's exit code, or `None` if
/// the fork and the child's run took more than `limit`.
fn fork_within(limit: Duration, f: impl FnOnce() -> i32 + Send + 'static) -> Option<i32> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: no other thread of this test holds a lock the child takes.
        let mut c = shmproc::testing::fork(unsafe { shmproc::testing::ForkPermit::new() }, f);
        let _ = tx.send(c.wait());
    });
    rx.recv_timeout(limit).ok().map(|r| r.unwrap_or(-1))
}

/// A fork by a process holding proxies of a server that is stopped (SIGSTOP: it accepts
/// nothing, answers nothing) does not wait for that server past the connection's handshake
/// timeout; with one that was killed it goes on at once, and the child's proxies fail.
#[test]
fn a_fork_does_not_wait_for_a_stopped_or_dead_server() {
    watchdog(LIMIT, "manager fork stopped server", || {
        let m = Manager::builder().authkey(&b"stopped"[..]).start().unwrap();
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 1).unwrap();
        let pid = m.process().unwrap().pid();
        signal(pid, "-STOP");
        let stopped = fork_within(Duration::from_secs(20), || 0);
        signal(pid, "-CONT");
        m.process().unwrap().kill().unwrap();
        let _ = m.process().unwrap().join();
        let d2 = d.clone();
        let dead = fork_within(Duration::from_secs(20), move || {
            i32::from(d2.get(&1).is_ok())
        });
        assert_eq!(
            dead,
            Some(0),
            "a fork with a dead server hung or its proxy worked"
        );
        assert_eq!(stopped, Some(0), "a fork waited 20 s for a stopped server");
        drop(d);
    });
}

/// A grandchild forked by a forked child keeps the proxies it inherited (through both forks)
/// after its parent exited and its grandparent dropped its own; they go when it exits.
#[test]
fn a_grandchild_keeps_inherited_proxies_past_both_ancestors() {
    watchdog(LIMIT, "manager grandchild", || {
        let m = Manager::builder().authkey(&b"grand"[..]).start().unwrap();
        let probe = raw_client(&m.address(), b"grand", 0x7e7);
        let before = live_objects(&probe, 64);
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 3).unwrap();
        let d2 = d.clone();
        let (rx, tx) = shmproc::pipe_simplex().unwrap();
        let (go_rx, go_tx) = shmproc::pipe_simplex().unwrap();
        // SAFETY: no other thread of this test holds a lock the child takes.
        let mut child =
            shmproc::testing::fork(unsafe { shmproc::testing::ForkPermit::new() }, move || {
                // SAFETY: the child runs this one thread.
                let g = shmproc::testing::fork(
                    unsafe { shmproc::testing::ForkPermit::new() },
                    move || {
                        go_rx.recv::<()>().unwrap();
                        tx.send(&d2.get(&1).ok().flatten()).unwrap();
                        drop(d2);
                        0
                    },
                );
                std::mem::forget(g);
                0
            });
        assert_eq!(child.wait(), Ok(0));
        drop(d);
        std::thread::sleep(Duration::from_millis(300));
        go_tx.send(&()).unwrap();
        assert_eq!(
            rx.recv::<Option<u8>>().unwrap(),
            Some(3),
            "a grandchild lost its inherited object"
        );
        assert!(
            eventually(|| live_objects(&probe, 64) == before),
            "objects outlived the grandchild that inherited them"
        );
        drop(probe);
        m.shutdown().unwrap();
    });
}

// ------------------------------------------------------------------ raw TCP frames

/// Over TCP, after the greeting: garbage frames and forged lifetime requests get error (or
/// harmless) replies and the connection serves on; a length prefix alone, sent slowly byte
/// by byte, blocks nobody else.
#[test]
fn garbage_frames_after_the_greeting_over_tcp_are_errors_only() {
    use std::io::Write;
    use std::os::fd::AsFd;
    watchdog(LIMIT, "manager tcp garbage", || {
        let m = Manager::serve(SocketAddr::from(([127, 0, 0, 1], 0)), b"junk").unwrap();
        let good = Manager::connect(m.address(), b"junk").unwrap();
        let l = good.list::<u32>().unwrap();
        let c = raw_client(&m.address(), b"junk", 0x7e9);
        for junk in [
            vec![],
            vec![0xff; 7],
            vec![9, 0, 0, 0],
            vec![2, 1, 2, 3, 4, 5],
        ] {
            c.send_bytes(&junk).unwrap();
            let reply = c.recv_bytes().unwrap();
            assert_eq!(reply.first(), Some(&1), "garbage {junk:?} was served");
        }
        assert!(
            request(
                &c,
                &WireRequest::Adopt {
                    object: 12345,
                    pin: 1
                }
            )
            .is_err()
        );
        assert!(
            request(
                &c,
                &WireRequest::Inherit {
                    objects: vec![(0, u32::MAX)]
                }
            )
            .is_ok()
        );
        assert!(request(&c, &WireRequest::Ping).is_ok());
        // A slow client: a length prefix one byte at a time, never finished.
        let slow = raw_client(&m.address(), b"junk", 0x7ea);
        let fd = slow.readiness().unwrap().as_fd().try_clone_to_owned();
        let mut f = std::fs::File::from(fd.unwrap());
        for b in 5u64.to_le_bytes().iter().take(5) {
            f.write_all(&[*b]).unwrap();
            l.push(u32::from(*b)).unwrap();
        }
        assert_eq!(l.len().unwrap(), 5);
        assert!(request(&c, &WireRequest::Ping).is_ok());
        drop((c, slow, f, l, good));
        m.shutdown().unwrap();
    });
}

/// Over TCP, request frames that arrive together (two in one write) are each served, in
/// order; one that arrives in pieces (split inside its length and its body) is served once
/// whole; and a client sending its next request before reading the reply gets both replies.
#[test]
fn tcp_request_frames_together_and_in_pieces_are_served_in_order() {
    use std::io::Write;
    use std::os::fd::AsFd;
    watchdog(LIMIT, "manager tcp frames", || {
        let m = Manager::serve(SocketAddr::from(([127, 0, 0, 1], 0)), b"frames").unwrap();
        let c = raw_client(&m.address(), b"frames", 0xf4a);
        let fd = c.readiness().unwrap().as_fd().try_clone_to_owned();
        let mut f = std::fs::File::from(fd.unwrap());
        let frame = |body: &[u8]| {
            let mut v = (body.len() as u64).to_le_bytes().to_vec();
            v.extend_from_slice(body);
            v
        };
        let ping = to_bytes(&WireRequest::Ping).unwrap();
        // Garbage (an error reply), then a ping (an Ok reply), in one write.
        let mut two = frame(&[0xff; 5]);
        two.extend(frame(&ping));
        f.write_all(&two).unwrap();
        assert_eq!(c.recv_bytes().unwrap().first(), Some(&1), "garbage first");
        assert_eq!(c.recv_bytes().unwrap().first(), Some(&0), "then the ping");
        // A ping in pieces, then garbage: one reply each, in order.
        let mut pieces = frame(&ping);
        pieces.extend(frame(&[0xfe; 3]));
        for piece in [&pieces[..3], &pieces[3..9], &pieces[9..]] {
            f.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(c.recv_bytes().unwrap().first(), Some(&0), "the ping first");
        assert_eq!(
            c.recv_bytes().unwrap().first(),
            Some(&1),
            "then the garbage"
        );
        assert!(request(&c, &WireRequest::Ping).is_ok());
        drop((c, f));
        m.shutdown().unwrap();
    });
}

/// A proxy token as the wire carries it (forged here to name a server of this test's own).
#[derive(serde::Serialize)]
struct ForgedToken {
    endpoint: ForgedEndpoint,
    authkey: Vec<u8>,
    id: u64,
    type_name: String,
    pin: u64,
}

#[derive(serde::Serialize)]
#[allow(dead_code)]
enum ForgedEndpoint {
    Abstract(Vec<u8>),
    Unix(std::path::PathBuf),
    Tcp(SocketAddr),
}

/// A fork by a process holding a proxy of a server that authenticates a new connection and
/// then never answers (hung after the handshake, or a host gone silent) does not wait for it:
/// the pre-fork hook's greeting and `Inherit` replies need a deadline too.
#[test]
fn a_fork_does_not_wait_for_a_server_hung_after_the_handshake() {
    watchdog(LIMIT, "manager fork hung server", || {
        let fake =
            shmproc::Listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), Some(b"hung")).unwrap();
        let Address::Tcp(at) = fake.address().clone() else {
            panic!("not TCP")
        };
        let (let_go, told) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            // The decoding process's connection: greeting and adoption answered.
            let c1 = fake.accept().unwrap();
            c1.recv_bytes().unwrap();
            c1.send_bytes(&[0, 0]).unwrap();
            c1.recv_bytes().unwrap();
            c1.send_bytes(&[0, 0]).unwrap();
            // The pre-fork hook's: authenticated, greeted, never answered.
            let c2 = fake.accept().unwrap();
            let greeted = c2.recv_bytes().is_ok();
            let _ = told.recv();
            drop((c1, c2));
            greeted
        });
        let token = ForgedToken {
            endpoint: ForgedEndpoint::Tcp(at),
            authkey: b"hung".to_vec(),
            id: 7,
            type_name: "shmproc.dict".into(),
            pin: 0,
        };
        let p: DictProxy<u8, u8> = from_bytes(&to_bytes(&token).unwrap()).unwrap();
        let forked = fork_within(Duration::from_secs(20), || 0);
        let _ = let_go.send(());
        assert!(server.join().unwrap(), "the hook never greeted");
        drop(p);
        assert_eq!(forked, Some(0), "a fork waited 20 s for a hung server");
    });
}

static GLOBAL_DICT: std::sync::Mutex<Option<DictProxy<u8, u8>>> = std::sync::Mutex::new(None);

fn read_global_after_go((go, tx): (shmproc::Connection, shmproc::Connection)) {
    go.recv::<()>().unwrap();
    let d = GLOBAL_DICT.lock().unwrap().take().unwrap();
    tx.send(&d.get(&1).ok().flatten()).unwrap();
}

/// In a single-threaded process: a `Fork` child reading a proxy it inherited in a global
/// after this process dropped its own.
fn fork_method_keeps_a_global((name, key): (Vec<u8>, Vec<u8>)) -> Option<u8> {
    let m = Manager::connect(Address::Abstract(name), &key).unwrap();
    let d = m.dict::<u8, u8>().unwrap();
    d.insert(1, 4).unwrap();
    *GLOBAL_DICT.lock().unwrap() = Some(d);
    let (go_rx, go_tx) = shmproc::pipe_simplex().unwrap();
    let (rx, tx) = shmproc::pipe_simplex().unwrap();
    let p = Process::new(read_global_after_go, (go_rx, tx))
        .start_method(shmproc::StartMethod::Fork)
        .start()
        .unwrap();
    drop(GLOBAL_DICT.lock().unwrap().take());
    drop(m);
    std::thread::sleep(Duration::from_millis(300));
    go_tx.send(&()).unwrap();
    let seen = rx.recv::<Option<u8>>().unwrap();
    p.join().unwrap();
    seen
}

/// The `Fork` start method's child keeps the references its parent took for the proxies it
/// inherited in memory (its start-up keeps the hook's connections), and they go with it.
#[test]
fn a_fork_start_method_child_keeps_inherited_proxies() {
    watchdog(LIMIT, "manager fork start method", || {
        let m = Manager::builder().authkey(&b"forkm"[..]).start().unwrap();
        let probe = raw_client(&m.address(), b"forkm", 0x7eb);
        let before = live_objects(&probe, 64);
        let seen = shmproc::spawn(
            fork_method_keeps_a_global,
            (abstract_name(&m), b"forkm".to_vec()),
        )
        .unwrap()
        .join()
        .unwrap();
        assert_eq!(seen, Some(4), "a Fork child lost the object it inherited");
        assert!(
            eventually(|| live_objects(&probe, 64) == before),
            "objects outlived the Fork child that inherited them"
        );
        drop(probe);
        m.shutdown().unwrap();
    });
}

/// An in-process server whose pin reaper waits (a client left tokens queued and exited:
/// their pins wait the grace) stops its reaper with it: no thread outlives the shutdown,
/// and a second server in the same process works.
#[test]
fn an_in_process_servers_pin_reaper_ends_with_its_shutdown() {
    watchdog(LIMIT, "manager reaper shutdown", || {
        let baseline = thread_count();
        for round in 0..2 {
            let name = format!("shmproc-test-reaper-{}-{round}", std::process::id()).into_bytes();
            let m = Manager::serve(Address::Abstract(name.clone()), b"reap").unwrap();
            let qd = m.queue::<DictProxy<u8, u8>>().unwrap();
            let ql = m.queue::<shmproc::manager::ListProxy<u8>>().unwrap();
            let a = Process::new(
                create_put_and_exit,
                (name, b"reap".to_vec(), qd.clone(), ql.clone()),
            )
            .start()
            .unwrap();
            a.join().unwrap();
            assert_eq!(qd.len().unwrap(), 1);
            drop((qd, ql));
            m.shutdown().unwrap();
            assert!(
                eventually(|| thread_count() <= baseline),
                "threads outlived the server's shutdown: {} > {baseline}",
                thread_count()
            );
        }
    });
}

/// A proxy stored in a shared-memory container (`shmproc::Slot`, `Dict`, `List`: read back
/// any number of times, like a managed container's copy) keeps its object for every read:
/// a first reader dropping its copy, then the creator dropping its proxy, must not free the
/// object the slot still names (a managed list's copy takes a lasting pin for this).
#[test]
fn a_proxy_stored_in_a_shared_memory_slot_survives_its_first_reader() {
    watchdog(LIMIT, "manager proxy in shm slot", || {
        let m = Manager::builder().authkey(&b"slot"[..]).start().unwrap();
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 8).unwrap();
        let slot = shmproc::Slot::new(d.clone()).unwrap();
        let first = slot.get().unwrap();
        assert_eq!(first.get(&1).unwrap(), Some(8));
        drop(first);
        drop(d);
        std::thread::sleep(Duration::from_millis(300));
        let second = slot.get().unwrap();
        assert_eq!(
            second.get(&1).ok().flatten(),
            Some(8),
            "the object a shared-memory slot still names was freed"
        );
        drop((second, slot));
        m.shutdown().unwrap();
    });
}

/// Like a `Slot`, a shared-memory `Dict` (values and keys) and `List` keep the objects of
/// the proxies stored in them for every read, after the first reader and the creator
/// dropped theirs.
#[test]
fn proxies_stored_in_a_shared_memory_dict_or_list_survive_their_first_reader() {
    watchdog(LIMIT, "manager proxy in shm dict/list", || {
        let m = Manager::builder()
            .authkey(&b"shmdict"[..])
            .pin_grace(Duration::from_millis(100))
            .start()
            .unwrap();
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 6).unwrap();
        let key = m.list::<u8>().unwrap();
        key.push(3).unwrap();
        let dict = shmproc::Dict::<u8, DictProxy<u8, u8>>::new().unwrap();
        dict.insert(0, d.clone()).unwrap();
        let by_key = shmproc::Dict::<shmproc::manager::ListProxy<u8>, u8>::new().unwrap();
        by_key.insert(key.clone(), 9).unwrap();
        let list = shmproc::List::<DictProxy<u8, u8>>::new().unwrap();
        list.push(d.clone()).unwrap();
        for _ in 0..2 {
            let first = dict.get(&0).unwrap().unwrap();
            assert_eq!(first.get(&1).unwrap(), Some(6));
            let first = list.get(0).unwrap().unwrap();
            assert_eq!(first.get(&1).unwrap(), Some(6));
        }
        let keys: Vec<_> = by_key.keys().unwrap();
        assert_eq!(keys[0].get(0).unwrap(), Some(3));
        drop((d, key, keys));
        // Past the pin grace: the stored copies are kept by lasting pins.
        std::thread::sleep(Duration::from_millis(400));
        let second = dict.get(&0).unwrap().unwrap();
        assert_eq!(
            second.get(&1).ok().flatten(),
            Some(6),
            "the dict's value was freed"
        );
        let second = list.get(0).unwrap().unwrap();
        assert_eq!(
            second.get(&1).ok().flatten(),
            Some(6),
            "the list's item was freed"
        );
        let keys: Vec<_> = by_key.keys().unwrap();
        assert_eq!(
            keys[0].get(0).ok().flatten(),
            Some(3),
            "the dict's key was freed"
        );
        drop((second, keys, dict, by_key, list));
        m.shutdown().unwrap();
    });
}

/// A token decoded after its pin's grace, once its sender dropped its own proxy, finds the
/// object gone while the sender still lives: its calls fail with an `UnknownObject` error
/// that names the pin grace. While the sender keeps a proxy, a late token still works.
#[test]
fn a_token_decoded_after_its_pin_grace_gets_a_clear_error() {
    watchdog(LIMIT, "manager late token", || {
        let m = Manager::builder()
            .authkey(&b"late"[..])
            .pin_grace(Duration::from_millis(100))
            .start()
            .unwrap();
        let kept = m.dict::<u8, u8>().unwrap();
        kept.insert(1, 1).unwrap();
        let gone = m.dict::<u8, u8>().unwrap();
        let kept_token = to_bytes(&kept).unwrap();
        let gone_token = to_bytes(&gone).unwrap();
        drop(gone);
        std::thread::sleep(Duration::from_millis(400));
        let late: DictProxy<u8, u8> = from_bytes(&kept_token).unwrap();
        assert_eq!(
            late.get(&1).unwrap(),
            Some(1),
            "the sender's proxy keeps it"
        );
        let late: DictProxy<u8, u8> = from_bytes(&gone_token).unwrap();
        match late.get(&1) {
            Err(shmproc::Error::Remote { kind, message, .. }) => {
                assert_eq!(kind, shmproc::RemoteErrorKind::UnknownObject);
                assert!(message.contains("pin grace"), "unclear error: {message}");
            }
            other => panic!("a token past its grace reached its object: {other:?}"),
        }
        m.shutdown().unwrap();
    });
}
