//! `pipe2(O_CLOEXEC)`: one-way byte channels from a child to its parent.
//!
//! Both ends are close-on-exec; a spawned child that needs its end is given it explicitly.
//! Ends are returned as [`std::fs::File`] so callers use `Read`/`Write` (which retry on
//! `EINTR`).
//!
//! # References
//! - `pipe(2)`

use rustix::pipe::{PipeFlags, pipe_with};
use std::fs::File;
use std::io;

/// Creates a close-on-exec pipe; returns (read end, write end).
pub(crate) fn pipe() -> io::Result<(File, File)> {
    let (r, w) = pipe_with(PipeFlags::CLOEXEC)?;
    Ok((File::from(r), File::from(w)))
}
