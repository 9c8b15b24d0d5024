//! Handles of every kind passed to children as `Process` arguments, under every start method:
//! segments travel as descriptors, connections with their eventfds.
//!
//! `Fork` needs a single-threaded caller, so its run happens inside a `Spawn` child (a test
//! process has the harness's and the watchdog's threads).

use shmproc::connection::Address;
use shmproc::testing::{assert_no_leaks, watchdog};
use shmproc::{Client, Connection, Error, Listener, Process, Queue, Segment, StartMethod, Value};
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
                shmproc::spawn(|()| assert_no_leaks(|| round_trip(StartMethod::Fork)), ()).unwrap();
            h.join().unwrap();
        })
    });
}

const KEY: &[u8] = b"handles in args";

/// Receives a `Value` in a segment this child never mapped: over the shared-memory pipe it
/// cannot travel (the precise error names the segment), over a Unix socket connection it does.
fn receive_new_segment((pipe_end, name): (Connection, Vec<u8>)) -> shmproc::Result<()> {
    let id = match pipe_end.recv::<Value<u64>>() {
        Err(Error::SegmentNotTransferred { id }) => id,
        other => panic!("expected SegmentNotTransferred, got {other:?}"),
    };
    pipe_end.send(&id)?;
    let c = Client::connect(Address::Abstract(name), Some(KEY))?;
    let (v, reply): (Value<u64>, Connection) = c.recv()?;
    *v.lock()? += 1;
    reply.send(&"done")?;
    Ok(())
}

/// Regression: a handle sent where its segment cannot be mapped gets an error
/// naming the segment (and saying how to pass it), not `UnknownSegment`; sent over a Unix
/// socket connection, the segment travels with it.
#[test]
fn handle_in_an_untransferred_segment_gets_a_precise_error() {
    watchdog(Duration::from_secs(120), "segment_not_transferred", || {
        assert_no_leaks(|| {
            let name = format!("shmproc-test-{}-segment", std::process::id()).into_bytes();
            let listener = Listener::bind(Address::Abstract(name.clone()), Some(KEY)).unwrap();
            let (mine, theirs) = shmproc::pipe().unwrap();
            let p = Process::new(receive_new_segment, (theirs, name))
                .start_method(StartMethod::Spawn)
                .start()
                .unwrap();
            // Created after the child started: it has never seen this segment.
            let seg = Segment::create(1 << 20).unwrap();
            let v = Value::new_in(&seg, 5u64).unwrap();
            mine.send(&v).unwrap();
            assert_eq!(mine.recv::<u64>().unwrap(), seg.id());
            let message = Error::SegmentNotTransferred { id: seg.id() }.to_string();
            assert!(message.contains("process argument"), "{message}");
            let c = listener.accept().unwrap();
            let (reply_here, reply_there) = shmproc::pipe().unwrap();
            c.send(&(&v, &reply_there)).unwrap();
            drop(reply_there);
            assert_eq!(reply_here.recv::<String>().unwrap(), "done");
            assert_eq!(p.join().unwrap(), 0);
            assert_eq!(v.get().unwrap(), 6);
        })
    });
}
