//! Replays every `fuzz/corpus/<target>/` file through the fuzz target's body on stable, and
//! holds the named regression tests for crashes the fuzzers found.
//!
//! `SHMPROC_WRITE_SEEDS=1 cargo test -p shmproc-tests --test fuzz_replay write_seed_corpus --
//! --ignored` regenerates the seed inputs (`seed-*` files).

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests: a failed unwrap is the assertion

use shmproc::fuzzing::concurrent::{Op, Schedule};
use shmproc::fuzzing::{Plain, TARGETS, WithHandles};
use shmproc::testing::watchdog;
use shmproc::{Array, Lock, RawArray, Segment, Value, codec};
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn replay(target: &str) {
    let body = shmproc::fuzzing::target(target).expect("known target");
    let dir = corpus_dir(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus for {target}");
    watchdog(Duration::from_secs(240), target, || {
        for f in &files {
            let data = std::fs::read(f).expect("corpus file");
            eprintln!("replaying {}", f.display());
            body(&data);
        }
    });
}

#[test]
fn replay_codec_decode() {
    replay("codec_decode");
}

#[test]
fn replay_segment_header() {
    replay("segment_header");
}

#[test]
fn replay_token_attach() {
    replay("token_attach");
}

#[test]
fn replay_heap_ops() {
    replay("heap_ops");
}

#[test]
fn replay_heap_corrupt() {
    replay("heap_corrupt");
}

#[test]
fn replay_manager_protocol() {
    replay("manager_protocol");
}

#[test]
fn heavy_replay_concurrent() {
    replay("concurrent");
}

#[test]
fn every_target_has_a_corpus_and_a_replay_test() {
    let src = include_str!("fuzz_replay.rs");
    for (name, _) in TARGETS {
        assert!(corpus_dir(name).is_dir(), "no corpus for {name}");
        assert!(
            src.contains(&format!("replay(\"{name}\")")),
            "no replay test for {name}"
        );
    }
}

/// A length prefix of 2^40 in a few bytes is refused without allocating it.
#[test]
fn codec_decode_rejects_huge_length_prefix() {
    let mut msg = vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
    msg.extend([1, 2, 3]);
    assert!(codec::from_bytes::<Vec<u8>>(&msg).is_err());
    shmproc::fuzzing::codec_decode(&msg);
}

fn schedule_bytes(s: &Schedule) -> Vec<u8> {
    let n = s.procs.len();
    let mut out = vec![(n - 2) as u8];
    for k in 0..n {
        out.push(s.kills[k].map_or(0, |p| 0x80 | p as u8));
    }
    let most = s.procs.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..most {
        for ops in &s.procs {
            let op = ops.get(i).copied().unwrap_or(Op::RawWrite { rounds: 1 });
            out.push(match op {
                Op::Transfer { from, to, rounds } => from << 2 | to << 4 | ((rounds - 1) / 4) << 6,
                Op::Increment { n } => 1 | (n - 1) << 2,
                Op::RawWrite { rounds } => 2 | (rounds - 1) << 2,
                Op::HoldLock { spins } => 3 | ((spins / 16) as u8) << 2,
            });
        }
    }
    assert_eq!(
        &Schedule::decode(&out).procs,
        &s.procs,
        "encoder matches decoder"
    );
    out
}

fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    // codec_decode: real messages of each shape, and hostile length prefixes.
    let plain = [
        Plain::Unit,
        Plain::Num(7, -3, u128::MAX, 1.5),
        Plain::Text("héllo".into(), vec![0, 255, 7]),
        Plain::Nested(Some(Box::new(Plain::Unit)), vec![(1, 'x'), (2, '€')]),
        Plain::Map([("k".to_owned(), vec![1, 2, 3])].into_iter().collect()),
    ];
    for (i, p) in plain.iter().enumerate() {
        out.push((
            "codec_decode",
            [
                "plain-unit",
                "plain-num",
                "plain-text",
                "plain-nested",
                "plain-map",
            ][i],
            codec::to_bytes(p).unwrap(),
        ));
    }
    let seg = Segment::create(1 << 20).unwrap();
    let msg = WithHandles {
        head: Plain::Unit,
        value: Some(Value::new_in(&seg, 1u64).unwrap()),
        array: Some(Array::from_slice_in(&seg, &[1, 2]).unwrap()),
        raw: Some(RawArray::new_in(&seg, 3).unwrap()),
        lock: Some(Lock::new_in(&seg).unwrap()),
        tokens: vec![Lock::new_in(&seg).unwrap().token()],
    };
    out.push(("codec_decode", "handles", codec::to_bytes(&msg).unwrap()));
    out.push((
        "codec_decode",
        "huge-prefix",
        vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 1, 2],
    ));
    out.push(("codec_decode", "max-prefix", vec![0xff; 10]));

    // segment_header: a real header page, and single-field corruptions of it.
    let mut page = vec![0u8; 4096];
    std::fs::File::from(seg.as_fd().try_clone_to_owned().unwrap())
        .read_exact(&mut page)
        .unwrap();
    let mut good = vec![2u8]; // 1 MiB is not 8 KiB << k: a size mismatch.
    good.extend(&page[..128]);
    out.push(("segment_header", "size-mismatch", good));
    let small = Segment::create(16384).unwrap();
    let mut page = vec![0u8; 128];
    std::fs::File::from(small.as_fd().try_clone_to_owned().unwrap())
        .read_exact(&mut page)
        .unwrap();
    let mut valid = vec![1u8];
    valid.extend(&page);
    out.push(("segment_header", "valid-16k", valid.clone()));
    for (name, at) in [
        ("bad-magic", 1),
        ("bad-version", 9),
        ("bad-checksum", 33),
        ("bad-top", 1 + 64),
    ] {
        let mut v = valid.clone();
        v[at] ^= 0x41;
        out.push(("segment_header", name, v));
    }
    out.push(("segment_header", "short", vec![0, b'S', b'H']));

    // token_attach: each live token as is, then with each field mutated.
    for sel in 0..8u8 {
        out.push((
            "token_attach",
            ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"][usize::from(sel)],
            vec![sel, 0, sel % 5],
        ));
    }
    out.push((
        "token_attach",
        "offsets",
        vec![0, 1, 0, 0x20, 0, 2, 1, 0xe0, 0xff, 4, 1, 1, 0, 0, 0],
    ));
    out.push((
        "token_attach",
        "fingerprints",
        vec![0, 8, 1, 4, 5, 8, 3, 2, 4, 16, 0, 1, 2, 3, 4, 5, 6, 7, 8],
    ));
    out.push((
        "token_attach",
        "generations",
        vec![6, 4, 0, 1, 0, 0, 0, 7, 4, 3, 0xff, 0xff, 0xff, 0xff],
    ));

    // heap_ops: small, large and aligned allocations, frees and reallocs.
    out.push((
        "heap_ops",
        "small",
        vec![0, 10, 0, 0, 0, 200, 1, 0, 1, 0, 0, 0, 0, 20, 4, 0],
    ));
    out.push((
        "heap_ops",
        "large",
        vec![
            0, 100, 3, 0, 0, 3, 3, 0, 1, 0, 0, 0, 0, 200, 3, 0, 2, 40, 2, 1,
        ],
    ));
    out.push((
        "heap_ops",
        "aligned",
        vec![0, 1, 0x30, 0, 0, 1, 0x2c, 0, 2, 50, 0x28, 0, 1, 0, 0, 1],
    ));
    out.push(("heap_ops", "exhaust", [0u8, 255, 3, 0].repeat(6)));

    // heap_corrupt: operations between scribbles on the heap state, the free lists, block
    // headers and typed objects' headers (5 bytes each: kind, a, b, c, d).
    let alloc = |size: u8, scale: u8| [0u8, 0, size, scale, 3];
    let mut headers = Vec::new();
    for byte in 0..32u8 {
        headers.extend(alloc(64, 0));
        headers.extend([3, 0, byte, 0, 0xff]);
        headers.extend([1, 0, 0, 0, 0]);
        headers.extend(alloc(64, 0));
        headers.extend(alloc(200, 8));
    }
    out.push(("heap_corrupt", "headers", headers));
    let mut lists = Vec::new();
    for at in (64..600u16).step_by(7) {
        let [lo, hi] = at.to_le_bytes();
        lists.extend(alloc(48, 0));
        lists.extend(alloc(48, 0));
        lists.extend([1, 1, 0, 0, 0]);
        lists.extend([2, 0, lo, hi, 0xf0]);
        lists.extend(alloc(48, 0));
        lists.extend(alloc(3, 12));
    }
    out.push(("heap_corrupt", "state", lists));
    let mut typed = Vec::new();
    for byte in 0..32u8 {
        typed.extend([4, 0, byte & 1, 7, 9]);
        typed.extend([6, 0, byte, 0, 0x5a]);
        typed.extend([4, 0, 1, 1, 1]);
        typed.extend([5, 0, 0, 0, 0]);
    }
    out.push(("heap_corrupt", "typed", typed));
    let mut bitmap = Vec::new();
    for at in (1024..2048u16).step_by(13) {
        let [lo, hi] = at.to_le_bytes();
        bitmap.extend(alloc(32, 1));
        bitmap.extend([2, 0, lo, hi, 0xff]);
        bitmap.extend([1, 0, 0, 0, 0]);
        bitmap.extend(alloc(32, 1));
    }
    out.push(("heap_corrupt", "bitmap", bitmap));

    // concurrent: each primitive alone, all together, with and without kills.
    let t = |from, to, rounds| Op::Transfer { from, to, rounds };
    let schedules = [
        (
            "transfers",
            vec![
                vec![t(0, 1, 9); 4],
                vec![t(1, 2, 9); 4],
                vec![t(2, 0, 9); 4],
            ],
            vec![None; 3],
        ),
        (
            "increments",
            vec![vec![Op::Increment { n: 60 }; 3]; 2],
            vec![None; 2],
        ),
        (
            "raw-writers",
            vec![vec![Op::RawWrite { rounds: 8 }; 4]; 4],
            vec![None; 4],
        ),
        (
            "hold-lock",
            vec![vec![Op::HoldLock { spins: 992 }; 6]; 3],
            vec![None; 3],
        ),
        (
            "mixed-kill",
            vec![
                vec![
                    t(0, 3, 13),
                    Op::Increment { n: 10 },
                    Op::HoldLock { spins: 496 },
                    Op::RawWrite { rounds: 2 }
                ];
                4
            ],
            vec![Some(1), None, Some(2), None],
        ),
        (
            "kill-holder",
            vec![vec![Op::HoldLock { spins: 1008 }; 8], vec![t(1, 0, 13); 8]],
            vec![Some(2), Some(3)],
        ),
    ];
    for (name, procs, kills) in schedules {
        out.push((
            "concurrent",
            name,
            schedule_bytes(&Schedule { procs, kills }),
        ));
    }
    out.extend(manager_seeds());
    out
}

use shmproc_tests::WireRequest;

/// A `manager_protocol` frame: client, flags (bit 0 ends the session), length, request.
fn frame(client: u8, flags: u8, req: &WireRequest) -> Vec<u8> {
    let body = codec::to_bytes(req).unwrap();
    let mut out = vec![client, flags, u8::try_from(body.len()).unwrap()];
    out.extend(body);
    out
}

fn create(kind: &str, init: Vec<u8>) -> WireRequest {
    WireRequest::Create {
        kind: kind.into(),
        init,
    }
}

fn call(object: u64, method: &str, args: Vec<u8>) -> WireRequest {
    WireRequest::Call {
        object,
        thread: 1,
        method: method.into(),
        args,
    }
}

fn manager_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let b = |v: &dyn erased::Enc| v.enc();
    let none: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let wait = (true, None::<Duration>);
    let dict = [
        frame(0, 0, &create("shmproc.dict", b(&none))),
        frame(0, 0, &call(1, "insert", b(&(b(&7u32), b(&49u32))))),
        frame(0, 0, &call(1, "get", b(&b(&7u32)))),
        frame(1, 0, &call(1, "len", b(&()))),
        frame(0, 0, &WireRequest::Pin { object: 1 }),
        frame(0, 1, &WireRequest::TypeOf { object: 1 }),
        frame(1, 0, &call(1, "items", b(&()))),
    ]
    .concat();
    let lock = [
        frame(0, 0, &create("shmproc.lock", Vec::new())),
        frame(0, 0, &call(1, "acquire", b(&wait))),
        frame(
            1,
            0,
            &call(1, "acquire", b(&(true, Some(Duration::from_millis(1))))),
        ),
        frame(0, 1, &call(1, "is_locked", b(&()))),
        frame(1, 0, &call(1, "acquire", b(&wait))),
        frame(1, 0, &call(1, "release", b(&()))),
        frame(1, 0, &WireRequest::Release { object: 1 }),
    ]
    .concat();
    let queue = [
        frame(2, 0, &create("shmproc.queue", b(&Some(2u64)))),
        frame(2, 0, &call(1, "put", b(&(b(&"x"), true, None::<Duration>)))),
        frame(0, 0, &call(1, "get", b(&wait))),
        frame(0, 0, &call(1, "get", b(&(false, None::<Duration>)))),
        frame(2, 0, &create("shmproc.condition", Vec::new())),
        frame(2, 0, &call(2, "acquire", b(&wait))),
        frame(2, 0, &call(2, "notify", b(&1u32))),
        frame(2, 1, &WireRequest::Ping),
        frame(1, 0, &WireRequest::Shutdown),
    ]
    .concat();
    let mut garbage = vec![0, 0, 5, 2, 0xff, 0xff, 0xff, 0xff];
    garbage.extend(frame(1, 0, &create("no.such.kind", vec![1, 2, 3])));
    garbage.extend([1, 0, 4, 2, 1, 0x80, 0x80]);
    garbage.extend(frame(0, 0, &call(9, "nonsense", vec![0xff; 9])));
    vec![
        ("manager_protocol", "dict", dict),
        ("manager_protocol", "lock", lock),
        ("manager_protocol", "queue-condition", queue),
        ("manager_protocol", "garbage", garbage),
    ]
}

/// Encodes any serde value (for building seed frames from values of several types).
mod erased {
    pub(crate) trait Enc {
        fn enc(&self) -> Vec<u8>;
    }

    impl<T: serde::Serialize> Enc for T {
        fn enc(&self) -> Vec<u8> {
            shmproc::codec::to_bytes(self).unwrap()
        }
    }
}

/// Writes the seed inputs into `fuzz/corpus/<target>/seed-<name>`.
#[test]
#[ignore = "regenerates fuzz/corpus seeds; run by hand"]
fn write_seed_corpus() {
    if std::env::var_os("SHMPROC_WRITE_SEEDS").is_none() {
        return;
    }
    for (target, name, data) in seeds() {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    }
}

/// The input with which the concurrent fuzzer caught a `try_lock` made of a load and a store
/// instead of a compare-exchange (a deliberately broken build, 77 executions, 3 s): three
/// processes holding the lock in turn, each checking nobody else is inside. Replayed 200
/// times (about a second), since one run of a race may miss it: on that broken build, 50
/// replays failed in 2 of 3 tries.
#[test]
fn heavy_concurrent_lock_exclusion_regression() {
    let data = std::fs::read(corpus_dir("concurrent").join("found-try-lock-without-cas")).unwrap();
    for _ in 0..200 {
        shmproc::fuzzing::concurrent::run_bytes(&data);
    }
}
