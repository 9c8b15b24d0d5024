//! `mallopt`: keep freed heap memory in the process instead of returning it to the kernel.
//!
//! A pool worker allocates and frees buffers of hundreds of kilobytes per chunk (the decoded
//! arguments, the results, their encodings). With glibc's defaults, freeing them shrinks the
//! heap (`brk`, a TLB flush) or unmaps them, and the next chunk faults every page in again:
//! about a tenth of a worker's time on small items. A worker keeps its memory instead.
//!
//! # References
//! - `mallopt(3)`: `M_TRIM_THRESHOLD`, `M_MMAP_THRESHOLD`

#![allow(unsafe_code)]

/// Up to this much free memory at the top of the heap is kept, and allocations up to this
/// size come from the heap rather than from their own mapping.
const KEEP: i32 = 64 << 20;

/// Makes this process's allocator keep freed memory (glibc; elsewhere a no-op).
pub(crate) fn keep_freed_memory() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: `mallopt` only sets allocator parameters; both are documented options
        // taking a byte count, and it is safe to call at any time from any thread.
        unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP) };
        // SAFETY: as above.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, KEEP) };
    }
}
