//! The checks made on the syntax before any code is generated.
//!
//! What can be decided from the tokens is decided here, with a message that says why and what
//! to do instead: the layout attribute, lifetimes, and field types that are references,
//! pointers, `bool` or `char`. What needs the type checker (every field is `Shareable`, the
//! struct does not need `Drop`, the layout is the `repr(C)` one) is asserted by the generated
//! code, spanned on the field it is about (see `expand`).

use crate::ast::Input;
use crate::ctxt::Ctxt;
use syn::{GenericParam, Type};

/// Records every problem with `input` in `cx`.
pub(crate) fn check(cx: &Ctxt, input: &Input<'_>) {
    check_repr(cx, input);
    check_generics(cx, input);
    for field in &input.fields {
        check_type(cx, field.ty);
        for attr in &field.original.attrs {
            if attr.path().is_ident("shmproc") {
                cx.error_spanned_by(
                    attr,
                    "#[shmproc(...)] options go on the struct, not a field",
                );
            }
        }
    }
}

fn check_repr(cx: &Ctxt, input: &Input<'_>) {
    let repr = &input.repr;
    if let Some(span) = repr.packed {
        cx.error_at(
            span,
            "SharedStruct cannot be derived for a `#[repr(packed)]` struct: packing misaligns \
             fields, and atomics and locks in shared memory must be aligned; reorder the fields \
             or add explicit padding fields instead",
        );
    }
    if repr.c.is_none() && repr.transparent.is_none() {
        cx.error_spanned_by(
            input.ident,
            "SharedStruct requires `#[repr(C)]` (or `#[repr(transparent)]`): the default Rust \
             layout may differ between compilations, so two programs could disagree on where \
             each field is",
        );
    }
}

fn check_generics(cx: &Ctxt, input: &Input<'_>) {
    for param in &input.generics.params {
        if let GenericParam::Lifetime(lt) = param {
            cx.error_spanned_by(
                &lt.lifetime,
                "SharedStruct cannot be derived for a struct with lifetime parameters: a value in \
                 shared memory outlives every borrow of this process",
            );
        }
    }
}

/// Rejects the field types that can never be shareable, looking through arrays, tuples,
/// parentheses and invisible groups.
fn check_type(cx: &Ctxt, ty: &Type) {
    match ty {
        Type::Reference(r) => cx.error_spanned_by(
            r,
            "a reference cannot live in shared memory: the address it holds means nothing in \
             another process; store an offset or index, or a shmproc handle token instead",
        ),
        Type::Ptr(p) => cx.error_spanned_by(
            p,
            "a raw pointer cannot live in shared memory: the address it holds means nothing in \
             another process; store an offset or index instead",
        ),
        Type::BareFn(f) => cx.error_spanned_by(
            f,
            "a function pointer cannot live in shared memory: code addresses differ between \
             processes; store an index into a table of functions instead",
        ),
        Type::Array(a) => check_type(cx, &a.elem),
        Type::Tuple(t) => t.elems.iter().for_each(|e| check_type(cx, e)),
        Type::Paren(p) => check_type(cx, &p.elem),
        Type::Group(g) => check_type(cx, &g.elem),
        Type::Path(p) if p.qself.is_none() => {
            if is_primitive(&p.path, "bool") {
                cx.error_spanned_by(
                    p,
                    "`bool` cannot live in shared memory: another process could write a byte \
                     other than 0 or 1, and reading that as a `bool` is undefined behaviour; \
                     use `u8` (or `AtomicU8`) and compare it with 0",
                );
            } else if is_primitive(&p.path, "char") {
                cx.error_spanned_by(
                    p,
                    "`char` cannot live in shared memory: another process could write a value \
                     that is not a Unicode scalar value, and reading that as a `char` is \
                     undefined behaviour; use `u32` and convert with `char::from_u32`",
                );
            }
        }
        _ => {}
    }
}

/// Whether `path` names the primitive `name`: `name`, or `{core,std}::primitive::name`.
pub(crate) fn is_primitive(path: &syn::Path, name: &str) -> bool {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let last_is = path
        .segments
        .last()
        .is_some_and(|s| s.ident == name && s.arguments.is_none());
    last_is
        && match segments.len() {
            1 => path.leading_colon.is_none(),
            3 => (segments[0] == "core" || segments[0] == "std") && segments[1] == "primitive",
            _ => false,
        }
}
