//! Calls through a manager's server: a managed dict's `get` over the local transport (a
//! shared-memory pipe per client thread) and over TCP loopback, and a managed list's `get(i)`.

use std::hint::black_box;

use shmproc::Manager;

use crate::limits::Limit;
use crate::measure::Workload;
use crate::row::{Spec, Unit};

/// The rows of this family.
pub(crate) fn specs() -> Vec<Spec> {
    let row = |case, shmproc, python, limit| Spec {
        family: "manager",
        case,
        unit: Unit::Rate("calls/s"),
        shmproc,
        python: Some(python),
        limit,
        goal: None,
    };
    vec![
        row(
            "Dict get, managed by server (local)",
            managed_dict,
            "managed_dict",
            Some(Limit::FutexRoundTrip),
        ),
        row(
            "Dict get, managed by server over TCP loopback",
            managed_dict_tcp,
            "managed_dict_tcp",
            Some(Limit::PipeRoundTrip),
        ),
        row(
            "List get(i), managed by server",
            managed_list,
            "managed_list",
            Some(Limit::FutexRoundTrip),
        ),
    ]
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
