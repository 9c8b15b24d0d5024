//! `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)`, size seals, `ftruncate`, `fstat`
//! and `fallocate(PUNCH_HOLE)`.
//!
//! An anonymous memory file has no name in any file system, so nothing can be left behind in
//! `/dev/shm` whichever process dies; it lives while a descriptor or a mapping refers to it.
//! Descriptors are close-on-exec; a child that should inherit one is given it explicitly.
//!
//! A memory file's size is sealed once it is set (`F_SEAL_SHRINK | F_SEAL_GROW`, then
//! `F_SEAL_SEAL`): a process that received the descriptor can then never shrink it under the
//! mappings of others (which would turn their next access into `SIGBUS`). Punching holes
//! stays allowed (it keeps the size).
//!
//! # References
//! - `memfd_create(2)`, `ftruncate(2)`, `fallocate(2)`, `fcntl(2)` (file seals)

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{FallocateFlags, MemfdFlags, SealFlags};
use std::io;

/// Creates an anonymous, close-on-exec memory file of length zero that accepts seals.
pub(crate) fn memfd_create(name: &str) -> io::Result<OwnedFd> {
    Ok(rustix::fs::memfd_create(
        name,
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?)
}

/// Seals a memory file's size for good: no shrinking, no growing, no further seal changes.
pub(crate) fn seal_size(fd: impl AsFd) -> io::Result<()> {
    let seals = SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
    Ok(rustix::fs::fcntl_add_seals(fd, seals)?)
}

/// Returns whether a file's size is sealed against shrinking (false for files that take no
/// seals, such as `shm_open` objects).
pub(crate) fn size_sealed(fd: impl AsFd) -> bool {
    rustix::fs::fcntl_get_seals(fd).is_ok_and(|s| s.contains(SealFlags::SHRINK))
}

/// Sets the length of a memory file (new bytes read as zero and use no memory until written).
pub(crate) fn set_len(fd: impl AsFd, len: u64) -> io::Result<()> {
    Ok(rustix::fs::ftruncate(fd, len)?)
}

/// Returns the length of a file.
pub(crate) fn fd_len(fd: impl AsFd) -> io::Result<u64> {
    let st = rustix::fs::fstat(fd)?;
    u64::try_from(st.st_size).map_err(|_| io::Error::other("negative file size"))
}

/// Returns a file's owner and permission bits (`st_uid`, `st_mode & 0o7777`).
pub(crate) fn fd_owner_mode(fd: impl AsFd) -> io::Result<(u32, u32)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_uid, st.st_mode & 0o7777))
}

/// Returns the effective user id of this process.
pub(crate) fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Gives the pages of `[offset, offset + len)` back to the system; they read as zero after.
pub(crate) fn punch_hole(fd: impl AsFd, offset: u64, len: u64) -> io::Result<()> {
    let mode = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
    Ok(rustix::fs::fallocate(fd, mode, offset, len)?)
}

/// Returns the bytes of memory a file uses (`st_blocks * 512`).
pub(crate) fn fd_blocks_bytes(fd: impl AsFd) -> io::Result<u64> {
    let st = rustix::fs::fstat(fd)?;
    let blocks = u64::try_from(st.st_blocks).map_err(|_| io::Error::other("negative blocks"))?;
    Ok(blocks.saturating_mul(512))
}
