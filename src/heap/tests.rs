//! The heap's test suite, run on every segment backing: the memory file (`memfd`) and the
//! process-local buffer. Under miri only the process-local backing exists (it makes no system
//! call), so there these tests check the allocator's unsafe code and free lists themselves.
//! They use the heap's test API (`heap::testing`), so they build with `test-support`.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::arithmetic_side_effects, clippy::as_conversions)]

use super::ObjectRef;
use super::testing::TestHeap;
use crate::error::{Error, Result};
use crate::segment::{Segment, registry};

/// Makes a segment of the given length.
type Make = fn(u64) -> Result<Segment>;

/// Every backing available here, by name.
fn backings() -> Vec<(&'static str, Make)> {
    let mut all: Vec<(&'static str, Make)> = vec![("process-local", Segment::process_local)];
    if !cfg!(miri) {
        all.push(("memfd", Segment::create));
    }
    all
}

/// Runs `body` on a fresh segment of `len` bytes of every backing.
fn on_each_backing(len: u64, body: impl Fn(&'static str, Segment)) {
    for (name, make) in backings() {
        body(
            name,
            make(len).unwrap_or_else(|e| panic!("{name}: segment: {e}")),
        );
    }
}

const FP: u64 = 0x5e57_0000_0000_0001;

#[test]
fn freed_blocks_are_reused_lifo_and_the_heap_walks_clean() {
    on_each_backing(1 << 20, |name, seg| {
        let heap = TestHeap::on(&seg);
        let sizes = [0u64, 1, 24, 100, 1000, 5000, 20_000];
        let offs: Vec<u64> = sizes.iter().map(|&s| heap.alloc(s, 8).unwrap()).collect();
        for (i, &off) in offs.iter().enumerate() {
            heap.fill(off, 0, sizes[i], i as u64).unwrap();
        }
        let carved = heap.stats().carved;
        // Free two blocks of one class: the free list hands them back last-in first-out.
        let a = heap.alloc(100, 8).unwrap();
        let b = heap.alloc(100, 8).unwrap();
        let carved_ab = heap.stats().carved;
        assert!(carved_ab > carved, "{name}: fresh blocks carved");
        heap.free(a).unwrap();
        heap.free(b).unwrap();
        assert_eq!(
            heap.alloc(100, 8).unwrap(),
            b,
            "{name}: last freed, first reused"
        );
        assert_eq!(
            heap.alloc(100, 8).unwrap(),
            a,
            "{name}: then the one before"
        );
        assert_eq!(
            heap.stats().carved,
            carved_ab,
            "{name}: reuse carves nothing"
        );
        // The other payloads were not touched by any of that.
        for (i, &off) in offs.iter().enumerate() {
            assert!(
                heap.check(off, 0, sizes[i], i as u64).unwrap(),
                "{name}: payload {i}"
            );
        }
        // A double free is refused, and the walk finds every block where it belongs.
        heap.free(a).unwrap();
        assert!(heap.free(a).is_err(), "{name}: double free refused");
        let r = heap.walk().unwrap();
        assert_eq!(r.live_blocks, sizes.len() as u64 + 1, "{name}");
        assert_eq!(r.free_blocks, 1, "{name}");
        assert_eq!(r.lost_blocks, 0, "{name}");
        assert_eq!(r.live_bytes, heap.stats().used, "{name}");
    });
}

#[test]
fn exhaustion_is_out_of_memory_and_alignment_is_kept() {
    on_each_backing(64 << 10, |name, seg| {
        let heap = TestHeap::on(&seg);
        for shift in 0..13 {
            let align = 1u64 << shift;
            let off = heap.alloc(40, align).unwrap();
            assert_eq!(off % align, 0, "{name}: alignment {align}");
        }
        assert!(
            matches!(heap.alloc(1 << 20, 8), Err(Error::OutOfMemory { .. })),
            "{name}: larger than the segment"
        );
        let mut n = 0;
        while heap.alloc(3000, 8).is_ok() {
            n += 1;
            assert!(n < 64, "{name}: a 64 KiB heap holds fewer 3000-byte blocks");
        }
        assert!(heap.walk().is_ok(), "{name}: consistent after exhaustion");
    });
}

#[test]
fn freed_large_block_reads_zero_when_reused() {
    // Large blocks give their pages past the first back when freed (a hole punched in the
    // memory file, or zeros written into a process-local buffer), and a zeroed allocation
    // relies on it: it writes zeros only up to the first page.
    on_each_backing(1 << 20, |name, seg| {
        // Above the largest small class (64 KiB): a large block of several pages.
        let len = 100 << 10;
        let dirty = ObjectRef::alloc(&seg, len, 8, FP).unwrap();
        dirty.write_new_bytes(&vec![0xa5; len as usize]);
        let offset = dirty.token().offset;
        drop(dirty);
        let clean = ObjectRef::alloc_zeroed(&seg, len, 8, FP).unwrap();
        assert_eq!(
            clean.token().offset,
            offset,
            "{name}: the freed block is reused"
        );
        let bytes = clean.read_published_bytes();
        assert_eq!(bytes.len() as u64, len);
        assert!(
            bytes.iter().all(|&b| b == 0),
            "{name}: reused block reads zero"
        );
    });
}

#[test]
fn discard_is_bounded_by_the_segment() {
    on_each_backing(64 << 10, |name, seg| {
        let len = seg.len();
        let inner = &seg.inner;
        for (offset, n) in [(len - 8, 16), (len, 1), (u64::MAX, 2), (8, u64::MAX)] {
            assert!(
                matches!(inner.discard(offset, n), Err(Error::CorruptObject { .. })),
                "{name}: discard({offset}, {n}) outside the segment"
            );
        }
        inner.discard(len - 4096, 4096).unwrap();
        // The header page was not touched by any of that: the segment still attaches.
        assert_eq!(TestHeap::on(&seg).walk().unwrap().live_blocks, 0, "{name}");
    });
}

#[test]
fn freed_object_token_is_object_gone_and_foreign_type_is_refused() {
    on_each_backing(1 << 20, |name, seg| {
        let obj = ObjectRef::alloc_zeroed(&seg, 64, 8, FP).unwrap();
        let tok = obj.token();
        let again = ObjectRef::attach(&tok, FP, "test object").unwrap();
        assert!(again.same_object(&obj), "{name}");
        assert!(
            matches!(
                ObjectRef::attach(&tok, FP ^ 1, "other"),
                Err(Error::TypeMismatch { .. })
            ),
            "{name}: another type"
        );
        drop((obj, again));
        assert!(
            matches!(
                ObjectRef::attach(&tok, FP, "test object"),
                Err(Error::ObjectGone)
            ),
            "{name}: freed"
        );
        assert_eq!(seg.stats().used, 0, "{name}: everything freed");
    });
}

#[test]
fn publish_and_lookup_round_trip_and_replacement_frees_the_old_root() {
    on_each_backing(1 << 20, |name, seg| {
        assert!(
            matches!(seg.lookup::<u32>(), Err(Error::NotFound { .. })),
            "{name}: nothing published"
        );
        seg.publish(&(7u32, "seven".to_owned())).unwrap();
        let used = seg.stats().used;
        seg.publish(&(8u32, "eight".to_owned())).unwrap();
        assert_eq!(seg.stats().used, used, "{name}: old root blob freed");
        let got: (u32, String) = seg.lookup().unwrap();
        assert_eq!(got, (8, "eight".to_owned()), "{name}");
    });
}

#[test]
fn segments_are_registered_while_alive() {
    on_each_backing(64 << 10, |name, seg| {
        let id = seg.id();
        assert!(registry::lookup(id).is_some(), "{name}: registered");
        let unknown = crate::heap::ObjectToken {
            segment: id ^ 1,
            name: None,
            offset: 4096 + 32,
            generation: 1,
            fingerprint: FP,
        };
        assert!(
            matches!(
                ObjectRef::attach(&unknown, FP, "test object"),
                Err(Error::UnknownSegment { .. })
            ),
            "{name}: unknown segment"
        );
        drop(seg);
        assert!(
            registry::lookup(id).is_none(),
            "{name}: unregistered on drop"
        );
    });
}

/// Deterministic alloc/free/realloc sequences against the reference model (the one the
/// `heap_ops` fuzz target and the proptest use), on every backing.
#[test]
fn random_sequences_match_the_model() {
    let (seeds, ops) = if cfg!(miri) { (2, 60) } else { (16, 400) };
    for seed in 0..seeds {
        on_each_backing(2 << 20, |_, seg| {
            let heap = TestHeap::on(&seg);
            let mut model = crate::fuzzing::HeapModel::new(&heap);
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
            let mut next = move || {
                // xorshift64*
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                x.wrapping_mul(0x2545_f491_4f6c_dd1d)
            };
            for _ in 0..ops {
                let r = next();
                let size = match r % 16 {
                    0..=9 => (r >> 8) % 512,
                    10..=14 => (r >> 8) % 20_000,
                    _ => (r >> 8) % 100_000,
                };
                let align = 1u64 << ((r >> 40) % 13);
                let victim = (r >> 56) as u8;
                match (r >> 4) % 9 {
                    0..=3 => drop(model.alloc(size, align)),
                    4..=6 => model.free(victim),
                    _ => model.realloc(victim, size, align),
                }
            }
            model.finish();
        });
    }
}

/// Regression (issue 17): a 513 MiB array fits in a fresh 1 GiB heap (large blocks take whole
/// pages, not a power of two of them), and its block is reused exactly after it is freed.
#[test]
fn a_513_mib_array_fits_in_a_fresh_1_gib_heap() {
    if cfg!(miri) {
        return;
    }
    let seg = Segment::create(1 << 30).unwrap();
    let a = crate::Array::<u8>::new_in(&seg, 513 << 20).unwrap();
    let page = crate::sys::page_size() as u64;
    // 513 MiB and the header's page, and the array's lock (a small block).
    let used = seg.stats().used;
    assert!(
        (513 << 20) + page < used && used <= (513 << 20) + page + 64,
        "{used}"
    );
    a.set((513 << 20) - 1, 9).unwrap();
    drop(a);
    assert_eq!(seg.stats().used, 0);
    let carved = seg.stats().carved;
    // The same size again takes the freed block (zeroed), not new space.
    let b = crate::Array::<u8>::new_in(&seg, 513 << 20).unwrap();
    assert_eq!(seg.stats().carved, carved);
    assert_eq!(b.get((513 << 20) - 1).unwrap(), 0);
    // A much smaller large request does not take the big block: it carves its own.
    drop(b);
    let c = crate::Array::<u8>::new_in(&seg, 300 << 20).unwrap();
    assert!(seg.stats().carved > carved);
    drop(c);
}

/// A segment made with the previous heap layout (no heap lock, redo record or holder table)
/// is refused when attached, never used.
#[test]
fn a_segment_of_the_previous_heap_layout_is_refused() {
    if cfg!(miri) {
        return;
    }
    fn nothing(_: &crate::segment::SegmentInner) {}
    fn fine(_: &crate::segment::SegmentInner) -> Result<()> {
        Ok(())
    }
    let v2 = crate::segment::Format {
        layout: crate::fingerprint::start(
            "shmproc::heap v2: 32-byte headers, 61 classes, start bitmap",
            4096,
            32,
        ),
        init: nothing,
        check: fine,
    };
    let old = Segment::create_with(1 << 20, &v2).unwrap();
    let fd = crate::sys::dup(old.as_fd()).unwrap();
    match Segment::from_fd(fd) {
        Err(Error::TypeMismatch { found, .. }) => assert_eq!(found, v2.layout),
        other => panic!("expected TypeMismatch, got {other:?}"),
    }
}
