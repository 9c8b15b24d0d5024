//! The [`Handle`] trait: what every handle to a shared object has in common.
//!
//! A handle (`Value`, `Array`, `RawValue`, `RawArray`, the synchronization primitives, the
//! queues) is a counted reference to a block in a segment's heap. It travels between
//! processes as a token ([`Handle::Token`]: segment identity, offset, generation and type
//! fingerprint, two of them for objects paired with a lock) and re-attaches from it on the
//! other side. Re-attaching checks the object's type *and kind* against what its block
//! records, and, for objects paired with a lock, that the lock is the one the block records,
//! so a token only ever attaches as the handle it was made by.
//!
//! The trait is sealed: only shmproc's handles implement it, so generic code (a proxy that
//! forwards any handle, a pool that ships handles as arguments) can rely on these checks.
//! The macros below write the per-type glue (inherent `token`/`from_token`/`same_as`/
//! `segment`, serde through the token) once for every handle.

use crate::error::Result;
use crate::heap::ObjectRef;
use crate::segment::Segment;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;

/// A handle to an object in shared memory: a token that re-attaches in any process that
/// maps the object's segment, the segment, and identity.
///
/// Implemented by [`Value`](crate::Value), [`Array`](crate::Array),
/// [`RawValue`](crate::RawValue), [`RawArray`](crate::RawArray), [`Lock`](crate::Lock),
/// [`RLock`](crate::RLock), [`Semaphore`](crate::Semaphore),
/// [`BoundedSemaphore`](crate::BoundedSemaphore), [`Condition`](crate::Condition),
/// [`Event`](crate::Event), [`Barrier`](crate::Barrier), [`Queue`](crate::Queue),
/// [`SimpleQueue`](crate::SimpleQueue), [`JoinableQueue`](crate::JoinableQueue),
/// [`Dict`](crate::Dict), [`List`](crate::List) and [`Slot`](crate::Slot). It is
/// sealed: it cannot be implemented outside shmproc.
///
/// A handle serializes to its token, so a handle inside a value sent to another process
/// (as a `spawn` argument, through a `Queue` or a `Connection`) re-attaches there.
/// [`from_token`](Handle::from_token) accepts a token only for the kind of handle that made
/// it: a `Value` token never attaches as a `RawValue` or an `Array`, a `Queue` token never as
/// a `JoinableQueue`, and an object paired with a lock only with that lock.
///
/// # Examples
/// ```
/// use shmproc::Handle;
///
/// /// Re-attaches any handle from its token, as a process receiving it would.
/// fn reattach<H: Handle>(handle: &H) -> shmproc::Result<H> {
///     H::from_token(&handle.token())
/// }
///
/// # fn main() -> shmproc::Result<()> {
/// let value = shmproc::Value::new(7u32)?;
/// let again = reattach(&value)?;
/// again.set(8)?;
/// assert_eq!(value.get()?, 8);
/// assert!(Handle::same_as(&again, &value));
/// let lock = reattach(&shmproc::Lock::new()?)?;
/// assert_eq!(<shmproc::Lock as Handle>::KIND, "Lock");
/// assert!(lock.segment().id() != 0);
/// # Ok(()) }
/// ```
pub trait Handle: sealed::Sealed + Clone + fmt::Debug + Serialize + DeserializeOwned {
    /// What the handle serializes to: an [`ObjectToken`](crate::ObjectToken), or a pair of
    /// them (object, lock) for objects paired with a lock.
    ///
    /// A token does not keep its object alive: some handle must live until the token has
    /// been turned back into a handle, else that fails with
    /// [`Error::ObjectGone`](crate::Error::ObjectGone).
    type Token: Clone + fmt::Debug + PartialEq + Serialize + DeserializeOwned;

    /// The kind of handle, as in [`Error::WrongKind`](crate::Error::WrongKind) messages.
    const KIND: &'static str;

    /// Returns the token this handle serializes to.
    fn token(&self) -> Self::Token;

    /// Re-attaches a handle from its token, in this process or another one that maps the
    /// object's segment.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`](crate::Error::TypeMismatch) for an object of another type or
    /// [`Error::WrongKind`](crate::Error::WrongKind) for one of another kind;
    /// [`Error::LockMismatch`](crate::Error::LockMismatch) for an object paired with
    /// another lock; [`Error::ObjectGone`](crate::Error::ObjectGone) if the object was
    /// freed; [`Error::UnknownSegment`](crate::Error::UnknownSegment) if its segment is not
    /// mapped here; [`Error::CorruptObject`](crate::Error::CorruptObject) for a token or block
    /// that fails a check.
    fn from_token(token: &Self::Token) -> Result<Self>;

    /// Returns the segment the object lives in.
    fn segment(&self) -> Segment;

    /// Returns whether two handles refer to the same object (clones of a handle, and
    /// handles re-attached from its token, do).
    fn same_as(&self, other: &Self) -> bool;
}

pub(crate) mod sealed {
    /// The private supertrait of [`Handle`](super::Handle), so that only shmproc's handles
    /// implement it.
    #[allow(unreachable_pub)] // public in a private module: the sealing pattern
    pub trait Sealed {}
}

/// Access to a handle's own block, inside shmproc only.
pub(crate) trait Object {
    /// Returns the handle's block (for an object paired with a lock, the object's).
    fn object(&self) -> &ObjectRef;
}

/// Starts a `Debug` struct for a handle: its kind, segment and offset, for the caller to add
/// its state to.
pub(crate) fn debug<'a, 'b, H: Handle + Object>(
    handle: &H,
    f: &'a mut fmt::Formatter<'b>,
) -> fmt::DebugStruct<'a, 'b> {
    let obj = handle.object();
    let mut d = f.debug_struct(H::KIND);
    d.field("segment", &format_args!("{:#018x}", obj.segment_id()))
        .field("offset", &obj.offset());
    d
}

/// Implements [`Handle`] and the glue for a handle whose token is one [`ObjectToken`]
/// (`crate::heap::ObjectToken`): the inherent `token`, `from_token`, `same_as` and
/// `segment`, and serde through the token. The type provides
/// `fn attach(token: &ObjectToken) -> Result<Self>` with its own checks.
///
/// `object: |s| expr` gives the handle's block from `s: &Self`.
macro_rules! single_token_handle {
    (
        [$($g:tt)*] $ty:ty, $kind:expr, object: |$s:ident| $obj:expr
        $(, from_token_errors: $(#[$doc:meta])*)?
    ) => {
        impl<$($g)*> $crate::handle::sealed::Sealed for $ty {}

        impl<$($g)*> $crate::handle::Object for $ty {
            fn object(&self) -> &$crate::heap::ObjectRef {
                let $s = self;
                $obj
            }
        }

        impl<$($g)*> $crate::handle::Handle for $ty {
            type Token = $crate::heap::ObjectToken;
            const KIND: &'static str = $kind;

            fn token(&self) -> $crate::heap::ObjectToken {
                $crate::handle::Object::object(self).token()
            }

            fn from_token(token: &$crate::heap::ObjectToken) -> $crate::error::Result<Self> {
                <$ty>::attach(token)
            }

            $crate::handle::handle_identity!();
        }

        impl<$($g)*> $ty {
            /// Returns the token this handle serializes to.
            pub fn token(&self) -> $crate::heap::ObjectToken {
                $crate::handle::Handle::token(self)
            }

            /// Re-attaches a handle from its token (see [`Handle`](crate::Handle)).
            ///
            /// # Errors
            /// [`Error::TypeMismatch`](crate::Error::TypeMismatch) if the token names
            /// another kind of object; [`Error::ObjectGone`](crate::Error::ObjectGone),
            /// [`Error::UnknownSegment`](crate::Error::UnknownSegment),
            /// [`Error::CorruptObject`](crate::Error::CorruptObject).
            $($(#[$doc])*)?
            pub fn from_token(token: &$crate::heap::ObjectToken) -> $crate::error::Result<Self> {
                <$ty>::attach(token)
            }

            $crate::handle::identity_methods!();
        }

        impl<$($g)*> ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(
                &self,
                s: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                $crate::handle::Object::object(self).serialize(s)
            }
        }

        impl<'de, $($g)*> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                d: D,
            ) -> ::std::result::Result<Self, D::Error> {
                let tok = <$crate::heap::ObjectToken as ::serde::Deserialize>::deserialize(d)?;
                <$ty>::attach(&tok).map_err($crate::codec::attach_error)
            }
        }
    };
}
pub(crate) use single_token_handle;

/// Implements [`Handle`] and the glue for an object paired with a lock, whose token is the
/// pair (object, lock): `same_as`, `segment`, and serde through the pair. The type provides
/// `fn attach_pair(object: &ObjectToken, lock: &ObjectToken) -> Result<Self>` (which checks
/// the lock against the block's record), and its inherent `token`/`from_token`.
///
/// `object: |s| expr` gives the object's block and `lock: |s| expr` the lock's.
macro_rules! paired_handle {
    (
        [$($g:tt)*] $ty:ty, $kind:expr,
        object: |$s:ident| $obj:expr, lock: |$l:ident| $lock:expr
    ) => {
        impl<$($g)*> $crate::handle::sealed::Sealed for $ty {}

        impl<$($g)*> $crate::handle::Object for $ty {
            fn object(&self) -> &$crate::heap::ObjectRef {
                let $s = self;
                $obj
            }
        }

        impl<$($g)*> $ty {
            fn lock_object(&self) -> &$crate::heap::ObjectRef {
                let $l = self;
                $lock
            }

            $crate::handle::identity_methods!();
        }

        impl<$($g)*> $crate::handle::Handle for $ty {
            type Token = ($crate::heap::ObjectToken, $crate::heap::ObjectToken);
            const KIND: &'static str = $kind;

            fn token(&self) -> Self::Token {
                ($crate::handle::Object::object(self).token(), self.lock_object().token())
            }

            fn from_token(token: &Self::Token) -> $crate::error::Result<Self> {
                <$ty>::attach_pair(&token.0, &token.1)
            }

            $crate::handle::handle_identity!();
        }

        impl<$($g)*> ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(
                &self,
                s: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                ($crate::handle::Object::object(self), self.lock_object()).serialize(s)
            }
        }

        impl<'de, $($g)*> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                d: D,
            ) -> ::std::result::Result<Self, D::Error> {
                let (o, l) = <($crate::heap::ObjectToken, $crate::heap::ObjectToken)
                    as ::serde::Deserialize>::deserialize(d)?;
                <$ty>::attach_pair(&o, &l).map_err($crate::codec::attach_error)
            }
        }
    };
}
pub(crate) use paired_handle;

/// The inherent `same_as` and `segment` every handle has (forwarding to [`Handle`]).
macro_rules! identity_methods {
    () => {
        /// Returns whether two handles refer to the same object (clones of a handle, and
        /// handles re-attached from its token, do).
        pub fn same_as(&self, other: &Self) -> bool {
            $crate::handle::Handle::same_as(self, other)
        }

        /// Returns the segment the object lives in.
        pub fn segment(&self) -> $crate::segment::Segment {
            $crate::handle::Handle::segment(self)
        }
    };
}
pub(crate) use identity_methods;

/// The `segment` and `same_as` of a [`Handle`] impl, from the handle's block.
macro_rules! handle_identity {
    () => {
        fn segment(&self) -> $crate::segment::Segment {
            $crate::handle::Object::object(self).segment()
        }

        fn same_as(&self, other: &Self) -> bool {
            $crate::handle::Object::object(self).same_object($crate::handle::Object::object(other))
        }
    };
}
pub(crate) use handle_identity;
