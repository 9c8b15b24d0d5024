//! Processes: every start method, exit codes, `spawn` results, shared arguments, refusals, and
//! no zombie, orphan or descriptor left behind.
//!
//! `Fork` needs a single-threaded caller, and a test process is not one (the watchdog is a
//! thread, and so may be the harness's runner). Fork scenarios therefore run inside a `Spawn`
//! child, which is single-threaded: that is the documented way to use `Fork` from a program
//! with threads, and it exercises both methods.

use shmproc::testing::{assert_no_leaks, init_ran, resources, watchdog};
use shmproc::{Array, Error, Lock, Process, RawValue, StartMethod, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(90);
const METHODS: [StartMethod; 3] = [
    StartMethod::Spawn,
    StartMethod::Fork,
    StartMethod::ForkServer,
];

/// The scenarios, by name, so a child can be told which one to run.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
enum Scenario {
    MutateValue,
    ExitCodes,
    SpawnResults,
    SharedArguments,
    Joins,
}

impl Scenario {
    fn run(self, m: StartMethod) {
        match self {
            Scenario::MutateValue => mutate_value(m),
            Scenario::ExitCodes => exit_codes(m),
            Scenario::SpawnResults => spawn_results(m),
            Scenario::SharedArguments => shared_arguments(m),
            Scenario::Joins => joins_and_children(m),
        }
    }
}

/// Runs `scenario` under every start method with leak accounting: directly, or for `Fork`
/// inside a single-threaded `Spawn` child (leak-checked there too).
fn each_method(scenario: Scenario) {
    for m in METHODS {
        watchdog(LIMIT, &format!("{scenario:?}/{m:?}"), || {
            if m == StartMethod::ForkServer {
                shmproc::ensure_forkserver().unwrap();
            }
            assert_no_leaks(|| {
                if m == StartMethod::Fork {
                    let h = shmproc::spawn(
                        |s: Scenario| {
                            assert_no_leaks(|| s.run(StartMethod::Fork));
                        },
                        scenario,
                    )
                    .unwrap();
                    h.join().unwrap();
                } else {
                    scenario.run(m);
                }
            })
        });
    }
}

// ---- targets ----

fn set_to_42(v: Value<i64>) {
    v.set(42).unwrap();
}

fn do_nothing(_: ()) {}

fn panic_now(_: ()) {
    panic!("target panicked on purpose");
}

fn return_err(_: ()) -> Result<(), String> {
    Err("returned an error on purpose".to_owned())
}

fn exit_3(_: ()) {
    std::process::exit(3);
}

fn sleep_until_killed(ready: RawValue<u32>) {
    ready.set(1);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn negate_under_lock((n, a, l): (Value<f64>, Array<i32>, Lock)) -> usize {
    let _g = l.lock().unwrap();
    n.set(3.1415927).unwrap();
    let mut g = a.lock().unwrap();
    for x in g.iter_mut() {
        *x = -*x;
    }
    g.len()
}

fn start(m: StartMethod, f: fn(RawValue<u32>), ready: &RawValue<u32>) -> Process {
    let p = Process::new(f, ready.clone())
        .start_method(m)
        .start()
        .unwrap();
    let t = Instant::now();
    while ready.get() == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "child never got ready"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    p
}

// ---- scenarios ----

fn mutate_value(m: StartMethod) {
    let v = Value::new(0i64).unwrap();
    let p = Process::new(set_to_42, v.clone())
        .start_method(m)
        .start()
        .unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(v.get().unwrap(), 42);
}

fn exit_codes(m: StartMethod) {
    let run = |f: fn(())| Process::new(f, ()).start_method(m).start().unwrap();
    assert_eq!(run(do_nothing).join().unwrap(), 0);
    assert_eq!(run(panic_now).join().unwrap(), 1);
    assert_eq!(run(exit_3).join().unwrap(), 3);
    let p = Process::new(return_err, ())
        .name("returns-err")
        .start_method(m)
        .start()
        .unwrap();
    assert_eq!(p.name(), "returns-err");
    assert_eq!(p.join().unwrap(), 1);

    let ready = RawValue::new(0u32).unwrap();
    let p = start(m, sleep_until_killed, &ready);
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);
    p.terminate().unwrap();
    assert_eq!(p.join().unwrap(), -15);
    assert_eq!(p.exitcode(), Some(-15));
    assert!(!p.is_alive());

    ready.set(0);
    let p = start(m, sleep_until_killed, &ready);
    p.kill().unwrap();
    assert_eq!(p.join().unwrap(), -9);
    // Signalling a reaped child is a no-op.
    p.kill().unwrap();
    p.terminate().unwrap();
}

fn spawn_results(m: StartMethod) {
    shmproc::set_start_method(m);
    let h = shmproc::spawn(|(a, b): (i32, i32)| a * b, (6, 7)).unwrap();
    assert_eq!(h.join().unwrap(), 42);
    let h = shmproc::spawn(|name: String| format!("hello {name}"), "bob".to_owned()).unwrap();
    assert_eq!(h.join().unwrap(), "hello bob");
    let h = shmproc::spawn(|n: i32| -> i32 { panic!("boom {n}") }, 7).unwrap();
    match h.join() {
        Err(Error::ChildPanicked { message }) => assert!(
            message.starts_with("boom 7 at tests/tests/process.rs:"),
            "{message}"
        ),
        other => panic!("expected ChildPanicked, got {other:?}"),
    }
    let h = shmproc::spawn(|()| -> i32 { std::process::exit(5) }, ()).unwrap();
    assert!(matches!(h.join(), Err(Error::ChildFailed { exitcode: 5 })));
    shmproc::set_start_method(StartMethod::Spawn);
}

fn shared_arguments(m: StartMethod) {
    let n = Value::new(0.0f64).unwrap();
    let a = Array::from_slice(&(0..10).collect::<Vec<i32>>()).unwrap();
    let l = Lock::new().unwrap();
    shmproc::set_start_method(m);
    let h = shmproc::spawn(negate_under_lock, (n.clone(), a.clone(), l.clone())).unwrap();
    assert_eq!(h.join().unwrap(), 10);
    shmproc::set_start_method(StartMethod::Spawn);
    assert_eq!(n.get().unwrap(), 3.1415927);
    assert_eq!(a.to_vec().unwrap(), [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]);
    assert!(l.try_acquire().unwrap());
    l.release().unwrap();
    // An object in a segment of its own: its descriptor travels too (inherited by a spawned
    // child, sent with SCM_RIGHTS to the forkserver, copied by fork).
    let seg = shmproc::Segment::create(1 << 20).unwrap();
    let own = Value::new_in(&seg, 1i64).unwrap();
    let p = Process::new(set_to_42, own.clone())
        .start_method(m)
        .start()
        .unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(own.get().unwrap(), 42);
    drop((own, seg));
    // Ten processes at once, one lock.
    let counter = Value::new(0u64).unwrap();
    let kids: Vec<_> = (0..10)
        .map(|_| {
            Process::new(
                |(c, l): (Value<u64>, Lock)| {
                    for _ in 0..100 {
                        let _g = l.lock().unwrap();
                        let v = c.get().unwrap();
                        c.set(v + 1).unwrap();
                    }
                },
                (counter.clone(), l.clone()),
            )
            .start_method(m)
            .start()
            .unwrap()
        })
        .collect();
    for k in &kids {
        assert_eq!(k.join().unwrap(), 0);
    }
    assert_eq!(counter.get().unwrap(), 1000);
}

fn joins_and_children(m: StartMethod) {
    let ready = RawValue::new(0u32).unwrap();
    let p = start(m, sleep_until_killed, &ready);
    let t = Instant::now();
    assert_eq!(p.join_timeout(Duration::from_millis(50)).unwrap(), None);
    assert!(t.elapsed() >= Duration::from_millis(50));
    let pids: Vec<i32> = shmproc::active_children().iter().map(|c| c.pid).collect();
    assert!(pids.contains(&p.pid()), "{pids:?} lacks {}", p.pid());
    p.kill().unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(60)).unwrap(), Some(-9));
    assert!(shmproc::active_children().is_empty());
    // A dropped, unjoined process is reaped by active_children (no zombie).
    let q = Process::new(do_nothing, ())
        .start_method(m)
        .start()
        .unwrap();
    let qpid = q.pid();
    drop(q);
    let t = Instant::now();
    while shmproc::active_children().iter().any(|c| c.pid == qpid) {
        assert!(t.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(1));
    }
    // Identity inside the child.
    let me = std::process::id() as i32;
    shmproc::set_start_method(m);
    let h = shmproc::spawn(
        |()| {
            let c = shmproc::current_process();
            let p = shmproc::parent_process().map(|p| (p.pid, p.name));
            (c.name, c.pid, p)
        },
        (),
    )
    .unwrap();
    let child_pid = h.process().pid();
    let (name, pid, parent) = h.join().unwrap();
    shmproc::set_start_method(StartMethod::Spawn);
    assert!(name.starts_with("Process-"), "{name}");
    assert_eq!(pid, child_pid);
    assert_eq!(parent.map(|p| p.0), Some(me));
}

// ---- tests ----

#[test]
fn test_support_constructor_ran_init() {
    assert!(init_ran());
    assert_eq!(shmproc::current_process().name, "MainProcess");
    assert!(shmproc::parent_process().is_none());
    assert!(shmproc::cpu_count() >= 1);
}

#[test]
fn every_start_method_runs_a_target_that_mutates_a_value() {
    each_method(Scenario::MutateValue);
}

#[test]
fn kill_exit_codes_for_exit_panic_terminate_and_kill() {
    each_method(Scenario::ExitCodes);
}

#[test]
fn spawn_returns_values_and_panic_messages() {
    each_method(Scenario::SpawnResults);
}

#[test]
fn array_value_and_lock_arguments_work_under_every_start_method() {
    each_method(Scenario::SharedArguments);
}

#[test]
fn kill_join_timeout_active_children_and_identity() {
    each_method(Scenario::Joins);
}

#[test]
fn fork_from_a_multithreaded_parent_is_refused() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        let _ = rx.recv();
    });
    assert_no_leaks(|| {
        let r = Process::new(do_nothing, ())
            .start_method(StartMethod::Fork)
            .start();
        match r {
            Err(Error::ForkWhileThreaded { threads }) => assert!(threads >= 2),
            other => panic!("expected ForkWhileThreaded, got {other:?}"),
        }
    });
    tx.send(()).unwrap();
    t.join().unwrap();
}

/// Descriptors of this process without close-on-exec (inherited from whoever started the
/// test, like a CI runner's or a shell's): every child inherits those, shmproc or not.
fn inheritable_fds() -> BTreeSet<i32> {
    resources()
        .fds
        .into_iter()
        .filter(|fd| {
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok());
            flags.is_some_and(|f| f & 0o2000000 == 0)
        })
        .collect()
}

#[test]
fn spawned_child_inherits_only_the_descriptors_it_needs() {
    watchdog(LIMIT, "fds", || {
        assert_no_leaks(|| {
            // A descriptor of ours that the child must not see.
            let unrelated = std::fs::File::open("/proc/self/stat").unwrap();
            let h = shmproc::spawn(
                |()| {
                    std::fs::read_dir("/proc/self/fd")
                        .unwrap()
                        .filter_map(|e| {
                            let fd = e.ok()?.file_name().to_str()?.parse::<i32>().ok()?;
                            let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok();
                            Some((fd, link?.to_string_lossy().into_owned()))
                        })
                        .collect::<Vec<(i32, String)>>()
                },
                (),
            )
            .unwrap();
            let fds = h.join().unwrap();
            drop(unrelated);
            let outside = inheritable_fds();
            let ours: Vec<_> = fds
                .iter()
                .filter(|(fd, _)| *fd > 2 && !outside.contains(fd))
                .collect();
            // The default heap, the result pipe, and read_dir's own descriptor: nothing else.
            assert!(ours.len() <= 3, "child had {ours:?}");
            for (_, link) in &ours {
                assert!(
                    link.starts_with("/memfd:shmproc")
                        || link.starts_with("pipe:")
                        || link.starts_with("/proc/"),
                    "unexpected descriptor {link} in {ours:?}"
                );
            }
        })
    });
}

/// Regression (issue 18): a program that forgets `init()` used to start a child that re-ran
/// its `main` and exited 1, so the parent saw `Ok(1)`. The parent knows `init()` never ran:
/// `start()` of a `Spawn` or `ForkServer` child is `NotInitialized`, with the sentence that
/// says what to do; `Fork` (no re-execution) still works.
#[test]
fn a_program_without_init_gets_not_initialized_at_start() {
    watchdog(LIMIT, "no_init", || {
        let before = resources();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_no_init"))
            .env("SHMPROC_NO_TEST_INIT", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        let sentence = "NotInitialized: shmproc::init() was not called at the start of main: \
                        call it first thing in main";
        for method in ["Spawn", "ForkServer", "spawn"] {
            assert!(
                stdout.contains(&format!("{method}: {sentence}")),
                "{method}: {stdout}\n{stderr}"
            );
        }
        assert!(stdout.contains("Fork: child exited with 0"), "{stdout}");
        assert_eq!(stdout.matches("target ran").count(), 1, "{stdout}");
        assert!(stdout.contains("value ok"), "{stdout}");
        assert_eq!(before.children, resources().children);
    });
}

/// Regression (issue 18): a `#[test]` that starts a child, in a test binary without
/// `enable_test_support!()` or the `test-support` feature, used to see
/// `ChildFailed { exitcode: 101 }` (the child re-ran the whole harness). This file's binary
/// runs its own ignored test below with the feature's constructor disabled: the start fails
/// at once with the error that names both remedies.
#[test]
fn a_test_without_test_support_is_told_what_to_enable() {
    watchdog(LIMIT, "no_test_support", || {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "starts_a_child_without_test_support",
                "--ignored",
                "--nocapture",
            ])
            .env("SHMPROC_NO_TEST_INIT", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
    });
}

#[test]
#[ignore = "run by a_test_without_test_support_is_told_what_to_enable"]
fn starts_a_child_without_test_support() {
    assert!(std::env::var_os("SHMPROC_NO_TEST_INIT").is_some());
    let e = shmproc::spawn(|x| x + 1, 3u32).unwrap_err();
    assert!(matches!(e, shmproc::Error::NotInitialized), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("shmproc::enable_test_support!()"), "{msg}");
    assert!(msg.contains("`test-support` feature"), "{msg}");
}

/// Returns every descendant of `pid` (from `/proc/<p>/stat`'s ppid fields).
fn descendants(pid: i32) -> BTreeSet<i32> {
    let mut all = BTreeSet::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for d in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(c) = d.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if stat_field(c, 1).and_then(|s| s.parse().ok()) == Some(p) && all.insert(c) {
                frontier.push(c);
            }
        }
    }
    all
}

/// Field `n` after the command name in `/proc/<pid>/stat` (0 = state, 1 = ppid).
fn stat_field(pid: i32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(n).map(str::to_owned)
}

fn gone(pid: i32) -> bool {
    matches!(stat_field(pid, 0).as_deref(), None | Some("Z" | "X"))
}

#[test]
fn kill_daemon_children_die_when_their_parent_is_sigkilled() {
    watchdog(LIMIT, "daemon_sigkill", || {
        let before = resources();
        let mut parent = std::process::Command::new(env!("CARGO_BIN_EXE_daemon_parent"))
            .args(["fork", "spawn", "forkserver"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(parent.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let reported: Vec<i32> = line
            .split_whitespace()
            .skip(1)
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(reported.len(), 3, "{line}");
        let tree = descendants(parent.id() as i32);
        // Three daemon children plus the forkserver.
        assert!(tree.len() >= 4, "{tree:?}");
        for p in &reported {
            assert!(tree.contains(p), "{p} not in {tree:?}");
        }
        parent.kill().unwrap();
        parent.wait().unwrap();
        let t = Instant::now();
        for &p in &tree {
            while !gone(p) {
                assert!(
                    t.elapsed() < Duration::from_secs(30),
                    "descendant {p} outlived its SIGKILLed parent"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let after = resources();
        assert_eq!(before.children, after.children, "zombie children");
        assert_eq!(before.fds, after.fds, "descriptors leaked");
    });
}

#[test]
fn children_start_grandchildren_and_leak_no_start_up_variable() {
    watchdog(LIMIT, "nested", || {
        assert_no_leaks(|| {
            let shared = Value::new(0u32).unwrap();
            let h = shmproc::spawn(
                |v: Value<u32>| {
                    // A grandchild, started from inside a child, through the same machinery.
                    let g = shmproc::spawn(
                        |v: Value<u32>| {
                            v.set(7).unwrap();
                            shmproc::parent_process().map(|p| p.name)
                        },
                        v,
                    )
                    .unwrap();
                    let grandparent_seen = g.join().unwrap();
                    // Programs this child runs by other means do not see the start-up variable.
                    let env = std::process::Command::new("env").output().unwrap();
                    let leaked = String::from_utf8_lossy(&env.stdout).contains("SHMPROC_CHILD");
                    (grandparent_seen, shmproc::current_process().name, leaked)
                },
                shared.clone(),
            )
            .unwrap();
            let (grandparent_seen, child_name, leaked) = h.join().unwrap();
            assert_eq!(grandparent_seen, Some(child_name));
            assert!(
                !leaked,
                "SHMPROC_CHILD leaked into a grandchild's environment"
            );
            assert_eq!(shared.get().unwrap(), 7);
        })
    });
}

fn open_missing(name: String) -> shmproc::Result<u32> {
    let seg = shmproc::Segment::open(&name)?;
    Ok(u32::try_from(seg.len()).unwrap_or(0))
}

fn panics(_: ()) -> u32 {
    panic!("boom in the child")
}

fn aborts(_: ()) -> u32 {
    std::process::abort()
}

fn exits_like_a_harness(_: ()) -> u32 {
    std::process::exit(101)
}

/// Issue 18: errors cross processes and read well. A child's `?` error reaches the parent as
/// the same `Error` (variant and fields, `&'static str` reasons included); a panic carries
/// its location; a death by signal names the signal; `Debug` prints the sentence.
#[test]
fn errors_cross_processes_and_read_well() {
    watchdog(LIMIT, "errors_cross", || {
        // A child's error, returned with `?`, arrives whole.
        let name = format!("shmproc-test-{}-missing", std::process::id());
        let got = shmproc::spawn(open_missing, name.clone())
            .unwrap()
            .join()
            .unwrap();
        assert!(
            matches!(&got, Err(Error::NotFound { name: n }) if n.ends_with(&name)),
            "{got:?}"
        );
        let got = shmproc::spawn(open_missing, "bad/name".to_owned())
            .unwrap()
            .join()
            .unwrap();
        let Err(Error::InvalidName { name, reason }) = &got else {
            panic!("{got:?}");
        };
        assert_eq!(name, "bad/name");
        let here = shmproc::Segment::open("bad/name").err().unwrap();
        assert_eq!(
            got.as_ref().err().unwrap().to_string(),
            here.to_string(),
            "{reason}"
        );
        // `Debug` is the sentence, as `main() -> shmproc::Result<()>` prints it.
        assert_eq!(format!("{here:?}"), here.to_string());
        // A panic names where it happened.
        let e = shmproc::spawn(panics, ()).unwrap().join().unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::ChildPanicked { .. }), "{msg}");
        assert!(
            msg.contains("boom in the child at tests/tests/process.rs:"),
            "{msg}"
        );
        // A death by signal names it.
        let e = shmproc::spawn(aborts, ()).unwrap().join().unwrap_err();
        assert!(matches!(e, Error::ChildFailed { exitcode: -6 }), "{e}");
        assert!(e.to_string().contains("exit code -6 (SIGABRT)"), "{e}");
        // Exit code 101 (a test harness's) says what it usually means.
        let e = shmproc::spawn(exits_like_a_harness, ())
            .unwrap()
            .join()
            .unwrap_err();
        assert!(matches!(e, Error::ChildFailed { exitcode: 101 }), "{e}");
        assert!(e.to_string().contains("enable_test_support!()"), "{e}");
    });
}

/// Issue 18: errors whose fix is known say it.
#[test]
fn errors_with_a_known_fix_name_it() {
    let seg = shmproc::Segment::create(1 << 16).unwrap();
    let e = Array::<u8>::new_in(&seg, 1 << 20).err().unwrap();
    assert!(matches!(e, Error::OutOfMemory { .. }), "{e}");
    assert!(
        e.to_string().contains("shmproc::set_default_heap_size"),
        "{e}"
    );
    let v = Value::new_in(&seg, 1u32).unwrap();
    let bytes = shmproc::codec::to_bytes(&v).unwrap();
    let e = shmproc::codec::from_bytes::<Value<i64>>(&bytes)
        .err()
        .unwrap();
    assert!(matches!(e, Error::TypeMismatch { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("expected i64, but the object holds a different type"),
        "{e}"
    );
}

/// Which hook saw the last panic of the process running [`fork_start_keeps_parent_hook`].
static HOOK_SAW: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Sets a hook of its own, starts `Fork` children (one of them panicking), and checks after
/// each that its hook is still the one that runs; returns 0 when all went as expected.
fn fork_start_keeps_parent_hook() -> i32 {
    std::panic::set_hook(Box::new(|info| {
        *HOOK_SAW
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(info.payload_as_str().unwrap_or("?").to_owned());
    }));
    let hook_saw = |round: &str| {
        let caught = std::panic::catch_unwind(|| panic!("parent panic {round}"));
        let saw = HOOK_SAW
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        caught.is_err() && saw.as_deref() == Some(format!("parent panic {round}").as_str())
    };
    if !hook_saw("before") {
        return 1;
    }
    let p = Process::new(do_nothing, ())
        .start_method(StartMethod::Fork)
        .start()
        .expect("fork start");
    if p.join_timeout(Duration::from_secs(60)).ok().flatten() != Some(0) {
        return 2;
    }
    if !hook_saw("after a start") {
        return 3;
    }
    shmproc::set_start_method(StartMethod::Fork);
    let h = shmproc::spawn(|n: i32| -> i32 { panic!("boom {n}") }, 7).expect("fork spawn");
    match h.join() {
        Err(Error::ChildPanicked { message })
            if message.starts_with("boom 7 at tests/tests/process.rs:") => {}
        _ => return 4,
    }
    if !hook_saw("after a panicking child") {
        return 5;
    }
    0
}

/// A `Fork` start installs the child's panic hook in the parent only for the duration of the
/// fork: the parent's own hook is back afterwards (also after a child that panicked), and
/// the child's panic still carries its location. Run in a forked copy of the test process
/// (single-threaded, as `Fork` needs, and whose hook nobody else shares).
#[test]
fn a_fork_start_leaves_the_parents_panic_hook_in_place() {
    // SAFETY: the test's only other threads are the harness's, which hold no lock the child
    // takes while they wait.
    let mut child = shmproc::testing::fork(
        unsafe { shmproc::testing::ForkPermit::new() },
        fork_start_keeps_parent_hook,
    );
    assert_eq!(child.wait(), Ok(0));
}
