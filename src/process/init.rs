//! `init()` and the child side of every start method.
//!
//! A child started by shmproc learns what to run from a *start-up message* ([`Boot`]): its
//! table of targets and which one to run, its encoded arguments, which inherited descriptors
//! are segments, handle descriptors and the result pipe, its name, and its parent. A `Spawn`
//! child finds the message through the environment variable `SHMPROC_CHILD` (`"1 <message fd>
//! <fd> <fd> …"`, descriptors it inherited); a forkserver child receives it over the server's
//! socket; a `Fork` child gets it in memory.
//!
//! [`init`] is what makes a re-executed program a child: first thing in `main`, it looks for
//! the variable and, if present, runs the target and exits. A program that forgets it would
//! run its `main` again in every child; the variable then makes every shmproc constructor and
//! every process start fail with [`Error::NotInitialized`] instead of recursing.
//!
//! # What a child trusts
//! - In a process running with elevated privileges (`AT_SECURE`: set-user-ID, set-group-ID,
//!   file capabilities) the environment belongs to a less privileged caller, so `init`
//!   ignores `SHMPROC_CHILD` entirely: such a program is never a shmproc child.
//! - Otherwise the variable only names descriptors this process inherited; the message read
//!   from them is validated *completely* before anything in it is used ([`Boot::validate`]):
//!   the executable identity first, then the target id against the message's own table, then
//!   every descriptor index (in range, each used once). Only then are segments mapped,
//!   targets installed and arguments decoded.
//!
//! # Safety
//! Two unsafe operations live here. Removing `SHMPROC_CHILD` from the environment happens only
//! after checking that the process has a single thread, so nothing reads the environment
//! concurrently. Installing the message's target table relies on the contract of
//! [`install`]: the start-up message came through a private channel from the parent, and the
//! executable's identity is compared with the parent's before the table is installed.

#![allow(unsafe_code)]

use super::target::{
    Outcome, TargetId, TargetTable, install, record_panic_location, run_installed,
};
use super::{Identity, set_identity};
use crate::codec;
use crate::error::{Error, Result};
use crate::runtime;
use crate::segment::Segment;
use crate::sys;
use crate::transfer::Received;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::{Mutex, PoisonError, RwLock};

/// A child's start-up message.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Boot {
    /// Identity of the parent's executable file: `(dev, ino, size, mtime_ns)`.
    pub(crate) exe: (u64, u64, u64, i64),
    /// The functions this child may run: the only code addresses it ever learns.
    pub(crate) targets: TargetTable,
    /// Which of them to run.
    pub(crate) main: TargetId,
    /// The encoded arguments.
    #[serde(with = "crate::codec::bytes")]
    pub(crate) args: Vec<u8>,
    /// Indices (into the inherited descriptors) of segments to attach.
    pub(crate) segments: Vec<usize>,
    /// Which of [`segments`](Boot::segments) is the parent's default heap.
    pub(crate) default_segment: Option<usize>,
    /// Index of the result pipe's write end, when the parent wants the target's result.
    pub(crate) result: Option<usize>,
    /// Indices of further descriptors the target takes with `take_inherited`.
    pub(crate) extra: Vec<usize>,
    /// Indices of the descriptors that handles in the arguments carry (connections'
    /// eventfds), in the order of the transfer envelope.
    pub(crate) handle_fds: Vec<usize>,
    /// The child's name.
    pub(crate) name: String,
    /// Whether the child dies with its parent.
    pub(crate) daemon: bool,
    /// The parent's pid and name.
    pub(crate) parent: (i32, String),
}

impl Boot {
    pub(crate) fn exe_of(id: sys::ExeId) -> (u64, u64, u64, i64) {
        (id.dev, id.ino, id.size, id.mtime_ns)
    }

    /// Checks the whole message before anything in it is resolved: the executable identity
    /// (when `exe_check`: not needed in a `Fork` child, a copy of its parent), the target id
    /// against the table, and every descriptor index against the `fds` descriptors that
    /// arrived (in range, each named once).
    ///
    /// # Errors
    /// [`Error::NotSameExecutable`]; [`Error::UnknownTarget`]; [`Error::ChildStartFailed`]
    /// for a bad index; [`Error::Io`] if the executable cannot be identified.
    pub(crate) fn validate(&self, fds: usize, exe_check: bool) -> Result<()> {
        if exe_check {
            let id = sys::exe_identity().map_err(|e| Error::io("stat /proc/self/exe", e))?;
            if Boot::exe_of(id) != self.exe {
                return Err(Error::NotSameExecutable);
            }
        }
        self.targets.get(self.main)?;
        let bad = |what: &str| Error::ChildStartFailed {
            reason: format!("start-up message: {what}"),
        };
        let mut named = vec![false; fds];
        let mut mark = |i: usize| match named.get_mut(i) {
            Some(seen) if !*seen => {
                *seen = true;
                Ok(())
            }
            Some(_) => Err(bad(&format!("descriptor {i} named twice"))),
            None => Err(bad(&format!("descriptor {i} of {fds} named"))),
        };
        // One plain loop per list: a chained iterator compiles to a jump table in read-only
        // data, a page that a `Fork` child would fault in for this check alone.
        if let Some(i) = self.result {
            mark(i)?;
        }
        for list in [&self.segments, &self.extra, &self.handle_fds] {
            for &i in list {
                mark(i)?;
            }
        }
        if self
            .default_segment
            .is_some_and(|d| d >= self.segments.len())
        {
            return Err(bad("default heap index out of range"));
        }
        Ok(())
    }
}

/// Descriptors a spawned target may take (for example the forkserver's socket).
static INHERITED: Mutex<Vec<(usize, OwnedFd)>> = Mutex::new(Vec::new());

/// Takes the `i`-th descriptor of [`Boot::extra`]; `None` if absent or taken already.
pub(crate) fn take_inherited(i: usize) -> Option<OwnedFd> {
    let mut v = INHERITED.lock().unwrap_or_else(PoisonError::into_inner);
    let pos = v.iter().position(|(k, _)| *k == i)?;
    Some(v.swap_remove(pos).1)
}

/// Diverts a child process started by shmproc to its target; returns at once otherwise.
///
/// Call it as the **first line of `main`** of every program that starts processes. With the
/// `Spawn` start method (the default), a child re-executes the program's own file; `init`
/// recognises it, attaches the shared objects passed in the arguments, runs the target, and
/// exits the child with code 0 (or 1 if the target panicked). In the parent it only records
/// that it ran, at the cost of one environment lookup.
///
/// Tests have no `main` of their own: [`enable_test_support!`](crate::enable_test_support)
/// (or the `test-support` feature) runs `init` from a constructor before the test harness
/// starts.
///
/// A program that never called `init` cannot start a `Spawn` or `ForkServer` child: `start()`
/// fails with [`Error::NotInitialized`] before the child exists. A child whose `main` does not
/// call `init` (or calls it too late) does not recurse: every shmproc constructor and every
/// process start in it fails with [`Error::NotInitialized`].
///
/// A program running with elevated privileges (set-user-ID, set-group-ID or file
/// capabilities: `AT_SECURE`) is never treated as a child: `init` ignores the variable there,
/// since whoever ran the program chose its environment.
///
/// # Examples
/// ```no_run
/// fn f(name: String) {
///     println!("hello {name}");
/// }
///
/// fn main() -> shmproc::Result<()> {
///     shmproc::init();
///     let p = shmproc::Process::new(f, "bob".to_owned()).start()?;
///     p.join()?;
///     Ok(())
/// }
/// ```
pub fn init() {
    runtime::mark_initialized();
    let Some(var) = std::env::var_os(runtime::CHILD_ENV) else {
        // Probe `/proc` now, while descriptors are plentiful, so later verdicts come from the
        // cache. A child skips this: it probes on first need (a contended lock), which keeps
        // its start as short as the program's own.
        let _ = owner_death_detection();
        return;
    };
    // Grandchildren started some other way (std::process::Command, …) must not believe they
    // are shmproc children. Changing the environment is only sound while no other thread can
    // read it; `init` runs first in `main`, and we check rather than trust that.
    if sys::thread_count().is_ok_and(|n| n == 1) {
        // SAFETY: the process has a single thread (checked just above), so no other thread
        // reads or writes the environment concurrently.
        unsafe {
            std::env::remove_var(runtime::CHILD_ENV);
        }
    }
    // With elevated privileges the environment is the (less privileged) caller's: never
    // follow it to a start-up message.
    if sys::secure_execution() {
        return;
    }
    let code = match spawned_child(&var.to_string_lossy()) {
        Ok((mut boot, fds)) => {
            let parent = boot.parent.0;
            let code = run_child(&mut boot, fds, parent, true);
            // What is left of the message holds memory only: the process exits right after.
            std::mem::forget(boot);
            code
        }
        Err(e) => {
            report(&format!("shmproc: cannot start child process: {e}"));
            1
        }
    };
    exit(code)
}

/// How well this process can tell that a lock's owner died, checked by [`init`] (and on first
/// use otherwise).
///
/// A robust lock (`Lock`, `RLock`, a `Condition`'s, a `Value`'s or `Array`'s) is handed to a
/// waiter with `OwnerDied` only when its owner is *definitely* dead; when the owner's liveness
/// cannot be probed, the owner counts as alive. Nothing is printed: ask here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OwnerDeathDetection {
    /// `/proc` belongs to this process's PID namespace and reads: dead owners are detected
    /// (killed, exited, zombie), including when their thread id was reused since.
    Full,
    /// `/proc` is missing or belongs to another PID namespace, but `kill(tid, 0)` answers:
    /// owners whose process was reaped are detected; a zombie owner, or an owner whose id was
    /// reused, is not (until the zombie is reaped).
    Partial,
    /// Neither `/proc` nor `kill` answers: no dead owner is ever detected. A wait for a lock
    /// whose holder died ends only at its timeout (`lock_timeout`, `acquire_timeout`); an
    /// untimed `lock()` blocks forever.
    Unavailable,
}

/// Returns how well this process detects dead lock owners (see [`OwnerDeathDetection`]).
///
/// # Examples
/// ```
/// use shmproc::OwnerDeathDetection;
/// let lock = shmproc::Lock::new()?;
/// if shmproc::owner_death_detection() != OwnerDeathDetection::Full {
///     // A dead holder may go unnoticed: bound every wait.
///     let _guard = lock.lock_timeout(std::time::Duration::from_secs(5));
/// }
/// # Ok::<(), shmproc::Error>(())
/// ```
pub fn owner_death_detection() -> OwnerDeathDetection {
    match sys::liveness_probe() {
        sys::ProbeHealth::Full => OwnerDeathDetection::Full,
        sys::ProbeHealth::SignalOnly => OwnerDeathDetection::Partial,
        sys::ProbeHealth::None => OwnerDeathDetection::Unavailable,
    }
}

/// Reports a child's start-up failure: a `tracing` error event with the `tracing` feature,
/// a line on standard error without it.
pub(crate) fn report(msg: &str) {
    #[cfg(feature = "tracing")]
    crate::trace::event!(error, "{msg}");
    #[cfg(not(feature = "tracing"))]
    {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{msg}");
    }
}

/// Flushes standard output, then ends the process at once (no destructors: in a `Fork`
/// child they belong to the parent's copy of the world). Standard error is unbuffered
/// (`std::io::Stderr`): there is nothing to flush, and in a `Fork` child taking its lock would
/// copy one more page of the parent's.
pub(crate) fn exit(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    sys::fork::exit_immediately(code)
}

/// Reads a `Spawn` child's start-up message and adopts its inherited descriptors.
fn spawned_child(var: &str) -> Result<(Boot, Vec<OwnedFd>)> {
    let bad = || Error::ChildStartFailed {
        reason: format!("malformed {} variable", runtime::CHILD_ENV),
    };
    let mut words = var.split(' ');
    if words.next() != Some("1") {
        return Err(bad());
    }
    let boot_fd: i32 = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
    let adopt =
        |fd: i32| sys::fork::adopt_inherited_fd(fd).map_err(|e| Error::io("inherit descriptor", e));
    let mut boot_file = File::from(adopt(boot_fd)?);
    let fds = words
        .map(|w| w.parse::<i32>().map_err(|_| bad()).and_then(adopt))
        .collect::<Result<Vec<_>>>()?;
    // Plain reads: `File::read_to_end` would first `statx` and `lseek` the pipe for a size
    // hint it cannot give, then grow from 32-byte probe reads (three system calls more).
    let mut bytes = Vec::with_capacity(BOOT_READ);
    read_all(&mut boot_file, &mut bytes).map_err(|e| Error::io("read start-up message", e))?;
    let boot: Boot = codec::from_bytes(&bytes)?;
    Ok((boot, fds))
}

/// The first read size for a start-up message (most are a few hundred bytes).
const BOOT_READ: usize = 4096;

/// Reads `r` to its end into `buf`, with plain `read` calls into `buf`'s spare capacity.
fn read_all(r: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; BOOT_READ];
    loop {
        match r.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Runs a child: dies with its parent if a daemon, attaches segments, runs the target, sends
/// the outcome. Returns the exit code. `real_parent` is the pid of the process that actually
/// created this one (the forkserver, for its children). `exe_check` compares this process's
/// executable file with the parent's (not needed in a `Fork` child, a copy of the parent).
/// Every caller ends the process with the returned code right after, without dropping what
/// is left of `boot` (its descriptors are taken; freeing its buffers would only write the
/// allocator's pages, in a `Fork` child pages copied from the parent).
pub(crate) fn run_child(
    boot: &mut Boot,
    fds: Vec<OwnedFd>,
    real_parent: i32,
    exe_check: bool,
) -> i32 {
    let fd_count = fds.len();
    let mut fds: Vec<Option<OwnedFd>> = fds.into_iter().map(Some).collect();
    let mut take = |i: usize| fds.get_mut(i).and_then(Option::take);
    let mut result = boot.result.and_then(&mut take).map(File::from);
    let outcome = prepare_and_run(boot, fd_count, &mut take, real_parent, exe_check);
    if let Outcome::Failed(reason) = &outcome {
        report(&format!(
            "shmproc: child process could not run its target: {reason}"
        ));
    }
    let code = match &outcome {
        Outcome::Returned(_) => 0,
        Outcome::Exited(code) => *code,
        Outcome::Panicked(_) | Outcome::Failed(_) => 1,
    };
    // Encoded only for a parent that wants the outcome: an unused buffer is an allocation
    // (in a `Fork` child, allocator pages copied from the parent).
    if let Some(w) = result.as_mut()
        && let Ok(bytes) = codec::to_bytes(&outcome)
    {
        let _ = write_frame(w, &bytes);
    }
    // Not dropped: the process exits right after, and the drop's four-way branch on the
    // variant would read a jump table (a read-only data page a `Fork` child would fault in).
    std::mem::forget(outcome);
    code
}

fn prepare_and_run(
    boot: &mut Boot,
    fd_count: usize,
    take: &mut impl FnMut(usize) -> Option<OwnedFd>,
    real_parent: i32,
    exe_check: bool,
) -> Outcome {
    // Nothing in the message is used before all of it has been checked.
    if let Err(e) = boot.validate(fd_count, exe_check) {
        return Outcome::Failed(e.to_string());
    }
    if boot.daemon {
        match sys::die_with_parent(real_parent) {
            Ok(true) => {}
            // The parent died before the death signal was armed: do what it would have done.
            Ok(false) => exit(1),
            Err(e) => return Outcome::Failed(format!("prctl(PR_SET_PDEATHSIG): {e}")),
        }
    }
    #[cfg(feature = "tracing")]
    let span_name = boot.name.clone();
    // Moved, not cloned: every allocation in a `Fork` child touches a copy-on-write page.
    set_identity(Identity {
        name: std::mem::take(&mut boot.name),
        parent: Some(std::mem::take(&mut boot.parent)),
    });
    let mut segments: Vec<Segment> = Vec::with_capacity(boot.segments.len());
    for (k, &i) in boot.segments.iter().enumerate() {
        let Some(fd) = take(i) else {
            return Outcome::Failed(format!("segment descriptor {i} missing"));
        };
        let seg = match Segment::from_fd(fd) {
            Ok(s) => s,
            Err(e) => return Outcome::Failed(format!("attach segment: {e}")),
        };
        if boot.default_segment == Some(k) {
            runtime::adopt_default_segment(seg.clone());
        }
        segments.push(seg);
    }
    {
        let mut inherited = INHERITED.lock().unwrap_or_else(PoisonError::into_inner);
        for (pos, &i) in boot.extra.iter().enumerate() {
            if let Some(fd) = take(i) {
                inherited.push((pos, fd));
            }
        }
    }
    let mut handle_fds = Vec::with_capacity(boot.handle_fds.len());
    for &i in &boot.handle_fds {
        match take(i) {
            Some(fd) => handle_fds.push(fd),
            None => return Outcome::Failed(format!("handle descriptor {i} missing")),
        }
    }
    install_panic_hook();
    // SAFETY: `boot.targets` came from our parent's `Target::returning`/`terminating`
    // through this child's private start-up channel, and `validate` compared the executable
    // identity with the parent's (a `Fork` child is a copy of its parent's image).
    unsafe { install(std::mem::replace(&mut boot.targets, TargetTable::new())) };
    #[cfg(feature = "tracing")]
    let _span =
        tracing::info_span!(target: "shmproc", "shmproc_child", name = %span_name, pid = sys::current_pid())
            .entered();
    // The arguments are decoded with exactly the segments and descriptors that came with
    // them; the target runs outside that scope.
    run_installed(boot.main, &boot.args, Received::new(segments, handle_fds))
        .unwrap_or_else(|e| Outcome::Failed(e.to_string()))
}

/// A panic hook as `std::panic::take_hook` returns it.
type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// The hook [`install_panic_hook`] found installed the first time it ran in this process
/// image; `None` until then.
static PREVIOUS_HOOK: RwLock<Option<PanicHook>> = RwLock::new(None);

/// Records the location of a panic in the target, then lets the hook installed before it
/// print as usual.
fn record_then_previous(info: &std::panic::PanicHookInfo<'_>) {
    record_panic_location(info.location().map(|l| l.to_string()));
    if let Some(previous) = PREVIOUS_HOOK
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
    {
        previous(info);
    }
}

/// Makes a panic in the target reach the parent with its location: a hook records it, then
/// calls the hook that was installed before.
///
/// The first time in a process image the previous hook goes to a static and the new hook is
/// a plain function, so installing it allocates nothing: in a `Fork` child an allocation
/// would fault in the allocator's code and copy its pages from the parent. A process image
/// that installed it once already (a child of a `Fork` child, a forkserver child) wraps the
/// current hook, whatever it is now, in a closure, as a hook set since must stay in the chain.
fn install_panic_hook() {
    if HOOK_FROM_PARENT.replace(false) {
        // A `Fork` child whose parent installed the hook around the fork (`ForkHook`).
        return;
    }
    let mut slot = PREVIOUS_HOOK
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    if slot.is_none() {
        *slot = Some(std::panic::take_hook());
        drop(slot);
        std::panic::set_hook(Box::new(record_then_previous));
        return;
    }
    drop(slot);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        record_panic_location(info.location().map(|l| l.to_string()));
        previous(info);
    }));
}

thread_local! {
    /// Set by [`ForkHook::install`] while the parent forks, so the `Fork` child knows its
    /// hook is in place (a thread-local: the child reads it without writing a page).
    static HOOK_FROM_PARENT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The child's panic hook, installed by the parent of a `Fork` child for the duration of the
/// fork, so that the child inherits it instead of installing it (which would fault in the
/// hook machinery's code and data pages in the child, on its start's critical path). The
/// parent's own hook is put back when this is dropped, in the parent after the fork (or when
/// the fork failed); the child forgets it.
///
/// Done only the first time in a process image (as [`install_panic_hook`]'s allocation-free
/// path) and never while panicking (`set_hook` would panic); otherwise the child installs
/// its hook itself, as before.
pub(crate) struct ForkHook(bool);

impl ForkHook {
    /// Installs the child's hook in this (single-threaded) process, if it can.
    pub(crate) fn install() -> ForkHook {
        if std::thread::panicking() {
            return ForkHook(false);
        }
        let mut slot = PREVIOUS_HOOK
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.is_some() {
            return ForkHook(false);
        }
        *slot = Some(std::panic::take_hook());
        drop(slot);
        std::panic::set_hook(Box::new(record_then_previous));
        HOOK_FROM_PARENT.set(true);
        ForkHook(true)
    }

    /// In the child: keeps the hook (and tells [`install_panic_hook`] it is there).
    pub(crate) fn in_child(self) {
        std::mem::forget(self);
    }
}

impl Drop for ForkHook {
    /// In the parent: puts its own hook back.
    fn drop(&mut self) {
        if !self.0 {
            return;
        }
        HOOK_FROM_PARENT.set(false);
        let previous = PREVIOUS_HOOK
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(previous) = previous {
            drop(std::panic::take_hook());
            std::panic::set_hook(previous);
        }
    }
}

/// Writes one length-prefixed frame to a pipe.
pub(crate) fn write_frame(w: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("result too large"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(bytes)
}

/// Reads one length-prefixed frame from a pipe; `None` if it ends first.
pub(crate) fn read_frame(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    if let Err(e) = r.read_exact(&mut len) {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Ok(None),
            _ => Err(e),
        };
    }
    let n = usize::try_from(u32::from_le_bytes(len)).unwrap_or(usize::MAX);
    if n > codec::MAX_MESSAGE {
        return Err(std::io::Error::other("result larger than the message cap"));
    }
    // Read incrementally: the length is only trusted as far as bytes actually arrive.
    let mut buf = Vec::new();
    r.take(u64::try_from(n).unwrap_or(u64::MAX))
        .read_to_end(&mut buf)?;
    if buf.len() != n {
        return Ok(None);
    }
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::target::Target;

    fn echo(x: u32) -> u32 {
        x
    }

    fn boot() -> Boot {
        let mut targets = TargetTable::new();
        let main = targets.register(Target::returning(echo)).unwrap();
        Boot {
            exe: (0, 0, 0, 0),
            targets,
            main,
            args: Vec::new(),
            segments: vec![1],
            default_segment: Some(0),
            result: Some(0),
            extra: Vec::new(),
            handle_fds: vec![2],
            name: "child".to_owned(),
            daemon: false,
            parent: (1, "MainProcess".to_owned()),
        }
    }

    /// Regression (issues 11 and 17): a start-up message is checked whole before anything in
    /// it is used; a forged target id never reaches a jump.
    #[test]
    fn start_up_messages_are_validated_before_use() {
        assert!(boot().validate(3, false).is_ok());
        let mut forged = boot();
        forged.main = TargetId(1);
        assert!(matches!(
            forged.validate(3, false),
            Err(Error::UnknownTarget {
                id: 1,
                registered: 1
            })
        ));
        let mut twice = boot();
        twice.handle_fds = vec![1];
        assert!(matches!(
            twice.validate(3, false),
            Err(Error::ChildStartFailed { .. })
        ));
        assert!(boot().validate(2, false).is_err());
        let mut no_heap = boot();
        no_heap.default_segment = Some(1);
        assert!(no_heap.validate(3, false).is_err());
        // The executable identity is checked first: (0, 0, 0, 0) is no file's.
        assert!(matches!(
            boot().validate(3, true),
            Err(Error::NotSameExecutable)
        ));
    }

    #[test]
    fn this_test_process_is_not_running_with_elevated_privileges() {
        assert!(!sys::secure_execution());
    }
}
