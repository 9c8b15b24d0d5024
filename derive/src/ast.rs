//! Our model of a derive input: a struct, its fields, its layout attributes and options.

use crate::attr::{self, Options, Repr};
use crate::ctxt::Ctxt;
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, Fields, Generics, Ident, Member, Type};

/// A struct the derive was applied to.
pub(crate) struct Input<'a> {
    /// The struct's name.
    pub(crate) ident: &'a Ident,
    /// Its generic parameters and where clause, as written.
    pub(crate) generics: &'a Generics,
    /// Its `#[repr(...)]` hints.
    pub(crate) repr: Repr,
    /// Its `#[shmproc(...)]` options.
    pub(crate) options: Options,
    /// Its fields in declaration order (empty for a unit struct).
    pub(crate) fields: Vec<Field<'a>>,
}

/// One field of the struct.
pub(crate) struct Field<'a> {
    /// How the field is named in expressions: `x` or `0`.
    pub(crate) member: Member,
    /// The name hashed into the fingerprint: the identifier, or the index of a tuple field.
    pub(crate) name: String,
    /// The field's type.
    pub(crate) ty: &'a Type,
    /// The field as parsed, for its attributes and spans.
    pub(crate) original: &'a syn::Field,
}

impl<'a> Input<'a> {
    /// Reads `input`; returns `None` (after recording why) if it is not a struct.
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Option<Self> {
        let repr = attr::repr(cx, &input.attrs);
        let options = attr::options(cx, &input.attrs);
        let fields = match &input.data {
            Data::Struct(data) => Field::multiple(&data.fields),
            Data::Enum(data) => {
                cx.error_spanned_by(
                    data.enum_token,
                    "SharedStruct cannot be derived for enums: another process could write a \
                     discriminant that names no variant, and reading it would be undefined \
                     behaviour; store the discriminant in an integer field and convert it with \
                     a checked `TryFrom`",
                );
                return None;
            }
            Data::Union(data) => {
                cx.error_spanned_by(
                    data.union_token,
                    "SharedStruct cannot be derived for unions: which field is valid is not \
                     recorded in the bytes; use a struct, or a byte array and an explicit tag",
                );
                return None;
            }
        };
        Some(Input {
            ident: &input.ident,
            generics: &input.generics,
            repr,
            options,
            fields,
        })
    }
}

impl<'a> Field<'a> {
    fn multiple(fields: &'a Fields) -> Vec<Self> {
        fields
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let member = match &field.ident {
                    Some(ident) => Member::Named(ident.clone()),
                    None => Member::Unnamed(syn::Index::from(i)),
                };
                let name = match &field.ident {
                    Some(ident) => ident.unraw().to_string(),
                    None => i.to_string(),
                };
                Field {
                    member,
                    name,
                    ty: &field.ty,
                    original: field,
                }
            })
            .collect()
    }
}
