//! The one error type of the crate.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;

/// A `&'static str` field of [`Error`], spelled so that serde does not try to borrow it from
/// the input (it is interned when decoded: see `wire`).
type StaticStr = &'static str;

/// Everything that can go wrong in shmproc.
///
/// Variants name the condition, not the module, and carry what a caller needs to act on it.
/// Operating-system failures keep the [`io::Error`] as their source and name the operation.
///
/// `Debug` prints the same sentence as `Display` (then the chain of sources), so
/// `fn main() -> shmproc::Result<()>` reports an error in words. An `Error` is `Serialize` and
/// `Deserialize`: a target may return `shmproc::Result<T>` and use `?`, and its parent gets the
/// error itself (an [`io::Error`] travels as its OS error code, or its message).
///
/// # Examples
/// ```no_run
/// fn size_of_segment(name: String) -> shmproc::Result<u64> {
///     let seg = shmproc::Segment::open(&name)?; // fails in the child…
///     Ok(seg.len())
/// }
///
/// fn main() -> shmproc::Result<()> {
///     shmproc::init();
///     let child = shmproc::spawn(size_of_segment, "no-such-segment".to_owned())?;
///     match child.join()? {
///         // …and the parent gets the same error back.
///         Err(shmproc::Error::NotFound { name }) => assert!(name.ends_with("no-such-segment")),
///         other => panic!("{other:?}"),
///     }
///     Ok(())
/// }
/// ```
#[derive(thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    #[error("{op} failed")]
    Io {
        /// The operation that failed (`"mmap"`, `"memfd_create"`, …).
        #[serde(deserialize_with = "wire::interned")]
        op: StaticStr,
        /// The underlying error.
        #[source]
        #[serde(with = "wire::io_error")]
        source: io::Error,
    },
    /// A named segment does not exist.
    #[error("no shared memory segment named {name:?}")]
    NotFound {
        /// The name that was looked up.
        name: String,
    },
    /// A named segment with that name exists already.
    #[error("a shared memory segment named {name:?} exists already")]
    AlreadyExists {
        /// The name that was taken.
        name: String,
    },
    /// A named segment is owned by another user or writable by group or others: anyone who
    /// could have created or rewritten it might have planted its contents. See
    /// `Segment::open_shared_between_users` to open such a segment deliberately.
    #[error("refusing the shared memory segment named {name:?}: {reason}")]
    UntrustedSegment {
        /// The segment's name.
        name: String,
        /// What made it untrusted.
        #[serde(deserialize_with = "wire::interned")]
        reason: StaticStr,
    },
    /// A name is not usable as a segment name.
    #[error("invalid segment name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        #[serde(deserialize_with = "wire::interned")]
        reason: StaticStr,
    },
    /// A segment header failed a check (magic, version, layout or a field out of range).
    #[error("corrupt segment header: {reason}")]
    CorruptHeader {
        /// Which check failed.
        #[serde(deserialize_with = "wire::interned")]
        reason: StaticStr,
    },
    /// A segment's size disagrees with the size its header records.
    #[error("segment size mismatch: header says {expected} bytes, mapping has {actual}")]
    SizeMismatch {
        /// The size recorded in the header.
        expected: u64,
        /// The size actually found.
        actual: u64,
    },
    /// A heap block, token or handle failed a check: a corrupt or foreign offset.
    #[error("corrupt shared object: {reason}")]
    CorruptObject {
        /// Which check failed.
        #[serde(deserialize_with = "wire::interned")]
        reason: StaticStr,
    },
    /// An object was attached as a different type than the one it was created with.
    ///
    /// Only a fingerprint of the stored type is recorded with the object (no name), so the
    /// message says "a different type" plainly and shows the fingerprint.
    #[error(
        "type mismatch: expected {expected}, but the object holds a different type (type fingerprint {found:#018x})"
    )]
    TypeMismatch {
        /// The type the caller asked for.
        #[serde(deserialize_with = "wire::interned")]
        expected: StaticStr,
        /// The fingerprint recorded with the object.
        found: u64,
    },
    /// An object was attached as another kind of handle than the one it was created as
    /// (a locked `Value` as a `RawValue`, a `Value` as an `Array`, a `Queue` as a
    /// `JoinableQueue`, …), even if the element type matches.
    #[error("wrong kind of object: expected a {expected}, found a {found}")]
    WrongKind {
        /// The kind of handle the caller asked for.
        #[serde(deserialize_with = "wire::interned")]
        expected: StaticStr,
        /// The kind recorded with the object.
        #[serde(deserialize_with = "wire::interned")]
        found: StaticStr,
    },
    /// A handle was re-attached with a lock other than the one its object was created with
    /// (the object's block records its lock; any other lock would not exclude the handles
    /// that use the real one).
    #[error("lock mismatch: the object is synchronized by another lock")]
    LockMismatch,
    /// The heap's own metadata failed a check: a free list names a block outside the heap,
    /// misaligned or of another size class, or a block header holds an invalid size class.
    /// Nothing is written outside a checked block; the allocation or free is refused.
    #[error("corrupt heap: {reason}")]
    CorruptHeap {
        /// Which check failed.
        #[serde(deserialize_with = "wire::interned")]
        reason: StaticStr,
    },
    /// A handle refers to an object that has been freed since the handle was made.
    #[error("shared object no longer exists")]
    ObjectGone,
    /// A handle names a segment this process has no access to.
    #[error("segment {id:#018x} is not attached in this process")]
    UnknownSegment {
        /// The segment identity from the handle.
        id: u64,
    },
    /// A handle names a segment that did not travel with it and that this process has not
    /// mapped: the value was sent over a channel that does not carry segments (a
    /// shared-memory pipe, a queue, a TCP socket). (A named segment is opened by its name
    /// instead; if that fails, the error is the one of [`Segment::open`](crate::Segment::open).)
    #[error(
        "segment {id:#018x} was not transferred to this process: pass the handle (or its segment) as a process argument, send it over a Unix socket connection, or use a named segment"
    )]
    SegmentNotTransferred {
        /// The segment identity from the handle ([`Segment::id`](crate::Segment::id)).
        id: u64,
    },
    /// A handle's descriptor did not arrive with the message that names it: the token was
    /// made outside a transfer (for example a `Connection` put in a `Queue`), names a
    /// descriptor that was not sent, or was forged. Descriptors are never taken by number.
    #[error(
        "a handle's descriptor{} did not arrive with the message: connections travel as process arguments or over Unix socket connections",
        index.map(|i| format!(" (index {i})")).unwrap_or_default()
    )]
    DescriptorNotTransferred {
        /// The descriptor's index in the message, if the token had one.
        index: Option<u32>,
    },
    /// A value whose handles carry descriptors (a `Connection`) was sent over a channel that
    /// cannot carry them (a shared-memory pipe, a TCP socket).
    #[error(
        "cannot send {count} descriptors over {channel}: pass the connection as a process argument or over a Unix socket connection"
    )]
    NoDescriptorChannel {
        /// The channel: `"a shared-memory pipe"` or `"a TCP socket"`.
        #[serde(deserialize_with = "wire::interned")]
        channel: StaticStr,
        /// How many descriptors the value carries.
        count: usize,
    },
    /// A task names a target function by an id that this process did not register through
    /// its private start-up channel: forged or out of range. Nothing was called.
    #[error("unknown target {id}: this process registered {registered} targets")]
    UnknownTarget {
        /// The id the task named.
        id: u32,
        /// How many targets this process registered.
        registered: usize,
    },
    /// The heap cannot satisfy an allocation.
    ///
    /// The default heap's size is set by [`set_default_heap_size`](crate::set_default_heap_size)
    /// (or `SHMPROC_HEAP_SIZE`) before its first use; a segment's by its constructor.
    #[error(
        "out of shared memory: {requested} bytes requested, {capacity} bytes in the heap (for the default heap, call shmproc::set_default_heap_size or set SHMPROC_HEAP_SIZE before its first use)"
    )]
    OutOfMemory {
        /// Bytes requested.
        requested: u64,
        /// Capacity of the heap.
        capacity: u64,
    },
    /// A size or length is outside what is supported.
    #[error("invalid size: {reason}")]
    InvalidSize {
        /// What was wrong with it.
        #[serde(deserialize_with = "wire::interned")]
        reason: StaticStr,
    },
    /// An index past the end of an array.
    #[error("index {index} out of bounds for length {len}")]
    IndexOutOfBounds {
        /// The index asked for.
        index: usize,
        /// The array length.
        len: usize,
    },
    /// The previous owner of a lock died while holding it; the lock is now held by the caller.
    ///
    /// Converted from [`OwnerDied`] with `?`, which releases the lock.
    #[error("previous lock owner (thread {tid}) died while holding it")]
    OwnerDied {
        /// Thread id of the owner that died.
        tid: u32,
    },
    /// A blocking operation reached its timeout, where the operation's result has no room for
    /// "nothing yet" (see [Blocking and timeouts](crate#blocking-and-timeouts) for which).
    #[error("timed out")]
    Timeout,
    /// A lock was released by a thread that does not hold it.
    #[error("lock released by a thread that does not hold it")]
    NotOwner,
    /// A semaphore was released past its bound (a `BoundedSemaphore`'s initial value).
    #[error("semaphore released past its bound of {limit}")]
    SemaphoreOverRelease {
        /// The bound.
        limit: u32,
    },
    /// A barrier was aborted, reset, or timed out while (or before) the caller waited.
    #[error("barrier is broken")]
    BrokenBarrier,
    /// `Barrier::wait` on a handle without the action that its barrier was created with (a
    /// handle received from another process: a closure cannot cross processes). Reported on
    /// every wait through that handle, before it arrives, whatever the arrival order; the
    /// barrier itself is not broken.
    #[error(
        "this barrier was created with an action but this handle has none: call set_action on a handle received from another process before waiting"
    )]
    BarrierActionMissing,
    /// A queue is full (from a `try_` operation).
    #[error("queue is full")]
    Full,
    /// A queue is empty (from a `try_` operation).
    #[error("queue is empty")]
    Empty,
    /// The object was closed: a queue refuses puts (and gets, once drained); a connection end
    /// closed in this process refuses every operation.
    #[error("closed")]
    Closed,
    /// `task_done` was called more times than items were put.
    #[error("task_done called more times than items were put")]
    TaskDoneTooMany,
    /// The peer end of a connection was closed or its process died, and every message it
    /// sent has been received (end of stream), or a send found nobody left to receive.
    #[error("connection peer disconnected")]
    Disconnected,
    /// An operation a simplex connection end does not support (receiving on a send end, …).
    #[error("connection end is not {needed}")]
    WrongDirection {
        /// What the operation needed: `"readable"` or `"writable"`.
        #[serde(deserialize_with = "wire::interned")]
        needed: StaticStr,
    },
    /// A message exceeds the size limit of the connection or the caller.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// Size of the message in bytes.
        size: u64,
        /// The limit it exceeded.
        limit: u64,
    },
    /// A receive buffer is too short; the message was kept and can be received again.
    #[error("receive buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// Bytes needed to hold the message.
        needed: usize,
    },
    /// A listener reachable over the network was asked for without an authkey.
    #[error("refusing an unauthenticated TCP listener (use bind_unauthenticated to allow it)")]
    Unauthenticated,
    /// Authentication of a socket connection failed (wrong key or a malformed handshake).
    #[error("authentication failed")]
    AuthFailed,
    /// A value failed to serialize or deserialize.
    #[error("codec error: {reason}")]
    Codec {
        /// The codec's description.
        reason: String,
    },
    /// The `Fork` start method was asked for while the caller has more than one thread: the
    /// child could inherit locks held by threads that do not exist in it.
    #[error(
        "cannot fork: the process has {threads} threads (use the Spawn or ForkServer start method)"
    )]
    ForkWhileThreaded {
        /// The number of threads the process had.
        threads: usize,
    },
    /// A fork (the `Fork` start method, a forked exchange or pool worker) was refused because
    /// the forking thread has live lock guards (`LockGuard`, `RLockGuard`, `ConditionGuard`,
    /// `ValueGuard`, `ArrayGuard`, `ArrayRangeGuard`, leaked ones included): the child would
    /// inherit copies of them, and a `&mut` into locked data, while the parent holds the lock.
    #[error(
        "cannot fork: the forking thread holds {guards} lock guard(s) (drop them first, or use the Spawn or ForkServer start method)"
    )]
    ForkWhileLocked {
        /// The number of guards the thread had made and not dropped.
        guards: u32,
    },
    /// A child's target panicked; the child exited with code 1.
    #[error("child process panicked: {message}")]
    ChildPanicked {
        /// The panic message (`"Box<dyn Any>"` when the payload was not a string), then
        /// `at file:line:column` where the panic happened.
        message: String,
    },
    /// A child ended without delivering its target's result (it exited early or was killed).
    #[error("child process ended without a result (exit code {}){}", ExitCode(*.exitcode), harness_hint(*.exitcode))]
    ChildFailed {
        /// The child's exit code: positive for an exit, `-N` when killed by signal N.
        exitcode: i32,
    },
    /// A child could not run its target: its start-up message, arguments or descriptors were
    /// unusable there (for example a handle whose object was freed before the child attached).
    #[error("child process could not start its target: {reason}")]
    ChildStartFailed {
        /// What went wrong, as the child reported it.
        reason: String,
    },
    /// A pool worker died (aborted, killed, out of memory) while running this task; the
    /// pool replaced it and went on.
    #[error("pool worker {pid} died running this task (exit code {})", ExitCode(*.exitcode))]
    WorkerDied {
        /// The worker's pid.
        pid: i32,
        /// Its exit code: positive for an exit, `-N` when killed by signal N.
        exitcode: i32,
    },
    /// A pool task panicked; the worker caught it and went on.
    #[error("pool task panicked: {message}")]
    TaskPanicked {
        /// The panic message, then `at file:line:column` where it is known.
        message: String,
    },
    /// A pool task could not run: its arguments failed to decode in the worker, its result
    /// failed to encode, or it named a function the worker never registered.
    #[error("pool task failed: {reason}")]
    TaskFailed {
        /// Why, as the worker reported it.
        reason: String,
    },
    /// The pool was terminated before this task finished.
    #[error("the pool was terminated")]
    PoolTerminated,
    /// The input iterator of `map`, `imap` or `starmap` panicked; the tasks taken from it
    /// before were abandoned and the pool goes on.
    #[error("the input iterator panicked: {message}")]
    InputPanicked {
        /// The panic message.
        message: String,
    },
    /// `shmproc::init()` did not run first thing in `main`. Reported by `start()` (and
    /// `spawn`, a `Pool`, …) when a `Spawn` or `ForkServer` child would re-execute a program
    /// that never called `init()` (the child would run `main`, or the whole test harness, again
    /// instead of its target), and by every constructor in such a child. `Fork` children do not
    /// re-execute the program and need no `init()`.
    ///
    /// In a test binary (no `main` of yours), invoke [`enable_test_support!`](crate::enable_test_support)
    /// once per test crate, or enable the `test-support` feature in `[dev-dependencies]`.
    #[error(
        "shmproc::init() was not called at the start of main: call it first thing in main (in tests, invoke shmproc::enable_test_support!() once per test crate or enable the `test-support` feature)"
    )]
    NotInitialized,
    /// A child's executable is not the file its parent runs, so the target cannot be found.
    #[error("child runs a different executable than its parent")]
    NotSameExecutable,
    /// The pool on MPI ranks (feature `mpi`) cannot do what was asked: not started by
    /// `mpiexec`, a function that was not registered, a shared-memory handle in arguments
    /// bound for another host; the reason says which and what to do.
    #[error("MPI pool: {reason}")]
    Mpi {
        /// What went wrong and how to fix it.
        reason: String,
    },
    /// A call on a managed object failed in the manager's server: the method returned an
    /// error or panicked, the type or method is unknown there, or the request was refused.
    /// The server goes on serving. [`Error::remote_error`] decodes a method's typed error.
    #[error("remote call failed ({kind:?}): {message}")]
    Remote {
        /// What failed.
        kind: RemoteErrorKind,
        /// The server's description (a method error's `Display` text, a panic message).
        message: String,
        /// A method error's codec encoding (see [`Error::remote_error`]).
        payload: Option<Vec<u8>>,
    },
    /// A message was received as another type than the one it was sent as (checked by a debug
    /// build receiving from a debug build; the message is consumed).
    #[error("type mismatch: the message was sent as a `{sent}` but received as a `{expected}`")]
    MessageTypeMismatch {
        /// The type the receiver asked for.
        #[serde(deserialize_with = "wire::interned")]
        expected: StaticStr,
        /// The type the sender sent.
        sent: String,
    },
}

/// What kind of failure an [`Error::Remote`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RemoteErrorKind {
    /// The method returned `Err(e)`; the payload holds `e` encoded.
    Method,
    /// The method panicked; the server caught it.
    Panicked,
    /// The type has no method of that name.
    UnknownMethod,
    /// The arguments did not decode as the method's parameters.
    BadArguments,
    /// No type of that name is registered with the server.
    UnknownType,
    /// The object does not exist (any more) in the server.
    UnknownObject,
    /// The server could not decode the request, or refused it.
    BadRequest,
}

impl fmt::Debug for Error {
    /// Prints the [`Display`](fmt::Display) sentence, then the chain of sources, so that
    /// `fn main() -> shmproc::Result<()>` and `unwrap` show what went wrong in words. The
    /// alternate form (`{:#?}`) starts with the variant's name (`NotFound: …`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            write!(f, "{}: ", wire::variant_name(self))?;
        }
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// An exit code as shmproc reports it: `3`, or `-9 (SIGKILL)` for a death by signal.
struct ExitCode(i32);

impl fmt::Display for ExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        if let Some(name) = self.0.checked_neg().and_then(signal_name) {
            write!(f, " ({name})")?;
        }
        Ok(())
    }
}

/// What exit code 101 from a child usually means: the child ran a test harness (or a `main`
/// that panicked before `init()`), not its target.
fn harness_hint(exitcode: i32) -> &'static str {
    if exitcode == 101 {
        ": a child started from a test that exits with 101 usually re-ran the test harness; invoke shmproc::enable_test_support!() in the test crate or enable the `test-support` feature"
    } else {
        ""
    }
}

/// The name of Linux signal `n` (the generic numbering that x86_64 and aarch64 share).
fn signal_name(n: i32) -> Option<&'static str> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    NAMES.get(usize::try_from(n.checked_sub(1)?).ok()?).copied()
}

/// How an [`Error`] travels between processes (it is `Serialize + Deserialize`, so a target
/// may return `shmproc::Result<T>` and the parent gets the error back).
///
/// The fields that are `&'static str` in this process (operation names, reasons) are interned
/// when decoded: a bounded table (at most [`MAX_INTERNED`] strings of at most
/// [`MAX_INTERNED_LEN`] bytes) is leaked once per distinct string, so a hostile peer cannot
/// grow memory without bound; past the bound, a decoded string reads `"(elided)"`. An
/// [`io::Error`] travels as its OS error code (rebuilt exactly) or, for other errors, its kind
/// and message.
mod wire {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::io;
    use std::sync::{Mutex, PoisonError};

    pub(super) const MAX_INTERNED: usize = 512;
    pub(super) const MAX_INTERNED_LEN: usize = 256;

    static INTERNED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

    /// Returns a `'static` copy of `s`, from the bounded table.
    pub(super) fn intern(s: &str) -> &'static str {
        let mut table = INTERNED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = table.iter().find(|k| **k == s) {
            return known;
        }
        if table.len() >= MAX_INTERNED || s.len() > MAX_INTERNED_LEN {
            return "(elided)";
        }
        let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
        table.push(leaked);
        leaked
    }

    pub(super) fn interned<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
        let s = String::deserialize(d)?;
        Ok(intern(&s))
    }

    #[derive(Serialize, Deserialize)]
    enum WireIo {
        Os(i32),
        Other { kind: String, message: String },
    }

    /// Returns the name of `e`'s variant, read from its derived `Serialize` (which names the
    /// variant first): no list to keep in step with the enum.
    pub(super) fn variant_name(e: &super::Error) -> &'static str {
        match e.serialize(VariantName) {
            Err(Named(name)) => name,
            Ok(()) => "Error",
        }
    }

    /// The "error" [`VariantName`] stops with: the variant's name.
    #[derive(Debug)]
    struct Named(&'static str);

    impl std::fmt::Display for Named {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Named {}

    impl serde::ser::Error for Named {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Named("Error")
        }
    }

    /// A serializer that stops at the first enum variant it is given.
    struct VariantName;

    type Stop = serde::ser::Impossible<(), Named>;

    macro_rules! not_a_variant {
        ($($name:ident($($t:ty),*)),* $(,)?) => {
            $(fn $name(self, $(_: $t),*) -> Result<(), Named> {
                Err(Named("Error"))
            })*
        };
    }

    impl Serializer for VariantName {
        type Ok = ();
        type Error = Named;
        type SerializeSeq = Stop;
        type SerializeTuple = Stop;
        type SerializeTupleStruct = Stop;
        type SerializeTupleVariant = Stop;
        type SerializeMap = Stop;
        type SerializeStruct = Stop;
        type SerializeStructVariant = Stop;

        not_a_variant!(
            serialize_bool(bool),
            serialize_i8(i8),
            serialize_i16(i16),
            serialize_i32(i32),
            serialize_i64(i64),
            serialize_u8(u8),
            serialize_u16(u16),
            serialize_u32(u32),
            serialize_u64(u64),
            serialize_f32(f32),
            serialize_f64(f64),
            serialize_char(char),
            serialize_str(&str),
            serialize_bytes(&[u8]),
            serialize_none(),
            serialize_unit(),
            serialize_unit_struct(&'static str),
        );

        fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), Named> {
            Err(Named("Error"))
        }
        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            v: &'static str,
        ) -> Result<(), Named> {
            Err(Named(v))
        }
        fn serialize_newtype_struct<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: &T,
        ) -> Result<(), Named> {
            Err(Named("Error"))
        }
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: u32,
            v: &'static str,
            _: &T,
        ) -> Result<(), Named> {
            Err(Named(v))
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Stop, Named> {
            Err(Named("Error"))
        }
        fn serialize_tuple(self, _: usize) -> Result<Stop, Named> {
            Err(Named("Error"))
        }
        fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Stop, Named> {
            Err(Named("Error"))
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            v: &'static str,
            _: usize,
        ) -> Result<Stop, Named> {
            Err(Named(v))
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Stop, Named> {
            Err(Named("Error"))
        }
        fn serialize_struct(self, _: &'static str, _: usize) -> Result<Stop, Named> {
            Err(Named("Error"))
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            v: &'static str,
            _: usize,
        ) -> Result<Stop, Named> {
            Err(Named(v))
        }
    }

    pub(super) mod io_error {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(e: &io::Error, s: S) -> Result<S::Ok, S::Error> {
            match e.raw_os_error() {
                Some(code) => WireIo::Os(code),
                None => WireIo::Other {
                    kind: format!("{:?}", e.kind()),
                    message: e.to_string(),
                },
            }
            .serialize(s)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<io::Error, D::Error> {
            Ok(match WireIo::deserialize(d)? {
                WireIo::Os(code) => io::Error::from_raw_os_error(code),
                WireIo::Other { message, .. } => io::Error::other(message),
            })
        }
    }
}

/// The result type of shmproc.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an operating-system error with the operation that produced it.
    pub(crate) fn io(op: &'static str, source: io::Error) -> Self {
        Error::Io { op, source }
    }

    /// Decodes the typed error a managed method returned (`Err(e)` of a method returning
    /// `Result<T, E>`), if this is [`Error::Remote`] carrying one that decodes as `E`.
    ///
    /// # Examples
    /// ```
    /// let e = shmproc::Error::Remote {
    ///     kind: shmproc::RemoteErrorKind::Method,
    ///     message: "too big".into(),
    ///     payload: Some(shmproc::codec::to_bytes(&7u32)?),
    /// };
    /// assert_eq!(e.remote_error::<u32>(), Some(7));
    /// # Ok::<(), shmproc::Error>(())
    /// ```
    pub fn remote_error<E: serde::de::DeserializeOwned>(&self) -> Option<E> {
        match self {
            Error::Remote {
                payload: Some(p), ..
            } => crate::codec::from_bytes(p).ok(),
            _ => None,
        }
    }
}

/// The lock was acquired, but its previous owner died while holding it.
///
/// Like [`std::sync::PoisonError`], it carries the guard: the caller holds the lock and can look
/// at (and repair) the protected data through [`into_inner`](OwnerDied::into_inner). What a
/// dead owner may have left half-done is the caller's to judge: a multi-field update may be
/// partial. The lock itself is fully usable again; a later acquirer is not told again.
/// Converting into [`Error`] with `?` drops the guard, which releases the lock.
pub struct OwnerDied<G> {
    guard: G,
    tid: u32,
}

impl<G> OwnerDied<G> {
    pub(crate) fn new(guard: G, tid: u32) -> Self {
        crate::trace::event!(
            warn,
            dead_owner_tid = tid,
            "lock owner died holding it; the lock was recovered by this thread"
        );
        OwnerDied { guard, tid }
    }

    /// Returns the guard, so the caller can repair the protected data.
    pub fn into_inner(self) -> G {
        self.guard
    }

    /// Returns a reference to the guard.
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// Returns a mutable reference to the guard.
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }

    /// Returns the thread id of the owner that died.
    pub fn tid(&self) -> u32 {
        self.tid
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerDied")
            .field("tid", &self.tid)
            .finish_non_exhaustive()
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "previous lock owner (thread {}) died while holding it",
            self.tid
        )
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

impl<G> From<OwnerDied<G>> for Error {
    fn from(e: OwnerDied<G>) -> Self {
        Error::OwnerDied { tid: e.tid }
    }
}

/// The result of acquiring a lock: the guard, or the guard wrapped in [`OwnerDied`].
pub type LockResult<G> = std::result::Result<G, OwnerDied<G>>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18: an `Error` round-trips through the codec, `&'static str` fields included, and
    /// a hostile peer cannot make the interning table grow without bound.
    #[test]
    fn errors_round_trip_and_interning_is_bounded() {
        let e = Error::InvalidName {
            name: "a/b".to_owned(),
            reason: "contains a slash",
        };
        let back: Error = crate::codec::from_bytes(&crate::codec::to_bytes(&e).expect("encodes"))
            .expect("decodes");
        assert_eq!(back.to_string(), e.to_string());
        let io = Error::io("mmap", io::Error::from_raw_os_error(12));
        let back: Error = crate::codec::from_bytes(&crate::codec::to_bytes(&io).expect("encodes"))
            .expect("decodes");
        assert_eq!(format!("{back:?}"), format!("{io:?}"));
        assert_eq!(
            format!("{io:?}"),
            format!("mmap failed: {}", io::Error::from_raw_os_error(12))
        );
        for i in 0..(wire::MAX_INTERNED + 10) {
            let _ = wire::intern(&format!("reason {i}"));
        }
        assert_eq!(wire::intern("one more, past the bound"), "(elided)");
        assert_eq!(wire::intern("contains a slash"), "contains a slash");
        assert_eq!(
            format!("{:?}", Error::ChildFailed { exitcode: -9 }),
            "child process ended without a result (exit code -9 (SIGKILL))"
        );
    }
}
