//! Handles of every kind passed to children as `Process` arguments, under every start method:
//! segments travel as descriptors, connections with their eventfds.
//!
//! `Fork` needs a single-threaded caller, so its run happens inside a `Spawn` child (a test
//! process has the harness's and the watchdog's threads).

use shmproc::testing::{assert_no_leaks, watchdog};
use shmproc::{Connection, Process, Queue, StartMethod, Value};
use std::time::Duration;

fn child((conn, q, v): (Connection, Queue<String>, Value<u64>)) -> shmproc::Result<()> {
    let n: u64 = conn.recv()?;
    *v.lock()? += n;
    q.put(&format!("got {n}"))?;
    conn.send(&(n * 2))?;
    Ok(())
}

fn round_trip(method: StartMethod) {
    let (mine, theirs) = shmproc::pipe().unwrap();
    let q = Queue::new().unwrap();
    let v = Value::new(1u64).unwrap();
    let p = Process::new(child, (theirs, q.clone(), v.clone()))
        .start_method(method)
        .start()
        .unwrap();
    mine.send(&21u64).unwrap();
    assert_eq!(mine.recv::<u64>().unwrap(), 42, "{method:?}");
    assert_eq!(q.get().unwrap(), "got 21");
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(v.get().unwrap(), 22);
}

#[test]
fn connection_queue_and_value_work_in_children_of_every_start_method() {
    watchdog(Duration::from_secs(120), "handles_in_args", || {
        shmproc::ensure_forkserver().unwrap();
        assert_no_leaks(|| {
            round_trip(StartMethod::Spawn);
            round_trip(StartMethod::ForkServer);
            let h =
                shmproc::spawn((), |()| assert_no_leaks(|| round_trip(StartMethod::Fork))).unwrap();
            h.join().unwrap();
        })
    });
}
