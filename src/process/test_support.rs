//! Starting processes from `#[test]` functions: [`enable_test_support!`](crate::enable_test_support).
//!
//! A test binary's `main` is the test harness's, not yours, so nothing in it calls
//! [`init`](crate::init). A `Spawn` child re-executes the test binary; without `init` it would
//! run the whole harness again. Two ways make a test binary call `init` before its harness
//! starts:
//!
//! - the [`enable_test_support!`](crate::enable_test_support) macro, invoked once in every
//!   test crate (each file of `tests/` is its own crate, and so is a library's
//!   `#[cfg(test)]` build); it needs no feature and no extra dependency;
//! - or the `test-support` feature of shmproc, enabled for tests only:
//!   `[dev-dependencies] shmproc = { version = "0.1", features = ["test-support"] }`. With
//!   Cargo's feature resolver 2 (the default since edition 2021) normal builds do not get it.
//!   It registers the same hook from inside shmproc, so every binary that links shmproc with
//!   it (tests, benchmarks) is covered.
//!
//! Without either, starting a `Spawn` or `ForkServer` child from a test fails at `start()`
//! with [`Error::NotInitialized`](crate::Error::NotInitialized), whose message says what to
//! do; `Fork` children (which do not re-execute the binary) work regardless.

/// Makes `#[test]` functions of this crate able to start `Spawn` and `ForkServer` children.
///
/// Invoke it once, at the top level of every test crate that starts processes (each file in
/// `tests/`, and the library's own `#[cfg(test)]` build). It registers a function in the
/// binary's `.init_array` that calls [`init`](crate::init) before the test harness's `main`:
/// in the test process that only records that `init` ran; in a child started by a test it
/// runs the child's target and exits, so the harness never starts there. It is a no-op in
/// non-test builds (it expands under `#[cfg(test)]`) and harmless twice. The `test-support`
/// feature does the same for every binary linked with it (benchmarks too); see the README's
/// "Starting processes from tests" section.
///
/// The expansion contains `#[unsafe(link_section = ".init_array")]`, which the `unsafe_code`
/// lint reports; a crate with `#![forbid(unsafe_code)]` enables the `test-support` feature
/// instead.
///
/// # Examples
/// ```
/// // tests/workers.rs
/// shmproc::enable_test_support!();
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// #[test]
/// fn a_child_squares() -> shmproc::Result<()> {
///     assert_eq!(shmproc::spawn(square, 7)?.join()?, 49);
///     Ok(())
/// }
/// # fn main() {}
/// ```
// The example shows a `#[test]` function: that is the point of the macro.
#[allow(clippy::test_attr_in_doctest)]
#[macro_export]
macro_rules! enable_test_support {
    () => {
        #[cfg(test)]
        const _: () = {
            extern "C" fn __shmproc_init_before_test_harness() {
                $crate::__private::init_before_test_harness();
            }
            // Run by the C runtime before `main`, like any constructor in `.init_array`.
            #[used]
            #[unsafe(link_section = ".init_array")]
            static __SHMPROC_INIT_BEFORE_TEST_HARNESS: extern "C" fn() =
                __shmproc_init_before_test_harness;
        };
    };
}

/// What [`enable_test_support!`](crate::enable_test_support) runs before the test harness.
#[doc(hidden)]
pub fn init_before_test_harness() {
    crate::init();
}
