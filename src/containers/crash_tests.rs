//! Every mutation, interrupted at every crash point of the update protocol: the next user finds
//! the state before or after the mutation, and once the container is dropped the heap is back
//! to where it started (nothing the intent record names is lost or freed twice).

use super::protocol::CRASH_AFTER;
use super::{Dict, List, Slot};
use crate::segment::Segment;
use std::fmt::Debug;
use std::panic::{AssertUnwindSafe, catch_unwind};

fn crash_at_every_point<C, S: PartialEq + Debug>(
    name: &str,
    setup: impl Fn(&Segment) -> C,
    op: impl Fn(&C),
    observe: impl Fn(&C) -> S,
) {
    let mut k = 1;
    loop {
        let seg = Segment::create(8 << 20).expect("segment");
        let used = seg.stats().used;
        let completed = {
            let c = setup(&seg);
            let before = observe(&c);
            CRASH_AFTER.with(|n| n.set(k));
            let r = catch_unwind(AssertUnwindSafe(|| op(&c)));
            CRASH_AFTER.with(|n| n.set(0));
            let got = observe(&c);
            let reference = setup(&seg);
            op(&reference);
            let after = observe(&reference);
            assert!(
                got == before || got == after,
                "{name}, crash point {k}: {got:?} is neither {before:?} nor {after:?}"
            );
            if r.is_ok() {
                assert_eq!(got, after, "{name}: completed");
            }
            assert_eq!(
                observe(&c),
                got,
                "{name}, crash point {k}: changed on a second look"
            );
            r.is_ok()
        };
        assert_eq!(
            seg.stats().used,
            used,
            "{name}, crash point {k}: blocks lost or kept"
        );
        if completed {
            return;
        }
        k += 1;
        assert!(k < 200, "{name}: too many crash points");
    }
}

fn dict(seg: &Segment, n: u32) -> Dict<u32, String> {
    let d = Dict::new_in(seg).expect("dict");
    for i in 0..n {
        d.insert(i, format!("v{i}")).expect("insert");
    }
    d
}

fn items(d: &Dict<u32, String>) -> (usize, Vec<(u32, String)>) {
    let mut v = d.items().expect("items");
    v.sort();
    (d.len().expect("len"), v)
}

fn list(seg: &Segment, n: u32) -> List<u32> {
    let l = List::new_in(seg).expect("list");
    l.extend(0..n).expect("extend");
    l
}

fn elems(l: &List<u32>) -> Vec<u32> {
    l.to_vec().expect("to_vec")
}

#[test]
fn dict_mutations_survive_a_death_at_every_step() {
    let ins = |d: &Dict<u32, String>| drop(d.insert(10, "new".into()));
    crash_at_every_point("dict insert", |s| dict(s, 5), ins, items);
    let grow = |d: &Dict<u32, String>| drop(d.insert(6, "new".into()));
    crash_at_every_point("dict insert + grow", |s| dict(s, 6), grow, items);
    let rep = |d: &Dict<u32, String>| drop(d.insert(2, "new".into()));
    crash_at_every_point("dict replace", |s| dict(s, 5), rep, items);
    let rem = |d: &Dict<u32, String>| drop(d.remove(&3));
    crash_at_every_point("dict remove", |s| dict(s, 5), rem, items);
    let upd = |d: &Dict<u32, String>| drop(d.update_with(&1, |v| *v = None));
    crash_at_every_point("dict update_with", |s| dict(s, 5), upd, items);
    let clr = |d: &Dict<u32, String>| drop(d.clear());
    crash_at_every_point("dict clear", |s| dict(s, 5), clr, items);
}

#[test]
fn list_mutations_survive_a_death_at_every_step() {
    type Case = (&'static str, u32, fn(&List<u32>));
    let setups: [Case; 9] = [
        ("list push", 5, |l| drop(l.push(99))),
        ("list push + grow", 8, |l| drop(l.push(99))),
        ("list pop", 5, |l| drop(l.pop())),
        ("list insert", 5, |l| drop(l.insert(1, 99))),
        ("list remove", 5, |l| drop(l.remove(2))),
        ("list set", 5, |l| drop(l.set(0, 99))),
        ("list reverse", 5, |l| drop(l.reverse())),
        ("list truncate", 5, |l| drop(l.truncate(2))),
        ("list clear", 5, |l| drop(l.clear())),
    ];
    for (name, n, op) in setups {
        crash_at_every_point(name, |s| list(s, n), op, elems);
    }
    let reversed = |s: &Segment| {
        let l = list(s, 5);
        l.reverse().expect("reverse");
        l
    };
    crash_at_every_point("list sort", reversed, |l| drop(l.sort()), elems);
}

/// The length of `l`'s table (its capacity).
fn cap(l: &List<u32>) -> usize {
    l.lock().expect("lock").capacity().expect("capacity")
}

#[test]
fn list_shrinks_survive_a_death_at_every_step() {
    // 17 elements in a table of 64 (grown for 33): one element fewer is a quarter, and the
    // mutation both cuts and gives back half the table.
    let at_threshold = |s: &Segment| {
        let l = list(s, 33);
        l.truncate(17).expect("truncate");
        assert_eq!(cap(&l), 64, "no shrink above a quarter");
        l
    };
    type Case = (&'static str, fn(&List<u32>));
    let cases: [Case; 5] = [
        ("list pop + shrink", |l| drop(l.pop())),
        ("list remove last + shrink", |l| drop(l.remove(16))),
        ("list remove + shrink", |l| drop(l.remove(3))),
        ("list truncate + shrink", |l| drop(l.truncate(5))),
        ("list clear + shrink", |l| drop(l.clear())),
    ];
    for (name, op) in cases {
        crash_at_every_point(name, at_threshold, op, elems);
        let seg = Segment::create(8 << 20).expect("segment");
        let l = at_threshold(&seg);
        op(&l);
        assert!(cap(&l) < 64, "{name}: the table was not shrunk");
    }
}

#[test]
fn slot_set_survives_a_death_at_every_step() {
    crash_at_every_point(
        "slot set",
        |s| Slot::new_in(s, "old".to_owned()).expect("slot"),
        |s| drop(s.set("new".repeat(50))),
        |s| s.get().expect("get"),
    );
}

/// Every mutation interrupted at every crash point, and then the next user's repair of it
/// interrupted at every crash point too (the `FRESH` block freed or not, the intent resolved
/// partly): the user after that finds the state before or after the mutation, and once the
/// container is dropped the heap is back to where it started (nothing freed twice or lost).
fn crash_twice<C, S: PartialEq + Debug>(
    name: &str,
    setup: impl Fn(&Segment) -> C,
    op: impl Fn(&C),
    observe: impl Fn(&C) -> S,
) {
    let mut k = 1;
    loop {
        let mut j = 1;
        let completed = loop {
            let seg = Segment::create(8 << 20).expect("segment");
            let used = seg.stats().used;
            let (completed, repaired) = {
                let c = setup(&seg);
                let before = observe(&c);
                CRASH_AFTER.with(|n| n.set(k));
                let r = catch_unwind(AssertUnwindSafe(|| op(&c)));
                CRASH_AFTER.with(|n| n.set(j));
                // The next user repairs (inside `observe`) and dies at its `j`th point.
                let repair = catch_unwind(AssertUnwindSafe(|| observe(&c)));
                CRASH_AFTER.with(|n| n.set(0));
                let got = observe(&c);
                let reference = setup(&seg);
                op(&reference);
                let after = observe(&reference);
                assert!(
                    got == before || got == after,
                    "{name}, crash points {k} then {j}: {got:?} is neither {before:?} nor \
                     {after:?}"
                );
                (r.is_ok(), repair.is_ok())
            };
            assert_eq!(
                seg.stats().used,
                used,
                "{name}, crash points {k} then {j}: blocks lost or kept"
            );
            if repaired {
                break completed;
            }
            j += 1;
            assert!(j < 200, "{name}: too many crash points in the repair");
        };
        if completed {
            return;
        }
        k += 1;
        assert!(k < 200, "{name}: too many crash points");
    }
}

#[test]
fn repairs_survive_a_second_death_at_every_step() {
    let grow = |d: &Dict<u32, String>| drop(d.insert(6, "new".into()));
    crash_twice("dict insert + grow", |s| dict(s, 6), grow, items);
    let rep = |d: &Dict<u32, String>| drop(d.insert(2, "new".into()));
    crash_twice("dict replace", |s| dict(s, 5), rep, items);
    let upd = |d: &Dict<u32, String>| drop(d.update_with(&1, |v| *v = None));
    crash_twice("dict update_with", |s| dict(s, 5), upd, items);
    let clr = |d: &Dict<u32, String>| drop(d.clear());
    crash_twice("dict clear", |s| dict(s, 5), clr, items);
    crash_twice(
        "list push + grow",
        |s| list(s, 8),
        |l| drop(l.push(99)),
        elems,
    );
    crash_twice(
        "list insert",
        |s| list(s, 5),
        |l| drop(l.insert(1, 99)),
        elems,
    );
    crash_twice("list remove", |s| list(s, 5), |l| drop(l.remove(2)), elems);
    crash_twice(
        "slot set",
        |s| Slot::new_in(s, "old".to_owned()).expect("slot"),
        |s| drop(s.set("new".repeat(50))),
        |s| s.get().expect("get"),
    );
}
