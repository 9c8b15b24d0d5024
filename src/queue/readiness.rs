//! Readiness descriptors for queues: an eventfd that becomes readable when a `get` may
//! succeed, for event loops (`tokio::io::unix::AsyncFd`, `mio`, `epoll`).
//!
//! A queue is shared memory only: no descriptor travels with it, so a producer in another
//! process cannot signal a descriptor of the waiting process. Instead the waiting process runs
//! one watcher thread per [`QueueReadiness`]: it sleeps on the queue's `not_empty` event count
//! like a blocked consumer (the count's sleepers word is the shared "somebody waits" flag that
//! every `put` already reads), and signals a process-local eventfd when the queue holds a
//! message or is closed. So a `put` makes a system call only while some process waits (a
//! blocked `get` or a readiness watcher), as before, and none otherwise.
//!
//! # States of a watcher
//!
//! | state    | meaning                                           | next                                  |
//! |----------|---------------------------------------------------|---------------------------------------|
//! | armed    | waits for a message (or close) on the event count | signalled: writes the eventfd          |
//! | signalled| the eventfd is readable; waits for `clear`        | armed (`clear`)                       |
//! | stopped  | the `QueueReadiness` was dropped                  | the thread ends; drop joins it        |
//!
//! Because the watcher re-arms only on `clear`, and `clear` drains the eventfd before it
//! re-arms, a message put after `clear` always signals again: receive with `try_get` until
//! `Empty` after each `clear`, and no message is missed.

use super::handle::RawQueue;
use crate::error::{Error, Result};
use crate::loom::{AtomicU32, Ordering};
use crate::sys;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

/// What the watcher thread and the handle share (process-local).
struct Watch {
    efd: OwnedFd,
    /// 1 once the handle is dropped; read by the watcher's wait on the queue.
    stop: AtomicU32,
    /// Whether the watcher should wait for the next message (`false`: signalled, waits for
    /// `clear`), and how many times `clear` was called (a watcher that saw a message before
    /// the latest `clear` looks again instead of signalling a message that may be gone).
    armed: Mutex<Armed>,
    rearm: Condvar,
}

struct Armed {
    armed: bool,
    clears: u64,
}

impl Watch {
    fn state(&self) -> std::sync::MutexGuard<'_, Armed> {
        self.armed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopped(&self) -> bool {
        // SeqCst: against the ring's `notify` fence in `QueueReadiness::drop` (a watcher that
        // announced itself either sees the flag or is woken).
        self.stop.load(Ordering::SeqCst) != 0
    }
}

/// A queue's readiness descriptor, from [`Queue::readiness`](crate::Queue::readiness):
/// implements [`AsFd`] and [`AsRawFd`] for event loops.
///
/// It owns a watcher thread of this process (see the method's docs), ended when it is
/// dropped; while one exists this process is not single-threaded (`StartMethod::Fork`
/// refuses to fork).
pub struct QueueReadiness {
    watch: Arc<Watch>,
    queue: RawQueue,
    thread: Option<JoinHandle<()>>,
}

impl QueueReadiness {
    pub(super) fn new(queue: &RawQueue) -> Result<QueueReadiness> {
        let efd = sys::eventfd_create().map_err(|e| Error::io("eventfd", e))?;
        let watch = Arc::new(Watch {
            efd,
            stop: AtomicU32::new(0),
            armed: Mutex::new(Armed {
                armed: true,
                clears: 0,
            }),
            rearm: Condvar::new(),
        });
        let (w, q) = (Arc::clone(&watch), queue.clone());
        let thread = std::thread::Builder::new()
            .name("shmproc-queue-readiness".into())
            .spawn(move || watch_queue(&w, &q))
            .map_err(|e| Error::io("spawn a readiness thread", e))?;
        Ok(QueueReadiness {
            watch,
            queue: queue.clone(),
            thread: Some(thread),
        })
    }

    /// Resets the descriptor after a wake-up and re-arms it; then get with `try_get` until it
    /// reports [`Error::Empty`](crate::Error::Empty) (or `Closed`).
    pub fn clear(&self) {
        sys::eventfd_drain(self.watch.efd.as_fd());
        {
            let mut state = self.watch.state();
            state.armed = true;
            state.clears += 1;
        }
        self.watch.rearm.notify_one();
    }
}

/// The watcher thread: armed → wait for a message → signal → wait for `clear` → armed.
fn watch_queue(watch: &Watch, queue: &RawQueue) {
    loop {
        let clears = {
            let mut state = watch.state();
            while !state.armed && !watch.stopped() {
                state = watch
                    .rearm
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.clears
        };
        if watch.stopped() {
            return;
        }
        queue.ring.wait_readable(|| watch.stopped());
        if watch.stopped() {
            return;
        }
        let mut state = watch.state();
        // A `clear` since we looked: the message we saw may be gone; look again.
        if state.clears == clears {
            state.armed = false;
            sys::eventfd_signal(watch.efd.as_fd());
        }
    }
}

impl Drop for QueueReadiness {
    fn drop(&mut self) {
        // SeqCst: see `Watch::stopped`.
        self.watch.stop.store(1, Ordering::SeqCst);
        {
            let _state = self.watch.state();
            self.watch.rearm.notify_one();
        }
        self.queue.ring.wake_readable_waiters();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl AsFd for QueueReadiness {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.watch.efd.as_fd()
    }
}

impl AsRawFd for QueueReadiness {
    fn as_raw_fd(&self) -> RawFd {
        self.watch.efd.as_raw_fd()
    }
}

impl fmt::Debug for QueueReadiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueReadiness")
            .field("fd", &self.watch.efd.as_raw_fd())
            .finish_non_exhaustive()
    }
}
