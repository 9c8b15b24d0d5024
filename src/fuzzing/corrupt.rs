//! Target `heap_corrupt`: a corrupting peer. Allocations, frees and typed objects run on a heap
//! while a peer scribbles on its metadata (heap header, free lists, the block-start bitmap,
//! block headers) between operations.
//!
//! The oracle is what the heap promises a process whose peers are hostile: every operation
//! returns (`Ok` or an error such as `CorruptHeap`), never panics or hangs, and never hands
//! out or writes memory outside the segment. The segment is process-local (an allocation of
//! the global allocator), so under AddressSanitizer (the deep check's fuzz runs) a write past
//! its end lands in a red zone and is reported; on stable the replay checks the offsets.
//!
//! Each operation is 5 bytes: kind, then four argument bytes.

use crate::heap::testing::TestHeap;
use crate::{Lock, RawValue, Segment};

/// Bytes of the segment the fuzzer works on.
const LEN: u64 = 256 << 10;
/// Scribbles on the heap's own state land in the first bytes of the segment.
const META: u64 = 8 << 10;
/// Bytes of a block header just before a payload.
const HEADER: u64 = 32;

/// Typed objects kept alive between operations.
enum Kept {
    Lock(Lock),
    Value(RawValue<u64>),
}

pub fn heap_corrupt(data: &[u8]) {
    let seg = Segment::process_local(LEN).expect("segment");
    let len = seg.len();
    let heap = TestHeap::on(&seg);
    // Payloads handed out by `alloc` and not freed: (offset, size).
    let mut live: Vec<(u64, u64)> = Vec::new();
    let mut kept: Vec<Kept> = Vec::new();
    for op in data.chunks(5) {
        let [kind, a, b, c, d] = [0, 1, 2, 3, 4].map(|i| op.get(i).copied().unwrap_or(0));
        let pick = |n: usize| usize::from(a) % n.max(1);
        match kind % 7 {
            0 => {
                let size = u64::from(b) << (c % 12);
                let align = 1u64 << (d % 10);
                if let Ok(off) = heap.alloc(size, align) {
                    let end = off.checked_add(size).expect("payload end overflows");
                    assert!(
                        off >= META.min(4096) && end <= len,
                        "alloc({size}, {align}) handed out [{off}, {end}) outside the heap of {len}"
                    );
                    assert_eq!(off % align, 0, "alignment {align} not kept");
                    if size > 0 {
                        heap.poke_u8(off, d).expect("first payload byte");
                        heap.poke_u8(end - 1, c).expect("last payload byte");
                    }
                    live.push((off, size));
                }
            }
            1 if !live.is_empty() => {
                let (off, _) = live.swap_remove(pick(live.len()));
                let _ = heap.free(off);
            }
            2 => {
                let at = u64::from(u16::from_le_bytes([b, c])) % META;
                let _ = heap.poke_u8(at, d);
            }
            3 if !live.is_empty() => {
                let (off, _) = live[pick(live.len())];
                let at = off.saturating_sub(HEADER) + u64::from(b) % HEADER;
                let _ = heap.poke_u8(at, d);
            }
            4 => {
                if b % 2 == 0 {
                    if let Ok(lock) = Lock::new_in(&seg) {
                        // Never a blocking acquire: a scribbled word may name a live stranger.
                        if let Ok(true) = lock.try_acquire() {
                            let _ = lock.release();
                        }
                        kept.push(Kept::Lock(lock));
                    }
                } else if let Ok(v) = RawValue::new_in(&seg, u64::from(c)) {
                    v.set(u64::from(d));
                    let _ = v.get();
                    kept.push(Kept::Value(v));
                }
            }
            5 if !kept.is_empty() => {
                drop(kept.swap_remove(pick(kept.len())));
            }
            6 if !kept.is_empty() => {
                // Scribble on a typed object's header, then use it once more.
                let k = &kept[pick(kept.len())];
                let off = match k {
                    Kept::Lock(l) => l.token().offset,
                    Kept::Value(v) => v.token().offset,
                };
                let at = off.saturating_sub(HEADER) + u64::from(b) % HEADER;
                let _ = heap.poke_u8(at, d);
                match k {
                    Kept::Lock(l) => {
                        if let Ok(true) = l.try_acquire() {
                            let _ = l.release();
                        }
                    }
                    Kept::Value(v) => drop(v.get()),
                }
            }
            _ => {}
        }
    }
    drop(kept);
    for (off, _) in live {
        let _ = heap.free(off);
    }
    // Any answer is fine from a scribbled heap; only a panic or a hang is not.
    let _ = heap.walk();
}
