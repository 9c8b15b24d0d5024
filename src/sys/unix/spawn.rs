//! `posix_spawn("/proc/self/exe", …)`: re-executes the running program as a child.
//!
//! The child is the very file this process was started from: `/proc/self/exe` is resolved in
//! the (v)forked child before `exec`, where it still names the parent's executable inode, even
//! if the file has since been replaced on disk. Only the descriptors named in `keep` are
//! inherited: each gets a `posix_spawn_file_actions_adddup2(fd, fd)` action, which clears its
//! close-on-exec flag in the child only (POSIX.1-2024, glibc >= 2.29); every other descriptor
//! of the process stays close-on-exec. The child starts with an empty signal mask, whatever
//! the calling thread had; ignored signals stay ignored (`execve` keeps `SIG_IGN`), so a Rust
//! parent's ignored `SIGPIPE` stays ignored in a child that runs its target before the Rust
//! runtime's own start-up (from the `test-support` constructor).
//!
//! No code of ours runs between the fork and the `exec`: glibc performs the file actions.
//!
//! # Safety
//! Every pointer handed to libc points into a `CString` or a `Vec` of pointers that outlives
//! the call; the attribute and file-action objects are initialised before use and destroyed
//! exactly once (by a guard).
//!
//! # References
//! - `posix_spawn(3)`, `posix_spawn_file_actions_adddup2(3)`, `posix_spawnattr_setsigmask(3)`,
//!   `execve(2)`, `proc_pid_exe(5)`, `getauxval(3)` (`AT_SECURE`), `ld.so(8)`

#![allow(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

const SELF_EXE: &str = "/proc/self/exe";

/// The identity of an executable file: device, inode, size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExeId {
    /// `st_dev`.
    pub(crate) dev: u64,
    /// `st_ino`.
    pub(crate) ino: u64,
    /// `st_size`.
    pub(crate) size: u64,
    /// `st_mtime` in nanoseconds.
    pub(crate) mtime_ns: i64,
}

/// Returns the identity of the file this process is running (`stat("/proc/self/exe")`).
pub(crate) fn exe_identity() -> io::Result<ExeId> {
    let m = std::fs::metadata(SELF_EXE)?;
    Ok(ExeId {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: m
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(m.mtime_nsec()),
    })
}

/// `getauxval(AT_SECURE)`: returns whether this process runs with elevated privileges
/// (set-user-ID, set-group-ID or file capabilities), in which case the dynamic loader and
/// libc already distrust the environment (`ld.so(8)` "secure-execution mode"), and so does
/// shmproc.
pub(crate) fn secure_execution() -> bool {
    // SAFETY: `getauxval` only reads the auxiliary vector the kernel placed in this process;
    // it is thread-safe and returns 0 for an absent entry.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

struct FileActions(MaybeUninit<libc::posix_spawn_file_actions_t>);

impl FileActions {
    fn new() -> io::Result<Self> {
        let mut fa = FileActions(MaybeUninit::uninit());
        // SAFETY: `fa.0` is writable storage for a `posix_spawn_file_actions_t`.
        let r = unsafe { libc::posix_spawn_file_actions_init(fa.0.as_mut_ptr()) };
        if r != 0 {
            // Not initialised: must not be destroyed.
            std::mem::forget(fa);
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(fa)
    }

    fn inherit(&mut self, fd: RawFd) -> io::Result<()> {
        // SAFETY: the object was initialised by `posix_spawn_file_actions_init`.
        let r = unsafe { libc::posix_spawn_file_actions_adddup2(self.0.as_mut_ptr(), fd, fd) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(())
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` and destroyed only here, once.
        unsafe { libc::posix_spawn_file_actions_destroy(self.0.as_mut_ptr()) };
    }
}

struct Attr(MaybeUninit<libc::posix_spawnattr_t>);

impl Attr {
    /// An attribute object that empties the signal mask.
    fn new() -> io::Result<Self> {
        let mut a = Attr(MaybeUninit::uninit());
        // SAFETY: `a.0` is writable storage for a `posix_spawnattr_t`.
        let r = unsafe { libc::posix_spawnattr_init(a.0.as_mut_ptr()) };
        if r != 0 {
            std::mem::forget(a);
            return Err(io::Error::from_raw_os_error(r));
        }
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `set` is writable storage for a `sigset_t`.
        unsafe { libc::sigemptyset(set.as_mut_ptr()) };
        // SAFETY: `sigemptyset` initialised `set`; `a.0` is initialised.
        let r = unsafe { libc::posix_spawnattr_setsigmask(a.0.as_mut_ptr(), set.as_ptr()) };
        check(r)?;
        // The flag constant fits in a c_short by definition (it is 0x08).
        let flags = libc::c_short::try_from(libc::POSIX_SPAWN_SETSIGMASK).unwrap_or(0);
        // SAFETY: `a.0` is initialised.
        let r = unsafe { libc::posix_spawnattr_setflags(a.0.as_mut_ptr(), flags) };
        check(r)?;
        Ok(a)
    }
}

impl Drop for Attr {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` and destroyed only here, once.
        unsafe { libc::posix_spawnattr_destroy(self.0.as_mut_ptr()) };
    }
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

/// Starts a new process running this program's executable file, with this process's
/// arguments and environment, minus every variable named in `unset`, plus `set`; only the
/// descriptors in `keep` (and 0, 1, 2) are inherited. Returns the child's pid.
pub(crate) fn spawn_self(
    unset: &[&str],
    set: &[(&str, &OsStr)],
    keep: &[BorrowedFd<'_>],
) -> io::Result<i32> {
    use std::os::fd::AsRawFd;
    let path = cstring(OsStr::new(SELF_EXE))?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| cstring(&a))
        .collect::<io::Result<_>>()?;
    let mut env: Vec<CString> = Vec::new();
    for (k, v) in std::env::vars_os() {
        if unset.iter().any(|u| OsStr::new(u) == k) || set.iter().any(|(s, _)| OsStr::new(s) == k) {
            continue;
        }
        env.push(kv(&k, &v)?);
    }
    for (k, v) in set {
        env.push(kv(OsStr::new(k), v)?);
    }
    let argv: Vec<*mut libc::c_char> = args
        .iter()
        .map(|a| a.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect();
    let envp: Vec<*mut libc::c_char> = env
        .iter()
        .map(|a| a.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect();
    let mut actions = FileActions::new()?;
    for fd in keep {
        actions.inherit(fd.as_raw_fd())?;
    }
    let attr = Attr::new()?;
    let mut pid: libc::pid_t = 0;
    // SAFETY: `path`, `argv` and `envp` are NUL-terminated strings / NULL-terminated arrays of
    // them that outlive the call; `actions` and `attr` are initialised; `pid` is writable.
    let r = unsafe {
        libc::posix_spawn(
            &mut pid,
            path.as_ptr(),
            actions.0.as_ptr(),
            attr.0.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
        )
    };
    check(r)?;
    Ok(pid)
}

/// `k=v` as a C string, built in one allocation (room for the NUL included, so `CString::new`
/// keeps the buffer).
fn kv(k: &OsStr, v: &OsStr) -> io::Result<CString> {
    let mut s = Vec::with_capacity(k.len() + v.len() + 2);
    s.extend_from_slice(k.as_bytes());
    s.push(b'=');
    s.extend_from_slice(v.as_bytes());
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}
