//! The one message format of shmproc: `postcard` (a compact, maintained serde format), with a
//! size cap on every decode and no preallocation from untrusted lengths.
//!
//! Handles (`Value`, `Lock`, …) inside a message re-attach while they are decoded. A failed
//! attach surfaces here as the precise [`Error`] (`TypeMismatch`, `ObjectGone`, …), not as a
//! generic codec error.

use crate::error::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;

/// Bytes reserved up front by [`to_bytes`].
const INITIAL_CAPACITY: usize = 512;

/// The largest message decoded by default: 1 GiB.
pub const MAX_MESSAGE: usize = 1 << 30;

thread_local! {
    static ATTACH_ERROR: RefCell<Option<Error>> = const { RefCell::new(None) };
}

/// Records why a handle failed to re-attach during a decode, and returns the serde error to
/// abort the decode with.
pub(crate) fn attach_error<E: serde::de::Error>(e: Error) -> E {
    let msg = e.to_string();
    ATTACH_ERROR.with(|slot| *slot.borrow_mut() = Some(e));
    E::custom(msg)
}

/// Encodes a value.
///
/// # Errors
/// [`Error::Codec`] if the value cannot be serialized (for example a map with non-string keys
/// that the format rejects), [`Error::InvalidSize`] past [`MAX_MESSAGE`].
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    // One allocation for typical messages, instead of doubling from 8 bytes as it grows.
    let bytes = postcard::to_extend(value, Vec::with_capacity(INITIAL_CAPACITY)).map_err(|e| {
        Error::Codec {
            reason: e.to_string(),
        }
    })?;
    if bytes.len() > MAX_MESSAGE {
        return Err(Error::InvalidSize {
            reason: "encoded message larger than the 1 GiB cap",
        });
    }
    Ok(bytes)
}

/// Encodes a value into `buf`, returning the bytes used, or `None` if it does not fit (the
/// caller then uses [`to_bytes`]).
///
/// # Errors
/// [`Error::Codec`] if the value cannot be serialized.
pub(crate) fn to_slice<'b, T: Serialize + ?Sized>(
    value: &T,
    buf: &'b mut [u8],
) -> Result<Option<&'b mut [u8]>> {
    match postcard::to_slice(value, buf) {
        Ok(used) => Ok(Some(used)),
        Err(postcard::Error::SerializeBufferFull) => Ok(None),
        Err(e) => Err(Error::Codec {
            reason: e.to_string(),
        }),
    }
}

/// Decodes a value, re-attaching the handles inside it.
///
/// Lengths inside the message are checked against the bytes actually present before anything
/// is allocated for them; trailing bytes are an error.
///
/// # Errors
/// [`Error::Codec`] for malformed input; the attach errors of handles inside (for example
/// [`Error::TypeMismatch`]); [`Error::InvalidSize`] past [`MAX_MESSAGE`].
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    if bytes.len() > MAX_MESSAGE {
        return Err(Error::InvalidSize {
            reason: "message larger than the 1 GiB cap",
        });
    }
    ATTACH_ERROR.with(|slot| slot.borrow_mut().take());
    let r = postcard::take_from_bytes::<T>(bytes);
    let stashed = ATTACH_ERROR.with(|slot| slot.borrow_mut().take());
    match r {
        Ok((v, [])) => Ok(v),
        Ok(_) => Err(Error::Codec {
            reason: "trailing bytes after the message".to_owned(),
        }),
        Err(e) => Err(stashed.unwrap_or(Error::Codec {
            reason: e.to_string(),
        })),
    }
}

/// Encodes a byte field as one byte string (`serialize_bytes`) instead of element by element,
/// for `#[serde(with = "shmproc::codec::bytes")]` on a `Vec<u8>` field (the `serde_bytes`
/// convention, without the dependency).
///
/// Serde encodes a `Vec<u8>` as a sequence, one `u8` call per element; with this attribute
/// the field is one length and one copy each way. In shmproc's format the bytes on the wire
/// are the same either way (a length, then the bytes), so a field may switch without breaking
/// anything already encoded.
///
/// # Examples
/// ```
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Blob {
///     #[serde(with = "shmproc::codec::bytes")]
///     data: Vec<u8>,
/// }
///
/// # fn main() -> shmproc::Result<()> {
/// let b = Blob { data: vec![7; 256] };
/// let bytes = shmproc::codec::to_bytes(&b)?;
/// assert_eq!(bytes, shmproc::codec::to_bytes(&vec![7u8; 256])?); // same wire format
/// assert_eq!(shmproc::codec::from_bytes::<Blob>(&bytes)?, b);
/// # Ok(()) }
/// ```
pub mod bytes {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::ser::Serializer;
    use std::fmt;

    /// Serializes `v` as one byte string.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    /// Deserializes a byte string (or, from formats that send one, a sequence of bytes).
    ///
    /// # Errors
    /// The deserializer's; a sequence element that is not a `u8`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // Bounded preallocation: the hint comes from the input.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Blob {
        #[serde(with = "super::bytes")]
        data: Vec<u8>,
    }

    /// Byte fields encode as one string, with the wire format of a plain `Vec<u8>`, and a
    /// hostile length is refused before anything is allocated for it.
    #[test]
    fn byte_fields_encode_as_one_string_with_the_vec_wire_format() {
        let b = Blob {
            data: (0..=255).collect(),
        };
        let bytes = to_bytes(&b).expect("valid");
        assert_eq!(bytes, to_bytes(&b.data).expect("valid"));
        assert_eq!(from_bytes::<Blob>(&bytes).expect("valid"), b);
        let plain: Vec<u8> = from_bytes(&bytes).expect("valid");
        assert_eq!(plain, b.data);
        let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 1, 2, 3];
        assert!(from_bytes::<Blob>(&huge).is_err());
        for len in 0..bytes.len() {
            assert!(from_bytes::<Blob>(&bytes[..len]).is_err());
        }
    }

    /// Pure-Rust decode checks (no handles, so no syscalls: these run under miri too).
    #[test]
    fn round_trips_and_rejects_hostile_lengths() {
        let v: (u8, String, Vec<u32>, Option<i64>) = (7, "é".to_owned(), vec![1, 2, 3], Some(-9));
        let bytes = to_bytes(&v).expect("valid");
        assert_eq!(
            from_bytes::<(u8, String, Vec<u32>, Option<i64>)>(&bytes).expect("valid"),
            v
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(from_bytes::<(u8, String, Vec<u32>, Option<i64>)>(&trailing).is_err());
        // A 2^40 length prefix, and usize::MAX: refused, nothing of that size allocated.
        let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 1, 2, 3];
        assert!(from_bytes::<Vec<u8>>(&huge).is_err());
        assert!(from_bytes::<String>(&huge).is_err());
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(from_bytes::<Vec<u64>>(&max).is_err());
        for len in 0..bytes.len() {
            assert!(from_bytes::<(u8, String, Vec<u32>, Option<i64>)>(&bytes[..len]).is_err());
        }
    }
}
