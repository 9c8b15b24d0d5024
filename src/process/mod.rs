//! Processes: [`Process`], [`spawn`], start methods, [`init`], and the process tree queries.
//!
//! # Trust model
//! - **Who may start a child.** Only a process that can hand a child its private start-up
//!   channel: the parent itself (`Spawn`: an inherited pipe named in `SHMPROC_CHILD`; `Fork`:
//!   memory), or the forkserver on the parent's behalf over a socket pair that only the
//!   server inherited (nothing is named in the file system or a namespace). Whoever can set a
//!   program's environment and descriptors can run that program anyway, so the variable gives
//!   them nothing new, with one exception handled by [`init`]: a program with elevated
//!   privileges (`AT_SECURE`) never follows the variable.
//! - **What a child trusts.** Its start-up message, after checking it whole: it runs the
//!   same executable file as its parent, the target id is in the message's own target table,
//!   every descriptor index names a distinct inherited descriptor. The child maps the
//!   segments and takes the descriptors that came with its arguments
//!   (`crate::transfer`), and nothing by number.
//! - **What nobody trusts.** Shared memory, pipes, queues and sockets carry data, never code:
//!   a function to run is named by an id into the table the process learned at start
//!   (`target`), checked before use. Values read from shared memory are validated; a lock
//!   owner is dead only on definite evidence.
//!
//! Invariants:
//! - Every started child is in the registry of this process until it has been reaped (by
//!   [`Process::join`], [`Process::is_alive`], [`Process::exitcode`], [`active_children`] or
//!   the next start), so no child stays a zombie once anything looks at it, even if its
//!   [`Process`] was dropped.
//! - The arguments a child was started with live in the parent until the child is reaped:
//!   the child attaches the shared objects inside them by token, which needs them alive
//!   (Python's guideline "explicitly pass resources to child processes").
//! - Reference counts belong to the process that took them: a `Fork` child decodes its own
//!   copy of the arguments, so it holds counted references, like a spawned child.
//! - A child is reaped exactly once: its exit code is recorded under a lock before anybody
//!   could see its pid reused.

mod fork;
mod forkserver;
pub(crate) mod init;
mod spawn;
mod start_method;
mod target;
pub(crate) mod test_support;

pub(crate) use fork::{ForkedHere, fork_here};
pub use forkserver::ensure_forkserver;
pub(crate) use init::take_inherited;
pub use init::{OwnerDeathDetection, init, owner_death_detection};
pub use start_method::{StartMethod, set_start_method, start_method};
#[cfg(feature = "mpi")]
pub(crate) use target::catch_item;
pub(crate) use target::{
    Driver, Outcome, Registrations, Target, TargetId, panic_message, record_panic_location,
    registration_frame, run_installed,
};

use crate::codec;
use crate::error::{Error, Result};
use crate::runtime;

use crate::sys;
use crate::transfer::Envelope;
use init::Boot;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::Termination;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use target::TargetTable;

/// What this process knows about itself: its name and its parent.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    name: String,
    parent: Option<(i32, String)>,
}

static IDENTITY: Mutex<Option<Identity>> = Mutex::new(None);
static COUNTER: Mutex<u64> = Mutex::new(0);

pub(crate) fn set_identity(id: Identity) {
    *IDENTITY.lock().unwrap_or_else(PoisonError::into_inner) = Some(id);
}

fn identity() -> Identity {
    IDENTITY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_else(|| Identity {
            name: "MainProcess".to_owned(),
            parent: None,
        })
}

/// A process's name and pid, as returned by [`current_process`], [`parent_process`] and
/// [`active_children`].
///
/// # Examples
/// ```
/// let me = shmproc::current_process();
/// assert_eq!(me.pid, std::process::id() as i32);
/// assert_eq!(me.name, "MainProcess"); // a child gets its builder's name, or `Process-N`
/// assert!(shmproc::parent_process().is_none()); // not started by shmproc
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The name: `"MainProcess"` for a program's first process, else the name given to the
    /// builder, or `"Process-N"`.
    pub name: String,
    /// The process id.
    pub pid: i32,
}

/// Returns the name and pid of the calling process.
pub fn current_process() -> ProcessInfo {
    ProcessInfo {
        name: identity().name,
        pid: i32::try_from(sys::current_pid()).unwrap_or(i32::MAX),
    }
}

/// Returns the process that started this one, or `None` in a program's first process.
///
/// For a child of the `ForkServer` method this is the process that asked for it, not the
/// server that forked it.
pub fn parent_process() -> Option<ProcessInfo> {
    identity()
        .parent
        .map(|(pid, name)| ProcessInfo { name, pid })
}

/// Returns the number of CPUs this process may run on, honouring its CPU affinity (as
/// `os.process_cpu_count()`, not the machine's total). At least 1.
pub fn cpu_count() -> usize {
    sys::cpu_count()
}

/// The descriptor that becomes readable when a child ends.
#[derive(Debug)]
enum Sentinel {
    /// A pidfd of a direct child (Spawn, Fork); exit status through `waitpid`.
    Pidfd(OwnedFd),
    /// The forkserver's per-child status pipe: 4 bytes of exit code, then end of file.
    Status(File),
}

/// A started child, as the start methods return it.
#[derive(Debug)]
struct Started {
    pid: i32,
    sentinel: Sentinel,
    /// What a `Fork` start leaves in the parent (see [`Leftovers`]).
    leftovers: Option<Leftovers>,
}

/// The parent's copy of what it handed a `Fork` child: the start-up message and the emptied
/// list of descriptors (closed at once). Kept until the child is reaped rather than freed
/// right after the fork: every allocator page that a free writes while the child lives is a
/// page the kernel copies (the fork shared it copy-on-write), once the child is gone the page
/// is the parent's alone again. (Encoded arguments larger than 64 KiB are freed at once.)
#[derive(Debug)]
struct Leftovers {
    #[allow(dead_code)] // Held, never read: freed when the child is reaped.
    boot: Boot,
    #[allow(dead_code)]
    fds: Vec<OwnedFd>,
}

impl Started {
    /// Opens a pidfd sentinel for the child `pid`; without one nobody could reap the child,
    /// so on failure the child is ended and reaped at once.
    fn with_pidfd(pid: i32) -> Result<Started> {
        match sys::pidfd_open(pid) {
            Ok(fd) => Ok(Started {
                pid,
                sentinel: Sentinel::Pidfd(fd),
                leftovers: None,
            }),
            Err(e) => {
                let _ = sys::fork::send_signal(pid, sys::fork::SIGKILL);
                let _ = sys::fork::wait_pid(pid, false);
                Err(Error::io("pidfd_open", e))
            }
        }
    }
}

struct ChildState {
    pid: i32,
    name: String,
    daemon: bool,
    sentinel: Sentinel,
    exit: Mutex<Option<i32>>,
    args: Mutex<Option<Box<dyn Any + Send>>>,
    leftovers: Mutex<Option<Leftovers>>,
}

static CHILDREN: Mutex<Vec<Arc<ChildState>>> = Mutex::new(Vec::new());

/// What shmproc prepares before each fork it makes (the `Fork` start method, `fork_here`,
/// the test support's `fork`) and finishes on each side after it: the references a child
/// needs for the manager proxies it inherits in memory (see `manager::inherit`). Dropping it
/// is its parent side.
pub(crate) struct PreFork(Option<crate::manager::Inherited>);

impl PreFork {
    /// Before the fork, in the process about to fork.
    pub(crate) fn prepare() -> PreFork {
        PreFork(crate::manager::before_fork())
    }

    /// In the child, first thing after the fork.
    pub(crate) fn in_child(self) {
        if let Some(i) = self.0 {
            i.in_child();
        }
    }

    /// In the parent after the fork (or when it failed).
    pub(crate) fn in_parent(self) {
        if let Some(i) = self.0 {
            i.in_parent();
        }
    }
}

/// Refuses a fork while the calling thread has live lock guards (leaked ones included): the
/// child would get copies of them, and of any `&mut` borrowed through them, while the parent
/// still holds the locks.
///
/// # Errors
/// [`Error::ForkWhileLocked`] with the count of such guards.
pub(crate) fn refuse_fork_with_guards() -> Result<()> {
    match sys::live_guards() {
        0 => Ok(()),
        guards => Err(Error::ForkWhileLocked { guards }),
    }
}

/// Forgets the parent's children in a `Fork` child (they are not its children).
pub(crate) fn forget_children_after_fork() {
    let mut kids = CHILDREN.lock().unwrap_or_else(PoisonError::into_inner);
    if kids.is_empty() {
        // Keep the (empty) list's buffer: freeing it would write the allocator's pages, each
        // one a page copied from the parent.
        return;
    }
    let old = std::mem::take(&mut *kids);
    drop(kids);
    for c in old {
        // The parent's argument handles are uncounted copies here (see `heap::handle`);
        // dropping them releases nothing. Their descriptors are this process's copies.
        drop(c);
    }
}

impl ChildState {
    fn recorded(&self) -> Option<i32> {
        *self.exit.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits up to `timeout` (`None`: forever) for the child to end; reaps it and returns its
    /// exit code if it has.
    fn wait(&self, timeout: Option<Duration>) -> Result<Option<i32>> {
        if let Some(code) = self.recorded() {
            return Ok(Some(code));
        }
        let fd = match &self.sentinel {
            Sentinel::Pidfd(fd) => fd.as_fd(),
            Sentinel::Status(f) => f.as_fd(),
        };
        if !sys::wait_readable(fd, timeout).map_err(|e| Error::io("poll", e))? {
            return Ok(None);
        }
        let mut exit = self.exit.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(code) = *exit {
            return Ok(Some(code));
        }
        let code = match &self.sentinel {
            Sentinel::Pidfd(_) => match sys::fork::wait_pid(self.pid, true) {
                Ok(Some(sys::fork::ExitStatus::Exited(c))) => c,
                Ok(Some(sys::fork::ExitStatus::Signaled(s))) => -s,
                Ok(None) => return Ok(None),
                Err(e) => return Err(Error::io("waitpid", e)),
            },
            Sentinel::Status(f) => {
                let mut buf = [0u8; 4];
                let mut r: &File = f;
                match r.read_exact(&mut buf) {
                    Ok(()) => i32::from_le_bytes(buf),
                    // The server died before reporting: its daemon children died with it.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => -sys::fork::SIGKILL,
                    Err(e) => return Err(Error::io("read child status", e)),
                }
            }
        };
        *exit = Some(code);
        drop(exit);
        // The child is gone: what it held in our segments is released now.
        crate::heap::release_holders_of(u32::try_from(self.pid).unwrap_or(0));
        crate::trace::event!(debug, pid = self.pid, exitcode = code, "process ended");
        drop(
            self.args
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        drop(
            self.leftovers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        unregister(self);
        Ok(Some(code))
    }

    fn signal(&self, signal: i32) -> Result<()> {
        if self.recorded().is_some() {
            return Ok(());
        }
        match &self.sentinel {
            Sentinel::Pidfd(fd) => sys::pidfd_send_signal(fd, signal),
            // The forkserver reaps this child; its pid cannot be reused before the server has
            // reported its status, which we have not read yet.
            Sentinel::Status(_) => match sys::fork::send_signal(self.pid, signal) {
                Err(e) if e.raw_os_error() == Some(libc_esrch()) => Ok(()),
                other => other,
            },
        }
        .map_err(|e| Error::io("kill", e))
    }
}

fn libc_esrch() -> i32 {
    sys::Errno::SRCH.raw_os_error()
}

fn unregister(state: &ChildState) {
    let mut kids = CHILDREN.lock().unwrap_or_else(PoisonError::into_inner);
    kids.retain(|c| !std::ptr::eq(Arc::as_ptr(c), state));
}

/// Reaps every finished child; returns the ones still running.
fn reap_finished() -> Vec<Arc<ChildState>> {
    let kids: Vec<_> = CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    kids.into_iter()
        .filter(|c| matches!(c.wait(Some(Duration::ZERO)), Ok(None)))
        .collect()
}

/// Returns the children of this process that are still running, reaping finished ones.
///
/// Like Python's `active_children()`, calling it is enough to leave no zombie behind for
/// children whose [`Process`] handle was dropped without joining.
pub fn active_children() -> Vec<ProcessInfo> {
    reap_finished()
        .iter()
        .map(|c| ProcessInfo {
            name: c.name.clone(),
            pid: c.pid,
        })
        .collect()
}

/// A started child process.
///
/// Made by [`Process::new`]`(f, args)…`[`.start()`](ProcessBuilder::start). The child runs
/// `f(args)` and exits with code 0, or 1 if `f` panics (the panic message goes to the child's
/// standard error), or the code given to `std::process::exit` inside `f`. Like `main`, `f` may
/// return `()` or a `Result<(), E: Debug>` (any [`Termination`]): an `Err` is printed as
/// `Error: {e:?}` on the child's standard error and exits with code 1.
///
/// - **Arguments** are encoded with serde (`shmproc::codec`); shared objects inside them
///   (`Value`, `Array`, `Lock`, …) arrive as handles to the same memory. The parent keeps its
///   copy of the arguments until the child is reaped, so those objects outlive the child's
///   need of them.
/// - **Targets** are `fn(A) -> R` items or non-capturing closures: with the `Spawn` method the
///   child is a fresh run of the same executable file, where only code, not captured state,
///   exists. The child checks that it runs the same file as its parent.
/// - **Programs** that start processes call [`init`] as the first line of `main`. **Tests**
///   and benchmarks enable shmproc's `test-support` feature, whose constructor runs `init`
///   before the harness's `main` (see `shmproc::testing`).
/// - **Start once**: [`ProcessBuilder::start`] consumes the builder, so a process cannot be
///   started twice (Python raises at run time; here it does not compile):
///
/// ```compile_fail
/// # fn f(_: ()) {}
/// let b = shmproc::Process::new(f, ());
/// let _p1 = b.start();
/// let _p2 = b.start(); // error[E0382]: use of moved value
/// ```
///
/// - **Dropping** a `Process` neither waits nor kills: the child keeps running, and is reaped
///   by the next start, [`active_children`], or when this process exits. Daemon children
///   ([`ProcessBuilder::daemon`]) are killed (`SIGKILL`) when this process ends, however it
///   ends; the signal is tied to the *thread* that started them, so start daemons from a
///   thread that outlives them (the main thread, typically).
///
/// It implements [`AsFd`]: the descriptor (a pidfd, or a status pipe for `ForkServer`
/// children) becomes readable when the child ends, for use with `poll` or
/// `connection::wait`.
///
/// # Examples
/// ```no_run
/// use shmproc::{Process, Value};
///
/// fn f(n: Value<f64>) {
///     n.set(3.1415927).unwrap();
/// }
///
/// fn main() -> shmproc::Result<()> {
///     shmproc::init();
///     let num = Value::new(0.0)?;
///     let p = Process::new(f, num.clone()).name("worker").start()?;
///     assert_eq!(p.join()?, 0);
///     assert_eq!(num.get()?, 3.1415927);
///     Ok(())
/// }
/// ```
pub struct Process {
    state: Arc<ChildState>,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.state.name)
            .field("pid", &self.state.pid)
            .field("daemon", &self.state.daemon)
            .field("exitcode", &self.state.recorded())
            .finish()
    }
}

/// A process that has not started yet: set its name, daemon flag and start method, then
/// [`start`](ProcessBuilder::start) it.
///
/// # Examples
/// ```no_run
/// use shmproc::{Process, StartMethod};
///
/// fn work(n: u32) {
///     assert!(n > 0);
/// }
///
/// fn main() -> shmproc::Result<()> {
///     shmproc::init();
///     let p = Process::new(work, 3)
///         .name("worker-1")
///         .daemon(true) // dies with this process
///         .start_method(StartMethod::ForkServer)
///         .start()?;
///     assert_eq!(p.join()?, 0);
///     Ok(())
/// }
/// ```
#[must_use = "a process builder does nothing until started"]
pub struct ProcessBuilder<A> {
    target: Target,
    args: A,
    name: Option<String>,
    daemon: bool,
    method: Option<StartMethod>,
}

impl<A> fmt::Debug for ProcessBuilder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessBuilder")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl Process {
    /// Prepares a process that will run `target(args)`; see [`ProcessBuilder`].
    ///
    /// Named after Python's `Process(target=…, args=…)`; in Rust it returns a builder, since
    /// a started and an unstarted process have different operations.
    #[allow(clippy::new_ret_no_self)] // DESIGN's spelling: `Process::new(f, args)…start()`.
    pub fn new<A, R>(target: fn(A) -> R, args: A) -> ProcessBuilder<A>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Termination,
    {
        ProcessBuilder {
            target: Target::terminating(target),
            args,
            name: None,
            daemon: false,
            method: None,
        }
    }

    /// Returns the child's pid.
    pub fn pid(&self) -> i32 {
        self.state.pid
    }

    /// Returns the child's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Returns whether the child dies with this process.
    pub fn is_daemon(&self) -> bool {
        self.state.daemon
    }

    /// Waits for the child to end, reaps it, and returns its [exit code](Process::exitcode).
    ///
    /// Blocks without limit; see [`join_timeout`](Process::join_timeout). Joining again
    /// returns the same code at once.
    ///
    /// # Errors
    /// [`Error::Io`] if waiting fails (for example if something else in this process reaped
    /// the child with `waitpid(-1)`).
    pub fn join(&self) -> Result<i32> {
        loop {
            if let Some(code) = self.state.wait(None)? {
                return Ok(code);
            }
        }
    }

    /// Waits at most `timeout` for the child to end; returns its exit code, or `None` if it
    /// is still running.
    ///
    /// # Errors
    /// As for [`join`](Process::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<i32>> {
        self.state.wait(Some(timeout))
    }

    /// Returns whether the child is still running (reaping it if it has ended).
    pub fn is_alive(&self) -> bool {
        matches!(self.state.wait(Some(Duration::ZERO)), Ok(None))
    }

    /// Returns the exit code: `None` while running, `Some(0)` after a normal end, `Some(n)`
    /// for `std::process::exit(n)` (1 for a panic), `Some(-N)` when killed by signal N.
    /// Never blocks; reaps the child if it has ended.
    pub fn exitcode(&self) -> Option<i32> {
        self.state.wait(Some(Duration::ZERO)).ok().flatten()
    }

    /// Sends `SIGTERM`. Does nothing if the child has already been reaped.
    ///
    /// Like Python's guideline says: shared objects the child was using (a `Lock` it held,
    /// a half-written `Array`) may be left in an intermediate state; locks report it with
    /// [`OwnerDied`](crate::OwnerDied).
    ///
    /// # Errors
    /// [`Error::Io`] if the signal cannot be sent.
    pub fn terminate(&self) -> Result<()> {
        self.state.signal(sys::fork::SIGTERM)
    }

    /// Sends `SIGKILL`. Does nothing if the child has already been reaped.
    ///
    /// # Errors
    /// [`Error::Io`] if the signal cannot be sent.
    pub fn kill(&self) -> Result<()> {
        self.state.signal(sys::fork::SIGKILL)
    }
}

impl Process {
    /// Another handle to the same child (for registries that reap what others dropped).
    pub(crate) fn share(&self) -> Process {
        Process {
            state: Arc::clone(&self.state),
        }
    }

    /// Registers a child this process forked outside the start methods.
    fn forked(started: Started) -> Process {
        let name = {
            let mut n = COUNTER.lock().unwrap_or_else(PoisonError::into_inner);
            *n += 1;
            format!("Process-{n}")
        };
        let state = Arc::new(ChildState {
            pid: started.pid,
            name,
            daemon: false,
            sentinel: started.sentinel,
            exit: Mutex::new(None),
            args: Mutex::new(None),
            leftovers: Mutex::new(started.leftovers),
        });
        CHILDREN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&state));
        Process { state }
    }
}

impl AsFd for Process {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.state.sentinel {
            Sentinel::Pidfd(fd) => fd.as_fd(),
            Sentinel::Status(f) => f.as_fd(),
        }
    }
}

impl<A> ProcessBuilder<A>
where
    A: Serialize + DeserializeOwned + Send + 'static,
{
    /// Sets the child's name (default `"Process-N"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Makes the child die (`SIGKILL`) when this process ends, also when it is killed.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// Overrides the start method for this process (default: [`start_method`]).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Starts the child and returns its handle. Finished children are reaped first.
    ///
    /// Returns once the child exists; it may not have reached its target yet.
    ///
    /// # Errors
    /// [`Error::NotInitialized`] if [`init`] never ran in this process and the start method
    /// re-executes the program (`Spawn`, `ForkServer`; in a test binary, see
    /// [`enable_test_support!`](crate::enable_test_support)), or in a child whose `main` did
    /// not call [`init`]; [`Error::ForkWhileThreaded`] for `Fork` when this process has other threads;
    /// [`Error::Codec`] if the arguments cannot be encoded; [`Error::Io`] if the child cannot
    /// be created (or the forkserver not reached); the errors of
    /// [`default_segment`](crate::default_segment).
    pub fn start(self) -> Result<Process> {
        let (p, _) = launch(self, false, &[])?;
        Ok(p)
    }

    /// Starts the child (with the builder's start method, as [`start`](Self::start) does),
    /// giving it `extra` as its inherited descriptors (the child takes the `i`-th with
    /// `take_inherited(i)`). A pool starts its workers so, each with the read end of its
    /// private registration pipe.
    ///
    /// # Errors
    /// As for [`start`](ProcessBuilder::start).
    pub(crate) fn start_with(self, extra: &[BorrowedFd<'_>]) -> Result<Process> {
        let (p, _) = launch(self, false, extra)?;
        Ok(p)
    }
}

/// Everything a start method needs.
struct Launch {
    boot: Boot,
    /// The arguments' transfer envelope (its bytes are already in `boot.args`), with the
    /// default heap added to its segments.
    envelope: Envelope,
    result: Option<File>,
}

fn launch<A>(
    b: ProcessBuilder<A>,
    want_result: bool,
    extra: &[BorrowedFd<'_>],
) -> Result<(Process, Option<File>)>
where
    A: Serialize + DeserializeOwned + Send + 'static,
{
    runtime::check_initialized()?;
    drop(reap_finished());
    let method = b.method.unwrap_or_else(start_method);
    let mut envelope = Envelope::seal(&b.args)?;
    let bytes = std::mem::take(&mut envelope.bytes);
    let default = runtime::default_segment()?;
    let segments = &mut envelope.segments;
    let default_index = match segments.iter().position(|s| s.id() == default.id()) {
        Some(i) => i,
        None => {
            segments.push(default);
            segments.len() - 1
        }
    };
    let (targets, main) = single_target(b.target)?;
    let (result_r, result_w) = if want_result {
        let (r, w) = sys::pipe().map_err(|e| Error::io("pipe", e))?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    let name = b.name.unwrap_or_else(|| {
        let mut n = COUNTER.lock().unwrap_or_else(PoisonError::into_inner);
        *n += 1;
        format!("Process-{n}")
    });
    let me = current_process();
    let boot = Boot {
        exe: Boot::exe_of(exe_identity()?),
        targets,
        main,
        args: bytes,
        segments: Vec::new(),
        default_segment: Some(default_index),
        result: None,
        extra: Vec::new(),
        handle_fds: Vec::new(),
        name: name.clone(),
        daemon: b.daemon,
        parent: (me.pid, me.name),
    };
    let launch = Launch {
        boot,
        envelope,
        result: result_w,
    };
    // Boxed, and room made for the registration, before the child exists (see `Leftovers`).
    let args: Box<dyn Any + Send> = Box::new(b.args);
    CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .reserve(1);
    let started = match method {
        StartMethod::Spawn => spawn::start(launch, extra)?,
        StartMethod::Fork => fork::start(launch, extra)?,
        StartMethod::ForkServer => forkserver::start(launch, extra)?,
    };
    crate::trace::event!(
        debug,
        pid = started.pid,
        name = %name,
        method = ?method,
        "process started"
    );
    let state = Arc::new(ChildState {
        pid: started.pid,
        name,
        daemon: b.daemon,
        sentinel: started.sentinel,
        exit: Mutex::new(None),
        args: Mutex::new(Some(args)),
        leftovers: Mutex::new(started.leftovers),
    });
    CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Arc::clone(&state));
    Ok((Process { state }, result_r))
}

/// The target table of a child that runs one function: `target`, as id 0.
fn single_target(target: Target) -> Result<(TargetTable, TargetId)> {
    let mut table = TargetTable::new();
    let id = table.register(target)?;
    Ok((table, id))
}

fn exe_identity() -> Result<sys::ExeId> {
    static EXE: OnceLock<sys::ExeId> = OnceLock::new();
    if let Some(id) = EXE.get() {
        return Ok(*id);
    }
    let id = sys::exe_identity().map_err(|e| Error::io("stat /proc/self/exe", e))?;
    Ok(*EXE.get_or_init(|| id))
}

/// Runs `f(args)` in a new child process and returns a handle to join it for the result.
///
/// Like [`std::thread::spawn`], for processes: `f` is an `fn(A) -> R` item or non-capturing
/// closure, `args` and the result travel encoded (shared objects inside re-attach), and the
/// child uses the current [`start_method`]. The function comes first, then its arguments, as
/// everywhere in shmproc ([`Process::new`], [`Pool::apply`](crate::Pool::apply),
/// [`exchange::start`](crate::exchange::start)) and in Python's `Process(target, args)`.
///
/// # Errors
/// As for [`ProcessBuilder::start`].
///
/// # Examples
/// ```no_run
/// fn main() -> shmproc::Result<()> {
///     shmproc::init();
///     let h = shmproc::spawn(|(a, b): (i32, i32)| a * b, (6, 7))?;
///     assert_eq!(h.join()?, 42);
///     Ok(())
/// }
/// ```
pub fn spawn<A, R>(f: fn(A) -> R, args: A) -> Result<JoinHandle<R>>
where
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    let builder = ProcessBuilder {
        target: Target::returning(f),
        args,
        name: None,
        daemon: false,
        method: None,
    };
    let (process, result) = launch(builder, true, &[])?;
    Ok(JoinHandle {
        process,
        result,
        _result: PhantomData,
    })
}

/// Starts a child that runs `f` through the driver `D` (see `target::Driver`), with the
/// current start method; join the handle for how the driver ended (a panic is
/// [`Error::ChildPanicked`]).
pub(crate) fn spawn_driven<D: Driver>(f: D::Function, args: D::Args) -> Result<JoinHandle<()>>
where
    D::Args: Serialize + Send,
{
    let builder = ProcessBuilder {
        target: Target::driven::<D>(f),
        args,
        name: None,
        daemon: false,
        method: None,
    };
    let (process, result) = launch(builder, true, &[])?;
    Ok(JoinHandle {
        process,
        result,
        _result: PhantomData,
    })
}

/// A child started by [`spawn`]: join it for the target's return value.
///
/// Dropping the handle does not stop the child; it is reaped later (like a detached thread).
///
/// # Examples
/// ```no_run
/// fn sum(v: Vec<u64>) -> u64 {
///     v.iter().sum()
/// }
///
/// fn main() -> shmproc::Result<()> {
///     shmproc::init();
///     let h = shmproc::spawn(sum, vec![1, 2, 3])?;
///     println!("child pid {}", h.process().pid());
///     assert_eq!(h.join()?, 6);
///     Ok(())
/// }
/// ```
pub struct JoinHandle<R> {
    process: Process,
    result: Option<File>,
    _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for JoinHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("process", &self.process)
            .finish_non_exhaustive()
    }
}

impl<R: DeserializeOwned> JoinHandle<R> {
    /// Returns the child's [`Process`] handle (pid, `kill`, `is_alive`, …).
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Waits for the child to end and returns what its target returned.
    ///
    /// Blocks without limit.
    ///
    /// # Errors
    /// [`Error::ChildPanicked`] with the panic message if the target panicked;
    /// [`Error::ChildFailed`] if the child ended without a result (killed, or
    /// `std::process::exit` inside the target); [`Error::ChildStartFailed`] if the child could
    /// not decode its arguments; decoding errors of `R`; [`Error::Io`].
    pub fn join(mut self) -> Result<R> {
        let frame = match self.result.take() {
            Some(mut r) => init::read_frame(&mut r).map_err(|e| Error::io("read result", e))?,
            None => None,
        };
        let code = self.process.join()?;
        let Some(frame) = frame else {
            return Err(Error::ChildFailed { exitcode: code });
        };
        match codec::from_bytes::<Outcome>(&frame)? {
            Outcome::Returned(bytes) => codec::from_bytes(&bytes),
            Outcome::Panicked(message) => Err(Error::ChildPanicked { message }),
            Outcome::Failed(reason) => Err(Error::ChildStartFailed { reason }),
            Outcome::Exited(exitcode) => Err(Error::ChildFailed { exitcode }),
        }
    }
}
