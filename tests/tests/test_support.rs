//! `shmproc::enable_test_support!()`: a test binary that invokes it can start `Spawn` and
//! `ForkServer` children from `#[test]` functions without the `test-support` feature.
//!
//! This crate links shmproc with the feature (its constructor would call `init()` too), so the
//! outer test re-runs this binary with `SHMPROC_NO_TEST_INIT=1`, which turns the feature's
//! constructor off and leaves only the macro's hook.

use shmproc::testing::watchdog;
use std::time::Duration;

shmproc::enable_test_support!();

fn square(x: u64) -> u64 {
    x * x
}

fn check(x: u64) {
    assert_eq!(x, 3);
}

#[test]
fn the_macro_alone_lets_a_test_start_children() {
    watchdog(Duration::from_secs(60), "enable_test_support", || {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "children_start_with_only_the_macro",
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
#[ignore = "run by the_macro_alone_lets_a_test_start_children"]
fn children_start_with_only_the_macro() {
    assert!(std::env::var_os("SHMPROC_NO_TEST_INIT").is_some());
    assert!(
        !shmproc::testing::init_ran(),
        "the feature's constructor ran"
    );
    assert_eq!(shmproc::spawn(square, 7).unwrap().join().unwrap(), 49);
    let p = shmproc::Process::new(check, 3)
        .start_method(shmproc::StartMethod::ForkServer)
        .start()
        .unwrap();
    assert_eq!(p.join().unwrap(), 0);
}
