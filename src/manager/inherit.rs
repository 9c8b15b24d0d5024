//! Proxies a forked child inherits in memory.
//!
//! A child forked by shmproc (the `Fork` start method, `fork_here`, the test support's
//! `fork`) gets a copy of every proxy its parent holds, without any token being decoded: the
//! server is never told of those copies. So before the fork, the parent takes references
//! for the child: it draws the child's client nonce, opens one connection per server whose
//! proxies it holds, greets it as the child and asks for the references in one request
//! ([`Request::Inherit`]: a count per object, the number of the parent's live proxies to
//! it). After the fork the parent closes its copy of that connection; the child keeps it
//! open (unused: its calls go over connections of its own, pipes for a server on this host)
//! and calls as that nonce. The references are then the child's
//! like any other: each inherited proxy the child drops releases one, and all go when the
//! child's last connection ends, which the inherited one is: a child killed at any moment
//! after the fork closes it, and a fork that fails (or a parent killed before it) closes the
//! parent's copy, the only one. A process without proxies makes no request at all.
//!
//! The reservation is bounded: the parent waits for all its servers at once (one thread per
//! server when there are several), each for at most [`RESERVE_TIMEOUT`] (the connection
//! handshake's bound, 5 s) from the start of the reservation, connecting, greeting and
//! `Inherit` reply included (a TCP connect to an unreachable host excepted: it waits for the
//! system's connect timeout). A server that cannot be reached, refuses, or does not answer
//! in time (stopped, hung after the handshake, a silent host) is skipped: the fork goes on,
//! and the child's copies of that server's proxies hold no references of their own; they
//! rely on the parent's, as after a bare `fork(2)` (see below). A server that took the
//! references but answered late loses them again when the parent closes the connection.
//!
//! A child forked by shmproc closes the copies it inherited of its parent's own kept
//! connections, so those end with the parent alone. A fork by other means (a bare
//! `fork(2)`) takes no references: the child's copies then rely on the parent's, and the
//! child holds the parent's kept connections open while it lives.

use super::client::{Greeting, expect_ok, live_proxies, set_nonce};
use super::protocol::{Endpoint, Request};
use crate::codec;
use crate::connection::{Connection, HANDSHAKE_TIMEOUT};
use crate::error::{Error, Result};
use crate::sys;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a fork waits for its servers to take its child's references, at most (all
/// servers at once; see the module docs).
pub(crate) const RESERVE_TIMEOUT: Duration = HANDSHAKE_TIMEOUT;

/// The connections holding this process's inherited references (kept open until it exits).
static KEPT: Mutex<Vec<Connection>> = Mutex::new(Vec::new());

/// The references taken for a child about to be forked.
pub(crate) struct Inherited {
    nonce: u64,
    conns: Vec<Connection>,
}

/// Takes references for the child of a fork about to happen, for every live proxy of this
/// process; `None` (and no request) without proxies. A server that cannot be reached, or
/// does not answer within [`RESERVE_TIMEOUT`], is skipped: its proxies in the child then
/// rely on the parent's references.
pub(crate) fn before_fork() -> Option<Inherited> {
    let live = live_proxies();
    if live.is_empty() {
        return None;
    }
    let nonce = sys::random_u64() | 1;
    let deadline = Instant::now() + RESERVE_TIMEOUT;
    let conns = if live.len() == 1 {
        live.into_iter()
            .filter_map(|(endpoint, key, objects)| {
                reserve(&endpoint, &key, nonce, objects, deadline).ok()
            })
            .collect()
    } else {
        // All servers at once, so that several silent ones cost one bound, not one each.
        // The threads end before the fork.
        std::thread::scope(|scope| {
            let waits: Vec<_> = live
                .into_iter()
                .map(|(endpoint, key, objects)| {
                    let run = move || reserve(&endpoint, &key, nonce, objects, deadline);
                    std::thread::Builder::new()
                        .name("shmproc-fork-refs".into())
                        .spawn_scoped(scope, run)
                })
                .collect();
            waits
                .into_iter()
                .filter_map(|w| w.ok()?.join().ok()?.ok())
                .collect()
        })
    };
    Some(Inherited { nonce, conns })
}

/// One connection to the server at `endpoint`, greeted as client `nonce`, that took its
/// references to `objects` before `deadline`.
fn reserve(
    endpoint: &Endpoint,
    key: &[u8],
    nonce: u64,
    objects: Vec<(u64, u32)>,
    deadline: Instant,
) -> Result<Connection> {
    let sock = crate::connection::Client::connect(endpoint.address(), Some(key))?;
    if !endpoint.is_local() {
        super::server::keep_alive(&sock);
    }
    // Every read and write waits at most until the deadline.
    let bound = |sock: &Connection| {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout);
        }
        sock.set_socket_timeout(Some(left))
    };
    // Over the socket itself (no pipe): the child inherits its descriptor, and the
    // connection ends when the last process holding it closes it or dies.
    bound(&sock)?;
    sock.send(&Greeting {
        client: nonce,
        pipe: None,
    })?;
    bound(&sock)?;
    expect_ok(sock.recv_bytes()?)?;
    bound(&sock)?;
    sock.send_bytes(&codec::to_bytes(&Request::Inherit { objects })?)?;
    bound(&sock)?;
    expect_ok(sock.recv_bytes()?)?;
    sock.set_socket_timeout(None)?;
    Ok(sock)
}

impl Inherited {
    /// In the child: calls as the nonce its references were taken for, and keeps their
    /// connections (closing its copies of the parent's).
    pub(crate) fn in_child(self) {
        set_nonce(self.nonce);
        let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
        let parents = std::mem::replace(&mut *kept, self.conns);
        drop(kept);
        drop(parents);
    }

    /// In the parent (or when the fork failed): closes its copies of the connections.
    pub(crate) fn in_parent(self) {
        drop(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Manager;
    use crate::connection::Address;

    /// The proxies alive are counted per process: these tests run one at a time.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    /// Without proxies a fork prepares nothing (no connection, no request); with one, one
    /// connection per server took the child's references; after the drop, nothing again.
    #[test]
    fn a_fork_prepares_references_only_for_live_proxies() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(before_fork().is_none());
        let name = format!("shmproc-test-inherit-{}", sys::current_pid());
        let m = Manager::serve(Address::Abstract(name.into_bytes()), b"k").unwrap();
        let shared = m.shared().unwrap();
        assert!(
            before_fork().is_none(),
            "the shared namespace needs no reference"
        );
        let d = m.dict::<u8, u8>().unwrap();
        let d2 = d.clone();
        let l = m.list::<u8>().unwrap();
        let i = before_fork().unwrap();
        assert_eq!(i.conns.len(), 1);
        i.in_parent();
        drop((d, d2, l, shared));
        assert!(before_fork().is_none());
        m.shutdown().unwrap();
    }

    /// With proxies of two servers, both take the child's references (reserved at once),
    /// and a third that is gone is skipped.
    #[test]
    fn a_fork_reserves_with_every_reachable_server() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        let name = |n: &str| {
            Address::Abstract(format!("shmproc-test-inherit-{n}-{}", sys::current_pid()).into())
        };
        let a = Manager::serve(name("a"), b"k").unwrap();
        let b = Manager::serve(name("b"), b"k").unwrap();
        let c = Manager::serve(name("c"), b"k").unwrap();
        let (da, db, dc) = (
            a.dict::<u8, u8>().unwrap(),
            b.list::<u8>().unwrap(),
            c.dict::<u8, u8>().unwrap(),
        );
        c.shutdown().unwrap();
        let i = before_fork().unwrap();
        assert_eq!(i.conns.len(), 2);
        i.in_parent();
        drop((da, db, dc));
        a.shutdown().unwrap();
        b.shutdown().unwrap();
    }
}
