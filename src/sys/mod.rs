//! The operating-system layer: the only code in the crate that names `libc` or `rustix`.
//!
//! Each platform has a directory below this one, selected here once; callers use the
//! re-exports and never `#[cfg]` on the platform themselves. Linux is the first platform.
//! Under `--cfg shmproc_loom` the futex is replaced by an emulation on loom primitives so the
//! lock algorithms above run unchanged inside loom models.

#[cfg(target_os = "linux")]
mod unix;

#[cfg(target_os = "linux")]
pub(crate) use unix::*;

#[cfg(not(target_os = "linux"))]
compile_error!("shmproc supports Linux first; other platforms need a directory under src/sys/");
