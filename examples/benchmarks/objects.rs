//! "Number of 256 byte objects passed between processes per sec".

use std::hint::black_box;

use shmproc::codec::ByteBuf;
use shmproc::manager::QueueProxy;
use shmproc::{Connection, Process, Queue, RawValue, ShareableQueue};

use crate::limits::Limit;
use crate::measure::{Peers, Workload, wait_until};
use crate::row::{Spec, Unit};

/// Slots of the queues measured here (the bare ring has 256).
const CAPACITY: usize = 1024;

/// A 256-byte object as text (the managed-queue row, and Python's `"0" * 256`).
/// A `String` encodes as one copy, but every decode checks it for UTF-8.
fn object() -> String {
    "0".repeat(256)
}

/// The queue and pipe rows' 256-byte object: the issue's `struct { data: Vec<u8> }`, its byte field
/// marked `#[serde(with = "shmproc::codec::bytes")]` (the `serde_bytes` convention), so it is
/// one length and one copy each way. Unmarked, serde would encode the `Vec<u8>` byte by byte;
/// as a `String`, every decode would check the bytes for UTF-8.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Object {
    #[serde(with = "shmproc::codec::bytes")]
    data: Vec<u8>,
}

/// A 256-byte `Object`.
fn bytes_object() -> Object {
    Object {
        data: vec![b'0'; 256],
    }
}

/// The rows of this family.
pub(crate) fn specs() -> Vec<Spec> {
    let row = |case, shmproc, python, limit, goal| Spec {
        family: "objects",
        case,
        unit: Unit::Rate("objects/s"),
        shmproc,
        python: Some(python),
        limit,
        goal,
    };
    vec![
        row(
            "Queue<Object>, 1 -> 1 process",
            queue_1to1,
            "queue",
            Some(Limit::Ring),
            Some(0.5),
        ),
        row(
            "Queue<Object>, 1 -> 1, get_into",
            queue_1to1_into,
            "queue",
            Some(Limit::Ring),
            Some(0.5),
        ),
        row(
            "Queue<ByteBuf>, 1 -> 1, get_into",
            queue_1to1_bytebuf,
            "queue",
            Some(Limit::Ring),
            Some(0.5),
        ),
        row(
            "Queue<Object>, 2 -> 2 processes",
            queue_2to2,
            "queue_2to2",
            Some(Limit::Ring),
            Some(0.5),
        ),
        row(
            "ShareableQueue<[u8; 256]> (copy), 1 -> 1",
            shareable_1to1,
            "queue",
            Some(Limit::Ring),
            Some(0.5),
        ),
        row(
            "ShareableQueue<[u8; 256]> (loan), 1 -> 1",
            shareable_loan_1to1,
            "queue",
            Some(Limit::Ring),
            Some(0.5),
        ),
        row(
            "Pipe<Object>, one way",
            pipe_one_way,
            "pipe",
            Some(Limit::Ring),
            Some(0.5),
        ),
        row(
            "Queue managed by server",
            managed_queue,
            "managed_queue",
            None,
            None,
        ),
    ]
}

/// A consumer child: gets objects until the queue is closed and drained, publishing how many
/// it has received in `done` after each one.
fn consume_queue((q, done): (Queue<Object>, RawValue<u64>)) {
    let mut n = 0;
    while let Ok(o) = q.get() {
        black_box(o);
        n += 1;
        done.set(n);
    }
}

/// As `consume_queue`, decoding every object into one kept `Object` (`get_into`: a derived
/// struct is decoded whole and assigned, so its `Vec` is still allocated per message).
fn consume_queue_into((q, done): (Queue<Object>, RawValue<u64>)) {
    let mut n = 0;
    let mut o = Object { data: Vec::new() };
    while q.get_into(&mut o).is_ok() {
        black_box(&o);
        n += 1;
        done.set(n);
    }
}

/// As `consume_queue_into`, for `ByteBuf` messages: decoded in place into one kept buffer,
/// nothing allocated per message.
fn consume_bytebuf_into((q, done): (Queue<ByteBuf>, RawValue<u64>)) {
    let mut n = 0;
    let mut b = ByteBuf::with_capacity(256);
    while q.get_into(&mut b).is_ok() {
        black_box(&b);
        n += 1;
        done.set(n);
    }
}

/// `Queue<ByteBuf>`: the same 256 bytes on the wire as an `Object`, the consumer decoding each
/// into one kept buffer (no allocation per message).
pub(crate) fn queue_1to1_bytebuf() -> Option<Workload> {
    let q = Queue::<ByteBuf>::with_capacity(CAPACITY).expect("Queue");
    let done = RawValue::new(0u64).expect("RawValue");
    let child = Process::new(consume_bytebuf_into, (q.clone(), done.clone()))
        .start()
        .expect("start consumer");
    let msg = ByteBuf::from(vec![b'0'; 256]);
    let mut p = Peers::new((q, done, msg, 0u64), vec![child], |s| s.0.close());
    Some(Workload::new(1, move |reps| {
        let (q, done, msg, sent) = &mut p.state;
        for _ in 0..reps {
            q.put(msg).expect("put");
        }
        *sent += reps;
        wait_until(|| done.get() == *sent);
    }))
}

/// A producer child: for each count `n` it gets from `work`, puts `n` objects on `q`.
fn produce_queue((work, q): (Queue<u64>, Queue<Object>)) {
    let msg = bytes_object();
    while let Ok(n) = work.get() {
        for _ in 0..n {
            if q.put(&msg).is_err() {
                return;
            }
        }
    }
}

/// `Queue`: this process puts 256-byte objects, a child consumer gets them; a repetition ends
/// when the child has received every object put so far.
pub(crate) fn queue_1to1() -> Option<Workload> {
    queue_1to1_with(consume_queue)
}

/// `Queue`, as `queue_1to1`, the consumer decoding into one kept value.
pub(crate) fn queue_1to1_into() -> Option<Workload> {
    queue_1to1_with(consume_queue_into)
}

/// `Queue` 1 -> 1 with the consumer child `consume`.
fn queue_1to1_with(consume: fn((Queue<Object>, RawValue<u64>))) -> Option<Workload> {
    let q = Queue::<Object>::with_capacity(CAPACITY).expect("Queue");
    let done = RawValue::new(0u64).expect("RawValue");
    let child = Process::new(consume, (q.clone(), done.clone()))
        .start()
        .expect("start consumer");
    let mut p = Peers::new((q, done, bytes_object(), 0u64), vec![child], |s| {
        s.0.close()
    });
    Some(Workload::new(1, move |reps| {
        let (q, done, msg, sent) = &mut p.state;
        for _ in 0..reps {
            q.put(msg).expect("put");
        }
        *sent += reps;
        wait_until(|| done.get() == *sent);
    }))
}

/// `Queue`, two producers (this process and a child) and two consumer children on one queue;
/// a repetition is one object from each producer, done when the consumers together have
/// received every object put so far.
pub(crate) fn queue_2to2() -> Option<Workload> {
    let q = Queue::<Object>::with_capacity(CAPACITY).expect("Queue");
    let work = Queue::<u64>::with_capacity(16).expect("Queue");
    let done = [0, 1].map(|_| RawValue::new(0u64).expect("RawValue"));
    let mut children: Vec<Process> = done
        .iter()
        .map(|d| {
            Process::new(consume_queue, (q.clone(), d.clone()))
                .start()
                .expect("start consumer")
        })
        .collect();
    children.push(
        Process::new(produce_queue, (work.clone(), q.clone()))
            .start()
            .expect("start producer"),
    );
    let state = (q, work, done, bytes_object(), 0u64);
    let mut p = Peers::new(state, children, |s| {
        s.1.close();
        s.0.close();
    });
    Some(Workload::new(2, move |reps| {
        let (q, work, done, msg, sent) = &mut p.state;
        work.put(&reps).expect("put work");
        for _ in 0..reps {
            q.put(msg).expect("put");
        }
        *sent += 2 * reps;
        wait_until(|| done[0].get() + done[1].get() == *sent);
    }))
}

/// A `ShareableQueue` consumer child: copies values out (or, with `loan`, reads them in
/// place) until the queue is closed and drained, publishing its count in `done`.
fn consume_shareable((q, done, loan): (ShareableQueue<[u8; 256]>, RawValue<u64>, bool)) {
    let mut n = 0;
    loop {
        let r = if loan {
            q.get_with(|v| black_box(v[255]))
        } else {
            q.get().map(|v| black_box(v)[255])
        };
        if r.is_err() {
            return;
        }
        n += 1;
        done.set(n);
    }
}

/// `ShareableQueue<[u8; 256]>`: as `queue_1to1`, with the value copied into and out of its
/// slot with no encoding (`loan`: written and read in place with `put_with`/`get_with`).
fn shareable(loan: bool) -> Option<Workload> {
    let q = ShareableQueue::<[u8; 256]>::with_capacity(CAPACITY).expect("ShareableQueue");
    let done = RawValue::new(0u64).expect("RawValue");
    let child = Process::new(consume_shareable, (q.clone(), done.clone(), loan))
        .start()
        .expect("start consumer");
    let mut p = Peers::new((q, done, 0u64), vec![child], |s| s.0.close());
    Some(Workload::new(1, move |reps| {
        let (q, done, sent) = &mut p.state;
        let msg = [b'0'; 256];
        for i in 0..reps {
            if loan {
                q.put_with(|s| {
                    s.fill(b'0');
                    s[0] = i as u8;
                })
                .expect("put_with");
            } else {
                q.put(&msg).expect("put");
            }
        }
        *sent += reps;
        wait_until(|| done.get() == *sent);
    }))
}

/// `ShareableQueue<[u8; 256]>`, copying `put`/`get`.
pub(crate) fn shareable_1to1() -> Option<Workload> {
    shareable(false)
}

/// `ShareableQueue<[u8; 256]>`, in place `put_with`/`get_with`.
pub(crate) fn shareable_loan_1to1() -> Option<Workload> {
    shareable(true)
}

/// A receiving child: receives objects until end of stream, publishing how many it has
/// received in `done` after each one.
fn consume_pipe((rx, done): (Connection, RawValue<u64>)) {
    let mut n = 0;
    while let Ok(s) = rx.recv::<Object>() {
        black_box(s);
        n += 1;
        done.set(n);
    }
}

/// `Pipe` (one way): this process sends 256-byte objects, a child receives them; a repetition
/// ends when the child has received every object sent so far.
pub(crate) fn pipe_one_way() -> Option<Workload> {
    let (rx, tx) = shmproc::pipe_simplex().expect("pipe_simplex");
    let done = RawValue::new(0u64).expect("RawValue");
    let child = Process::new(consume_pipe, (rx, done.clone()))
        .start()
        .expect("start receiver");
    // Closing the send end ends the child's stream.
    let mut p = Peers::new((tx, done, bytes_object(), 0u64), vec![child], |s| {
        s.0.close()
    });
    Some(Workload::new(1, move |reps| {
        let (tx, done, msg, sent) = &mut p.state;
        for _ in 0..reps {
            tx.send(msg).expect("send");
        }
        *sent += reps;
        wait_until(|| done.get() == *sent);
    }))
}

/// A producer child of a managed queue: for each count `n` it gets from `work`, puts `n`
/// objects on `q`.
fn produce_managed((work, q): (QueueProxy<u64>, QueueProxy<String>)) {
    let msg = object();
    while let Ok(n) = work.get() {
        if n == 0 {
            return;
        }
        for _ in 0..n {
            if q.put(&msg).is_err() {
                return;
            }
        }
    }
}

/// A queue held by a manager process: a child puts 256-byte objects, this process gets them
/// (as Python's figure is measured). Both attach the queue's in-heap form (local clients),
/// so no object goes through the server.
pub(crate) fn managed_queue() -> Option<Workload> {
    let m = shmproc::Manager::start().expect("Manager");
    let q = m.queue::<String>().expect("managed queue");
    let work = m.queue::<u64>().expect("managed queue");
    let child = Process::new(produce_managed, (work.clone(), q.clone()))
        .start()
        .expect("start producer");
    let p = Peers::new((m, q, work), vec![child], |s| {
        let _ = s.2.put(&0);
    });
    Some(Workload::new(1, move |reps| {
        let (_, q, work) = &p.state;
        work.put(&reps).expect("put work");
        for _ in 0..reps {
            black_box(q.get().expect("get"));
        }
    }))
}
