//! Process state below the process layer: the default heap, the child's environment variable,
//! and whether `shmproc::init()` ran.
//!
//! This is the state that every constructor without `_in` (`Value::new`, `Lock::new`, …)
//! reaches for, so it sits just above the heap and below `sync`, `shared` and everything else;
//! `process` reads and writes it when it starts or becomes a child.
//!
//! Invariants:
//! - The default heap is created at most once per process (or adopted once, by a child from
//!   its parent) and never replaced.
//! - A process that shmproc started as a child (the variable [`CHILD_ENV`] is set) creates no
//!   default heap of its own before `init()` ran: it would be a heap its parent never sees.

use crate::error::{Error, Result};
use crate::segment::Segment;
use std::sync::{Mutex, OnceLock, PoisonError};

/// Default size of the default heap: 1 GiB of address space (memory is used only as touched).
pub(crate) const DEFAULT_HEAP_LEN: u64 = 1 << 30;

static DEFAULT: OnceLock<Segment> = OnceLock::new();
static DEFAULT_LEN: Mutex<Option<u64>> = Mutex::new(None);

/// Sets the size of the default heap; effective only before its first use.
///
/// The environment variable `SHMPROC_HEAP_SIZE` (bytes) does the same without code.
/// Returns `false` if the default heap exists already.
pub fn set_default_heap_size(len: u64) -> bool {
    if DEFAULT.get().is_some() {
        return false;
    }
    *DEFAULT_LEN.lock().unwrap_or_else(PoisonError::into_inner) = Some(len);
    true
}

/// Returns the default heap: the segment that `Value::new`, `Array::new`, `Lock::new` and the
/// other constructors without `_in` allocate from. Created on first use; a child process
/// started by shmproc shares its parent's.
///
/// # Errors
/// As for [`Segment::create`]; [`Error::NotInitialized`] in a child process whose `main` did
/// not call `shmproc::init()` (it would otherwise get a heap of its own, unseen by its parent).
pub fn default_segment() -> Result<Segment> {
    if let Some(s) = DEFAULT.get() {
        return Ok(s.clone());
    }
    check_initialized()?;
    let len = DEFAULT_LEN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .or_else(|| {
            std::env::var("SHMPROC_HEAP_SIZE")
                .ok()
                .and_then(|s| s.trim().parse().ok())
        })
        .unwrap_or(DEFAULT_HEAP_LEN);
    let seg = Segment::create(len)?;
    Ok(DEFAULT.get_or_init(|| seg).clone())
}

/// Makes `seg` this process's default heap (a child adopting its parent's). Returns `false`
/// if a default heap exists already.
pub(crate) fn adopt_default_segment(seg: Segment) -> bool {
    DEFAULT.set(seg).is_ok()
}

/// The environment variable through which shmproc hands a spawned child its start-up message.
pub(crate) const CHILD_ENV: &str = "SHMPROC_CHILD";

static INITIALIZED: OnceLock<()> = OnceLock::new();

/// Records that `shmproc::init()` ran in this process.
pub(crate) fn mark_initialized() {
    let _ = INITIALIZED.set(());
}

/// Fails with [`Error::NotInitialized`] when this process is about to re-execute its own file
/// (a `Spawn` child, the forkserver) but `shmproc::init()` never ran here: the child would run
/// `main` (or a test harness) again instead of its target. The parent knows it before the
/// child exists, so the mistake is reported at `start()` rather than as a strange exit code.
pub(crate) fn check_may_reexecute() -> Result<()> {
    check_initialized()?;
    if INITIALIZED.get().is_none() {
        return Err(Error::NotInitialized);
    }
    Ok(())
}

/// Fails with [`Error::NotInitialized`] in a process that shmproc started as a child but whose
/// `main` never called `shmproc::init()`: such a process would redo its parent's work (and
/// start children of its own, recursively) instead of running its target.
pub(crate) fn check_initialized() -> Result<()> {
    if INITIALIZED.get().is_none() && std::env::var_os(CHILD_ENV).is_some() {
        return Err(Error::NotInitialized);
    }
    Ok(())
}
