//! The harness shared by shmproc's multi-process tests.
pub use shmproc::testing;
