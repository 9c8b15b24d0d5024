//! Segments: anonymous and named, header checks, publishing a root for unrelated processes,
//! and one conformance body run on every backing (memfd, named, process-local).

use shmproc::testing::{assert_no_leaks, watchdog};
use shmproc::{Array, Error, Segment, Value};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn unique(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("shmproc-test-{}-{tag}-{n}", std::process::id())
}

fn peer(name: &str, action: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_peer"))
        .args([name, action])
        .output()
        .expect("run peer");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Makes a fresh segment of the given length.
type Make = Box<dyn Fn(u64) -> shmproc::Result<Segment>>;

/// Every backing, by name.
fn backings() -> Vec<(&'static str, Make)> {
    vec![
        ("memfd", Box::new(Segment::create)),
        (
            "named",
            Box::new(|len| Segment::create_named(&unique("conformance"), len)),
        ),
        ("process-local", Box::new(Segment::process_local)),
    ]
}

/// The same body on every backing: objects in the segment, a round trip of their tokens, the
/// root object, accounting back to zero, and the segment gone with its last handle.
#[test]
fn every_backing_behaves_alike() {
    watchdog(LIMIT, "conformance", || {
        assert_no_leaks(|| {
            for (backing, make) in backings() {
                let seg = make(1 << 20).unwrap_or_else(|e| panic!("{backing}: {e}"));
                assert_eq!(seg.len(), 1 << 20, "{backing}");
                assert!(!seg.is_empty() && seg.id() != 0, "{backing}");
                assert_eq!(seg.name().is_some(), backing == "named", "{backing}");
                assert_eq!(seg.resident_bytes().is_ok(), backing != "process-local");
                assert_eq!(seg.stats().used, 0, "{backing}: a new heap is empty");

                let v = Value::new_in(&seg, 1.5f64).unwrap();
                let a = Array::from_slice_in(&seg, &[1i32, 2, 3]).unwrap();
                *v.lock().unwrap() += 1.0;
                a.set(0, 10).unwrap();
                // Tokens re-attach in this process through the segment registry.
                let bytes = shmproc::codec::to_bytes(&(&v, &a)).unwrap();
                let (v2, a2): (Value<f64>, Array<i32>) =
                    shmproc::codec::from_bytes(&bytes).unwrap();
                assert_eq!(v2.get().unwrap(), 2.5, "{backing}");
                assert_eq!(a2.to_vec().unwrap(), [10, 2, 3], "{backing}");

                seg.publish(&(&v, &a)).unwrap();
                let (v3, a3): (Value<f64>, Array<i32>) = seg.lookup().unwrap();
                v3.set(-1.0).unwrap();
                assert_eq!(
                    v.get().unwrap(),
                    -1.0,
                    "{backing}: lookup shares the object"
                );
                assert_eq!(a3.len(), 3, "{backing}");
                assert!(matches!(
                    seg.lookup::<Value<u8>>(),
                    Err(Error::TypeMismatch { .. })
                ));

                // Replacing the root frees the old blob; dropping every handle frees the rest.
                seg.publish(&()).unwrap();
                drop((v, a, v2, a2, v3, a3));
                let blob = seg.stats().used;
                assert!(blob > 0, "{backing}: only the root blob is left");
                seg.publish(&()).unwrap();
                assert_eq!(seg.stats().used, blob, "{backing}: replaced, not leaked");

                // With its last handle the segment is gone: a token for it names no segment.
                let w = Value::new_in(&seg, 0u8).unwrap();
                let tok = shmproc::codec::to_bytes(&w).unwrap();
                drop((w, seg));
                assert!(
                    matches!(
                        shmproc::codec::from_bytes::<Value<u8>>(&tok),
                        Err(Error::UnknownSegment { .. } | Error::NotFound { .. })
                    ),
                    "{backing}: the segment went with its last handle"
                );
            }
        })
    });
}

#[test]
fn unrelated_process_sees_published_value_and_array() {
    watchdog(LIMIT, "published_root", || {
        assert_no_leaks(|| {
            let name = unique("root");
            let seg = Segment::create_named(&name, 1 << 20).unwrap();
            let v = Value::new_in(&seg, 0.0f64).unwrap();
            let a = Array::from_slice_in(&seg, &[1, 2, 3]).unwrap();
            seg.publish(&(&v, &a)).unwrap();
            assert_eq!(peer(&name, "negate"), "done");
            assert_eq!(v.get().unwrap(), 2.5);
            assert_eq!(a.to_vec().unwrap(), [-1, -2, -3]);
            // Attaching the root with the wrong element type is a type mismatch.
            assert!(peer(&name, "wrong-type").starts_with("TypeMismatch"));
            drop((v, a, seg));
            // The owner removed the name when its last handle went.
            assert!(peer(&name, "open").starts_with("NotFound"));
        })
    });
}

#[test]
fn lookup_without_publish_is_not_found_and_replacement_frees_old_root() {
    let seg = Segment::create(1 << 20).unwrap();
    assert!(matches!(
        seg.lookup::<Value<u8>>(),
        Err(Error::NotFound { .. })
    ));
    let a = Value::new_in(&seg, 1u8).unwrap();
    let b = Value::new_in(&seg, 2u8).unwrap();
    seg.publish(&a).unwrap();
    let used = seg.stats().used;
    seg.publish(&b).unwrap();
    assert_eq!(seg.stats().used, used, "old root blob freed when replaced");
    assert_eq!(seg.lookup::<Value<u8>>().unwrap().get().unwrap(), 2);
}

#[test]
fn named_segment_errors_are_distinct() {
    watchdog(LIMIT, "named_errors", || {
        let name = unique("errs");
        assert!(matches!(Segment::open(&name), Err(Error::NotFound { .. })));
        let seg = Segment::create_named(&name, 1 << 16).unwrap();
        assert!(matches!(
            Segment::create_named(&name, 1 << 16),
            Err(Error::AlreadyExists { .. })
        ));
        assert!(matches!(
            Segment::create_named("a/b", 1 << 16),
            Err(Error::InvalidName { .. })
        ));
        // Issue 18: a segment smaller than the minimum is rounded up, named or not.
        assert_eq!(Segment::create(10).unwrap().len(), Segment::MIN_LEN);
        let small = Segment::create_named(&unique("small"), 100).unwrap();
        assert_eq!(small.len(), Segment::MIN_LEN);
        assert_eq!(
            Segment::open(small.name().unwrap()).unwrap().len(),
            Segment::MIN_LEN
        );
        shmproc::Value::new_in(&small, 7u64).unwrap();
        drop(small);
        assert!(matches!(
            Segment::create(1 << 40),
            Err(Error::InvalidSize { .. })
        ));
        let mode = std::fs::metadata(format!("/dev/shm/{name}"))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .unwrap();
        assert_eq!(mode, 0o600);
        drop(seg);
        assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists());
    });
}

#[test]
fn value_token_attaches_only_as_its_own_type() {
    let v = Value::new(1.0f64).unwrap();
    let bytes = shmproc::codec::to_bytes(&v).unwrap();
    let back: Value<f64> = shmproc::codec::from_bytes(&bytes).unwrap();
    assert_eq!(back.get().unwrap(), 1.0);
    assert!(matches!(
        shmproc::codec::from_bytes::<Value<i64>>(&bytes),
        Err(Error::TypeMismatch { .. })
    ));
    // A token for a freed object is `ObjectGone`, never an alias of whatever reuses it.
    drop((v, back));
    let _reuse = Value::new(2.0f64).unwrap();
    assert!(matches!(
        shmproc::codec::from_bytes::<Value<f64>>(&bytes),
        Err(Error::ObjectGone)
    ));
}

#[test]
fn kill_owner_of_named_segment_leaves_no_dev_shm_entry() {
    watchdog(LIMIT, "reaper", || {
        use std::io::{BufRead, BufReader};
        let name = unique("reaped");
        let mut child = Command::new(env!("CARGO_BIN_EXE_peer"))
            .args([&name, "create-and-hang"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn peer");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        assert_eq!(line.trim(), "created");
        let path = format!("/dev/shm/{name}");
        assert!(std::path::Path::new(&path).exists());
        child.kill().expect("kill");
        child.wait().expect("wait");
        let start = std::time::Instant::now();
        while std::path::Path::new(&path).exists() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{path} outlived its owner"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    });
}

/// A named object planted or opened up by someone else is refused by `open` (another process
/// here), unless sharing between users is asked for; a file shorter than its header says is a
/// clean error at attach, never `SIGBUS`.
#[test]
fn open_refuses_objects_of_other_users_or_open_to_others() {
    use std::os::unix::fs::PermissionsExt;
    watchdog(LIMIT, "untrusted_open", || {
        let name = unique("squat");
        let seg = Segment::create_named(&name, 1 << 20).unwrap();
        let path = std::path::Path::new("/dev/shm").join(&name);
        let me = std::fs::metadata(&path).unwrap();
        assert_eq!(peer(&name, "open"), "ok");
        // A second uid: the object now belongs to `nobody` (needs root, as the tests run).
        if std::os::unix::fs::chown(&path, Some(65534), None).is_ok() {
            let out = peer(&name, "open");
            assert!(
                out.starts_with("UntrustedSegment") && out.contains("another user"),
                "{out}"
            );
            assert!(Segment::open_shared_between_users(&name).is_ok());
            std::os::unix::fs::chown(&path, Some(std::os::unix::fs::MetadataExt::uid(&me)), None)
                .unwrap();
        } else {
            eprintln!("not root: the second-uid case is skipped");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).unwrap();
        let out = peer(&name, "open");
        assert!(
            out.starts_with("UntrustedSegment") && out.contains("group or others"),
            "{out}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(peer(&name, "open"), "ok");
        // Shorter than recorded: found by the size check at attach.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(1 << 16)
            .unwrap();
        let out = peer(&name, "open");
        assert!(out.starts_with("SizeMismatch"), "{out}");
        drop(seg);
    });
}

/// `SIGKILL` to the creator's whole process group: the reaper lives in a group of its own, so
/// it still removes the creator's names.
#[test]
fn group_kill_of_the_creator_leaves_no_names() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    watchdog(LIMIT, "group_kill", || {
        let name = unique("group");
        let mut child = Command::new(env!("CARGO_BIN_EXE_peer"))
            .args([name.as_str(), "create-and-hang"])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "created");
        let path = std::path::Path::new("/dev/shm").join(&name);
        assert!(path.exists());
        let pgid = i32::try_from(child.id()).unwrap();
        // SAFETY: sends a signal to the process group led by the child we spawned.
        assert_eq!(unsafe { libc::kill(-pgid, libc::SIGKILL) }, 0);
        child.wait().unwrap();
        let t0 = std::time::Instant::now();
        while path.exists() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = path.exists();
        let _ = std::fs::remove_file(&path);
        assert!(!left, "the name outlived a SIGKILL to its creator's group");
    });
}
