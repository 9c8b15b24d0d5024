//! Targets: how a `fn(A) -> R` is named across `exec`, and the trampoline that runs it.
//!
//! A function pointer is only meaningful inside one loaded image. A child started with `Spawn`
//! (or forked by the forkserver, itself spawned) runs the same executable file, loaded at
//! another base address (ASLR moves the whole image by one offset). So a target travels as the
//! distance between its code and an anchor function of this crate, which is the same in every
//! process running the same file; the child adds its own anchor's address back.
//!
//! Two addresses travel: the user's `fn(A) -> R`, and the monomorphised
//! [`trampoline::<A, R>`](trampoline) that knows how to decode `A`, call the target and encode
//! `R`. The child calls the trampoline, which reinterprets the target address as `fn(A) -> R`.
//!
//! # Safety
//! Turning an address back into a function pointer is sound only when the address was made by
//! [`Target::of`] for exactly that type, in a process running the same executable file as the
//! one that turns it back. The addresses reach a child only through its private start-up
//! message (an inherited pipe, a forkserver socket pair, or memory copied by `fork`), never
//! from the outside; and the child checks that it runs the same file (device, inode, size,
//! modification time) before resolving anything (see `init`). The trampoline pointer and the
//! target pointer are always taken together, in [`Target::of`], from the same `A` and `R`.
//! Executables that load the target from a shared library loaded at run time are not
//! supported (the distance to the anchor is then not fixed); statically linked code is.

#![allow(unsafe_code)]

use crate::codec;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{ExitCode, Termination};

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

/// The type every trampoline has: target address and encoded arguments in, outcome out.
type Trampoline = fn(usize, &[u8]) -> Outcome;

/// A target, as distances from the anchor.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
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
    /// - `self` was made by [`Target::of`] in a process running the same executable file
    ///   (checked by the caller against the parent's recorded identity) and reached this
    ///   process unaltered.
    pub(crate) unsafe fn run(self, args: &[u8]) -> Outcome {
        // SAFETY: by the caller's contract, this address is that of `trampoline::<A, R>` in
        // this image, which has type `Trampoline`; function pointers and `usize` have the same
        // size on every supported platform.
        let t = unsafe { std::mem::transmute::<usize, Trampoline>(address(self.trampoline)) };
        t(address(self.function), args)
    }
}

/// Decodes `A`, calls the `fn(A) -> R` at `function`, encodes `R`.
fn trampoline<A: DeserializeOwned, R: Serialize>(function: usize, args: &[u8]) -> Outcome {
    // SAFETY: `function` was produced by `Target::of::<A, R>` from an `fn(A) -> R` together
    // with this very trampoline (see the module's `# Safety`), so it is such a pointer here.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(function) };
    let args: A = match codec::from_bytes(args) {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(format!("arguments: {e}")),
    };
    match catch_unwind(AssertUnwindSafe(|| f(args))) {
        Ok(r) => match codec::to_bytes(&r) {
            Ok(bytes) => Outcome::Returned(bytes),
            Err(e) => Outcome::Failed(format!("result: {e}")),
        },
        Err(payload) => Outcome::Panicked(panic_message(payload.as_ref())),
    }
}

/// Decodes `A`, calls the `fn(A) -> R` at `function`, reports `R` as an exit code.
fn exit_trampoline<A: DeserializeOwned, R: Termination>(function: usize, args: &[u8]) -> Outcome {
    // SAFETY: `function` was produced by `Target::terminating::<A, R>` from an `fn(A) -> R`
    // together with this very trampoline (see the module's `# Safety`).
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(function) };
    let args: A = match codec::from_bytes(args) {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(format!("arguments: {e}")),
    };
    match catch_unwind(AssertUnwindSafe(|| f(args).report())) {
        Ok(code) if code == ExitCode::SUCCESS => Outcome::Exited(0),
        Ok(_) => Outcome::Exited(1),
        Err(payload) => Outcome::Panicked(panic_message(payload.as_ref())),
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
