//! Segments: shared mappings with a checked header.
//!
//! A [`Segment`] is a region of memory shared between processes. It is backed by an anonymous
//! memory file (`memfd_create`) unless created by name; it carries a [`header`] that is checked
//! whenever the segment is opened or attached; and it hosts a heap (see `crate::heap`) from
//! which every shared object is allocated.
//!
//! Invariants:
//! - The mapping covers the whole segment and stays mapped while any handle in this process
//!   refers to it (handles hold an `Arc` of the segment).
//! - The header is written once, magic last, before the segment is visible to anybody else
//!   (anonymous segments) or before the name is handed out (named segments: an opener that
//!   races the creator sees a bad magic and retries briefly).
//! - Only the creating process unlinks a named segment, and only once: a forked child that
//!   drops its copy never unlinks (the creator's pid is recorded and compared).

pub(crate) mod header;
pub(crate) mod registry;

use crate::error::{Error, Result};
use crate::loom::AtomicU64;
use crate::sys;
use header::{HEADER_LEN, Header};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

/// Largest segment: block indices are 32 bits over 16-byte units.
pub(crate) const MAX_SEGMENT_LEN: u64 = 1 << 36;
/// Type fingerprint of a published root blob.
const BLOB_FINGERPRINT: u64 = crate::fingerprint::start("shmproc::Segment root blob", 1, 32);

/// Smallest segment: the header page plus one page of heap.
pub(crate) const MIN_SEGMENT_LEN: u64 = 8192;

/// A shared memory segment that hosts a heap of shared objects.
///
/// `Clone` gives another handle to the same segment. The memory stays mapped while any handle
/// (or any object allocated in it) is alive in this process.
///
/// Anonymous segments ([`Segment::create`]) have no name anywhere: they vanish when the last
/// process using them exits, however it exits. Named segments ([`Segment::create_named`]) are
/// for unrelated processes, which find them with [`Segment::open`]; the creating process
/// removes the name when its last handle is dropped, and if it dies first (even by `SIGKILL`)
/// a small reaper process it started with its first named segment removes the name instead.
#[derive(Clone)]
pub struct Segment {
    pub(crate) inner: Arc<SegmentInner>,
}

pub(crate) struct SegmentInner {
    map: sys::Mapping,
    fd: OwnedFd,
    id: u64,
    len: u64,
    name: Option<String>,
    creator_pid: u32,
    owner: bool,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("id", &format_args!("{:#018x}", self.inner.id))
            .field("len", &self.inner.len)
            .field("name", &self.inner.name)
            .finish()
    }
}

impl Segment {
    /// Creates an anonymous segment of `len` bytes (rounded up to whole pages).
    ///
    /// The memory is reserved, not committed: pages use memory only once written, so a large
    /// `len` costs address space, not RAM.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] if `len` is below 8 KiB or above 64 GiB; [`Error::Io`] if the
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
        let len = checked_len(len)?;
        let fd = sys::memfd_create("shmproc").map_err(|e| Error::io("memfd_create", e))?;
        sys::set_len(&fd, len).map_err(|e| Error::io("ftruncate", e))?;
        Self::init_new(fd, len, None)
    }

    /// Creates a named segment that unrelated processes can [`open`](Segment::open).
    ///
    /// The name is created exclusively with mode `0600` (owner read/write only). It is removed
    /// when the last handle in the creating process is dropped, or when that process dies
    /// (a reaper process, started with the first named segment, watches for that); other
    /// processes keep their mappings. Names follow `shm_open(3)`: an optional leading `/`, then 1 to 250 characters
    /// without `/` or NUL.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if the name is taken; [`Error::InvalidName`];
    /// [`Error::InvalidSize`]; [`Error::Io`].
    pub fn create_named(name: &str, len: u64) -> Result<Segment> {
        let name = normalize_name(name)?;
        let len = checked_len(len)?;
        let fd = match sys::shm_create_exclusive(&name) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(sys::errno::EXIST.raw_os_error()) => {
                return Err(Error::AlreadyExists { name });
            }
            Err(e) => return Err(Error::io("shm_open", e)),
        };
        if let Err(e) = sys::reaper::watch(&name) {
            let _ = sys::shm_unlink(&name);
            return Err(Error::io("start segment reaper", e));
        }
        if let Err(e) = sys::set_len(&fd, len) {
            let _ = sys::shm_unlink(&name);
            sys::reaper::unwatch(&name);
            return Err(Error::io("ftruncate", e));
        }
        let seg = Self::init_new(fd, len, Some(name.clone()));
        if seg.is_err() {
            let _ = sys::shm_unlink(&name);
            sys::reaper::unwatch(&name);
        }
        seg
    }

    /// Opens a named segment created by another process, checking its header.
    ///
    /// # Errors
    /// [`Error::NotFound`] if no segment has that name; [`Error::CorruptHeader`] if the header
    /// fails a check (not a shmproc segment, other version, damaged);
    /// [`Error::SizeMismatch`] if the file's size is not the one recorded;
    /// [`Error::TypeMismatch`] if it holds another layout; [`Error::InvalidName`];
    /// [`Error::Io`].
    pub fn open(name: &str) -> Result<Segment> {
        let name = normalize_name(name)?;
        let fd = match sys::shm_open_existing(&name) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(sys::errno::NOENT.raw_os_error()) => {
                return Err(Error::NotFound { name });
            }
            Err(e) => return Err(Error::io("shm_open", e)),
        };
        // A creator racing us may not have written its header yet: retry briefly.
        let deadline = sys::Deadline::after(std::time::Duration::from_millis(200));
        loop {
            match Self::attach_fd(
                fd.try_clone().map_err(|e| Error::io("dup", e))?,
                Some(&name),
            ) {
                Err(Error::CorruptHeader { .. } | Error::SizeMismatch { .. })
                    if !deadline.has_passed() =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => return other,
            }
        }
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
        Self::attach_fd(fd, None)
    }

    fn attach_fd(fd: OwnedFd, name: Option<&str>) -> Result<Segment> {
        let actual = sys::fd_len(&fd).map_err(|e| Error::io("fstat", e))?;
        if !(MIN_SEGMENT_LEN..=MAX_SEGMENT_LEN).contains(&actual) {
            return Err(Error::CorruptHeader {
                reason: "segment size out of range",
            });
        }
        let map_len = usize::try_from(actual).map_err(|_| Error::InvalidSize {
            reason: "segment larger than the address space",
        })?;
        let map =
            sys::Mapping::map_shared(fd.as_fd(), map_len).map_err(|e| Error::io("mmap", e))?;
        let header = Header::parse(
            &Header::load(header_words(&map)),
            actual,
            crate::heap::HEAP_LAYOUT,
        )?;
        if let Some(existing) = registry::lookup(header.id) {
            return Ok(Segment { inner: existing });
        }
        let inner = Arc::new(SegmentInner {
            map,
            fd,
            id: header.id,
            len: actual,
            name: name.map(str::to_owned),
            creator_pid: header.creator_pid,
            owner: false,
        });
        crate::heap::RawHeap::new(&inner).check_state()?;
        registry::register(&inner);
        Ok(Segment { inner })
    }

    fn init_new(fd: OwnedFd, len: u64, name: Option<String>) -> Result<Segment> {
        let map_len = usize::try_from(len).map_err(|_| Error::InvalidSize {
            reason: "segment larger than the address space",
        })?;
        let map =
            sys::Mapping::map_shared(fd.as_fd(), map_len).map_err(|e| Error::io("mmap", e))?;
        let id = loop {
            let id = sys::random_u64();
            if id != 0 && registry::lookup(id).is_none() {
                break id;
            }
        };
        let pid = sys::current_pid();
        let inner = Arc::new(SegmentInner {
            map,
            fd,
            id,
            len,
            name,
            creator_pid: pid,
            owner: true,
        });
        crate::heap::RawHeap::new(&inner).init();
        Header::new(len, crate::heap::HEAP_LAYOUT, id, pid).store(header_words(&inner.map));
        registry::register(&inner);
        Ok(Segment { inner })
    }

    /// Returns the segment's length in bytes.
    pub fn len(&self) -> u64 {
        self.inner.len
    }

    /// Returns `false`: a segment always has its header page. (Present for API symmetry.)
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Returns the random 64-bit identity recorded in the header.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Returns the name of a named segment (as passed to `shm_open`, with its leading `/`).
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// Returns the descriptor of the backing memory file, for passing to another process.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }

    /// Returns the number of bytes of memory the segment currently uses (pages touched and not
    /// given back), as the kernel counts them.
    ///
    /// # Errors
    /// [`Error::Io`] if `fstat` fails.
    pub fn resident_bytes(&self) -> Result<u64> {
        sys::fd_blocks_bytes(&self.inner.fd).map_err(|e| Error::io("fstat", e))
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
        let blob = crate::heap::ObjectRef::alloc(self, bytes.len() as u64, 32, BLOB_FINGERPRINT)?;
        blob.write_new_bytes(&bytes);
        let tok = blob.into_owned_token();
        let packed = (u64::from(tok.generation) << 32) | (tok.offset / 32);
        let heap = crate::heap::RawHeap::new(&self.inner);
        // AcqRel: Release publishes the blob's bytes to lookups; Acquire lets us free the old
        // blob after every write to it.
        let old = heap.root_word().swap(packed, crate::loom::Ordering::AcqRel);
        if old != 0 {
            let _ = heap.release_payload((old & 0xffff_ffff) * 32);
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
        let heap = crate::heap::RawHeap::new(&self.inner);
        let mut tries = 0;
        loop {
            // Acquire: pairs with the publisher's Release swap.
            let packed = heap.root_word().load(crate::loom::Ordering::Acquire);
            if packed == 0 {
                return Err(Error::NotFound {
                    name: format!(
                        "root object of segment {}",
                        self.name().unwrap_or("(anonymous)")
                    ),
                });
            }
            let tok = crate::heap::ObjectToken {
                segment: self.id(),
                name: None,
                offset: (packed & 0xffff_ffff) * 32,
                generation: u32::try_from(packed >> 32).unwrap_or(0),
                fingerprint: BLOB_FINGERPRINT,
            };
            match crate::heap::ObjectRef::attach(&tok, BLOB_FINGERPRINT, "published root") {
                Ok(blob) => return crate::codec::from_bytes(&blob.read_published_bytes()),
                // Replaced (and freed) between our load and attach: read the new root.
                Err(Error::ObjectGone) if tries < 100 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Returns the heap's statistics: bytes in live blocks and the high-water mark.
    pub fn stats(&self) -> crate::heap::HeapStats {
        crate::heap::RawHeap::new(&self.inner).stats()
    }
}

impl SegmentInner {
    pub(crate) fn base(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SegmentInner {
    fn drop(&mut self) {
        registry::unregister(self.id);
        if self.owner
            && self.creator_pid == sys::current_pid()
            && let Some(name) = &self.name
        {
            let _ = sys::shm_unlink(name);
            sys::reaper::unwatch(name);
        }
    }
}

fn header_words(map: &sys::Mapping) -> &[AtomicU64] {
    crate::heap::words(map, HEADER_LEN / 8)
}

fn checked_len(len: u64) -> Result<u64> {
    if len < MIN_SEGMENT_LEN {
        return Err(Error::InvalidSize {
            reason: "segment smaller than 8 KiB",
        });
    }
    if len > MAX_SEGMENT_LEN {
        return Err(Error::InvalidSize {
            reason: "segment larger than 64 GiB",
        });
    }
    let page = sys::page_size() as u64;
    len.checked_next_multiple_of(page)
        .ok_or(Error::InvalidSize {
            reason: "segment length overflows",
        })
}

fn normalize_name(name: &str) -> Result<String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let reason = if bare.is_empty() {
        Some("empty")
    } else if bare.len() > 250 {
        Some("longer than 250 bytes")
    } else if bare.contains('/') {
        Some("contains '/'")
    } else if bare.contains('\0') {
        Some("contains NUL")
    } else if bare == "." || bare == ".." {
        Some("is a directory name")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(format!("/{bare}")),
    }
}
