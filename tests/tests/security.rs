//! Security checks: named segments are exclusive and private; opening a damaged, resized,
//! foreign or missing segment is each its own error; oversized length prefixes are refused
//! without allocating.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests: a failed unwrap is the assertion

use shmproc::testing::assert_no_leaks;
use shmproc::{Array, Error, ObjectToken, RawValue, Segment, Value, codec};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU32, Ordering};

/// A name unique to this process, test and call. It does not start with `shmproc`, so the
/// leak accounting of tests running in parallel processes does not count it.
fn unique(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "sec-shmproc-{}-{test}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes a file in `/dev/shm` when dropped.
struct ShmFile(String);

impl Drop for ShmFile {
    fn drop(&mut self) {
        let path = format!("/dev/shm/{}", self.0);
        let _ = std::fs::remove_file(&path);
        assert!(std::fs::metadata(&path).is_err(), "{path} left behind");
    }
}

/// Writes `bytes` to a new `/dev/shm/<name>`, mode 0600, and returns its guard.
fn write_shm(name: &str, bytes: &[u8]) -> ShmFile {
    let path = format!("/dev/shm/{name}");
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    ShmFile(name.to_owned())
}

/// Returns the bytes of a valid named segment of `len` bytes (header and heap state).
fn valid_segment_bytes(len: u64) -> Vec<u8> {
    let name = unique("template");
    let seg = Segment::create_named(&name, len).unwrap();
    std::fs::read(format!("/dev/shm/{name}")).unwrap_or_else(|_| {
        drop(seg);
        panic!("cannot read the template segment")
    })
}

#[test]
fn named_segment_is_created_exclusively_with_mode_0600() {
    assert_no_leaks(|| {
        let name = unique("exclusive");
        let seg = Segment::create_named(&name, 1 << 16).unwrap();
        let meta = std::fs::metadata(format!("/dev/shm/{name}")).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "segment readable by others"
        );
        match Segment::create_named(&name, 1 << 16) {
            Err(Error::AlreadyExists { name: n }) => assert!(n.ends_with(&name)),
            other => panic!("second create: {other:?}"),
        }
        // A file someone else put there first is not taken over either.
        let squat = unique("squat");
        let _f = write_shm(&squat, b"not yours");
        assert!(matches!(
            Segment::create_named(&squat, 1 << 16),
            Err(Error::AlreadyExists { .. })
        ));
        assert_eq!(
            std::fs::read(format!("/dev/shm/{squat}")).unwrap(),
            b"not yours"
        );
        drop(seg);
        assert!(
            std::fs::metadata(format!("/dev/shm/{name}")).is_err(),
            "name not unlinked"
        );
    });
}

#[test]
fn open_of_missing_name_is_not_found() {
    let name = unique("missing");
    assert!(matches!(Segment::open(&name), Err(Error::NotFound { .. })));
}

#[test]
fn open_of_corrupted_header_is_corrupt_header() {
    assert_no_leaks(|| {
        let good = valid_segment_bytes(1 << 16);
        for (field, at) in [
            ("magic", 0),
            ("version", 8),
            ("size", 16),
            ("id", 32),
            ("checksum", 48),
        ] {
            let mut bad = good.clone();
            bad[at] ^= 0x5a;
            let name = unique("corrupt");
            let _f = write_shm(&name, &bad);
            match Segment::open(&name) {
                Err(Error::CorruptHeader { .. }) => {}
                other => panic!("corrupted {field}: {other:?}"),
            }
        }
        // A corrupted heap state behind a valid header is caught too.
        let mut bad = good.clone();
        bad[64..72].copy_from_slice(&u64::MAX.to_ne_bytes());
        let name = unique("corrupt-top");
        let _f = write_shm(&name, &bad);
        assert!(matches!(
            Segment::open(&name),
            Err(Error::CorruptHeader { .. })
        ));
    });
}

#[test]
fn open_of_wrong_size_is_size_mismatch() {
    assert_no_leaks(|| {
        let mut bytes = valid_segment_bytes(1 << 16);
        bytes.resize(1 << 17, 0);
        let name = unique("resized");
        let _f = write_shm(&name, &bytes);
        match Segment::open(&name) {
            Err(Error::SizeMismatch { expected, actual }) => {
                assert_eq!((expected, actual), (1 << 16, 1 << 17));
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn open_of_a_foreign_file_is_corrupt_header() {
    assert_no_leaks(|| {
        for (what, bytes) in [
            ("zeros", vec![0u8; 1 << 16]),
            (
                "text",
                b"hello, I am somebody else's shared memory\n".repeat(2000),
            ),
            ("tiny", b"x".to_vec()),
            ("empty", Vec::new()),
        ] {
            let name = unique("foreign");
            let _f = write_shm(&name, &bytes);
            match Segment::open(&name) {
                Err(Error::CorruptHeader { .. }) => {}
                other => panic!("{what}: {other:?}"),
            }
        }
    });
}

#[test]
fn open_errors_are_distinct() {
    let kinds = [
        std::mem::discriminant(&Error::NotFound {
            name: String::new(),
        }),
        std::mem::discriminant(&Error::CorruptHeader { reason: "" }),
        std::mem::discriminant(&Error::SizeMismatch {
            expected: 0,
            actual: 0,
        }),
        std::mem::discriminant(&Error::TypeMismatch {
            expected: "",
            found: 0,
        }),
    ];
    for (i, a) in kinds.iter().enumerate() {
        for b in &kinds[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A `Vec<u8>` length prefix of 2^40 in a few bytes is an error, and nothing near that size is
/// allocated.
#[test]
fn codec_rejects_oversized_length_prefixes_without_allocating() {
    // Make the peak meaningful: touch the allocator once first.
    drop(codec::from_bytes::<Vec<u8>>(&[3, 1, 2, 3]).unwrap());
    let before = peak_rss_kib();
    // LEB128 varint of 2^40: 0x80 x5, 0x20.
    let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0, 0, 0, 0];
    assert!(codec::from_bytes::<Vec<u8>>(&huge).is_err());
    assert!(codec::from_bytes::<Vec<u64>>(&huge).is_err());
    assert!(codec::from_bytes::<String>(&huge).is_err());
    assert!(codec::from_bytes::<Vec<Vec<u8>>>(&huge).is_err());
    assert!(codec::from_bytes::<std::collections::BTreeMap<u64, u64>>(&huge).is_err());
    // usize::MAX as a 10-byte varint.
    let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    assert!(codec::from_bytes::<Vec<u8>>(&max).is_err());
    assert!(codec::from_bytes::<Vec<u32>>(&max).is_err());
    let after = peak_rss_kib();
    assert!(
        after < before + 64 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
}

/// Regression: a block header and link record copied into a payload (bytes any
/// handle's owner may write) never make a forged token attach: only blocks the heap carved
/// are blocks, so no handle can alias another object's bytes.
#[test]
fn a_header_forged_inside_a_payload_never_attaches() {
    let seg = Segment::create(1 << 20).unwrap();
    let heap = shmproc::heap_testing::TestHeap::on(&seg);
    let victim = Value::new_in(&seg, 5u64).unwrap();
    let (vt, vl) = victim.token();
    let vblock = heap.block_of(vt.offset).unwrap();
    assert_eq!(vt.offset - vblock, 32);
    // The victim's genuine block header and link record, byte for byte.
    let genuine: Vec<u8> = (vblock..vblock + 64)
        .map(|o| heap.peek_u8(o).unwrap())
        .collect();
    let carrier = Array::<u8>::new_in(&seg, 512).unwrap();
    // An array's elements start 64 bytes into its (64-aligned) payload.
    let data = carrier.token().0.offset + 64;
    carrier.lock().unwrap()[32..96].copy_from_slice(&genuine);
    let forged = ObjectToken {
        offset: data + 64,
        ..vt.clone()
    };
    assert!(Value::<u64>::from_token(&forged, &vl).is_err());
    assert!(RawValue::<u64>::from_token(&forged).is_err());
    // The attempt wrote nothing into the carrier (no count was taken in its bytes).
    assert_eq!(&carrier.lock().unwrap()[32..96], &genuine[..]);
    // The genuine token still attaches.
    assert_eq!(
        Value::<u64>::from_token(&vt, &vl).unwrap().get().unwrap(),
        5
    );
}
