//! The checks made on a managed `impl` block before any code is generated.
//!
//! Each managed method must be callable from a message: a `&self` or `&mut self` receiver,
//! no type or const parameters, not `async` or `unsafe`, and parameter and return types that
//! can be encoded by the caller and decoded by the other side. What needs the type checker
//! (every type is serde) is left to the bounds in the generated code.

use super::ast::{Input, Method, Output};
use crate::ctxt::Ctxt;
use syn::{GenericParam, Type};

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
/// references, slices, arrays, tuples, parentheses and invisible groups.
fn check_type(cx: &Ctxt, ty: &Type, at: Position) {
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
        Type::Reference(r) => check_type(cx, &r.elem, at),
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
        Type::Slice(s) => check_type(cx, &s.elem, at),
        Type::Array(a) => check_type(cx, &a.elem, at),
        Type::Tuple(t) => t.elems.iter().for_each(|e| check_type(cx, e, at)),
        Type::Paren(p) => check_type(cx, &p.elem, at),
        Type::Group(g) => check_type(cx, &g.elem, at),
        _ => {}
    }
}
