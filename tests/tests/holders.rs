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

/// Reads the 8-byte little-endian word at `off` of `h`'s segment.
fn peek64(h: &shmproc::heap_testing::TestHeap, off: u64) -> u64 {
    (0..8).fold(0, |acc, i| {
        acc | u64::from(h.peek_u8(off + i).unwrap()) << (8 * i)
    })
}

/// Writes the 8-byte little-endian word `v` at `off` of `h`'s segment.
fn poke64(h: &shmproc::heap_testing::TestHeap, off: u64, v: u64) {
    for (i, b) in v.to_le_bytes().into_iter().enumerate() {
        h.poke_u8(off + i as u64, b).unwrap();
    }
}

/// Where the holder table of a 64 KiB segment begins (past the 256-byte bitmap at 1024).
const HOLDERS_64K: u64 = 1280;

/// Forks a child that allocates `count` blocks of `size` bytes in `h` and then renames its holder slot to
/// the stamp of a process that cannot exist (`pid`, above any pid limit), so reaping it
/// releases nothing and the slot stays as a dead process's. Returns the slot's offset.
fn dead_holder_with_blocks(
    h: &shmproc::heap_testing::TestHeap,
    pid: u64,
    size: u64,
    count: u64,
) -> u64 {
    use shmproc::testing::{ForkPermit, fork};
    let h2 = shmproc::heap_testing::TestHeap::on(h.segment());
    // SAFETY: the caller runs no thread that holds a lock the child takes (the watchdog's
    // thread only waits on a channel).
    let mut child = fork(unsafe { ForkPermit::new() }, move || {
        let me = u64::from(std::process::id());
        for _ in 0..count {
            h2.alloc(size, 8).unwrap();
        }
        for i in 0..16 {
            let slot = HOLDERS_64K + 32 * i;
            if peek64(&h2, slot) >> 32 == me {
                poke64(&h2, slot, pid << 32 | 1);
                return 0;
            }
        }
        1
    });
    assert_eq!(child.wait(), Ok(0));
    (0..16)
        .map(|i| HOLDERS_64K + 32 * i)
        .find(|&s| peek64(h, s) == pid << 32 | 1)
        .unwrap()
}

/// Regression: a dead holder whose journal word was scribbled to an offset that names no
/// block does not stop the release of the dead holders after it in the table: its slot is
/// cleared (the damage reported as an error) and the next holder's block is freed.
#[test]
fn a_damaged_journal_head_does_not_block_releasing_other_dead_holders() {
    watchdog(Duration::from_secs(60), "damaged_journal_head", || {
        let h = shmproc::heap_testing::TestHeap::new(1 << 16).unwrap();
        let first = dead_holder_with_blocks(&h, 0x3fff_fff0, 100, 1);
        let second = dead_holder_with_blocks(&h, 0x3fff_fff1, 100, 1);
        assert!(first < second, "slots are claimed in table order");
        assert!(h.stats().used > 0);
        // The first dead holder's journal now names the middle of a block header.
        poke64(&h, first + 8, 4096 + 8);
        assert!(h.release_dead().is_err(), "the damage is reported");
        assert_eq!(peek64(&h, first), 0, "the damaged holder's slot is freed");
        assert_eq!(peek64(&h, second), 0, "the second dead holder is released");
        // The first holder's block is lost with its journal; the second's is freed.
        let r = h.walk().unwrap();
        assert_eq!(r.live_blocks, 1, "{r:?}");
    });
}

/// Regression: an allocation that finds the heap full retries after releasing dead holders
/// also when one of them was damaged: the block a healthy dead holder held is reused at
/// once, not left on a free list behind an `OutOfMemory`.
#[test]
fn a_full_heap_retries_after_releasing_past_a_damaged_holder() {
    watchdog(Duration::from_secs(60), "full_heap_damaged_holder", || {
        let h = shmproc::heap_testing::TestHeap::new(1 << 16).unwrap();
        let first = dead_holder_with_blocks(&h, 0x3fff_fff0, 100, 1);
        let second = dead_holder_with_blocks(&h, 0x3fff_fff1, 5000, 1);
        poke64(&h, first + 8, 4096 + 8);
        // Fill the heap; the first failure releases the dead holders and retries.
        let mut taken = Vec::new();
        while let Ok(o) = h.alloc(5000, 8) {
            taken.push(o);
        }
        assert_eq!(
            peek64(&h, second),
            0,
            "the healthy dead holder was released"
        );
        assert!(
            h.alloc(5000, 8).is_err(),
            "the released block was left free after an OutOfMemory"
        );
        for o in taken {
            h.free(o).unwrap();
        }
    });
}

/// Regression: two processes releasing the same dead holder at once (a reap and a full
/// heap, say) never release what a live process holds. Entries were read without the lock:
/// one releaser could finish the holder, a live thread claim the freed slot or take a freed
/// journal chunk for its own references, and the other releaser then dropped those live
/// references (the blocks were freed under their holder).
#[test]
fn concurrent_releasers_never_release_a_live_holders_references() {
    watchdog(Duration::from_secs(300), "concurrent_releasers", || {
        for round in 0..60 {
            let h = shmproc::heap_testing::TestHeap::new(1 << 16).unwrap();
            dead_holder_with_blocks(&h, 0x3fff_fff0, 8, 120);
            dead_holder_with_blocks(&h, 0x3fff_fff1, 8, 120);
            let held = std::thread::scope(|s| {
                let releasers = [s.spawn(|| h.release_dead()), s.spawn(|| h.release_dead())];
                let live = s.spawn(|| {
                    let mut held = Vec::new();
                    for seed in 0..240 {
                        let o = h.alloc(8, 8).unwrap();
                        h.fill(o, 0, 8, seed).unwrap();
                        held.push((o, seed));
                    }
                    held
                });
                for r in releasers {
                    r.join().unwrap().unwrap();
                }
                live.join().unwrap()
            });
            h.release_dead().unwrap();
            let r = h.walk().unwrap();
            assert_eq!(r.live_blocks, held.len() as u64, "round {round}: {r:?}");
            for (o, seed) in held {
                assert!(h.check(o, 0, 8, seed).unwrap(), "round {round}");
                h.free(o).unwrap();
            }
            assert_eq!(h.stats().used, 0, "round {round}");
        }
    });
}

/// Regression: a dead holder whose pid is now this process's (pid reuse: another start
/// time) is released by this process too, not skipped as if it were its own slot.
#[test]
fn a_dead_holder_with_a_reused_pid_is_released() {
    watchdog(Duration::from_secs(60), "reused_pid", || {
        let h = shmproc::heap_testing::TestHeap::new(1 << 16).unwrap();
        let mine = h.alloc(100, 8).unwrap();
        let used = h.stats().used;
        // A process with our pid and a start time of 1 (long before ours).
        let slot = dead_holder_with_blocks(&h, u64::from(std::process::id()), 700, 1);
        assert!(h.stats().used > used);
        assert!(
            h.release_dead().unwrap(),
            "the earlier process's holder is released"
        );
        assert_eq!(peek64(&h, slot), 0);
        assert_eq!(h.stats().used, used, "its block is freed");
        // Our own holder is untouched.
        h.free(mine).unwrap();
        assert_eq!(h.stats().used, 0);
    });
}

/// Regression (issue 16): a reap reads only the holder slots below the table's high-water
/// mark (slot 0's third word), so every claim raises the mark past its slot; a mark scribbled
/// too low costs time, never a release: a full release still finds the dead holder above it,
/// releases it and repairs the mark.
#[test]
fn the_holder_high_water_mark_covers_claimed_slots_and_is_repaired_when_scribbled() {
    watchdog(Duration::from_secs(60), "holder_high_water_mark", || {
        let h = shmproc::heap_testing::TestHeap::new(1 << 16).unwrap();
        let mark = HOLDERS_64K + 16;
        let mine = h.alloc(100, 8).unwrap();
        assert_eq!(peek64(&h, mark), 1, "this process holds slot 0");
        let used = h.stats().used;
        // A child's holder (slot 1) is released when the child is reaped.
        let h2 = shmproc::heap_testing::TestHeap::on(h.segment());
        use shmproc::testing::{ForkPermit, fork};
        // SAFETY: the watchdog's thread only waits on a channel: it holds no lock the child
        // takes.
        let mut child = fork(unsafe { ForkPermit::new() }, move || {
            h2.alloc(300, 8).unwrap();
            0
        });
        assert_eq!(child.wait(), Ok(0));
        assert_eq!(peek64(&h, mark), 2, "the child's claim raised the mark");
        assert_eq!(peek64(&h, HOLDERS_64K + 32), 0, "the reap released slot 1");
        assert_eq!(h.stats().used, used, "the child's block is freed");
        // A dead holder above a mark scribbled to 0.
        let slot = dead_holder_with_blocks(&h, 0x3fff_fff2, 700, 1);
        assert!(h.stats().used > used);
        poke64(&h, mark, 0);
        assert!(
            h.release_dead().unwrap(),
            "a full release reads the whole table"
        );
        assert_eq!(peek64(&h, slot), 0);
        assert_eq!(h.stats().used, used, "its block is freed");
        assert!(
            peek64(&h, mark) > (slot - HOLDERS_64K) / 32,
            "the full scan raised the mark past the slot it found"
        );
        h.free(mine).unwrap();
    });
}
