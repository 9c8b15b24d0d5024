//! Size classes: how a request maps to a block size.
//!
//! Small blocks (up to 64 KiB, header included) come in 21 classes, powers of two and the
//! midpoints between them, all multiples of 32 bytes. Large blocks are a whole number of pages,
//! exactly as many as the request needs (so a 513 MiB array takes 513 MiB and a page, not
//! 1 GiB); their pages go back to the system when freed.
//!
//! A block's header records its size in its `tag` word:
//!
//! | bits   | small block           | large block                       |
//! |--------|-----------------------|-----------------------------------|
//! | 24..32 | `0x53`                | `0xa5` (`LARGE_MAGIC`)            |
//! | 8..24  | `0x4842`              | page count, bits 8..24            |
//! | 0..8   | class index (0..21)   | page count, bits 0..8             |
//!
//! so a large block has 1 to 2^24 - 1 pages (64 GiB, the largest segment, at 4 KiB pages).
//! Free large blocks are kept on 40 lists by the power of two below their page count; a
//! request takes a free block only if it has at least the pages needed and at most an eighth
//! more (the best such block among the first `LARGE_SCAN` on its list), else it carves a new
//! one. A reused block keeps its own size, recorded in its tag: frees and checks always use the
//! block's true size.

#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

/// Block sizes of the small classes, header included.
pub(crate) const SMALL: [u64; 21] = [
    64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384,
    24576, 32768, 49152, 65536,
];

/// Number of free lists for large blocks (by `floor(log2(pages))`).
pub(crate) const LARGE_CLASSES: usize = 40;

/// Tag of a small block, without its class byte.
pub(crate) const BLOCK_MAGIC: u32 = 0x5348_4200;
/// High byte of a large block's tag.
const LARGE_MAGIC: u32 = 0xa500_0000;
/// Most pages in a large block.
const MAX_PAGES: u64 = (1 << 24) - 1;
/// How many free large blocks an allocation looks at on its list.
pub(crate) const LARGE_SCAN: usize = 64;

/// A block's size: a small class, or a number of pages. It is the block's tag (a valid one:
/// made by a constructor or checked by [`Class::from_tag`]), four bytes that pass in a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Class(u32);

impl Class {
    /// Returns small class `i` (an index into `SMALL`).
    #[cfg(test)]
    pub(crate) fn small(i: u8) -> Class {
        Class(BLOCK_MAGIC | u32::from(i))
    }

    /// Returns the class of `p` whole pages (1 to 2^24 - 1; clamped).
    pub(crate) fn pages(p: u64) -> Class {
        Class(LARGE_MAGIC | u32::try_from(p.clamp(1, MAX_PAGES)).unwrap_or(1))
    }

    /// Returns the page count of a large class.
    #[inline]
    pub(crate) fn page_count(self) -> Option<u64> {
        (self.0 & 0xff00_0000 == LARGE_MAGIC).then_some(u64::from(self.0 & 0x00ff_ffff))
    }

    /// Returns the index into `SMALL` of a small class.
    #[inline]
    fn small_index(self) -> Option<usize> {
        (self.0 & 0xffff_ff00 == BLOCK_MAGIC).then_some(usize::try_from(self.0 & 0xff).ok()?)
    }

    /// Returns the class for a block of at least `need` bytes, or `None` if too large.
    pub(crate) fn for_block(need: u64, page: u64) -> Option<Class> {
        if let Some(i) = SMALL.iter().position(|&s| s >= need) {
            return u32::try_from(i).ok().map(|i| Class(BLOCK_MAGIC | i));
        }
        let pages = need.div_ceil(page);
        (pages <= MAX_PAGES).then(|| Class::pages(pages))
    }

    /// Returns the class a block's tag records, or `None` for a tag that is no block's.
    #[inline]
    pub(crate) fn from_tag(tag: u32) -> Option<Class> {
        let c = Class(tag);
        let ok = match (c.small_index(), c.page_count()) {
            (Some(i), _) => i < SMALL.len(),
            (None, Some(p)) => p != 0,
            (None, None) => false,
        };
        ok.then_some(c)
    }

    /// Returns the tag that records this class.
    pub(crate) fn tag(self) -> u32 {
        self.0
    }

    /// Returns the block size of this class, or `None` for an invalid one.
    #[inline]
    pub(crate) fn block_size(self, page: u64) -> Option<u64> {
        match (self.small_index(), self.page_count()) {
            (Some(i), _) => SMALL.get(i).copied(),
            (None, Some(p)) if p != 0 => p.checked_mul(page),
            _ => None,
        }
    }

    /// Returns whether blocks of this class are page-granular (and punched when freed).
    pub(crate) fn is_large(self) -> bool {
        self.page_count().is_some()
    }

    /// Returns the index of this class's free list in the heap state.
    pub(crate) fn list_index(self) -> usize {
        match (self.small_index(), self.page_count()) {
            (Some(i), _) => i,
            (None, Some(p)) => {
                let k = usize::try_from(p.max(1).ilog2()).unwrap_or(usize::MAX);
                SMALL
                    .len()
                    .saturating_add(k.min(LARGE_CLASSES.saturating_sub(1)))
            }
            (None, None) => usize::MAX,
        }
    }

    /// Returns whether a free block of this class may serve a request for `want`: the same
    /// small class, or at least the pages wanted and at most an eighth more.
    pub(crate) fn serves(self, want: Class) -> bool {
        match (self.page_count(), want.page_count()) {
            (Some(have), Some(need)) => have >= need && have <= need.saturating_add(need / 8),
            (None, None) => self == want,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_every_size_and_round_trip() {
        let page = 4096;
        for need in 1..200_000u64 {
            let c = Class::for_block(need, page).expect("class");
            let size = c.block_size(page).expect("size");
            assert!(size >= need, "{need} -> {size}");
            assert!(size.is_multiple_of(32));
            assert_eq!(Class::from_tag(c.tag()), Some(c));
            if c.is_large() {
                assert!(size - need < page, "{need} -> {size}: page-granular");
            }
        }
        assert!(Class::for_block(1 << 62, page).is_none());
        assert!(Class::from_tag(BLOCK_MAGIC | 25).is_none());
        assert!(Class::from_tag(LARGE_MAGIC).is_none());
        assert!(Class::from_tag(0).is_none());
        // 513 MiB plus a header: 513 MiB and one page, not 1 GiB.
        let c = Class::for_block((513 << 20) + 32, page).expect("class");
        assert_eq!(c.block_size(page), Some((513 << 20) + page));
        assert!(Class::pages(9).serves(Class::pages(8)));
        assert!(!Class::pages(10).serves(Class::pages(8)));
        assert!(!Class::pages(7).serves(Class::pages(8)));
        assert!(Class::small(3).serves(Class::small(3)));
        assert!(!Class::small(4).serves(Class::small(3)));
        assert!(c.list_index() < SMALL.len() + LARGE_CLASSES);
    }
}
