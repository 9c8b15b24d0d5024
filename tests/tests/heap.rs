//! The shared heap: a proptest model, a two-process stress test, and pages given back.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests: a failed unwrap is the assertion

use proptest::prelude::*;
use shmproc::fuzzing::HeapModel;
use shmproc::heap_testing::TestHeap;
use shmproc::testing::{ForkPermit, assert_no_leaks, fork, watchdog};
use shmproc::{Error, RawArray, Segment};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
enum HeapOp {
    Alloc { size: u64, align: u64 },
    Free { victim: u8 },
    Realloc { victim: u8, size: u64, align: u64 },
}

fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 0u64..512,
        4 => 512u64..70_000,
        1 => 70_000u64..400_000,
    ]
}

fn align() -> impl Strategy<Value = u64> {
    (0u32..13).prop_map(|s| 1u64 << s)
}

fn op() -> impl Strategy<Value = HeapOp> {
    prop_oneof![
        4 => (size(), align()).prop_map(|(size, align)| HeapOp::Alloc { size, align }),
        3 => any::<u8>().prop_map(|victim| HeapOp::Free { victim }),
        2 => (any::<u8>(), size(), align())
            .prop_map(|(victim, size, align)| HeapOp::Realloc { victim, size, align }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Alloc/free/realloc sequences against a model: no overlap, alignment kept, contents
    /// preserved, freed blocks reused, exhaustion an `Err`, and everything back at the end.
    #[test]
    fn heap_matches_model(ops in proptest::collection::vec(op(), 1..200)) {
        // 2 MiB: large sequences exhaust it, which must be `OutOfMemory`, not an abort.
        let heap = TestHeap::new(2 << 20).unwrap();
        let mut model = HeapModel::new(&heap);
        for op in ops {
            match op {
                HeapOp::Alloc { size, align } => drop(model.alloc(size, align)),
                HeapOp::Free { victim } => model.free(victim),
                HeapOp::Realloc { victim, size, align } => model.realloc(victim, size, align),
            }
        }
        model.finish();
    }
}

#[test]
fn heap_exhaustion_is_an_error_and_recovers() {
    let heap = TestHeap::new(64 << 10).unwrap();
    let mut live = Vec::new();
    let err = loop {
        match heap.alloc(1000, 8) {
            Ok(off) => live.push(off),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err:?}");
    assert!(matches!(
        heap.alloc(1 << 40, 8),
        Err(Error::OutOfMemory { .. })
    ));
    assert!(matches!(
        heap.alloc(u64::MAX, 8),
        Err(Error::OutOfMemory { .. })
    ));
    assert!(matches!(heap.alloc(8, 3), Err(Error::InvalidSize { .. })));
    let carved = heap.stats().carved;
    for off in live.drain(..) {
        heap.free(off).unwrap();
    }
    assert_eq!(heap.stats().used, 0);
    // Freed memory is reused: the same allocations fit again without carving.
    while let Ok(off) = heap.alloc(1000, 8) {
        live.push(off);
    }
    assert_eq!(heap.stats().carved, carved);
}

#[test]
fn heap_reuses_a_freed_block_of_the_same_class() {
    let heap = TestHeap::new(1 << 20).unwrap();
    let a = heap.alloc(100, 16).unwrap();
    let _b = heap.alloc(100, 16).unwrap();
    heap.free(a).unwrap();
    assert_eq!(heap.alloc(100, 8).unwrap(), a);
}

/// Forked children hammer one segment with alloc/write/check/free; afterwards every block is
/// free and the bytes in use are back to the start.
#[test]
fn stress_heap_two_processes() {
    watchdog(LIMIT, "stress_heap_two_processes", || {
        assert_no_leaks(|| {
            let heap = TestHeap::new(8 << 20).unwrap();
            let start = heap.stats();
            let iters: u64 = std::env::var("SHMPROC_STRESS_ITERS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(3000);
            let mut kids: Vec<_> = (0..2u64)
                .map(|k| {
                    let heap = &heap;
                    // SAFETY: no other thread of this process holds a lock that the child takes.
                    fork(unsafe { ForkPermit::new() }, move || {
                        let mut live: Vec<(u64, u64, u64)> = Vec::new();
                        let mut x = 0x1234_5678_u64 ^ (k << 40);
                        for i in 0..iters {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            if live.len() < 32 && (!x.is_multiple_of(3) || live.is_empty()) {
                                let size = [8, 48, 200, 1000, 5000, 70_000][(x >> 8) as usize % 6];
                                let align = 1 << ((x >> 16) % 8);
                                let Ok(off) = heap.alloc(size, align) else {
                                    continue;
                                };
                                if off % align != 0 {
                                    return 2;
                                }
                                let seed = k << 32 | i;
                                heap.fill(off, 0, size.min(512), seed).unwrap();
                                live.push((off, size.min(512), seed));
                            } else {
                                let (off, len, seed) =
                                    live.swap_remove((x >> 24) as usize % live.len());
                                if !heap.check(off, 0, len, seed).unwrap() {
                                    return 3;
                                }
                                heap.free(off).unwrap();
                            }
                        }
                        for (off, len, seed) in live {
                            if !heap.check(off, 0, len, seed).unwrap() {
                                return 3;
                            }
                            heap.free(off).unwrap();
                        }
                        0
                    })
                })
                .collect();
            for k in &mut kids {
                assert_eq!(
                    k.wait(),
                    Ok(0),
                    "child saw overlap, misalignment or lost contents"
                );
            }
            assert_eq!(heap.stats().used, start.used);
            let r = heap.walk().unwrap();
            assert_eq!((r.live_blocks, r.lost_blocks), (0, 0), "{r:?}");
        })
    });
}

/// Freeing a touched 16 MiB array gives its pages back to the system.
#[test]
fn freed_large_blocks_return_pages() {
    let seg = Segment::create(64 << 20).unwrap();
    let base = seg.resident_bytes().unwrap();
    let arr = RawArray::<u64>::new_in(&seg, 2 << 20).unwrap();
    for i in (0..arr.len()).step_by(512) {
        arr.set(i, i as u64).unwrap();
    }
    let touched = seg.resident_bytes().unwrap();
    assert!(
        touched >= base + (15 << 20),
        "touching 16 MiB: {base} -> {touched}"
    );
    drop(arr);
    let after = seg.resident_bytes().unwrap();
    assert!(
        after < base + (1 << 20),
        "pages not given back: {touched} -> {after}"
    );
    // The block is reused, and reads back zeros.
    let again = RawArray::<u64>::new_in(&seg, 2 << 20).unwrap();
    assert_eq!(again.get(512).unwrap(), 0);
}

/// Regression: a size class scribbled into a live array's block header never
/// makes dropping it write outside its block: the neighbour keeps its bytes and the corrupt
/// block is never handed out again.
#[test]
fn corrupt_size_class_never_zeroes_outside_its_block() {
    let seg = Segment::create(16 << 20).unwrap();
    let heap = TestHeap::on(&seg);
    let a = RawArray::<u8>::new_in(&seg, 70_000).unwrap();
    let b = RawArray::<u8>::from_slice_in(&seg, &vec![0xab; 300_000]).unwrap();
    let block = heap.block_of(a.token().offset).unwrap();
    // The class is the low byte of the block's tag: one class up doubles the block's size,
    // so a free that trusted it would give back (zero) the pages of `b`.
    let class = heap.peek_u8(block).unwrap();
    heap.poke_u8(block, class + 1).unwrap();
    let used = seg.stats().used;
    let offset = a.token().offset;
    drop(a);
    assert!(
        b.iter().all(|x| x == 0xab),
        "freeing wrote outside its block"
    );
    assert_eq!(seg.stats().used, used, "a corrupt block was freed");
    let again = RawArray::<u8>::new_in(&seg, 70_000).unwrap();
    assert_ne!(again.token().offset, offset, "a corrupt block was reused");
}
