//! How a chunk's items and results are laid out in the byte strings a pool's tasks and
//! replies carry.
//!
//! Each byte string ends with one tag byte:
//! - [`SERDE`]: the encoded values (the shmproc codec, inside a transfer envelope for the
//!   arguments), as for any message;
//! - [`PLAIN`]: the values of a primitive number type (`u8`…`u128`, `i8`…`i128`, `usize`,
//!   `isize`, `f32`, `f64`), each its fixed-width little-endian bytes, one after the other:
//!   a copy, no per-item encoding step. Chosen by the type alone (a `TypeId` comparison), so
//!   both sides, which run the same executable, agree; a decoder still checks it (a `PLAIN`
//!   string for a type that is not plain, or whose length is not a multiple of the type's
//!   width, is malformed), and every bit pattern is a valid value of these types.
//!
//! Results put the panics first: `(index, message)` pairs (codec format), then the values
//! (for `SERDE` one encoded `Vec`, for `PLAIN` the bytes up to the tag), then the tag. The
//! pool checks a reply against its chunk (every item accounted for once) before using it.

use crate::codec;
use crate::error::{Error, Result};
use crate::segment::Segment;
use crate::transfer::{self, Envelope, Received};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::{Any, TypeId};

/// Tag: the values are encoded with the codec.
const SERDE: u8 = 0;
/// Tag: the values are fixed-width little-endian numbers.
const PLAIN: u8 = 1;

/// A chunk's panics: the index of each item that panicked, with its message.
pub(crate) type Panics = Vec<(u64, String)>;

/// A primitive number type: every bit pattern of its width is a value, and its bytes are its
/// value.
trait Plain: Copy + 'static {
    /// Bytes per value.
    const WIDTH: usize;
    /// Appends the value's little-endian bytes.
    fn put(self, out: &mut Vec<u8>);
    /// The value of `WIDTH` little-endian bytes (`None` for another length).
    fn take(bytes: &[u8]) -> Option<Self>;
}

macro_rules! plain {
    ($($t:ty),*) => {$(
        impl Plain for $t {
            const WIDTH: usize = std::mem::size_of::<$t>();

            #[inline]
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }

            #[inline]
            fn take(bytes: &[u8]) -> Option<Self> {
                bytes.try_into().ok().map(<$t>::from_le_bytes)
            }
        }
    )*};
}

plain!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
);

/// Runs `$go::<P>` for the plain type `P` that `$t` is; evaluates to its result, or `None`
/// when `$t` is not a plain type.
macro_rules! as_plain {
    ($t:ty, $go:ident ( $($arg:expr),* )) => {{
        let id = TypeId::of::<$t>();
        if id == TypeId::of::<u64>() { $go::<$t, u64>($($arg),*) }
        else if id == TypeId::of::<u32>() { $go::<$t, u32>($($arg),*) }
        else if id == TypeId::of::<i64>() { $go::<$t, i64>($($arg),*) }
        else if id == TypeId::of::<i32>() { $go::<$t, i32>($($arg),*) }
        else if id == TypeId::of::<f64>() { $go::<$t, f64>($($arg),*) }
        else if id == TypeId::of::<f32>() { $go::<$t, f32>($($arg),*) }
        else if id == TypeId::of::<usize>() { $go::<$t, usize>($($arg),*) }
        else if id == TypeId::of::<isize>() { $go::<$t, isize>($($arg),*) }
        else if id == TypeId::of::<u8>() { $go::<$t, u8>($($arg),*) }
        else if id == TypeId::of::<i8>() { $go::<$t, i8>($($arg),*) }
        else if id == TypeId::of::<u16>() { $go::<$t, u16>($($arg),*) }
        else if id == TypeId::of::<i16>() { $go::<$t, i16>($($arg),*) }
        else if id == TypeId::of::<u128>() { $go::<$t, u128>($($arg),*) }
        else if id == TypeId::of::<i128>() { $go::<$t, i128>($($arg),*) }
        else { None }
    }};
}

/// Appends `items` (of type `T`, which is `P`) as plain bytes; `None` if `T` is not `P`.
fn put_plain<T: 'static, P: Plain>(items: &[T], out: &mut Vec<u8>) -> Option<()> {
    out.reserve(items.len().checked_mul(P::WIDTH)?.checked_add(1)?);
    for item in items {
        // `T` is `P` (the caller compared their `TypeId`s): this never fails, and compiles
        // to a plain load.
        (item as &dyn Any).downcast_ref::<P>()?.put(out);
    }
    Some(())
}

/// Reads plain bytes as a `Vec<T>` (`T` is `P`); `None` if `T` is not `P`, `Some(Err)` for
/// a length that is not a whole number of values.
fn take_plain<T: 'static, P: Plain>(bytes: &[u8]) -> Option<Result<Vec<T>>> {
    if !bytes.len().is_multiple_of(P::WIDTH) {
        return Some(Err(malformed("a plain value cut short")));
    }
    let mut values: Vec<P> = Vec::with_capacity(bytes.len() / P::WIDTH);
    values.extend(bytes.chunks_exact(P::WIDTH).filter_map(P::take));
    let boxed: Box<dyn Any> = Box::new(values);
    Some(
        boxed
            .downcast::<Vec<T>>()
            .map(|v| *v)
            .map_err(|_| malformed("not a plain type")),
    )
}

fn malformed(what: &str) -> Error {
    Error::Codec {
        reason: format!("malformed pool message: {what}"),
    }
}

/// A chunk's encoded arguments and the segments their handles live in.
pub(crate) struct Sealed {
    pub(crate) bytes: Vec<u8>,
    pub(crate) segments: Vec<Segment>,
}

/// Encodes a chunk's arguments: plain values as bytes, others in a transfer envelope.
///
/// The task queues carry bytes, not descriptors: a value holding a connection is refused
/// here ([`Error::NoDescriptorChannel`]). Shared objects travel as handles; the segments
/// they live in travel to each worker that does not map them yet over its segment socket
/// (see `Inner::dispatch`).
pub(crate) fn seal_items<T: Serialize + 'static>(items: &[T]) -> Result<Sealed> {
    let mut bytes = Vec::new();
    if as_plain!(T, put_plain(items, &mut bytes)).is_some() {
        bytes.push(PLAIN);
        return Ok(Sealed {
            bytes,
            segments: Vec::new(),
        });
    }
    let envelope = Envelope::seal(items)?;
    if envelope.needs_descriptors() {
        return Err(Error::NoDescriptorChannel {
            channel: "a pool's task queue",
            count: envelope.fds.len(),
        });
    }
    let mut bytes = envelope.bytes;
    bytes.push(SERDE);
    Ok(Sealed {
        bytes,
        segments: envelope.segments,
    })
}

/// Decodes a chunk's arguments (in a worker), with what arrived with them.
///
/// # Errors
/// A malformed string; the errors of [`transfer::open`].
pub(crate) fn open_items<T: DeserializeOwned + 'static>(
    bytes: &[u8],
    received: Received,
) -> Result<Vec<T>> {
    match bytes.split_last() {
        Some((&SERDE, rest)) => transfer::open(rest, received),
        Some((&PLAIN, rest)) => as_plain!(T, take_plain(rest))
            .unwrap_or_else(|| Err(malformed("plain values of a type that is not plain"))),
        _ => Err(malformed("unknown tag")),
    }
}

/// Encodes a chunk's results (in a worker): the panics, then the values.
///
/// # Errors
/// The codec's, if a value cannot be encoded.
pub(crate) fn seal_results<R: Serialize + 'static>(
    values: &[R],
    panics: &Panics,
) -> Result<Vec<u8>> {
    let mut bytes = codec::to_bytes(panics)?;
    if as_plain!(R, put_plain(values, &mut bytes)).is_some() {
        bytes.push(PLAIN);
        return Ok(bytes);
    }
    let mut bytes = codec::to_bytes(&(panics, values))?;
    bytes.push(SERDE);
    Ok(bytes)
}

/// Decodes a chunk's results (in the pool): the values of the items that returned, and the
/// panics. Not yet checked against the chunk.
///
/// # Errors
/// A malformed string; the codec's.
pub(crate) fn open_results<R: DeserializeOwned + 'static>(
    bytes: &[u8],
) -> Result<(Vec<R>, Panics)> {
    match bytes.split_last() {
        Some((&SERDE, rest)) => {
            let (panics, values) = transfer::open::<(Panics, Vec<R>)>(rest, Received::none())?;
            Ok((values, panics))
        }
        Some((&PLAIN, rest)) => {
            let (panics, rest) = postcard::take_from_bytes::<Panics>(rest)
                .map_err(|e| malformed(&format!("panics: {e}")))?;
            let values = as_plain!(R, take_plain(rest))
                .unwrap_or_else(|| Err(malformed("plain values of a type that is not plain")))?;
            Ok((values, panics))
        }
        _ => Err(malformed("unknown tag")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round<T: Serialize + DeserializeOwned + 'static + PartialEq + std::fmt::Debug>(v: Vec<T>) {
        let sealed = seal_items(&v).unwrap();
        assert_eq!(open_items::<T>(&sealed.bytes, Received::none()).unwrap(), v);
        let panics = vec![(1, "boom".to_owned())];
        let bytes = seal_results(&v, &panics).unwrap();
        assert_eq!(open_results::<T>(&bytes).unwrap(), (v, panics));
    }

    #[test]
    fn plain_and_encoded_values_round_trip() {
        round(vec![0u64, 1, u64::MAX]);
        round(vec![-1i32, 7]);
        round(vec![1.5f64, -0.0]);
        round(vec![u128::MAX]);
        round(Vec::<u8>::new());
        round(vec![(1u8, 2u16)]);
        round(vec!["text".to_owned()]);
        round(vec![true, false]);
    }

    #[test]
    fn plain_values_are_raw_bytes() {
        let sealed = seal_items(&[1u32, 2]).unwrap();
        assert_eq!(sealed.bytes, [1, 0, 0, 0, 2, 0, 0, 0, PLAIN]);
    }

    #[test]
    fn malformed_strings_are_errors() {
        // Cut short, for a type that is not plain, no tag, unknown tag.
        assert!(open_items::<u32>(&[1, 0, 0, PLAIN], Received::none()).is_err());
        assert!(open_items::<String>(&[1, 0, 0, 0, PLAIN], Received::none()).is_err());
        assert!(open_items::<u32>(&[], Received::none()).is_err());
        assert!(open_items::<u32>(&[9], Received::none()).is_err());
        assert!(open_results::<bool>(&[0, 1, PLAIN]).is_err());
        assert!(open_results::<u16>(&[0, 1, PLAIN]).is_err());
        assert!(open_results::<u16>(&[5, 1, PLAIN]).is_err());
        // A PLAIN string of whole values still decodes for a plain type of that width.
        assert_eq!(open_results::<u16>(&[0, 1, 0, PLAIN]).unwrap().0, [1]);
    }
}
