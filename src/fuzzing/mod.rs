//! Fuzz target bodies. Not public API (`test-support` only).
//!
//! Each cargo-fuzz target in `fuzz/fuzz_targets/` is one line that calls a function here, and
//! `tests/tests/fuzz_replay.rs` replays every `fuzz/corpus/<target>/` file through the same
//! function on the stable toolchain. A body returns normally for every input; a violated
//! invariant panics (which the fuzzer reports as a crash).
//!
//! Targets: [`codec_decode`], [`segment_header`], [`token_attach`], [`heap_ops`], `manager_protocol`,
//! [`heap_corrupt`](corrupt::heap_corrupt), [`concurrent`](concurrent::run_bytes).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)]

pub mod concurrent;
pub mod corrupt;

pub use crate::heap::testing::pattern;

use crate::heap::testing::TestHeap;
use crate::{Array, Error, Lock, ObjectToken, RawArray, Segment, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::OnceLock;

/// A fuzz target's body.
pub type Body = fn(&[u8]);

/// Every target, by name, for the replay test and the deep check.
pub const TARGETS: &[(&str, Body)] = &[
    ("codec_decode", codec_decode),
    ("segment_header", segment_header),
    ("token_attach", token_attach),
    ("heap_ops", heap_ops),
    ("heap_corrupt", corrupt::heap_corrupt),
    ("concurrent", concurrent::run_bytes),
    ("manager_protocol", crate::manager::fuzz_protocol),
];

/// Returns the body of the target called `name`.
pub fn target(name: &str) -> Option<Body> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// A message without handles: every decoded value must re-encode to the same bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Plain {
    Unit,
    Num(u8, i64, u128, f64),
    Text(String, Vec<u8>),
    Nested(Option<Box<Plain>>, Vec<(u16, char)>),
    Map(BTreeMap<String, Vec<u32>>),
}

/// A message with every handle type that exists: decoding re-attaches them.
#[derive(Debug, Serialize, Deserialize)]
pub struct WithHandles {
    pub head: Plain,
    pub value: Option<Value<u64>>,
    pub array: Option<Array<i32>>,
    pub raw: Option<RawArray<u8>>,
    pub lock: Option<Lock>,
    pub tokens: Vec<ObjectToken>,
}

/// Arbitrary bytes → `codec::from_bytes` of mixed types: `Ok` or `Err`, never a panic, abort
/// or unbounded allocation; an `Ok` of a handle-free type round-trips.
pub fn codec_decode(data: &[u8]) {
    if let Ok(v) = crate::codec::from_bytes::<Plain>(data) {
        let again = crate::codec::to_bytes(&v).expect("decoded value encodes");
        let back = crate::codec::from_bytes::<Plain>(&again).expect("re-encoded value decodes");
        // NaN != NaN: compare the encodings, which are canonical.
        assert_eq!(crate::codec::to_bytes(&back).expect("encodes"), again);
    }
    let _ = crate::codec::from_bytes::<WithHandles>(data);
    let _ = crate::codec::from_bytes::<Vec<Vec<u8>>>(data);
    let _ = crate::codec::from_bytes::<(String, Option<u64>, Vec<ObjectToken>)>(data);
}

/// Arbitrary bytes → a segment whose first page holds them (header and heap state) → attach.
///
/// The first byte picks the segment size (8 KiB to 64 KiB); the rest is written at offset 0.
/// `Ok` only for a header that passes every check; never a panic or a crash.
pub fn segment_header(data: &[u8]) {
    let Some((&size_sel, bytes)) = data.split_first() else {
        return;
    };
    let _ = crate::segment::header::Header::parse(bytes, 8192, crate::heap::HEAP_LAYOUT);
    let len = 8192u64 << (size_sel % 4);
    let fd = crate::sys::memfd_create("shmproc-fuzz").expect("memfd");
    crate::sys::set_len(&fd, len).expect("ftruncate");
    let mut file = std::fs::File::from(fd);
    file.write_all(&bytes[..bytes.len().min(4096)])
        .expect("write");
    if let Ok(seg) = Segment::from_fd(file.into()) {
        assert_eq!(seg.len(), len);
        // The heap of an accepted segment works or fails cleanly.
        let heap = TestHeap::on(&seg);
        if let Ok(off) = heap.alloc(64, 8) {
            let _ = heap.free(off);
        }
        let _ = heap.walk();
    }
}

struct Live {
    seg: Segment,
    value: Value<u64>,
    array: Array<i32>,
    raw: RawArray<u8>,
    lock: Lock,
    tokens: Vec<ObjectToken>,
}

fn live() -> &'static Live {
    static LIVE: OnceLock<Live> = OnceLock::new();
    LIVE.get_or_init(|| {
        let seg = Segment::create(1 << 20).expect("segment");
        let value = Value::new_in(&seg, 7u64).expect("value");
        let array = Array::from_slice_in(&seg, &[1i32, 2, 3, 4]).expect("array");
        let raw = RawArray::new_in(&seg, 100).expect("raw");
        let lock = Lock::new_in(&seg).expect("lock");
        // A freed object: its token must give `ObjectGone` (or a clean error) forever after.
        let gone = Value::new_in(&seg, 1u32).expect("value").token();
        let mut tokens = vec![value.token().0, value.token().1, array.token().0];
        tokens.extend([array.token().1, raw.token(), lock.token(), gone.0, gone.1]);
        Live {
            seg,
            value,
            array,
            raw,
            lock,
            tokens,
        }
    })
}

fn take<const N: usize>(data: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = data.len().min(N);
    out[..n].copy_from_slice(&data[..n]);
    *data = &data[n..];
    out
}

/// Arbitrary tokens (mutations of live ones, or raw decoded ones) against a live segment →
/// attach as every handle type → `Ok` only for the object the token really names.
pub fn token_attach(mut data: &[u8]) {
    let live = live();
    let before = live.seg.stats();
    while !data.is_empty() {
        let [sel, fields, kind] = take::<3>(&mut data);
        let mut tok = live.tokens[usize::from(sel) % live.tokens.len()].clone();
        if fields & 1 != 0 {
            tok.offset = tok
                .offset
                .wrapping_add(i64::from(i16::from_le_bytes(take::<2>(&mut data))) as u64);
        }
        if fields & 2 != 0 {
            tok.offset = u64::from_le_bytes(take::<8>(&mut data));
        }
        if fields & 4 != 0 {
            tok.generation ^= u32::from_le_bytes(take::<4>(&mut data));
        }
        if fields & 8 != 0 {
            tok.fingerprint =
                live.tokens[usize::from(take::<1>(&mut data)[0]) % live.tokens.len()].fingerprint;
        }
        if fields & 16 != 0 {
            tok.fingerprint = u64::from_le_bytes(take::<8>(&mut data));
        }
        if fields & 32 != 0 {
            tok.segment = u64::from_le_bytes(take::<8>(&mut data));
        }
        // Attach succeeds only for a token equal to a live object's (of that type).
        let real = |t: &ObjectToken| live.tokens[..6].iter().any(|l| l == t);
        let lock_tok = live.lock.token();
        let ok = match kind % 5 {
            0 => Value::<u64>::from_token(&tok, &lock_tok)
                .map(|v| v.get().map(drop))
                .is_ok(),
            1 => Array::<i32>::from_token(&tok, &lock_tok)
                .map(|a| a.len())
                .is_ok(),
            2 => RawArray::<u8>::from_token(&tok).map(|r| r.len()).is_ok(),
            3 => Lock::from_token(&tok).map(|l| l.is_locked()).is_ok(),
            _ => crate::codec::from_bytes::<Value<u64>>(
                &crate::codec::to_bytes(&(tok.clone(), lock_tok)).expect("encode"),
            )
            .is_ok(),
        };
        if ok {
            assert!(
                real(&tok),
                "attach accepted a token for no live object: {tok:?}"
            );
        }
    }
    assert_eq!(
        live.seg.stats(),
        before,
        "attaching leaked or freed a block"
    );
    assert_eq!(live.value.get().ok(), Some(7));
    assert_eq!(live.array.to_vec().ok(), Some(vec![1, 2, 3, 4]));
    assert_eq!(live.raw.len(), 100);
}

/// Arbitrary alloc/free/realloc sequences against a model: no overlap, alignment kept,
/// contents preserved, freed blocks reused, exhaustion an `Err`, and everything back at the
/// end. Each op is 4 bytes: kind, size, size scale and alignment, victim.
pub fn heap_ops(data: &[u8]) {
    let heap = TestHeap::new(1 << 20).expect("segment");
    let mut model = HeapModel::new(&heap);
    for op in data.chunks(4) {
        let [kind, a, b, victim] = [0, 1, 2, 3].map(|i| op.get(i).copied().unwrap_or(0));
        let size = match b & 3 {
            0 => u64::from(a),
            1 => u64::from(a) * 16,
            2 => u64::from(a) * 256,
            _ => u64::from(a) * 4096,
        };
        let align = 1u64 << ((b >> 2) % 13);
        match kind % 3 {
            0 => drop(model.alloc(size, align)),
            1 => model.free(victim),
            _ => model.realloc(victim, size, align),
        }
    }
    model.finish();
}

/// The reference model of a heap: live payloads by offset.
#[derive(Debug)]
pub struct HeapModel<'a> {
    heap: &'a TestHeap,
    live: BTreeMap<u64, (u64, u64, u64)>,
    free_by_bsize: BTreeMap<u64, u64>,
    seed: u64,
}

impl<'a> HeapModel<'a> {
    pub fn new(heap: &'a TestHeap) -> Self {
        HeapModel {
            heap,
            live: BTreeMap::new(),
            free_by_bsize: BTreeMap::new(),
            seed: 1,
        }
    }

    /// Returns the payload offsets currently live.
    pub fn live(&self) -> impl Iterator<Item = u64> + '_ {
        self.live.keys().copied()
    }

    fn check_contents(&self, off: u64) {
        let (len, seed, _) = self.live[&off];
        let h = len.min(256);
        assert!(
            self.heap.check(off, 0, h, seed).unwrap(),
            "payload head changed at {off}"
        );
        assert!(
            len < 512 || self.heap.check(off, len - h, h, seed ^ 1).unwrap(),
            "payload tail changed at {off}"
        );
    }

    /// Allocates `size` bytes aligned to `align` and checks the result; returns the offset.
    pub fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        let bsize = self
            .heap
            .block_size(size, align)
            .expect("small enough for a class");
        // Journal chunks (this process's holder records) are carved beside objects, from a
        // list of their own: only the objects' share of `carved` is the model's.
        let carved = self.heap.stats().carved - self.heap.stats().journals;
        let off = match self.heap.alloc(size, align) {
            Ok(off) => off,
            Err(Error::OutOfMemory { .. }) => {
                assert_eq!(
                    self.reusable(bsize),
                    None,
                    "OOM with a free block of the class"
                );
                return None;
            }
            Err(e) => panic!("alloc({size}, {align}) failed: {e}"),
        };
        assert_eq!(off % align, 0, "alignment {align} not kept");
        let stats = self.heap.stats();
        let actual = self.heap.block_size_at(off).unwrap();
        match self.reusable(bsize) {
            Some(s) => {
                assert_eq!(
                    stats.carved - stats.journals,
                    carved,
                    "a free block of the class was not reused"
                );
                assert_eq!(actual, s, "not the best-fitting free block");
                *self.free_by_bsize.get_mut(&s).unwrap() -= 1;
            }
            None => assert_eq!(actual, bsize, "a fresh block of another size"),
        }
        let bsize = actual;
        if let Some((&prev, &(plen, _, _))) = self.live.range(..=off).next_back() {
            assert!(
                prev + plen.max(1) <= off,
                "payload {off} overlaps {prev}+{plen}"
            );
        }
        if let Some((&next, _)) = self.live.range(off..).next() {
            assert!(
                off + size.max(1) <= next,
                "payload {off}+{size} overlaps {next}"
            );
        }
        self.seed += 1;
        if size > 0 {
            let h = size.min(256);
            self.heap.fill(off, 0, h, self.seed).unwrap();
            if size >= 512 {
                self.heap.fill(off, size - h, h, self.seed ^ 1).unwrap();
            }
        }
        self.live.insert(off, (size, self.seed, bsize));
        Some(off)
    }

    /// Returns the size of the free block the heap must reuse for a request of block size
    /// `bsize`: the same small class, or, for large blocks, the smallest with at least the
    /// pages wanted and at most an eighth more.
    fn reusable(&self, bsize: u64) -> Option<u64> {
        let page = crate::sys::page_size() as u64;
        let limit = if bsize > 65536 {
            let pages = bsize / page;
            (pages + pages / 8) * page
        } else {
            bsize
        };
        self.free_by_bsize
            .range(bsize..=limit)
            .find(|&(_, &n)| n > 0)
            .map(|(&s, _)| s)
    }

    fn nth(&self, victim: u8) -> Option<u64> {
        let n = self.live.len();
        (n > 0).then(|| *self.live.keys().nth(usize::from(victim) % n).unwrap())
    }

    /// Frees the `victim`-th live payload (modulo the count), checking its contents first.
    pub fn free(&mut self, victim: u8) {
        if let Some(off) = self.nth(victim) {
            self.free_at(off);
        }
    }

    fn free_at(&mut self, off: u64) {
        if self.live[&off].0 > 0 {
            self.check_contents(off);
        }
        let (_, _, bsize) = self.live.remove(&off).unwrap();
        self.heap.free(off).expect("free of a live payload");
        *self.free_by_bsize.entry(bsize).or_default() += 1;
        assert!(self.heap.free(off).is_err(), "double free not detected");
    }

    /// Reallocates the `victim`-th payload: alloc, copy what fits, free.
    pub fn realloc(&mut self, victim: u8, size: u64, align: u64) {
        let Some(old) = self.nth(victim) else {
            return;
        };
        if let Some(new) = self.alloc(size, align) {
            let (olen, oseed, _) = self.live[&old];
            let h = olen.min(size).min(256);
            assert!(self.heap.check(old, 0, h, oseed).unwrap());
            self.heap.fill(new, 0, h, oseed).unwrap();
            assert!(
                self.heap.check(new, 0, h, oseed).unwrap(),
                "copy not preserved"
            );
            let (nlen, _, nb) = self.live[&new];
            self.seed += 1;
            self.heap.fill(new, 0, nlen.min(256), self.seed).unwrap();
            if nlen >= 512 {
                self.heap.fill(new, nlen - 256, 256, self.seed ^ 1).unwrap();
            }
            self.live.insert(new, (nlen, self.seed, nb));
        }
        self.free_at(old);
    }

    /// Frees everything and checks the heap is back to empty and consistent.
    pub fn finish(mut self) {
        let r = self.heap.walk().expect("heap consistent");
        assert_eq!(r.live_blocks, self.live.len() as u64);
        assert_eq!(r.lost_blocks, 0);
        assert_eq!(r.live_bytes, self.heap.stats().used);
        while let Some(&off) = self.live.keys().next() {
            self.free_at(off);
        }
        assert_eq!(
            self.heap.stats().used,
            0,
            "bytes still in use after freeing all"
        );
        let r = self.heap.walk().expect("heap consistent");
        assert_eq!((r.live_blocks, r.lost_blocks), (0, 0));
    }
}
