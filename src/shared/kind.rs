//! Kinds of typed shared memory: what a block was created as, recorded in its header.
//!
//! A `Value<T>`, an `Array<T>`, a `RawValue<T>` and a `RawArray<T>` of the same `T` hold
//! the same bytes but promise different things about them: the locked kinds hand out `&mut T`
//! under their lock, the raw kinds store atomically with no lock at all. If one could be
//! attached as another, safe code could hold a `&mut T` while another handle writes the same
//! bytes. So the fingerprint a block records is `T::FINGERPRINT` extended with the kind's
//! name, and attaching checks it: a block created as one kind never attaches as another
//! ([`Error::WrongKind`]), whatever its element type. Tokens carry `T::FINGERPRINT` alone
//! (what [`Error::TypeMismatch`] reports); the kind is checked against the block, which is
//! the authority.

use super::Shareable;
use crate::error::{Error, Result};
use crate::heap::{ObjectRef, ObjectToken};

/// The kind of a typed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `Value<T>`: one `T` behind a lock; the payload starts with a link to the lock.
    Value,
    /// `Array<T>`: `n` `T`s behind a lock; the payload starts with a link to the lock.
    Array,
    /// `RawValue<T>`: one `T`, accessed atomically.
    RawValue,
    /// `RawArray<T>`: `n` `T`s, accessed atomically.
    RawArray,
}

const ALL: [Kind; 4] = [Kind::Value, Kind::Array, Kind::RawValue, Kind::RawArray];

impl Kind {
    /// Returns the kind's name, as in error messages.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Kind::Value => "Value",
            Kind::Array => "Array",
            Kind::RawValue => "RawValue",
            Kind::RawArray => "RawArray",
        }
    }

    /// Returns the fingerprint a block of this kind holding `T`s records.
    pub(crate) const fn fingerprint<T: Shareable>(self) -> u64 {
        let h = crate::fingerprint::extend(T::FINGERPRINT, b"shmproc kind ");
        crate::fingerprint::extend(h, self.name().as_bytes())
    }
}

/// Re-attaches the object `token` names as a block of `kind` holding `T`s.
///
/// # Errors
/// [`Error::WrongKind`] for a block of `T`s created as another kind; otherwise as
/// `ObjectRef::attach` ([`Error::TypeMismatch`], [`Error::ObjectGone`], …).
pub(crate) fn attach<T: Shareable>(token: &ObjectToken, kind: Kind) -> Result<ObjectRef> {
    if token.fingerprint != T::FINGERPRINT {
        return Err(Error::TypeMismatch {
            expected: T::TYPE_NAME,
            found: token.fingerprint,
        });
    }
    let recorded = ObjectToken {
        fingerprint: kind.fingerprint::<T>(),
        ..token.clone()
    };
    match ObjectRef::attach(&recorded, kind.fingerprint::<T>(), T::TYPE_NAME) {
        Ok(obj) => Ok(obj.with_token_fingerprint(T::FINGERPRINT)),
        Err(Error::TypeMismatch { found, expected }) => {
            Err(match ALL.iter().find(|k| k.fingerprint::<T>() == found) {
                Some(k) => Error::WrongKind {
                    expected: kind.name(),
                    found: k.name(),
                },
                None => Error::TypeMismatch { expected, found },
            })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_one_type_have_distinct_fingerprints() {
        let fps = ALL.map(|k| k.fingerprint::<u32>());
        for (i, a) in fps.iter().enumerate() {
            assert_ne!(*a, <u32 as Shareable>::FINGERPRINT);
            for b in &fps[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
