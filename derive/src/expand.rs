//! Code generation for a checked input.
//!
//! Everything is emitted inside `const _: () = { ... };`, so no helper name leaks into the
//! caller's module, and reaches shmproc only through the `crate` path (default `::shmproc`):
//! the trait as `<path>::Shareable`, everything else through `<path>::__private`, including
//! `core`, so the output also compiles under `#![no_implicit_prelude]`.

use crate::ast::{Field, Input};
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;

/// Generates the `Shareable` impl and its compile-time checks.
pub(crate) fn expand(input: &Input<'_>) -> TokenStream {
    let krate = &input.options.krate;
    let private = quote!(#krate::__private);
    let core = quote!(#private::core);
    let ident = input.ident;
    let type_name = ident.unraw().to_string();

    // Every type parameter must itself be shareable; its fingerprint then enters the struct's
    // through the fields that use it.
    let mut generics = input.generics.clone();
    for param in generics.type_params_mut() {
        param.bounds.push(syn::parse_quote!(#krate::Shareable));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let self_ty = quote!(#ident #ty_generics);

    let tys: Vec<_> = input.fields.iter().map(|f| f.ty).collect();

    // One call per field, spanned on the field's type, so an unshareable field is reported
    // there ("`Vec<u8>` cannot be placed in shared memory") with the trait's note.
    let assert_fields = input.fields.iter().map(|f| {
        let ty = f.ty;
        quote_spanned!(ty.span()=> __shmproc_assert_shareable::<#ty>();)
    });

    let checks = layout_checks(input, &core, &self_ty, &type_name);
    // A non-generic struct is checked where it is defined. A generic one can only be checked
    // once its parameters are known, so its checks run when `FINGERPRINT` is evaluated, which
    // every allocation and attach does.
    let (eager_checks, fingerprint_checks) = if input.generics.params.is_empty() {
        (quote!(const _: () = { #checks };), TokenStream::new())
    } else {
        (TokenStream::new(), checks)
    };

    let fingerprint_fields = input.fields.iter().map(|f| {
        let (name, ty) = (&f.name, f.ty);
        let len = name.len() as u64;
        quote! {
            let h = #private::extend_u64(h, #len);
            let h = #private::extend(h, #name.as_bytes());
            let h = #private::extend_u64(h, <#ty as #krate::Shareable>::FINGERPRINT);
        }
    });

    // SAFETY (of the emitted `unsafe impl`), one `Shareable` obligation at a time:
    // - every bit pattern of the non-padding bytes is valid, no pointers, references or
    //   process-local resources: `check::check_type` rejects references, pointers, `bool` and
    //   `char` by syntax, and `__shmproc_assert_fields` requires every field type to be
    //   `Shareable` (so, inductively, to satisfy this too); the struct's bytes are its fields'
    //   bytes plus padding;
    // - stable layout: `check::check_repr` requires `repr(C)` or `repr(transparent)` and
    //   rejects `repr(packed)`; `layout_checks` asserts at compile time that every field sits
    //   at the `repr(C)` offset;
    // - no `Drop`: `layout_checks` asserts `!needs_drop::<Self>()`, which also catches a
    //   `Drop` impl on the struct itself;
    // - `FINGERPRINT` covers the name, size and alignment and every field's name and
    //   fingerprint (hence, through `repr(C)`, every offset); `PADDING_FREE` is true only if
    //   the fields' sizes add up to the struct's size and every field is padding-free.
    // `lib::derive` emits this only when `check::check` found no error.
    quote! {
        #[allow(
            dead_code,
            non_camel_case_types,
            non_snake_case,
            unsafe_code,
            unused_qualifications,
            clippy::all,
            clippy::pedantic,
        )]
        const _: () = {
            fn __shmproc_assert_shareable<__ShmprocT: #krate::Shareable>() {}

            fn __shmproc_assert_fields #impl_generics () #where_clause {
                #(#assert_fields)*
            }

            #eager_checks

            #[automatically_derived]
            unsafe impl #impl_generics #krate::Shareable for #self_ty #where_clause {
                const FINGERPRINT: u64 = {
                    #fingerprint_checks
                    let h = #private::start(
                        #type_name,
                        #core::mem::size_of::<Self>(),
                        #core::mem::align_of::<Self>(),
                    );
                    #(#fingerprint_fields)*
                    h
                };
                const TYPE_NAME: &'static str = #type_name;
                const PADDING_FREE: bool = #core::mem::size_of::<Self>()
                    == 0usize #(+ #core::mem::size_of::<#tys>())*
                    #(&& <#tys as #krate::Shareable>::PADDING_FREE)*;
            }
        };
    }
}

/// Compile-time assertions on `self_ty`: it needs no `Drop`, and its fields sit where
/// `repr(C)` puts them (for `repr(transparent)`: its size is its fields' sizes).
fn layout_checks(
    input: &Input<'_>,
    core: &TokenStream,
    self_ty: &TokenStream,
    type_name: &str,
) -> TokenStream {
    let no_drop_msg = format!(
        "`{type_name}` needs `Drop`, but values in shared memory are never dropped in place: \
         remove its `Drop` impl"
    );
    let no_drop = quote_spanned! {input.ident.span()=>
        #core::assert!(!#core::mem::needs_drop::<#self_ty>(), #no_drop_msg);
    };

    let placement = if input.repr.c.is_some() {
        let mut prev: Option<&Field<'_>> = None;
        let mut out = TokenStream::new();
        for field in &input.fields {
            let member = &field.member;
            let ty = field.ty;
            let msg = format!(
                "field `{}` of `{type_name}` is not at its `#[repr(C)]` offset",
                field.name
            );
            let expected = match prev {
                None => quote!(0usize),
                Some(p) => {
                    let (pm, pty) = (&p.member, p.ty);
                    quote! {
                        (#core::mem::offset_of!(#self_ty, #pm) + #core::mem::size_of::<#pty>())
                            .next_multiple_of(#core::mem::align_of::<#ty>())
                    }
                }
            };
            let span = field.original.span();
            out.extend(quote_spanned! {span=>
                #core::assert!(#core::mem::offset_of!(#self_ty, #member) == #expected, #msg);
            });
            prev = Some(field);
        }
        out
    } else {
        let tys = input.fields.iter().map(|f| f.ty);
        let msg = format!("`{type_name}` is larger than its fields");
        quote! {
            #core::assert!(
                #core::mem::size_of::<#self_ty>() == 0usize #(+ #core::mem::size_of::<#tys>())*,
                #msg
            );
        }
    };
    quote!(#no_drop #placement)
}
