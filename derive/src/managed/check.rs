//! The checks made on a managed `impl` block before any code is generated.
//!
//! Each managed method must be callable from a message: a `&self` or `&mut self` receiver,
//! no type or const parameters, not `async` or `unsafe`, and parameter and return types that
//! can be encoded by the caller and decoded by the other side. What needs the type checker
//! (every type is serde) is left to the bounds in the generated code.

use super::ast::{Input, Method, Output};
use crate::ctxt::Ctxt;
use syn::{GenericArgument, GenericParam, PathArguments, Type};

/// The most parameters a managed method may take: serde implements its traits for tuples of
/// up to 16 elements (and `DispatchError` has `decode_args0` to `decode_args16`).
const MAX_ARGS: usize = 16;

/// Records every problem with `input`'s managed methods in `cx`.
pub(crate) fn check(cx: &Ctxt, input: &Input<'_>) {
    for method in &input.methods {
        check_method(cx, method);
    }
}

fn check_method(cx: &Ctxt, method: &Method<'_>) {
    let sig = &method.original.sig;
    if let Some(token) = &sig.asyncness {
        cx.error_spanned_by(
            token,
            "an async method cannot be managed: the server runs each call to completion; make \
             it a plain `fn` (or make it private to keep it out of the proxy)",
        );
    }
    if let Some(token) = &sig.unsafety {
        cx.error_spanned_by(
            token,
            "an unsafe method cannot be managed: a remote caller cannot uphold its safety \
             contract; make it safe (or private to keep it out of the proxy)",
        );
    }
    for param in &sig.generics.params {
        match param {
            GenericParam::Lifetime(_) => {}
            GenericParam::Type(_) | GenericParam::Const(_) => cx.error_spanned_by(
                param,
                "a generic method cannot be managed: calls are dispatched by name, so each \
                 method must have one concrete signature; write one method per type (or make \
                 it private to keep it out of the proxy)",
            ),
        }
    }
    check_receiver(cx, method);
    if let Some(extra) = method.args.get(MAX_ARGS) {
        cx.error_spanned_by(
            extra.pat,
            format!(
                "a managed method takes at most {MAX_ARGS} parameters besides `self` (the \
                 largest tuple serde encodes); pass a struct instead"
            ),
        );
    }
    for arg in &method.args {
        check_type(cx, arg.ty, Position::Argument);
    }
    match &method.output {
        Output::Value(None) => {}
        Output::Value(Some(ty)) => check_type(cx, ty, Position::Return),
        Output::Result { ok, err } => {
            check_type(cx, ok, Position::Return);
            check_type(cx, err, Position::Return);
        }
    }
}

fn check_receiver(cx: &Ctxt, method: &Method<'_>) {
    let receiver = method.receiver;
    if receiver.reference.is_some() {
        return;
    }
    match &*receiver.ty {
        Type::Reference(r) if is_self(&r.elem) => {}
        ty if receiver.colon_token.is_none() || is_self(ty) => cx.error_spanned_by(
            receiver,
            "a method taking `self` by value cannot be managed: the server keeps the object \
             after the call; take `&self` or `&mut self` (or make it private to keep it out of \
             the proxy)",
        ),
        _ => cx.error_spanned_by(
            receiver,
            "a managed method takes `&self` or `&mut self`: the server holds the object \
             itself, not a `Box`, `Rc`, `Arc` or `Pin` of it",
        ),
    }
}

fn is_self(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.qself.is_none() && p.path.is_ident("Self"),
        Type::Paren(p) => is_self(&p.elem),
        Type::Group(g) => is_self(&g.elem),
        _ => false,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Position {
    Argument,
    Return,
}

/// Rejects the parameter and return types that cannot travel in a message, looking through
/// references, slices, arrays, tuples, parentheses, invisible groups and generic arguments.
/// Only the outermost reference is accepted (it travels as its owned form): a value decoded
/// on the other side cannot borrow from anything there.
fn check_type(cx: &Ctxt, ty: &Type, at: Position) {
    walk_type(cx, ty, at, true);
}

fn walk_type(cx: &Ctxt, ty: &Type, at: Position, outermost: bool) {
    match ty {
        Type::Reference(r) if r.mutability.is_some() => cx.error_spanned_by(
            r,
            match at {
                Position::Argument => {
                    "a `&mut` parameter cannot be managed: the method runs in the server, so \
                     what it writes through the reference would never reach the caller; return \
                     the new value instead"
                }
                Position::Return => {
                    "a managed method cannot return `&mut`: the caller gets a copy, and writes \
                     to it would never reach the server; add a method that makes the change"
                }
            },
        ),
        Type::Reference(r) if !outermost => cx.error_spanned_by(
            r,
            "a reference inside a managed method's parameter or return type cannot be decoded \
             on the other side, where there is nothing to borrow from; use the owned type \
             (`String` for `&str`, `Vec<T>` for `&[T]`, `T` for `&T`); only a whole parameter \
             or return type may be a reference",
        ),
        Type::Reference(r) => walk_type(cx, &r.elem, at, false),
        Type::ImplTrait(t) => cx.error_spanned_by(
            t,
            "`impl Trait` cannot be managed: the other side must decode one concrete type; \
             name the type",
        ),
        Type::TraitObject(t) => cx.error_spanned_by(
            t,
            "a trait object cannot be managed: only data travels to and from the server, \
             never code; use a concrete serde type (an enum of the cases, for example)",
        ),
        Type::Ptr(p) => cx.error_spanned_by(
            p,
            "a raw pointer cannot be managed: the address means nothing in the other process",
        ),
        Type::BareFn(f) => cx.error_spanned_by(
            f,
            "a function pointer cannot be managed: only data travels to and from the server, \
             never code; pass an enum that says what to do",
        ),
        Type::Infer(i) => cx.error_spanned_by(i, "a managed method's types must be written out"),
        Type::Slice(s) => walk_type(cx, &s.elem, at, false),
        Type::Array(a) => walk_type(cx, &a.elem, at, false),
        Type::Tuple(t) => t.elems.iter().for_each(|e| walk_type(cx, e, at, false)),
        Type::Paren(p) => walk_type(cx, &p.elem, at, outermost),
        Type::Group(g) => walk_type(cx, &g.elem, at, outermost),
        Type::Path(p) => {
            if let Some(q) = &p.qself {
                walk_type(cx, &q.ty, at, false);
            }
            for segment in &p.path.segments {
                if let PathArguments::AngleBracketed(args) = &segment.arguments {
                    for arg in &args.args {
                        if let GenericArgument::Type(t) = arg {
                            walk_type(cx, t, at, false);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}
