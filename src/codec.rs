//! The one message format of shmproc: `postcard` (a compact, maintained serde format), with a
//! size cap on every decode and no preallocation from untrusted lengths.
//!
//! Handles (`Value`, `Lock`, …) inside a message re-attach while they are decoded. A failed
//! attach surfaces here as the precise [`Error`] (`TypeMismatch`, `ObjectGone`, …), not as a
//! generic codec error.
//!
//! # What postcard cannot carry
//!
//! Postcard is not self-describing: the bytes do not say which type comes next, so the
//! receiver must know it. Most serde types work (structs, tuples, `Vec`, `HashMap` with any
//! key type, `Option`, externally tagged enums, `String`, `Box`, …). These do not:
//!
//! | serde feature | fails | why, and what to use instead |
//! | --- | --- | --- |
//! | `#[serde(untagged)]`, `#[serde(tag = "…")]` (internally or adjacently tagged enums) | decoding, in the receiver | they ask the format what comes next (`deserialize_any`); use the default (externally tagged) enum representation |
//! | `#[serde(flatten)]` | encoding, in the sender | it writes a map of unknown length; postcard needs every length up front; nest the struct instead |
//! | `serde_json::Value` and other self-describing "any" types | decoding | `deserialize_any`; send the JSON text as a `String` |
//! | a `Serialize` impl that calls `serialize_seq(None)` (collecting an iterator of unknown length) | encoding | collect into a `Vec` first |
//!
//! A process argument decodes only in the child, so such a type there fails in the child:
//! [`spawn`](crate::spawn)'s `join` returns [`Error::ChildStartFailed`] with the reason (a
//! [`Process`](crate::Process) exits with code 1 after printing it). Every codec failure is an
//! [`Error::Codec`] whose reason names the Rust type that was being encoded or decoded and
//! says why, in the words of the table above.

use crate::error::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::{Cell, RefCell};

/// Bytes reserved up front by [`to_bytes`].
const INITIAL_CAPACITY: usize = 512;

/// The largest message decoded by default: 1 GiB.
pub const MAX_MESSAGE: usize = 1 << 30;

thread_local! {
    static ATTACH_ERROR: RefCell<Option<Error>> = const { RefCell::new(None) };
    /// Whether `ATTACH_ERROR` may hold an error: a decode touches the slot itself only then
    /// (a plain flag costs one load; the slot's lazily registered destructor costs more).
    static ATTACH_STASHED: Cell<bool> = const { Cell::new(false) };
}

/// Records why a handle failed to re-attach during a decode, and returns the serde error to
/// abort the decode with.
pub(crate) fn attach_error<E: serde::de::Error>(e: Error) -> E {
    let msg = e.to_string();
    ATTACH_ERROR.with(|slot| *slot.borrow_mut() = Some(e));
    ATTACH_STASHED.with(|f| f.set(true));
    E::custom(msg)
}

/// Takes the attach error a decode on this thread recorded, if any.
fn take_attach_error() -> Option<Error> {
    if !ATTACH_STASHED.with(Cell::get) {
        return None;
    }
    ATTACH_STASHED.with(|f| f.set(false));
    ATTACH_ERROR.with(|slot| slot.borrow_mut().take())
}

/// Builds the [`Error::Codec`] for a postcard failure while encoding or decoding a `T`: the
/// type's name, postcard's words, and the reason where it is one of postcard's known limits.
fn codec_error<T: ?Sized>(doing: &str, e: &postcard::Error) -> Error {
    let why = match e {
        postcard::Error::WontImplement => {
            "; postcard is not self-describing, so #[serde(untagged)], internally or \
             adjacently tagged enums and serde_json::Value cannot be decoded (see shmproc::codec)"
        }
        postcard::Error::SerializeSeqLengthUnknown => {
            "; postcard needs every length up front, so #[serde(flatten)] and sequences of \
             unknown length cannot be encoded (see shmproc::codec)"
        }
        _ => "",
    };
    Error::Codec {
        reason: format!("cannot {doing} {}: {e}{why}", std::any::type_name::<T>()),
    }
}

/// Encodes a value.
///
/// # Errors
/// [`Error::Codec`] if the value cannot be serialized (for example a struct with a
/// `#[serde(flatten)]` field: see [what postcard cannot carry](self#what-postcard-cannot-carry)),
/// naming its type; [`Error::InvalidSize`] past [`MAX_MESSAGE`].
///
/// # Examples
/// ```
/// #[derive(serde::Serialize)]
/// struct Inner {
///     a: u8,
/// }
/// #[derive(serde::Serialize)]
/// struct Outer {
///     #[serde(flatten)]
///     inner: Inner,
/// }
/// let e = shmproc::codec::to_bytes(&Outer { inner: Inner { a: 1 } }).unwrap_err();
/// assert!(e.to_string().contains("Outer"), "{e}");
/// assert!(e.to_string().contains("#[serde(flatten)]"), "{e}");
/// assert_eq!(shmproc::codec::to_bytes(&Inner { a: 1 })?, [1]);
/// # Ok::<(), shmproc::Error>(())
/// ```
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    // One allocation for typical messages, instead of doubling from 8 bytes as it grows.
    let bytes =
        postcard::serialize_with_flavor(value, VecFlavor(Vec::with_capacity(INITIAL_CAPACITY)))
            .map_err(|e| codec_error::<T>("encode", &e))?;
    if bytes.len() > MAX_MESSAGE {
        return Err(Error::InvalidSize {
            reason: "encoded message larger than the 1 GiB cap",
        });
    }
    Ok(bytes)
}

/// postcard's `Vec` output, except that a short run of bytes (a varint, a small field) is
/// pushed byte by byte instead of through a `memcpy` call: a `Vec<u64>` of 10,000 items is
/// 10,000 such runs, and the calls cost more than the encoding.
struct VecFlavor(Vec<u8>);

impl postcard::ser_flavors::Flavor for VecFlavor {
    type Output = Vec<u8>;

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        // Fixed-size copies compile to a store or two, with one length update.
        match *data {
            [a] => self.0.push(a),
            [a, b] => self.0.extend_from_slice(&[a, b]),
            [a, b, c] => self.0.extend_from_slice(&[a, b, c]),
            [a, b, c, d] => self.0.extend_from_slice(&[a, b, c, d]),
            [a, b, c, d, e] => self.0.extend_from_slice(&[a, b, c, d, e]),
            _ if data.len() <= 16 => {
                self.0.reserve(data.len());
                for &b in data {
                    self.0.push(b);
                }
            }
            _ => self.0.extend_from_slice(data),
        }
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
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
        Err(e) => Err(codec_error::<T>("encode", &e)),
    }
}

/// Where [`to_slice_or_vec`] put an encoding.
pub(crate) enum Encoded {
    /// In the buffer's first bytes (this many).
    InSlice(usize),
    /// Too large for the buffer: all of it here.
    Spilled(Vec<u8>),
}

/// Encodes a value into `buf` or, once it outgrows `buf`, into a `Vec` (the bytes written so
/// far move over): one run of the value's `Serialize` either way, so a value whose encoding
/// has effects (a manager proxy lends a pin per encoding) has them once.
///
/// # Errors
/// [`Error::Codec`] if the value cannot be serialized; [`Error::InvalidSize`] past
/// [`MAX_MESSAGE`].
// Inlined into the put that encodes into its slot: about 35 fewer instructions a message.
#[inline(always)]
pub(crate) fn to_slice_or_vec<T: Serialize + ?Sized>(value: &T, buf: &mut [u8]) -> Result<Encoded> {
    let out = postcard::serialize_with_flavor(
        value,
        SpillFlavor {
            buf,
            used: 0,
            spill: None,
        },
    )
    .map_err(|e| codec_error::<T>("encode", &e))?;
    if let Encoded::Spilled(v) = &out
        && v.len() > MAX_MESSAGE
    {
        return Err(Error::InvalidSize {
            reason: "encoded message larger than the 1 GiB cap",
        });
    }
    Ok(out)
}

/// postcard's output for [`to_slice_or_vec`]: into `buf` while it fits (one bounds check a
/// write), then, `buf` emptied, into `spill`.
struct SpillFlavor<'b> {
    buf: &'b mut [u8],
    used: usize,
    spill: Option<Vec<u8>>,
}

impl SpillFlavor<'_> {
    /// Moves what `buf` holds into `spill` (the first time) and appends `data` there.
    #[cold]
    fn spill(&mut self, data: &[u8]) {
        let v = self.spill.get_or_insert_with(|| {
            let mut v = Vec::with_capacity(self.buf.len().saturating_mul(4).max(INITIAL_CAPACITY));
            v.extend_from_slice(self.buf.get(..self.used).unwrap_or_default());
            v
        });
        v.extend_from_slice(data);
        self.buf = &mut [];
        self.used = 0;
    }
}

impl postcard::ser_flavors::Flavor for SpillFlavor<'_> {
    type Output = Encoded;

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let end = self.used.saturating_add(data.len());
        match self.buf.get_mut(self.used..end) {
            Some(dst) => {
                dst.copy_from_slice(data);
                self.used = end;
            }
            None => self.spill(data),
        }
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        match self.buf.get_mut(self.used) {
            Some(b) => {
                *b = data;
                self.used += 1;
            }
            None => self.spill(&[data]),
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Encoded> {
        Ok(match self.spill {
            Some(v) => Encoded::Spilled(v),
            None => Encoded::InSlice(self.used),
        })
    }
}

/// Decodes a value, re-attaching the handles inside it.
///
/// Lengths inside the message are checked against the bytes actually present before anything
/// is allocated for them; trailing bytes are an error.
///
/// # Errors
/// [`Error::Codec`] for malformed input or a type postcard cannot decode (see
/// [what postcard cannot carry](self#what-postcard-cannot-carry)), naming the type; the attach
/// errors of handles inside (for example [`Error::TypeMismatch`]); [`Error::InvalidSize`] past
/// [`MAX_MESSAGE`].
///
/// # Examples
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// #[serde(untagged)]
/// enum Either {
///     Number(u32),
///     Text(String),
/// }
/// let bytes = shmproc::codec::to_bytes(&Either::Number(7))?; // encoding works
/// let e = shmproc::codec::from_bytes::<Either>(&bytes).err().unwrap();
/// assert!(e.to_string().contains("Either"), "{e}");
/// assert!(e.to_string().contains("#[serde(untagged)]"), "{e}");
/// # Ok::<(), shmproc::Error>(())
/// ```
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    decode::<T, T>(bytes, |de| T::deserialize(de))
}

/// Decodes a value into `place`, reusing what it owns: a `String` or a `Vec` keeps its
/// allocation when the new value fits it (serde's `deserialize_in_place`; a type without an
/// in-place form is decoded whole and assigned). The checks are [`from_bytes`]'s.
///
/// On error, `place` holds a valid value of its type whose contents are unspecified (a part
/// of the message, or its old value).
///
/// # Errors
/// As for [`from_bytes`].
///
/// # Examples
/// ```
/// let mut s = String::with_capacity(64);
/// let ptr = s.as_ptr();
/// shmproc::codec::from_bytes_into(&shmproc::codec::to_bytes("hello")?, &mut s)?;
/// assert_eq!(s, "hello");
/// assert_eq!(s.as_ptr(), ptr); // no allocation
/// # Ok::<(), shmproc::Error>(())
/// ```
pub fn from_bytes_into<T: DeserializeOwned>(bytes: &[u8], place: &mut T) -> Result<()> {
    decode::<T, ()>(bytes, |de| T::deserialize_in_place(de, place))
}

/// Runs a decode of a `T` over `bytes` (whole: trailing bytes are an error), turning its
/// failure into the handle's attach error, if one was recorded, or a codec error.
#[inline]
fn decode<'de, T, R>(
    bytes: &'de [u8],
    run: impl FnOnce(
        &mut postcard::Deserializer<'de, postcard::de_flavors::Slice<'de>>,
    ) -> postcard::Result<R>,
) -> Result<R> {
    if bytes.len() > MAX_MESSAGE {
        return Err(Error::InvalidSize {
            reason: "message larger than the 1 GiB cap",
        });
    }
    // An error left by an earlier decode that succeeded anyway (a type that swallowed it) is
    // not this decode's.
    drop(take_attach_error());
    let mut de = postcard::Deserializer::from_bytes(bytes);
    match run(&mut de).and_then(|v| Ok((v, de.finalize()?))) {
        Ok((v, [])) => Ok(v),
        Ok(_) => Err(Error::Codec {
            reason: format!(
                "cannot decode {}: trailing bytes after the message",
                std::any::type_name::<T>()
            ),
        }),
        Err(e) => Err(take_attach_error().unwrap_or_else(|| codec_error::<T>("decode", &e))),
    }
}

/// Encodes a byte field as one byte string (`serialize_bytes`) instead of element by element,
/// for `#[serde(with = "shmproc::codec::bytes")]` on a `Vec<u8>` field (the `serde_bytes`
/// convention, without the dependency).
///
/// Serde encodes a `Vec<u8>` as a sequence, one `u8` call per element; with this attribute
/// the field is one length and one copy each way. In shmproc's format the bytes on the wire
/// are the same either way (a length, then the bytes), so a field may switch without breaking
/// anything already encoded. To receive byte payloads into a kept buffer with no allocation
/// per message, see [`ByteBuf`].
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

    /// Decodes a byte string into a buffer, replacing its bytes and keeping its allocation
    /// when they fit ([`ByteBuf`](super::ByteBuf)'s in-place form).
    pub(super) struct InPlace<'a>(pub(super) &'a mut Vec<u8>);

    impl<'de> Visitor<'de> for InPlace<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<(), E> {
            self.0.clear();
            self.0.extend_from_slice(v);
            Ok(())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<(), E> {
            *self.0 = v;
            Ok(())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            self.0.clear();
            while let Some(b) = seq.next_element::<u8>()? {
                self.0.push(b);
            }
            Ok(())
        }
    }

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

/// A byte buffer (a `Vec<u8>`) encoded as one byte string, and decoded in place by
/// [`from_bytes_into`] and [`Queue::get_into`](crate::Queue::get_into) into the buffer it
/// replaces, reusing its capacity: a consumer that keeps one `ByteBuf` allocates nothing per
/// message.
///
/// Its wire format is that of a `Vec<u8>` and of a field marked
/// `#[serde(with = "shmproc::codec::bytes")]` (a length, then the bytes), so the three
/// interoperate.
///
/// # Which one to use
/// - A message that is a byte payload: `Queue<ByteBuf>` and `get_into` (one copy out of the
///   slot into the kept buffer, no allocation).
/// - A byte field of your own `#[derive(Deserialize)]` struct: `#[serde(with =
///   "shmproc::codec::bytes")]` on a `Vec<u8>`, or a `ByteBuf` field. Either is one length and
///   one copy each way. `get_into` decodes a derived struct whole and assigns it, so its
///   buffer is allocated once per message either way, unless the `deserialize_in_place`
///   feature of the `serde_derive` crate is enabled in your build: the derive then writes each
///   field in place, and a `ByteBuf` field (not a `codec::bytes` one: serde decodes a
///   `with` field whole) keeps its buffer.
///
/// # Examples
/// ```
/// use shmproc::codec::ByteBuf;
/// # fn main() -> shmproc::Result<()> {
/// let q = shmproc::Queue::<ByteBuf>::new()?;
/// q.put(&ByteBuf::from(vec![7; 256]))?;
/// q.put(&ByteBuf::from(vec![9; 100]))?;
/// let mut buf = ByteBuf::with_capacity(256);
/// let ptr = buf.as_ptr();
/// q.get_into(&mut buf)?;
/// assert_eq!(buf[..], [7; 256]);
/// q.get_into(&mut buf)?;
/// assert_eq!(buf[..], [9; 100]);
/// assert_eq!(buf.as_ptr(), ptr); // the same buffer throughout
/// # Ok(()) }
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteBuf(pub Vec<u8>);

impl ByteBuf {
    /// Returns an empty buffer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        ByteBuf(Vec::with_capacity(capacity))
    }

    /// Returns the bytes.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl std::fmt::Debug for ByteBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteBuf")
            .field("len", &self.0.len())
            .finish()
    }
}

impl std::ops::Deref for ByteBuf {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl std::ops::DerefMut for ByteBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl From<Vec<u8>> for ByteBuf {
    fn from(v: Vec<u8>) -> Self {
        ByteBuf(v)
    }
}

impl From<ByteBuf> for Vec<u8> {
    fn from(b: ByteBuf) -> Self {
        b.0
    }
}

impl AsRef<[u8]> for ByteBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for ByteBuf {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ByteBuf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        bytes::deserialize(d).map(ByteBuf)
    }

    fn deserialize_in_place<D: serde::Deserializer<'de>>(
        d: D,
        place: &mut Self,
    ) -> std::result::Result<(), D::Error> {
        d.deserialize_byte_buf(bytes::InPlace(&mut place.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 18): postcard's limits name the type and say why.
    #[test]
    fn postcard_limits_name_the_type_and_the_reason() {
        let json: serde_json::Value = serde_json::json!({ "a": 1 });
        let bytes = to_bytes(&json).expect("serializing a JSON value works");
        let e = from_bytes::<serde_json::Value>(&bytes).expect_err("decoding it cannot");
        let msg = e.to_string();
        assert!(msg.contains("serde_json::value::Value"), "{msg}");
        assert!(msg.contains("not self-describing"), "{msg}");
        #[derive(serde::Serialize)]
        struct Flat {
            #[serde(flatten)]
            inner: std::collections::BTreeMap<String, u8>,
        }
        let e = to_bytes(&Flat {
            inner: std::collections::BTreeMap::new(),
        })
        .expect_err("flatten cannot be encoded");
        let msg = e.to_string();
        assert!(msg.contains("Flat"), "{msg}");
        assert!(msg.contains("#[serde(flatten)]"), "{msg}");
        // Maps with non-string keys are fine (the old docs said otherwise).
        let m: std::collections::HashMap<(u8, i64), u8> = [((1, -2), 3)].into();
        assert_eq!(
            from_bytes::<std::collections::HashMap<(u8, i64), u8>>(&to_bytes(&m).expect("ok"))
                .expect("ok"),
            m
        );
    }

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

    /// A `ByteBuf` has the wire format of a `Vec<u8>` and of a `codec::bytes` field, decodes
    /// into a kept buffer without reallocating it, and keeps every check of `from_bytes`.
    #[test]
    fn byte_bufs_decode_in_place_with_the_vec_wire_format() {
        let data: Vec<u8> = (0..=255).collect();
        let bytes = to_bytes(&ByteBuf(data.clone())).expect("valid");
        assert_eq!(bytes, to_bytes(&data).expect("valid"));
        assert_eq!(
            bytes,
            to_bytes(&Blob { data: data.clone() }).expect("valid")
        );
        assert_eq!(from_bytes::<ByteBuf>(&bytes).expect("valid").0, data);
        assert_eq!(from_bytes::<Blob>(&bytes).expect("valid").data, data);
        let mut place = ByteBuf::with_capacity(300);
        let ptr = place.as_ptr();
        for msg in [data.clone(), vec![1, 2, 3], Vec::new(), vec![9; 300]] {
            from_bytes_into(&to_bytes(&msg).expect("valid"), &mut place).expect("valid");
            assert_eq!(place.0, msg);
            assert_eq!(place.as_ptr(), ptr, "no allocation for a message that fits");
        }
        // A longer message grows the buffer.
        from_bytes_into(&to_bytes(&vec![4u8; 1000]).expect("valid"), &mut place).expect("valid");
        assert_eq!(place.0, vec![4; 1000]);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(from_bytes_into(&trailing, &mut place).is_err());
        assert!(from_bytes::<ByteBuf>(&trailing).is_err());
        for len in 0..bytes.len() {
            assert!(from_bytes_into(&bytes[..len], &mut place).is_err());
            assert!(from_bytes::<ByteBuf>(&bytes[..len]).is_err());
        }
        let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 1, 2, 3];
        assert!(from_bytes_into(&huge, &mut place).is_err());
        assert!(
            place.capacity() < 1 << 20,
            "nothing allocated for a hostile length"
        );
        // Through a format that sends a sequence of bytes (JSON), in place too.
        let json = serde_json::to_string(&vec![5u8, 6]).expect("valid");
        let mut de = serde_json::Deserializer::from_str(&json);
        serde::Deserialize::deserialize_in_place(&mut de, &mut place).expect("valid");
        assert_eq!(place.0, [5, 6]);
    }

    /// Decoding into a place reuses its buffer and keeps every check of `from_bytes`.
    #[test]
    fn decoding_into_a_place_reuses_it_and_checks_like_from_bytes() {
        let mut s = String::with_capacity(300);
        let ptr = s.as_ptr();
        for text in ["0".repeat(256), "é".to_owned(), String::new()] {
            from_bytes_into(&to_bytes(&text).expect("valid"), &mut s).expect("valid");
            assert_eq!(s, text);
            assert_eq!(s.as_ptr(), ptr, "no allocation for a message that fits");
        }
        let bytes = to_bytes(&"abc").expect("valid");
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(from_bytes_into(&trailing, &mut s).is_err());
        for len in 0..bytes.len() {
            assert!(from_bytes_into(&bytes[..len], &mut s).is_err());
        }
        assert!(
            from_bytes_into(&[2, 0xc3, 0x28], &mut s).is_err(),
            "invalid UTF-8"
        );
        let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 1, 2, 3];
        assert!(from_bytes_into(&huge, &mut s).is_err());
        let mut v: Vec<u32> = Vec::with_capacity(8);
        from_bytes_into(&to_bytes(&vec![1u32, 2, 3]).expect("valid"), &mut v).expect("valid");
        assert_eq!(v, [1, 2, 3]);
        let mut t = (0u8, String::new());
        from_bytes_into(&to_bytes(&(7u8, "x")).expect("valid"), &mut t).expect("valid");
        assert_eq!(t, (7, "x".to_owned()));
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
