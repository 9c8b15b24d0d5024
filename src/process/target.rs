//! Targets: how a `fn(A) -> R` is named across `exec`, and the per-process table of the
//! functions a process may run.
//!
//! # The rule: code addresses never come from shared memory or a socket
//! A process runs only functions it learned through its *private start-up channel*: an
//! inherited pipe (`Spawn`), the forkserver's socket pair (which only the server inherited),
//! or memory copied by `fork`. That channel carries a [`TargetTable`], and nothing else ever
//! carries a code address. Everything that arrives later (a task in a queue, a message on a
//! pipe or socket, a value in the heap) names a function by [`TargetId`], an index into the
//! table this process installed; [`TargetTable::get`] checks it, and a forged or
//! out-of-range id is [`Error::UnknownTarget`], never a jump. The Pool and the Manager build
//! their workers' tables before starting them and send ids with each task.
//!
//! # How a target crosses `exec`
//! A function pointer is only meaningful inside one loaded image. A child started with `Spawn`
//! (or forked by the forkserver, itself spawned) runs the same executable file, loaded at
//! another base address (ASLR moves the whole image by one offset). So inside the start-up
//! message a target travels as the distance between its code and an anchor function of this
//! crate, which is the same in every process running the same file; the child adds its own
//! anchor's address back.
//!
//! Two addresses travel per target: the user's `fn(A) -> R`, and the monomorphised
//! [`trampoline::<A, R>`](trampoline) that knows how to decode `A`, call the target and encode
//! `R`. The child calls the trampoline, which reinterprets the target address as `fn(A) -> R`.
//!
//! # Later registrations: the private registration pipe
//! A long-lived worker (a pool's) learns functions after it started. They reach it only
//! through a [`Registrations`] reader: the read end of a kernel pipe that the worker
//! inherited through its start-up message (so nothing else holds it but the parent, which
//! keeps the write end close-on-exec) and that is wrapped once, by an `unsafe` constructor,
//! right after the start-up message was validated. Each frame on it is one [`Target`], which
//! [`Registrations::drain`] appends to the installed table. Queues and shared memory still
//! carry only ids.
//!
//! # Safety
//! Turning an address back into a function pointer is sound only when the address was made by
//! [`Target::returning`], [`Target::batch`], [`Target::batch2`] or [`Target::terminating`]
//! for exactly that type, in a process running the same executable file as the one that turns
//! it back. A [`Target`] is decoded only as part of the start-up message (`init::Boot`) or from
//! a [`Registrations`] pipe; this module is private to `process` and the only ways to run one
//! that was decoded are [`install`] and [`Registrations::new`], `unsafe fn`s whose callers (the
//! child's start-up code; a worker that took its inherited registration pipe) have checked the
//! executable's identity and validated the whole start-up message first. The trampoline
//! pointer and the target pointer are always taken together, from the same `A` and `R`. Executables that load the target from a shared library loaded
//! at run time are not supported (the distance to the anchor is then not fixed); statically
//! linked code is.

#![allow(unsafe_code)]

use crate::codec;
use crate::error::{Error, Result};
use crate::transfer::{self, Received};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{ExitCode, Termination};
use std::sync::{Mutex, PoisonError};

/// What a child's target produced, sent to the parent over the result pipe.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The target returned; the encoded return value.
    Returned(Vec<u8>),
    /// The target returned a value reported as this exit code (see [`Target::terminating`]).
    Exited(i32),
    /// The target panicked, with this message.
    Panicked(String),
    /// The target could not be called (arguments failed to decode) or its result failed to
    /// encode; why.
    Failed(String),
}

/// The type every trampoline has: target address, encoded arguments and what arrived with
/// them in, outcome out.
type Trampoline = fn(usize, &[u8], Received) -> Outcome;

/// A target, as distances from the anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Target {
    trampoline: i64,
    function: i64,
}

#[inline(never)]
fn anchor() {}

fn base() -> usize {
    anchor as fn() as usize
}

fn distance(addr: usize) -> i64 {
    // Two's-complement reinterpretation of the wrapping difference: the inverse of `address`.
    addr.wrapping_sub(base()) as i64
}

fn address(distance: i64) -> usize {
    base().wrapping_add(distance as usize)
}

impl Target {
    /// Names `f` together with the trampoline that sends its result back encoded.
    pub(crate) fn returning<A, R>(f: fn(A) -> R) -> Target
    where
        A: DeserializeOwned,
        R: Serialize,
    {
        let t: Trampoline = trampoline::<A, R>;
        Target {
            trampoline: distance(t as usize),
            function: distance(f as usize),
        }
    }

    /// Names `f` together with the trampoline that runs it on a whole chunk: the arguments
    /// are a `Vec<A>`, the result the values of the items that returned, in order, and the
    /// index and the panic message (with location) of each item that panicked, in increasing
    /// index order, both laid out as `pool::wire` describes. A pool sends one message per
    /// chunk, not per item, and no per-item tag in the common case.
    pub(crate) fn batch<A, R>(f: fn(A) -> R) -> Target
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        let t: Trampoline = batch_trampoline::<A, R>;
        Target {
            trampoline: distance(t as usize),
            function: distance(f as usize),
        }
    }

    /// Like [`Target::batch`] for a two-argument `f`: the arguments are a `Vec<(A, B)>`
    /// (a pool's `starmap`).
    pub(crate) fn batch2<A, B, R>(f: fn(A, B) -> R) -> Target
    where
        A: DeserializeOwned + 'static,
        B: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        let t: Trampoline = batch2_trampoline::<A, B, R>;
        Target {
            trampoline: distance(t as usize),
            function: distance(f as usize),
        }
    }

    /// Names `f` together with the trampoline that turns its result into an exit code, as
    /// `main`'s result is (`()` and `Ok(_)`: 0; `Err(e)`: `Error: {e:?}` on stderr, then 1).
    pub(crate) fn terminating<A, R>(f: fn(A) -> R) -> Target
    where
        A: DeserializeOwned,
        R: Termination,
    {
        let t: Trampoline = exit_trampoline::<A, R>;
        Target {
            trampoline: distance(t as usize),
            function: distance(f as usize),
        }
    }

    /// Runs the target on encoded arguments, catching a panic.
    ///
    /// # Safety
    /// - `self` was made by [`Target::returning`], [`Target::batch`], [`Target::batch2`] or
    ///   [`Target::terminating`] in a process
    ///   running the same executable file (checked by the caller against the parent's
    ///   recorded identity) and reached this process unaltered through its private start-up
    ///   channel.
    unsafe fn run(self, args: &[u8], received: Received) -> Outcome {
        // SAFETY: by the caller's contract, this address is that of `trampoline::<A, R>` in
        // this image, which has type `Trampoline`; function pointers and `usize` have the same
        // size on every supported platform.
        let t = unsafe { std::mem::transmute::<usize, Trampoline>(address(self.trampoline)) };
        t(address(self.function), args, received)
    }
}

/// A function pointer type a [`Driver`] can name: `fn(A) -> R` or `fn(A, B) -> R`.
///
/// # Safety
/// `from_address` must turn back exactly what `address` made, for the same type.
pub(crate) unsafe trait FnPointer: Copy + 'static {
    /// The pointer's address.
    fn address(self) -> usize;
    /// Turns an address made by [`address`](FnPointer::address) for this type back.
    ///
    /// # Safety
    /// `addr` was made by `Self::address` in this image.
    unsafe fn from_address(addr: usize) -> Self;
}

// SAFETY: `from_address` transmutes back an address `address` took from this very type.
unsafe impl<A: 'static, R: 'static> FnPointer for fn(A) -> R {
    fn address(self) -> usize {
        self as usize
    }
    unsafe fn from_address(addr: usize) -> Self {
        // SAFETY: by the caller's contract `addr` is an `fn(A) -> R` of this image.
        unsafe { std::mem::transmute::<usize, fn(A) -> R>(addr) }
    }
}

// SAFETY: as above, for two-argument functions.
unsafe impl<A: 'static, B: 'static, R: 'static> FnPointer for fn(A, B) -> R {
    fn address(self) -> usize {
        self as usize
    }
    unsafe fn from_address(addr: usize) -> Self {
        // SAFETY: by the caller's contract `addr` is an `fn(A, B) -> R` of this image.
        unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(addr) }
    }
}

/// How a child runs a user's function when the higher layers need more than `f(args)`: the
/// child decodes [`Args`](Driver::Args) and calls [`drive`](Driver::drive) with the function.
/// The driver is a type, so its code is part of the monomorphised trampoline: like every
/// target, it reaches the child only through the start-up message.
pub(crate) trait Driver: 'static {
    /// The user's function type.
    type Function: FnPointer;
    /// What the child decodes from its arguments.
    type Args: DeserializeOwned;
    /// Runs in the child.
    fn drive(f: Self::Function, args: Self::Args);
}

impl Target {
    /// Names `f` together with the trampoline that runs it through the driver `D`.
    pub(crate) fn driven<D: Driver>(f: D::Function) -> Target {
        let t: Trampoline = driven_trampoline::<D>;
        Target {
            trampoline: distance(t as usize),
            function: distance(f.address()),
        }
    }
}

/// Decodes `D::Args`, calls `D::drive` with the function at `function`, reports `()`.
fn driven_trampoline<D: Driver>(function: usize, args: &[u8], received: Received) -> Outcome {
    // SAFETY: `function` was produced by `Target::driven::<D>` from a `D::Function` together
    // with this very trampoline (see the module's `# Safety`).
    let f = unsafe { D::Function::from_address(function) };
    let args: D::Args = match transfer::open(args, received) {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(format!("arguments: {e}")),
    };
    match catch_unwind(AssertUnwindSafe(|| D::drive(f, args))) {
        Ok(()) => match codec::to_bytes(&()) {
            Ok(bytes) => Outcome::Returned(bytes),
            Err(e) => Outcome::Failed(format!("result: {e}")),
        },
        Err(payload) => Outcome::Panicked(panic_report(payload.as_ref())),
    }
}

/// Names a function in a process's [`TargetTable`]: an index, checked before use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TargetId(pub(crate) u32);

/// The functions a process may run, in registration order.
///
/// Built by the process that starts a child ([`register`](TargetTable::register)), sent in
/// the child's private start-up message, and [installed](install) there before anything else
/// runs. Tasks name entries by [`TargetId`].
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct TargetTable {
    targets: Vec<Target>,
}

impl TargetTable {
    /// An empty table.
    pub(crate) fn new() -> TargetTable {
        TargetTable::default()
    }

    /// Adds `target` and returns its id.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] past `u32::MAX` targets.
    pub(crate) fn register(&mut self, target: Target) -> Result<TargetId> {
        let id = u32::try_from(self.targets.len()).map_err(|_| Error::InvalidSize {
            reason: "more than u32::MAX targets",
        })?;
        self.targets.push(target);
        Ok(TargetId(id))
    }

    /// Returns how many targets the table holds.
    pub(crate) fn len(&self) -> usize {
        self.targets.len()
    }

    /// Returns the target `id` names.
    ///
    /// # Errors
    /// [`Error::UnknownTarget`] for an id this table does not hold.
    pub(crate) fn get(&self, id: TargetId) -> Result<Target> {
        usize::try_from(id.0)
            .ok()
            .and_then(|i| self.targets.get(i))
            .copied()
            // Built only on failure: an error made and dropped on every start would run (and,
            // in a `Fork` child, fault in) the error's drop code.
            .ok_or_else(|| Error::UnknownTarget {
                id: id.0,
                registered: self.len(),
            })
    }
}

/// This process's installed table (empty in a process that shmproc did not start).
static INSTALLED: Mutex<Option<TargetTable>> = Mutex::new(None);

/// Makes `table` the functions this process may run: the table of its own start-up message.
/// A `Fork` child (or a forkserver's child) replaces the table it inherited in memory from
/// the process that forked it; nothing else calls this.
///
/// # Safety
/// - `table` arrived through this process's private start-up channel (or was built in this
///   process by [`TargetTable::register`] from [`Target::returning`]/[`Target::terminating`]),
///   unaltered, and
/// - this process runs the same executable file as the process that built it (the caller
///   compared the executable identities).
pub(crate) unsafe fn install(table: TargetTable) {
    *INSTALLED.lock().unwrap_or_else(PoisonError::into_inner) = Some(table);
}

/// Runs the installed target `id` on encoded arguments (decoded with exactly `received`),
/// catching a panic.
///
/// # Errors
/// [`Error::UnknownTarget`] if `id` is not in the installed table (nothing is called).
pub(crate) fn run_installed(id: TargetId, args: &[u8], received: Received) -> Result<Outcome> {
    let target = {
        let slot = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_ref() {
            Some(table) => table.get(id)?,
            None => {
                return Err(Error::UnknownTarget {
                    id: id.0,
                    registered: 0,
                });
            }
        }
    };
    // SAFETY: every table entry met `install`'s contract: it came through the private
    // start-up channel of a process running this executable file, or was made here.
    Ok(unsafe { target.run(args, received) })
}

/// The largest registration frame: one [`Target`] fits in far less, and a frame up to
/// `PIPE_BUF` bytes is written to a pipe in one piece.
const REGISTRATION_MAX: usize = 512;

/// Encodes `target` as one registration frame (length, then the encoded target) for a
/// worker's registration pipe; written with a single `write`, it arrives whole.
///
/// # Errors
/// [`Error::Codec`] if the target cannot be encoded.
pub(crate) fn registration_frame(target: Target) -> Result<Vec<u8>> {
    let body = codec::to_bytes(&target)?;
    let len = u32::try_from(body.len()).map_err(|_| Error::InvalidSize {
        reason: "registration frame too large",
    })?;
    let mut frame = len.to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// The read end of a worker's private registration pipe (see the module docs).
pub(crate) struct Registrations {
    pipe: std::fs::File,
}

impl std::fmt::Debug for Registrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrations").finish_non_exhaustive()
    }
}

impl Registrations {
    /// Wraps the registration pipe.
    ///
    /// # Safety
    /// - `pipe` is the read end of a pipe this process inherited through its validated
    ///   start-up message (whose executable identity check passed), and
    /// - only the parent that started this process holds the write end, and writes to it
    ///   nothing but [`registration_frame`]s.
    pub(crate) unsafe fn new(pipe: std::fs::File) -> Registrations {
        Registrations { pipe }
    }

    /// Installs every registration already in the pipe (never waits for more); returns how
    /// many targets the installed table holds afterwards.
    ///
    /// # Errors
    /// [`Error::Io`] if the pipe cannot be read; [`Error::Disconnected`] if the parent
    /// closed it; [`Error::Codec`] or [`Error::InvalidSize`] for a malformed frame.
    pub(crate) fn drain(&mut self) -> Result<usize> {
        use std::io::Read;
        use std::os::fd::AsFd;
        loop {
            let now = crate::sys::Deadline::after(std::time::Duration::ZERO);
            let ready = crate::sys::poll_readable(&[self.pipe.as_fd()], Some(&now))
                .map_err(|e| Error::io("poll registrations", e))?;
            if ready.is_empty() {
                break;
            }
            let mut len = [0u8; 4];
            match self.pipe.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(Error::Disconnected);
                }
                Err(e) => return Err(Error::io("read registration", e)),
            }
            let n = usize::try_from(u32::from_le_bytes(len)).unwrap_or(usize::MAX);
            if n > REGISTRATION_MAX {
                return Err(Error::InvalidSize {
                    reason: "registration frame too large",
                });
            }
            let mut body = vec![0u8; n];
            self.pipe
                .read_exact(&mut body)
                .map_err(|e| Error::io("read registration", e))?;
            let target: Target = codec::from_bytes(&body)?;
            let mut slot = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
            // The target came through this process's private registration pipe from the
            // parent that started it (`Registrations::new`'s contract), like a start-up table.
            slot.get_or_insert_with(TargetTable::new).register(target)?;
        }
        Ok(INSTALLED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or(0, TargetTable::len))
    }
}

/// Decodes `A` with exactly the descriptors and segments that came with it (the target
/// itself then runs outside that scope), calls the `fn(A) -> R` at `function`, encodes `R`.
fn trampoline<A: DeserializeOwned, R: Serialize>(
    function: usize,
    args: &[u8],
    received: Received,
) -> Outcome {
    // SAFETY: `function` was produced by `Target::returning::<A, R>` from an `fn(A) -> R`
    // together with this very trampoline (see the module's `# Safety`), so it is such a
    // pointer here.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(function) };
    let args: A = match transfer::open(args, received) {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(format!("arguments: {e}")),
    };
    match catch_unwind(AssertUnwindSafe(|| f(args))) {
        Ok(r) => match codec::to_bytes(&r) {
            Ok(bytes) => Outcome::Returned(bytes),
            Err(e) => Outcome::Failed(format!("result: {e}")),
        },
        Err(payload) => Outcome::Panicked(panic_report(payload.as_ref())),
    }
}

thread_local! {
    /// Where the last panic on this thread happened, if a panic hook recorded it.
    static PANIC_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Records where a panic happened (called from a panic hook), for the batch trampolines'
/// error messages.
pub(crate) fn record_panic_location(at: Option<String>) {
    PANIC_AT.with(|p| *p.borrow_mut() = at);
}

/// Returns a caught panic's message followed by `at file:line:column` when a panic hook
/// recorded where it happened (see [`record_panic_location`]).
fn panic_report(payload: &(dyn std::any::Any + Send)) -> String {
    let m = panic_message(payload);
    match PANIC_AT.with(|p| p.borrow_mut().take()) {
        Some(at) => format!("{m} at {at}"),
        None => m,
    }
}

/// Runs `call` catching a panic: `Err` with the message and, if recorded, the location.
#[cfg(feature = "mpi")]
pub(crate) fn catch_item<R>(call: impl FnOnce() -> R) -> std::result::Result<R, String> {
    catch_unwind(AssertUnwindSafe(call)).map_err(|payload| panic_report(payload.as_ref()))
}

/// Encodes one chunk's results: the values of the items that returned and the index and
/// message of each item that panicked (laid out as `pool::wire` describes).
fn chunk_outcome<R: Serialize + 'static>(values: &[R], panics: &Vec<(u64, String)>) -> Outcome {
    match crate::pool::wire::seal_results(values, panics) {
        Ok(bytes) => Outcome::Returned(bytes),
        Err(e) => Outcome::Failed(format!("result: {e}")),
    }
}

/// Runs `call` on each item, splitting the outcomes into values and `(index, panic)`.
///
/// One `catch_unwind` covers the items up to the next panic, not one per item: after a
/// panic the loop goes on with the next item (`values` holds exactly the items that
/// returned, `next` the index of the one running).
fn run_items<T, R>(items: Vec<T>, mut call: impl FnMut(T) -> R) -> (Vec<R>, Vec<(u64, String)>) {
    let mut values = Vec::with_capacity(items.len());
    let mut panics = Vec::new();
    let mut items = items.into_iter();
    let mut next = 0u64;
    while let Err(payload) = catch_unwind(AssertUnwindSafe(|| {
        for item in items.by_ref() {
            values.push(call(item));
            next += 1;
        }
    })) {
        panics.push((next, panic_report(payload.as_ref())));
        next += 1;
    }
    (values, panics)
}

/// Decodes a `Vec<A>`, calls the `fn(A) -> R` at `function` on each, encodes the results.
fn batch_trampoline<A: DeserializeOwned + 'static, R: Serialize + 'static>(
    function: usize,
    args: &[u8],
    received: Received,
) -> Outcome {
    // SAFETY: `function` was produced by `Target::batch::<A, R>` from an `fn(A) -> R`
    // together with this very trampoline (see the module's `# Safety`).
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(function) };
    let items: Vec<A> = match crate::pool::wire::open_items(args, received) {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(format!("arguments: {e}")),
    };
    let (values, panics) = run_items(items, f);
    chunk_outcome(&values, &panics)
}

/// Decodes a `Vec<(A, B)>`, calls the `fn(A, B) -> R` at `function` on each, encodes the
/// results.
fn batch2_trampoline<
    A: DeserializeOwned + 'static,
    B: DeserializeOwned + 'static,
    R: Serialize + 'static,
>(
    function: usize,
    args: &[u8],
    received: Received,
) -> Outcome {
    // SAFETY: `function` was produced by `Target::batch2::<A, B, R>` from an
    // `fn(A, B) -> R` together with this very trampoline (see the module's `# Safety`).
    let f = unsafe { std::mem::transmute::<usize, fn(A, B) -> R>(function) };
    let items: Vec<(A, B)> = match crate::pool::wire::open_items(args, received) {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(format!("arguments: {e}")),
    };
    let (values, panics) = run_items(items, |(a, b)| f(a, b));
    chunk_outcome(&values, &panics)
}

/// Decodes `A`, calls the `fn(A) -> R` at `function`, reports `R` as an exit code.
fn exit_trampoline<A: DeserializeOwned, R: Termination>(
    function: usize,
    args: &[u8],
    received: Received,
) -> Outcome {
    // SAFETY: `function` was produced by `Target::terminating::<A, R>` from an `fn(A) -> R`
    // together with this very trampoline (see the module's `# Safety`).
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(function) };
    let args: A = match transfer::open(args, received) {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(format!("arguments: {e}")),
    };
    match catch_unwind(AssertUnwindSafe(|| f(args).report())) {
        Ok(code) if code == ExitCode::SUCCESS => Outcome::Exited(0),
        Ok(_) => Outcome::Exited(1),
        Err(payload) => Outcome::Panicked(panic_report(payload.as_ref())),
    }
}

/// Returns the message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        x * 2
    }

    /// Regression: a task names a target by id; a forged id is an error, never a
    /// jump.
    #[test]
    fn forged_target_ids_are_refused() {
        let mut table = TargetTable::new();
        let id = table.register(Target::returning(double)).unwrap();
        assert_eq!(id, TargetId(0));
        assert_eq!(table.len(), 1);
        assert!(table.get(id).is_ok());
        for forged in [1, 2, 0x4000_0000, u32::MAX] {
            assert!(matches!(
                table.get(TargetId(forged)),
                Err(Error::UnknownTarget { id, registered: 1 }) if id == forged
            ));
        }
        // An id decoded from a message is checked the same way.
        let bytes = codec::to_bytes(&TargetId(7)).unwrap();
        let decoded: TargetId = codec::from_bytes(&bytes).unwrap();
        assert!(table.get(decoded).is_err());
    }

    #[test]
    fn installed_targets_run_by_id_and_unknown_ids_call_nothing() {
        let mut table = TargetTable::new();
        let id = table.register(Target::returning(double)).unwrap();
        // SAFETY: the table was built in this process from `Target::returning`.
        unsafe { install(table) };
        let args = codec::to_bytes(&21u32).unwrap();
        match run_installed(id, &args, Received::none()).unwrap() {
            Outcome::Returned(bytes) => assert_eq!(codec::from_bytes::<u32>(&bytes).unwrap(), 42),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run_installed(TargetId(99), &[], Received::none()),
            Err(Error::UnknownTarget { id: 99, .. })
        ));
    }
}
