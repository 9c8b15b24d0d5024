//! Adversarial tests of `codec::ByteBuf` and `get_into`, of the robust lock's fast path and its
//! guards' release (killed holders, forked children, contention across processes, `RLock`
//! levels), and of `ShareableQueue`'s loans and crash rules through its public API.

use serde::de::IntoDeserializer;
use serde::de::value::{Error as DeError, SeqDeserializer, StrDeserializer};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shmproc::codec::{ByteBuf, from_bytes, from_bytes_into, to_bytes};
use shmproc::testing::{ForkPermit, assert_no_leaks, fork, watchdog};
use shmproc::{Error, Lock, Queue, RLock, RawArray, RawValue, ShareableQueue};
use shmproc_tests::{Rng, dead_pid, peek_u64, poke};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn run(name: &str, f: impl FnOnce()) {
    watchdog(LIMIT, name, || assert_no_leaks(f));
}

// ---------------------------------------------------------------------------------------------
// ByteBuf and get_into
// ---------------------------------------------------------------------------------------------

/// Hostile, truncated and trailing inputs: every one is refused, nothing large is allocated
/// for a length the input does not carry, and the kept buffer stays usable (the next good
/// message decodes into it).
#[test]
fn byte_buf_refuses_hostile_lengths_and_stays_usable() {
    let mut place = ByteBuf::with_capacity(16);
    let good = to_bytes(&ByteBuf::from(vec![3u8; 40])).unwrap();
    // Varint lengths from 41 up to u64::MAX-ish, none followed by that many bytes.
    let mut rng = Rng::new(0xb17e_b0f5);
    for round in 0..2000 {
        let len: u64 = match round % 4 {
            0 => 41 + rng.below(1000),
            1 => 1 << (20 + rng.below(40)),
            2 => u64::MAX - rng.below(1000),
            _ => rng.next(),
        };
        let mut msg = Vec::new();
        let mut v = len;
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                msg.push(b);
                break;
            }
            msg.push(b | 0x80);
        }
        msg.extend_from_slice(&[9; 40]);
        assert!(
            from_bytes_into(&msg, &mut place).is_err(),
            "round {round}: length {len}"
        );
        assert!(from_bytes::<ByteBuf>(&msg).is_err());
        assert!(from_bytes::<Vec<u8>>(&msg).is_err());
        assert!(
            place.capacity() < 1 << 16,
            "round {round}: {} bytes reserved for a length of {len}",
            place.capacity()
        );
        from_bytes_into(&good, &mut place).unwrap();
        assert_eq!(place[..], [3; 40]);
    }
    // Truncated and trailing input around a message that needs the buffer to grow.
    let big = to_bytes(&vec![7u8; 5000]).unwrap();
    for cut in [1, 2, 3, 100, big.len() - 1] {
        assert!(
            from_bytes_into(&big[..cut], &mut place).is_err(),
            "cut {cut}"
        );
        assert!(place.len() <= 5000);
    }
    let mut trailing = big.clone();
    trailing.extend_from_slice(&[0, 0]);
    assert!(from_bytes_into(&trailing, &mut place).is_err());
    from_bytes_into(&big, &mut place).unwrap();
    assert_eq!(place[..], [7; 5000]);
}

/// `ByteBuf`, `Vec<u8>` and a `codec::bytes` field share one wire format both ways, also
/// inside structs and for the empty and the long (multi-byte length) cases.
#[test]
fn byte_buf_vec_and_bytes_field_interoperate() {
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct WithBytes {
        a: u8,
        #[serde(with = "shmproc::codec::bytes")]
        b: Vec<u8>,
        c: u16,
    }
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct WithBuf {
        a: u8,
        b: ByteBuf,
        c: u16,
    }
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct WithVec {
        a: u8,
        b: Vec<u8>,
        c: u16,
    }
    for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let x = to_bytes(&WithBytes {
            a: 1,
            b: data.clone(),
            c: 0xbeef,
        })
        .unwrap();
        let y = to_bytes(&WithBuf {
            a: 1,
            b: ByteBuf::from(data.clone()),
            c: 0xbeef,
        })
        .unwrap();
        let z = to_bytes(&WithVec {
            a: 1,
            b: data.clone(),
            c: 0xbeef,
        })
        .unwrap();
        assert_eq!(x, y, "len {len}");
        assert_eq!(x, z, "len {len}");
        assert_eq!(from_bytes::<WithBuf>(&x).unwrap().b.0, data);
        assert_eq!(from_bytes::<WithBytes>(&y).unwrap().b, data);
        assert_eq!(from_bytes::<WithVec>(&y).unwrap().b, data);
        let mut place = WithBuf {
            a: 0,
            b: ByteBuf::with_capacity(8),
            c: 0,
        };
        from_bytes_into(&z, &mut place).unwrap();
        assert_eq!((place.a, &place.b.0, place.c), (1, &data, 0xbeef));
    }
}

/// Through serde's own value deserializers (a format that sends a sequence of integers, or a
/// string): the in-place form accepts and refuses exactly what `deserialize` does, and leaves
/// a valid buffer on refusal.
#[test]
fn byte_buf_in_place_agrees_with_deserialize_in_other_formats() {
    fn whole(items: &[u32]) -> Result<Vec<u8>, DeError> {
        let d = SeqDeserializer::<_, DeError>::new(items.iter().copied());
        ByteBuf::deserialize(d).map(ByteBuf::into_vec)
    }
    fn in_place(items: &[u32], place: &mut ByteBuf) -> Result<(), DeError> {
        let d = SeqDeserializer::<_, DeError>::new(items.iter().copied());
        ByteBuf::deserialize_in_place(d, place)
    }
    let mut place = ByteBuf::from(vec![1, 2, 3]);
    for items in [
        vec![],
        vec![0, 255],
        vec![5; 1000],
        vec![1, 2, 256],
        vec![300],
        vec![7, u32::MAX, 8],
    ] {
        let w = whole(&items);
        let p = in_place(&items, &mut place);
        assert_eq!(w.is_ok(), p.is_ok(), "{items:?}");
        if let Ok(v) = w {
            assert_eq!(place.0, v);
        }
        // Valid whatever happened: usable for the next message.
        place.push(1);
        place.clear();
    }
    let s: StrDeserializer<'_, DeError> = "abc".into_deserializer();
    let w = ByteBuf::deserialize(s).is_ok();
    let s: StrDeserializer<'_, DeError> = "abc".into_deserializer();
    let p = ByteBuf::deserialize_in_place(s, &mut place).is_ok();
    assert_eq!(w, p, "a string: deserialize {w}, in place {p}");
}

/// A value whose `Serialize` writes what its `Deserialize` refuses (an odd number), so a
/// consumer meets a message that does not decode.
#[derive(Debug, PartialEq, Clone)]
struct Even(u32, Vec<u8>);

impl Serialize for Even {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.0, ByteBuf::from(self.1.clone())).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Even {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (n, b) = <(u32, ByteBuf)>::deserialize(d)?;
        if n % 2 == 1 {
            return Err(serde::de::Error::custom("odd"));
        }
        Ok(Even(n, b.0))
    }
}

/// A message that does not decode: `get_into` reports the error like `get` does, for a small
/// message (decoded in its slot) and a large one (in a heap block) alike, and the queue is not
/// stuck on it: the next message is delivered, nothing is delivered twice, and the kept
/// buffer is still usable.
#[test]
fn get_into_of_an_undecodable_message_is_consumed_like_get_and_small_like_large() {
    run("review16_get_into_poison", || {
        for payload in [8usize, 100_000] {
            let q = Queue::<Even>::new().unwrap();
            let q2 = Queue::<Even>::new().unwrap();
            for q in [&q, &q2] {
                q.put(&Even(1, vec![1; payload])).unwrap();
                q.put(&Even(2, vec![2; payload])).unwrap();
            }
            // `get` on one queue, `get_into` on the other: the same outcome.
            let by_get = q.get();
            let mut place = Even(0, Vec::with_capacity(16));
            let by_into = q2.get_into(&mut place);
            assert!(
                matches!(by_get, Err(Error::Codec { .. })),
                "payload {payload}: {by_get:?}"
            );
            assert!(
                matches!(by_into, Err(Error::Codec { .. })),
                "payload {payload}: {by_into:?}"
            );
            let next_get = q.try_get().map(|e| e.0);
            let next_into = q2.try_get_into(&mut place).map(|()| place.0);
            assert_eq!(
                next_get.as_ref().ok(),
                next_into.as_ref().ok(),
                "payload {payload}: get then {next_get:?}, get_into then {next_into:?}"
            );
            assert_eq!(
                next_get.ok(),
                Some(2),
                "payload {payload}: the queue is stuck"
            );
            assert_eq!(place, Even(2, vec![2; payload]));
            assert!(matches!(q2.try_get_into(&mut place), Err(Error::Empty)));
        }
    });
}

/// A `get_into_timeout` that times out leaves the kept buffer as it was and takes nothing; a
/// message put later from another process is then received into it.
#[test]
fn get_into_timeout_across_processes_keeps_the_buffer() {
    run("review16_get_into_timeout", || {
        let q = Queue::<ByteBuf>::with_capacity(4).unwrap();
        let mut place = ByteBuf::from(vec![5u8; 64]);
        assert!(matches!(
            q.get_into_timeout(&mut place, Duration::from_millis(10)),
            Err(Error::Timeout)
        ));
        assert_eq!(place[..], [5; 64]);
        let q2 = q.clone();
        // SAFETY: the child only puts into the shared queue; it takes no process-local lock
        // another thread could hold.
        #[allow(unsafe_code)]
        let permit = unsafe { ForkPermit::new() };
        let mut child = fork(permit, move || {
            for i in 0..200u32 {
                let len = (i as usize * 37) % 700;
                q2.put(&ByteBuf::from(vec![i as u8; len])).unwrap();
            }
            0
        });
        for i in 0..200u32 {
            q.get_into_timeout(&mut place, Duration::from_secs(20))
                .unwrap();
            let len = (i as usize * 37) % 700;
            assert_eq!(place.len(), len, "message {i}");
            assert!(place.iter().all(|&b| b == i as u8), "message {i}");
        }
        assert_eq!(child.wait(), Ok(0));
    });
}

// ---------------------------------------------------------------------------------------------
// Lock and RLock fast paths
// ---------------------------------------------------------------------------------------------

/// Two processes (and a thread of each) contend through every form (`lock`, `try_lock`,
/// `lock_timeout`, `acquire`/`release`) on one lock, each bumping an unprotected shared counter
/// with a separate load and store: no bump is lost (the lock was never held twice), and the
/// lock ends free.
#[test]
fn every_lock_form_excludes_across_processes_and_threads() {
    run("review16_lock_contention", || {
        const ITERS: u64 = 4000;
        let l = Lock::new().unwrap();
        let counter = RawValue::new(0u64).unwrap();
        let won = RawArray::<u64>::new(4).unwrap();
        let work = |l: &Lock, counter: &RawValue<u64>, won: &RawArray<u64>, who: usize| {
            let mut mine = 0;
            for i in 0..ITERS {
                let bump = || {
                    let v = counter.get();
                    std::hint::black_box(v);
                    if i % 64 == 0 {
                        std::thread::yield_now();
                    }
                    counter.set(v + 1);
                };
                match i % 4 {
                    0 => {
                        let g = l.lock().unwrap();
                        bump();
                        drop(g);
                        mine += 1;
                    }
                    1 => {
                        if let Some(g) = l.try_lock().unwrap() {
                            bump();
                            drop(g);
                            mine += 1;
                        }
                    }
                    2 => {
                        if let Some(g) = l.lock_timeout(Duration::from_micros(50)).unwrap() {
                            bump();
                            drop(g);
                            mine += 1;
                        }
                    }
                    _ => {
                        l.acquire().unwrap();
                        bump();
                        l.release().unwrap();
                        mine += 1;
                    }
                }
            }
            won.set(who, mine).unwrap();
        };
        let (l2, c2, w2) = (l.clone(), counter.clone(), won.clone());
        // SAFETY: the child only takes the shared lock and touches shared values; it takes no
        // process-local lock another thread of the parent holds (it starts its own thread).
        #[allow(unsafe_code)]
        let permit = unsafe { ForkPermit::new() };
        let mut child = fork(permit, move || {
            std::thread::scope(|s| {
                s.spawn(|| work(&l2, &c2, &w2, 2));
                work(&l2, &c2, &w2, 3);
            });
            0
        });
        std::thread::scope(|s| {
            s.spawn(|| work(&l, &counter, &won, 0));
            work(&l, &counter, &won, 1);
        });
        assert_eq!(child.wait(), Ok(0));
        let total: u64 = (0..4).map(|i| won.get(i).unwrap()).sum();
        assert_eq!(counter.get(), total, "a bump was lost: two holders at once");
        assert!(!l.is_locked());
    });
}

/// A holder in a child that takes and releases the lock again and again on its fast path is
/// killed at a random point while a live contender in another process also loops on it: the
/// kill shows as `OwnerDied` at most once (to exactly one acquirer when the child died holding
/// it), the counter's two-step bump is never seen half done behind a clean acquisition, and the
/// lock always comes back.
#[test]
fn a_fast_path_holder_killed_with_a_live_contender_is_reported_at_most_once() {
    run("review16_kill_fast_path", || {
        let l = Lock::new().unwrap();
        let counter = RawValue::new(0u64).unwrap();
        let died = RawValue::new(0u64).unwrap();
        let stop = RawValue::new(0u32).unwrap();
        // The live contender: reports each OwnerDied it sees, repairs a half bump.
        let (l3, c3, d3, s3) = (l.clone(), counter.clone(), died.clone(), stop.clone());
        // SAFETY: the contender only takes the shared lock and touches shared values.
        #[allow(unsafe_code)]
        let permit = unsafe { ForkPermit::new() };
        let mut contender = fork(permit, move || {
            let mut bad = 0;
            while s3.get() == 0 {
                let g = match l3.lock_timeout(Duration::from_secs(20)) {
                    Ok(Some(g)) => {
                        if c3.get() % 2 == 1 {
                            bad += 1;
                        }
                        g
                    }
                    Ok(None) => return 2,
                    Err(e) => {
                        d3.set(d3.get() + 1);
                        if c3.get() % 2 == 1 {
                            c3.set(c3.get() + 1);
                        }
                        e.into_inner()
                    }
                };
                c3.set(c3.get() + 2);
                drop(g);
            }
            if bad == 0 { 0 } else { 3 }
        });
        let mut rng = Rng::new(0xfa57_da7a);
        let rounds = 40;
        for round in 0..rounds {
            let (l2, c2) = (l.clone(), counter.clone());
            // SAFETY: the child only takes the shared lock and bumps a shared value until killed.
            #[allow(unsafe_code)]
            let permit = unsafe { ForkPermit::new() };
            let mut child = fork(permit, move || {
                loop {
                    let g = match l2.lock() {
                        Ok(g) => g,
                        Err(e) => e.into_inner(),
                    };
                    if c2.get() % 2 == 1 {
                        c2.set(c2.get() + 1);
                    }
                    c2.set(c2.get() + 1);
                    std::hint::black_box(&g);
                    c2.set(c2.get() + 1);
                    drop(g);
                }
            });
            let from = counter.get();
            while counter.get() == from {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_micros(rng.below(2000)));
            let _ = child.kill();
            // The parent takes it too: whoever first meets the dead hold reports it.
            let before = died.get();
            match l.lock_timeout(Duration::from_secs(20)) {
                Ok(Some(g)) => {
                    assert!(
                        counter.get().is_multiple_of(2) || died.get() > before,
                        "round {round}: a half bump behind a clean acquisition"
                    );
                    drop(g);
                }
                Ok(None) => panic!("round {round}: the lock never came back"),
                Err(e) => {
                    died.set(died.get() + 1);
                    let g = e.into_inner();
                    if counter.get() % 2 == 1 {
                        counter.set(counter.get() + 1);
                    }
                    drop(g);
                }
            }
            assert!(
                died.get() - before <= 1,
                "round {round}: one death reported {} times",
                died.get() - before
            );
        }
        stop.set(1);
        assert_eq!(contender.wait(), Ok(0));
        assert!(died.get() <= rounds);
        assert!(!l.is_locked());
        assert_eq!(counter.get() % 2, 0);
    });
}

/// A forked child inherits a parent thread's two `RLock` levels (two guards) and a `Lock`
/// guard, and drops its copies (after asking for its own id or not): the parent's levels and
/// hold stay, the child can take neither, and the parent's own drops release them level by
/// level.
#[test]
fn rlock_and_lock_guard_copies_dropped_in_a_forked_child_release_nothing() {
    run("review16_rlock_fork_copies", || {
        let r = RLock::new().unwrap();
        let l = Lock::new().unwrap();
        for ask_id_first in [false, true] {
            let g1 = r.lock().unwrap();
            let g2 = r.lock().unwrap();
            let lg = l.lock().unwrap();
            assert_eq!(r.depth(), 2);
            let mut guards = Some((g1, g2, lg));
            let copies = &mut guards;
            let (r2, l2) = (r.clone(), l.clone());
            // SAFETY: the child drops its copies of guards on shared locks and probes them; it
            // takes no process-local lock.
            #[allow(unsafe_code)]
            let permit = unsafe { ForkPermit::new() };
            let mut child = fork(permit, move || {
                if ask_id_first {
                    // Fills the child's id cache.
                    let _ = r2.is_owned();
                    let _ = r2.try_lock().map(|g| g.is_some());
                }
                if let Some((g1, g2, lg)) = copies.take() {
                    drop(lg);
                    drop(g2);
                    drop(g1);
                }
                let mut code = 0;
                if !r2.is_locked() || !l2.is_locked() {
                    code |= 1;
                }
                if r2.depth() != 0 || r2.is_owned() {
                    code |= 2;
                }
                if !matches!(r2.try_lock(), Ok(None)) {
                    code |= 4;
                }
                if !matches!(l2.try_lock(), Ok(None)) {
                    code |= 8;
                }
                code
            });
            assert_eq!(child.wait(), Ok(0), "ask id first: {ask_id_first}");
            let (g1, g2, lg) = guards.take().expect("the parent's guards");
            assert!(r.is_owned());
            assert_eq!(r.depth(), 2);
            assert!(l.is_locked());
            drop(g2);
            assert_eq!(r.depth(), 1);
            assert!(r.is_locked());
            drop(lg);
            assert!(!l.is_locked());
            drop(g1);
            assert_eq!(r.depth(), 0);
            assert!(!r.is_locked());
        }
    });
}

/// Thread-id reuse: the word names the calling thread's id, and the record beside it holds
/// that id with another start time and the pid of a dead process (a thread with this id, in a
/// process since gone, that ended holding the lock). The caller was the last holder before (its own fast path is primed). `Lock::lock`,
/// `try_lock` and `RLock::lock` each take the lock over with `OwnerDied`, once; an `RLock`
/// never counts the dead hold as a level of its own.
#[test]
fn a_stale_hold_of_the_callers_own_id_is_taken_over_once_by_every_form() {
    run("review16_tid_reuse", || {
        let seg = shmproc::Segment::create(1 << 16).unwrap();
        let heap = shmproc::heap_testing::TestHeap::on(&seg);
        let l = Lock::new_in(&seg).unwrap();
        let r = RLock::new_in(&seg).unwrap();
        for form in 0..3 {
            // Prime: this thread is the last holder (its stamp is in the record).
            drop(l.lock().unwrap());
            drop(r.lock().unwrap());
            let at = if form == 2 {
                r.token().offset
            } else {
                l.token().offset
            };
            let mine = peek_u64(&heap, at + 8);
            let tid = (mine >> 32) as u32;
            assert_ne!(tid, 0);
            let stale = mine ^ 1;
            poke(&heap, at + 8, &stale.to_le_bytes());
            poke(&heap, at + 4, &dead_pid().to_le_bytes());
            poke(&heap, at, &tid.to_le_bytes());
            let outcome = match form {
                0 => match l.lock() {
                    Ok(_) => "clean",
                    Err(e) => {
                        drop(e.into_inner());
                        "owner died"
                    }
                },
                1 => match l.try_lock() {
                    Ok(Some(_)) => "clean",
                    Ok(None) => "busy",
                    Err(e) => {
                        drop(e.into_inner());
                        "owner died"
                    }
                },
                _ => match r.lock() {
                    Ok(g) => {
                        let d = r.depth();
                        drop(g);
                        if d == 1 {
                            "clean"
                        } else {
                            "a dead level counted"
                        }
                    }
                    Err(e) => {
                        assert_eq!(r.depth(), 1, "the dead holder's levels are gone");
                        drop(e.into_inner());
                        "owner died"
                    }
                },
            };
            assert_eq!(outcome, "owner died", "form {form}");
            assert!(!l.is_locked() && !r.is_locked(), "form {form}");
            // Once: the next acquisition is clean.
            drop(l.lock().unwrap());
            drop(r.lock().unwrap());
        }
    });
}

/// An `RLock` holder in another process killed at depth 3 (guard, `acquire`, guard): the next
/// holder gets `OwnerDied` once, at depth 1 (no level of the dead holder is inherited), and
/// its own nesting then counts from there.
#[test]
fn an_rlock_holder_killed_deep_is_taken_over_at_depth_one() {
    run("review16_rlock_killed_deep", || {
        let r = RLock::new().unwrap();
        let inside = RawValue::new(0u32).unwrap();
        let (r2, inside2) = (r.clone(), inside.clone());
        // SAFETY: the child only takes the shared lock and sleeps until killed.
        #[allow(unsafe_code)]
        let permit = unsafe { ForkPermit::new() };
        let mut child = fork(permit, move || {
            let g1 = r2.lock().unwrap();
            r2.acquire().unwrap();
            let g2 = r2.lock().unwrap();
            inside2.set(r2.depth());
            loop {
                std::thread::sleep(Duration::from_millis(10));
                std::hint::black_box((&g1, &g2));
            }
        });
        while inside.get() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(inside.get(), 3);
        assert!(matches!(r.try_lock(), Ok(None)));
        assert_eq!(child.kill(), Err(9));
        let g = match r.lock_timeout(Duration::from_secs(20)) {
            Err(e) => e.into_inner(),
            Ok(g) => panic!("after the kill: {:?}", g.is_some()),
        };
        assert_eq!(r.depth(), 1);
        let g2 = r.lock().unwrap();
        r.acquire().unwrap();
        assert_eq!(r.depth(), 3);
        r.release().unwrap();
        drop(g2);
        assert_eq!(r.depth(), 1);
        assert!(matches!(r.release(), Err(Error::NotOwner)));
        drop(g);
        assert!(!r.is_locked());
        drop(r.lock().unwrap());
    });
}

/// Two processes (a thread each, plus the parent's main thread) nest an `RLock` two and three
/// levels deep through guards, `acquire`/`release` and `try_lock`, each bumping a shared
/// counter at every level with a separate load and store: no bump is lost, depth is right at
/// every step, and the lock ends free.
#[test]
fn rlock_nesting_excludes_across_processes_with_exact_depths() {
    run("review16_rlock_nesting", || {
        const ITERS: u64 = 1500;
        let r = RLock::new().unwrap();
        let counter = RawValue::new(0u64).unwrap();
        let won = RawArray::<u64>::new(3).unwrap();
        let work = |r: &RLock, counter: &RawValue<u64>, won: &RawArray<u64>, who: usize| -> bool {
            let bump = || {
                let v = counter.get();
                std::hint::black_box(v);
                counter.set(v + 1);
            };
            let mut mine = 0;
            for i in 0..ITERS {
                let outer = if i % 2 == 0 {
                    Some(r.lock().unwrap())
                } else {
                    match r.try_lock().unwrap() {
                        Some(g) => Some(g),
                        None => continue,
                    }
                };
                bump();
                if r.depth() != 1 {
                    return false;
                }
                r.acquire().unwrap();
                bump();
                let inner = r.try_lock().unwrap();
                if inner.is_none() || r.depth() != 3 {
                    return false;
                }
                bump();
                drop(inner);
                r.release().unwrap();
                if r.depth() != 1 {
                    return false;
                }
                drop(outer);
                if r.depth() != 0 || r.is_owned() {
                    return false;
                }
                mine += 3;
            }
            won.set(who, mine).unwrap();
            true
        };
        let (r2, c2, w2) = (r.clone(), counter.clone(), won.clone());
        // SAFETY: the child only takes the shared lock and touches shared values.
        #[allow(unsafe_code)]
        let permit = unsafe { ForkPermit::new() };
        let mut child = fork(permit, move || i32::from(!work(&r2, &c2, &w2, 2)));
        std::thread::scope(|s| {
            let t = s.spawn(|| work(&r, &counter, &won, 0));
            assert!(work(&r, &counter, &won, 1));
            assert!(t.join().unwrap());
        });
        assert_eq!(child.wait(), Ok(0));
        let total: u64 = (0..3).map(|i| won.get(i).unwrap()).sum();
        assert!(total >= 3 * ITERS * 3 / 2, "too few acquisitions: {total}");
        assert_eq!(counter.get(), total, "a bump was lost: two holders at once");
        assert!(!r.is_locked());
    });
}

/// An `RLock` holder looping on nested levels (guard, then `acquire`, then a guard) is killed
/// at random points: the lock always comes back, `OwnerDied` at depth 1 exactly when the child
/// died holding it (a half bump shows only behind `OwnerDied`), and the next acquisition is
/// clean.
#[test]
fn sigkill_of_a_nesting_rlock_holder_always_recovers_at_depth_one() {
    run("review16_rlock_sigkill", || {
        let r = RLock::new().unwrap();
        let counter = RawValue::new(0u64).unwrap();
        let mut rng = Rng::new(0x4e57_ed01);
        for round in 0..40 {
            let (r2, c2) = (r.clone(), counter.clone());
            // SAFETY: the child only takes the shared lock and bumps a shared value until killed.
            #[allow(unsafe_code)]
            let permit = unsafe { ForkPermit::new() };
            let mut child = fork(permit, move || {
                loop {
                    let g = match r2.lock() {
                        Ok(g) => g,
                        Err(e) => e.into_inner(),
                    };
                    if c2.get() % 2 == 1 {
                        c2.set(c2.get() + 1);
                    }
                    c2.set(c2.get() + 1);
                    let _ = r2.acquire();
                    let g2 = r2.lock().unwrap();
                    std::hint::black_box(&g2);
                    drop(g2);
                    let _ = r2.release();
                    c2.set(c2.get() + 1);
                    drop(g);
                }
            });
            let from = counter.get();
            while counter.get() == from {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_micros(rng.below(2000)));
            let _ = child.kill();
            match r.lock_timeout(Duration::from_secs(20)) {
                Ok(Some(g)) => {
                    assert_eq!(r.depth(), 1);
                    assert!(
                        counter.get().is_multiple_of(2),
                        "round {round}: a half bump behind a clean acquisition"
                    );
                    drop(g);
                }
                Ok(None) => panic!("round {round}: the lock never came back"),
                Err(e) => {
                    assert_eq!(
                        r.depth(),
                        1,
                        "round {round}: levels of the dead holder kept"
                    );
                    let g = e.into_inner();
                    if counter.get() % 2 == 1 {
                        counter.set(counter.get() + 1);
                    }
                    drop(g);
                }
            }
            assert!(!r.is_locked(), "round {round}");
            drop(
                r.lock()
                    .unwrap_or_else(|_| panic!("round {round}: a second OwnerDied")),
            );
        }
    });
}

// ---------------------------------------------------------------------------------------------
// ShareableQueue
// ---------------------------------------------------------------------------------------------

type Msg = [u64; 32];

fn untorn(m: &Msg) -> u64 {
    assert!(m.iter().all(|&w| w == m[0]), "torn message {:?}", &m[..4]);
    m[0]
}

/// A producer killed inside its `put_with` closure, half way through filling the slot: the
/// half-written value is never delivered, no slot stays claimed (the queue still fills to its
/// capacity and drains in order), and consumers are not held up behind the dead producer.
#[test]
fn shareable_put_with_killed_mid_fill_publishes_nothing_and_frees_the_slot() {
    run("review16_shareable_killed_mid_fill", || {
        const CAP: usize = 4;
        let q = ShareableQueue::<Msg>::with_capacity(CAP).unwrap();
        let inside = RawValue::new(0u32).unwrap();
        for round in 0..3u64 {
            let (q2, inside2) = (q.clone(), inside.clone());
            inside.set(0);
            // SAFETY: the child only loans a slot of the shared queue and spins until killed.
            #[allow(unsafe_code)]
            let permit = unsafe { ForkPermit::new() };
            let mut child = fork(permit, move || {
                let _ = q2.put_with(|s| {
                    for w in &mut s[..16] {
                        *w = 0xdead;
                    }
                    inside2.set(1);
                    loop {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                });
                0
            });
            while inside.get() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(child.kill(), Err(9));
            // Fill to capacity and drain: every value whole and in order.
            for i in 0..CAP as u64 {
                q.put_timeout(&[100 * round + i; 32], Duration::from_secs(20))
                    .unwrap_or_else(|e| panic!("round {round}: put {i} after the kill: {e:?}"));
            }
            assert!(matches!(q.try_put(&[0; 32]), Err(Error::Full)));
            for i in 0..CAP as u64 {
                let got = q
                    .get_with_timeout(untorn, Duration::from_secs(20))
                    .unwrap_or_else(|e| panic!("round {round}: get {i} after the kill: {e:?}"));
                assert_eq!(got, 100 * round + i, "round {round}");
            }
            assert!(matches!(q.try_get(), Err(Error::Empty)), "round {round}");
        }
    });
}

/// Panicking loans at every fill level (empty, part full, one short of full): a panicking
/// `put_with` puts nothing and keeps no slot, a panicking `get_with` gives the value back
/// whole and in its place; `try_` and timed forms alike. Capacity stays exact throughout.
#[test]
fn shareable_panicking_loans_at_every_fill_level_keep_capacity_and_order() {
    run("review16_shareable_panics", || {
        const CAP: usize = 3;
        let q = ShareableQueue::<Msg>::with_capacity(CAP).unwrap();
        let quiet = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let mut next = 0u64;
        let mut expect = std::collections::VecDeque::new();
        for round in 0..60 {
            let fill = round % CAP;
            while expect.len() < fill {
                q.put(&[next; 32]).unwrap();
                expect.push_back(next);
                next += 1;
            }
            let put_panics =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match round % 3 {
                    0 => q.put_with(|s| {
                        s[..7].fill(u64::MAX);
                        panic!("fill");
                    }),
                    1 => q.try_put_with(|s| {
                        s[3] = u64::MAX;
                        panic!("fill");
                    }),
                    _ => q.put_with_timeout(
                        |s| {
                            s.fill(u64::MAX);
                            panic!("fill");
                        },
                        Duration::from_secs(5),
                    ),
                }));
            assert!(put_panics.is_err(), "round {round}");
            assert_eq!(
                q.len(),
                expect.len(),
                "round {round}: a panicking fill was put"
            );
            if !expect.is_empty() {
                let get_panics = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    if round % 2 == 0 {
                        q.get_with(|_| -> () { panic!("read") })
                    } else {
                        q.try_get_with(|_| -> () { panic!("read") })
                    }
                }));
                assert!(get_panics.is_err(), "round {round}");
                assert_eq!(
                    q.len(),
                    expect.len(),
                    "round {round}: a panicking read lost it"
                );
                let head = q.get_with(untorn).unwrap();
                assert_eq!(
                    Some(head),
                    expect.pop_front(),
                    "round {round}: out of order"
                );
            }
            // Still exactly CAP slots.
            while expect.len() < CAP {
                q.try_put(&[next; 32])
                    .unwrap_or_else(|e| panic!("round {round}: a slot was lost: {e:?}"));
                expect.push_back(next);
                next += 1;
            }
            assert!(matches!(q.try_put(&[0; 32]), Err(Error::Full)));
            while let Some(want) = expect.pop_front() {
                assert_eq!(q.try_get_with(untorn).unwrap(), want, "round {round}");
            }
            assert!(q.is_empty());
        }
        std::panic::set_hook(quiet);
    });
}

/// Close at the edges: a consumer blocked on an empty queue in another process and a producer
/// blocked on a full one are woken by `close` with `Closed`; what was put before the close is
/// still drained whole.
#[test]
fn shareable_close_wakes_blocked_parties_in_other_processes_and_drains() {
    run("review16_shareable_close", || {
        let full = ShareableQueue::<Msg>::with_capacity(2).unwrap();
        full.put(&[1; 32]).unwrap();
        full.put(&[2; 32]).unwrap();
        let empty = ShareableQueue::<u64>::with_capacity(2).unwrap();
        let (f2, e2) = (full.clone(), empty.clone());
        // SAFETY: the child only blocks on the shared queues.
        #[allow(unsafe_code)]
        let permit = unsafe { ForkPermit::new() };
        let mut child = fork(permit, move || {
            let mut code = 0;
            std::thread::scope(|s| {
                let t = s.spawn(|| matches!(e2.get(), Err(Error::Closed)));
                if !matches!(f2.put_with(|s| s.fill(3)), Err(Error::Closed)) {
                    code |= 1;
                }
                if !t.join().unwrap() {
                    code |= 2;
                }
            });
            code
        });
        std::thread::sleep(Duration::from_millis(50));
        full.close();
        empty.close();
        assert_eq!(child.wait(), Ok(0));
        assert_eq!(full.get_with(untorn).unwrap(), 1);
        assert_eq!(full.get().unwrap(), [2; 32]);
        assert!(matches!(full.get(), Err(Error::Closed)));
        assert!(matches!(empty.try_get(), Err(Error::Closed)));
    });
}

/// A consumer killed inside a long `get_with` closure: the value it was reading goes, whole,
/// to another consumer (once), and the ones behind it follow in order.
#[test]
fn shareable_get_with_killed_mid_read_leaves_the_value_whole_to_others() {
    run("review16_shareable_killed_mid_read", || {
        let q = ShareableQueue::<Msg>::with_capacity(4).unwrap();
        let inside = RawValue::new(0u32).unwrap();
        for round in 0..3u64 {
            q.put(&[10 * round + 1; 32]).unwrap();
            q.put(&[10 * round + 2; 32]).unwrap();
            let (q2, inside2) = (q.clone(), inside.clone());
            inside.set(0);
            // SAFETY: the child only reads a slot of the shared queue and sleeps until killed.
            #[allow(unsafe_code)]
            let permit = unsafe { ForkPermit::new() };
            let mut child = fork(permit, move || {
                let _ = q2.get_with(|_| {
                    inside2.set(1);
                    loop {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                });
                0
            });
            while inside.get() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(child.kill(), Err(9));
            let a = q
                .get_with_timeout(untorn, Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("round {round}: after the kill: {e:?}"));
            let b = q.get_with_timeout(untorn, Duration::from_secs(20)).unwrap();
            assert_eq!((a, b), (10 * round + 1, 10 * round + 2), "round {round}");
            assert!(matches!(q.try_get(), Err(Error::Empty)));
        }
    });
}

/// A live producer slow inside `put_with`: a consumer in another process never sees its slot
/// half filled (it times out or waits), producers behind it keep their order, and the value
/// arrives whole once the closure returns.
#[test]
fn shareable_slow_put_with_is_never_read_half_filled() {
    run("review16_shareable_slow_fill", || {
        let q = ShareableQueue::<Msg>::with_capacity(8).unwrap();
        let seen = RawArray::<u64>::new(3).unwrap();
        let (q2, seen2) = (q.clone(), seen.clone());
        // SAFETY: the child only takes values from the shared queue and records them.
        #[allow(unsafe_code)]
        let permit = unsafe { ForkPermit::new() };
        let mut consumer = fork(permit, move || {
            for i in 0..3 {
                let v = loop {
                    match q2.get_with_timeout(untorn, Duration::from_millis(5)) {
                        Ok(v) => break v,
                        Err(Error::Timeout) => {}
                        Err(_) => return 1,
                    }
                };
                seen2.set(i, v).unwrap();
            }
            0
        });
        std::thread::scope(|s| {
            s.spawn(|| {
                q.put_with(|m| {
                    for (i, w) in m.iter_mut().enumerate() {
                        *w = 7;
                        if i % 8 == 0 {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                })
                .unwrap();
            });
            std::thread::sleep(Duration::from_millis(10));
            s.spawn(|| q.put(&[8; 32]).unwrap());
            std::thread::sleep(Duration::from_millis(10));
            q.put(&[9; 32]).unwrap();
        });
        assert_eq!(consumer.wait(), Ok(0));
        let got: Vec<u64> = (0..3).map(|i| seen.get(i).unwrap()).collect();
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [7, 8, 9], "got {got:?}");
        assert_eq!(got[0], 7, "a later put overtook the slow loan: {got:?}");
    });
}

/// A derived `SharedStruct` with padding and nested arrays, and float bit patterns (NaN
/// payloads, negative zero): copied through the queue across processes bit for bit.
#[test]
fn shareable_queue_of_derived_structs_and_floats_across_processes() {
    #[derive(shmproc::SharedStruct, Clone, Copy, Debug, PartialEq)]
    #[repr(C)]
    struct Rec {
        tag: u8,
        big: u64,
        pair: [u16; 3],
        f: f64,
    }
    run("review16_shareable_derived", || {
        let q = ShareableQueue::<Rec>::with_capacity(5).unwrap();
        let fq = ShareableQueue::<[f32; 4]>::with_capacity(3).unwrap();
        let (q2, fq2) = (q.clone(), fq.clone());
        let rec = |i: u64| Rec {
            tag: i as u8,
            big: i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            pair: [i as u16, !(i as u16), 0xa5a5],
            f: f64::from_bits(0x7ff8_0000_0000_0000 | i),
        };
        // SAFETY: the child only puts into the shared queues.
        #[allow(unsafe_code)]
        let permit = unsafe { ForkPermit::new() };
        let mut child = fork(permit, move || {
            for i in 0..500u64 {
                if i % 2 == 0 {
                    q2.put(&rec(i)).unwrap();
                } else {
                    q2.put_with(|r| *r = rec(i)).unwrap();
                }
                let bits = [
                    f32::from_bits(0x7fc0_0001 + i as u32),
                    -0.0,
                    f32::from_bits(0xff80_0000 | (i as u32 + 1)),
                    f32::MIN_POSITIVE / 2.0,
                ];
                fq2.put(&bits).unwrap();
            }
            0
        });
        for i in 0..500u64 {
            let r = if i % 3 == 0 {
                q.get().unwrap()
            } else {
                q.get_with(|r| *r).unwrap()
            };
            let want = rec(i);
            assert_eq!(
                (r.tag, r.big, r.pair, r.f.to_bits()),
                (want.tag, want.big, want.pair, want.f.to_bits()),
                "value {i}"
            );
            let f = fq.get().unwrap();
            assert_eq!(f[0].to_bits(), 0x7fc0_0001 + i as u32);
            assert_eq!(f[1].to_bits(), (-0.0f32).to_bits());
            assert_eq!(f[2].to_bits(), 0xff80_0000 | (i as u32 + 1));
            assert_eq!(f[3].to_bits(), (f32::MIN_POSITIVE / 2.0).to_bits());
        }
        assert_eq!(child.wait(), Ok(0));
    });
}

/// Runs `op` on a helper thread and returns its result if it finishes within `limit`, else
/// `None` after calling `unblock` (which must let `op` finish) and joining the thread.
fn returns_within<R: Send>(
    limit: Duration,
    op: impl FnOnce() -> R + Send,
    unblock: impl FnOnce(),
) -> Option<R> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(move || {
            let _ = tx.send(op());
        });
        match rx.recv_timeout(limit) {
            Ok(r) => Some(r),
            Err(_) => {
                unblock();
                let _ = rx.recv();
                None
            }
        }
    })
}

// Bug: `Ring::try_get_or_leave` (src/queue/ring.rs) loops, yielding, for as long as the head
// slot is READING by a live consumer (`wait_or_recover` returns false, then `continue`), and
// `try_put_by` does the same for a tail slot WRITING by a live producer. So while one consumer
// is inside a `get_with` closure (or merely stopped, e.g. SIGSTOP or a debugger, inside any
// get) every other consumer's `try_get*` ("never waits") and `get_timeout`/`get_with_timeout`
// ("gives up with Timeout") spin forever, ignoring the deadline; the same for producers'
// `try_put*`/`put_timeout` behind a live `put_with`. Here the 30 ms timed get and the try_get
// have not returned after 5 s; they return only once the reader is killed.
#[test]
fn shareable_try_and_timed_ops_return_beside_a_live_loan_in_another_process() {
    run("review16_shareable_live_loan", || {
        for reader in [true, false] {
            let q = ShareableQueue::<Msg>::with_capacity(4).unwrap();
            if reader {
                q.put(&[1; 32]).unwrap();
                q.put(&[2; 32]).unwrap();
            }
            let inside = RawValue::new(0u32).unwrap();
            let (q2, inside2) = (q.clone(), inside.clone());
            // SAFETY: the child only loans a slot of the shared queue and sleeps until killed.
            #[allow(unsafe_code)]
            let permit = unsafe { ForkPermit::new() };
            let mut child = fork(permit, move || {
                let hold = || {
                    inside2.set(1);
                    loop {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                };
                if reader {
                    let _ = q2.get_with(|_| hold());
                } else {
                    let _ = q2.put_with(|_| hold());
                }
                0
            });
            while inside.get() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut killed = false;
            let timed = returns_within(
                Duration::from_secs(5),
                || {
                    if reader {
                        let t = q.get_with_timeout(untorn, Duration::from_millis(30));
                        (format!("{t:?}"), format!("{:?}", q.try_get().map(|m| m[0])))
                    } else {
                        let t = q.put_timeout(&[3; 32], Duration::from_millis(30));
                        (format!("{t:?}"), format!("{:?}", q.try_put(&[4; 32])))
                    }
                },
                || {
                    let _ = child.kill();
                    killed = true;
                },
            );
            if !killed {
                let _ = child.kill();
            }
            let (t, tr) = timed.unwrap_or_else(|| {
                panic!(
                    "{}: a 30 ms timed op and a try op beside a live loan had not returned after 5 s",
                    if reader { "get" } else { "put" }
                )
            });
            // Beside a live reader of the head, the next value may be delivered or the
            // attempt may give up; beside a live writer, the puts go to the next slots.
            eprintln!("reader {reader}: timed {t}, try {tr}");
        }
    });
}

/// Set in a forked child: `Slow`'s decoding of 7 then blocks until the child is killed.
static SLOW_DECODE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Set to 1 by a decoding that blocks (it is then inside the get, holding the slot).
static STALLED: std::sync::OnceLock<RawValue<u32>> = std::sync::OnceLock::new();

/// A number whose decoding can be made to block (a consumer that stalls inside its get, as a
/// stopped or descheduled process does).
#[derive(Serialize, Debug, PartialEq)]
struct Slow(u32);

impl<'de> Deserialize<'de> for Slow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        if n == 7 && SLOW_DECODE.load(std::sync::atomic::Ordering::Relaxed) {
            if let Some(v) = STALLED.get() {
                v.set(1);
            }
            loop {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(Slow(n))
    }
}

// Bug: the same loop as above in the encoded `Queue`: a small message is decoded in its slot
// (`get_decoded`), so a consumer stalled there (a slow `Deserialize`, or a process stopped by
// SIGSTOP or a debugger in the middle of a get) makes every other consumer's `try_get` and
// `get_timeout` spin in `Ring::try_get_or_leave` until it finishes or dies.
#[test]
fn queue_try_and_timed_gets_return_beside_a_stalled_consumer() {
    run("review16_queue_stalled_consumer", || {
        let q = Queue::<Slow>::with_capacity(4).unwrap();
        q.put(&Slow(7)).unwrap();
        q.put(&Slow(8)).unwrap();
        let inside = RawValue::new(0u32).unwrap();
        let (q2, inside2) = (q.clone(), inside.clone());
        // SAFETY: the child only takes from the shared queue and blocks until killed.
        #[allow(unsafe_code)]
        let permit = unsafe { ForkPermit::new() };
        let mut child = fork(permit, move || {
            let _ = STALLED.set(inside2);
            SLOW_DECODE.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = q2.get();
            0
        });
        while inside.get() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut killed = false;
        let got = returns_within(
            Duration::from_secs(5),
            || {
                let t = q.get_timeout(Duration::from_millis(30));
                let tr = q.try_get();
                format!("{t:?} / {tr:?}")
            },
            || {
                let _ = child.kill();
                killed = true;
            },
        );
        if !killed {
            let _ = child.kill();
        }
        let got = got.unwrap_or_else(|| {
            panic!("a 30 ms timed get and a try_get beside a stalled consumer had not returned after 5 s")
        });
        eprintln!("beside a stalled consumer: {got}");
    });
}

// Bug: `close` while a producer is inside `put_with` (its slot WRITING at the head): the put
// goes on and returns `Ok` (the closed check is made before the slot is claimed), but a
// consumer's `get` meanwhile finds the head WRITING by a live producer, gives up on it
// (`Ring::try_get_or_leave` -> `empty_or_closed`) and returns `Closed`: "drained" while an
// acknowledged value is still to come. A consumer that stops at `Closed` (the usual
// `while let Ok(v) = q.get()`) loses it; a later get returns it after `Closed` was reported.
#[test]
fn shareable_close_during_a_live_put_with_never_reports_closed_before_its_value() {
    run("review16_shareable_close_mid_fill", || {
        let q = ShareableQueue::<Msg>::with_capacity(4).unwrap();
        let step = RawValue::new(0u32).unwrap();
        let result = RawValue::new(0u32).unwrap();
        let (q2, step2, result2) = (q.clone(), step.clone(), result.clone());
        // SAFETY: the child only loans a slot of the shared queue and polls shared values.
        #[allow(unsafe_code)]
        let permit = unsafe { ForkPermit::new() };
        let mut child = fork(permit, move || {
            let r = q2.put_with(|m| {
                step2.set(1);
                while step2.get() != 2 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                m.fill(42);
            });
            result2.set(if r.is_ok() { 1 } else { 2 });
            0
        });
        while step.get() != 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        q.close();
        // The consumer: its get may wait for the filling producer, never say Closed first.
        let first = std::thread::scope(|s| {
            let t = s.spawn(|| q.get_with(untorn));
            std::thread::sleep(Duration::from_millis(50));
            step.set(2);
            t.join().unwrap()
        });
        assert_eq!(child.wait(), Ok(0));
        let put_ok = result.get() == 1;
        let later = q.try_get_with(untorn);
        assert!(
            !(put_ok && matches!(first, Err(Error::Closed))),
            "the put returned Ok, the get before it said Closed ({first:?}), and a later get \
             returned {later:?}"
        );
    });
}

/// Set in a forked child: `SlowSer`'s encoding then waits for `SER_GO` to read 2.
static SLOW_SER: std::sync::OnceLock<RawValue<u32>> = std::sync::OnceLock::new();

/// A number whose encoding can be made to stall (a producer descheduled or stopped mid-put).
#[derive(Deserialize, Debug, PartialEq)]
struct SlowSer(u32);

impl Serialize for SlowSer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some(step) = SLOW_SER.get() {
            step.set(1);
            while step.get() != 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.0.serialize(s)
    }
}

// Bug: the same in the encoded `Queue`, whose put encodes into its claimed slot: a producer
// stalled in its value's `Serialize` holds the head WRITING; `close` then makes a consumer's
// `get` return `Closed` while that put goes on to return `Ok`, and its value is delivered
// after `Closed`.
#[test]
fn queue_close_during_a_stalled_put_never_reports_closed_before_its_value() {
    run("review16_queue_close_mid_put", || {
        let q = Queue::<SlowSer>::with_capacity(4).unwrap();
        let step = RawValue::new(0u32).unwrap();
        let result = RawValue::new(0u32).unwrap();
        let (q2, step2, result2) = (q.clone(), step.clone(), result.clone());
        // SAFETY: the child only puts into the shared queue and polls shared values.
        #[allow(unsafe_code)]
        let permit = unsafe { ForkPermit::new() };
        let mut child = fork(permit, move || {
            let _ = SLOW_SER.set(step2);
            let r = q2.put(&SlowSer(42));
            result2.set(if r.is_ok() { 1 } else { 2 });
            0
        });
        while step.get() != 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Give the put time to claim its slot if it encodes there.
        std::thread::sleep(Duration::from_millis(20));
        q.close();
        let first = std::thread::scope(|s| {
            let t = s.spawn(|| q.get());
            std::thread::sleep(Duration::from_millis(50));
            step.set(2);
            t.join().unwrap()
        });
        assert_eq!(child.wait(), Ok(0));
        let put_ok = result.get() == 1;
        let later = q.try_get();
        assert!(
            !(put_ok && matches!(first, Err(Error::Closed))),
            "the put returned Ok, the get before it said Closed ({first:?}), and a later get \
             returned {later:?}"
        );
    });
}

// Bug: the put side of the spin above, in the encoded `Queue`: a producer stalled in its
// value's `Serialize` holds the tail slot WRITING, and every other producer's `try_put` and
// `put_timeout` (`Ring::try_put_by`) spin behind it until it finishes, ignoring "never waits"
// and the deadline.
#[test]
fn queue_try_and_timed_puts_return_beside_a_stalled_producer() {
    run("review16_queue_stalled_producer", || {
        let q = Queue::<SlowSer>::with_capacity(4).unwrap();
        let step = RawValue::new(0u32).unwrap();
        let (q2, step2) = (q.clone(), step.clone());
        // SAFETY: the child only puts into the shared queue and polls shared values.
        #[allow(unsafe_code)]
        let permit = unsafe { ForkPermit::new() };
        let mut child = fork(permit, move || {
            let _ = SLOW_SER.set(step2);
            let _ = q2.put(&SlowSer(1));
            0
        });
        while step.get() != 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        let got = returns_within(
            Duration::from_secs(5),
            || {
                let t = q.put_timeout(&SlowSer(2), Duration::from_millis(30));
                let tr = q.try_put(&SlowSer(3));
                format!("{t:?} / {tr:?}")
            },
            || step.set(2),
        );
        step.set(2);
        assert_eq!(child.wait(), Ok(0));
        let got = got.unwrap_or_else(|| {
            panic!("a 30 ms timed put and a try_put beside a stalled producer had not returned after 5 s")
        });
        eprintln!("beside a stalled producer: {got}");
    });
}

/// Capacity one and two, at the full/empty edges all the time: a producer in another process
/// alternates `try_put_with` and `put_timeout`, the consumer `try_get_with` and `get`; every
/// value arrives once, whole, in order, and `len` never exceeds the capacity.
#[test]
fn shareable_tiny_queues_at_the_edges_deliver_in_order() {
    run("review16_shareable_tiny", || {
        const N: u64 = 3000;
        for cap in [1usize, 2] {
            let q = ShareableQueue::<Msg>::with_capacity(cap).unwrap();
            let q2 = q.clone();
            // SAFETY: the child only puts into the shared queue.
            #[allow(unsafe_code)]
            let permit = unsafe { ForkPermit::new() };
            let mut child = fork(permit, move || {
                let mut i = 0;
                while i < N {
                    let r = if i % 2 == 0 {
                        q2.try_put_with(|m| {
                            for w in m.iter_mut() {
                                *w = i;
                            }
                        })
                    } else {
                        q2.put_timeout(&[i; 32], Duration::from_millis(1))
                    };
                    match r {
                        Ok(()) => i += 1,
                        Err(Error::Full | Error::Timeout) => {}
                        Err(_) => return 1,
                    }
                }
                0
            });
            let mut want = 0;
            while want < N {
                assert!(q.len() <= cap, "cap {cap}: len {}", q.len());
                let got = if want % 3 == 0 {
                    q.get_with(untorn)
                } else {
                    match q.try_get_with(untorn) {
                        Err(Error::Empty) => continue,
                        r => r,
                    }
                };
                assert_eq!(got.unwrap(), want, "cap {cap}");
                want += 1;
            }
            assert_eq!(child.wait(), Ok(0), "cap {cap}");
            assert!(matches!(q.try_get(), Err(Error::Empty)));
        }
    });
}
