//! References held by processes that die: a child killed or terminated while it holds
//! references (an `Array` it was passed, a queue, a message it took) has them released when
//! it is reaped, so the heap's used bytes return to where they were.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the assertion

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shmproc::testing::{assert_no_leaks, watchdog};
use shmproc::{Array, Process, Queue, RawValue, Segment};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn used() -> u64 {
    shmproc::default_segment().unwrap().stats().used
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn hold_array(a: Array<u8>) {
    a.set(0, 1).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Regression (issue 17): a 1 MiB `Array` passed to a child that is SIGKILLed is freed once
/// the parent drops its handle (the child's reference dies with it).
#[test]
fn array_passed_to_a_killed_child_is_freed_after_the_parent_drops_it() {
    watchdog(Duration::from_secs(120), "array_killed_child", || {
        assert_no_leaks(|| {
            let before = used();
            let a = Array::<u8>::new(1 << 20).unwrap();
            let p = Process::new(hold_array, a.clone()).start().unwrap();
            wait_until("the child to hold the array", || a.get(0).unwrap() == 1);
            p.kill().unwrap();
            p.join().unwrap();
            assert!(used() >= (1 << 20), "the parent's array is still live");
            drop(a);
            assert_eq!(
                used(),
                before,
                "the killed child's reference was not released"
            );
        })
    });
}

fn hold_queue(q: Queue<u64>) {
    q.put(&1).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Regression (issue 17): a new queue per round, passed to a child that is terminated, does
/// not exhaust the default heap (it did after 31 rounds): every round ends where it began.
#[test]
fn queue_per_round_with_terminated_children_does_not_exhaust_the_heap() {
    watchdog(Duration::from_secs(300), "queue_per_round", || {
        assert_no_leaks(|| {
            let before = used();
            for round in 0..40 {
                let q = Queue::<u64>::new().unwrap();
                let p = Process::new(hold_queue, q.clone()).start().unwrap();
                assert_eq!(q.get_timeout(Duration::from_secs(60)).unwrap(), 1);
                p.terminate().unwrap();
                p.join().unwrap();
                drop(q);
                assert_eq!(used(), before, "round {round}: the child's queue leaked");
            }
        })
    });
}

/// Set in the consumer child: deserializing a [`Stall`] signals it and never returns.
static STALL_FLAG: OnceLock<RawValue<u32>> = OnceLock::new();

/// A message larger than a queue slot whose deserialization stalls in the consumer.
struct Stall(Vec<u8>);

impl Serialize for Stall {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Stall {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<u8>::deserialize(d)?;
        if let Some(flag) = STALL_FLAG.get() {
            // The consumer has adopted the message's block and is reading it.
            flag.set(1);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        Ok(Stall(v))
    }
}

fn stalling_consumer((q, flag): (Queue<Stall>, RawValue<u32>)) {
    let _ = STALL_FLAG.set(flag);
    let _ = q.get();
}

/// Regression (issue 17): a consumer killed after adopting a larger-than-slot message (while
/// it reads it) does not leak the message's block.
#[test]
fn consumer_killed_after_adopting_a_large_message_does_not_leak_its_block() {
    watchdog(Duration::from_secs(120), "consumer_killed", || {
        assert_no_leaks(|| {
            let before = used();
            let q = Queue::<Stall>::new().unwrap();
            let flag = RawValue::new(0u32).unwrap();
            q.put(&Stall(vec![7; 100_000])).unwrap();
            let with_message = used();
            let p = Process::new(stalling_consumer, (q.clone(), flag.clone()))
                .start()
                .unwrap();
            wait_until("the consumer to read the message", || flag.get() == 1);
            p.kill().unwrap();
            p.join().unwrap();
            assert!(q.is_empty(), "the message was taken");
            assert!(
                used() < with_message,
                "the killed consumer's message block is still allocated"
            );
            drop((q, flag));
            assert_eq!(used(), before);
        })
    });
}

/// A fresh segment's used bytes start at 0 and return to 0 when its objects are gone, also
/// when a reaped child held some (journals are accounted apart).
#[test]
fn journals_are_not_counted_as_used_bytes() {
    watchdog(Duration::from_secs(60), "journals_not_used", || {
        let seg = Segment::create(1 << 20).unwrap();
        assert_eq!(seg.stats().used, 0);
        let a = Array::<u64>::new_in(&seg, 10).unwrap();
        assert!(seg.stats().journals > 0, "the holder's journal");
        drop(a);
        assert_eq!(seg.stats().used, 0);
    });
}
