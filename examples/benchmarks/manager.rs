//! Managed objects, the goals beside Python's managers: a managed dict's `get` over
//! the local transport (a shared-memory pipe per client thread: a round trip through the
//! server per call) and over TCP loopback, a managed list's `get(i)`, and (measured by their
//! own families, shown here again with their goals) a managed queue's objects, a managed
//! lock's acquire + release and a managed condition's waits. The queue and the condition
//! are attached by these local clients (their in-heap form in the server's segment, no
//! round trip per call); the dict, list and lock are served.

use std::hint::black_box;

use shmproc::Manager;

use crate::limits::Limit;
use crate::measure::Workload;
use crate::row::{Spec, Unit};

/// The dict's `get` row over the local transport.
const DICT_LOCAL: &str = "Dict get, managed by server (local)";
/// The dict's `get` row over TCP loopback.
const DICT_TCP: &str = "Dict get, managed by server over TCP loopback";
/// The queue row.
const QUEUE: &str = "Queue objects, managed by server";
/// The lock row.
const LOCK: &str = "Lock acquire+release, managed by server";
/// The condition row.
const CONDITION: &str = "Condition waits, managed by server";

/// The rows of this family.
pub(crate) fn specs() -> Vec<Spec> {
    let row = |case, shmproc, python, unit, limit| Spec {
        family: "manager",
        case,
        unit: Unit::Rate(unit),
        shmproc,
        python: Some(python),
        limit,
        goal: None,
    };
    vec![
        row(
            DICT_LOCAL,
            managed_dict,
            "managed_dict",
            "calls/s",
            Some(Limit::FutexRoundTrip),
        ),
        row(
            QUEUE,
            crate::objects::managed_queue,
            "managed_queue",
            "objects/s",
            Some(Limit::FutexRoundTrip),
        ),
        row(
            LOCK,
            crate::lock::managed_lock,
            "managed_lock",
            "acq+rel/s",
            Some(Limit::FutexRoundTrip),
        ),
        row(
            CONDITION,
            crate::condition::managed_condition,
            "managed_condition",
            "waits/s",
            Some(Limit::FutexWaits),
        ),
        row(
            DICT_TCP,
            managed_dict_tcp,
            "managed_dict_tcp",
            "calls/s",
            Some(Limit::PipeRoundTrip),
        ),
        row(
            "List get(i), managed by server",
            managed_list,
            "managed_list",
            "calls/s",
            Some(Limit::FutexRoundTrip),
        ),
    ]
}

/// The goal for a row of this family, as a rate in the row's unit: 300 k/s for each
/// local goal, 50 k/s for the dict over TCP loopback.
pub(crate) fn rate_goal(spec: &Spec) -> Option<f64> {
    if spec.family != "manager" {
        return None;
    }
    match spec.case {
        DICT_LOCAL | QUEUE | LOCK | CONDITION => Some(300e3),
        DICT_TCP => Some(50e3),
        _ => None,
    }
}

/// Gets from a dict made through `m`; `owner` (if any) keeps an in-process server running.
fn dict_gets(m: Manager, owner: Option<Manager>) -> Workload {
    let d = m.dict::<i64, i64>().expect("managed dict");
    d.update((0..100).map(|i| (i, i * i))).expect("update");
    Workload::new(1, move |reps| {
        let _server = (&m, &owner);
        for i in 0..reps {
            black_box(d.get(&((i % 100) as i64)).expect("get"));
        }
    })
}

/// `d[k]` on a dict held by a manager process: one round trip per get.
pub(crate) fn managed_dict() -> Option<Workload> {
    Some(dict_gets(Manager::start().expect("Manager"), None))
}

/// The same with the server in this process on TCP loopback, the client going through TCP.
pub(crate) fn managed_dict_tcp() -> Option<Workload> {
    let owner = Manager::serve(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        b"benchmark key",
    )
    .expect("serve");
    let client = Manager::connect(owner.address(), b"benchmark key").expect("connect");
    Some(dict_gets(client, Some(owner)))
}

/// `l[i]` on a list of integers held by a manager process.
pub(crate) fn managed_list() -> Option<Workload> {
    let m = Manager::start().expect("Manager");
    let l = m.list_from(0..1000i32).expect("managed list");
    Some(Workload::new(1, move |reps| {
        let _server = &m;
        for i in 0..reps {
            black_box(l.get((i % 1000) as usize).expect("get"));
        }
    }))
}
