//! `#[derive(SharedStruct)]` types in real shared memory: written by a forked child, read by
//! the parent, re-attached from their serialized handle, refused as another type.

// The workspace's loom rule is for the library; these structs need real atomic fields.
#![allow(clippy::disallowed_types)]
// Tests may unwrap (STYLE section 3).
#![allow(clippy::unwrap_used)]

use shmproc::testing::{ForkPermit, assert_no_leaks, fork, watchdog};
use shmproc::{Error, RawValue, Shareable, SharedStruct, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

#[derive(SharedStruct, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Point {
    x: f64,
    y: i32,
}

#[derive(SharedStruct, Debug)]
#[repr(C)]
struct Particle {
    id: u64,
    pos: Point,
    history: [i16; 5],
    hits: AtomicU32,
}

/// Same fields, same layout as `Particle`, another name.
#[derive(SharedStruct, Debug)]
#[repr(C)]
struct Twin {
    id: u64,
    pos: Point,
    history: [i16; 5],
    hits: AtomicU32,
}

mod other {
    /// Same name and layout as `super::Particle`, one field named differently.
    #[derive(shmproc::SharedStruct, Debug)]
    #[repr(C)]
    pub(crate) struct Particle {
        pub(crate) id: u64,
        pub(crate) position: super::Point,
        pub(crate) history: [i16; 5],
        pub(crate) hits: super::AtomicU32,
    }
}

/// Eight bytes, no padding: fits one atomic load and store.
#[derive(SharedStruct, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Pair(u32, i32);

fn particle() -> Particle {
    Particle {
        id: 7,
        pos: Point { x: 1.5, y: -2 },
        history: [1, 2, 3, 4, 5],
        hits: AtomicU32::new(0),
    }
}

#[test]
fn derived_struct_written_in_child_is_seen_by_parent() {
    watchdog(LIMIT, "derived_struct_fork", || {
        assert_no_leaks(|| {
            let value = Value::new(particle()).unwrap();
            let bytes = shmproc::codec::to_bytes(&value).unwrap();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                // The child re-attaches through the serialized handle, as a spawned child would.
                let v: Value<Particle> = match shmproc::codec::from_bytes(&bytes) {
                    Ok(v) => v,
                    Err(_) => return 2,
                };
                let Ok(mut g) = v.lock() else { return 3 };
                if g.id != 7 || g.pos != (Point { x: 1.5, y: -2 }) || g.history != [1, 2, 3, 4, 5] {
                    return 4;
                }
                g.id = 8;
                g.pos.y = 40;
                g.history.reverse();
                g.hits.fetch_add(3, Ordering::Relaxed);
                0
            });
            assert_eq!(child.wait(), Ok(0));
            let g = value.lock().unwrap();
            assert_eq!(g.id, 8);
            assert_eq!(g.pos, Point { x: 1.5, y: 40 });
            assert_eq!(g.history, [5, 4, 3, 2, 1]);
            assert_eq!(g.hits.load(Ordering::Relaxed), 3);
        })
    });
}

#[test]
fn derived_struct_handle_round_trips_through_codec() {
    assert_no_leaks(|| {
        let value = Value::new(particle()).unwrap();
        let bytes = shmproc::codec::to_bytes(&value).unwrap();
        let again: Value<Particle> = shmproc::codec::from_bytes(&bytes).unwrap();
        again.lock().unwrap().pos.x = 9.25;
        again.lock().unwrap().hits.store(11, Ordering::Relaxed);
        let g = value.lock().unwrap();
        assert_eq!(g.pos.x, 9.25);
        assert_eq!(g.hits.load(Ordering::Relaxed), 11);
        let moved = Value::new(Point { x: -1.0, y: 3 }).unwrap();
        let back: Value<Point> =
            shmproc::codec::from_bytes(&shmproc::codec::to_bytes(&moved).unwrap()).unwrap();
        assert_eq!(back.get().unwrap(), Point { x: -1.0, y: 3 });
    })
}

#[test]
fn attach_as_struct_with_same_layout_reports_type_mismatch() {
    assert_no_leaks(|| {
        let value = Value::new(particle()).unwrap();
        let bytes = shmproc::codec::to_bytes(&value).unwrap();
        match shmproc::codec::from_bytes::<Value<Twin>>(&bytes) {
            Err(Error::TypeMismatch { expected, found }) => {
                assert_eq!(expected, "Twin");
                assert_eq!(found, <Particle as Shareable>::FINGERPRINT);
            }
            other => panic!("expected TypeMismatch, got {other:?}"),
        }
        // Same name and layout, one field renamed: still another type.
        assert!(matches!(
            shmproc::codec::from_bytes::<Value<other::Particle>>(&bytes),
            Err(Error::TypeMismatch { .. })
        ));
        let (obj, lock) = value.token();
        assert!(matches!(
            Value::<Twin>::from_token(&obj, &lock),
            Err(Error::TypeMismatch { .. })
        ));
        // The right type still attaches.
        assert!(shmproc::codec::from_bytes::<Value<Particle>>(&bytes).is_ok());
    })
}

#[test]
fn padding_free_derived_struct_works_in_raw_value_across_fork() {
    const { assert!(<Pair as Shareable>::PADDING_FREE) };
    const { assert!(!<Point as Shareable>::PADDING_FREE) };
    const { assert!(!<Particle as Shareable>::PADDING_FREE) };
    watchdog(LIMIT, "derived_raw_value", || {
        assert_no_leaks(|| {
            let raw = RawValue::new(Pair(1, -1)).unwrap();
            assert_eq!(raw.get(), Pair(1, -1));
            let bytes = shmproc::codec::to_bytes(&raw).unwrap();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                let Ok(r) = shmproc::codec::from_bytes::<RawValue<Pair>>(&bytes) else {
                    return 2;
                };
                if r.get() != Pair(1, -1) {
                    return 3;
                }
                r.set(Pair(u32::MAX, i32::MIN));
                0
            });
            assert_eq!(child.wait(), Ok(0));
            assert_eq!(raw.get(), Pair(u32::MAX, i32::MIN));
        })
    });
}

#[test]
fn fingerprint_depends_on_name_fields_and_layout() {
    assert_ne!(
        <Particle as Shareable>::FINGERPRINT,
        <Twin as Shareable>::FINGERPRINT
    );
    assert_ne!(
        <Particle as Shareable>::FINGERPRINT,
        <other::Particle as Shareable>::FINGERPRINT
    );
    assert_eq!(<Particle as Shareable>::TYPE_NAME, "Particle");
    assert_eq!(<Pair as Shareable>::TYPE_NAME, "Pair");
}
