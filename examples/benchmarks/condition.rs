//! "Number of interleaved waits/notifies per sec on a condition variable by two processes".

use crate::limits::Limit;
use crate::measure::{Peers, Workload};
use crate::row::{Spec, Unit};
use shmproc::manager::ConditionProxy;
use shmproc::{Condition, RawValue};

/// The rows of this family.
pub(crate) fn specs() -> Vec<Spec> {
    let row = |case, shmproc, python, limit, goal| Spec {
        family: "condition",
        case,
        unit: Unit::Rate("waits/s"),
        shmproc,
        python: Some(python),
        limit,
        goal,
    };
    vec![
        row(
            "Condition, 2 processes",
            condition,
            "condition",
            Some(Limit::FutexWaits),
            Some(1.0),
        ),
        row(
            "Condition managed by server",
            managed_condition,
            "managed_condition",
            None,
            None,
        ),
    ]
}

/// `Condition`: this process and a child alternate notify + wait; counts waits (2 per round).
/// A `Condition` ping-pong with a child process: `turn` 1 = the child's move, 0 = ours,
/// `STOP` ends the child. Each round trip is two waits, one per process (as Python counts).
pub(crate) fn condition() -> Option<Workload> {
    let cond = Condition::new().expect("Condition");
    let turn = RawValue::new(0u32).expect("RawValue");
    let child = shmproc::Process::new(condition_peer, (cond.clone(), turn.clone()))
        .start()
        .expect("start condition peer");
    let peers = Peers::new((cond, turn), vec![child], |(cond, turn)| {
        if let Ok(_g) = cond.lock() {
            turn.set(STOP);
            let _ = cond.notify_all();
        }
    });
    Some(Workload::new(2, move |reps| {
        let (cond, turn) = &peers.state;
        let mut g = cond.lock().expect("lock");
        for _ in 0..reps {
            turn.set(1);
            cond.notify(1).expect("notify");
            while turn.get() == 1 {
                cond.wait(&mut g).expect("wait");
            }
        }
    }))
}

const STOP: u32 = 2;

/// The child's side of [`condition`].
fn condition_peer((cond, turn): (Condition, RawValue<u32>)) {
    let Ok(mut g) = cond.lock() else { return };
    loop {
        while turn.get() == 0 {
            if cond.wait(&mut g).is_err() {
                return;
            }
        }
        if turn.get() == STOP {
            return;
        }
        turn.set(0);
        if cond.notify(1).is_err() {
            return;
        }
    }
}

/// The same through a condition held by a manager process (and a shared value for the
/// turn): both processes attach its in-heap form (a local client of a server on a Unix
/// socket), so a wait is no round trip through the server.
pub(crate) fn managed_condition() -> Option<Workload> {
    let m = shmproc::Manager::start().expect("Manager");
    let cond = m.condition().expect("managed condition");
    let turn = RawValue::new(0u32).expect("RawValue");
    let child = shmproc::Process::new(managed_condition_peer, (cond.clone(), turn.clone()))
        .start()
        .expect("start condition peer");
    let peers = Peers::new((cond, turn, m), vec![child], |(cond, turn, _)| {
        if cond.acquire().is_ok() {
            turn.set(STOP);
            let _ = cond.notify_all();
            let _ = cond.release();
        }
    });
    Some(Workload::new(2, move |reps| {
        let (cond, turn, _) = &peers.state;
        cond.acquire().expect("acquire");
        for _ in 0..reps {
            turn.set(1);
            cond.notify(1).expect("notify");
            while turn.get() == 1 {
                cond.wait().expect("wait");
            }
        }
        cond.release().expect("release");
    }))
}

/// The child's side of [`managed_condition`].
fn managed_condition_peer((cond, turn): (ConditionProxy, RawValue<u32>)) {
    if cond.acquire().is_err() {
        return;
    }
    loop {
        while turn.get() == 0 {
            if cond.wait().is_err() {
                return;
            }
        }
        if turn.get() == STOP {
            let _ = cond.release();
            return;
        }
        turn.set(0);
        if cond.notify(1).is_err() {
            return;
        }
    }
}
