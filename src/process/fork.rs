//! The `Fork` start method: `fork()` the caller, allowed only while it is single-threaded.
//!
//! In a single-threaded process no lock can be held by a thread that the child lacks, so the
//! child may run ordinary code (allocate, lock stdout) after the fork, as a Python child does.
//! The child decodes its own copy of the arguments from the bytes encoded before the fork,
//! so it holds counted references to the shared objects, exactly like a spawned child; the
//! handles it inherited by copying memory belong to the parent and never release.
//!
//! # Safety
//! The one unsafe operation is `fork` itself, whose contract (async-signal-safe calls only in
//! the child of a multi-threaded process) is met by refusing to fork unless
//! `/proc/self/stat` reports exactly one thread. Only the calling thread could create another
//! thread between that check and the fork, and it is busy forking.

#![allow(unsafe_code)]

use super::init::{ForkHook, run_child};
use super::{Launch, Leftovers, PreFork, Started, forget_children_after_fork, forkserver};
use crate::error::{Error, Result};
use crate::sys;
use std::io::Write;
use std::os::fd::{BorrowedFd, OwnedFd};

/// The largest encoded arguments the parent keeps until a `Fork` child is reaped (see
/// `Leftovers`); larger ones are freed right after the fork.
const HOLD_ARGS_UP_TO: usize = 64 << 10;

/// Forks a child that runs `launch`'s target and also takes `extra` (by index, like every
/// descriptor it is handed).
pub(super) fn start(mut launch: Launch, extra: &[BorrowedFd<'_>]) -> Result<Started> {
    let threads = sys::thread_count().map_err(|e| Error::io("read /proc/self/stat", e))?;
    if threads != 1 {
        return Err(Error::ForkWhileThreaded { threads });
    }
    super::refuse_fork_with_guards()?;
    // Segments are inherited with the address space; the arguments re-attach by token.
    // Dropped before the fork, as everything the parent frees (see `Leftovers`).
    launch.boot.segments.clear();
    launch.boot.default_segment = None;
    drop(std::mem::take(&mut launch.envelope.segments));
    let mut fds: Vec<OwnedFd> = Vec::new();
    if let Some(w) = launch.result.take() {
        launch.boot.result = Some(0);
        fds.push(OwnedFd::from(w));
    }
    // Descriptors go through the same envelope table as for every start method: the child
    // takes them by index from what it was handed here, never by number.
    for fd in std::mem::take(&mut launch.envelope.fds) {
        launch.boot.handle_fds.push(fds.len());
        fds.push(fd);
    }
    for fd in extra {
        launch.boot.extra.push(fds.len());
        fds.push(sys::dup(*fd).map_err(|e| Error::io("dup", e))?);
    }
    // Unflushed output would otherwise be written twice, by parent and child. (Standard
    // error is unbuffered: nothing to flush, and taking its lock would write one more page
    // that the fork then shares copy-on-write.)
    let _ = std::io::stdout().flush();
    let parent = i32::try_from(sys::current_pid()).unwrap_or(0);
    register_thread_locals();
    let pre = PreFork::prepare();
    let hook = ForkHook::install();
    // SAFETY: the process has exactly one thread (checked above), so the child may run any
    // code: no lock can be held by a thread that does not exist in it.
    let forked = unsafe { sys::fork::fork() }.map_err(|e| Error::io("fork", e))?;
    match forked {
        sys::fork::Forked::Child => {
            hook.in_child();
            pre.in_child();
            forget_children_after_fork();
            forkserver::forget_after_fork();
            // By reference: moving the message would copy it (a `memcpy` whose code page the
            // child would fault in). It is never dropped: the child exits right after.
            let code = run_child(&mut launch.boot, fds, parent, false);
            super::init::exit(code)
        }
        sys::fork::Forked::Parent(pid) => {
            drop(hook);
            pre.in_parent();
            // Closed now (the result pipe's write end must be the child's alone); the list
            // and the message are freed when the child is reaped. Large encoded arguments go
            // now: holding them for the child's lifetime would cost more than the few pages
            // their free writes.
            fds.clear();
            if launch.boot.args.capacity() > HOLD_ARGS_UP_TO {
                launch.boot.args = Vec::new();
            }
            let mut started = Started::with_pidfd(pid)?;
            started.leftovers = Some(Leftovers {
                boot: launch.boot,
                fds,
            });
            Ok(started)
        }
    }
}

/// Registers, once per forking thread, the destructors of the thread-locals a `Fork` child
/// uses to decode its arguments, so the child inherits them registered: registering one in the
/// child (`__cxa_thread_atexit_impl`) would fault in pages of code and copy pages of data that
/// the parent has already.
fn register_thread_locals() {
    thread_local! {
        static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if !DONE.get() {
        // Decoding `()` from no bytes touches every thread-local a decode uses.
        let _ = crate::transfer::open::<()>(
            &[],
            crate::transfer::Received::new(Vec::new(), Vec::new()),
        );
        DONE.set(true);
    }
}

/// What [`fork_here`] returns on each side.
pub(crate) enum ForkedHere<T> {
    /// In the parent: the child, registered like every started child.
    Parent(super::Process),
    /// In the child: its own decoded copy of the value.
    Child(T),
}

/// Forks the caller, which then continues in both processes (`os.fork`). The child gets its
/// own copy of `value` decoded from bytes encoded before the fork (counted references, like
/// a `Fork` child's arguments), and forgets the parent's children.
///
/// # Errors
/// [`Error::ForkWhileThreaded`] unless the caller is single-threaded;
/// [`Error::ForkWhileLocked`] while it has live lock guards; [`Error::Codec`] if
/// `value` cannot be encoded; [`Error::Io`] if `fork` or `pidfd_open` fails.
pub(crate) fn fork_here<T>(value: &T) -> Result<ForkedHere<T>>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    crate::runtime::check_initialized()?;
    let threads = sys::thread_count().map_err(|e| Error::io("read /proc/self/stat", e))?;
    if threads != 1 {
        return Err(Error::ForkWhileThreaded { threads });
    }
    super::refuse_fork_with_guards()?;
    let envelope = crate::transfer::Envelope::seal(value)?;
    register_thread_locals();
    let _ = std::io::stdout().flush();
    let pre = PreFork::prepare();
    // SAFETY: the process has exactly one thread (checked above), so the child may run any
    // code: no lock can be held by a thread that does not exist in it.
    let forked = unsafe { sys::fork::fork() }.map_err(|e| Error::io("fork", e))?;
    match forked {
        sys::fork::Forked::Child => {
            pre.in_child();
            forget_children_after_fork();
            forkserver::forget_after_fork();
            let received = crate::transfer::Received::new(Vec::new(), envelope.fds);
            match crate::transfer::open(&envelope.bytes, received) {
                Ok(v) => Ok(ForkedHere::Child(v)),
                Err(e) => {
                    super::init::report(&format!("shmproc: forked child could not decode: {e}"));
                    super::init::exit(1)
                }
            }
        }
        sys::fork::Forked::Parent(pid) => {
            pre.in_parent();
            drop(envelope);
            Ok(ForkedHere::Parent(super::Process::forked(
                Started::with_pidfd(pid)?,
            )))
        }
    }
}
