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

#[cfg(test)]
mod tests {
    use super::*;

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
