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

/// Returns the fingerprint of the serde shape of `T` for the debug-build type tag of
/// `Connection::send`/`recv`, with its type name.
///
/// The fingerprint hashes `T`'s name made canonical for the types that serialize alike: a
/// reference is its referent (`&str` is `str`), `String`, `Box<str>` and `Cow<str>` are
/// `str`, `Vec<X>` and `Box<[X]>` are `[X]`, `Box<X>` is `X`. So `send("hi")` received as a
/// `String` matches, while types that merely happen to decode from each other's bytes (a
/// tuple and an array, two structs with the same fields) do not.
#[cfg_attr(not(debug_assertions), allow(dead_code))] // Used by debug builds only.
pub(crate) fn serde_type_tag<T: ?Sized>() -> (u64, &'static str) {
    let name = core::any::type_name::<T>();
    (fnv1a(canonical_type_name(name).as_bytes()), name)
}

/// Rewrites `name` (from `type_name`) so that types with one serde shape read alike.
#[cfg_attr(not(debug_assertions), allow(dead_code))]
fn canonical_type_name(name: &str) -> String {
    let mut s = name.replace("&mut ", "").replace('&', "");
    for (from, to) in [
        ("alloc::string::String", "str"),
        ("alloc::boxed::Box<str>", "str"),
        ("alloc::borrow::Cow<str>", "str"),
    ] {
        s = s.replace(from, to);
    }
    for (wrapper, open, close) in [
        ("alloc::vec::Vec<", "[", "]"),
        ("alloc::boxed::Box<", "", ""),
        ("alloc::borrow::Cow<", "", ""),
    ] {
        while let Some(at) = s.find(wrapper) {
            let inner = at + wrapper.len();
            let mut depth = 1usize;
            let Some(end) = s[inner..].char_indices().find_map(|(i, c)| {
                match c {
                    '<' => depth += 1,
                    '>' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(inner + i)
            }) else {
                break;
            };
            s = format!(
                "{}{open}{}{close}{}",
                &s[..at],
                &s[inner..end],
                &s[end + 1..]
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_alike_types_share_a_type_tag() {
        let tag = |(fp, _): (u64, &str)| fp;
        assert_eq!(
            tag(serde_type_tag::<str>()),
            tag(serde_type_tag::<String>())
        );
        assert_eq!(
            tag(serde_type_tag::<&str>()),
            tag(serde_type_tag::<Box<str>>())
        );
        assert_eq!(
            tag(serde_type_tag::<[Vec<String>]>()),
            tag(serde_type_tag::<Vec<Box<[&str]>>>())
        );
        assert_eq!(
            tag(serde_type_tag::<Option<(u8, Box<u32>)>>()),
            tag(serde_type_tag::<Option<(u8, u32)>>())
        );
        assert_ne!(tag(serde_type_tag::<i32>()), tag(serde_type_tag::<u32>()));
        assert_ne!(
            tag(serde_type_tag::<(u8, u8)>()),
            tag(serde_type_tag::<[u8; 2]>())
        );
        assert_eq!(serde_type_tag::<Vec<u8>>().1, "alloc::vec::Vec<u8>");
    }
}
