//! The arguments of `#[shmproc::managed(...)]`.

use crate::ctxt::Ctxt;
use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{LitStr, Path};

/// The options of one `#[shmproc::managed(...)]`.
pub(crate) struct Options {
    /// The name the type is registered under (`name = "..."`), if given.
    pub(crate) name: Option<LitStr>,
    /// The path the generated code reaches shmproc through (`crate = "..."`), default
    /// `::shmproc`.
    pub(crate) krate: Path,
}

/// Reads the attribute's arguments, reporting unknown, repeated or malformed ones.
pub(crate) fn options(cx: &Ctxt, args: TokenStream) -> Options {
    let mut name: Option<LitStr> = None;
    let mut krate: Option<Path> = None;
    let parser = syn::meta::parser(|meta: ParseNestedMeta<'_>| {
        if meta.path.is_ident("name") {
            let lit: LitStr = meta.value()?.parse()?;
            if lit.value().is_empty() {
                return Err(syn::Error::new(
                    lit.span(),
                    "the type name must not be empty",
                ));
            }
            if name.is_some() {
                return Err(meta.error("duplicate `name` option"));
            }
            name = Some(lit);
            Ok(())
        } else if meta.path.is_ident("crate") {
            crate::attr::parse_crate_option(&meta, &mut krate)
        } else {
            Err(meta.error(
                "unknown shmproc::managed option; the options are `name = \"TypeName\"` and \
                 `crate = \"path::to::shmproc\"`",
            ))
        }
    });
    if let Err(e) = parser.parse2(args) {
        cx.syn_error(e);
    }
    Options {
        name,
        krate: krate.unwrap_or_else(|| syn::parse_quote!(::shmproc)),
    }
}
