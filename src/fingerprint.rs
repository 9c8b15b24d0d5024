//! Stable 64-bit fingerprints (FNV-1a), computable in `const` contexts.
//!
//! Type fingerprints are recorded with every heap object and checked when a handle re-attaches,
//! so a `Value<f64>` can never be attached as a `Value<i64>`. They hash the type's name, size,
//! alignment and (for derived structs) every field's name and fingerprint, so they are the same
//! in every build of the same source and differ when the layout changes.

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `bytes`.
pub(crate) const fn fnv1a(bytes: &[u8]) -> u64 {
    extend(OFFSET, bytes)
}

/// Continues an FNV-1a hash with more bytes.
pub const fn extend(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(PRIME);
        i += 1;
    }
    hash
}

/// Continues a hash with a 64-bit word (little-endian bytes).
pub const fn extend_u64(hash: u64, word: u64) -> u64 {
    extend(hash, &word.to_le_bytes())
}

/// Starts a type fingerprint from a type name, size and alignment.
pub const fn start(name: &str, size: usize, align: usize) -> u64 {
    let h = extend(OFFSET, name.as_bytes());
    let h = extend_u64(h, size as u64);
    extend_u64(h, align as u64)
}
