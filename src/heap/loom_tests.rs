//! Loom models of the heap's free-list protocol (run with `scripts/loom`).
//!
//! The protocol in `free_list` runs here on a plain slice of loom atomics: node `i`'s `next`
//! word is `next[i]`, index 0 is the empty list. Each node carries an `owned` flag that a
//! popper sets and a pusher clears; two threads owning one node at once is the ABA failure.

use super::free_list;
use crate::error::{Error, Result};
use crate::loom::{AtomicU64, Ordering};
use loom::sync::Arc;

struct Nodes {
    head: AtomicU64,
    next: Vec<AtomicU64>,
    owned: Vec<AtomicU64>,
}

impl Nodes {
    /// A list `1 -> 2 -> … -> n`.
    fn new(n: u64) -> Nodes {
        let nodes = Nodes {
            head: AtomicU64::new(0),
            next: (0..=n).map(|_| AtomicU64::new(0)).collect(),
            owned: (0..=n).map(|_| AtomicU64::new(0)).collect(),
        };
        for i in (1..=n).rev() {
            free_list::push(&nodes.head, i, &nodes.next[i as usize]);
        }
        nodes
    }

    fn next_of(&self, idx: u64) -> Result<&AtomicU64> {
        self.next.get(idx as usize).ok_or(Error::CorruptObject {
            reason: "index out of range",
        })
    }

    fn pop(&self) -> Option<u64> {
        let idx = free_list::pop(&self.head, |i| self.next_of(i)).expect("valid index")?;
        let was = self.owned[idx as usize].swap(1, Ordering::Relaxed);
        assert_eq!(
            was, 0,
            "node {idx} popped while another thread owns it (ABA)"
        );
        Some(idx)
    }

    fn push(&self, idx: u64) {
        self.owned[idx as usize].store(0, Ordering::Relaxed);
        free_list::push(&self.head, idx, &self.next[idx as usize]);
    }

    /// Returns the list's indices, head first.
    fn drain(&self) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(i) = self.pop() {
            out.push(i);
            assert!(out.len() <= self.next.len(), "free list has a cycle");
        }
        out
    }
}

fn check_all_present(nodes: &Nodes, n: u64) {
    let mut got = nodes.drain();
    got.sort_unstable();
    assert_eq!(
        got,
        (1..=n).collect::<Vec<_>>(),
        "free list lost or duplicated a node"
    );
}

/// One thread pops and pushes back while another pops two and pushes them back in the other
/// order: the interleaving that defeats an untagged Treiber stack.
#[test]
fn free_list_survives_aba() {
    loom::model(|| {
        let nodes = Arc::new(Nodes::new(3));
        let a = {
            let nodes = Arc::clone(&nodes);
            loom::thread::spawn(move || {
                if let Some(x) = nodes.pop() {
                    nodes.push(x);
                }
            })
        };
        let b = {
            let nodes = Arc::clone(&nodes);
            loom::thread::spawn(move || {
                let x = nodes.pop();
                let y = nodes.pop();
                if let Some(x) = x {
                    nodes.push(x);
                }
                if let Some(y) = y {
                    nodes.push(y);
                }
            })
        };
        a.join().expect("thread a");
        b.join().expect("thread b");
        check_all_present(&nodes, 3);
    });
}

/// Concurrent pushes onto an empty list and pops from it never lose a node.
#[test]
fn free_list_concurrent_push_pop() {
    loom::model(|| {
        let nodes = Arc::new(Nodes::new(2));
        let x = nodes.pop().expect("node");
        let y = nodes.pop().expect("node");
        let threads: Vec<_> = [x, y]
            .into_iter()
            .map(|i| {
                let nodes = Arc::clone(&nodes);
                loom::thread::spawn(move || {
                    nodes.push(i);
                    if let Some(j) = nodes.pop() {
                        nodes.push(j);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        check_all_present(&nodes, 2);
    });
}
