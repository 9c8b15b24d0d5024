//! Managers: a server process holding objects, proxies used from children, custom types,
//! client and server death, remote managers over TCP with the right key, a wrong key, no key
//! and garbage.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests: a failed unwrap is the assertion

use serde::{Deserialize, Serialize};
use shmproc::codec::{from_bytes, to_bytes};
use shmproc::manager::{
    BarrierProxy, ConditionProxy, DictProxy, DispatchError, EventProxy, JoinableQueueProxy,
    ListProxy, LockProxy, Managed, ManagedProxy, NamespaceProxy, QueueProxy, RLockProxy,
    RemoteObject, SemaphoreProxy,
};
use shmproc::testing::{assert_no_leaks, watchdog};
use shmproc::{Error, Manager, Process, RemoteErrorKind};
use std::fmt;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(240);

// ------------------------------------------------------------------ a custom type, by hand

/// What `#[shmproc::managed] impl Counter { … }` generates, written out.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    n: u64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum CounterError {
    TooBig { asked: u64, limit: u64 },
}

impl fmt::Display for CounterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CounterError::TooBig { asked, limit } => write!(f, "{asked} is over {limit}"),
        }
    }
}

impl Counter {
    fn add(&mut self, n: u64) -> u64 {
        self.n += n;
        self.n
    }
    fn checked_add(&mut self, n: u64) -> Result<u64, CounterError> {
        if n > 100 {
            return Err(CounterError::TooBig {
                asked: n,
                limit: 100,
            });
        }
        Ok(self.add(n))
    }
    fn boom(&mut self) -> u64 {
        panic!("counter exploded at {}", self.n)
    }
}

fn bad_args(method: &str, e: Error) -> DispatchError {
    DispatchError::BadArguments {
        method: method.to_owned(),
        reason: e.to_string(),
    }
}

fn reply<T: Serialize>(v: &T) -> Result<Vec<u8>, DispatchError> {
    to_bytes(v).map_err(|e| DispatchError::Panicked {
        message: e.to_string(),
    })
}

impl Managed for Counter {
    const TYPE_NAME: &'static str = "Counter";
    type Proxy = CounterProxy;
    fn dispatch(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, DispatchError> {
        match method {
            "add" => {
                let (n,): (u64,) = from_bytes(args).map_err(|e| bad_args(method, e))?;
                reply(&self.add(n))
            }
            "checked_add" => {
                let (n,): (u64,) = from_bytes(args).map_err(|e| bad_args(method, e))?;
                match self.checked_add(n) {
                    Ok(v) => reply(&v),
                    Err(e) => Err(DispatchError::Method {
                        message: e.to_string(),
                        payload: to_bytes(&e).unwrap_or_default(),
                    }),
                }
            }
            "boom" => {
                let (): () = from_bytes(args).map_err(|e| bad_args(method, e))?;
                reply(&self.boom())
            }
            _ => Err(DispatchError::UnknownMethod {
                type_name: Self::TYPE_NAME.to_owned(),
                method: method.to_owned(),
            }),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CounterProxy(RemoteObject);

impl ManagedProxy for CounterProxy {
    fn from_remote(remote: RemoteObject) -> Self {
        CounterProxy(remote)
    }
    fn remote(&self) -> &RemoteObject {
        &self.0
    }
}

impl CounterProxy {
    fn add(&self, n: u64) -> shmproc::Result<u64> {
        self.0.call("add", &(n,))
    }
    fn checked_add(&self, n: u64) -> shmproc::Result<u64> {
        self.0.call("checked_add", &(n,))
    }
    fn boom(&self) -> shmproc::Result<u64> {
        self.0.call("boom", &())
    }
}

/// A type registered nowhere.
#[derive(Debug, Serialize, Deserialize)]
struct Unregistered;

impl Managed for Unregistered {
    const TYPE_NAME: &'static str = "Unregistered";
    type Proxy = CounterProxy;
    fn dispatch(&mut self, method: &str, _: &[u8]) -> Result<Vec<u8>, DispatchError> {
        Err(DispatchError::UnknownMethod {
            type_name: Self::TYPE_NAME.to_owned(),
            method: method.to_owned(),
        })
    }
}

// ------------------------------------------------------------------ helpers

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s.get(i + 2..i + 3))
            .is_some_and(|st| st != "Z" && st != "X"),
        Err(_) => false,
    }
}

fn wait_dead(pid: i32) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

// ------------------------------------------------------------------ lifecycle

#[test]
fn start_use_and_shutdown_leave_nothing_behind() {
    watchdog(LIMIT, "manager lifecycle", || {
        assert_no_leaks(|| {
            let m = Manager::start().unwrap();
            let d = m.dict::<String, u32>().unwrap();
            assert_eq!(d.insert("a".into(), 1).unwrap(), None);
            assert_eq!(d.insert("a".into(), 2).unwrap(), Some(1));
            assert_eq!(d.get(&"a".into()).unwrap(), Some(2));
            let pid = m.process().unwrap().pid();
            m.shutdown().unwrap();
            assert!(!alive(pid));
            assert!(d.get(&"a".into()).is_err());
            drop(d);
            drop(m);
        });
    });
}

#[test]
fn dropping_the_last_owner_stops_the_server() {
    watchdog(LIMIT, "manager drop", || {
        assert_no_leaks(|| {
            let m = Manager::builder().name("drop-me").start().unwrap();
            let pid = m.process().unwrap().pid();
            let m2 = m.clone();
            drop(m);
            assert!(alive(pid), "a clone still owns the server");
            m2.lock().unwrap().acquire().unwrap();
            drop(m2);
            assert!(!alive(pid));
        });
    });
}

fn start_manager_then_wait(tx: shmproc::Connection) -> shmproc::Result<()> {
    let m = Manager::start()?;
    let d = m.dict::<u32, u32>()?;
    d.insert(1, 1)?;
    tx.send(&m.process().map(Process::pid))?;
    std::thread::sleep(Duration::from_secs(600));
    Ok(())
}

#[test]
fn the_server_dies_with_its_sigkilled_owner() {
    watchdog(LIMIT, "manager owner killed", || {
        assert_no_leaks(|| {
            let (rx, tx) = shmproc::pipe_simplex().unwrap();
            let owner = Process::new(start_manager_then_wait, tx).start().unwrap();
            let server: Option<i32> = rx.recv().unwrap();
            let server = server.unwrap();
            assert!(alive(server));
            owner.kill().unwrap();
            owner.join().unwrap();
            assert!(wait_dead(server), "the manager server outlived its owner");
        });
    });
}

// ------------------------------------------------------------------ every factory in a child

#[derive(Debug, Serialize, Deserialize)]
struct All {
    d: DictProxy<String, i64>,
    l: ListProxy<i64>,
    v: shmproc::manager::ValueProxy<f64>,
    ns: NamespaceProxy,
    lock: LockProxy,
    rlock: RLockProxy,
    sem: SemaphoreProxy,
    bsem: shmproc::manager::BoundedSemaphoreProxy,
    cond: ConditionProxy,
    ev: EventProxy,
    bar: BarrierProxy,
    q: QueueProxy<String>,
    jq: JoinableQueueProxy<u32>,
    arr: shmproc::manager::ArrayProxy<u16>,
}

fn use_everything(a: All) {
    use_everything_inner(a).unwrap();
}

fn use_everything_inner(a: All) -> shmproc::Result<()> {
    a.d.insert("child".into(), 7)?;
    a.l.push(99)?;
    a.v.set(2.5)?;
    a.ns.set("x", &10i32)?;
    a.ns.set("name", "child")?;
    let g = a.lock.lock()?;
    drop(g);
    a.rlock.acquire()?;
    a.rlock.acquire()?;
    a.rlock.release()?;
    a.rlock.release()?;
    a.sem.acquire()?;
    a.bsem.release().unwrap_err();
    a.cond.acquire()?;
    a.cond.notify_all()?;
    a.cond.release()?;
    a.ev.set()?;
    assert_eq!(a.bar.wait_timeout(Duration::from_secs(60))?, 1);
    a.q.put(&"from child".to_owned())?;
    let n = a.jq.get()?;
    a.jq.task_done()?;
    a.arr.set(2, u16::try_from(n).unwrap_or(0))?;
    Ok(())
}

#[test]
fn every_factory_works_from_a_child_process() {
    watchdog(LIMIT, "manager factories", || {
        assert_no_leaks(|| {
            let m = Manager::start().unwrap();
            let all = All {
                d: m.dict().unwrap(),
                l: m.list_from([1, 2, 3]).unwrap(),
                v: m.value(1.0).unwrap(),
                ns: m.namespace().unwrap(),
                lock: m.lock().unwrap(),
                rlock: m.rlock().unwrap(),
                sem: m.semaphore(2).unwrap(),
                bsem: m.bounded_semaphore(1).unwrap(),
                cond: m.condition().unwrap(),
                ev: m.event().unwrap(),
                bar: m.barrier(2).unwrap(),
                q: m.queue().unwrap(),
                jq: m.joinable_queue().unwrap(),
                arr: m.array(4).unwrap(),
            };
            all.jq.put(&5).unwrap();
            let child = shmproc::spawn(
                use_everything,
                All {
                    d: all.d.clone(),
                    l: all.l.clone(),
                    v: all.v.clone(),
                    ns: all.ns.clone(),
                    lock: all.lock.clone(),
                    rlock: all.rlock.clone(),
                    sem: all.sem.clone(),
                    bsem: all.bsem.clone(),
                    cond: all.cond.clone(),
                    ev: all.ev.clone(),
                    bar: all.bar.clone(),
                    q: all.q.clone(),
                    jq: all.jq.clone(),
                    arr: all.arr.clone(),
                },
            )
            .unwrap();
            // The barrier's other party, then the rest once the child is done.
            assert_eq!(all.bar.wait_timeout(Duration::from_secs(60)).unwrap(), 0);
            all.jq.join_timeout(Duration::from_secs(60)).unwrap();
            child.join().unwrap();
            assert_eq!(all.d.items().unwrap(), vec![("child".to_owned(), 7)]);
            assert_eq!(all.l.to_vec().unwrap(), vec![1, 2, 3, 99]);
            assert_eq!(all.v.get().unwrap(), 2.5);
            assert_eq!(all.ns.get::<i32>("x").unwrap(), Some(10));
            assert_eq!(all.ns.get::<String>("name").unwrap(), Some("child".into()));
            assert_eq!(all.ns.get::<i32>("missing").unwrap(), None);
            assert!(!all.lock.is_locked().unwrap());
            // The child exited holding one unit: the server gives it back once it notices.
            let t = Instant::now();
            while all.sem.value().unwrap() != 2 {
                assert!(t.elapsed() < Duration::from_secs(60), "unit not returned");
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(all.ev.is_set().unwrap());
            assert_eq!(all.q.get().unwrap(), "from child");
            assert_eq!(all.arr.to_vec().unwrap(), vec![0, 0, 5, 0]);
            assert_eq!(
                all.arr.get(9).unwrap_err().to_string(),
                "index 9 out of bounds for length 4"
            );
            drop(all);
            m.shutdown().unwrap();
        });
    });
}

#[test]
fn containers_behave_like_python_ones() {
    watchdog(LIMIT, "manager containers", || {
        let m = Manager::start().unwrap();
        let d = m.dict::<u32, Vec<u8>>().unwrap();
        d.update((0..5).map(|i| (i, vec![i as u8; i as usize])))
            .unwrap();
        assert_eq!(d.len().unwrap(), 5);
        assert!(d.contains_key(&3).unwrap());
        assert!(!d.contains_key(&7).unwrap());
        // A fetched value is a copy.
        let mut v = d.get(&4).unwrap().unwrap();
        v.push(1);
        assert_eq!(d.get(&4).unwrap().unwrap().len(), 4);
        // Insertion order, as Python's dict.
        d.remove(&0).unwrap();
        d.insert(0, vec![]).unwrap();
        assert_eq!(d.keys().unwrap(), vec![1, 2, 3, 4, 0]);
        assert_eq!(d.get_or_insert(9, vec![9]).unwrap(), vec![9]);
        assert_eq!(d.get_or_insert(9, vec![8]).unwrap(), vec![9]);
        // Iteration is over a snapshot.
        let l = m.list_from(0..10).unwrap();
        let it = l.iter().unwrap();
        l.clear().unwrap();
        assert_eq!(it.count(), 10);
        assert!(l.is_empty().unwrap());
        l.extend([3, 1, 2]).unwrap();
        l.insert(0, 7).unwrap();
        assert_eq!(l.remove(1).unwrap(), 3);
        assert!(l.contains(&2).unwrap());
        assert_eq!(l.index_of(&2).unwrap(), Some(2));
        assert!(matches!(
            l.set(10, 1),
            Err(Error::IndexOutOfBounds { index: 10, len: 3 })
        ));
        l.reverse().unwrap();
        assert_eq!(l.to_vec().unwrap(), vec![2, 1, 7]);
        assert_eq!(l.pop().unwrap(), Some(7));
        // Queues: bounded, timeouts.
        let q = m.queue_with_capacity::<u8>(1).unwrap();
        q.put(&1).unwrap();
        assert!(matches!(q.try_put(&2), Err(Error::Full)));
        assert!(q.is_full().unwrap());
        assert!(matches!(
            q.put_timeout(&2, Duration::from_millis(30)),
            Err(Error::Full)
        ));
        assert_eq!(q.get().unwrap(), 1);
        assert!(matches!(q.try_get(), Err(Error::Empty)));
        let t = Instant::now();
        assert!(matches!(
            q.get_timeout(Duration::from_millis(50)),
            Err(Error::Empty)
        ));
        assert!(t.elapsed() >= Duration::from_millis(50));
        // Locks from threads.
        let rl = m.rlock().unwrap();
        rl.acquire().unwrap();
        let rl2 = rl.clone();
        std::thread::spawn(move || {
            assert!(!rl2.try_acquire().unwrap());
            assert!(matches!(rl2.release(), Err(Error::NotOwner)));
        })
        .join()
        .unwrap();
        rl.release().unwrap();
        let c = m.condition().unwrap();
        assert!(matches!(
            c.wait_timeout(Duration::from_millis(10)),
            Err(Error::NotOwner)
        ));
        c.acquire().unwrap();
        assert!(!c.wait_timeout(Duration::from_millis(20)).unwrap());
        c.release().unwrap();
        let s = m.bounded_semaphore(1).unwrap();
        assert!(matches!(
            s.release(),
            Err(Error::SemaphoreOverRelease { limit: 1 })
        ));
        m.shutdown().unwrap();
    });
}

fn mutate_inner(l: ListProxy<DictProxy<String, u32>>) {
    let inner = l.get(1).unwrap().unwrap();
    inner.insert("seen".into(), 42).unwrap();
    l.push(inner).unwrap();
}

#[test]
fn nested_proxies_share_their_object() {
    watchdog(LIMIT, "manager nested", || {
        let m = Manager::start().unwrap();
        let l = m.list::<DictProxy<String, u32>>().unwrap();
        let a = m.dict().unwrap();
        let b = m.dict().unwrap();
        l.push(a.clone()).unwrap();
        l.push(b.clone()).unwrap();
        shmproc::spawn(mutate_inner, l.clone())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(b.get(&"seen".into()).unwrap(), Some(42));
        assert_eq!(a.len().unwrap(), 0);
        assert_eq!(l.len().unwrap(), 3);
        assert_eq!(
            l.get(2).unwrap().unwrap().get(&"seen".into()).unwrap(),
            Some(42)
        );
        // A proxy of another kind is refused.
        let wrong: shmproc::Result<ListProxy<QueueProxy<u8>>> = from_bytes(&to_bytes(&l).unwrap());
        let wrong = wrong.unwrap();
        assert!(wrong.get(0).is_err());
        m.shutdown().unwrap();
    });
}

// ------------------------------------------------------------------ custom types, bad input

fn add_from_child(c: CounterProxy) -> u64 {
    c.add(5).unwrap()
}

#[test]
fn custom_types_errors_and_panics_come_back_and_the_server_goes_on() {
    watchdog(LIMIT, "manager custom", || {
        let m = Manager::builder().register::<Counter>().start().unwrap();
        let c = m.create(Counter { n: 1 }).unwrap();
        assert_eq!(c.add(2).unwrap(), 3);
        assert_eq!(
            shmproc::spawn(add_from_child, c.clone())
                .unwrap()
                .join()
                .unwrap(),
            8
        );
        let e = c.checked_add(1000).unwrap_err();
        assert!(matches!(
            e,
            Error::Remote {
                kind: RemoteErrorKind::Method,
                ..
            }
        ));
        assert!(e.to_string().contains("1000 is over 100"), "{e}");
        assert_eq!(
            e.remote_error::<CounterError>(),
            Some(CounterError::TooBig {
                asked: 1000,
                limit: 100
            })
        );
        let e = c.boom().unwrap_err();
        assert!(
            matches!(
                e,
                Error::Remote {
                    kind: RemoteErrorKind::Panicked,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("counter exploded at 8"), "{e}");
        assert_eq!(c.add(1).unwrap(), 9, "the server goes on after a panic");
        let e = c.0.call::<_, u64>("no_such_method", &()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Remote {
                    kind: RemoteErrorKind::UnknownMethod,
                    ..
                }
            ),
            "{e}"
        );
        let e = c.0.call::<_, u64>("add", &"not a number").unwrap_err();
        assert!(
            matches!(
                e,
                Error::Remote {
                    kind: RemoteErrorKind::BadArguments,
                    ..
                }
            ),
            "{e}"
        );
        let e = m.create(Unregistered).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Remote {
                    kind: RemoteErrorKind::UnknownType,
                    ..
                }
            ),
            "{e}"
        );
        // Built-in objects refuse unknown methods and bad arguments too.
        let d = m.dict::<u8, u8>().unwrap();
        let e = d.remote().call::<_, u8>("explode", &()).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Remote {
                    kind: RemoteErrorKind::UnknownMethod,
                    ..
                }
            ),
            "{e}"
        );
        let e = d.remote().call::<_, u8>("insert", &[1u8; 3]).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Remote {
                    kind: RemoteErrorKind::BadArguments,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(c.add(1).unwrap(), 10);
        m.shutdown().unwrap();
    });
}

#[test]
fn in_process_servers_serve_registered_types_and_catch_panics() {
    watchdog(LIMIT, "manager serve custom", || {
        let addr = shmproc::connection::Address::Abstract(
            format!("shmproc-test-mgr-{}", std::process::id()).into_bytes(),
        );
        let m = Manager::builder()
            .register::<Counter>()
            .serve(addr.clone(), b"key")
            .unwrap();
        let c = m.create(Counter::default()).unwrap();
        assert_eq!(c.add(4).unwrap(), 4);
        assert!(c.boom().is_err());
        let other = Manager::connect(addr, b"key").unwrap();
        let d = other.dict::<u8, u8>().unwrap();
        d.insert(1, 2).unwrap();
        assert_eq!(c.add(1).unwrap(), 5);
        drop(d);
        drop(other);
        drop(c);
        m.shutdown().unwrap();
    });
}

// ------------------------------------------------------------------ client death

#[derive(Debug, Serialize, Deserialize)]
struct Holders {
    lock: LockProxy,
    rlock: RLockProxy,
    sem: SemaphoreProxy,
    cond: ConditionProxy,
    q: QueueProxy<u32>,
    ready: EventProxy,
}

fn hold_and_hang(h: Holders) -> shmproc::Result<()> {
    h.lock.acquire()?;
    h.rlock.acquire()?;
    h.rlock.acquire()?;
    h.sem.acquire()?;
    h.cond.acquire()?;
    h.ready.set()?;
    // Killed here while blocked in a call, holding all of the above.
    let _ = h.q.get()?;
    Ok(())
}

#[test]
fn a_sigkilled_client_gives_back_what_it_held() {
    watchdog(LIMIT, "manager client killed", || {
        let m = Manager::start().unwrap();
        let h = Holders {
            lock: m.lock().unwrap(),
            rlock: m.rlock().unwrap(),
            sem: m.semaphore(1).unwrap(),
            cond: m.condition().unwrap(),
            q: m.queue().unwrap(),
            ready: m.event().unwrap(),
        };
        let child = Process::new(
            hold_and_hang,
            Holders {
                lock: h.lock.clone(),
                rlock: h.rlock.clone(),
                sem: h.sem.clone(),
                cond: h.cond.clone(),
                q: h.q.clone(),
                ready: h.ready.clone(),
            },
        )
        .start()
        .unwrap();
        assert!(h.ready.wait(Some(Duration::from_secs(120))).unwrap());
        assert!(!h.lock.try_acquire().unwrap());
        assert!(!h.sem.try_acquire().unwrap());
        child.kill().unwrap();
        child.join().unwrap();
        let long = Duration::from_secs(60);
        assert!(h.lock.acquire_timeout(long).unwrap(), "lock not released");
        assert!(h.rlock.acquire_timeout(long).unwrap(), "rlock not released");
        assert!(
            h.sem.acquire_timeout(long).unwrap(),
            "semaphore unit not returned"
        );
        assert!(
            h.cond.acquire_timeout(long).unwrap(),
            "condition not released"
        );
        // The dead client's blocked `get` does not take the next item.
        h.q.put(&7).unwrap();
        assert_eq!(h.q.get_timeout(long).unwrap(), 7);
        m.shutdown().unwrap();
    });
}

#[test]
fn a_sigkilled_server_gives_clients_an_error_not_a_hang() {
    watchdog(LIMIT, "manager server killed", || {
        assert_no_leaks(server_killed);
    });
}

fn server_killed() {
    {
        let m = Manager::start().unwrap();
        let q = m.queue::<u32>().unwrap();
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 1).unwrap();
        let q2 = q.clone();
        let waiter = std::thread::spawn(move || q2.get());
        std::thread::sleep(Duration::from_millis(100));
        m.process().unwrap().kill().unwrap();
        assert!(waiter.join().unwrap().is_err());
        assert!(d.get(&1).is_err());
        assert!(m.dict::<u8, u8>().is_err());
        m.shutdown().unwrap();
    }
}

// ------------------------------------------------------------------ remote

fn remote_client(args: (u16, Vec<u8>)) -> u32 {
    remote_client_inner(args).unwrap()
}

fn remote_client_inner((port, key): (u16, Vec<u8>)) -> shmproc::Result<u32> {
    let m = Manager::connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)), &key)?;
    let d = m.dict::<String, u32>()?;
    for i in 0..100 {
        d.insert(format!("k{i}"), i)?;
    }
    let mut sum = 0;
    for i in 0..100 {
        sum += d.get(&format!("k{i}"))?.unwrap_or(0);
    }
    Ok(sum)
}

#[test]
fn remote_managers_over_tcp_refuse_wrong_keys_no_keys_and_garbage() {
    use std::io::{Read, Write};
    watchdog(LIMIT, "manager remote", || {
        let m = Manager::serve(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            b"right key",
        )
        .unwrap();
        let shmproc::connection::Address::Tcp(addr) = m.address() else {
            panic!("not TCP");
        };
        let good = Manager::connect(addr, b"right key").unwrap();
        let shared = good.list::<u32>().unwrap();
        // A silent client, holding a socket open without a word: nobody waits for it.
        let silent = std::net::TcpStream::connect(addr).unwrap();
        // Garbage instead of a handshake.
        let mut junk = std::net::TcpStream::connect(addr).unwrap();
        junk.write_all(&[0xff; 64]).unwrap();
        let mut buf = [0u8; 64];
        junk.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let _ = junk.read(&mut buf);
        shared.push(1).unwrap();
        // The wrong key, and no key.
        assert!(matches!(
            Manager::connect(addr, b"wrong key"),
            Err(Error::AuthFailed)
        ));
        shared.push(2).unwrap();
        let nokey = shmproc::Client::connect(addr, None).unwrap();
        let _ = nokey.send_bytes(&[1, 0]);
        // It gets the server's challenge and then the door; never a reply to a request
        // (`Reply::Ok(())` encodes as [0, 0]).
        let mut ended = false;
        for _ in 0..5 {
            match nokey.recv_bytes() {
                Ok(frame) => assert_ne!(frame, [0, 0], "a client without the key was served"),
                Err(_) => {
                    ended = true;
                    break;
                }
            }
        }
        assert!(ended);
        shared.push(3).unwrap();
        // A client process on loopback.
        let child = shmproc::spawn(remote_client, (addr.port(), b"right key".to_vec())).unwrap();
        assert_eq!(child.join().unwrap(), (0..100).sum::<u32>());
        assert_eq!(shared.to_vec().unwrap(), vec![1, 2, 3]);
        drop(silent);
        drop(shared);
        drop(good);
        m.shutdown().unwrap();
    });
}

/// A client over TCP greets with its nonce only: a greeting that hands over a pipe (a
/// connection token the server would have to attach) or is longer than a nonce's is refused
/// (the connection closes without a reply), and a plain one is served.
#[test]
fn a_tcp_greeting_cannot_hand_over_a_pipe() {
    watchdog(LIMIT, "manager tcp greeting", || {
        let m = Manager::serve(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), b"key").unwrap();
        let addr = m.address();
        let refused = |greeting: Vec<u8>| {
            let c = shmproc::Client::connect(addr.clone(), Some(b"key")).unwrap();
            c.send_bytes(&greeting).unwrap();
            c.recv_bytes().is_err()
        };
        // `Greeting { client, pipe: Some(token) }` with a token's first bytes.
        let mut with_pipe = to_bytes(&(5u64, Some(0u8))).unwrap();
        with_pipe.extend([0; 8]);
        assert!(refused(with_pipe));
        assert!(refused(to_bytes(&(5u64, Some(0u8))).unwrap()));
        assert!(refused(vec![0; 64]));
        // The plain greeting is answered `Reply::Ok(())`, then requests are served.
        let c = shmproc::Client::connect(addr.clone(), Some(b"key")).unwrap();
        c.send_bytes(&to_bytes(&(5u64, None::<u8>)).unwrap())
            .unwrap();
        assert_eq!(c.recv_bytes().unwrap(), [0, 0]);
        assert!(!raw_call(&c, &to_bytes(&WireRequest::Ping).unwrap()));
        m.shutdown().unwrap();
    });
}

/// Proxies and managers are `Send + Sync + Clone` (usable from many threads) and serde.
#[test]
fn proxies_are_send_sync_clone_and_serde() {
    fn check<T: Send + Sync + Clone + Serialize + serde::de::DeserializeOwned>() {}
    fn shared<T: Send + Sync + Clone>() {}
    check::<RemoteObject>();
    check::<DictProxy<String, Vec<u8>>>();
    check::<ListProxy<std::rc::Rc<u8>>>();
    check::<QueueProxy<String>>();
    check::<JoinableQueueProxy<u8>>();
    check::<LockProxy>();
    check::<RLockProxy>();
    check::<SemaphoreProxy>();
    check::<ConditionProxy>();
    check::<EventProxy>();
    check::<BarrierProxy>();
    check::<NamespaceProxy>();
    check::<CounterProxy>();
    shared::<Manager>();
}

#[test]
fn the_builder_sets_the_key_and_the_start_method() {
    watchdog(LIMIT, "manager builder", || {
        let m = Manager::builder()
            .name("keyed")
            .authkey(b"builder key".to_vec())
            .start_method(shmproc::StartMethod::ForkServer)
            .start()
            .unwrap();
        let ns = m.namespace().unwrap();
        ns.set("x", &10).unwrap();
        let other = Manager::connect(m.address(), b"builder key").unwrap();
        other.shared().unwrap().set("ns", &ns).unwrap();
        let found: NamespaceProxy = m.shared().unwrap().get("ns").unwrap().unwrap();
        assert_eq!(found.get::<i32>("x").unwrap(), Some(10));
        assert!(matches!(
            Manager::connect(m.address(), b"other key"),
            Err(Error::AuthFailed)
        ));
        drop(other);
        m.shutdown().unwrap();
    });
}

fn bump((lock, v, n): (LockProxy, shmproc::manager::ValueProxy<u64>, u64)) {
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (lock, v) = (lock.clone(), v.clone());
            std::thread::spawn(move || {
                for _ in 0..n {
                    let g = lock.lock().unwrap();
                    let x = v.get().unwrap();
                    v.set(x + 1).unwrap();
                    drop(g);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_managed_lock_serializes_threads_of_several_processes() {
    watchdog(LIMIT, "manager lock stress", || {
        let m = Manager::start().unwrap();
        let lock = m.lock().unwrap();
        let v = m.value(0u64).unwrap();
        let n = 150;
        let child = Process::new(bump, (lock.clone(), v.clone(), n))
            .start()
            .unwrap();
        bump((lock.clone(), v.clone(), n));
        child.join().unwrap();
        assert_eq!(v.get().unwrap(), 4 * n);
        m.shutdown().unwrap();
    });
}

/// Stopping an in-process server ends the calls blocked in it (a lock's `acquire`, a queue's
/// `get`) with an error, rather than leaving their callers and server threads waiting forever.
#[test]
fn stopping_an_in_process_server_ends_blocked_calls() {
    watchdog(Duration::from_secs(60), "manager serve blocked", || {
        let addr = shmproc::connection::Address::Abstract(
            format!("shmproc-test-mgr-blocked-{}", std::process::id()).into_bytes(),
        );
        let m = Manager::serve(addr, b"key").unwrap();
        let lock = m.lock().unwrap();
        let q = m.queue::<u32>().unwrap();
        lock.acquire().unwrap();
        let l2 = lock.clone();
        let q2 = q.clone();
        let locker = std::thread::spawn(move || l2.acquire());
        let getter = std::thread::spawn(move || q2.get());
        std::thread::sleep(Duration::from_millis(300));
        m.shutdown().unwrap();
        assert!(
            locker.join().unwrap().is_err(),
            "acquired a lock held elsewhere"
        );
        assert!(getter.join().unwrap().is_err());
        assert!(lock.is_locked().is_err());
    });
}

// ------------------------------------------------------------------ a hostile client

use shmproc_tests::WireRequest;

/// Sends one raw frame and returns whether the reply is an error (`Reply::Err`).
fn raw_call(c: &shmproc::Connection, frame: &[u8]) -> bool {
    c.send_bytes(frame).unwrap();
    let reply = c.recv_bytes().unwrap();
    match reply.first() {
        Some(0) => false,
        Some(1) => true,
        other => panic!("reply {other:?} is neither Ok nor Err"),
    }
}

fn call_frame(object: u64, method: &str, args: Vec<u8>) -> Vec<u8> {
    to_bytes(&WireRequest::Call {
        object,
        thread: u64::MAX,
        method: method.into(),
        args,
    })
    .unwrap()
}

/// An authenticated client that sends garbage, names objects that do not exist, claims huge
/// counts and oversized frames gets an error reply to each; the server goes on serving it
/// and everybody else.
#[test]
fn garbage_from_an_authenticated_client_gets_error_replies() {
    watchdog(LIMIT, "manager raw garbage", || {
        let m =
            Manager::serve(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), b"raw key").unwrap();
        let shmproc::connection::Address::Tcp(addr) = m.address() else {
            panic!("not TCP");
        };
        let good = m.list::<u32>().unwrap();
        good.push(7).unwrap();
        let c = shmproc::Client::connect(addr, Some(b"raw key")).unwrap();
        // The greeting: a client nonce and no pipe.
        assert!(!raw_call(&c, &to_bytes(&(99u64, None::<u8>)).unwrap()));
        let ping = to_bytes(&WireRequest::Ping).unwrap();
        let mut huge_count = vec![1u8]; // Create
        huge_count.extend(to_bytes(&"shmproc.list").unwrap());
        let mut init = Vec::new();
        init.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        huge_count.extend(to_bytes(&init).unwrap());
        let frames: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xff; 16],
            vec![
                2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            to_bytes(&WireRequest::Hello { client: 1 }).unwrap(),
            call_frame(123_456_789, "get", vec![]),
            call_frame(u64::MAX, "get", vec![]),
            call_frame(0, "get", vec![0xff, 0xff]),
            call_frame(0, "no such method", vec![]),
            huge_count,
            to_bytes(&WireRequest::Create {
                kind: "shmproc.barrier".into(),
                init: to_bytes(&0u32).unwrap(),
            })
            .unwrap(),
            to_bytes(&WireRequest::Create {
                kind: "NoSuchType".into(),
                init: vec![],
            })
            .unwrap(),
            to_bytes(&WireRequest::Pin { object: u64::MAX }).unwrap(),
            to_bytes(&WireRequest::Release { object: u64::MAX }).unwrap(),
            to_bytes(&WireRequest::TypeOf { object: 424_242 }).unwrap(),
        ];
        for (i, f) in frames.iter().enumerate() {
            assert!(raw_call(&c, f), "frame {i} was accepted");
            assert!(!raw_call(&c, &ping), "no pong after frame {i}");
        }
        // The shared namespace survives releases by anybody.
        for _ in 0..3 {
            let _ = raw_call(&c, &to_bytes(&WireRequest::Release { object: 0 }).unwrap());
        }
        let ns = m.shared().unwrap();
        ns.set("x", &5u8).unwrap();
        assert_eq!(ns.get::<u8>("x").unwrap(), Some(5));
        // A frame over the 64 MiB cap.
        let big = vec![0u8; (64 << 20) + 1];
        match c.send_bytes(&big) {
            Ok(()) => match c.recv_bytes() {
                Ok(r) => assert_eq!(r.first(), Some(&1), "an oversized request was served"),
                Err(e) => eprintln!("oversized frame closed the connection: {e}"),
            },
            Err(e) => eprintln!("oversized frame refused by the sender: {e}"),
        }
        assert_eq!(good.to_vec().unwrap(), vec![7]);
        drop(c);
        drop(good);
        drop(ns);
        m.shutdown().unwrap();
    });
}

/// A condition wait with a timeout ends with an error when the server process is killed.
#[test]
fn a_condition_wait_ends_when_the_server_is_killed() {
    watchdog(
        Duration::from_secs(120),
        "manager condition server killed",
        || {
            let m = Manager::start().unwrap();
            let cond = m.condition().unwrap();
            let c2 = cond.clone();
            let waiter = std::thread::spawn(move || {
                c2.acquire().unwrap();
                c2.wait_timeout(Duration::from_secs(100))
            });
            std::thread::sleep(Duration::from_millis(300));
            m.process().unwrap().kill().unwrap();
            assert!(waiter.join().unwrap().is_err());
            m.shutdown().unwrap();
        },
    );
}

/// A reply too large for the client's connection is an error for that call only: the
/// connection (and the lock taken on it) stays with the client.
#[test]
fn an_oversized_reply_does_not_release_what_the_client_holds() {
    watchdog(Duration::from_secs(120), "manager oversized reply", || {
        let m =
            Manager::serve(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), b"big key").unwrap();
        let shmproc::connection::Address::Tcp(addr) = m.address() else {
            panic!("not TCP");
        };
        let remote = Manager::connect(addr, b"big key").unwrap();
        let lock = remote.lock().unwrap();
        let list = remote.list::<serde_bytes_like::Blob>().unwrap();
        lock.acquire().unwrap();
        // Two pushes under the 64 MiB request cap, a list over it.
        for _ in 0..2 {
            list.push(serde_bytes_like::Blob(vec![7; 33 << 20]))
                .unwrap();
        }
        assert!(matches!(
            list.to_vec(),
            Err(Error::MessageTooLarge { limit, .. }) if limit == 64 << 20
        ));
        // Still ours: nobody else can take it.
        let other = std::thread::spawn({
            let lock = lock.clone();
            move || lock.try_acquire()
        });
        assert!(!other.join().unwrap().unwrap(), "the lock was given away");
        lock.release().unwrap();
        drop((lock, list, remote));
        m.shutdown().unwrap();
    });
}

mod serde_bytes_like {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    /// Bytes encoded as one length and a run (not one varint per byte).
    #[derive(Debug)]
    pub(super) struct Blob(pub(super) Vec<u8>);
    impl Serialize for Blob {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }
    impl<'de> Deserialize<'de> for Blob {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Blob;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Blob, E> {
                    Ok(Blob(v.to_vec()))
                }
                fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Blob, E> {
                    Ok(Blob(v))
                }
            }
            d.deserialize_byte_buf(V)
        }
    }
}

/// A server started on a Unix socket path removes it when it stops.
#[test]
fn a_server_on_a_unix_path_removes_it_when_it_stops() {
    watchdog(Duration::from_secs(120), "manager unix path", || {
        let path = std::env::temp_dir().join(format!("shmproc-mgr-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let m = Manager::builder()
            .address(shmproc::connection::Address::Unix(path.clone()))
            .start()
            .unwrap();
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 2).unwrap();
        assert!(path.exists());
        m.shutdown().unwrap();
        let left = path.exists();
        let _ = std::fs::remove_file(&path);
        assert!(!left, "the socket path outlived the server");
        // The path can be used again.
        let m = Manager::builder()
            .address(shmproc::connection::Address::Unix(path.clone()))
            .start()
            .unwrap();
        m.shutdown().unwrap();
        let _ = std::fs::remove_file(&path);
    });
}

/// Greetings that do not decode (a pipe token of garbage, nothing at all) end that
/// connection only; a proxy used from 16 threads at once meanwhile sees every call.
#[test]
fn bad_greetings_and_sixteen_threads_on_one_proxy() {
    watchdog(LIMIT, "manager bad greetings", || {
        let m = Manager::builder().authkey(&b"greet"[..]).start().unwrap();
        let d = m.dict::<u32, u32>().unwrap();
        let workers: Vec<_> = (0..16u32)
            .map(|t| {
                let d = d.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        d.insert(t * 1000 + i, i).unwrap();
                    }
                })
            })
            .collect();
        let greetings: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xff; 40],
            {
                let mut g = to_bytes(&5u64).unwrap();
                g.push(1); // Some(pipe): the token is garbage
                g.extend([0x13; 64]);
                g
            },
            {
                let mut g = to_bytes(&5u64).unwrap();
                g.push(1);
                g.extend([0; 64]);
                g
            },
        ];
        for g in &greetings {
            let c = shmproc::Client::connect(m.address(), Some(b"greet")).unwrap();
            c.send_bytes(g).unwrap();
            if let Ok(r) = c.recv_bytes() {
                assert_ne!(r, [0, 0], "a bad greeting was welcomed");
            }
        }
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(d.len().unwrap(), 16 * 50);
        drop(d);
        m.shutdown().unwrap();
    });
}

/// Past its connection cap the server refuses a connection with an error reply saying so,
/// and serves again once connections end.
#[test]
fn the_connection_cap_is_a_clear_error_and_frees_up() {
    watchdog(LIMIT, "manager connection cap", || {
        let m = Manager::builder().authkey(&b"cap"[..]).start().unwrap();
        let greet = to_bytes(&(7u64, None::<u8>)).unwrap();
        let open = || {
            // A handshake can be cut short on a loaded machine: only the greeting's answer
            // is checked here.
            let mut tries = 0;
            let c = loop {
                match shmproc::Client::connect(m.address(), Some(b"cap")) {
                    Ok(c) => break c,
                    Err(e) if tries < 20 => {
                        eprintln!("connect: {e}");
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => panic!("connect: {e}"),
                }
            };
            // A refused connection may be closed before the greeting is sent: its answer is
            // already on the way, so only the reply is checked.
            let _ = c.send_bytes(&greet);
            let r = c.recv_bytes();
            (c, r)
        };
        let mut held = Vec::new();
        for i in 0..1024 {
            let (c, r) = open();
            assert_eq!(r.unwrap(), [0, 0], "connection {i} refused");
            held.push(c);
        }
        let (_c, r) = open();
        let r = r.expect("the refused connection got no reply");
        assert_eq!(r.first(), Some(&1), "connection 1025 was served");
        assert!(String::from_utf8_lossy(&r).contains("connections"));
        drop(held);
        let t = Instant::now();
        loop {
            let (_c, r) = open();
            if r.is_ok_and(|r| r == [0, 0]) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "never served again");
            std::thread::sleep(Duration::from_millis(20));
        }
        m.shutdown().unwrap();
    });
}

fn create_then_hang((name, key, tx): (Vec<u8>, Vec<u8>, shmproc::Connection)) {
    let addr = shmproc::connection::Address::Abstract(name);
    let c = shmproc::Client::connect(addr, Some(&key)).unwrap();
    c.send_bytes(&to_bytes(&(11u64, None::<u8>)).unwrap())
        .unwrap();
    c.recv_bytes().unwrap();
    let create = WireRequest::Create {
        kind: "shmproc.list".into(),
        init: to_bytes(&Vec::<Vec<u8>>::new()).unwrap(),
    };
    c.send_bytes(&to_bytes(&create).unwrap()).unwrap();
    let reply = c.recv_bytes().unwrap();
    // Reply::Ok(encoded id): [0, len, id…]
    let id: u64 = from_bytes(&from_bytes::<(u8, Vec<u8>)>(&reply).unwrap().1).unwrap();
    tx.send(&id).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

/// An object whose creating process is SIGKILLed (so holds no proxy to it any more) is
/// released, as the module docs promise ("an object lives while the creating process holds
/// a proxy to it").
#[test]
fn objects_of_a_sigkilled_creator_are_released() {
    watchdog(Duration::from_secs(120), "manager creator killed", || {
        let m = Manager::builder().authkey(&b"orphan"[..]).start().unwrap();
        let (rx, tx) = shmproc::pipe_simplex().unwrap();
        let shmproc::connection::Address::Abstract(name) = m.address() else {
            panic!("not an abstract socket");
        };
        let child = Process::new(create_then_hang, (name, b"orphan".to_vec(), tx))
            .start()
            .unwrap();
        let id: u64 = rx.recv().unwrap();
        child.kill().unwrap();
        child.join().unwrap();
        let c = shmproc::Client::connect(m.address(), Some(b"orphan")).unwrap();
        assert!(!raw_call(&c, &to_bytes(&(12u64, None::<u8>)).unwrap()));
        let t = Instant::now();
        while !raw_call(&c, &to_bytes(&WireRequest::TypeOf { object: id }).unwrap()) {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "object {id} outlived its killed creator"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m.shutdown().unwrap();
    });
}

/// The abstract name and key of a server, a queue, and where to say the proxies are out.
type ShareArgs = (
    Vec<u8>,
    Vec<u8>,
    QueueProxy<DictProxy<u8, u8>>,
    shmproc::Connection,
);

fn create_share_then_hang((name, key, q, tx): ShareArgs) {
    let m = Manager::connect(shmproc::connection::Address::Abstract(name), &key).unwrap();
    let shared = m.dict::<u8, u8>().unwrap();
    shared.insert(1, 10).unwrap();
    q.put(&shared).unwrap();
    let private = m.dict::<u8, u8>().unwrap();
    private.insert(2, 20).unwrap();
    tx.send(&()).unwrap();
    std::thread::sleep(Duration::from_secs(600));
    drop((shared, private));
}

/// A proxy its creator put in a queue before it was SIGKILLed still reaches its object when
/// another process takes it out, and the server goes on counting that object.
#[test]
fn a_proxy_in_flight_outlives_its_sigkilled_creator() {
    watchdog(Duration::from_secs(120), "manager proxy in flight", || {
        let m = Manager::builder()
            .authkey(&b"in flight"[..])
            .start()
            .unwrap();
        let q = m.queue::<DictProxy<u8, u8>>().unwrap();
        let (rx, tx) = shmproc::pipe_simplex().unwrap();
        let shmproc::connection::Address::Abstract(name) = m.address() else {
            panic!("not an abstract socket");
        };
        let child = Process::new(
            create_share_then_hang,
            (name, b"in flight".to_vec(), q.clone(), tx),
        )
        .start()
        .unwrap();
        rx.recv::<()>().unwrap();
        child.kill().unwrap();
        child.join().unwrap();
        // Give the server time to notice the death (its connection threads see the hang-up).
        std::thread::sleep(Duration::from_millis(300));
        let d = q.get().unwrap();
        assert_eq!(d.get(&1).unwrap(), Some(10));
        d.insert(3, 30).unwrap();
        assert_eq!(d.len().unwrap(), 2);
        m.shutdown().unwrap();
    });
}

/// A forked child calling through proxies it inherited is one lasting client of the server:
/// a lock it acquired stays held between its calls (rather than being given back when the
/// connection of the call that took it closes).
#[test]
fn a_forked_child_keeps_what_it_acquires_between_calls() {
    watchdog(Duration::from_secs(120), "manager forked child", || {
        let m = Manager::start().unwrap();
        let lock = m.lock().unwrap();
        let (rx, tx) = shmproc::pipe_simplex().unwrap();
        let (go_rx, go_tx) = shmproc::pipe_simplex().unwrap();
        let l2 = lock.clone();
        // SAFETY: this test's thread holds no lock the child takes; the watchdog's thread
        // only sleeps.
        let mut child =
            shmproc::testing::fork(unsafe { shmproc::testing::ForkPermit::new() }, move || {
                l2.acquire().unwrap();
                // Another call, on its own: the lock is still this process's.
                let held = l2.is_locked().unwrap();
                tx.send(&held).unwrap();
                let _ = go_rx.recv::<()>();
                l2.release().unwrap();
                0
            });
        assert!(rx.recv::<bool>().unwrap());
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !lock.try_acquire().unwrap(),
            "the child's lock was given back while it lives"
        );
        go_tx.send(&()).unwrap();
        assert!(lock.acquire_timeout(Duration::from_secs(30)).unwrap());
        lock.release().unwrap();
        assert_eq!(child.wait(), Ok(0));
        m.shutdown().unwrap();
    });
}

fn outlive_the_manager((d, go): (DictProxy<u8, u8>, shmproc::Connection)) -> bool {
    // Connected before the manager stops, called after. (The signal is not a managed event:
    // the reply to its `set` could be cut off by the shutdown it triggers.)
    assert_eq!(d.get(&1).unwrap(), Some(1));
    go.send(&()).unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if d.get(&1).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A child holding proxies that outlives its manager gets errors, not a hang.
#[test]
fn a_child_that_outlives_the_manager_gets_errors() {
    watchdog(Duration::from_secs(120), "manager outlived", || {
        let m = Manager::start().unwrap();
        let d = m.dict::<u8, u8>().unwrap();
        d.insert(1, 1).unwrap();
        let (go_rx, go_tx) = shmproc::pipe_simplex().unwrap();
        let child = shmproc::spawn(outlive_the_manager, (d.clone(), go_tx)).unwrap();
        go_rx.recv::<()>().unwrap();
        m.shutdown().unwrap();
        assert!(child.join().unwrap());
    });
}

/// A raw, greeted connection to the server at `name` as client `nonce`.
fn raw_client(addr: &shmproc::connection::Address, key: &[u8], nonce: u64) -> shmproc::Connection {
    let c = shmproc::Client::connect(addr.clone(), Some(key)).unwrap();
    assert!(!raw_call(&c, &to_bytes(&(nonce, None::<u8>)).unwrap()));
    c
}

fn ok_reply<T: serde::de::DeserializeOwned>(c: &shmproc::Connection, frame: &[u8]) -> T {
    c.send_bytes(frame).unwrap();
    let reply = c.recv_bytes().unwrap();
    let (tag, body): (u8, Vec<u8>) = from_bytes(&reply).unwrap();
    assert_eq!(tag, 0, "an error reply");
    from_bytes(&body).unwrap()
}

/// A `notify(1)` that picks a waiter whose client just died passes on to a live waiter (a
/// served condition: a server on TCP's; a Unix-socket server's conditions are attached).
#[test]
fn a_notify_taken_by_a_dead_waiter_passes_on() {
    watchdog(
        Duration::from_secs(120),
        "manager condition dead waiter",
        || {
            let m = Manager::builder()
                .address(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
                .authkey(&b"cond"[..])
                .start()
                .unwrap();
            let addr = m.address();
            let first = raw_client(&addr, b"cond", 31);
            let create = WireRequest::Create {
                kind: "shmproc.condition".into(),
                init: vec![],
            };
            let id: u64 = ok_reply(&first, &to_bytes(&create).unwrap());
            // Shared with other clients, as a serialized proxy is: it outlives its creator.
            ok_reply::<()>(&first, &to_bytes(&WireRequest::Pin { object: id }).unwrap());
            let acquire = call_frame(id, "acquire", to_bytes(&(true, None::<Duration>)).unwrap());
            assert!(ok_reply::<bool>(&first, &acquire));
            // The first waiter: its reply is never read, its client goes away.
            first
                .send_bytes(&call_frame(
                    id,
                    "wait",
                    to_bytes(&None::<Duration>).unwrap(),
                ))
                .unwrap();
            let live = std::thread::spawn({
                let addr = addr.clone();
                move || {
                    let c = raw_client(&addr, b"cond", 32);
                    let acquire =
                        call_frame(id, "acquire", to_bytes(&(true, None::<Duration>)).unwrap());
                    assert!(ok_reply::<bool>(&c, &acquire));
                    let wait = call_frame(
                        id,
                        "wait",
                        to_bytes(&Some(Duration::from_secs(20))).unwrap(),
                    );
                    ok_reply::<bool>(&c, &wait)
                }
            });
            std::thread::sleep(Duration::from_millis(500));
            let third = raw_client(&addr, b"cond", 33);
            assert!(ok_reply::<bool>(&third, &acquire));
            drop(first);
            ok_reply::<()>(&third, &call_frame(id, "notify", to_bytes(&1u32).unwrap()));
            ok_reply::<()>(&third, &call_frame(id, "release", to_bytes(&()).unwrap()));
            assert!(live.join().unwrap(), "the live waiter was never notified");
            m.shutdown().unwrap();
        },
    );
}

// ------------------------------------------------------------------ attached queues

type AttachArgs = (QueueProxy<String>, JoinableQueueProxy<u32>, QueueProxy<u8>);

/// A child's side of the attached-queue tests: checks it attached both queues, echoes
/// `n` strings from the first back with a suffix, takes `n` tasks from the joinable queue
/// and marks them done, then reports on `done`.
fn echo_attached((q, jobs, done): AttachArgs) -> bool {
    echo_attached_inner(q, jobs, done).is_ok()
}

fn echo_attached_inner(
    q: QueueProxy<String>,
    jobs: JoinableQueueProxy<u32>,
    done: QueueProxy<u8>,
) -> shmproc::Result<()> {
    assert!(q.is_attached() && jobs.is_attached() && done.is_attached());
    for _ in 0..3 {
        let s = q.get()?;
        done.put(&(s.len() as u8))?;
    }
    for _ in 0..3 {
        let _ = jobs.get()?;
        jobs.task_done()?;
    }
    done.put(&0)
}

/// Local proxies of managed queues attach their in-heap form, in the creating process, a
/// spawned child and a forked child alike; items and task counts cross between them.
#[test]
fn managed_queues_attach_locally_in_spawned_and_forked_children() {
    watchdog(LIMIT, "manager attached queues", || {
        assert_no_leaks(|| {
            let m = Manager::start().unwrap();
            let q = m.queue::<String>().unwrap();
            let jobs = m.joinable_queue::<u32>().unwrap();
            let done = m.queue_with_capacity::<u8>(8).unwrap();
            assert!(q.is_attached() && jobs.is_attached() && done.is_attached());
            for round in 0..2 {
                let args = (q.clone(), jobs.clone(), done.clone());
                let mut forked = None;
                let spawned = if round == 0 {
                    Some(shmproc::spawn(echo_attached, args).unwrap())
                } else {
                    // SAFETY: no other thread of this test holds a lock the child takes
                    // (the watchdog's thread only sleeps).
                    let permit = unsafe { shmproc::testing::ForkPermit::new() };
                    forked = Some(shmproc::testing::fork(permit, move || {
                        i32::from(!echo_attached(args))
                    }));
                    None
                };
                for s in ["a", "bb", "ccc"] {
                    q.put(&s.to_string()).unwrap();
                    jobs.put(&7).unwrap();
                }
                let lens: Vec<u8> = (0..3).map(|_| done.get().unwrap()).collect();
                assert_eq!(lens, [1, 2, 3]);
                jobs.join_timeout(Duration::from_secs(60)).unwrap();
                assert_eq!(done.get().unwrap(), 0);
                assert!(matches!(jobs.task_done(), Err(Error::TaskDoneTooMany)));
                if let Some(p) = spawned {
                    assert!(p.join().unwrap());
                }
                if let Some(mut c) = forked {
                    assert_eq!(c.wait(), Ok(0));
                }
            }
            // A bounded queue: full is full, timeouts are `Full`/`Empty` as when served.
            for i in 0..8 {
                done.try_put(&i).unwrap();
            }
            assert!(done.is_full().unwrap());
            assert!(matches!(done.try_put(&9), Err(Error::Full)));
            assert!(matches!(
                done.put_timeout(&9, Duration::from_millis(20)),
                Err(Error::Full)
            ));
            assert_eq!(done.len().unwrap(), 8);
            for i in 0..8 {
                assert_eq!(done.get().unwrap(), i);
            }
            assert!(matches!(
                done.get_timeout(Duration::from_millis(20)),
                Err(Error::Empty)
            ));
            assert!(!q.is_full().unwrap(), "an unbounded queue is never full");
            // A message larger than a slot.
            let big = "z".repeat(100_000);
            q.put(&big).unwrap();
            assert_eq!(q.get().unwrap(), big);
            // After the server stops, attached calls fail too, a blocked one included.
            let q2 = q.clone();
            let blocked = std::thread::spawn(move || q2.get());
            std::thread::sleep(Duration::from_millis(100));
            q.put(&"left".to_string()).unwrap();
            assert_eq!(blocked.join().unwrap().unwrap(), "left");
            let q3 = q.clone();
            let blocked = std::thread::spawn(move || q3.get());
            std::thread::sleep(Duration::from_millis(100));
            m.shutdown().unwrap();
            assert!(matches!(blocked.join().unwrap(), Err(Error::Disconnected)));
            assert!(matches!(q.try_put(&"x".into()), Err(Error::Disconnected)));
            assert!(matches!(q.try_get(), Err(Error::Disconnected)));
            assert!(matches!(jobs.join(), Err(Error::Disconnected)));
        });
    });
}

/// A served client (a raw connection that does not attach) and an attached one use the
/// same queue, interleaved, in both directions.
#[test]
fn served_and_attached_clients_share_one_queue() {
    watchdog(LIMIT, "manager queue served and attached", || {
        let m = Manager::builder().authkey(&b"mixed"[..]).start().unwrap();
        let q = m.joinable_queue::<String>().unwrap();
        assert!(q.is_attached());
        let raw = raw_client(&m.address(), b"mixed", 0x5e7);
        let id = q.remote().id();
        for i in 0..20u32 {
            let item = format!("item {i}");
            if i % 2 == 0 {
                q.put(&item).unwrap();
            } else {
                let args = to_bytes(&(to_bytes(&item).unwrap(), true, None::<Duration>)).unwrap();
                let () = ok_reply(&raw, &call_frame(id, "put", args));
            }
        }
        let n: u64 = ok_reply(&raw, &call_frame(id, "len", to_bytes(&()).unwrap()));
        assert_eq!(n, 20);
        for i in 0..20u32 {
            let got = if i % 3 == 0 {
                q.get().unwrap()
            } else {
                let args = to_bytes(&(true, Some(Duration::from_secs(10)))).unwrap();
                ok_reply::<String>(&raw, &call_frame(id, "get", args))
            };
            assert_eq!(got, format!("item {i}"));
            if i % 2 == 0 {
                q.task_done().unwrap();
            } else {
                let () = ok_reply(&raw, &call_frame(id, "task_done", to_bytes(&()).unwrap()));
            }
        }
        q.join_timeout(Duration::from_secs(10)).unwrap();
        let args = to_bytes(&(false, None::<Duration>)).unwrap();
        assert!(raw_call(&raw, &call_frame(id, "get", args)), "empty");
        drop(raw);
        m.shutdown().unwrap();
    });
}

/// The server SIGKILLed while attached clients wait in `get`, `put` on a full queue and
/// `join`: each gets `Disconnected` within its wait slices, later calls too, and nothing
/// is left behind.
#[test]
fn a_sigkilled_server_ends_attached_waits_with_disconnected() {
    watchdog(LIMIT, "manager attached server killed", || {
        assert_no_leaks(|| {
            let m = Manager::start().unwrap();
            let empty = m.queue::<u32>().unwrap();
            let full = m.queue_with_capacity::<u32>(1).unwrap();
            let jobs = m.joinable_queue::<u32>().unwrap();
            full.put(&1).unwrap();
            jobs.put(&1).unwrap();
            assert!(empty.is_attached() && full.is_attached() && jobs.is_attached());
            let (e, f, j) = (empty.clone(), full.clone(), jobs.clone());
            let waiters = [
                std::thread::spawn(move || e.get().map(drop)),
                std::thread::spawn(move || f.put(&2)),
                std::thread::spawn(move || j.join()),
            ];
            std::thread::sleep(Duration::from_millis(100));
            m.process().unwrap().kill().unwrap();
            for w in waiters {
                assert!(matches!(w.join().unwrap(), Err(Error::Disconnected)));
            }
            assert!(matches!(empty.try_get(), Err(Error::Disconnected)));
            assert!(matches!(full.try_put(&3), Err(Error::Disconnected)));
            assert!(matches!(jobs.task_done(), Err(Error::Disconnected)));
            drop((empty, full, jobs));
            m.shutdown().unwrap();
        });
    });
}

/// A queue proxy's token decoded after its object is gone is served, and its calls fail;
/// a live one decoded in the same process attaches.
#[test]
fn a_queue_token_decoded_after_its_object_is_gone_fails_its_calls() {
    watchdog(LIMIT, "manager queue token gone", || {
        let m = Manager::builder()
            .pin_grace(Duration::from_millis(100))
            .start()
            .unwrap();
        let q = m.queue::<u8>().unwrap();
        let live = to_bytes(&q).unwrap();
        let again: QueueProxy<u8> = from_bytes(&live).unwrap();
        assert!(again.is_attached());
        again.put(&5).unwrap();
        assert_eq!(q.get().unwrap(), 5);
        drop(again);
        let bytes = to_bytes(&q).unwrap();
        drop(q);
        std::thread::sleep(Duration::from_millis(1500));
        let late: QueueProxy<u8> = from_bytes(&bytes).unwrap();
        assert!(!late.is_attached());
        assert!(matches!(
            late.try_put(&1),
            Err(Error::Remote {
                kind: RemoteErrorKind::UnknownObject,
                ..
            })
        ));
        m.shutdown().unwrap();
    });
}

// ------------------------------------------------------------------ attached conditions

/// A child's side of the attached-condition test: under the lock, sets the flag and
/// notifies.
fn notify_attached((cond, flag): (ConditionProxy, shmproc::manager::ValueProxy<u32>)) -> bool {
    assert!(cond.is_attached());
    cond.acquire().is_ok()
        && flag.set(1).is_ok()
        && cond.notify_all().is_ok()
        && cond.release().is_ok()
}

/// Local proxies of a managed condition attach its in-heap form, in spawned and forked
/// children too; waits, notifications and the re-entrant lock work across them; a
/// non-owner is refused.
#[test]
fn managed_conditions_attach_locally_in_spawned_and_forked_children() {
    watchdog(LIMIT, "manager attached condition", || {
        assert_no_leaks(|| {
            let m = Manager::start().unwrap();
            let cond = m.condition().unwrap();
            let flag = m.value(0u32).unwrap();
            assert!(cond.is_attached());
            assert!(matches!(cond.release(), Err(Error::NotOwner)));
            assert!(matches!(cond.wait(), Err(Error::NotOwner)));
            assert!(matches!(cond.notify(1), Err(Error::NotOwner)));
            for round in 0..2 {
                flag.set(0).unwrap();
                cond.acquire().unwrap();
                cond.acquire().unwrap(); // re-entrant: the wait lets go of both levels
                let args = (cond.clone(), flag.clone());
                let mut forked = None;
                let mut spawned = None;
                if round == 0 {
                    spawned = Some(shmproc::spawn(notify_attached, args).unwrap());
                } else {
                    // SAFETY: no other thread of this test holds a lock the child takes
                    // (the watchdog's thread only sleeps).
                    let permit = unsafe { shmproc::testing::ForkPermit::new() };
                    forked = Some(shmproc::testing::fork(permit, move || {
                        i32::from(!notify_attached(args))
                    }));
                }
                while flag.get().unwrap() != 1 {
                    assert!(cond.wait_timeout(Duration::from_secs(60)).unwrap());
                }
                cond.release().unwrap();
                cond.release().unwrap();
                assert!(matches!(cond.release(), Err(Error::NotOwner)));
                if let Some(p) = spawned {
                    assert!(p.join().unwrap());
                }
                if let Some(mut c) = forked {
                    assert_eq!(c.wait(), Ok(0));
                }
            }
            // A timed wait nobody notifies.
            let g = cond.lock().unwrap();
            assert!(!cond.wait_timeout(Duration::from_millis(20)).unwrap());
            drop(g);
            // Another thread cannot take it while this one holds it.
            cond.acquire().unwrap();
            let c2 = cond.clone();
            let other = std::thread::spawn(move || c2.try_acquire().unwrap());
            assert!(!other.join().unwrap());
            cond.release().unwrap();
            m.shutdown().unwrap();
            assert!(matches!(cond.acquire(), Err(Error::Disconnected)));
        });
    });
}

/// The server SIGKILLed while an attached client waits on the condition: the wait ends with
/// `Disconnected`, later calls fail too, nothing is left behind.
#[test]
fn a_sigkilled_server_ends_attached_condition_waits() {
    watchdog(LIMIT, "manager attached condition server killed", || {
        assert_no_leaks(|| {
            let m = Manager::start().unwrap();
            let cond = m.condition().unwrap();
            assert!(cond.is_attached());
            let c2 = cond.clone();
            let waiter = std::thread::spawn(move || {
                c2.acquire().unwrap();
                c2.wait()
            });
            std::thread::sleep(Duration::from_millis(100));
            m.process().unwrap().kill().unwrap();
            assert!(matches!(waiter.join().unwrap(), Err(Error::Disconnected)));
            assert!(matches!(cond.try_acquire(), Err(Error::Disconnected)));
            drop(cond);
            m.shutdown().unwrap();
        });
    });
}

/// A served client (a raw connection) of a condition held in its in-heap form is refused
/// every lock operation (the lock belongs to a thread, which only an attached handle takes
/// it as), gets its attach information, and leaves the lock and notifications to the
/// attached clients.
#[test]
fn served_and_attached_clients_share_one_condition() {
    watchdog(LIMIT, "manager condition served and attached", || {
        let m = Manager::builder().authkey(&b"mixedc"[..]).start().unwrap();
        let cond = m.condition().unwrap();
        assert!(cond.is_attached());
        let raw = raw_client(&m.address(), b"mixedc", 0xc0d);
        let id = cond.remote().id();
        let frames = [
            call_frame(id, "acquire", to_bytes(&(true, None::<Duration>)).unwrap()),
            call_frame(id, "acquire", to_bytes(&(false, None::<Duration>)).unwrap()),
            call_frame(
                id,
                "wait",
                to_bytes(&Some(Duration::from_millis(10))).unwrap(),
            ),
            call_frame(id, "notify", to_bytes(&1u32).unwrap()),
            call_frame(id, "notify_all", to_bytes(&()).unwrap()),
            call_frame(id, "release", to_bytes(&()).unwrap()),
        ];
        // The attached client waits; the served one is refused under and outside the lock.
        cond.acquire().unwrap();
        let c2 = cond.clone();
        let waiter = std::thread::spawn(move || {
            c2.acquire().unwrap();
            let notified = c2.wait_timeout(Duration::from_secs(60));
            c2.release().unwrap();
            notified
        });
        cond.release().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        for f in &frames {
            assert!(raw_call(&raw, f), "a served lock operation was not refused");
        }
        assert!(!raw_call(
            &raw,
            &call_frame(id, "attach", to_bytes(&()).unwrap())
        ));
        // The lock is free for the attached clients: the waiter is notified through it
        // (once it waits).
        while !waiter.is_finished() {
            assert!(cond.acquire_timeout(Duration::from_secs(60)).unwrap());
            cond.notify(1).unwrap();
            cond.release().unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(waiter.join().unwrap().unwrap(), "not notified");
        drop(raw);
        assert!(cond.try_acquire().unwrap());
        cond.release().unwrap();
        m.shutdown().unwrap();
    });
}
