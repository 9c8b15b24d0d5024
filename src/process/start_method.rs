//! Start methods: how a child process comes to exist.

use std::sync::{Mutex, PoisonError};

/// How [`Process::start`](crate::ProcessBuilder::start) creates a child.
///
/// | method | child is | cost here | caveats |
/// | --- | --- | --- | --- |
/// | `Spawn` (default) | a fresh run of this program's executable, diverted by [`init`](crate::init) | an `exec` and program start-up | `init()` must be the first line of `main` |
/// | `Fork` | a copy of the calling process | one `fork` | refused unless the caller is single-threaded and holds no lock guard |
/// | `ForkServer` | a fork of a single-threaded server, spawned on first use | one `fork` plus a round trip | the server starts from a clean state, not the caller's |
///
/// Python's names (`"spawn"`, `"fork"`, `"forkserver"`) in Rust spelling.
///
/// # Examples
/// ```
/// use shmproc::StartMethod;
/// assert_eq!(shmproc::start_method(), StartMethod::Spawn); // the default
/// shmproc::set_start_method(StartMethod::ForkServer); // for every later start
/// assert_eq!(shmproc::start_method(), StartMethod::ForkServer);
/// # shmproc::set_start_method(StartMethod::Spawn);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum StartMethod {
    /// Re-execute the program's own executable file (`posix_spawn("/proc/self/exe")`); the
    /// child gets the target, the encoded arguments and the descriptors of the shared objects
    /// inside them, and nothing else.
    #[default]
    Spawn,
    /// `fork()` the calling process. Allowed only while it has a single thread, because a
    /// forked child of a multi-threaded process may inherit locks (the allocator's, stdout's)
    /// held by threads that do not exist in it; otherwise
    /// [`Error::ForkWhileThreaded`](crate::Error::ForkWhileThreaded). Refused too while the
    /// calling thread has live lock guards (a `LockGuard`, `RLockGuard`, `ConditionGuard`,
    /// `ValueGuard`, `ArrayGuard` or `ArrayRangeGuard`, including one leaked with
    /// `mem::forget` or `Box::leak` or kept in a thread-local):
    /// [`Error::ForkWhileLocked`](crate::Error::ForkWhileLocked). The child would inherit a
    /// copy of each guard, and of every `&mut` borrowed through it, while this process still
    /// holds the lock. Holds taken with `acquire()` (no guard) do not prevent a fork; the
    /// child cannot `release` them.
    Fork,
    /// Ask a single-threaded server process to `fork()` the child. The server is started with
    /// `Spawn` on first use and reached over a private socket pair it inherited; it dies with
    /// this process.
    ForkServer,
}

static METHOD: Mutex<StartMethod> = Mutex::new(StartMethod::Spawn);

/// Sets the start method that processes use unless their builder says otherwise.
///
/// Unlike Python's, it may be called again later; each start reads the current setting.
pub fn set_start_method(method: StartMethod) {
    *METHOD.lock().unwrap_or_else(PoisonError::into_inner) = method;
}

/// Returns the current default start method.
pub fn start_method() -> StartMethod {
    *METHOD.lock().unwrap_or_else(PoisonError::into_inner)
}
