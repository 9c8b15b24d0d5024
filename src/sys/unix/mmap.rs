//! `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0)`.
//!
//! Every shared object lives in such a mapping. The mapping is made through `memmap2`'s
//! `MmapRaw`, which hands out raw pointers only: shmproc never forms a `&mut` to memory another
//! process may write. `MAP_NORESERVE` lets a heap reserve a large sparse range once; pages are
//! only backed when touched.
//!
//! # References
//! - `mmap(2)`

use memmap2::{MmapOptions, MmapRaw};
use rustix::fd::{AsRawFd, BorrowedFd};
use std::io;

/// A shared, read-write mapping of a whole file; unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    raw: MmapRaw,
}

impl Mapping {
    /// Maps the first `len` bytes of `fd`, shared and writable.
    pub(crate) fn map_shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        let raw = MmapOptions::new()
            .len(len)
            .no_reserve_swap()
            .map_raw(fd.as_raw_fd())?;
        Ok(Mapping { raw })
    }

    /// Returns the base address of the mapping.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.raw.as_mut_ptr()
    }

    /// Returns the length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }
}
