//! The heap's side of a segment: the public constructors, which create or check a heap in the
//! segment, and the root object that unrelated processes find by name.
//!
//! The segment layer knows nothing of the heap: it takes a [`Format`] (the heap's layout
//! fingerprint, and how to initialize and check the heap state) and every public constructor
//! of [`Segment`] passes [`HEAP_FORMAT`]. So a segment made or opened through the public API
//! always holds a heap whose state was initialized, or checked, before any handle can reach it.
//!
//! The root slot (`ROOT` in the heap state, see the heap's layout table) holds the packed token
//! of one immutable blob, the encoding of the published value: `payload / 32` in the low 32
//! bits, the blob's generation in the high 32, 0 for nothing published. The slot owns one
//! reference to the blob; `publish` swaps in a new one and releases the old.

#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

use super::{BLOCK_HEADER, HEAP_LAYOUT, HeapStats, ObjectRef, ObjectToken, RawHeap};
use crate::error::{Error, Result};
use crate::loom::Ordering;
use crate::segment::{Format, Segment, SegmentInner};
use std::os::fd::OwnedFd;

/// What a heap segment holds: the heap's layout, initialized and checked by [`RawHeap`].
pub(crate) const HEAP_FORMAT: Format = Format {
    layout: HEAP_LAYOUT,
    init: init_heap,
    check: check_heap,
};

fn init_heap(seg: &SegmentInner) {
    RawHeap::new(seg).init();
}

fn check_heap(seg: &SegmentInner) -> Result<()> {
    RawHeap::new(seg).check_state()
}

/// Type fingerprint of a published root blob.
const BLOB_FINGERPRINT: u64 = crate::fingerprint::start("shmproc::Segment root blob", 1, 32);
/// Root blobs are aligned to (and their offsets counted in) block-header units.
const BLOB_UNIT: u64 = BLOCK_HEADER;

impl Segment {
    /// Creates an anonymous segment of `len` bytes, rounded up to [`Segment::MIN_LEN`] (8 KiB)
    /// and to whole pages.
    ///
    /// The memory is reserved, not committed: pages use memory only once written, so a large
    /// `len` costs address space, not RAM.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] if `len` is above 64 GiB; [`Error::Io`] if the
    /// memory file cannot be created or mapped.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> shmproc::Result<()> {
    /// let seg = shmproc::Segment::create(1 << 20)?;
    /// let v = shmproc::Value::new_in(&seg, 1.5f64)?;
    /// assert_eq!(v.get()?, 1.5);
    /// # Ok(()) }
    /// ```
    pub fn create(len: u64) -> Result<Segment> {
        Segment::create_with(len, &HEAP_FORMAT)
    }

    /// Creates a segment of `len` bytes in a process-local buffer instead of a memory file.
    /// Not public API (`test-support` only).
    ///
    /// It behaves as an anonymous segment in this process, but makes no system call to exist
    /// (so the heap runs under miri), has no descriptor ([`Segment::as_fd`] panics) and cannot
    /// be passed to another process; freed large blocks are zero-filled instead of given back.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] as for [`Segment::create`]; [`Error::Io`] if the allocation
    /// fails.
    #[cfg(any(test, miri, feature = "test-support"))]
    #[doc(hidden)]
    pub fn process_local(len: u64) -> Result<Segment> {
        Segment::process_local_with(len, &HEAP_FORMAT)
    }

    /// Creates a named segment that unrelated processes can [`open`](Segment::open).
    ///
    /// The name is created exclusively with mode `0600` (owner read/write only). It is removed
    /// when the last handle in the creating process is dropped, or when that process dies
    /// (a reaper process, started with the first named segment, watches for that); other
    /// processes keep their mappings. Names follow `shm_open(3)`: an optional leading `/`,
    /// then 1 to 250 characters without `/` or NUL. `len` is rounded up to
    /// [`Segment::MIN_LEN`] (8 KiB) and to whole pages.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if the name is taken; [`Error::InvalidName`];
    /// [`Error::InvalidSize`] above 64 GiB; [`Error::Io`], also when this process already holds 1024
    /// named segments (the most its reaper removes at exit).
    pub fn create_named(name: &str, len: u64) -> Result<Segment> {
        Segment::create_named_with(name, len, &HEAP_FORMAT)
    }

    /// Opens a named segment created by another process, checking its header.
    ///
    /// # Errors
    /// [`Error::NotFound`] if no segment has that name; [`Error::CorruptHeader`] if the header
    /// fails a check (not a shmproc segment, other version, damaged);
    /// [`Error::SizeMismatch`] if the file's size is not the one recorded;
    /// [`Error::TypeMismatch`] if it holds another layout; [`Error::InvalidName`];
    /// [`Error::UntrustedSegment`] if the object belongs to another user or grants group or
    /// others any access (see [`open_shared_between_users`](Segment::open_shared_between_users));
    /// [`Error::Io`].
    pub fn open(name: &str) -> Result<Segment> {
        Segment::open_with(name, &HEAP_FORMAT, false)
    }

    /// Opens a named segment like [`open`](Segment::open), but also one that belongs to
    /// another user or that group or others may access: for segments shared between users on
    /// purpose (whoever made the object, or can write it, must then be trusted like this
    /// process, since its contents steer what this process reads and writes).
    ///
    /// # Errors
    /// As for [`open`](Segment::open), except [`Error::UntrustedSegment`].
    pub fn open_shared_between_users(name: &str) -> Result<Segment> {
        Segment::open_with(name, &HEAP_FORMAT, true)
    }

    /// Attaches a segment from a descriptor received from another process (inherited, or
    /// passed over a Unix socket), checking its header.
    ///
    /// If the segment is already attached in this process, the existing mapping is returned
    /// and `fd` is closed.
    ///
    /// # Errors
    /// As for [`Segment::open`], except [`Error::NotFound`].
    pub fn from_fd(fd: OwnedFd) -> Result<Segment> {
        Segment::from_fd_with(fd, &HEAP_FORMAT)
    }

    /// Publishes `value` as the segment's root object, so processes that
    /// [`open`](Segment::open) the segment by name can [`lookup`](Segment::lookup) it.
    ///
    /// `value` is typically a handle or a tuple or struct of handles (`Value`, `Array`,
    /// `Lock`, …) allocated in this segment. Its encoding is stored in the segment; a later
    /// `publish` replaces it. The handles themselves must stay alive somewhere (a published
    /// token does not keep its object alive): a lookup after every handle was dropped is
    /// [`Error::ObjectGone`].
    ///
    /// # Errors
    /// [`Error::Codec`] if `value` does not serialize; [`Error::OutOfMemory`].
    pub fn publish<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let bytes = crate::codec::to_bytes(value)?;
        let len = u64::try_from(bytes.len()).map_err(|_| Error::OutOfMemory {
            requested: u64::MAX,
            capacity: self.len(),
        })?;
        let blob = ObjectRef::alloc(self, len, BLOB_UNIT, BLOB_FINGERPRINT)?;
        blob.write_new_bytes(&bytes);
        let tok = blob.into_owned_token();
        let packed = (u64::from(tok.generation) << 32) | (tok.offset / BLOB_UNIT);
        let heap = RawHeap::new(&self.inner);
        // AcqRel: Release publishes the blob's bytes to lookups; Acquire lets us free the old
        // blob after every write to it.
        let old = heap.root_word().swap(packed, Ordering::AcqRel);
        if old != 0 {
            // The old blob's offset fits: it was a block offset in this segment, divided by
            // the unit; a corrupted slot is refused by `release_payload`'s checks.
            if let Some(payload) = (old & 0xffff_ffff).checked_mul(BLOB_UNIT) {
                let _ = heap.release_payload(payload);
            }
        }
        Ok(())
    }

    /// Reads the root object [`publish`](Segment::publish)ed in this segment, re-attaching the
    /// handles inside it.
    ///
    /// # Errors
    /// [`Error::NotFound`] if nothing was published; [`Error::TypeMismatch`] if the handles
    /// inside are of other types than `T`'s; [`Error::ObjectGone`]; [`Error::Codec`].
    pub fn lookup<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        let heap = RawHeap::new(&self.inner);
        let mut tries = 0u32;
        loop {
            // Acquire: pairs with the publisher's Release swap.
            let packed = heap.root_word().load(Ordering::Acquire);
            if packed == 0 {
                return Err(Error::NotFound {
                    name: format!(
                        "root object of segment {}",
                        self.name().unwrap_or("(anonymous)")
                    ),
                });
            }
            let tok = ObjectToken {
                segment: self.id(),
                name: None,
                offset: (packed & 0xffff_ffff).saturating_mul(BLOB_UNIT),
                generation: u32::try_from(packed >> 32).unwrap_or(0),
                fingerprint: BLOB_FINGERPRINT,
            };
            match ObjectRef::attach(&tok, BLOB_FINGERPRINT, "published root") {
                Ok(blob) => return crate::codec::from_bytes(&blob.read_published_bytes()),
                // Replaced (and freed) between our load and attach: read the new root.
                Err(Error::ObjectGone) if tries < 100 => tries = tries.saturating_add(1),
                Err(e) => return Err(e),
            }
        }
    }

    /// Returns the heap's statistics: bytes in live blocks and the high-water mark.
    pub fn stats(&self) -> HeapStats {
        RawHeap::new(&self.inner).stats()
    }
}
