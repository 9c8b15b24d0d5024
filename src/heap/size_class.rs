//! Size classes: how a request maps to a block size.
//!
//! Small blocks (up to 64 KiB, header included) come in 21 classes, powers of two and the
//! midpoints between them, all multiples of 32 bytes. Large blocks are whole pages, a power of
//! two of them; their pages go back to the system when freed.

#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

/// Block sizes of the small classes, header included.
pub(crate) const SMALL: [u64; 21] = [
    64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384,
    24576, 32768, 49152, 65536,
];

/// Number of large classes (`pages << k` for k in 0..LARGE_CLASSES).
pub(crate) const LARGE_CLASSES: usize = 40;

/// The first class index used for large blocks.
pub(crate) const LARGE_BASE: u8 = 32;

/// A size class: an index that fits the block header's class byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Class(pub(crate) u8);

impl Class {
    /// Returns the class for a block of at least `need` bytes, or `None` if too large.
    pub(crate) fn for_block(need: u64, page: u64) -> Option<Class> {
        if let Some(i) = SMALL.iter().position(|&s| s >= need) {
            return u8::try_from(i).ok().map(Class);
        }
        let pages = need.div_ceil(page).checked_next_power_of_two()?;
        let k = u8::try_from(pages.trailing_zeros()).ok()?;
        if usize::from(k) >= LARGE_CLASSES {
            return None;
        }
        k.checked_add(LARGE_BASE).map(Class)
    }

    /// Returns the block size of this class, or `None` for an invalid class byte.
    pub(crate) fn block_size(self, page: u64) -> Option<u64> {
        if let Some(&s) = SMALL.get(usize::from(self.0)) {
            return Some(s);
        }
        let k = self.0.checked_sub(LARGE_BASE)?;
        if usize::from(k) >= LARGE_CLASSES {
            return None;
        }
        page.checked_shl(u32::from(k))
    }

    /// Returns whether blocks of this class are page-granular (and punched when freed).
    pub(crate) fn is_large(self) -> bool {
        self.0 >= LARGE_BASE
    }

    /// Returns the index of this class's free list in the heap state.
    pub(crate) fn list_index(self) -> usize {
        if self.is_large() {
            SMALL
                .len()
                .saturating_add(usize::from(self.0.saturating_sub(LARGE_BASE)))
        } else {
            usize::from(self.0)
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
        }
        assert!(Class::for_block(1 << 62, page).is_none());
        assert!(Class(25).block_size(page).is_none());
        assert!(
            Class(LARGE_BASE + u8::try_from(LARGE_CLASSES).expect("fits"))
                .block_size(page)
                .is_none()
        );
    }
}
