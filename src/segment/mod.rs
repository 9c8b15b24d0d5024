//! Segments: shared mappings with a checked header, and the table of attached segments.
//!
//! A [`Segment`] is a region of memory shared between processes. It is backed by an anonymous
//! memory file (`memfd_create`) unless created by name; it carries a [`header`] that is checked
//! whenever the segment is opened or attached; and the per-process [`registry`] maps segment
//! identities to attached segments. That is all this layer knows: what lives after the header
//! is described by a [`Format`] that the layer above passes in (its layout fingerprint, and
//! how to initialize and check the contents). The heap is that layer; it also provides the
//! public constructors (`Segment::create`, `create_named`, `open`, `from_fd`) and the root
//! object (`publish`, `lookup`, `stats`) in the heap's `root` module.
//!
//! Backings: a memory file (anonymous `memfd`, or a named `shm_open` object) mapped shared;
//! and, for tests only (`cfg(any(test, miri, feature = "test-support"))`), a process-local
//! buffer that makes no system call, so the allocator's code runs under miri. Both go through
//! one `sys::Mapping` and behave alike, except that a process-local segment has no descriptor
//! (it cannot be passed to another process) and gives pages back by zeroing them
//! ([`SegmentInner::discard`]).
//!
//! Invariants:
//! - The mapping covers the whole segment and stays mapped while any handle in this process
//!   refers to it (handles hold an `Arc` of the segment).
//! - The header is written once, magic last, after the contents were initialized and before
//!   the segment is visible to anybody else (anonymous segments) or before the name is handed
//!   out (named segments: an opener that races the creator sees a bad magic and retries
//!   briefly).
//! - Only the creating process unlinks a named segment, and only once: a forked child that
//!   drops its copy never unlinks (the creator's pid is recorded and compared).
//!
//! # Safety
//!
//! The only unsafe code views the header words of a mapping as `AtomicU64`s (`header_words`):
//! the base of every mapping is page-aligned and at least `MIN_SEGMENT_LEN` long, and the
//! slice borrows the mapping, which keeps the memory alive.

#![allow(unsafe_code)]
#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

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

/// Smallest segment: the header page plus one page of contents.
pub(crate) const MIN_SEGMENT_LEN: u64 = 8192;

/// What a segment holds after its header, as the layer above describes it.
///
/// The segment layer records `layout` in the header of every segment it creates and refuses
/// to attach a segment whose header names another layout; it calls `init` on a new segment
/// (zero-filled, header not yet written, visible to nobody) and `check` on a segment being
/// attached (after its header passed every check, before it is registered).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Format {
    /// Fingerprint of the contents' layout.
    pub(crate) layout: u64,
    /// Initializes the contents of a new segment.
    pub(crate) init: fn(&SegmentInner),
    /// Checks the contents of a segment being attached.
    pub(crate) check: fn(&SegmentInner) -> Result<()>,
}

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
    /// The memory file; `None` for a process-local buffer.
    fd: Option<OwnedFd>,
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
    /// The smallest segment length, in bytes (8 KiB: the header, the heap's metadata and room
    /// for objects). A smaller length given to [`Segment::create`] or
    /// [`Segment::create_named`] is rounded up to it, as any length is rounded up to whole
    /// pages; [`Segment::len`] tells the length actually mapped.
    pub const MIN_LEN: u64 = MIN_SEGMENT_LEN;

    /// Creates an anonymous segment of `len` bytes (rounded up to whole pages) holding
    /// `format`. See `Segment::create`.
    pub(crate) fn create_with(len: u64, format: &Format) -> Result<Segment> {
        let len = checked_len(len)?;
        let fd = sys::memfd_create("shmproc").map_err(|e| Error::io("memfd_create", e))?;
        sys::set_len(&fd, len).map_err(|e| Error::io("ftruncate", e))?;
        sys::seal_size(&fd).map_err(|e| Error::io("fcntl(F_ADD_SEALS)", e))?;
        let map_len = map_len(len)?;
        let map =
            sys::Mapping::map_shared(fd.as_fd(), map_len).map_err(|e| Error::io("mmap", e))?;
        Ok(Self::init_new(map, Some(fd), len, None, format))
    }

    /// Creates a segment of `len` bytes (rounded up to whole pages) holding `format` in a
    /// process-local buffer: no memory file, no system call, never visible to another
    /// process. For tests (and miri), where it behaves as an anonymous segment.
    #[cfg(any(test, miri, feature = "test-support"))]
    pub(crate) fn process_local_with(len: u64, format: &Format) -> Result<Segment> {
        let len = checked_len(len)?;
        let map = sys::Mapping::process_local(map_len(len)?)
            .map_err(|e| Error::io("allocate process-local segment", e))?;
        Ok(Self::init_new(map, None, len, None, format))
    }

    /// Creates a named segment holding `format`. See `Segment::create_named`.
    pub(crate) fn create_named_with(name: &str, len: u64, format: &Format) -> Result<Segment> {
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
            let op = if e.kind() == std::io::ErrorKind::QuotaExceeded {
                "create a named segment past the 1024 named segments a process may hold (the \
                 most its reaper removes at exit)"
            } else {
                "start segment reaper"
            };
            return Err(Error::io(op, e));
        }
        let map = sys::set_len(&fd, len)
            .map_err(|e| Error::io("ftruncate", e))
            .and_then(|()| map_len(len))
            .and_then(|map_len| {
                sys::Mapping::map_shared(fd.as_fd(), map_len).map_err(|e| Error::io("mmap", e))
            });
        match map {
            Ok(map) => Ok(Self::init_new(map, Some(fd), len, Some(name), format)),
            Err(e) => {
                let _ = sys::shm_unlink(&name);
                sys::reaper::unwatch(&name);
                Err(e)
            }
        }
    }

    /// Opens a named segment holding `format`, checking its header. See `Segment::open`.
    ///
    /// Unless `other_users` is set, the object must belong to the effective uid and grant
    /// nothing to group or others: otherwise someone else may have created it first (a
    /// squatter) or rewritten it, and its contents are not ours to trust.
    pub(crate) fn open_with(name: &str, format: &Format, other_users: bool) -> Result<Segment> {
        let name = normalize_name(name)?;
        let fd = match sys::shm_open_existing(&name) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(sys::errno::NOENT.raw_os_error()) => {
                return Err(Error::NotFound { name });
            }
            Err(e) => return Err(Error::io("shm_open", e)),
        };
        if !other_users {
            let (uid, mode) = sys::fd_owner_mode(&fd).map_err(|e| Error::io("fstat", e))?;
            let reason = if uid != sys::effective_uid() {
                Some("owned by another user")
            } else if mode & 0o077 != 0 {
                Some("group or others have access")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(Error::UntrustedSegment { name, reason });
            }
        }
        // A creator racing us may not have written its header yet: retry briefly.
        let deadline = sys::Deadline::after(std::time::Duration::from_millis(200));
        loop {
            match Self::attach_fd(
                fd.try_clone().map_err(|e| Error::io("dup", e))?,
                Some(&name),
                format,
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

    /// Attaches a segment holding `format` from a descriptor. See `Segment::from_fd`.
    pub(crate) fn from_fd_with(fd: OwnedFd, format: &Format) -> Result<Segment> {
        Self::attach_fd(fd, None, format)
    }

    fn attach_fd(fd: OwnedFd, name: Option<&str>, format: &Format) -> Result<Segment> {
        // A descriptor that arrived from another process maps only if its size is sealed:
        // else the sender could shrink it under our mapping and crash us (SIGBUS) on our
        // next access. Named segments are checked by owner and mode instead (see `open`).
        if name.is_none() && !sys::size_sealed(&fd) {
            return Err(Error::UntrustedSegment {
                name: "(received as a descriptor)".into(),
                reason: "a segment received as a descriptor must be a memory file with its size \
                         sealed (F_SEAL_SHRINK), as shmproc creates them",
            });
        }
        let actual = sys::fd_len(&fd).map_err(|e| Error::io("fstat", e))?;
        if !(MIN_SEGMENT_LEN..=MAX_SEGMENT_LEN).contains(&actual) {
            return Err(Error::CorruptHeader {
                reason: "segment size out of range",
            });
        }
        let map = sys::Mapping::map_shared(fd.as_fd(), map_len(actual)?)
            .map_err(|e| Error::io("mmap", e))?;
        let header = Header::parse(&Header::load(header_words(&map)), actual, format.layout)?;
        if let Some(existing) = registry::lookup(header.id) {
            return Ok(Segment { inner: existing });
        }
        let inner = Arc::new(SegmentInner {
            map,
            fd: Some(fd),
            id: header.id,
            len: actual,
            name: name.map(str::to_owned),
            creator_pid: header.creator_pid,
            owner: false,
        });
        (format.check)(&inner)?;
        registry::register(&inner);
        Ok(Segment { inner })
    }

    /// Initializes a new, zero-filled mapping: contents, then the header (magic last), then
    /// registers it.
    fn init_new(
        map: sys::Mapping,
        fd: Option<OwnedFd>,
        len: u64,
        name: Option<String>,
        format: &Format,
    ) -> Segment {
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
        (format.init)(&inner);
        Header::new(len, format.layout, id, pid).store(header_words(&inner.map));
        registry::register(&inner);
        Segment { inner }
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
    ///
    /// # Panics
    /// On a process-local segment (a test-only backing, made by `Segment::process_local`),
    /// which has no descriptor: passing one to another process is a bug in the test.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        match self.inner.fd() {
            Some(fd) => fd,
            None => panic!("a process-local segment has no descriptor"),
        }
    }

    /// Returns the number of bytes of memory the segment currently uses (pages touched and not
    /// given back), as the kernel counts them.
    ///
    /// # Errors
    /// [`Error::Io`] if `fstat` fails, or (kind `Unsupported`) for a process-local segment,
    /// whose memory the kernel does not count separately.
    pub fn resident_bytes(&self) -> Result<u64> {
        let Some(fd) = self.inner.fd() else {
            return Err(Error::io(
                "fstat",
                std::io::Error::from(std::io::ErrorKind::Unsupported),
            ));
        };
        sys::fd_blocks_bytes(fd).map_err(|e| Error::io("fstat", e))
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

    /// Returns the memory file's descriptor; `None` for a process-local segment.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(AsFd::as_fd)
    }

    /// Gives the memory of `[offset, offset + len)` back; the range reads as zero after.
    ///
    /// A memory file punches a hole (`fallocate(PUNCH_HOLE)`), so the pages stop using
    /// memory. Where that is impossible (a process-local buffer, which has no file, or a file
    /// system that refuses) the range is zero-filled instead: it still reads as zero, it just
    /// keeps its memory. The caller must own the range exclusively (a freed heap block) and
    /// pass its checked extent; the range is checked against the segment here too, so nothing
    /// outside the segment is ever written.
    ///
    /// # Errors
    /// [`Error::CorruptObject`] if the range does not lie inside the segment (nothing is
    /// written then).
    pub(crate) fn discard(&self, offset: u64, len: u64) -> Result<()> {
        let outside = Error::CorruptObject {
            reason: "discarded range outside the segment",
        };
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(outside);
        }
        if let Some(fd) = self.fd()
            && sys::punch_hole(fd, offset, len).is_ok()
        {
            return Ok(());
        }
        let (Ok(offset), Ok(len)) = (usize::try_from(offset), usize::try_from(len)) else {
            return Err(outside);
        };
        self.map.zero(offset, len).map_err(|_| outside)
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

/// Returns the header words of a mapping as atomics.
fn header_words(map: &sys::Mapping) -> &[AtomicU64] {
    const WORDS: usize = HEADER_LEN / 8;
    let n = WORDS.min(map.len() / 8);
    let ptr = map.as_ptr().cast::<AtomicU64>();
    // SAFETY: the mapping's base is page-aligned (so aligned for `AtomicU64`) and at least
    // `n * 8` bytes long (clamped above); `AtomicU64` has the size and alignment of `u64`
    // (std docs, `AtomicU64`), every bit pattern is a valid `u64`, and all access goes through
    // atomic operations, which are sound on memory shared with other processes. The slice
    // borrows `map`, which keeps the memory mapped.
    unsafe { core::slice::from_raw_parts(ptr, n) }
}

fn map_len(len: u64) -> Result<usize> {
    usize::try_from(len).map_err(|_| Error::InvalidSize {
        reason: "segment larger than the address space",
    })
}

/// Rounds `len` up to the minimum segment length, then to whole pages; refuses lengths past
/// the maximum.
fn checked_len(len: u64) -> Result<u64> {
    let len = len.max(MIN_SEGMENT_LEN);
    if len > MAX_SEGMENT_LEN {
        return Err(Error::InvalidSize {
            reason: "segment larger than 64 GiB",
        });
    }
    let page = u64::try_from(sys::page_size()).map_err(|_| Error::InvalidSize {
        reason: "page size out of range",
    })?;
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
