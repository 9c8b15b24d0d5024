//! Loom models of the lock word (run with `scripts/loom`).

use super::raw::{self, Acquired};
use crate::loom::{AtomicU32, AtomicU64, Ordering};
use loom::sync::Arc;

#[test]
fn lock_word_gives_mutual_exclusion() {
    loom::model(|| {
        let word = Arc::new(AtomicU32::new(raw::UNLOCKED));
        let data = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (w, d) = (Arc::clone(&word), Arc::clone(&data));
                loom::thread::spawn(move || {
                    assert_eq!(raw::lock(&w, None), Acquired::Clean);
                    // A non-atomic read-modify-write: only mutual exclusion keeps it exact.
                    let v = d.load(Ordering::Relaxed);
                    d.store(v + 1, Ordering::Relaxed);
                    raw::unlock(&w);
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(data.load(Ordering::Relaxed), 2);
        assert!(!raw::is_locked(&word));
    });
}
