//! `#[shmproc::managed]`: the attribute that makes a type's methods callable through a
//! manager. Laid out like the derive: `ast` reads the impl block, `attr` the attribute's
//! arguments, `check` rejects the methods that cannot be called from a message, `expand`
//! generates the proxy and the impls.

mod ast;
mod attr;
mod check;
mod expand;

use crate::ctxt::Ctxt;
use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ItemImpl;

/// Reads, checks and expands one `impl` block. On any error, returns the block unchanged
/// followed by every error, and no generated code (so uses of the type's own methods still
/// compile and only the real problems are reported).
pub(crate) fn managed(args: TokenStream, item: TokenStream) -> TokenStream {
    let item: ItemImpl = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            let mut out = item;
            out.extend(
                syn::Error::new(
                    proc_macro2::Span::call_site(),
                    "#[shmproc::managed] goes on an inherent impl block: `impl Counter { .. }`",
                )
                .into_compile_error(),
            );
            return out;
        }
    };
    match expand_checked(args, &item) {
        Ok(out) => out,
        Err(errors) => {
            let mut out = item.into_token_stream();
            out.extend(errors.into_compile_error());
            out
        }
    }
}

fn expand_checked(args: TokenStream, item: &ItemImpl) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let input = ast::Input::from_syn(&cx, args, item);
    if let Some(input) = &input {
        check::check(&cx, input);
    }
    cx.check()?;
    match input {
        Some(input) => Ok(expand::expand(&input)),
        None => Err(syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[shmproc::managed] goes on an inherent impl block",
        )),
    }
}
