//! The segment header: the first bytes of every segment, checked whenever a segment is opened.
//!
//! | offset | size | field         | writer                               |
//! |--------|------|---------------|--------------------------------------|
//! | 0      | 8    | `magic`       | creator, last (publishes the header) |
//! | 8      | 4    | `version`     | creator                              |
//! | 12     | 4    | `header_len`  | creator                              |
//! | 16     | 8    | `size`        | creator                              |
//! | 24     | 8    | `layout`      | creator: fingerprint of the contents |
//! | 32     | 8    | `id`          | creator: random segment identity     |
//! | 40     | 4    | `creator_pid` | creator                              |
//! | 44     | 4    | `flags`       | creator (reserved, zero)             |
//! | 48     | 8    | `checksum`    | creator: FNV-1a of bytes 8..48        |
//!
//! The header never changes after creation. It is read with atomic loads into a local copy and
//! parsed from that copy, so a concurrent (buggy or hostile) writer can produce a failed check
//! but never undefined behaviour.

use crate::error::{Error, Result};
use crate::loom::{AtomicU64, Ordering};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `b"SHMPROC\0"`.
pub(crate) const MAGIC: [u8; 8] = *b"SHMPROC\0";
/// The header format version.
pub(crate) const VERSION: u32 = 1;
/// Bytes of the header.
pub(crate) const HEADER_LEN: usize = 56;
/// [`HEADER_LEN`] as recorded in the header.
const HEADER_LEN_U32: u32 = 56;
#[allow(clippy::as_conversions)] // a widening u32 -> usize in a compile-time check
const _: () = assert!(HEADER_LEN_U32 as usize == HEADER_LEN);

/// The on-segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub(crate) struct Header {
    pub(crate) magic: [u8; 8],
    pub(crate) version: u32,
    pub(crate) header_len: u32,
    pub(crate) size: u64,
    pub(crate) layout: u64,
    pub(crate) id: u64,
    pub(crate) creator_pid: u32,
    pub(crate) flags: u32,
    pub(crate) checksum: u64,
}

const _: () = assert!(core::mem::size_of::<Header>() == HEADER_LEN);

impl Header {
    /// Makes a header for a new segment.
    pub(crate) fn new(size: u64, layout: u64, id: u64, creator_pid: u32) -> Header {
        let mut h = Header {
            magic: MAGIC,
            version: VERSION,
            header_len: HEADER_LEN_U32,
            size,
            layout,
            id,
            creator_pid,
            flags: 0,
            checksum: 0,
        };
        h.checksum = h.compute_checksum();
        h
    }

    fn compute_checksum(&self) -> u64 {
        let bytes = self.as_bytes();
        crate::fingerprint::fnv1a(bytes.get(8..48).unwrap_or(&[]))
    }

    /// Parses and checks a header read from a segment of `actual_size` bytes.
    ///
    /// # Errors
    /// [`Error::CorruptHeader`] for a bad magic, version, length or checksum;
    /// [`Error::SizeMismatch`] when the recorded size is not the segment's size;
    /// [`Error::TypeMismatch`] when the segment holds another layout than `layout`.
    pub(crate) fn parse(bytes: &[u8], actual_size: u64, layout: u64) -> Result<Header> {
        let h = Header::read_from_prefix(bytes)
            .map(|(h, _)| h)
            .map_err(|_| Error::CorruptHeader {
                reason: "segment shorter than its header",
            })?;
        if h.magic != MAGIC {
            return Err(Error::CorruptHeader {
                reason: "bad magic (not a shmproc segment, or not initialized)",
            });
        }
        if h.version != VERSION {
            return Err(Error::CorruptHeader {
                reason: "unsupported header version",
            });
        }
        if h.header_len != HEADER_LEN_U32 {
            return Err(Error::CorruptHeader {
                reason: "bad header length",
            });
        }
        if h.checksum != h.compute_checksum() {
            return Err(Error::CorruptHeader {
                reason: "header checksum mismatch",
            });
        }
        if h.size != actual_size {
            return Err(Error::SizeMismatch {
                expected: h.size,
                actual: actual_size,
            });
        }
        if h.layout != layout {
            return Err(Error::TypeMismatch {
                expected: "shmproc heap segment",
                found: h.layout,
            });
        }
        Ok(h)
    }

    /// Copies the header out of shared memory with atomic loads.
    ///
    /// `words` are the first `HEADER_LEN / 8` words of the segment.
    pub(crate) fn load(words: &[AtomicU64]) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
            // Acquire pairs with the creator's Release store of the magic word, which it
            // writes last: seeing the magic means seeing every other field.
            chunk.copy_from_slice(&w.load(Ordering::Acquire).to_ne_bytes());
        }
        out
    }

    /// Writes the header into shared memory with atomic stores, the magic word last.
    pub(crate) fn store(&self, words: &[AtomicU64]) {
        let bytes = self.as_bytes();
        let mut iter = bytes.chunks_exact(8).zip(words);
        let first = iter.next();
        for (chunk, w) in iter {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
        }
        if let Some((chunk, w)) = first {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            // Release: publishes every field stored above (see `load`).
            w.store(u64::from_ne_bytes(b), Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_what_new_makes() {
        let h = Header::new(1 << 20, 7, 42, 1);
        let parsed = Header::parse(h.as_bytes(), 1 << 20, 7).expect("valid header");
        assert_eq!(parsed, h);
    }

    #[test]
    fn parse_reports_each_failure_distinctly() {
        let h = Header::new(1 << 20, 7, 42, 1);
        let mut bad_magic = h;
        bad_magic.magic[0] = b'X';
        assert!(matches!(
            Header::parse(bad_magic.as_bytes(), 1 << 20, 7),
            Err(Error::CorruptHeader { .. })
        ));
        let mut bad_sum = h;
        bad_sum.id ^= 1;
        assert!(matches!(
            Header::parse(bad_sum.as_bytes(), 1 << 20, 7),
            Err(Error::CorruptHeader { .. })
        ));
        assert!(matches!(
            Header::parse(h.as_bytes(), 1 << 21, 7),
            Err(Error::SizeMismatch { .. })
        ));
        assert!(matches!(
            Header::parse(h.as_bytes(), 1 << 20, 8),
            Err(Error::TypeMismatch { .. })
        ));
        assert!(matches!(
            Header::parse(&h.as_bytes()[..10], 1 << 20, 7),
            Err(Error::CorruptHeader { .. })
        ));
    }
}
