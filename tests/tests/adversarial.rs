//! Adversarial probes: what a hostile user or peer can do with the public API (and, where a
//! probe scribbles on shared memory, the `test-support` heap view): forged and mutated tokens,
//! tokens decoded as another kind, objects paired with foreign locks, scribbled heap metadata,
//! lock holders killed at every step, forged descriptors from a socket peer, use after close.
//!
//! Every probe expects a clear `Error`: never a panic, a crash, a hang, a second lock holder
//! or a leak. Probes that run code on corrupted shared memory do so in a forked child watched
//! by the parent, so a crash or a hang is reported instead of taking the test process down.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests: a failed unwrap is the assertion

use shmproc::heap_testing::TestHeap;
use shmproc::testing::{
    Ended, ForkPermit, assert_no_leaks, fork, set_liveness_probe_fault, watchdog,
};
use shmproc::{
    Array, Barrier, BoundedSemaphore, Condition, Connection, Error, Event, Handle, JoinableQueue,
    Listener, Lock, ObjectToken, Queue, RLock, RawArray, RawValue, Segment, Semaphore, SimpleQueue,
    Value, codec,
};
use shmproc_tests::{Rng, peek_u64};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Runs `f` in a forked child and returns how it ended; a child still running after
/// `limit` is killed and reported as a hang.
fn in_child(limit: Duration, f: impl FnOnce() -> i32) -> Result<Ended, &'static str> {
    // SAFETY: the test's only other threads are the harness's and the watchdog's, which hold
    // no lock the child takes while they wait.
    let mut child = fork(unsafe { ForkPermit::new() }, f);
    let start = Instant::now();
    loop {
        if let Some(ended) = child.try_wait() {
            return Ok(ended);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            return Err("hang");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::yield_now();
    }
}

// ---------------------------------------------------------------------------------------------
// Forged tokens.

/// The mutations of one token field a hostile sender would try.
fn mutations(tok: &ObjectToken) -> Vec<ObjectToken> {
    let mut out = Vec::new();
    for d in [
        1i64,
        -1,
        8,
        -8,
        16,
        -16,
        32,
        -32,
        64,
        -64,
        96,
        4096,
        -4096,
        1 << 20,
    ] {
        out.push(ObjectToken {
            offset: tok.offset.wrapping_add_signed(d),
            ..tok.clone()
        });
    }
    for offset in [
        0,
        32,
        64,
        1024,
        4096,
        4128,
        u64::MAX,
        u64::MAX - 31,
        1 << 40,
    ] {
        out.push(ObjectToken {
            offset,
            ..tok.clone()
        });
    }
    for generation in [
        0,
        tok.generation.wrapping_add(1),
        tok.generation.wrapping_sub(1),
        u32::MAX,
    ] {
        out.push(ObjectToken {
            generation,
            ..tok.clone()
        });
    }
    for fingerprint in [0, !tok.fingerprint, tok.fingerprint ^ 1] {
        out.push(ObjectToken {
            fingerprint,
            ..tok.clone()
        });
    }
    for segment in [0, tok.segment ^ 1, u64::MAX] {
        out.push(ObjectToken {
            segment,
            ..tok.clone()
        });
    }
    out.push(ObjectToken {
        name: Some("../../etc/passwd".to_owned()),
        segment: tok.segment ^ 1,
        ..tok.clone()
    });
    out.push(ObjectToken {
        name: Some("shmproc-adversarial-missing".to_owned()),
        segment: tok.segment ^ 1,
        ..tok.clone()
    });
    out
}

/// Every handle a token of `h` can be mutated into fails to attach, and the heap is as it
/// was (no reference taken and left, nothing freed).
fn forged_tokens_of<H: Handle<Token = ObjectToken>>(heap: &TestHeap, h: &H) {
    let used = heap.stats().used;
    for m in mutations(&h.token()) {
        match H::from_token(&m) {
            Ok(_) => panic!("{}: mutated token {m:?} attached", H::KIND),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    assert_eq!(heap.stats().used, used, "{}", H::KIND);
    let again = H::from_token(&h.token()).unwrap();
    assert!(again.same_as(h));
}

fn forged_pairs_of<H: Handle<Token = (ObjectToken, ObjectToken)>>(heap: &TestHeap, h: &H) {
    let used = heap.stats().used;
    let (o, l) = h.token();
    for m in mutations(&o) {
        assert!(H::from_token(&(m, l.clone())).is_err(), "{}", H::KIND);
    }
    for m in mutations(&l) {
        assert!(H::from_token(&(o.clone(), m)).is_err(), "{}", H::KIND);
    }
    // Object and lock swapped, and the lock's token twice.
    assert!(H::from_token(&(l.clone(), o.clone())).is_err());
    assert!(H::from_token(&(l.clone(), l.clone())).is_err());
    assert!(H::from_token(&(o.clone(), o.clone())).is_err());
    assert_eq!(heap.stats().used, used, "{}", H::KIND);
    assert!(H::from_token(&h.token()).unwrap().same_as(h));
}

/// Every field of every kind of token, edited: an error, never an attach, a panic or a
/// leaked reference.
#[test]
fn mutated_tokens_of_every_handle_are_refused() {
    watchdog(Duration::from_secs(60), "mutated_tokens", || {
        assert_no_leaks(|| {
            let seg = Segment::create(1 << 20).unwrap();
            let heap = TestHeap::on(&seg);
            forged_tokens_of(&heap, &RawValue::new_in(&seg, 7u64).unwrap());
            forged_tokens_of(&heap, &RawArray::<u32>::new_in(&seg, 100).unwrap());
            forged_tokens_of(&heap, &Lock::new_in(&seg).unwrap());
            forged_tokens_of(&heap, &RLock::new_in(&seg).unwrap());
            forged_tokens_of(&heap, &Semaphore::new_in(&seg, 2).unwrap());
            forged_tokens_of(&heap, &BoundedSemaphore::new_in(&seg, 2).unwrap());
            forged_tokens_of(&heap, &Event::new_in(&seg).unwrap());
            forged_tokens_of(&heap, &Barrier::new_in(&seg, 2).unwrap());
            forged_tokens_of(&heap, &Queue::<u64>::with_capacity_in(&seg, 4).unwrap());
            forged_pairs_of(&heap, &Value::new_in(&seg, 7u64).unwrap());
            forged_pairs_of(&heap, &Array::<u16>::new_in(&seg, 300).unwrap());
            forged_pairs_of(&heap, &Condition::new_in(&seg).unwrap());
        })
    });
}

/// Decodes `bytes` as `To`; true if it attached.
fn decode_as<To: Handle>(bytes: &[u8]) -> bool {
    codec::from_bytes::<To>(bytes).is_ok()
}

macro_rules! kinds {
    ($($name:literal => $ty:ty),* $(,)?) => {
        vec![$(($name, decode_as::<$ty> as fn(&[u8]) -> bool)),*]
    };
}

/// A token of each kind, decoded (serde, as a peer would send it) as every other kind with
/// the same token shape, is refused; decoded as its own kind it attaches.
#[test]
fn tokens_decoded_as_other_kinds_are_refused() {
    watchdog(Duration::from_secs(60), "cross_kind", || {
        assert_no_leaks(|| {
            let seg = Segment::create(1 << 20).unwrap();
            let rv = RawValue::new_in(&seg, 1u32).unwrap();
            let ra = RawArray::<u32>::new_in(&seg, 1).unwrap();
            let lock = Lock::new_in(&seg).unwrap();
            let rlock = RLock::new_in(&seg).unwrap();
            let sem = Semaphore::new_in(&seg, 1).unwrap();
            let bsem = BoundedSemaphore::new_in(&seg, 1).unwrap();
            let event = Event::new_in(&seg).unwrap();
            let barrier = Barrier::new_in(&seg, 1).unwrap();
            let queue = Queue::<u32>::with_capacity_in(&seg, 2).unwrap();
            let simple = SimpleQueue::<u32>::new().unwrap();
            let joinable = JoinableQueue::<u32>::new().unwrap();
            let singles: Vec<(&str, Vec<u8>)> = vec![
                ("RawValue<u32>", codec::to_bytes(&rv).unwrap()),
                ("RawArray<u32>", codec::to_bytes(&ra).unwrap()),
                ("Lock", codec::to_bytes(&lock).unwrap()),
                ("RLock", codec::to_bytes(&rlock).unwrap()),
                ("Semaphore", codec::to_bytes(&sem).unwrap()),
                ("BoundedSemaphore", codec::to_bytes(&bsem).unwrap()),
                ("Event", codec::to_bytes(&event).unwrap()),
                ("Barrier", codec::to_bytes(&barrier).unwrap()),
                ("Queue<u32>", codec::to_bytes(&queue).unwrap()),
                ("SimpleQueue<u32>", codec::to_bytes(&simple).unwrap()),
                ("JoinableQueue<u32>", codec::to_bytes(&joinable).unwrap()),
            ];
            let decoders = kinds![
                "RawValue<u32>" => RawValue<u32>,
                "RawArray<u32>" => RawArray<u32>,
                "Lock" => Lock,
                "RLock" => RLock,
                "Semaphore" => Semaphore,
                "BoundedSemaphore" => BoundedSemaphore,
                "Event" => Event,
                "Barrier" => Barrier,
                "Queue<u32>" => Queue<u32>,
                "SimpleQueue<u32>" => SimpleQueue<u32>,
                "JoinableQueue<u32>" => JoinableQueue<u32>,
                "Queue<i32>" => Queue<i32>,
                "RawValue<i32>" => RawValue<i32>,
                "RawValue<[u32; 1]>" => RawValue<[u32; 1]>,
                "RawArray<f32>" => RawArray<f32>,
                "RawArray<[u32; 1]>" => RawArray<[u32; 1]>,
            ];
            for (made, bytes) in &singles {
                for (as_kind, decode) in &decoders {
                    assert_eq!(
                        decode(bytes),
                        made == as_kind,
                        "a {made} token decoded as {as_kind}"
                    );
                }
            }
            // Paired tokens: a Value as an Array and back, a Condition as either.
            let value = Value::new_in(&seg, 3u32).unwrap();
            let array = Array::<u32>::new_in(&seg, 1).unwrap();
            let cond = Condition::new_in(&seg).unwrap();
            let pairs: Vec<(&str, Vec<u8>)> = vec![
                ("Value<u32>", codec::to_bytes(&value).unwrap()),
                ("Array<u32>", codec::to_bytes(&array).unwrap()),
                ("Condition", codec::to_bytes(&cond).unwrap()),
            ];
            let decoders = kinds![
                "Value<u32>" => Value<u32>,
                "Array<u32>" => Array<u32>,
                "Condition" => Condition,
                "Value<[u32; 1]>" => Value<[u32; 1]>,
                "Value<i32>" => Value<i32>,
            ];
            for (made, bytes) in &pairs {
                for (as_kind, decode) in &decoders {
                    assert_eq!(
                        decode(bytes),
                        made == as_kind,
                        "a {made} token decoded as {as_kind}"
                    );
                }
            }
        })
    });
}

// ---------------------------------------------------------------------------------------------
// Scribbled shared memory.

/// The objects a scribble probe works on, and where their metadata lives.
struct Population {
    seg: Segment,
    values: Vec<Value<u64>>,
    arrays: Vec<Array<u32>>,
    raws: Vec<RawArray<u64>>,
    locks: Vec<Lock>,
    rlocks: Vec<RLock>,
    sems: Vec<BoundedSemaphore>,
    events: Vec<Event>,
    barriers: Vec<Barrier>,
    conds: Vec<Condition>,
    queues: Vec<Queue<Vec<u8>>>,
    /// (block header, payload) of every object above.
    blocks: Vec<(u64, u64)>,
}

fn populate(rng: &mut Rng) -> Population {
    let seg = Segment::create(1 << 20).unwrap();
    let heap = TestHeap::on(&seg);
    let mut p = Population {
        values: Vec::new(),
        arrays: Vec::new(),
        raws: Vec::new(),
        locks: Vec::new(),
        rlocks: Vec::new(),
        sems: Vec::new(),
        events: Vec::new(),
        barriers: Vec::new(),
        conds: Vec::new(),
        queues: Vec::new(),
        blocks: Vec::new(),
        seg: seg.clone(),
    };
    let note = |tok: ObjectToken| (heap.block_of(tok.offset).unwrap(), tok.offset);
    for i in 0..3 {
        let v = Value::new_in(&seg, i).unwrap();
        p.blocks.push(note(v.token().0));
        p.values.push(v);
        let a = Array::<u32>::new_in(&seg, 1 + rng.below(3000) as usize).unwrap();
        p.blocks.push(note(a.token().0));
        p.arrays.push(a);
        let r = RawArray::<u64>::new_in(&seg, 1 + rng.below(9000) as usize).unwrap();
        p.blocks.push(note(r.token()));
        p.raws.push(r);
        let l = Lock::new_in(&seg).unwrap();
        p.blocks.push(note(l.token()));
        p.locks.push(l);
        let l = RLock::new_in(&seg).unwrap();
        p.blocks.push(note(l.token()));
        p.rlocks.push(l);
        let s = BoundedSemaphore::new_in(&seg, 2).unwrap();
        p.blocks.push(note(s.token()));
        p.sems.push(s);
        let e = Event::new_in(&seg).unwrap();
        p.blocks.push(note(e.token()));
        p.events.push(e);
        let b = Barrier::new_in(&seg, 2).unwrap();
        p.blocks.push(note(b.token()));
        p.barriers.push(b);
        let c = Condition::new_in(&seg).unwrap();
        p.blocks.push(note(c.token()));
        p.conds.push(c);
        let q = Queue::<Vec<u8>>::with_capacity_in(&seg, 4).unwrap();
        q.put(&vec![7u8; 10]).unwrap();
        q.put(&vec![9u8; 5000]).unwrap();
        p.blocks.push(note(q.token()));
        p.queues.push(q);
    }
    // Some freed blocks, so free lists are not empty.
    for n in [10usize, 100, 1000, 20000] {
        drop(RawArray::<u8>::new_in(&seg, n).unwrap());
    }
    p
}

/// Writes a hostile value over 1, 4 or 8 bytes at `at`.
fn scribble(heap: &TestHeap, rng: &mut Rng, at: u64) {
    let len = heap.segment().len();
    let word: u64 = match rng.below(8) {
        0 => 0,
        1 => u64::MAX,
        2 => rng.below(len),
        3 => rng.below(len) / 16,
        4 => 1u64 << rng.below(64),
        5 => 0x7fff_ffff,
        6 => rng.below(256),
        _ => rng.next(),
    };
    let n = [1u64, 4, 8][rng.below(3) as usize];
    let at = at & !(n - 1);
    for i in 0..n {
        if at + i < len {
            heap.poke_u8(at + i, (word >> (8 * i)) as u8).unwrap();
        }
    }
}

/// Uses every object without blocking (a scribbled lock word may name a live thread: waiting
/// for it is correct, so no probe waits). Results are ignored: any error is fine.
fn exercise(p: &Population, rng: &mut Rng) {
    let short = Duration::from_millis(1);
    for v in &p.values {
        let (o, l) = v.token();
        if let Ok(w) = Value::<u64>::from_token(&o, &l) {
            drop(w.clone());
        }
        if let Ok(Some(g)) = v.get_lock().try_lock() {
            drop(g);
            let _ = v.get();
            let _ = v.set(5);
        }
    }
    for a in &p.arrays {
        let (o, l) = a.token();
        if let Ok(w) = Array::<u32>::from_token(&o, &l) {
            drop(w.clone());
        }
        // Whole-array reads wait for range claims as they wait for the lock: a scribbled claim
        // slot may name a live thread, so they run only when a try of the whole range succeeds.
        let free = matches!(a.try_lock_range(..), Ok(Ok(Some(_))));
        if let Ok(Some(g)) = a.get_lock().try_lock()
            && free
        {
            drop(g);
            let _ = a.len();
            let _ = a.to_vec();
            let _ = a.set(a.len().saturating_sub(1), 3);
        }
    }
    for r in &p.raws {
        if let Ok(w) = RawArray::<u64>::from_token(&r.token()) {
            drop(w.clone());
        }
        let _ = r.get(r.len().saturating_sub(1));
        let _ = r.set(0, 1);
        let _ = r.iter().take(64).count();
    }
    for l in &p.locks {
        if let Ok(w) = Lock::from_token(&l.token()) {
            drop(w.clone());
        }
        let _ = l.try_lock().map(drop);
        let _ = l.lock_timeout(short).map(drop);
    }
    for l in &p.rlocks {
        if let Ok(w) = RLock::from_token(&l.token()) {
            drop(w.clone());
        }
        let _ = l.try_lock().map(drop);
    }
    for s in &p.sems {
        if let Ok(w) = BoundedSemaphore::from_token(&s.token()) {
            drop(w.clone());
        }
        if s.try_acquire() {
            let _ = s.release();
        }
        let _ = s.value();
    }
    for e in &p.events {
        if let Ok(w) = Event::from_token(&e.token()) {
            drop(w.clone());
        }
        let _ = e.is_set();
        e.set();
        let _ = e.wait_timeout(short);
        e.clear();
    }
    for b in &p.barriers {
        if let Ok(w) = Barrier::from_token(&b.token()) {
            drop(w.clone());
        }
        let _ = (b.parties(), b.n_waiting(), b.is_broken());
        // `wait_timeout` and `reset` on a scribbled state word hang (see
        // `barrier_with_a_scribbled_count_still_times_out`), so they are not exercised here.
    }
    for c in &p.conds {
        if let Ok(w) = <Condition as Handle>::from_token(&Handle::token(c)) {
            drop(w.clone());
        }
        if let Ok(Some(mut g)) = c.try_lock() {
            let _ = c.notify(1);
            let _ = c.wait_timeout(&mut g, short);
        }
    }
    for q in &p.queues {
        if let Ok(w) = Queue::<Vec<u8>>::from_token(&q.token()) {
            drop(w.clone());
        }
        let _ = q.try_get();
        let _ = q.try_put(&vec![1u8; 1 + rng.below(6000) as usize]);
        let _ = q.len();
        let _ = q.try_get();
        let _ = q.get_timeout(short);
    }
    // Allocation and free of every size class region, through the scribbled free lists.
    for _ in 0..8 {
        let n = 1 + rng.below(40_000) as usize;
        let _ = RawArray::<u8>::new_in(&p.seg, n).map(drop);
        let _ = Value::new_in(&p.seg, 1u64).map(drop);
    }
    let _ = TestHeap::on(&p.seg).walk();
}

/// Runs one scribble probe in a child: populate, scribble `n` times on metadata of kind
/// `region`, exercise; the child must exit 0 (errors are fine; panics, crashes and hangs
/// are not).
fn scribble_probe(seed: u64, region: u64) -> Result<Ended, &'static str> {
    in_child(Duration::from_secs(10), move || scribble_run(seed, region))
}

fn scribble_run(seed: u64, region: u64) -> i32 {
    {
        let mut rng = Rng::new(seed);
        let p = populate(&mut rng);
        let heap = TestHeap::on(&p.seg);
        // The bitmap of a 1 MiB segment: 1024 + 1 MiB / 256 bytes.
        let bitmap_end = 1024 + (1 << 20) / 256;
        for _ in 0..1 + rng.below(4) {
            let at = match region {
                // Heap state: top, root, used, free list heads.
                0 => 64 + rng.below(520),
                // The block-start bitmap.
                1 => 1024 + rng.below(bitmap_end - 1024),
                // A block header.
                2 => {
                    let (b, _) = p.blocks[rng.below(p.blocks.len() as u64) as usize];
                    b + rng.below(32)
                }
                // The first bytes of a payload: link records, sync words, ring headers.
                _ => {
                    let (_, o) = p.blocks[rng.below(p.blocks.len() as u64) as usize];
                    o + rng.below(128)
                }
            };
            if std::env::var_os("SHMPROC_ADVERSARIAL_SEED").is_some() {
                eprintln!("scribble at {at} (region {region})");
            }
            scribble(&heap, &mut rng, at);
        }
        exercise(&p, &mut rng);
        drop(p);
        0
    }
}

/// Replays one scribble probe in this process (`SHMPROC_ADVERSARIAL_SEED=<seed>,<region>`).
#[test]
#[ignore = "replay tool: set SHMPROC_ADVERSARIAL_SEED"]
fn scribble_replay() {
    let spec = std::env::var("SHMPROC_ADVERSARIAL_SEED").unwrap();
    let (seed, region) = spec.split_once(',').unwrap();
    scribble_run(seed.parse().unwrap(), region.parse().unwrap());
}

/// Scribbles on heap metadata (state words, free lists, bitmap, block headers, link records,
/// sync words, ring headers), then uses every object: errors only, never a panic, a crash or
/// a hang.
#[test]
fn scribbled_metadata_gives_errors_never_crashes() {
    let n: u64 = std::env::var("SHMPROC_ADVERSARIAL_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let base = u64::from(std::process::id());
    watchdog(Duration::from_secs(300), "scribbles", || {
        assert_no_leaks(|| {
            all_probes_hold(n, |i| {
                let seed = base * 1000 + i;
                let region = i % 4;
                match scribble_probe(seed, region) {
                    Ok(Ok(0)) => None,
                    other => Some(format!("seed {seed} region {region}: {other:?}")),
                }
            });
        })
    });
}

// ---------------------------------------------------------------------------------------------
// Barrier timeouts.

/// A party arriving while the previous generation's leader still runs the action must give
/// up when its own timeout passes, not when the action ends.
#[test]
fn barrier_wait_timeout_is_honored_while_a_leader_runs_its_action() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static ACTION_DONE: AtomicBool = AtomicBool::new(false);
    watchdog(Duration::from_secs(30), "barrier_action_timeout", || {
        let barrier = Barrier::with_action(2, || {
            std::thread::sleep(Duration::from_secs(5));
            ACTION_DONE.store(true, Ordering::SeqCst);
        })
        .unwrap();
        let b2 = barrier.clone();
        let first = std::thread::spawn(move || b2.wait());
        let b3 = barrier.clone();
        let second = std::thread::spawn(move || b3.wait());
        // Both parties arrived and one of them leads (runs the 5 s action).
        wait_until("both parties to arrive", || {
            barrier.n_waiting() == 0 && {
                std::thread::sleep(Duration::from_millis(100));
                true
            }
        });
        let r = barrier.wait_timeout(Duration::from_millis(100));
        // The timed wait gave up on its own deadline, not when the action ended.
        let done = ACTION_DONE.load(Ordering::SeqCst);
        let _ = (first.join(), second.join());
        assert!(r.is_err(), "wait_timeout while a leader runs: {r:?}");
        assert!(
            !done,
            "wait_timeout(100 ms) returned only after the 5 s action ended"
        );
    });
}

/// A barrier whose state word was scribbled to "all parties arrived" (with no leader
/// recorded) must still honor `wait_timeout`: a hostile or crashed peer must not hang every
/// later waiter.
#[test]
fn barrier_with_a_scribbled_count_still_times_out() {
    watchdog(Duration::from_secs(30), "barrier_scribbled_count", || {
        let seg = Segment::create(1 << 20).unwrap();
        let heap = TestHeap::on(&seg);
        let barrier = Barrier::new_in(&seg, 2).unwrap();
        // The state word is the payload's first 32-bit word: count 2 = parties.
        heap.poke_u8(barrier.token().offset, 2).unwrap();
        let r = in_child(Duration::from_secs(5), || {
            let r = barrier.wait_timeout(Duration::from_millis(100));
            i32::from(r.is_ok())
        });
        assert_eq!(r, Ok(Ok(0)), "wait_timeout on a scribbled barrier");
        // `reset` must not wait forever for a leader that does not exist either.
        let r = in_child(Duration::from_secs(5), || {
            barrier.reset();
            0
        });
        assert_eq!(r, Ok(Ok(0)), "reset of a scribbled barrier");
    });
}

/// The heap walk of the test support (used by the fuzzers and the kill suite) reports a
/// scribbled `top` as corruption instead of panicking.
#[test]
fn test_heap_walk_reports_a_scribbled_top() {
    let seg = Segment::create(1 << 20).unwrap();
    let heap = TestHeap::on(&seg);
    // `top` is the heap state word at offset 64: make it 0.
    for i in 0..8 {
        heap.poke_u8(64 + i, 0).unwrap();
    }
    let r = std::panic::catch_unwind(|| heap.walk().is_err());
    assert_eq!(r.ok(), Some(true), "walk panicked or accepted top = 0");
}

// ---------------------------------------------------------------------------------------------
// Lock holders killed at every step.

/// Workers take a lock, mark themselves inside, check nobody else is, and leave; the parent
/// SIGKILLs random workers (after acquire, inside, during release, while waiting) and starts
/// new ones. A second live holder is never admitted, and whoever enters after a holder died
/// inside learns it through `OwnerDied`.
#[test]
fn killed_lock_holders_never_admit_a_second_holder() {
    watchdog(Duration::from_secs(120), "killed_lock_holders", || {
        assert_no_leaks(|| {
            let seg = Segment::create(1 << 20).unwrap();
            let lock = Lock::new_in(&seg).unwrap();
            let inside = RawValue::new_in(&seg, 0u32).unwrap();
            // Violations: 1 = two holders at once, 2 = entered after a dead holder without
            // OwnerDied.
            let violation = RawValue::new_in(&seg, 0u32).unwrap();
            let entries = RawValue::new_in(&seg, 0u32).unwrap();
            let died_reports = RawValue::new_in(&seg, 0u32).unwrap();
            let worker = || {
                let me = std::process::id();
                loop {
                    let (guard, died) = match lock.lock() {
                        Ok(g) => (g, false),
                        Err(d) => (d.into_inner(), true),
                    };
                    let was = inside.get();
                    if died {
                        // Report seen: the dead holder's mark may remain.
                        died_reports.set(died_reports.get() + 1);
                    } else if was != 0 {
                        violation.set(if was == me { 3 } else { 2 });
                    }
                    inside.set(me);
                    for _ in 0..50 {
                        std::hint::spin_loop();
                    }
                    if inside.get() != me {
                        violation.set(1);
                    }
                    entries.set(entries.get() + 1);
                    inside.set(0);
                    drop(guard);
                }
            };
            let mut rng = Rng::new(u64::from(std::process::id()));
            // SAFETY: the test's other threads (harness, watchdog) hold no lock the workers
            // take.
            let mut workers: Vec<_> = (0..3)
                .map(|_| fork(unsafe { ForkPermit::new() }, worker))
                .collect();
            let start = Instant::now();
            let mut kills = 0;
            while start.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_micros(200 + rng.below(3000)));
                let i = rng.below(workers.len() as u64) as usize;
                assert_eq!(workers[i].kill(), Err(9));
                kills += 1;
                // SAFETY: as above.
                workers[i] = fork(unsafe { ForkPermit::new() }, worker);
                assert_eq!(violation.get(), 0, "violation after {kills} kills");
            }
            for w in &mut workers {
                assert_eq!(w.kill(), Err(9));
            }
            drop(workers);
            assert_eq!(violation.get(), 0, "violation after {kills} kills");
            // The lock still works; a holder killed inside is reported once.
            match lock.lock_timeout(Duration::from_secs(10)) {
                Ok(Some(_g)) => {
                    assert_eq!(inside.get(), 0, "a dead holder's mark without OwnerDied")
                }
                Err(d) => drop(d.into_inner()),
                Ok(None) => panic!("the lock stayed held after every worker died"),
            }
            assert!(!lock.is_locked());
            eprintln!(
                "{kills} kills, {} entries, {} OwnerDied reports",
                entries.get(),
                died_reports.get()
            );
            assert!(entries.get() > 0 && died_reports.get() > 0);
        })
    });
}

/// A thread that exits holding a lock (its guard forgotten) is not a dead owner while its
/// process lives (the guard may live on, like a forgotten `std::sync::MutexGuard`): the next
/// acquirer in the same process times out, never gets `OwnerDied`, never hangs or panics.
#[test]
fn a_thread_exiting_with_a_lock_held_keeps_it_held() {
    watchdog(Duration::from_secs(30), "thread_exits_holding", || {
        for _ in 0..5 {
            let lock = Lock::new().unwrap();
            let rlock = RLock::new().unwrap();
            let (l, r) = (lock.clone(), rlock.clone());
            std::thread::spawn(move || {
                std::mem::forget(l.lock().unwrap());
                std::mem::forget(r.lock().unwrap());
                std::mem::forget(r.lock().unwrap());
            })
            .join()
            .unwrap();
            match lock.lock_timeout(Duration::from_millis(50)) {
                Ok(None) => {}
                Err(_) => panic!("a leaked guard's lock was taken over"),
                Ok(Some(_)) => panic!("a leaked guard's lock was granted"),
            }
            match rlock.lock_timeout(Duration::from_millis(50)) {
                Ok(None) => {}
                Err(_) => panic!("a leaked guard's RLock was taken over"),
                Ok(Some(_)) => panic!("a leaked guard's RLock was granted"),
            }
            assert!(lock.is_locked() && rlock.is_locked());
        }
    });
}

// ---------------------------------------------------------------------------------------------
// A hostile socket peer.

/// A Unix socket connection whose other end is a raw socket: a peer that does not use shmproc
/// and writes whatever frames and descriptors it likes.
fn raw_peer(test: &str) -> (Connection, std::os::unix::net::UnixStream) {
    let path = std::env::temp_dir().join(format!("adv-shmproc-{}-{test}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = Listener::bind_unauthenticated(path.clone()).unwrap();
    let raw = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let conn = listener.accept().unwrap();
    drop(listener);
    let _ = std::fs::remove_file(&path);
    (conn, raw)
}

/// Writes one frame (8-byte little-endian length, then `payload`) with `fds` attached to its
/// first byte, as `sendmsg` with `SCM_RIGHTS`.
fn send_raw_frame(raw: &std::os::unix::net::UnixStream, payload: &[u8], fds: &[i32]) {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut frame = (payload.len() as u64).to_le_bytes().to_vec();
    frame.extend_from_slice(payload);
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: frame.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `control` has room for one header and `fds`.
        let cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
        // SAFETY: `cmsg` points into `control`.
        unsafe {
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
        }
        // SAFETY: as above.
        unsafe {
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        }
        // SAFETY: CMSG_LEN is arithmetic on its argument.
        let cmsg_len = unsafe { libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) } as usize;
        // SAFETY: `cmsg` points into `control`.
        unsafe {
            (*cmsg).cmsg_len = cmsg_len;
        }
        // SAFETY: the data area has room for `fds` (CMSG_SPACE above).
        let data = unsafe { libc::CMSG_DATA(cmsg) };
        // SAFETY: as above; `data` and `fds` do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                data,
                std::mem::size_of_val(fds),
            );
        }
    }
    // SAFETY: `msg` describes live buffers for the duration of the call.
    let n = unsafe { libc::sendmsg(raw.as_raw_fd(), &raw const msg, 0) };
    assert_eq!(n, 1, "sendmsg: {}", std::io::Error::last_os_error());
    (&*raw).write_all(&frame[1..]).unwrap();
}

/// The postcard bytes of a transfer envelope's header: segment identities, descriptor count.
fn wire_header(segments: &[u64], fds: u32) -> Vec<u8> {
    codec::to_bytes(&(segments.to_vec(), fds)).unwrap()
}

/// `/dev/null` descriptors, closed by the caller (they are dup'ed into the kernel's message).
fn dev_nulls(n: usize) -> Vec<std::fs::File> {
    (0..n)
        .map(|_| std::fs::File::open("/dev/null").unwrap())
        .collect()
}

fn raw_fds(files: &[std::fs::File]) -> Vec<i32> {
    use std::os::fd::AsRawFd;
    files.iter().map(AsRawFd::as_raw_fd).collect()
}

/// The token shape of a shared-memory connection end, as a hostile peer writes it.
#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct ForgedConnection {
    obj: ObjectToken,
    side: u8,
    readable: bool,
    writable: bool,
    rx_fd: Option<Option<u32>>,
    tx_fd: Option<Option<u32>>,
    alive_fd: Option<u32>,
    peer_fd: Option<u32>,
}

/// Frames from a raw peer with forged envelope headers and descriptors that are not what the
/// header says: each receive fails with an error, every descriptor that arrived is closed,
/// and the connection keeps working.
#[test]
fn forged_envelopes_from_a_raw_peer_are_refused_without_leaks() {
    watchdog(Duration::from_secs(60), "raw_peer", || {
        assert_no_leaks(|| {
            let (conn, raw) = raw_peer("forged");
            let seg = Segment::create(1 << 16).unwrap();
            let (a, b) = shmproc::pipe().unwrap();
            let forged_end = {
                let bytes = codec::to_bytes(&b).unwrap();
                let mut t: ForgedConnection = codec::from_bytes(&bytes).unwrap();
                t.rx_fd = Some(Some(0));
                t.tx_fd = Some(Some(0));
                t
            };
            let value = codec::to_bytes(&7u32).unwrap();
            let cases: Vec<(&str, Vec<u8>, usize)> = vec![
                // More descriptors than the header declares.
                (
                    "count mismatch",
                    [wire_header(&[], 1), value.clone()].concat(),
                    3,
                ),
                // A "segment" that is /dev/null.
                (
                    "not a segment",
                    [wire_header(&[seg.id()], 0), value.clone()].concat(),
                    1,
                ),
                // Header garbage.
                ("bad header", vec![0xff; 16], 2),
                // A huge segment list.
                (
                    "huge list",
                    [vec![0xff, 0xff, 0xff, 0xff, 0x0f], vec![0; 8]].concat(),
                    1,
                ),
                // One descriptor claimed twice by a forged connection token.
                (
                    "index twice",
                    [wire_header(&[], 1), codec::to_bytes(&forged_end).unwrap()].concat(),
                    1,
                ),
                // A forged connection whose "eventfds" are /dev/null.
                (
                    "not an eventfd",
                    [
                        wire_header(&[], 2),
                        codec::to_bytes(&ForgedConnection {
                            rx_fd: Some(Some(0)),
                            tx_fd: Some(Some(1)),
                            ..forged_end.clone()
                        })
                        .unwrap(),
                    ]
                    .concat(),
                    2,
                ),
                // Far more descriptors than one frame may carry.
                (
                    "too many",
                    [wire_header(&[], 253), value.clone()].concat(),
                    253,
                ),
            ];
            for (what, payload, nfds) in cases {
                let files = dev_nulls(nfds);
                send_raw_frame(&raw, &payload, &raw_fds(&files));
                drop(files);
                let before = shmproc::testing::resources().fds;
                let r = if what == "not an eventfd" || what == "index twice" {
                    conn.recv::<Connection>().map(|c| {
                        // If it attached, using it must still not hang or panic.
                        let _ = c.poll(Some(Duration::from_millis(10)));
                        "attached"
                    })
                } else {
                    conn.recv::<u32>().map(|_| "decoded")
                };
                let after = shmproc::testing::resources().fds;
                eprintln!("{what}: {r:?}");
                if what != "not an eventfd" {
                    assert!(r.is_err(), "{what}: {r:?}");
                }
                assert!(after.is_subset(&before), "{what}: descriptors left open");
            }
            // The connection still works after every refused frame.
            send_raw_frame(&raw, &value, &[]);
            assert_eq!(conn.recv::<u32>().unwrap(), 7);
            drop((a, b));
        })
    });
}

/// A peer sends a segment (a memfd holding a valid segment with a live `RawValue`) and a
/// handle into it, then shrinks the memfd. The receiver's handle must fail with an error or
/// keep working; the process must not die of `SIGBUS`.
#[test]
fn a_received_segment_shrunk_by_its_sender_never_crashes_the_receiver() {
    watchdog(Duration::from_secs(60), "shrunk_segment", || {
        let r = in_child(Duration::from_secs(20), || {
            use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
            let len = 1u64 << 16;
            let name = format!("adv-shmproc-{}-shrink", std::process::id());
            // A valid segment image with a live RawValue, copied into a memfd.
            let (image, token, id) = {
                let seg = Segment::create_named(&name, len).unwrap();
                let rv = RawValue::new_in(&seg, 0x5eed_u64).unwrap();
                let image = std::fs::read(format!("/dev/shm/{name}")).unwrap();
                let token = ObjectToken {
                    name: None,
                    ..rv.token()
                };
                (image, token, seg.id())
            };
            // SAFETY: memfd_create with a valid C string.
            let fd = unsafe { libc::memfd_create(c"adv".as_ptr(), libc::MFD_CLOEXEC) };
            assert!(fd >= 0);
            // SAFETY: `fd` was just created and is owned here.
            let memfd = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
            use std::io::Write;
            (&memfd).write_all(&image).unwrap();
            let (conn, raw) = raw_peer("shrink");
            let payload = [wire_header(&[id], 0), codec::to_bytes(&token).unwrap()].concat();
            send_raw_frame(&raw, &payload, &[memfd.as_raw_fd()]);
            let rv: RawValue<u64> = match conn.recv() {
                Ok(rv) => rv,
                // Refusing an unsealed segment is a fine answer.
                Err(_) => return 0,
            };
            assert_eq!(rv.get(), 0x5eed);
            // The sender shrinks the segment under the receiver.
            memfd.set_len(0).unwrap();
            let _ = rv.get();
            drop(rv);
            0
        });
        assert_eq!(r, Ok(Ok(0)), "the receiver died (7 = SIGBUS)");
    });
}

// ---------------------------------------------------------------------------------------------
// Peers that break the pipe protocol, floods, use after close.

/// Two processes read the same end of a pipe at once (the end was inherited through fork,
/// which nothing prevents) while a third writes messages of every size: the readers get
/// messages or errors, never a panic, a crash or a hang past their poll timeouts.
#[test]
fn two_readers_on_one_pipe_end_get_errors_never_crashes() {
    watchdog(Duration::from_secs(60), "two_readers", || {
        assert_no_leaks(|| {
            let (a, b) = shmproc::pipe().unwrap();
            let reader = || {
                let start = Instant::now();
                while start.elapsed() < Duration::from_millis(1500) {
                    if let Ok(true) = b.poll(Some(Duration::from_millis(5)))
                        && let Ok(m) = b.recv_bytes()
                    {
                        // Message i is `i` repeated; a torn one is fine, but not a crash.
                        let _ = m.iter().all(|&x| x == m.first().copied().unwrap_or(0));
                    }
                }
                0
            };
            // SAFETY: the test's other threads hold no lock the children take.
            let mut r1 = fork(unsafe { ForkPermit::new() }, reader);
            // SAFETY: as above.
            let mut r2 = fork(unsafe { ForkPermit::new() }, reader);
            // SAFETY: as above.
            let mut w = fork(unsafe { ForkPermit::new() }, || {
                let mut rng = Rng::new(u64::from(std::process::id()));
                for i in 0u32.. {
                    let n = 1 + rng.below(200_000) as usize;
                    if a.send_bytes(&vec![i as u8; n]).is_err() {
                        return 0;
                    }
                }
                0
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut ends = Vec::new();
            for child in [&mut r1, &mut r2] {
                loop {
                    if let Some(e) = child.try_wait() {
                        ends.push(e);
                        break;
                    }
                    if Instant::now() > deadline {
                        ends.push(child.kill());
                        eprintln!("a reader hung");
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            let _ = w.kill();
            assert_eq!(ends, vec![Ok(0), Ok(0)], "readers: (exit code | signal)");
        })
    });
}

/// Values carrying descriptors (pipe ends: two eventfds and a segment each) flooded through a
/// Unix socket faster than they are read, some received and dropped, the rest left unread
/// when the connection is dropped: no descriptor or segment leaks.
#[test]
fn flooding_a_socket_with_descriptor_carrying_values_leaks_nothing() {
    watchdog(Duration::from_secs(60), "flood", || {
        assert_no_leaks(|| {
            let path =
                std::env::temp_dir().join(format!("adv-shmproc-{}-flood.sock", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let listener = Listener::bind_unauthenticated(path.clone()).unwrap();
            let client = shmproc::Client::connect(path.clone(), None).unwrap();
            let server = listener.accept().unwrap();
            drop(listener);
            // A token does not keep its object alive: the sender keeps every pipe it sent.
            let sender = std::thread::spawn(move || {
                let mut sent = Vec::new();
                for _ in 0..300 {
                    let (x, y) = shmproc::pipe().unwrap();
                    if client.send(&(&x, &y, vec![0u8; 1000])).is_err() {
                        break;
                    }
                    sent.push((x, y));
                }
                (client, sent.len())
            });
            let mut got = 0;
            for _ in 0..100 {
                let (x, y, _): (Connection, Connection, Vec<u8>) = server.recv().unwrap();
                x.send(&1u8).unwrap();
                assert_eq!(y.recv::<u8>().unwrap(), 1);
                got += 1;
            }
            // Stop reading: the sender blocks on a full socket until the server goes away.
            drop(server);
            let (client, sent) = sender.join().unwrap();
            drop(client);
            assert!(got == 100 && sent >= 100, "got {got}, sent {sent}");
            let _ = std::fs::remove_file(&path);
        })
    });
}

/// Every operation on a closed connection, a closed queue and a dropped peer is an error,
/// never a panic or a hang.
#[test]
fn use_after_close_is_an_error() {
    watchdog(Duration::from_secs(30), "use_after_close", || {
        assert_no_leaks(|| {
            let (mut a, b) = shmproc::pipe().unwrap();
            a.send(&1u32).unwrap();
            a.close();
            a.close();
            assert!(matches!(a.send(&1u32), Err(Error::Closed)));
            assert!(matches!(a.recv::<u32>(), Err(Error::Closed)));
            assert!(a.send_bytes(b"x").is_err());
            assert!(a.recv_bytes().is_err());
            assert!(a.poll(Some(Duration::ZERO)).is_err());
            let devnull = std::fs::File::open("/dev/null").unwrap();
            assert!(a.send_fd(devnull.as_fd()).is_err());
            assert!(a.recv_fd().is_err());
            assert!(codec::to_bytes(&a).is_err());
            // The peer drains what was sent, then sees the end.
            assert_eq!(b.recv::<u32>().unwrap(), 1);
            assert!(b.recv::<u32>().is_err());
            assert!(b.send(&2u32).is_err());

            let q = Queue::<u32>::with_capacity(2).unwrap();
            q.put(&1).unwrap();
            q.close();
            assert!(matches!(q.put(&2), Err(Error::Closed)));
            assert_eq!(q.get().unwrap(), 1);
            assert!(matches!(q.get(), Err(Error::Closed)));
            assert!(q.get_timeout(Duration::from_millis(1)).is_err());
            let q2 = Queue::<u32>::from_token(&q.token()).unwrap();
            assert!(q2.is_closed() && q2.put(&3).is_err());
        })
    });
}

/// A `Condition` (and a `Value`) paired with a valid lock that is not its own is refused.
#[test]
fn objects_paired_with_a_foreign_lock_are_refused() {
    let seg = Segment::create(1 << 20).unwrap();
    let cond = Condition::new_in(&seg).unwrap();
    let other = Lock::new_in(&seg).unwrap();
    let rlock = RLock::new_in(&seg).unwrap();
    assert!(matches!(
        Condition::from_token(&cond.token(), other.clone()),
        Err(Error::LockMismatch)
    ));
    assert!(matches!(
        Condition::from_token(&cond.token(), rlock.clone()),
        Err(Error::LockMismatch)
    ));
    let with_rlock = Condition::with_lock(rlock.clone()).unwrap();
    assert!(Condition::from_token(&with_rlock.token(), rlock.clone()).is_ok());
    assert!(Condition::from_token(&with_rlock.token(), other.clone()).is_err());
    let value = Value::new_in(&seg, 1u64).unwrap();
    assert!(matches!(
        Value::<u64>::from_token(&value.token().0, &other.token()),
        Err(Error::LockMismatch)
    ));
    assert!(Value::<u64>::from_token(&value.token().0, &rlock.token()).is_err());
    // Two values sharing one lock cannot swap locks either.
    let shared = Lock::new_in(&seg).unwrap();
    let v1 = Value::with_lock_in(&seg, 1u64, shared.clone()).unwrap();
    let v2 = Value::new_in(&seg, 2u64).unwrap();
    assert!(Value::<u64>::from_token(&v2.token().0, &v1.token().1).is_err());
    assert!(Value::<u64>::from_token(&v1.token().0, &shared.token()).is_ok());
}

/// With the liveness probe failing in every way that is not a definite "gone", a lock whose
/// holder lives in another process is never handed to a waiter, however the faults come and
/// go; once the holder is killed and the probe works, the waiter gets `OwnerDied`.
#[test]
fn flapping_probe_faults_never_admit_a_second_holder() {
    watchdog(Duration::from_secs(60), "flapping_probe", || {
        assert_no_leaks(|| {
            let seg = Segment::create(1 << 20).unwrap();
            let lock = Lock::new_in(&seg).unwrap();
            let rlock = RLock::new_in(&seg).unwrap();
            let holding = RawValue::new_in(&seg, 0u32).unwrap();
            // SAFETY: the test's other threads hold no lock the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, || {
                let _g = lock.lock().unwrap_or_else(|d| d.into_inner());
                let _r = rlock.lock().unwrap_or_else(|d| d.into_inner());
                holding.set(1);
                loop {
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
            wait_until("the child to hold the locks", || holding.get() == 1);
            let faults = [
                None,
                Some(libc::ENOENT),
                Some(libc::EMFILE),
                Some(libc::ENFILE),
                Some(libc::EACCES),
                Some(libc::EPERM),
                Some(libc::EINTR),
                Some(libc::ENOMEM),
            ];
            let mut rng = Rng::new(u64::from(std::process::id()));
            for i in 0..120 {
                let f = faults[rng.below(faults.len() as u64) as usize];
                set_liveness_probe_fault(f);
                let wait = Duration::from_millis(1 + rng.below(4));
                let l = lock.lock_timeout(wait);
                assert!(
                    matches!(l, Ok(None)),
                    "step {i}, fault {f:?}: the lock was granted"
                );
                drop(l);
                let r = rlock.lock_timeout(wait);
                assert!(
                    matches!(r, Ok(None)),
                    "step {i}, fault {f:?}: the RLock was granted"
                );
            }
            set_liveness_probe_fault(Some(libc::EMFILE));
            assert_eq!(child.kill(), Err(9));
            assert!(matches!(
                lock.lock_timeout(Duration::from_millis(100)),
                Ok(None)
            ));
            set_liveness_probe_fault(None);
            assert!(
                lock.lock_timeout(Duration::from_secs(10)).is_err(),
                "no OwnerDied"
            );
            assert!(
                rlock.lock_timeout(Duration::from_secs(10)).is_err(),
                "no OwnerDied"
            );
            assert!(!lock.is_locked() && !rlock.is_locked());
        })
    });
}

/// A queue whose `tail` (or `head`) word was scribbled to a position whose lap is far from
/// every slot's must make `try_put` (`try_get`) return an error or `Full`/`Empty`, not spin
/// forever: these calls never block by contract.
#[test]
fn queue_with_a_scribbled_position_never_spins_forever() {
    watchdog(Duration::from_secs(60), "queue_scribbled_position", || {
        let mut ends = Vec::new();
        for (what, at) in [("tail", 64u64), ("head", 128)] {
            let seg = Segment::create(1 << 20).unwrap();
            let heap = TestHeap::on(&seg);
            let q = Queue::<u32>::with_capacity_in(&seg, 4).unwrap();
            q.put(&1).unwrap();
            // Position 4 << 31: lap 2^31, half the lap space away from every slot's lap.
            let pos = 4u64 << 31;
            for (i, b) in pos.to_le_bytes().iter().enumerate() {
                heap.poke_u8(q.token().offset + at + i as u64, *b).unwrap();
            }
            let r = in_child(Duration::from_secs(5), || {
                let _ = q.try_put(&2);
                let _ = q.try_get();
                let _ = q.get_timeout(Duration::from_millis(10));
                0
            });
            ends.push((what, r));
        }
        assert_eq!(ends, [("tail", Ok(Ok(0))), ("head", Ok(Ok(0)))]);
    });
}

/// A queue position scribbled to `u64::MAX` is input like any other shared word: no
/// arithmetic overflow panic (debug builds) or wrap into a bogus slot (release builds).
#[test]
fn queue_with_a_maximal_position_does_not_panic() {
    watchdog(Duration::from_secs(60), "queue_max_position", || {
        let mut ends = Vec::new();
        for (what, at) in [("tail", 64u64), ("head", 128)] {
            let seg = Segment::create(1 << 20).unwrap();
            let heap = TestHeap::on(&seg);
            let q = Queue::<u32>::with_capacity_in(&seg, 4).unwrap();
            q.put(&1).unwrap();
            for i in 0..8 {
                heap.poke_u8(q.token().offset + at + i, 0xff).unwrap();
            }
            let r = in_child(Duration::from_secs(5), || {
                let _ = q.try_put(&2);
                let _ = q.try_get();
                0
            });
            ends.push((what, r));
        }
        assert_eq!(ends, [("tail", Ok(Ok(0))), ("head", Ok(Ok(0)))]);
    });
}

/// The heap's `top` scribbled back below blocks already carved: the next allocation must be
/// refused (or come from elsewhere), never hand out bytes of a live object, which would let a
/// new handle write into a `Value` while a guard holds `&mut` to it.
#[test]
fn a_scribbled_top_never_hands_out_a_live_object() {
    let seg = Segment::create(1 << 20).unwrap();
    let heap = TestHeap::on(&seg);
    let victim = Value::new_in(&seg, [0x5au8; 64]).unwrap();
    let (vt, _) = victim.token();
    let vblock = heap.block_of(vt.offset).unwrap();
    let first = heap.block_of(victim.get_lock().token().offset).unwrap();
    // `top` (heap state word at 64) back to the first block.
    for (i, b) in first.to_le_bytes().iter().enumerate() {
        heap.poke_u8(64 + i as u64, *b).unwrap();
    }
    let mut overlaps = Vec::new();
    for _ in 0..4 {
        if let Ok(a) = RawArray::<u8>::from_slice_in(&seg, &[0xee; 100]) {
            let b = heap.block_of(a.token().offset).unwrap();
            let size = heap.block_size(100, 1).unwrap();
            if b < vblock + 128 && first < b + size {
                overlaps.push(b);
            }
            std::mem::forget(a);
        }
    }
    // The victim's lock block may be overwritten too (then its word names a "dead" owner).
    let g = victim.lock().unwrap_or_else(|d| d.into_inner());
    assert!(
        overlaps.is_empty() && g.iter().all(|&x| x == 0x5a),
        "new blocks at {overlaps:?} overlap the live value's block at {vblock}; value now {:?}",
        &g[..8]
    );
}

/// A freed object's token is `ObjectGone`, also once its block was reused by an object of the
/// same type, and for payloads that needed a forward header (64-aligned queue rings, arrays).
#[test]
fn tokens_of_freed_and_reused_blocks_are_object_gone() {
    assert_no_leaks(|| {
        let seg = Segment::create(1 << 20).unwrap();
        for round in 0..3 {
            let rv = RawValue::new_in(&seg, 1u64).unwrap();
            let q = Queue::<u64>::with_capacity_in(&seg, 4).unwrap();
            let a = Array::<u8>::new_in(&seg, 100).unwrap();
            let v = Value::new_in(&seg, 1u64).unwrap();
            let (rt, qt, at, vt) = (rv.token(), q.token(), a.token(), v.token());
            drop((rv, q, a, v));
            let gone = |r: Result<(), Error>, what: &str| {
                assert!(
                    matches!(r, Err(Error::ObjectGone)),
                    "round {round}: freed {what}: {r:?}"
                );
            };
            gone(RawValue::<u64>::from_token(&rt).map(drop), "RawValue");
            gone(Queue::<u64>::from_token(&qt).map(drop), "Queue");
            gone(Array::<u8>::from_token(&at.0, &at.1).map(drop), "Array");
            gone(Value::<u64>::from_token(&vt.0, &vt.1).map(drop), "Value");
            // Reuse the blocks with objects of the same types.
            let rv2 = RawValue::new_in(&seg, 2u64).unwrap();
            let q2 = Queue::<u64>::with_capacity_in(&seg, 4).unwrap();
            let a2 = Array::<u8>::new_in(&seg, 100).unwrap();
            let v2 = Value::new_in(&seg, 2u64).unwrap();
            gone(
                RawValue::<u64>::from_token(&rt).map(drop),
                "reused RawValue",
            );
            gone(Queue::<u64>::from_token(&qt).map(drop), "reused Queue");
            gone(
                Array::<u8>::from_token(&at.0, &at.1).map(drop),
                "reused Array",
            );
            gone(
                Value::<u64>::from_token(&vt.0, &vt.1).map(drop),
                "reused Value",
            );
            // A stale object token with the new lock's token is refused as well.
            assert!(Value::<u64>::from_token(&vt.0, &v2.token().1).is_err());
            drop((rv2, q2, a2, v2));
        }
    });
}

/// A guard of one condition handed to another condition's `wait` is refused, and the other
/// condition's lock (held elsewhere) is not released by the attempt.
#[test]
fn waiting_with_another_conditions_guard_is_refused() {
    watchdog(Duration::from_secs(30), "foreign_guard", || {
        let a = Condition::new().unwrap();
        let b = Condition::new().unwrap();
        let shared = Lock::new().unwrap();
        let c = Condition::with_lock(shared.clone()).unwrap();
        let d = Condition::with_lock(shared.clone()).unwrap();
        let b2 = b.clone();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _g = b2.lock().unwrap();
            held_tx.send(()).unwrap();
            done_rx.recv().unwrap();
        });
        held_rx.recv().unwrap();
        let mut ga = a.lock().unwrap();
        assert!(matches!(
            b.wait_timeout(&mut ga, Duration::from_millis(10)),
            Err(Error::NotOwner)
        ));
        assert!(matches!(
            b.wait_for(&mut ga, || true, None),
            Err(Error::NotOwner)
        ));
        assert!(matches!(b.notify(1), Err(Error::NotOwner)));
        // B's lock is still held by the other thread.
        assert!(matches!(b.try_lock(), Ok(None)));
        drop(ga);
        // Conditions sharing one lock: a guard of one is not the other's.
        let mut gc = c.lock().unwrap();
        assert!(d.wait_timeout(&mut gc, Duration::from_millis(1)).is_err());
        assert!(shared.is_locked());
        drop(gc);
        done_tx.send(()).unwrap();
        holder.join().unwrap();
    });
}

/// A handle whose reference count was scribbled to its maximum: cloning it must not kill the
/// process (a hostile mapper could otherwise abort every process that clones a handle).
#[test]
fn cloning_a_handle_with_a_scribbled_count_does_not_abort() {
    let seg = Segment::create(1 << 20).unwrap();
    let heap = TestHeap::on(&seg);
    let rv = RawValue::new_in(&seg, 1u64).unwrap();
    let block = heap.block_of(rv.token().offset).unwrap();
    // The count is the low half of the header word at +8.
    for (i, b) in 0x7fff_ffffu32.to_le_bytes().iter().enumerate() {
        heap.poke_u8(block + 8 + i as u64, *b).unwrap();
    }
    let r = in_child(Duration::from_secs(5), || {
        let c = rv.clone();
        std::mem::forget(c);
        0
    });
    assert_eq!(r, Ok(Ok(0)), "the clone killed the process (6 = SIGABRT)");
}

/// Scribbles on a pipe's ring (positions, closed flags, pids, sequence words, record headers)
/// with messages in flight, then receives with poll timeouts: messages or errors, never a
/// panic, a crash or a hang.
fn pipe_scribble_run(seed: u64) -> i32 {
    let mut rng = Rng::new(seed);
    let (a, b) = shmproc::pipe().unwrap();
    let obj = {
        let t: ForgedConnection = codec::from_bytes(&codec::to_bytes(&b).unwrap()).unwrap();
        t.obj
    };
    let heap = TestHeap::on(&shmproc::default_segment().unwrap());
    for i in 0..1 + rng.below(6) {
        // At most 180 KB in all: it fits the 256 KiB ring, so no send blocks here.
        let n = [10usize, 100, 5000, 30_000][rng.below(4) as usize];
        a.send_bytes(&vec![i as u8; n]).unwrap();
    }
    // Both directions' headers and the first records of direction 0 and 1.
    let cap = 256 * 1024u64;
    for _ in 0..1 + rng.below(3) {
        let d = rng.below(2);
        let base = obj.offset + 64 + d * (256 + cap);
        let at = if rng.below(2) == 0 {
            base + rng.below(256)
        } else {
            base + 256 + 64 * rng.below(64) + rng.below(16)
        };
        scribble(&heap, &mut rng, at);
    }
    for _ in 0..8 {
        if let Ok(true) = b.poll(Some(Duration::from_millis(2))) {
            let _ = b.recv_bytes_max(1 << 20);
        }
        if let Ok(true) = a.poll(Some(Duration::from_millis(2))) {
            let _ = a.recv_bytes();
        }
    }
    // (No send: a ring scribbled to look full blocks a sender, as a full ring should.)
    drop((a, b));
    0
}

#[test]
fn scribbled_pipe_rings_give_errors_never_crashes() {
    let n: u64 = std::env::var("SHMPROC_ADVERSARIAL_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let base = u64::from(std::process::id());
    watchdog(Duration::from_secs(300), "pipe_scribbles", || {
        all_probes_hold(n, |i| {
            let seed = base * 1000 + i;
            match in_child(Duration::from_secs(10), move || pipe_scribble_run(seed)) {
                Ok(Ok(0)) => None,
                other => Some(format!("seed {seed}: {other:?}")),
            }
        });
    });
}

/// Runs probes `0..n` (each returns what failed, or `None` when it held) and fails listing
/// every probe that failed.
fn all_probes_hold(n: u64, probe: impl FnMut(u64) -> Option<String>) {
    let bad: Vec<String> = (0..n).filter_map(probe).collect();
    assert!(
        bad.is_empty(),
        "{} of {n} probes failed:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// Replays one pipe scribble probe in this process (`SHMPROC_ADVERSARIAL_PIPE_SEED=<seed>`).
#[test]
#[ignore = "replay tool: set SHMPROC_ADVERSARIAL_PIPE_SEED"]
fn pipe_scribble_replay() {
    let seed = std::env::var("SHMPROC_ADVERSARIAL_PIPE_SEED").unwrap();
    pipe_scribble_run(seed.parse().unwrap());
}

/// Every timed wait honors its timeout whatever a synchronization word was scribbled to
/// (free, held by a live thread, all ones, waiter bits, …): the call returns (an error, a
/// timeout or success) within a bound, never hangs.
#[test]
fn timed_waits_return_whatever_the_words_say() {
    let live = std::process::id();
    watchdog(Duration::from_secs(240), "timed_waits", || {
        assert_no_leaks(|| {
            let values = [
                0u32,
                u32::MAX,
                0x7fff_ffff,
                0x8000_0000,
                1,
                live,
                live | 0x8000_0000,
            ];
            let mut bad = Vec::new();
            for kind in 0..8u32 {
                for word in 0..10u64 {
                    for value in values {
                        let r = in_child(Duration::from_secs(3), move || {
                            timed_wait_probe(kind, word, value)
                        });
                        if r != Ok(Ok(0)) {
                            bad.push(format!("kind {kind} word {word} value {value:#x}: {r:?}"));
                        }
                    }
                }
            }
            assert!(
                bad.is_empty(),
                "{} probes failed:\n{}",
                bad.len(),
                bad.join("\n")
            );
        })
    });
}

fn timed_wait_probe(kind: u32, word: u64, value: u32) -> i32 {
    let seg = Segment::create(1 << 20).unwrap();
    let heap = TestHeap::on(&seg);
    let t = Duration::from_millis(10);
    let poke = |offset: u64| {
        for (i, b) in value.to_le_bytes().iter().enumerate() {
            heap.poke_u8(offset + word * 4 + i as u64, *b).unwrap();
        }
    };
    match kind {
        0 => {
            let l = Lock::new_in(&seg).unwrap();
            poke(l.token().offset);
            let _ = l.lock_timeout(t).map(drop);
        }
        1 => {
            let l = RLock::new_in(&seg).unwrap();
            poke(l.token().offset);
            let _ = l.lock_timeout(t).map(drop);
        }
        2 => {
            let s = Semaphore::new_in(&seg, 0).unwrap();
            poke(s.token().offset);
            let _ = s.acquire_timeout(t);
        }
        3 => {
            let s = BoundedSemaphore::new_in(&seg, 1).unwrap();
            poke(s.token().offset);
            if s.acquire_timeout(t) {
                let _ = s.release();
            }
        }
        4 => {
            let e = Event::new_in(&seg).unwrap();
            poke(e.token().offset);
            let _ = e.wait_timeout(t);
        }
        5 => {
            let c = Condition::new_in(&seg).unwrap();
            poke(c.token().offset);
            if let Ok(Some(mut g)) = c.lock_timeout(t) {
                let _ = c.wait_timeout(&mut g, t);
                let _ = c.notify_all();
            }
        }
        6 => {
            let q = Queue::<u32>::with_capacity_in(&seg, 2).unwrap();
            poke(q.token().offset);
            let _ = q.get_timeout(t);
            let _ = q.put_timeout(&1, t);
            let _ = q.put_timeout(&2, t);
            let _ = q.put_timeout(&3, t);
            let _ = q.get_timeout(t);
        }
        _ => {
            let v = Value::new_in(&seg, 1u64).unwrap();
            poke(v.get_lock().token().offset);
            let _ = v.get_lock().lock_timeout(t).map(drop);
        }
    }
    0
}

// ---------------------------------------------------------------------------------------------
// Scribbled containers.

/// Keys and values of the container scribble probes.
const SCRIBBLED_ENTRIES: u64 = 40;

fn scribbled_value(k: u64) -> String {
    format!("value-{k}-{}", "x".repeat((k % 7) as usize))
}

fn poke_word(heap: &TestHeap, at: u64, width: u64, word: u64) {
    for i in 0..width {
        heap.poke_u8(at + i, (word >> (8 * i)) as u8).unwrap();
    }
}

/// The payload a container reference word names (`generation << 32 | payload / 32`).
fn ref_payload(r: u64) -> u64 {
    (r & 0xffff_ffff) * 32
}

/// Every word a container's read path uses, as (offset, width): the header's root word and
/// intent record, the table's block header, the table's slot words, and for a few entries their block header
/// words, their block-start bit (the bitmap byte) and their first payload word (a dictionary
/// entry's key length). The flag says whether the word may take the value of the same word of
/// another entry: not a list's slot, where another element's reference is an element (as
/// after a `set`), indistinguishable from data.
fn container_words(heap: &TestHeap, header: u64, dict: bool) -> Vec<(u64, u64, bool)> {
    let root = header + 4 * 8;
    let table = ref_payload(peek_u64(heap, root));
    let table_len = peek_u64(heap, table - 32 + 24);
    let mut out = vec![(root, 8, true)];
    // The intent record (header words 8 to 15: state, op, which word, old, new, the blocks to
    // free on commit and on rollback, `FRESH`), read by the next holder's repair.
    for w in 8..16 {
        out.push((header + 8 * w, 8, true));
    }
    for (off, width) in [(0, 4), (4, 4), (8, 8), (16, 8), (24, 8)] {
        out.push((table - 32 + off, width, true));
    }
    let refs: Vec<(u64, u64)> = if dict {
        (0..table_len / 16)
            .map(|i| (table + 16 * i, peek_u64(heap, table + 16 * i)))
            .filter(|&(_, r)| r > 1)
            .collect()
    } else {
        let len = peek_u64(heap, table);
        out.push((table, 8, true));
        (1..=len)
            .map(|i| (table + 8 * i, peek_u64(heap, table + 8 * i)))
            .collect()
    };
    for &(slot, r) in refs.iter().take(4) {
        out.push((slot, 8, dict));
        if dict {
            // The slot's hash word.
            out.push((slot + 8, 8, true));
        }
        let payload = ref_payload(r);
        let block = payload - 32;
        for (off, width) in [(0, 4), (4, 4), (8, 8), (12, 4), (16, 8), (24, 8)] {
            out.push((block + off, width, true));
        }
        out.push((payload, 4, true));
        // The block-start bitmap: one bit per 32-byte unit, from byte 1024 of the segment.
        out.push((1024 + block / 32 / 8, 1, true));
        out.push((1024 + payload / 32 / 8, 1, true));
    }
    out
}

/// The hostile values written over a word of `width` bytes holding `orig`; `other` is the
/// same word of another entry (a reference to another entry, another header).
fn hostile_words(orig: u64, other: u64, width: u64) -> Vec<u64> {
    let mask = if width == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    };
    let mut v = vec![
        0,
        mask,
        orig ^ 1,
        orig ^ (1 << (8 * width - 1)),
        orig.wrapping_add(1),
        orig.wrapping_sub(1),
        orig.wrapping_add(32),
        orig.wrapping_sub(32),
        other,
    ];
    if width == 8 {
        v.extend([
            orig ^ (1 << 32),
            orig.wrapping_add(1 << 32),
            orig ^ 0x8000_0000,
        ]);
    }
    for w in &mut v {
        *w &= mask;
    }
    v.sort_unstable();
    v.dedup();
    v.retain(|&w| w != orig & mask);
    v
}

/// The child of a container scribble probe: every value a read hands back is the one stored
/// under that key or index (exit 3 otherwise); errors and misses are fine; then mutations run
/// (any result is fine). A panic, a crash or a hang fails the probe.
///
/// With `strict` false (a list's slot word was scribbled, possibly to another element's
/// reference) a list element may be any stored value.
fn exercise_containers(
    heap: &TestHeap,
    d: &shmproc::Dict<u64, String>,
    l: &shmproc::List<String>,
    strict: bool,
) -> i32 {
    let stored = |i: u64, v: &str| {
        v == scribbled_value(i)
            || !strict && (0..SCRIBBLED_ENTRIES).any(|j| v == scribbled_value(j))
    };
    for k in 0..SCRIBBLED_ENTRIES + 2 {
        if let Ok(Some(v)) = d.get(&k)
            && v != scribbled_value(k)
        {
            eprintln!("Dict::get({k}) gave {v:?}");
            return 3;
        }
        if let Ok(Some(v)) = l.get(k as usize)
            && !stored(k, &v)
        {
            eprintln!("List::get({k}) gave {v:?}");
            return 3;
        }
    }
    if let Ok(items) = d.items()
        && let Some((k, v)) = items.iter().find(|(k, v)| *v != scribbled_value(*k))
    {
        eprintln!("Dict::items has {k} -> {v:?}");
        return 3;
    }
    if let Ok(v) = l.to_vec()
        && let Some((i, x)) = v.iter().enumerate().find(|(i, x)| !stored(*i as u64, x))
    {
        eprintln!("List::to_vec has [{i}] = {x:?}");
        return 3;
    }
    for k in [0, 3, SCRIBBLED_ENTRIES + 5] {
        let _ = d.insert(k, scribbled_value(k));
        let _ = d.update_with(&k, |v| v.take());
        let _ = d.contains_key(&k);
    }
    let _ = d.len();
    let _ = l.push(scribbled_value(0));
    let _ = l.insert(0, scribbled_value(1));
    let _ = l.set(2, scribbled_value(2));
    let _ = l.remove(1);
    let _ = l.pop();
    let _ = d.clear();
    let _ = l.clear();
    let _ = heap.walk();
    0
}

/// A segment holding a dictionary and a list of `SCRIBBLED_ENTRIES` entries each, with freed
/// entry blocks beside the live ones (the same layout every time).
fn scribble_containers() -> (TestHeap, shmproc::Dict<u64, String>, shmproc::List<String>) {
    let seg = Segment::create(1 << 20).unwrap();
    let heap = TestHeap::on(&seg);
    let d = shmproc::Dict::<u64, String>::new_in(&seg).unwrap();
    let l = shmproc::List::<String>::new_in(&seg).unwrap();
    for k in 0..SCRIBBLED_ENTRIES {
        d.insert(k, scribbled_value(k)).unwrap();
        l.push(scribbled_value(k)).unwrap();
    }
    // Freed blocks of the entry class, so stale bytes sit beside live ones.
    for k in SCRIBBLED_ENTRIES..SCRIBBLED_ENTRIES + 8 {
        d.insert(k, scribbled_value(k)).unwrap();
        d.remove(&k).unwrap();
    }
    (heap, d, l)
}

/// The probes of `scribble_containers`' layout: (strict, offset, width, hostile word); not
/// strict for a list's slot word (see `container_words`).
fn container_probes(
    heap: &TestHeap,
    d: &shmproc::Dict<u64, String>,
    l: &shmproc::List<String>,
) -> Vec<(bool, u64, u64, u64)> {
    let mut probes = Vec::new();
    for (header, dict) in [(d.token().offset, true), (l.token().offset, false)] {
        let words = container_words(heap, header, dict);
        for (n, &(at, width, alias)) in words.iter().enumerate() {
            // The same word of the next entry (or the one before).
            let other_at = words
                .iter()
                .skip(n + 1)
                .chain(words.iter().take(n).rev())
                .find(|w| alias && w.1 == width && w.0 != at && w.0.abs_diff(at) % 32 == 0)
                .map_or(at, |w| w.0);
            let orig = peek_u64(heap, at);
            let other = peek_u64(heap, other_at);
            for word in hostile_words(orig, other, width) {
                probes.push((alias, at, width, word));
            }
        }
    }
    probes
}

/// Every word a dictionary's or a list's read path uses (the root word, the table's block
/// header and slots, entries' block headers, block-start bits and key lengths), overwritten
/// with hostile values one at a time, each in a segment of its own: `get`, iteration and
/// mutations give errors or misses, never another entry's value, a panic, a crash or a hang.
#[test]
fn scribbled_container_words_give_errors_never_wrong_values() {
    watchdog(Duration::from_secs(600), "container_scribbles", || {
        assert_no_leaks(|| {
            let n = {
                let (heap, d, l) = scribble_containers();
                container_probes(&heap, &d, &l).len()
            };
            eprintln!("{n} container scribble probes");
            all_probes_hold(n as u64, |i| {
                let r = in_child(Duration::from_secs(10), move || {
                    let (heap, d, l) = scribble_containers();
                    let probes = container_probes(&heap, &d, &l);
                    if probes.len() != n {
                        eprintln!("the layout changed: {} probes", probes.len());
                        return 4;
                    }
                    let (strict, at, width, word) = probes[i as usize];
                    poke_word(&heap, at, width, word);
                    // A handle attached after the scribble as well as one from before it.
                    let fresh = (
                        shmproc::Dict::<u64, String>::from_token(&d.token()),
                        shmproc::List::<String>::from_token(&l.token()),
                    );
                    if let (Ok(d2), Ok(l2)) = fresh {
                        let c = exercise_containers(&heap, &d2, &l2, strict);
                        if c != 0 {
                            return c;
                        }
                    }
                    exercise_containers(&heap, &d, &l, strict)
                });
                match r {
                    Ok(Ok(0)) => None,
                    other => {
                        let (heap, d, l) = scribble_containers();
                        let (_, at, width, word) = container_probes(&heap, &d, &l)[i as usize];
                        Some(format!(
                            "probe {i} (word at {at}, width {width}, = {word:#x}): {other:?}"
                        ))
                    }
                }
            });
        })
    });
}

/// A dictionary's `FRESH` word still naming an entry block it freed (a holder killed between
/// freeing its prepared block and forgetting it), after another dictionary reused that block
/// for a live entry: the next holder's repair skips the block (its generation moved on) and
/// never frees the other dictionary's entry.
#[test]
fn stale_fresh_word_never_frees_a_block_another_container_reused() {
    watchdog(Duration::from_secs(60), "stale_fresh", || {
        assert_no_leaks(|| {
            let seg = Segment::create(1 << 20).unwrap();
            let heap = TestHeap::on(&seg);
            let a = shmproc::Dict::<u64, u64>::new_in(&seg).unwrap();
            let b = shmproc::Dict::<u64, u64>::new_in(&seg).unwrap();
            a.insert(1, 10).unwrap();
            b.insert(0, 0).unwrap();
            // The reference word of `a`'s one entry, read from its table.
            let table = ref_payload(peek_u64(&heap, a.token().offset + 4 * 8));
            let table_len = peek_u64(&heap, table - 32 + 24);
            let stale = (0..table_len / 16)
                .map(|i| peek_u64(&heap, table + 16 * i))
                .find(|&r| r > 1)
                .unwrap();
            let used = heap.stats().used;
            a.remove(&1).unwrap();
            // `b` takes the block back from the free list (same class, last freed).
            b.insert(2, 20).unwrap();
            assert_eq!(heap.stats().used, used, "the freed entry block was reused");
            let b_table = ref_payload(peek_u64(&heap, b.token().offset + 4 * 8));
            let b_refs: Vec<u64> = (0..peek_u64(&heap, b_table - 32 + 24) / 16)
                .map(|i| peek_u64(&heap, b_table + 16 * i))
                .collect();
            let reused = b_refs
                .iter()
                .copied()
                .find(|&r| ref_payload(r) == ref_payload(stale))
                .expect("b's new entry reuses a's freed block");
            assert_ne!(
                reused >> 32,
                stale >> 32,
                "a reused block has a new generation"
            );
            // `a`'s FRESH word (intent word 7 of the header's words from 8) names the freed
            // block, as a death between the free and the forget leaves it.
            let fresh = a.token().offset + (8 + 7) * 8;
            poke_word(&heap, fresh, 8, stale);
            // The next holder of `a` repairs: the block is skipped, `b`'s entry lives.
            assert_eq!(a.len().unwrap(), 0);
            assert_eq!(
                peek_u64(&heap, fresh),
                0,
                "the repair forgets the stale word"
            );
            assert_eq!(b.get(&2).unwrap(), Some(20));
            assert_eq!(b.get(&0).unwrap(), Some(0));
            assert_eq!(heap.stats().used, used, "nothing freed or lost");
            a.insert(3, 30).unwrap();
            assert_eq!(b.get(&2).unwrap(), Some(20));
            heap.walk().unwrap();
            // The same for a stale word naming a block that is still free.
            let c = shmproc::Dict::<u64, u64>::new_in(&seg).unwrap();
            c.insert(5, 50).unwrap();
            let c_table = ref_payload(peek_u64(&heap, c.token().offset + 4 * 8));
            let c_entry = (0..peek_u64(&heap, c_table - 32 + 24) / 16)
                .map(|i| peek_u64(&heap, c_table + 16 * i))
                .find(|&r| r > 1)
                .unwrap();
            c.remove(&5).unwrap();
            let used = heap.stats().used;
            poke_word(&heap, c.token().offset + (8 + 7) * 8, 8, c_entry);
            assert_eq!(c.len().unwrap(), 0);
            assert_eq!(heap.stats().used, used, "a free block is not freed twice");
            let free_before = heap.walk().unwrap();
            c.insert(6, 60).unwrap();
            b.insert(7, 70).unwrap();
            assert_eq!(c.get(&6).unwrap(), Some(60));
            assert_eq!(b.get(&7).unwrap(), Some(70));
            assert!(heap.walk().unwrap().free_blocks <= free_before.free_blocks);
        })
    });
}
