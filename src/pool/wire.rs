//! How a chunk's items and results are laid out in the byte strings a pool's tasks and
//! replies carry.
//!
//! Each byte string ends with one tag byte:
//! - [`SERDE`]: the encoded values (the shmproc codec, inside a transfer envelope for the
//!   arguments), as for any message;
//! - [`PLAIN`]: the values of a primitive number type of at most 8 bytes (`u8`…`u64`,
//!   `i8`…`i64`, `usize`, `isize`, `f32`, `f64`), each as a 64-bit word (its bits; zigzag for
//!   signed integers) cut to the bytes the chunk's largest word needs: a width byte, then that
//!   many little-endian bytes per value. No per-item encoding step, and small numbers take
//!   few bytes (a chunk of 12,500 integers below 2^24 stays below the heap's page-granular
//!   block size). Chosen by the type alone (a `TypeId` comparison), so both sides, which run
//!   the same executable, agree; a decoder still checks it: a `PLAIN` string for a type that
//!   is not plain, a width outside 1 to 8, a length that is not a whole number of values, or
//!   a word outside the type's range is malformed.
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

/// A primitive number type of at most 8 bytes, sent as a 64-bit word: its bits (zigzag for
/// signed integers, so small magnitudes give small words), narrowed to the bytes the largest
/// word of the chunk needs.
trait Plain: Copy + 'static {
    /// Zero.
    const ZERO: Self;
    /// The value's word.
    fn word(self) -> u64;
    /// The value of a word (`None` if the word is out of the type's range).
    fn from_word(word: u64) -> Option<Self>;
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl Plain for $t {
            const ZERO: Self = 0;

            #[inline]
            fn word(self) -> u64 {
                self as u64
            }

            #[inline]
            fn from_word(word: u64) -> Option<Self> {
                <$t>::try_from(word).ok()
            }
        }
    )*};
}

macro_rules! signed {
    ($($t:ty),*) => {$(
        impl Plain for $t {
            const ZERO: Self = 0;

            #[inline]
            fn word(self) -> u64 {
                let v = self as i64;
                ((v << 1) ^ (v >> 63)) as u64
            }

            #[inline]
            fn from_word(word: u64) -> Option<Self> {
                let v = ((word >> 1) as i64) ^ -((word & 1) as i64);
                <$t>::try_from(v).ok()
            }
        }
    )*};
}

unsigned!(u8, u16, u32, u64, usize);
signed!(i8, i16, i32, i64, isize);

impl Plain for f64 {
    const ZERO: Self = 0.0;

    #[inline]
    fn word(self) -> u64 {
        self.to_bits()
    }

    #[inline]
    fn from_word(word: u64) -> Option<Self> {
        Some(f64::from_bits(word))
    }
}

impl Plain for f32 {
    const ZERO: Self = 0.0;

    #[inline]
    fn word(self) -> u64 {
        u64::from(self.to_bits())
    }

    #[inline]
    fn from_word(word: u64) -> Option<Self> {
        u32::try_from(word).ok().map(f32::from_bits)
    }
}

/// Runs `$go::<$t, P>` for the plain type `P` that `$t` is; evaluates to its result, or
/// `None` when `$t` is not a plain type.
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
        else { None }
    }};
}

/// Returns the `P` that `item` is (`T` is `P`: the caller compared their `TypeId`s, so this
/// never fails and compiles to a plain load).
#[inline]
fn word_of<T: 'static, P: Plain>(item: &T) -> Option<u64> {
    (item as &dyn Any).downcast_ref::<P>().map(|p| p.word())
}

/// Appends `items` (of type `T`, which is `P`) as plain values: one byte, the width `w` (1 to
/// 8), then `w` little-endian bytes of each word. `None` if `T` is not `P`.
fn put_plain<T: 'static, P: Plain>(items: &[T], out: &mut Vec<u8>) -> Option<()> {
    let mut all = 0u64;
    for item in items {
        all |= word_of::<T, P>(item)?;
    }
    let width = (8 - all.leading_zeros() / 8).max(1);
    out.reserve(items.len().checked_mul(width as usize)?.checked_add(2)?);
    out.push(u8::try_from(width).ok()?);
    match width {
        1 => put_words::<T, P, 1>(items, out),
        2 => put_words::<T, P, 2>(items, out),
        3 => put_words::<T, P, 3>(items, out),
        4 => put_words::<T, P, 4>(items, out),
        5 => put_words::<T, P, 5>(items, out),
        6 => put_words::<T, P, 6>(items, out),
        7 => put_words::<T, P, 7>(items, out),
        _ => put_words::<T, P, 8>(items, out),
    }
}

fn put_words<T: 'static, P: Plain, const W: usize>(items: &[T], out: &mut Vec<u8>) -> Option<()> {
    // One 8-byte store per value at its place: its high bytes are zero (every word fits in
    // `W` bytes) and the next value's store overwrites them. The 8 bytes of slack the last
    // store needs are cut off after.
    let start = out.len();
    let end = start.checked_add(items.len().checked_mul(W)?)?;
    out.resize(end.checked_add(8)?, 0);
    let mut at = start;
    for item in items {
        let word = word_of::<T, P>(item)?;
        out.get_mut(at..at + 8)?
            .copy_from_slice(&word.to_le_bytes());
        at += W;
    }
    out.truncate(end);
    Some(())
}

/// Appends plain values (as [`put_plain`] lays them out) to `out` (`T` is `P`); `None` if
/// `T` is not `P`, `Some(Err)` for a malformed string (nothing appended then).
// The `Vec` itself is downcast and grown, not a slice.
#[allow(clippy::ptr_arg)]
fn take_plain<T: 'static, P: Plain>(bytes: &[u8], out: &mut Vec<T>) -> Option<Result<()>> {
    let out = (out as &mut dyn Any).downcast_mut::<Vec<P>>()?;
    let Some((&width, rest)) = bytes.split_first() else {
        return Some(Err(malformed("no width")));
    };
    let before = out.len();
    let r = match width {
        1 => take_words::<P, 1>(rest, out),
        2 => take_words::<P, 2>(rest, out),
        3 => take_words::<P, 3>(rest, out),
        4 => take_words::<P, 4>(rest, out),
        5 => take_words::<P, 5>(rest, out),
        6 => take_words::<P, 6>(rest, out),
        7 => take_words::<P, 7>(rest, out),
        8 => take_words::<P, 8>(rest, out),
        _ => Err(malformed("width")),
    };
    if r.is_err() {
        out.truncate(before);
    }
    Some(r)
}

fn take_words<P: Plain, const W: usize>(bytes: &[u8], values: &mut Vec<P>) -> Result<()> {
    if !bytes.len().is_multiple_of(W) {
        return Err(malformed("a plain value cut short"));
    }
    let n = bytes.len() / W;
    let mask = u64::MAX >> (64 - 8 * W);
    let mut fits = true;
    let mut check = |word: u64| {
        P::from_word(word).unwrap_or_else(|| {
            fits = false;
            P::ZERO
        })
    };
    // One 8-byte load per value while 8 bytes remain, its bytes past `W` masked off; the
    // last values are copied out one by one.
    let loads = match bytes.len().checked_sub(8) {
        Some(rest) => (rest / W + 1).min(n),
        None => 0,
    };
    values.reserve(n);
    values.extend((0..loads).map(|i| {
        let at = i * W;
        let word = bytes
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_le_bytes);
        check(word & mask)
    }));
    for c in bytes.chunks_exact(W).skip(loads) {
        let mut word = [0u8; 8];
        if let Some(low) = word.get_mut(..W) {
            low.copy_from_slice(c);
        }
        values.push(check(u64::from_le_bytes(word)));
    }
    if fits {
        Ok(())
    } else {
        Err(malformed("a plain value out of its type's range"))
    }
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
        Some((&PLAIN, rest)) => {
            let mut values = Vec::new();
            as_plain!(T, take_plain(rest, &mut values))
                .unwrap_or_else(|| Err(malformed("plain values of a type that is not plain")))?;
            Ok(values)
        }
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

/// Decodes a chunk's results (in the pool): appends the values of the items that returned
/// to `out` and returns the panics. Not yet checked against the chunk. On an error nothing
/// is appended.
///
/// # Errors
/// A malformed string; the codec's.
pub(crate) fn open_results<R: DeserializeOwned + 'static>(
    bytes: &[u8],
    out: &mut Vec<R>,
) -> Result<Panics> {
    match bytes.split_last() {
        Some((&SERDE, rest)) => {
            let (panics, values) = transfer::open::<(Panics, Vec<R>)>(rest, Received::none())?;
            if out.is_empty() {
                *out = values;
            } else {
                out.extend(values);
            }
            Ok(panics)
        }
        Some((&PLAIN, rest)) => {
            let (panics, rest) = postcard::take_from_bytes::<Panics>(rest)
                .map_err(|e| malformed(&format!("panics: {e}")))?;
            as_plain!(R, take_plain(rest, out))
                .unwrap_or_else(|| Err(malformed("plain values of a type that is not plain")))?;
            Ok(panics)
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
        let mut out = Vec::new();
        assert_eq!(open_results::<T>(&bytes, &mut out).unwrap(), panics);
        assert_eq!(out, v);
    }

    #[test]
    fn plain_and_encoded_values_round_trip() {
        round(vec![0u64, 1, u64::MAX]);
        round(vec![-1i32, 7]);
        round(vec![1.5f64, -0.0]);
        round(vec![u128::MAX]);
        round(vec![i64::MIN, -1, 0, 1, i64::MAX]);
        round(vec![i8::MIN, i8::MAX]);
        round(vec![f32::NAN.to_bits()]);
        round(vec![0usize; 3]);
        for bits in [1, 7, 8, 9, 16, 17, 24, 31, 33, 40, 48, 56, 63, 64] {
            let top = u64::MAX >> (64 - bits);
            round((0..40u64).map(|i| top - i.min(top)).collect());
            round((0..40i64).map(|i| (top >> 1) as i64 - i).collect());
        }
        round(Vec::<u8>::new());
        round(vec![(1u8, 2u16)]);
        round(vec!["text".to_owned()]);
        round(vec![true, false]);
    }

    #[test]
    fn plain_values_are_raw_bytes() {
        let sealed = seal_items(&[1u32, 2]).unwrap();
        assert_eq!(sealed.bytes, [1, 1, 2, PLAIN]);
        let sealed = seal_items(&[-1i64, 300]).unwrap();
        assert_eq!(sealed.bytes, [2, 1, 0, 88, 2, PLAIN]);
        let sealed = seal_items(&[1.0f64]).unwrap();
        assert_eq!(sealed.bytes, [8, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, PLAIN]);
    }

    #[test]
    fn malformed_strings_are_errors() {
        let items = |b: &[u8]| open_items::<u32>(b, Received::none());
        // Cut short, bad widths, no width, out of range, no tag, unknown tag.
        assert!(items(&[2, 1, 0, 0, PLAIN]).is_err());
        assert!(items(&[0, PLAIN]).is_err());
        assert!(items(&[9, 1, 2, 3, 4, 5, 6, 7, 8, 9, PLAIN]).is_err());
        assert!(items(&[PLAIN]).is_err());
        assert!(items(&[5, 0, 0, 0, 0, 1, PLAIN]).is_err());
        assert!(items(&[]).is_err());
        assert!(items(&[1, 1, 9]).is_err());
        // Plain values for a type that is not plain.
        assert!(open_items::<String>(&[1, 1, PLAIN], Received::none()).is_err());
        let results = |b: &[u8]| {
            let mut out = vec![9u16];
            open_results::<u16>(b, &mut out).map(|_| out)
        };
        assert!(open_results::<bool>(&[0, 1, 1, PLAIN], &mut Vec::new()).is_err());
        // Bad panics, cut-short values, out of range after good ones: nothing appended.
        assert!(results(&[5, 1, 1, PLAIN]).is_err());
        assert!(results(&[0, 2, 1, PLAIN]).is_err());
        let mut out = vec![9u16];
        assert!(open_results::<u16>(&[0, 3, 1, 0, 0, 0, 0, 1, PLAIN], &mut out).is_err());
        assert_eq!(out, [9]);
        // Any width decodes while the values fit the type; values are appended.
        assert_eq!(items(&[8, 7, 0, 0, 0, 0, 0, 0, 0, PLAIN]).unwrap(), [7]);
        assert_eq!(results(&[0, 2, 1, 0, PLAIN]).unwrap(), [9, 1]);
    }
}
