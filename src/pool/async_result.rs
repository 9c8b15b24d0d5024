//! [`AsyncResult`]: the result of a task (or of a whole `map`) that is still running.

use super::Inner;
use crate::error::{Error, Result};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Where a job's outcome lands, shared by the thread that handles the replies and the
/// [`AsyncResult`].
pub(crate) struct ResultSlot<T> {
    state: Mutex<SlotState<T>>,
}

enum SlotState<T> {
    Pending,
    Ready(Result<T>),
    /// `get_timeout` handed the outcome out already.
    Taken {
        successful: bool,
    },
}

impl<T> ResultSlot<T> {
    pub(crate) fn new() -> Arc<ResultSlot<T>> {
        Arc::new(ResultSlot {
            state: Mutex::new(SlotState::Pending),
        })
    }

    /// Stores the outcome (the first one wins); the thread that delivered it then tells the
    /// waiters (`Inner::bump`).
    pub(crate) fn set(&self, r: Result<T>) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*s, SlotState::Pending) {
            *s = SlotState::Ready(r);
        }
    }

    fn is_ready(&self) -> bool {
        !matches!(
            *self.state.lock().unwrap_or_else(PoisonError::into_inner),
            SlotState::Pending
        )
    }
}

/// The outcome of [`Pool::apply_async`](crate::Pool::apply_async) or
/// [`Pool::map_async`](crate::Pool::map_async), arriving later.
///
/// Like CPython's `AsyncResult`, with two differences Rust asks for: [`get`](Self::get)
/// consumes it (the value is moved out, not copied), and [`successful`](Self::successful)
/// returns `None` before the outcome is known instead of raising. It never waits forever on a
/// dead worker: that task's outcome is [`Error::WorkerDied`]; a terminated (or dropped) pool
/// gives [`Error::PoolTerminated`].
///
/// A thread waiting on it takes the workers' replies itself while no other thread does, so
/// a result reaches it without a hop through the pool's handler thread.
pub struct AsyncResult<T> {
    slot: Arc<ResultSlot<T>>,
    pool: Arc<Inner>,
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(slot: Arc<ResultSlot<T>>, pool: Arc<Inner>) -> AsyncResult<T> {
        AsyncResult { slot, pool }
    }

    /// Waits for the outcome and returns it.
    ///
    /// # Errors
    /// The task's error ([`Error::TaskPanicked`], [`Error::WorkerDied`], …);
    /// [`Error::Empty`] if [`get_timeout`](Self::get_timeout) took the outcome already.
    pub fn get(self) -> Result<T> {
        self.take(None)
    }

    /// Waits at most `timeout` for the outcome and returns it (taking it: a later `get`
    /// returns [`Error::Empty`]).
    ///
    /// # Errors
    /// [`Error::Timeout`] if it is not ready in time (it can be asked again); otherwise as
    /// for [`get`](Self::get).
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        self.take(Some(timeout))
    }

    fn take(&self, timeout: Option<Duration>) -> Result<T> {
        if !self.wait_for(timeout) {
            return Err(Error::Timeout);
        }
        let mut s = self
            .slot
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let taken = SlotState::Taken {
            successful: matches!(*s, SlotState::Ready(Ok(_))),
        };
        match std::mem::replace(&mut *s, taken) {
            SlotState::Ready(r) => r,
            other => {
                *s = other;
                Err(Error::Empty)
            }
        }
    }

    /// Waits until the outcome is known.
    pub fn wait(&self) {
        self.wait_for(None);
    }

    /// Waits at most `timeout`; returns whether the outcome is known.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_for(Some(timeout))
    }

    fn wait_for(&self, timeout: Option<Duration>) -> bool {
        if self.slot.is_ready() {
            return true;
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        self.pool.wait_until(&mut || self.slot.is_ready(), deadline)
    }

    /// Returns whether the outcome is known.
    pub fn ready(&self) -> bool {
        self.slot.is_ready()
    }

    /// Returns whether the task succeeded: `None` while it runs.
    pub fn successful(&self) -> Option<bool> {
        match &*self
            .slot
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            SlotState::Pending => None,
            SlotState::Ready(r) => Some(r.is_ok()),
            SlotState::Taken { successful } => Some(*successful),
        }
    }
}
