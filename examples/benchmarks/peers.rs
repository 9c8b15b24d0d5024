//! The Rust crates a user would pick instead of shmproc, measured alternately with shmproc run
//! by run in the same process (the `×peer` column is shmproc's rate over the peer's).
//!
//! Rows: 256-byte objects from a child to its parent; `u64` round trips between two
//! processes; process start + join; an uncontended lock. Peers: iceoryx2 (publish-subscribe
//! of `[u8; 256]` / `u64`, zero-copy; the objects' subscriber polls, spinning briefly and then
//! yielding the CPU, the round trips busy-poll), interprocess (a local socket), ipc-channel
//! (its serde channel), procspawn, `std::process::Command` of this same executable exiting at
//! once, bare `fork`, `std::sync::Mutex` and a plain and a robust process-shared pthread mutex.

use std::cell::Cell;
use std::hint::black_box;
use std::io::{Read, Write};

use shmproc::codec::ByteBuf;
use shmproc::{Process, Queue, RawValue, ShareableQueue};

use crate::bare;
use crate::measure::{Peers, Workload, paired, progress, wait_until};
use crate::row::{PyCell, Row, Unit};

/// The environment variable that makes this executable exit at once (the `Command` peer).
pub(crate) const EXIT_AT_ONCE: &str = "SHMPROC_BENCH_EXIT_AT_ONCE";

/// Slots of the queues and buffers of the peers here.
const CAPACITY: usize = 1024;

/// One row: shmproc's workload against one peer's.
struct PeerSpec {
    case: &'static str,
    unit: Unit,
    shmproc: fn() -> Option<Workload>,
    peer: &'static str,
    make_peer: fn() -> Option<Workload>,
}

fn specs() -> Vec<PeerSpec> {
    let objects = |case, shmproc, peer, make_peer| PeerSpec {
        case,
        unit: Unit::Rate("objects/s"),
        shmproc,
        peer,
        make_peer,
    };
    let trips = |case, shmproc, peer, make_peer| PeerSpec {
        case,
        unit: Unit::Rate("round trips/s"),
        shmproc,
        peer,
        make_peer,
    };
    let starts = |case, shmproc, peer, make_peer| PeerSpec {
        case,
        unit: Unit::Rate("starts/s"),
        shmproc,
        peer,
        make_peer,
    };
    let locks = |peer, make_peer| PeerSpec {
        case: "Lock (robust), uncontended",
        unit: Unit::Rate("acq+rel/s"),
        shmproc: crate::lock::lock_guard,
        peer,
        make_peer,
    };
    let shareable = "256 B child -> parent, ShareableQueue (copy)";
    let loan = "256 B child -> parent, ShareableQueue (loan)";
    let serde = "256 B child -> parent, Queue<Vec<u8>> (serde)";
    let blob = "256 B child -> parent, Queue<Blob> (codec::bytes)";
    let bytebuf = "256 B child -> parent, Queue<ByteBuf> (get_into)";
    let pipe = "u64 round trip, Pipe";
    let pipe_blocking = "u64 round trip, Pipe, spinning off";
    vec![
        objects(
            shareable,
            shareable_copy,
            "iceoryx2 pub-sub [u8; 256]",
            ice_objects,
        ),
        objects(
            loan,
            shareable_loan,
            "iceoryx2 pub-sub [u8; 256]",
            ice_objects,
        ),
        objects(
            shareable,
            shareable_copy,
            "interprocess local socket",
            ipr_objects,
        ),
        objects(serde, serde_queue, "interprocess local socket", ipr_objects),
        objects(
            shareable,
            shareable_copy,
            "ipc-channel Vec<u8>",
            ipc_objects,
        ),
        objects(serde, serde_queue, "ipc-channel Vec<u8>", ipc_objects),
        objects(blob, blob_queue, "ipc-channel Vec<u8>", ipc_objects),
        objects(bytebuf, bytebuf_queue, "ipc-channel Vec<u8>", ipc_objects),
        trips(
            pipe,
            crate::pingpong::pipe_round_trip,
            "iceoryx2 busy-poll",
            ice_trips,
        ),
        trips(
            pipe,
            crate::pingpong::pipe_round_trip,
            "interprocess",
            ipr_trips,
        ),
        trips(
            pipe,
            crate::pingpong::pipe_round_trip,
            "ipc-channel",
            ipc_trips,
        ),
        trips(
            pipe_blocking,
            crate::pingpong::pipe_round_trip_blocking,
            "interprocess",
            ipr_trips,
        ),
        trips(
            pipe_blocking,
            crate::pingpong::pipe_round_trip_blocking,
            "ipc-channel",
            ipc_trips,
        ),
        starts(
            "start + join, spawn",
            crate::spawn::start_spawn,
            "procspawn",
            procspawn_start,
        ),
        starts(
            "start + join, spawn",
            crate::spawn::start_spawn,
            "Command of this executable",
            command_start,
        ),
        starts(
            "start + join, fork",
            crate::spawn::start_fork,
            "bare fork + _exit",
            bare_fork,
        ),
        locks("std::sync::Mutex", std_mutex),
        locks("pthread robust pshared", || pthread(true)),
        locks("pthread pshared", || pthread(false)),
    ]
}

/// Measures every row (each pairing alternately, run by run).
pub(crate) fn rows(cfg: &crate::measure::Config) -> Vec<Row> {
    specs()
        .into_iter()
        .map(|s| {
            progress(&format!("peers: {} vs {}", s.case, s.peer));
            let (shm, peer) = match ((s.shmproc)(), (s.make_peer)()) {
                (Some(a), Some(b)) => {
                    let (x, y) = paired(cfg, a, b);
                    (Some(x), Some(y))
                }
                _ => (None, None),
            };
            Row {
                family: "peers",
                case: s.case,
                unit: s.unit,
                shmproc: shm,
                python: PyCell::Missing("n/a".into()),
                limit: None,
                goal: None,
                goal_rate: None,
                spread: None,
                peer: Some((s.peer, peer.unwrap_or(f64::NAN))),
            }
        })
        .collect()
}

/// A unique name for a peer's service or socket.
fn unique(what: &str) -> String {
    thread_local! {
        static N: Cell<u64> = const { Cell::new(0) };
    }
    let n = N.with(|n| n.replace(n.get() + 1));
    format!("shmproc-bench-{what}-{}-{n}", std::process::id())
}

// ---- 256-byte objects, child -> parent ---------------------------------------------------

type Obj = [u8; 256];

/// The shmproc producer child: for each count it gets from `work`, puts that many objects.
fn produce_shareable((work, q, loan): (ShareableQueue<u64>, ShareableQueue<Obj>, bool)) {
    let msg = [b'0'; 256];
    while let Ok(n) = work.get() {
        for i in 0..n {
            let r = if loan {
                q.put_with(|s| {
                    s.fill(b'0');
                    s[0] = i as u8;
                })
            } else {
                q.put(&msg)
            };
            if r.is_err() {
                return;
            }
        }
    }
}

fn shareable(loan: bool) -> Option<Workload> {
    let work = ShareableQueue::<u64>::with_capacity(16).expect("work");
    let q = ShareableQueue::<Obj>::with_capacity(CAPACITY).expect("ShareableQueue");
    let child = Process::new(produce_shareable, (work.clone(), q.clone(), loan))
        .start()
        .expect("start producer");
    let p = Peers::new((work, q), vec![child], |s| {
        s.0.close();
        s.1.close();
    });
    Some(Workload::new(1, move |reps| {
        let (work, q) = &p.state;
        work.put(&reps).expect("put work");
        for _ in 0..reps {
            if loan {
                q.get_with(|v| black_box(v[255])).expect("get_with");
            } else {
                black_box(q.get().expect("get"));
            }
        }
    }))
}

fn shareable_copy() -> Option<Workload> {
    shareable(false)
}

fn shareable_loan() -> Option<Workload> {
    shareable(true)
}

/// The serde producer child: `Vec<u8>` objects through a `Queue`.
fn produce_serde((work, q): (ShareableQueue<u64>, Queue<Vec<u8>>)) {
    let msg = vec![b'0'; 256];
    while let Ok(n) = work.get() {
        for _ in 0..n {
            if q.put(&msg).is_err() {
                return;
            }
        }
    }
}

fn serde_queue() -> Option<Workload> {
    let work = ShareableQueue::<u64>::with_capacity(16).expect("work");
    let q = Queue::<Vec<u8>>::with_capacity(CAPACITY).expect("Queue");
    let child = Process::new(produce_serde, (work.clone(), q.clone()))
        .start()
        .expect("start producer");
    let p = Peers::new((work, q), vec![child], |s| {
        s.0.close();
        s.1.close();
    });
    Some(Workload::new(1, move |reps| {
        let (work, q) = &p.state;
        work.put(&reps).expect("put work");
        for _ in 0..reps {
            black_box(q.get().expect("get"));
        }
    }))
}

/// The 256-byte object, its byte field encoded as one string.
#[derive(serde::Serialize, serde::Deserialize)]
struct Blob {
    #[serde(with = "shmproc::codec::bytes")]
    data: Vec<u8>,
}

/// The `Blob` producer child.
fn produce_blob((work, q): (ShareableQueue<u64>, Queue<Blob>)) {
    let msg = Blob {
        data: vec![b'0'; 256],
    };
    while let Ok(n) = work.get() {
        for _ in 0..n {
            if q.put(&msg).is_err() {
                return;
            }
        }
    }
}

fn blob_queue() -> Option<Workload> {
    let work = ShareableQueue::<u64>::with_capacity(16).expect("work");
    let q = Queue::<Blob>::with_capacity(CAPACITY).expect("Queue");
    let child = Process::new(produce_blob, (work.clone(), q.clone()))
        .start()
        .expect("start producer");
    let p = Peers::new((work, q), vec![child], |s| {
        s.0.close();
        s.1.close();
    });
    Some(Workload::new(1, move |reps| {
        let (work, q) = &p.state;
        work.put(&reps).expect("put work");
        for _ in 0..reps {
            black_box(q.get().expect("get").data);
        }
    }))
}

/// The `ByteBuf` producer child.
fn produce_bytebuf((work, q): (ShareableQueue<u64>, Queue<ByteBuf>)) {
    let msg = ByteBuf::from(vec![b'0'; 256]);
    while let Ok(n) = work.get() {
        for _ in 0..n {
            if q.put(&msg).is_err() {
                return;
            }
        }
    }
}

/// The same 256 bytes on the wire as a `Blob`, received into one kept buffer (`get_into`: no
/// allocation per message).
fn bytebuf_queue() -> Option<Workload> {
    let work = ShareableQueue::<u64>::with_capacity(16).expect("work");
    let q = Queue::<ByteBuf>::with_capacity(CAPACITY).expect("Queue");
    let child = Process::new(produce_bytebuf, (work.clone(), q.clone()))
        .start()
        .expect("start producer");
    let mut p = Peers::new((work, q, ByteBuf::with_capacity(256)), vec![child], |s| {
        s.0.close();
        s.1.close();
    });
    Some(Workload::new(1, move |reps| {
        let (work, q, buf) = &mut p.state;
        work.put(&reps).expect("put work");
        for _ in 0..reps {
            q.get_into(buf).expect("get_into");
            black_box(&*buf);
        }
    }))
}

fn ice_node() -> iceoryx2::prelude::Node<iceoryx2::prelude::ipc::Service> {
    use iceoryx2::prelude::*;
    set_log_level(LogLevel::Error);
    NodeBuilder::new()
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<ipc::Service>()
        .expect("iceoryx2 node")
}

/// The iceoryx2 publisher child: opens the service, says it is ready, then publishes as many
/// samples as each count from `work` asks for (retrying while the subscriber's buffer is full).
fn ice_publish((name, work, ready): (String, ShareableQueue<u64>, RawValue<u64>)) {
    use iceoryx2::prelude::*;
    let node = ice_node();
    let service = node
        .service_builder(&name.as_str().try_into().expect("service name"))
        .publish_subscribe::<Obj>()
        .open()
        .expect("open service");
    let publisher = service
        .publisher_builder()
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .expect("publisher");
    ready.set(1);
    while let Ok(n) = work.get() {
        for i in 0..n {
            let sample = publisher.loan_uninit().expect("loan");
            let mut v = [b'0'; 256];
            v[0] = i as u8;
            let sample = sample.write_payload(v);
            sample.send().expect("send");
        }
    }
}

fn ice_objects() -> Option<Workload> {
    let name = unique("ice-objects");
    let node = ice_node();
    let service = node
        .service_builder(&name.as_str().try_into().expect("service name"))
        .publish_subscribe::<Obj>()
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(CAPACITY)
        .create()
        .expect("create service");
    let subscriber = service.subscriber_builder().create().expect("subscriber");
    let work = ShareableQueue::<u64>::with_capacity(16).expect("work");
    let ready = RawValue::new(0u64).expect("ready");
    let child = Process::new(ice_publish, (name, work.clone(), ready.clone()))
        .start()
        .expect("start publisher");
    wait_until(|| ready.get() == 1);
    let p = Peers::new((work, subscriber, service, node), vec![child], |s| {
        s.0.close()
    });
    Some(Workload::new(1, move |reps| {
        let (work, subscriber, _, _) = &p.state;
        work.put(&reps).expect("put work");
        let mut got = 0;
        let mut idle = 0u32;
        while got < reps {
            if let Some(s) = subscriber.receive().expect("receive") {
                black_box(s.payload()[255]);
                got += 1;
                idle = 0;
            } else {
                idle = idle.saturating_add(1);
                poll_pause(idle);
            }
        }
    }))
}

/// Empty polls a subscriber spins through before it yields the CPU.
const POLL_SPINS: u32 = 64;

/// What a polling subscriber does after `idle` empty polls in a row: a short spin, then
/// `sched_yield`. A subscriber that only spins takes the CPU its publisher needs whenever the
/// two share a core (2 cores, other work running): iceoryx2 then measured 35-60 k objects/s
/// where it does over 1 M; `ShareableQueue::get` spins briefly and then sleeps, so the pairing
/// is fair only if the iceoryx2 side gives the CPU back too.
fn poll_pause(idle: u32) {
    if idle <= POLL_SPINS {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

fn ipr_name(name: &str) -> interprocess::local_socket::Name<'static> {
    use interprocess::local_socket::{GenericNamespaced, ToNsName};
    name.to_owned()
        .to_ns_name::<GenericNamespaced>()
        .expect("socket name")
}

/// The interprocess writer child: connects, then writes as many 256-byte objects as each
/// count from `work` asks for.
fn ipr_write((name, work): (String, ShareableQueue<u64>)) {
    use interprocess::local_socket::{Stream, traits::Stream as _};
    let mut s = Stream::connect(ipr_name(&name)).expect("connect");
    let msg = [b'0'; 256];
    while let Ok(n) = work.get() {
        for _ in 0..n {
            if s.write_all(&msg).is_err() {
                return;
            }
        }
    }
}

fn ipr_accept(
    name: &str,
    start: impl FnOnce() -> Process,
) -> (interprocess::local_socket::Stream, Process) {
    use interprocess::local_socket::{ListenerOptions, traits::Listener as _};
    let listener = ListenerOptions::new()
        .name(ipr_name(name))
        .create_sync()
        .expect("listen");
    let child = start();
    let stream = listener.accept().expect("accept");
    (stream, child)
}

fn ipr_objects() -> Option<Workload> {
    let name = unique("ipr-objects");
    let work = ShareableQueue::<u64>::with_capacity(16).expect("work");
    let w2 = work.clone();
    let n2 = name.clone();
    let (stream, child) = ipr_accept(&name, move || {
        Process::new(ipr_write, (n2, w2))
            .start()
            .expect("start writer")
    });
    let mut p = Peers::new((work, stream), vec![child], |s| s.0.close());
    Some(Workload::new(1, move |reps| {
        let (work, stream) = &mut p.state;
        work.put(&reps).expect("put work");
        let mut buf = [0u8; 256];
        for _ in 0..reps {
            stream.read_exact(&mut buf).expect("read");
            black_box(&buf);
        }
    }))
}

/// The ipc-channel sender child: connects to the one-shot server, then sends as many
/// `Vec<u8>` objects as each count from `work` asks for.
fn ipc_send((name, work): (String, ShareableQueue<u64>)) {
    let tx = ipc_channel::ipc::IpcSender::<Vec<u8>>::connect(name).expect("connect");
    tx.send(Vec::new()).expect("hello");
    let msg = vec![b'0'; 256];
    while let Ok(n) = work.get() {
        for _ in 0..n {
            if tx.send(msg.clone()).is_err() {
                return;
            }
        }
    }
}

fn ipc_objects() -> Option<Workload> {
    let (server, name) = ipc_channel::ipc::IpcOneShotServer::<Vec<u8>>::new().expect("server");
    let work = ShareableQueue::<u64>::with_capacity(16).expect("work");
    let child = Process::new(ipc_send, (name, work.clone()))
        .start()
        .expect("start sender");
    let (rx, _hello) = server.accept().expect("accept");
    let p = Peers::new((work, rx), vec![child], |s| s.0.close());
    Some(Workload::new(1, move |reps| {
        let (work, rx) = &p.state;
        work.put(&reps).expect("put work");
        for _ in 0..reps {
            black_box(rx.recv().expect("recv"));
        }
    }))
}

// ---- u64 round trips ---------------------------------------------------------------------

/// The iceoryx2 echo child: busy-polls `name/ping`, publishes each value back on `name/pong`,
/// until it receives `u64::MAX`.
fn ice_echo((name, ready): (String, RawValue<u64>)) {
    let node = ice_node();
    let ping = node
        .service_builder(&format!("{name}/ping").as_str().try_into().expect("name"))
        .publish_subscribe::<u64>()
        .open()
        .expect("open ping");
    let pong = node
        .service_builder(&format!("{name}/pong").as_str().try_into().expect("name"))
        .publish_subscribe::<u64>()
        .open()
        .expect("open pong");
    let sub = ping.subscriber_builder().create().expect("subscriber");
    let publisher = pong.publisher_builder().create().expect("publisher");
    ready.set(1);
    loop {
        match sub.receive().expect("receive") {
            Some(s) if *s.payload() == u64::MAX => return,
            Some(s) => {
                publisher.send_copy(*s.payload()).expect("send");
            }
            None => std::hint::spin_loop(),
        }
    }
}

fn ice_trips() -> Option<Workload> {
    let name = unique("ice-trips");
    let node = ice_node();
    let ping = node
        .service_builder(&format!("{name}/ping").as_str().try_into().expect("name"))
        .publish_subscribe::<u64>()
        .create()
        .expect("create ping");
    let pong = node
        .service_builder(&format!("{name}/pong").as_str().try_into().expect("name"))
        .publish_subscribe::<u64>()
        .create()
        .expect("create pong");
    let sub = pong.subscriber_builder().create().expect("subscriber");
    let publisher = ping.publisher_builder().create().expect("publisher");
    let ready = RawValue::new(0u64).expect("ready");
    let child = Process::new(ice_echo, (name, ready.clone()))
        .start()
        .expect("start echo");
    wait_until(|| ready.get() == 1);
    let p = Peers::new((publisher, sub, ping, pong, node), vec![child], |s| {
        let _ = s.0.send_copy(u64::MAX);
    });
    Some(Workload::new(1, move |reps| {
        let (publisher, sub, _, _, _) = &p.state;
        for i in 0..reps {
            publisher.send_copy(i).expect("send");
            loop {
                if let Some(s) = sub.receive().expect("receive") {
                    debug_assert_eq!(*s.payload(), i);
                    break;
                }
                std::hint::spin_loop();
            }
        }
    }))
}

/// The interprocess echo child: reads 8 bytes, writes them back, until end of stream.
fn ipr_echo(name: String) {
    use interprocess::local_socket::{Stream, traits::Stream as _};
    let mut s = Stream::connect(ipr_name(&name)).expect("connect");
    let mut b = [0u8; 8];
    while s.read_exact(&mut b).is_ok() {
        if s.write_all(&b).is_err() {
            return;
        }
    }
}

fn ipr_trips() -> Option<Workload> {
    let name = unique("ipr-trips");
    let n2 = name.clone();
    let (stream, child) = ipr_accept(&name, move || {
        Process::new(ipr_echo, n2).start().expect("start echo")
    });
    // Dropping the stream (after `stop`) ends the child's reads.
    let mut p = Peers::new(Some(stream), vec![child], |s| drop(s.take()));
    Some(Workload::new(1, move |reps| {
        let stream = p.state.as_mut().expect("stream");
        let mut b = [0u8; 8];
        for i in 0..reps {
            stream.write_all(&i.to_le_bytes()).expect("write");
            stream.read_exact(&mut b).expect("read");
        }
    }))
}

type Ping = (u64, Option<ipc_channel::ipc::IpcSender<u64>>);

/// The ipc-channel echo child: sends the parent its ping sender, then echoes each ping on the
/// reply sender the first ping carries, until `u64::MAX`.
fn ipc_echo(name: String) {
    let (tx, rx) = ipc_channel::ipc::channel::<Ping>().expect("channel");
    ipc_channel::ipc::IpcSender::<ipc_channel::ipc::IpcSender<Ping>>::connect(name)
        .expect("connect")
        .send(tx)
        .expect("send sender");
    let mut reply = None;
    while let Ok((v, r)) = rx.recv() {
        if v == u64::MAX {
            return;
        }
        if let Some(r) = r {
            reply = Some(r);
        }
        if let Some(r) = &reply {
            r.send(v).expect("reply");
        }
    }
}

fn ipc_trips() -> Option<Workload> {
    use ipc_channel::ipc::{IpcOneShotServer, IpcSender};
    let (server, name) = IpcOneShotServer::<IpcSender<Ping>>::new().expect("server");
    let child = Process::new(ipc_echo, name).start().expect("start echo");
    let (_rx, ping) = server.accept().expect("accept");
    let (reply_tx, reply_rx) = ipc_channel::ipc::channel::<u64>().expect("channel");
    ping.send((0, Some(reply_tx))).expect("first ping");
    assert_eq!(reply_rx.recv().expect("first pong"), 0);
    let p = Peers::new((ping, reply_rx), vec![child], |s| {
        let _ = s.0.send((u64::MAX, None));
    });
    Some(Workload::new(1, move |reps| {
        let (ping, reply) = &p.state;
        for i in 0..reps {
            ping.send((i, None)).expect("send");
            let back = reply.recv().expect("recv");
            debug_assert_eq!(back, i);
        }
    }))
}

// ---- process start -----------------------------------------------------------------------

fn procspawn_start() -> Option<Workload> {
    Some(Workload::new(1, |reps| {
        for _ in 0..reps {
            procspawn::spawn((), |()| ())
                .join()
                .expect("procspawn join");
        }
    }))
}

fn command_start() -> Option<Workload> {
    let exe = std::env::current_exe().expect("current_exe");
    Some(Workload::new(1, move |reps| {
        for _ in 0..reps {
            let status = std::process::Command::new(&exe)
                .env(EXIT_AT_ONCE, "1")
                .status()
                .expect("Command");
            assert!(status.success(), "child failed");
        }
    }))
}

fn bare_fork() -> Option<Workload> {
    Some(Workload::new(1, |reps| {
        for _ in 0..reps {
            bare::fork_exit_wait();
        }
    }))
}

// ---- uncontended lock --------------------------------------------------------------------

fn std_mutex() -> Option<Workload> {
    Some(crate::limits::Limit::StdMutex.workload())
}

fn pthread(robust: bool) -> Option<Workload> {
    let m = bare::PthreadMutex::new(robust);
    Some(Workload::new(1, move |reps| m.cycles(reps)))
}
