//! The attributes the derive reads: `#[repr(...)]` and `#[shmproc(...)]`.

use crate::ctxt::Ctxt;
use proc_macro2::{Span, TokenTree};
use syn::{Attribute, LitStr, Path};

/// What the struct's `#[repr(...)]` attributes say, with the span of each hint.
#[derive(Default)]
pub(crate) struct Repr {
    /// `repr(C)`.
    pub(crate) c: Option<Span>,
    /// `repr(transparent)`.
    pub(crate) transparent: Option<Span>,
    /// `repr(packed)` or `repr(packed(N))`.
    pub(crate) packed: Option<Span>,
}

/// The container's `#[shmproc(...)]` options.
pub(crate) struct Options {
    /// The path the generated code reaches shmproc through (`crate = "..."`), default
    /// `::shmproc`.
    pub(crate) krate: Path,
}

/// Reads every `#[repr(...)]` hint. Hints the derive does not care about (`align(N)`, `Rust`,
/// integer types) are skipped; rustc itself reports the malformed ones.
pub(crate) fn repr(cx: &Ctxt, attrs: &[Attribute]) -> Repr {
    let mut repr = Repr::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("repr")) {
        let parsed = attr.parse_nested_meta(|meta| {
            let span = meta
                .path
                .get_ident()
                .map_or_else(Span::call_site, |i| i.span());
            if meta.path.is_ident("C") {
                repr.c = Some(span);
            } else if meta.path.is_ident("transparent") {
                repr.transparent = Some(span);
            } else if meta.path.is_ident("packed") {
                repr.packed = Some(span);
            }
            // Skip the argument of `packed(N)` / `align(N)`.
            if meta.input.peek(syn::token::Paren) {
                meta.input.parse::<TokenTree>()?;
            }
            Ok(())
        });
        if let Err(e) = parsed {
            cx.syn_error(e);
        }
    }
    repr
}

/// Parses a `crate = "path::to::shmproc"` option into `krate`, refusing a repeated one or a
/// string that is not a path (shared by `#[shmproc(...)]` and `#[shmproc::managed(...)]`).
pub(crate) fn parse_crate_option(
    meta: &syn::meta::ParseNestedMeta<'_>,
    krate: &mut Option<Path>,
) -> syn::Result<()> {
    let lit: LitStr = meta.value()?.parse()?;
    let path: Path = lit.parse().map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!("`{}` is not a path to the shmproc crate", lit.value()),
        )
    })?;
    if krate.is_some() {
        return Err(meta.error("duplicate `crate` option"));
    }
    *krate = Some(path);
    Ok(())
}

/// Reads the container's `#[shmproc(...)]` options, reporting unknown or repeated keys.
pub(crate) fn options(cx: &Ctxt, attrs: &[Attribute]) -> Options {
    let mut krate: Option<Path> = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("shmproc")) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                parse_crate_option(&meta, &mut krate)
            } else {
                Err(meta.error(
                    "unknown shmproc option; the only one is `crate = \"path::to::shmproc\"`",
                ))
            }
        });
        if let Err(e) = parsed {
            cx.syn_error(e);
        }
    }
    Options {
        krate: krate.unwrap_or_else(|| syn::parse_quote!(::shmproc)),
    }
}
