//! Loom models of the queue ring's slot protocol (run by `scripts/loom`).
//!
//! The ring code runs unchanged on [`LoomMem`]: its words are loom atomics and each slot's
//! message bytes sit in a loom `UnsafeCell`, so a copy that is not ordered after the state
//! word's hand-over (a missing Release/Acquire) is reported as a data race.
//!
//! # Safety
//!
//! The two unsafe blocks dereference loom `UnsafeCell` pointers; loom itself checks that no
//! access to a cell is concurrent with another, which is exactly what the model tests.

#![allow(unsafe_code)]

use super::ring::{Attempt, HEADER, Payload, Ring, RingMem, SLOT, Taken, ring_bytes};
use crate::error::Error;
use crate::loom::{AtomicU32, AtomicU64};
use loom::cell::UnsafeCell;
use loom::sync::Arc;

/// Bytes of message a model slot holds (models send short messages).
const MODEL_BYTES: usize = 8;

struct LoomMem {
    w64: Vec<AtomicU64>,
    w32: Vec<AtomicU32>,
    data: Vec<UnsafeCell<[u8; MODEL_BYTES]>>,
}

impl LoomMem {
    fn new(capacity: u64) -> Arc<LoomMem> {
        let len = ring_bytes(capacity).expect("size") as usize;
        Arc::new(LoomMem {
            w64: (0..len / 8).map(|_| AtomicU64::new(0)).collect(),
            w32: (0..len / 4).map(|_| AtomicU32::new(0)).collect(),
            data: (0..capacity)
                .map(|_| UnsafeCell::new([0; MODEL_BYTES]))
                .collect(),
        })
    }

    fn slot_of(off: usize) -> usize {
        (off - HEADER - 16) / SLOT
    }
}

impl RingMem for Arc<LoomMem> {
    fn w64(&self, off: usize) -> &AtomicU64 {
        &self.w64[off / 8]
    }

    fn w32(&self, off: usize) -> &AtomicU32 {
        &self.w32[off / 4]
    }

    unsafe fn write_bytes(&self, off: usize, bytes: &[u8]) {
        self.data[LoomMem::slot_of(off)].with_mut(|p| {
            // SAFETY: loom checks that no other access to the cell is concurrent with this one.
            let cell = unsafe { &mut *p };
            cell[..bytes.len()].copy_from_slice(bytes);
        });
    }

    unsafe fn read_bytes(&self, off: usize, out: &mut [u8]) {
        self.data[LoomMem::slot_of(off)].with(|p| {
            // SAFETY: as in `write_bytes`.
            let cell = unsafe { &*p };
            out.copy_from_slice(&cell[..out.len()]);
        });
    }
}

/// Runs a model with room for the waiting loops (a put or get retried after a yield), at most
/// `preemptions` preemptions per execution (three threads at bound 2 take hours).
fn model(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.max_branches = 100_000;
    b.preemption_bound = Some(preemptions);
    b.check(f);
}

fn ring(mem: &Arc<LoomMem>, capacity: u64) -> Ring<Arc<LoomMem>> {
    Ring::attach_mem(Arc::clone(mem), ring_bytes(capacity).expect("size")).expect("ring")
}

fn put(ring: &Ring<Arc<LoomMem>>, msg: [u8; 4]) {
    loop {
        match ring.try_put(&Payload::Inline(&msg)).expect("put") {
            Attempt::Done(()) => return,
            Attempt::WouldBlock | Attempt::Busy => loom::thread::yield_now(),
        }
    }
}

fn get(ring: &Ring<Arc<LoomMem>>) -> [u8; 4] {
    loop {
        match ring.try_get().expect("get") {
            Attempt::Done(Taken::Inline(buf, n)) => {
                assert_eq!(n, 4, "message length");
                return [buf[0], buf[1], buf[2], buf[3]];
            }
            Attempt::Done(Taken::External(..)) => panic!("models send inline messages"),
            Attempt::WouldBlock | Attempt::Busy => loom::thread::yield_now(),
        }
    }
}

#[test]
fn two_producers_one_consumer_deliver_every_message_once_and_whole() {
    model(1, || {
        let mem = LoomMem::new(2);
        let _ = Ring::init_mem(Arc::clone(&mem), ring_bytes(2).expect("size"), 2, 0);
        let producers: Vec<_> = (1..=2u8)
            .map(|p| {
                let mem = Arc::clone(&mem);
                loom::thread::spawn(move || put(&ring(&mem, 2), [p; 4]))
            })
            .collect();
        let r = ring(&mem, 2);
        let mut got = vec![get(&r), get(&r)];
        for p in producers {
            p.join().expect("producer");
        }
        got.sort_unstable();
        assert_eq!(got, vec![[1; 4], [2; 4]]);
        assert_eq!(r.len(), 0);
    });
}

#[test]
fn one_slot_ring_keeps_order_across_laps() {
    model(2, || {
        let mem = LoomMem::new(1);
        let _ = Ring::init_mem(Arc::clone(&mem), ring_bytes(1).expect("size"), 1, 0);
        let m2 = Arc::clone(&mem);
        let producer = loom::thread::spawn(move || {
            let r = ring(&m2, 1);
            put(&r, [1; 4]);
            put(&r, [2; 4]);
        });
        let r = ring(&mem, 1);
        assert_eq!(get(&r), [1; 4]);
        assert_eq!(get(&r), [2; 4]);
        producer.join().expect("producer");
    });
}

/// A consumer blocked in `get` (spin, announce on `not_empty`, fence, re-check, sleep) is
/// woken by a producer's `put` (fill, fence, look for sleepers): the ring's wait is the
/// shared event count, and under loom a sleep has no slice, so a lost wake-up would leave the
/// consumer asleep forever (a deadlock loom reports).
#[test]
fn blocking_get_is_woken_by_a_put() {
    model(2, || {
        let mem = LoomMem::new(1);
        let _ = Ring::init_mem(Arc::clone(&mem), ring_bytes(1).expect("size"), 1, 0);
        let m2 = Arc::clone(&mem);
        let consumer = loom::thread::spawn(move || match ring(&m2, 1).get(None) {
            Ok(Taken::Inline(buf, 4)) => assert_eq!(buf[..4], [7; 4]),
            other => panic!("unexpected {other:?}"),
        });
        ring(&mem, 1)
            .put(&Payload::Inline(&[7; 4]), None)
            .expect("put");
        consumer.join().expect("consumer");
    });
}

/// A producer blocked in `put` on a full ring is woken by a consumer's `get`.
#[test]
fn blocking_put_is_woken_by_a_get() {
    model(2, || {
        let mem = LoomMem::new(1);
        let _ = Ring::init_mem(Arc::clone(&mem), ring_bytes(1).expect("size"), 1, 0);
        let r = ring(&mem, 1);
        put(&r, [1; 4]);
        let m2 = Arc::clone(&mem);
        let producer = loom::thread::spawn(move || {
            ring(&m2, 1)
                .put(&Payload::Inline(&[2; 4]), None)
                .expect("put");
        });
        assert_eq!(get(&r), [1; 4]);
        producer.join().expect("producer");
        assert_eq!(get(&r), [2; 4]);
    });
}

/// A producer whose blocking `put` finds the tail slot `WRITING` by a live producer sleeps on
/// `not_empty` (`Attempt::Busy`) and is woken by that producer's publish: under loom a sleep
/// has no slice, so a lost wake-up is a deadlock loom reports.
#[test]
fn blocking_put_behind_a_busy_slot_is_woken_by_its_publish() {
    model(2, || {
        let mem = LoomMem::new(2);
        let _ = Ring::init_mem(Arc::clone(&mem), ring_bytes(2).expect("size"), 2, 0);
        let m2 = Arc::clone(&mem);
        let producer = loom::thread::spawn(move || {
            ring(&m2, 2)
                .put(&Payload::Inline(&[1; 4]), None)
                .expect("put");
        });
        let r = ring(&mem, 2);
        r.put(&Payload::Inline(&[2; 4]), None).expect("put");
        producer.join().expect("producer");
        let mut got = [get(&r), get(&r)];
        got.sort_unstable();
        assert_eq!(got, [[1; 4], [2; 4]]);
    });
}

/// A consumer whose blocking `get` finds the head slot `READING` by a live consumer sleeps on
/// `not_full` (`Attempt::Busy`) and is woken by that consumer's release.
#[test]
fn blocking_get_behind_a_busy_slot_is_woken_by_its_release() {
    model(2, || {
        let mem = LoomMem::new(2);
        let _ = Ring::init_mem(Arc::clone(&mem), ring_bytes(2).expect("size"), 2, 0);
        let r = ring(&mem, 2);
        put(&r, [1; 4]);
        put(&r, [2; 4]);
        let m2 = Arc::clone(&mem);
        let consumer = loom::thread::spawn(move || match ring(&m2, 2).get(None) {
            Ok(Taken::Inline(buf, 4)) => buf[0],
            other => panic!("unexpected {other:?}"),
        });
        let mine = match r.get(None) {
            Ok(Taken::Inline(buf, 4)) => buf[0],
            other => panic!("unexpected {other:?}"),
        };
        let theirs = consumer.join().expect("consumer");
        let mut got = [mine, theirs];
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

/// `close` racing a put: either the put fails with `Closed`, or its message reaches the
/// blocking get that follows the close; never `Ok` for the put and `Closed` for the get.
#[test]
fn close_during_a_put_never_reports_closed_before_its_message() {
    model(2, || {
        let mem = LoomMem::new(1);
        let _ = Ring::init_mem(Arc::clone(&mem), ring_bytes(1).expect("size"), 1, 0);
        let m2 = Arc::clone(&mem);
        let producer =
            loom::thread::spawn(move || ring(&m2, 1).put(&Payload::Inline(&[5; 4]), None));
        let r = ring(&mem, 1);
        r.close();
        let got = r.get(None);
        let put = producer.join().expect("producer");
        match (put, got) {
            (Ok(()), Ok(Taken::Inline(buf, 4))) => assert_eq!(buf[..4], [5; 4]),
            (Ok(()), Err(e)) => panic!("the put returned Ok, the get after close {e:?}"),
            (Err(Error::Closed), Err(Error::Closed)) => {}
            (Err(Error::Closed), Ok(_)) => panic!("a put that returned Closed was delivered"),
            other => panic!("unexpected {other:?}"),
        }
    });
}
