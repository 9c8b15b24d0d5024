//! Round trips between two processes.

use shmproc::{Connection, Process};

use crate::limits::Limit;
use crate::measure::{Peers, Workload};
use crate::row::{Spec, Unit};

/// The rows of this family.
pub(crate) fn specs() -> Vec<Spec> {
    let row = Spec {
        family: "pingpong",
        case: "Pipe round trip, 2 processes",
        unit: Unit::Rate("round trips/s"),
        shmproc: pipe_round_trip,
        python: Some("pipe_roundtrip"),
        limit: Some(Limit::FutexRoundTrip),
        goal: None,
    };
    vec![
        row,
        // The true floor of a spinning transport.
        Spec {
            case: "Pipe round trip (vs busy-wait)",
            limit: Some(Limit::SpinRoundTrip),
            ..row
        },
        // The blocking path alone: no spin on either side, so each round trip is two futex
        // wake-ups, like the bare futex ping-pong it must match.
        Spec {
            case: "Pipe round trip, spinning off",
            shmproc: pipe_round_trip_blocking,
            goal: Some(1.0),
            ..row
        },
    ]
}

/// The echoing child: sends back every object it receives, until end of stream (with its
/// spin turned off if `spin` is false).
fn echo_with((conn, spin): (Connection, bool)) {
    conn.set_spinning(spin);
    echo(conn);
}

/// `Pipe` with spinning off on both ends: the blocking path alone.
pub(crate) fn pipe_round_trip_blocking() -> Option<Workload> {
    let (a, b) = shmproc::pipe().expect("pipe");
    a.set_spinning(false);
    let child = Process::new(echo_with, (b, false))
        .start()
        .expect("start echo");
    let p = Peers::new(a, vec![child], Connection::close);
    Some(Workload::new(1, move |reps| {
        let a = &p.state;
        for i in 0..reps {
            a.send(&i).expect("send");
            let back: u64 = a.recv().expect("recv");
            debug_assert_eq!(back, i);
        }
    }))
}

/// The echoing child: sends back every object it receives, until end of stream.
fn echo(conn: Connection) {
    while let Ok(x) = conn.recv::<u64>() {
        if conn.send(&x).is_err() {
            return;
        }
    }
}

/// `Pipe`: this process sends a small object, a child echoes it back (blocking `recv` on both
/// sides).
pub(crate) fn pipe_round_trip() -> Option<Workload> {
    let (a, b) = shmproc::pipe().expect("pipe");
    let child = Process::new(echo, b).start().expect("start echo");
    // Closing this end ends the child's stream.
    let p = Peers::new(a, vec![child], Connection::close);
    Some(Workload::new(1, move |reps| {
        let a = &p.state;
        for i in 0..reps {
            a.send(&i).expect("send");
            let back: u64 = a.recv().expect("recv");
            debug_assert_eq!(back, i);
        }
    }))
}
