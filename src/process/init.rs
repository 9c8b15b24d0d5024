//! `init()` and the child side of every start method.
//!
//! A child started by shmproc learns what to run from a *start-up message* ([`Boot`]): the
//! target, its encoded arguments, which inherited descriptors are segments and which is the
//! result pipe, its name, and its parent. A `Spawn` child finds the message through the
//! environment variable `SHMPROC_CHILD` (`"1 <message fd> <fd> <fd> …"`, descriptors it
//! inherited); a forkserver child receives it over the server's socket; a `Fork` child gets it
//! in memory.
//!
//! [`init`] is what makes a re-executed program a child: first thing in `main`, it looks for
//! the variable and, if present, runs the target and exits. A program that forgets it would
//! run its `main` again in every child; the variable then makes every shmproc constructor and
//! every process start fail with [`Error::NotInitialized`] instead of recursing.
//!
//! # Safety
//! Two unsafe operations live here. Removing `SHMPROC_CHILD` from the environment happens only
//! after checking that the process has a single thread, so nothing reads the environment
//! concurrently. Running the target relies on the contract of [`Target::run`]: the start-up
//! message came through a private channel from the parent, and the executable's identity is
//! compared with the parent's before the target is resolved.

#![allow(unsafe_code)]

use super::target::{Outcome, Target};
use super::{Identity, set_identity};
use crate::codec;
use crate::error::{Error, Result};
use crate::segment::{Segment, registry};
use crate::sys;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::{Mutex, PoisonError};

/// A child's start-up message.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Boot {
    /// Identity of the parent's executable file: `(dev, ino, size, mtime_ns)`.
    pub(crate) exe: (u64, u64, u64, i64),
    /// What to run.
    pub(crate) target: Target,
    /// The encoded arguments.
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
    /// eventfds), in the order `fdpass::collect` returned them.
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
/// Tests have no `main` of their own: the `test-support` feature runs `init` from a
/// constructor before the test harness starts (see [`Process`](crate::Process)).
///
/// A child whose `main` does not call `init` (or calls it too late) does not recurse: every
/// shmproc constructor and every process start in it fails with [`Error::NotInitialized`].
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
    registry::mark_initialized();
    let _ = owner_death_detection();
    let Some(var) = std::env::var_os(registry::CHILD_ENV) else {
        return;
    };
    // Grandchildren started some other way (std::process::Command, …) must not believe they
    // are shmproc children. Changing the environment is only sound while no other thread can
    // read it; `init` runs first in `main`, and we check rather than trust that.
    if sys::thread_count().is_ok_and(|n| n == 1) {
        // SAFETY: the process has a single thread (checked just above), so no other thread
        // reads or writes the environment concurrently.
        unsafe {
            std::env::remove_var(registry::CHILD_ENV);
        }
    }
    let code = match spawned_child(&var.to_string_lossy()) {
        Ok((boot, fds)) => {
            let parent = boot.parent.0;
            run_child(boot, fds, parent, true)
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

fn report(msg: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{msg}");
}

/// Flushes standard output and error, then ends the process at once (no destructors: in a
/// `Fork` child they belong to the parent's copy of the world).
pub(crate) fn exit(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    sys::fork::exit_immediately(code)
}

/// Reads a `Spawn` child's start-up message and adopts its inherited descriptors.
fn spawned_child(var: &str) -> Result<(Boot, Vec<OwnedFd>)> {
    let bad = || Error::ChildStartFailed {
        reason: format!("malformed {} variable", registry::CHILD_ENV),
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
    let mut bytes = Vec::new();
    boot_file
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read start-up message", e))?;
    let boot: Boot = codec::from_bytes(&bytes)?;
    Ok((boot, fds))
}

/// Runs a child: dies with its parent if a daemon, attaches segments, runs the target, sends
/// the outcome. Returns the exit code. `real_parent` is the pid of the process that actually
/// created this one (the forkserver, for its children). `exe_check` compares this process's
/// executable file with the parent's (not needed in a `Fork` child, a copy of the parent).
pub(crate) fn run_child(boot: Boot, fds: Vec<OwnedFd>, real_parent: i32, exe_check: bool) -> i32 {
    let mut fds: Vec<Option<OwnedFd>> = fds.into_iter().map(Some).collect();
    let mut take = |i: usize| fds.get_mut(i).and_then(Option::take);
    let mut result = boot.result.and_then(&mut take).map(File::from);
    let outcome = prepare_and_run(&boot, &mut take, real_parent, exe_check);
    let code = match &outcome {
        Outcome::Returned(_) => 0,
        Outcome::Exited(code) => *code,
        Outcome::Panicked(_) => 1,
        Outcome::Failed(reason) => {
            report(&format!(
                "shmproc: child process could not run its target: {reason}"
            ));
            1
        }
    };
    if let (Some(w), Ok(bytes)) = (result.as_mut(), codec::to_bytes(&outcome)) {
        let _ = write_frame(w, &bytes);
    }
    code
}

fn prepare_and_run(
    boot: &Boot,
    take: &mut impl FnMut(usize) -> Option<OwnedFd>,
    real_parent: i32,
    exe_check: bool,
) -> Outcome {
    if boot.daemon {
        match sys::die_with_parent(real_parent) {
            Ok(true) => {}
            // The parent died before the death signal was armed: do what it would have done.
            Ok(false) => exit(1),
            Err(e) => return Outcome::Failed(format!("prctl(PR_SET_PDEATHSIG): {e}")),
        }
    }
    // A forked child is a copy of its parent's image: nothing to check there.
    if exe_check {
        match sys::exe_identity() {
            Ok(id) if Boot::exe_of(id) == boot.exe => {}
            Ok(_) => return Outcome::Failed(Error::NotSameExecutable.to_string()),
            Err(e) => return Outcome::Failed(format!("stat /proc/self/exe: {e}")),
        }
    }
    set_identity(Identity {
        name: boot.name.clone(),
        parent: Some(boot.parent.clone()),
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
            registry::adopt_default_segment(seg.clone());
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
    // SAFETY: `boot.target` came from our parent's `Target::of` through a private channel,
    // and the executable identity was checked just above. The arguments are decoded inside,
    // with the descriptors their handles carry at hand.
    let outcome =
        crate::fdpass::with_received(handle_fds, || unsafe { boot.target.run(&boot.args) });
    drop(segments);
    outcome
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
