//! Processes: start methods, exit codes, `spawn` results, shared arguments, refusals, leaks.

use shmproc::testing::{assert_no_leaks, watchdog};
use shmproc::{Process, StartMethod, Value};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn set_to_42(v: Value<i64>) {
    v.set(42).unwrap();
}

#[test]
fn smoke_spawn() {
    assert!(shmproc::testing::init_ran());
    watchdog(LIMIT, "smoke", || {
        assert_no_leaks(|| {
            let v = Value::new(0i64).unwrap();
            let p = Process::new(set_to_42, v.clone())
                .start_method(StartMethod::Spawn)
                .start()
                .unwrap();
            assert_eq!(p.join().unwrap(), 0);
            assert_eq!(v.get().unwrap(), 42);
        })
    });
}
