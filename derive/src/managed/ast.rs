//! Our model of a managed `impl` block: the type, the options, and the methods that are
//! managed (those with a `self` receiver and a `pub` visibility of any kind).

use super::attr::{self, Options};
use crate::ctxt::Ctxt;
use proc_macro2::TokenStream;
use syn::{
    FnArg, GenericArgument, Ident, ImplItem, ImplItemFn, ItemImpl, Pat, PathArguments, Receiver,
    ReturnType, Type, TypePath, Visibility,
};

/// An `impl` block `#[shmproc::managed]` was applied to.
pub(crate) struct Input<'a> {
    /// The block as written.
    pub(crate) item: &'a ItemImpl,
    /// The type the block is for, a path without generic arguments (`Counter`).
    pub(crate) self_ty: &'a TypePath,
    /// The last segment of that path, which names the proxy (`CounterProxy`).
    pub(crate) self_ident: &'a Ident,
    /// The attribute's options.
    pub(crate) options: Options,
    /// The managed methods, in the order written.
    pub(crate) methods: Vec<Method<'a>>,
}

/// A managed method: `pub` (of any kind), with a `self` receiver.
pub(crate) struct Method<'a> {
    /// The method as written, for its name, attributes, signature and spans.
    pub(crate) original: &'a ImplItemFn,
    /// Its receiver.
    pub(crate) receiver: &'a Receiver,
    /// Its other parameters, in order.
    pub(crate) args: Vec<Arg<'a>>,
    /// What it returns.
    pub(crate) output: Output<'a>,
}

/// One parameter of a managed method, after the receiver.
pub(crate) struct Arg<'a> {
    /// Its pattern as written.
    pub(crate) pat: &'a Pat,
    /// Its type as written.
    pub(crate) ty: &'a Type,
}

/// What a managed method returns.
pub(crate) enum Output<'a> {
    /// A plain value: `None` for `()` (no return type written).
    Value(Option<&'a Type>),
    /// `Result<T, E>`, written as a path ending in `Result` with two type arguments. The
    /// proxy returns `shmproc::Result<T>`; `Err(e)` travels as `e`'s text and encoding.
    Result {
        /// `T`.
        ok: &'a Type,
        /// `E`.
        err: &'a Type,
    },
}

impl<'a> Input<'a> {
    /// Reads the block and the attribute's arguments; returns `None` (after recording why)
    /// if the block is not an inherent impl of a plain named type.
    pub(crate) fn from_syn(cx: &Ctxt, args: TokenStream, item: &'a ItemImpl) -> Option<Self> {
        let options = attr::options(cx, args);
        // One error per block: the first of trait impl, generic impl, unnamed type, type
        // with generic arguments.
        if let Some((_, path, _)) = &item.trait_ {
            cx.error_spanned_by(
                path,
                "#[shmproc::managed] goes on an inherent impl block (`impl Counter { .. }`), not \
                 a trait impl: the proxy offers the type's own methods",
            );
            return None;
        }
        if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
            cx.error_spanned_by(
                &item.generics,
                "#[shmproc::managed] cannot be used on a generic impl block: the server must know \
                 the one concrete type to decode; implement it for a concrete type (a type alias \
                 or a newtype of each instance)",
            );
            return None;
        }
        let self_ty = match &*item.self_ty {
            Type::Path(p) if p.qself.is_none() => Some(p),
            other => {
                cx.error_spanned_by(
                    other,
                    "#[shmproc::managed] needs the type named by a path, like `impl Counter`",
                );
                None
            }
        };
        let self_ty = self_ty?;
        let last = self_ty.path.segments.last()?;
        if !matches!(last.arguments, PathArguments::None) {
            cx.error_spanned_by(
                &last.arguments,
                "#[shmproc::managed] cannot be used on an impl of a type with generic arguments: \
                 the proxy and the registered name are per type; wrap the instance in a newtype",
            );
            return None;
        }
        let methods = item
            .items
            .iter()
            .filter_map(|i| match i {
                ImplItem::Fn(f) => Method::from_syn(f),
                _ => None,
            })
            .collect();
        Some(Input {
            item,
            self_ty,
            self_ident: &last.ident,
            options,
            methods,
        })
    }
}

impl<'a> Method<'a> {
    /// Reads `f` if it is managed: `pub` of any kind, with a `self` receiver.
    fn from_syn(f: &'a ImplItemFn) -> Option<Self> {
        if matches!(f.vis, Visibility::Inherited) {
            return None;
        }
        let mut inputs = f.sig.inputs.iter();
        let receiver = match inputs.next() {
            Some(FnArg::Receiver(r)) => r,
            _ => return None,
        };
        let args = inputs
            .filter_map(|arg| match arg {
                FnArg::Typed(t) => Some(Arg {
                    pat: &t.pat,
                    ty: &t.ty,
                }),
                FnArg::Receiver(_) => None,
            })
            .collect();
        let output = match &f.sig.output {
            ReturnType::Default => Output::Value(None),
            ReturnType::Type(_, ty) => match result_args(ty) {
                Some((ok, err)) => Output::Result { ok, err },
                None => Output::Value(Some(ty)),
            },
        };
        Some(Method {
            original: f,
            receiver,
            args,
            output,
        })
    }

    /// The method's name.
    pub(crate) fn ident(&self) -> &'a Ident {
        &self.original.sig.ident
    }
}

/// `T` and `E` of a type written `Result<T, E>` (any path whose last segment is `Result` with
/// two type arguments).
fn result_args(ty: &Type) -> Option<(&Type, &Type)> {
    let Type::Path(p) = ty else { return None };
    if p.qself.is_some() {
        return None;
    }
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(Some(ok)), Some(Some(err)), None) => Some((ok, err)),
        _ => None,
    }
}
