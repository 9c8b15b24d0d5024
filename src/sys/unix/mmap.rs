//! `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0)`, and the
//! process-local buffer that stands in for it in tests.
//!
//! Every shared object lives in such a mapping. The mapping is made through `memmap2`'s
//! `MmapRaw`, which hands out raw pointers only: shmproc never forms a `&mut` to memory another
//! process may write. `MAP_NORESERVE` lets a heap reserve a large sparse range once; pages are
//! only backed when touched.
//!
//! A [`Mapping`] has two backings:
//! - **shared**: the `mmap` of a memory file above, visible to every process that maps the
//!   file;
//! - **process-local** (tests only: `cfg(any(test, miri, feature = "test-support"))`): a
//!   zero-filled, page-aligned allocation from the global allocator. It makes no system call
//!   (so the heap's code runs under miri) and is never visible to another process.
//!
//! Both hand out the same raw base pointer, so the code above cannot tell them apart.
//!
//! # Safety
//!
//! The process-local buffer is owned by its `Mapping`: allocated with a non-zero size in
//! `process_local`, freed once with the same layout in `Drop`, and only ever accessed through
//! the raw base pointer (never through a `&mut`), like a shared mapping. [`Mapping::zero`]
//! writes only inside `[0, len)`, checked before the write.
//!
//! # References
//! - `mmap(2)`
//! - `std::alloc::alloc_zeroed`, `std::alloc::Layout`

#![allow(unsafe_code)]

use memmap2::{MmapOptions, MmapRaw};
use rustix::fd::{AsRawFd, BorrowedFd};
use std::io;

/// A read-write mapping of a whole segment: shared (`mmap`) or, in tests, process-local.
/// Unmapped (or freed) on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    backing: Backing,
}

#[derive(Debug)]
enum Backing {
    Shared(MmapRaw),
    #[cfg(any(test, miri, feature = "test-support"))]
    Local(LocalBuffer),
}

impl Mapping {
    /// Maps the first `len` bytes of `fd`, shared and writable.
    pub(crate) fn map_shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        let raw = MmapOptions::new()
            .len(len)
            .no_reserve_swap()
            .map_raw(fd.as_raw_fd())?;
        Ok(Mapping {
            backing: Backing::Shared(raw),
        })
    }

    /// Allocates a zero-filled, page-aligned process-local buffer of `len` bytes (tests only).
    ///
    /// No system call is made: the memory comes from the global allocator.
    ///
    /// # Errors
    /// `InvalidInput` for a zero or unrepresentable length; `OutOfMemory` if the allocator
    /// fails.
    #[cfg(any(test, miri, feature = "test-support"))]
    pub(crate) fn process_local(len: usize) -> io::Result<Mapping> {
        Ok(Mapping {
            backing: Backing::Local(LocalBuffer::new(len)?),
        })
    }

    /// Returns the base address of the mapping (page-aligned).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        match &self.backing {
            Backing::Shared(raw) => raw.as_mut_ptr(),
            #[cfg(any(test, miri, feature = "test-support"))]
            Backing::Local(buf) => buf.ptr.as_ptr(),
        }
    }

    /// Returns the length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        match &self.backing {
            Backing::Shared(raw) => raw.len(),
            #[cfg(any(test, miri, feature = "test-support"))]
            Backing::Local(buf) => buf.layout.size(),
        }
    }

    /// Writes zeros over `[offset, offset + len)`.
    ///
    /// The caller must own the range exclusively (no other thread or process may access it
    /// meanwhile), as for a freed heap block.
    ///
    /// # Errors
    /// `InvalidInput` if the range does not lie inside the mapping; nothing is written then.
    pub(crate) fn zero(&self, offset: usize, len: usize) -> io::Result<()> {
        let end = offset.checked_add(len);
        if end.is_none_or(|end| end > self.len()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range outside the mapping",
            ));
        }
        let start = self.as_ptr().wrapping_add(offset);
        // SAFETY: `offset + len <= self.len()` (checked above), so every byte written lies
        // inside the mapping or buffer, which is writable and lives as long as `self`. The
        // caller owns the range exclusively (documented contract), so the write races with
        // nothing.
        unsafe { start.write_bytes(0, len) };
        Ok(())
    }
}

/// A zero-filled, page-aligned heap allocation that stands in for a shared mapping.
#[cfg(any(test, miri, feature = "test-support"))]
#[derive(Debug)]
struct LocalBuffer {
    ptr: core::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

#[cfg(any(test, miri, feature = "test-support"))]
impl LocalBuffer {
    fn new(len: usize) -> io::Result<LocalBuffer> {
        let invalid = || io::Error::new(io::ErrorKind::InvalidInput, "bad buffer length");
        if len == 0 {
            return Err(invalid());
        }
        let layout = std::alloc::Layout::from_size_align(len, super::thread::page_size())
            .map_err(|_| invalid())?;
        // SAFETY: `layout` has a non-zero size (checked above), as `alloc_zeroed` requires.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = core::ptr::NonNull::new(raw).ok_or(io::ErrorKind::OutOfMemory)?;
        Ok(LocalBuffer { ptr, layout })
    }
}

#[cfg(any(test, miri, feature = "test-support"))]
impl Drop for LocalBuffer {
    fn drop(&mut self) {
        // SAFETY: `ptr` was returned by `alloc_zeroed(self.layout)` in `new` and is freed only
        // here, once, with that same layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

// SAFETY: the buffer is owned by the `LocalBuffer` (no other owner frees or moves it), and
// all access goes through its raw base pointer under the same rules as a shared mapping
// (atomics, or exclusive ownership of a block), which hold across threads; `MmapRaw`, the
// other backing, is `Send` for the same reason.
#[cfg(any(test, miri, feature = "test-support"))]
unsafe impl Send for LocalBuffer {}
// SAFETY: as for `Send`: `&LocalBuffer` exposes only the pointer value and the layout.
#[cfg(any(test, miri, feature = "test-support"))]
unsafe impl Sync for LocalBuffer {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_local_buffer_is_zeroed_page_aligned_and_zero_is_bounded() {
        let map = Mapping::process_local(3 * 4096).expect("buffer");
        assert_eq!(map.len(), 3 * 4096);
        assert_eq!(map.as_ptr().addr() % super::super::thread::page_size(), 0);
        let p = map.as_ptr().wrapping_add(100);
        // SAFETY: offset 100 is inside the 12 KiB buffer; nothing else accesses it.
        unsafe { p.write(7) };
        map.zero(64, 64).expect("inside");
        // SAFETY: as above, a read inside the buffer.
        assert_eq!(unsafe { p.read() }, 0);
        assert!(map.zero(3 * 4096 - 8, 9).is_err());
        assert!(map.zero(usize::MAX, 2).is_err());
        assert!(Mapping::process_local(0).is_err());
    }
}
