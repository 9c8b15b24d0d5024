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

#[cfg(test)]
mod tests {
    use super::managed;
    use proc_macro2::TokenStream;
    use quote::quote;

    fn counter() -> TokenStream {
        quote! {
            impl Counter {
                fn new() -> Self { Counter { n: 0 } }
                /// Adds.
                pub fn add(&mut self, by: u64) -> u64 { self.n += by; self.n }
                pub(crate) fn label<'a>(&'a self, prefix: &'a str) -> Result<&'a str, MyError> {
                    Ok(prefix)
                }
                #[cfg(unix)]
                pub fn merge(&mut self, other: Self, _: [u8; 2]) {}
                fn helper(&self) {}
            }
        }
    }

    #[test]
    fn pub_methods_with_a_receiver_get_an_arm_and_a_proxy_method() {
        let out = managed(quote!(), counter()).to_string();
        // The block as written comes first, unchanged.
        assert!(out.starts_with(&counter().to_string()), "{out}");
        assert!(out.contains("pub struct CounterProxy"), "{out}");
        assert!(
            out.contains("impl :: shmproc :: manager :: Managed for Counter"),
            "{out}"
        );
        assert!(out.contains("= \"Counter\" ;"), "{out}");
        for arm in ["\"add\" =>", "\"label\" =>", "\"merge\" =>"] {
            assert_eq!(out.matches(arm).count(), 1, "{arm}: {out}");
        }
        assert!(!out.contains("\"helper\""), "{out}");
        assert!(!out.contains("\"new\""), "{out}");
        assert!(
            out.contains("pub fn add (& self , by : u64) -> :: shmproc :: Result < u64 >"),
            "{out}"
        );
        // Visibility and lifetimes as written; `Self` named; the doc comment kept.
        assert!(
            out.contains(
                "pub (crate) fn label < 'a > (& self , prefix : & 'a str) -> :: shmproc :: \
                 Result < :: shmproc :: __private :: String >"
            ),
            "{out}"
        );
        assert!(
            out.contains("pub fn merge (& self , other : Counter , __arg1 : [u8 ; 2])"),
            "{out}"
        );
        assert!(out.contains("# [doc = r\" Adds.\"]"), "{out}");
        // `#[cfg]` goes to the arm and the proxy method.
        assert_eq!(out.matches("# [cfg (unix)]").count(), 3, "{out}");
    }

    #[test]
    fn dispatch_decodes_owned_forms_and_keeps_typed_errors() {
        let out = managed(quote!(), counter()).to_string();
        // `&'a str` is decoded as a `String` and passed borrowed; lifetimes are erased in
        // the dispatch, where they are not declared.
        assert!(
            out.contains(
                "decode_args1 :: < :: shmproc :: __private :: String > \
                 (method , args) ? ; match < Counter > :: label (self , & __shmproc_arg0)"
            ),
            "{out}"
        );
        assert!(out.contains("encode_return :: < & '_ str >"), "{out}");
        assert!(
            out.contains("method_failed :: < MyError > (& error)"),
            "{out}"
        );
        assert!(
            out.contains("decode_args2 :: < Counter , [u8 ; 2] > (method , args) ?"),
            "{out}"
        );
        assert!(out.contains("unknown_method"), "{out}");
    }

    #[test]
    fn options_rename_the_type_and_the_crate_path() {
        let out = managed(
            quote!(name = "app::Counter", crate = "my::reexport"),
            counter(),
        )
        .to_string();
        assert!(out.contains("= \"app::Counter\" ;"), "{out}");
        assert!(
            out.contains("impl my :: reexport :: manager :: Managed for Counter"),
            "{out}"
        );
        assert!(!out.contains(":: shmproc ::"), "{out}");
    }

    #[test]
    fn every_error_is_reported_and_only_the_block_is_emitted() {
        let item = quote! {
            impl Bad {
                pub async fn a(&self) {}
                pub fn b<T>(&self, t: T) {}
                pub fn c(self) {}
                pub fn d(&self, out: &mut Vec<u8>) {}
                pub fn e(&self) -> Option<&str> { None }
                pub unsafe fn f(self: Box<Self>, g: fn(), h: impl Copy) -> *const u8 { core::ptr::null() }
                // Private methods may do all of this.
                async unsafe fn fine<T>(self, t: &mut T) {}
            }
        };
        let out = managed(quote!(nope = 1), item.clone()).to_string();
        assert!(out.starts_with(&item.to_string()), "{out}");
        assert!(!out.contains("Managed"), "{out}");
        assert!(!out.contains("BadProxy"), "{out}");
        // nope, a: async, b: generic, c: by value, d: &mut, e: nested reference,
        // f: unsafe, Box<Self>, fn pointer, impl Trait, raw pointer.
        assert_eq!(out.matches("compile_error").count(), 11, "{out}");
    }

    #[test]
    fn seventeen_parameters_are_refused_sixteen_accepted() {
        let sixteen = (0..16usize).map(|i| quote::format_ident!("a{}", i));
        let out = managed(
            quote!(),
            quote!(impl T { pub fn f(&self, #(#sixteen: u8),*) {} }),
        );
        assert!(out.to_string().contains("decode_args16"), "{out}");
        let seventeen = (0..17usize).map(|i| quote::format_ident!("a{}", i));
        let out = managed(
            quote!(),
            quote!(impl T { pub fn f(&self, #(#seventeen: u8),*) {} }),
        );
        assert!(out.to_string().contains("at most 16 parameters"), "{out}");
    }

    #[test]
    fn trait_impls_generic_impls_and_other_items_are_refused() {
        for (item, msg) in [
            (quote!(impl Display for Counter {}), "not a trait impl"),
            (
                quote!(
                    impl<T> Counter<T> {}
                ),
                "generic impl block",
            ),
            (quote!(impl Counter where u8: Copy {}), "generic impl block"),
            (quote!(impl Counter<u8> {}), "generic arguments"),
            (quote!(impl [u8] {}), "named by a path"),
            (
                quote!(
                    struct Counter;
                ),
                "inherent impl block",
            ),
        ] {
            let out = managed(quote!(), item.clone()).to_string();
            assert!(out.starts_with(&item.to_string()), "{out}");
            assert!(out.contains(msg), "{msg}: {out}");
            assert!(!out.contains("Proxy"), "{out}");
        }
    }
}
