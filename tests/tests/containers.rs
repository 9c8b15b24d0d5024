//! Shared containers: models against `std` collections, attach checks, nesting and a
//! four-process stress test (writers killed inside mutations are in the kill suite).

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests: a failed unwrap is the assertion

use proptest::prelude::*;
use shmproc::testing::{ForkPermit, assert_no_leaks, fork, watchdog};
use shmproc::{Dict, Error, List, Segment, Slot};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(240);

#[derive(Debug, Clone)]
enum DictOp {
    Insert(u8, String),
    Remove(u8),
    Get(u8),
    Bump(u8),
    Clear,
}

fn dict_op() -> impl Strategy<Value = DictOp> {
    prop_oneof![
        6 => (any::<u8>(), "[a-z]{0,40}").prop_map(|(k, v)| DictOp::Insert(k, v)),
        3 => any::<u8>().prop_map(DictOp::Remove),
        3 => any::<u8>().prop_map(DictOp::Get),
        2 => any::<u8>().prop_map(DictOp::Bump),
        1 => Just(DictOp::Clear),
    ]
}

#[derive(Debug, Clone)]
enum ListOp {
    Push(u32),
    Pop,
    Insert(usize, u32),
    Remove(usize),
    Set(usize, u32),
    Truncate(usize),
    Reverse,
    Sort,
    Get(usize),
    IndexOf(u32),
}

fn list_op() -> impl Strategy<Value = ListOp> {
    prop_oneof![
        8 => (0u32..50).prop_map(ListOp::Push),
        2 => Just(ListOp::Pop),
        3 => (0usize..80, 0u32..50).prop_map(|(i, v)| ListOp::Insert(i, v)),
        2 => (0usize..80).prop_map(ListOp::Remove),
        2 => (0usize..80, 0u32..50).prop_map(|(i, v)| ListOp::Set(i, v)),
        1 => (0usize..80).prop_map(ListOp::Truncate),
        1 => Just(ListOp::Reverse),
        1 => Just(ListOp::Sort),
        2 => (0usize..80).prop_map(ListOp::Get),
        1 => (0u32..50).prop_map(ListOp::IndexOf),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random operation sequences against a `HashMap`; every block is freed at the end.
    #[test]
    fn dict_matches_hashmap(ops in proptest::collection::vec(dict_op(), 1..300)) {
        let seg = Segment::create(16 << 20).unwrap();
        let used = seg.stats().used;
        {
            let d = Dict::<u8, String>::new_in(&seg).unwrap();
            let mut m = HashMap::new();
            for op in ops {
                match op {
                    DictOp::Insert(k, v) => {
                        prop_assert_eq!(d.insert(k, v.clone()).unwrap(), m.insert(k, v));
                    }
                    DictOp::Remove(k) => prop_assert_eq!(d.remove(&k).unwrap(), m.remove(&k)),
                    DictOp::Get(k) => {
                        prop_assert_eq!(d.get(&k).unwrap(), m.get(&k).cloned());
                        prop_assert_eq!(d.contains_key(&k).unwrap(), m.contains_key(&k));
                    }
                    DictOp::Bump(k) => {
                        d.update_with(&k, |v| v.get_or_insert_with(String::new).push('!'))
                            .unwrap();
                        m.entry(k).or_default().push('!');
                    }
                    DictOp::Clear => {
                        d.clear().unwrap();
                        m.clear();
                    }
                }
                prop_assert_eq!(d.len().unwrap(), m.len());
            }
            let mut items = d.items().unwrap();
            items.sort();
            let mut want: Vec<_> = m.into_iter().collect();
            want.sort();
            prop_assert_eq!(items, want);
        }
        prop_assert_eq!(seg.stats().used, used, "every block freed with the last handle");
    }

    /// Random operation sequences against a `Vec`; every block is freed at the end.
    #[test]
    fn list_matches_vec(ops in proptest::collection::vec(list_op(), 1..300)) {
        let seg = Segment::create(16 << 20).unwrap();
        let used = seg.stats().used;
        {
            let l = List::<u32>::new_in(&seg).unwrap();
            let mut m = Vec::new();
            for op in ops {
                match op {
                    ListOp::Push(v) => {
                        l.push(v).unwrap();
                        m.push(v);
                    }
                    ListOp::Pop => prop_assert_eq!(l.pop().unwrap(), m.pop()),
                    ListOp::Insert(i, v) => {
                        let r = l.insert(i, v);
                        if i <= m.len() {
                            r.unwrap();
                            m.insert(i, v);
                        } else {
                            prop_assert!(matches!(r, Err(Error::IndexOutOfBounds { .. })), "out of bounds");
                        }
                    }
                    ListOp::Remove(i) => {
                        let r = l.remove(i);
                        if i < m.len() {
                            prop_assert_eq!(r.unwrap(), m.remove(i));
                        } else {
                            prop_assert!(matches!(r, Err(Error::IndexOutOfBounds { .. })), "out of bounds");
                        }
                    }
                    ListOp::Set(i, v) => {
                        let r = l.set(i, v);
                        if i < m.len() {
                            r.unwrap();
                            m[i] = v;
                        } else {
                            prop_assert!(matches!(r, Err(Error::IndexOutOfBounds { .. })), "out of bounds");
                        }
                    }
                    ListOp::Truncate(n) => {
                        l.truncate(n).unwrap();
                        m.truncate(n);
                    }
                    ListOp::Reverse => {
                        l.reverse().unwrap();
                        m.reverse();
                    }
                    ListOp::Sort => {
                        l.sort().unwrap();
                        m.sort();
                    }
                    ListOp::Get(i) => prop_assert_eq!(l.get(i).unwrap(), m.get(i).copied()),
                    ListOp::IndexOf(v) => {
                        prop_assert_eq!(l.index_of(&v).unwrap(), m.iter().position(|x| *x == v));
                    }
                }
                prop_assert_eq!(l.len().unwrap(), m.len());
            }
            prop_assert_eq!(l.to_vec().unwrap(), m);
        }
        prop_assert_eq!(seg.stats().used, used, "every block freed with the last handle");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// `set`, `replace` and `update_with` against a plain variable.
    #[test]
    fn slot_matches_a_variable(ops in proptest::collection::vec((0u8..3, "[a-z]{0,300}"), 1..100)) {
        let seg = Segment::create(4 << 20).unwrap();
        let used = seg.stats().used;
        {
            let s = Slot::new_in(&seg, String::new()).unwrap();
            let mut m = String::new();
            for (op, v) in ops {
                match op {
                    0 => {
                        s.set(v.clone()).unwrap();
                        m = v;
                    }
                    1 => prop_assert_eq!(s.replace(v.clone()).unwrap(), std::mem::replace(&mut m, v)),
                    _ => {
                        s.update_with(|x| x.push_str(&v)).unwrap();
                        m.push_str(&v);
                    }
                }
                prop_assert_eq!(s.get().unwrap(), m.clone());
            }
        }
        prop_assert_eq!(seg.stats().used, used, "every block freed with the last handle");
    }
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync + Clone + serde::Serialize + serde::de::DeserializeOwned>() {}
    check::<Dict<String, Vec<u8>>>();
    check::<List<(u32, String)>>();
    check::<Slot<Option<String>>>();
}

#[test]
fn slot_gets_sets_and_updates() {
    let s = Slot::new(vec!["a".to_owned()]).unwrap();
    s.update_with(|v| v.push("b".to_owned())).unwrap();
    assert_eq!(s.get().unwrap(), ["a", "b"]);
    assert_eq!(s.replace(vec![]).unwrap(), ["a", "b"]);
    s.set(vec!["c".to_owned(); 1000]).unwrap();
    assert_eq!(s.get().unwrap().len(), 1000);
    let g = s.try_lock().unwrap().unwrap();
    assert!(s.try_lock().unwrap().is_none(), "held by the guard");
    let t = Instant::now();
    let s2 = s.clone();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            assert!(
                s2.lock_timeout(Duration::from_millis(50))
                    .unwrap()
                    .is_none()
            );
        });
    });
    assert!(t.elapsed() >= Duration::from_millis(50));
    drop(g);
}

#[test]
fn handles_attach_only_as_their_kind_and_types() {
    let d = Dict::<String, u32>::new().unwrap();
    d.insert("x".to_owned(), 1).unwrap();
    let bytes = shmproc::codec::to_bytes(&d).unwrap();
    let same: Dict<String, u32> = shmproc::codec::from_bytes(&bytes).unwrap();
    assert!(same.same_as(&d));
    assert_eq!(same.get("x").unwrap(), Some(1));
    assert!(matches!(
        shmproc::codec::from_bytes::<Dict<String, i64>>(&bytes),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        shmproc::codec::from_bytes::<List<u32>>(&bytes),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        shmproc::codec::from_bytes::<Slot<u32>>(&bytes),
        Err(Error::TypeMismatch { .. })
    ));
    let l = List::<u32>::new().unwrap();
    let lb = shmproc::codec::to_bytes(&l).unwrap();
    assert!(matches!(
        shmproc::codec::from_bytes::<List<u64>>(&lb),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        shmproc::codec::from_bytes::<shmproc::Queue<u32>>(&lb),
        Err(Error::TypeMismatch { .. })
    ));
    // A freed container's token is refused (the heap reports a freed block as gone or, when
    // its header was reset, as not a block).
    drop((l, same, d));
    let r = shmproc::codec::from_bytes::<Dict<String, u32>>(&bytes);
    assert!(
        matches!(r, Err(Error::ObjectGone | Error::CorruptObject { .. })),
        "{r:?}"
    );
}

#[test]
fn values_are_copies_and_handles_inside_are_shared() {
    let d = Dict::<String, Vec<u32>>::new().unwrap();
    d.insert("a".to_owned(), vec![1]).unwrap();
    let mut copy = d.get("a").unwrap().unwrap();
    copy.push(2);
    assert_eq!(d.get("a").unwrap(), Some(vec![1]), "a value is a copy");

    let lists = Dict::<u32, List<u32>>::new().unwrap();
    let inner = List::<u32>::new().unwrap();
    lists.insert(7, inner.clone()).unwrap();
    lists.get(&7).unwrap().unwrap().push(42).unwrap();
    assert_eq!(
        inner.to_vec().unwrap(),
        [42],
        "a stored handle names the same list"
    );
}

#[test]
fn dict_grows_and_returns_memory() {
    let seg = Segment::create(64 << 20).unwrap();
    let used = seg.stats().used;
    let d = Dict::<u64, String>::with_capacity_in(&seg, 4).unwrap();
    for i in 0..20_000u64 {
        assert_eq!(d.insert(i, i.to_string()).unwrap(), None);
    }
    assert_eq!(d.len().unwrap(), 20_000);
    for i in (0..20_000u64).step_by(2) {
        assert_eq!(d.remove(&i).unwrap(), Some(i.to_string()));
    }
    for i in 0..20_000u64 {
        assert_eq!(d.get(&i).unwrap().is_some(), i % 2 == 1);
    }
    assert_eq!(
        d.get_or_insert_with(4, || "four".to_owned()).unwrap(),
        "four"
    );
    assert_eq!(d.get_or_insert_with(5, || "x".to_owned()).unwrap(), "5");
    let mut keys = d.keys().unwrap();
    keys.sort_unstable();
    assert_eq!(keys.len(), 10_001);
    assert_eq!(d.values().unwrap().len(), 10_001);
    d.update((0..10).map(|i| (i, "u".to_owned()))).unwrap();
    assert_eq!(d.get(&0).unwrap().as_deref(), Some("u"));
    d.clear().unwrap();
    assert!(d.is_empty().unwrap());
    drop(d);
    assert_eq!(seg.stats().used, used);
}

#[test]
fn list_gives_back_its_table_when_emptied() {
    let seg = Segment::create(64 << 20).unwrap();
    let l = List::<u64>::new_in(&seg).unwrap();
    let empty = seg.stats().used;
    for i in 0..20_000u64 {
        l.push(i).unwrap();
    }
    let full = seg.stats().used;
    l.clear().unwrap();
    assert!(l.is_empty().unwrap());
    assert_eq!(seg.stats().used, empty, "clear gives back the grown table");
    for i in 0..20_000u64 {
        l.push(i).unwrap();
    }
    // Popping, truncating and removing down to a quarter halve the table as they go.
    while l.len().unwrap() > 5_000 {
        l.pop().unwrap();
    }
    l.truncate(100).unwrap();
    while l.len().unwrap() > 1 {
        assert_eq!(l.remove(0).unwrap(), 99 - l.len().unwrap() as u64);
    }
    assert_eq!(l.to_vec().unwrap(), [99]);
    assert!(
        seg.stats().used < full / 100,
        "the table shrank with the list"
    );
    l.insert(0, 7).unwrap();
    assert_eq!(l.to_vec().unwrap(), [7, 99]);
}

/// A heap too full for the smaller table: `pop`, `remove`, `truncate` and `clear` still
/// succeed and keep the larger table; once there is room again the next one shrinks it.
#[test]
fn list_shrink_out_of_memory_keeps_the_large_table() {
    let seg = Segment::create(1 << 20).unwrap();
    let l = List::<u64>::new_in(&seg).unwrap();
    l.extend(0..2000).unwrap();
    // Fill the heap: large blocks first, then every smaller size down to one word.
    let mut filler = Vec::new();
    for words in [4096usize, 512, 64, 8, 1] {
        while let Ok(a) = shmproc::RawArray::<u64>::new_in(&seg, words) {
            filler.push(a);
        }
    }
    assert!(matches!(
        shmproc::RawArray::<u64>::new_in(&seg, 64),
        Err(Error::OutOfMemory { .. })
    ));
    let full = seg.stats().used;
    while l.len().unwrap() > 400 {
        let n = l.len().unwrap() as u64;
        assert_eq!(l.pop().unwrap(), Some(n - 1));
    }
    // Removing the last element cuts; removing another copies the table, which may not fit.
    assert_eq!(l.remove(399).unwrap(), 399);
    match l.remove(0) {
        Ok(v) => assert_eq!(v, 0),
        Err(Error::OutOfMemory { .. }) => {
            assert_eq!(l.to_vec().unwrap(), (0..399).collect::<Vec<_>>());
            l.set(0, 1).unwrap();
            l.truncate(1).unwrap();
            l.extend(2..399).unwrap();
        }
        Err(e) => panic!("remove: {e}"),
    }
    l.truncate(300).unwrap();
    assert_eq!(l.to_vec().unwrap(), (1..301).collect::<Vec<_>>());
    assert!(seg.stats().used < full, "the cut elements were freed");
    drop(filler);
    let before = seg.stats().used;
    l.truncate(100).unwrap();
    assert!(
        seg.stats().used < before,
        "the table shrank once there was room"
    );
    assert_eq!(l.to_vec().unwrap(), (1..101).collect::<Vec<_>>());
    l.clear().unwrap();
    assert!(l.is_empty().unwrap());
    l.extend(0..10).unwrap();
    assert_eq!(l.to_vec().unwrap(), (0..10).collect::<Vec<_>>());
}

/// Two writer processes grow a list past 64 and shrink it to 3 by pops, front removals and
/// halvings, over and over, while two reader processes copy it: every copy is a run of
/// consecutive numbers (what one writer's step leaves), reads never fail, nothing leaks.
#[test]
fn readers_in_other_processes_see_whole_lists_while_it_shrinks() {
    watchdog(LIMIT, "list_shrink_readers", || {
        assert_no_leaks(|| {
            let l = List::<u64>::new().unwrap();
            let done = Slot::new(0u64).unwrap();
            let mut kids: Vec<_> = (0..2u64)
                .map(|p| {
                    let (l, done) = (l.clone(), done.clone());
                    // SAFETY: no other thread of this process holds a lock that the child takes.
                    fork(unsafe { ForkPermit::new() }, move || {
                        for round in 0..30u64 {
                            // One writer's whole cycle under one guard, so the list is always
                            // one writer's run.
                            let g = l.lock().unwrap();
                            while g.len().unwrap() < 65 {
                                let next = g.to_vec().unwrap().last().map_or(0, |x| x + 1);
                                g.push(&next).unwrap();
                            }
                            drop(g);
                            loop {
                                let g = l.lock().unwrap();
                                let len = g.len().unwrap();
                                if len <= 3 {
                                    break;
                                }
                                match (round + p + len as u64) % 3 {
                                    0 => drop(g.pop().unwrap()),
                                    1 => drop(g.remove(0).unwrap()),
                                    _ => g.truncate(len / 2).unwrap(),
                                }
                            }
                        }
                        done.update_with(|v| *v += 1).unwrap();
                        0
                    })
                })
                .collect();
            let mut readers: Vec<_> = (0..2)
                .map(|_| {
                    let (l, done) = (l.clone(), done.clone());
                    // SAFETY: no other thread of this process holds a lock that the child takes.
                    fork(unsafe { ForkPermit::new() }, move || {
                        let mut reads = 0u64;
                        while done.get().unwrap() < 2 || reads == 0 {
                            let v = l.to_vec().unwrap();
                            assert!(v.windows(2).all(|w| w[1] == w[0] + 1), "{v:?}");
                            // Single reads between the writers' steps: in bounds or past the end.
                            let len = l.len().unwrap();
                            assert!(len <= 65, "{len} elements");
                            let _ = l.get(len.saturating_sub(1)).unwrap();
                            reads += 1;
                        }
                        0
                    })
                })
                .collect();
            for k in kids.iter_mut().chain(readers.iter_mut()) {
                assert_eq!(k.wait(), Ok(0));
            }
            assert!(l.len().unwrap() <= 3);
        })
    });
}

/// Four processes mix dictionary counters, list pushes and slot updates; totals are exact.
#[test]
fn stress_four_processes_mixed_operations() {
    watchdog(LIMIT, "stress_containers", || {
        assert_no_leaks(|| {
            const N: u64 = 3000;
            let d = Dict::<u64, u64>::new().unwrap();
            let l = List::<(u64, u64)>::new().unwrap();
            let s = Slot::new(0u64).unwrap();
            let mut kids: Vec<_> = (0..4u64)
                .map(|p| {
                    let (d, l, s) = (d.clone(), l.clone(), s.clone());
                    // SAFETY: no other thread of this process holds a lock that the child takes.
                    fork(unsafe { ForkPermit::new() }, move || {
                        for i in 0..N {
                            d.update_with(&(i % 17), |v| *v.get_or_insert(0) += 1)
                                .unwrap();
                            l.push((p, i)).unwrap();
                            if i % 10 == 0 {
                                s.update_with(|v| *v += 1).unwrap();
                            }
                            if i % 7 == 0 {
                                // A private key inserted and removed: tombstones and rehashes.
                                let k = 1000 + p * N + i;
                                d.insert(k, i).unwrap();
                                assert_eq!(d.get(&k).unwrap(), Some(i));
                                assert_eq!(d.remove(&k).unwrap(), Some(i));
                            }
                            let _ = l.get(i as usize).unwrap();
                        }
                        0
                    })
                })
                .collect();
            for k in &mut kids {
                assert_eq!(k.wait(), Ok(0));
            }
            let total: u64 = d.values().unwrap().iter().sum();
            assert_eq!(total, 4 * N);
            assert_eq!(d.len().unwrap(), 17);
            let mut all = l.to_vec().unwrap();
            assert_eq!(all.len() as u64, 4 * N);
            all.sort_unstable();
            let want: Vec<_> = (0..4).flat_map(|p| (0..N).map(move |i| (p, i))).collect();
            assert_eq!(all, want, "every push exactly once");
            assert_eq!(s.get().unwrap(), 4 * N.div_ceil(10));
        })
    });
}
