//! The `Spawn` start method: re-execute this program's file with a private start-up message.
//!
//! The child inherits exactly: the read end of a fresh pipe carrying the start-up message, the
//! result pipe's write end (for [`spawn`](crate::spawn)), the descriptors of the arguments'
//! transfer envelope (the segments their handles name plus the default heap, and the
//! descriptors their handles carry), and any extra descriptors (the forkserver's socket).
//! Their numbers travel in `SHMPROC_CHILD`; everything else stays close-on-exec.

use super::{Launch, Started};
use crate::codec;
use crate::error::{Error, Result};
use crate::runtime;
use crate::sys;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Bytes a new pipe holds without a reader (Linux's default pipe size is 16 pages).
const PIPE_CAPACITY: usize = 65536;

/// Starts `launch` as a re-executed child that also inherits `extra`.
///
/// # Errors
/// [`Error::NotInitialized`] if `shmproc::init()` never ran in this process (the child would
/// run `main` again instead of its target); [`Error::Io`] if the child cannot be created.
pub(super) fn start(mut launch: Launch, extra: &[BorrowedFd<'_>]) -> Result<Started> {
    runtime::check_may_reexecute()?;
    let (boot_r, mut boot_w) = sys::pipe().map_err(|e| Error::io("pipe", e))?;
    let mut keep: Vec<BorrowedFd<'_>> = Vec::new();
    if let Some(r) = &launch.result {
        launch.boot.result = Some(keep.len());
        keep.push(r.as_fd());
    }
    for s in &launch.envelope.segments {
        launch.boot.segments.push(keep.len());
        keep.push(s.as_fd());
    }
    for fd in &launch.envelope.fds {
        launch.boot.handle_fds.push(keep.len());
        keep.push(fd.as_fd());
    }
    for fd in extra {
        launch.boot.extra.push(keep.len());
        keep.push(*fd);
    }
    let mut var = format!("1 {}", boot_r.as_raw_fd());
    for fd in &keep {
        let _ = write!(var, " {}", fd.as_raw_fd());
    }
    let bytes = codec::to_bytes(&launch.boot)?;
    keep.push(boot_r.as_fd());
    // A message that fits in the pipe is written before the child exists, so the child never
    // waits for it (one context switch less per start); a larger one is written after.
    let early = bytes.len() <= PIPE_CAPACITY;
    if early {
        boot_w
            .write_all(&bytes)
            .map_err(|e| Error::io("write start-up message", e))?;
    }
    let pid = sys::spawn_self(&[], &[(runtime::CHILD_ENV, OsStr::new(&var))], &keep)
        .map_err(|e| Error::io("posix_spawn", e))?;
    drop(keep);
    drop(boot_r);
    drop(launch.result.take());
    if !early {
        // A child that dies before reading its message makes this fail with EPIPE; its exit
        // code tells the story, so the error is not the caller's.
        let _ = boot_w.write_all(&bytes);
    }
    drop(boot_w);
    Started::with_pidfd(pid)
}
