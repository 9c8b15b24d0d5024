//! `shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)`, `shm_unlink(name)`.
//!
//! Named segments are for unrelated processes. They are created exclusively (an existing name
//! is an error, never silently reused) and readable and writable by their owner only.
//!
//! # References
//! - `shm_open(3)`, `shm_unlink(3)`

use rustix::fd::OwnedFd;
use rustix::fs::Mode;
use rustix::shm;
use std::io;

/// Creates a new named shared memory object, failing if the name exists.
pub(crate) fn shm_create_exclusive(name: &str) -> io::Result<OwnedFd> {
    let flags = shm::OFlags::RDWR | shm::OFlags::CREATE | shm::OFlags::EXCL;
    Ok(shm::open(name, flags, Mode::RUSR | Mode::WUSR)?)
}

/// Opens an existing named shared memory object for reading and writing.
pub(crate) fn shm_open_existing(name: &str) -> io::Result<OwnedFd> {
    Ok(shm::open(name, shm::OFlags::RDWR, Mode::empty())?)
}

/// Removes a name; the memory lives on while descriptors or mappings refer to it.
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    Ok(shm::unlink(name)?)
}
