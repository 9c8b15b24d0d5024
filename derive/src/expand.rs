//! Code generation for a checked input.
//!
//! Everything is emitted inside `const _: () = { ... };`, so no helper name leaks into the
//! caller's module, and reaches shmproc only through the `crate` path (default `::shmproc`):
//! the trait as `<path>::Shareable`, everything else through `<path>::__private`, including
//! `core`, so the output also compiles under `#![no_implicit_prelude]`.

use crate::ast::{Field, Input};
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::LitStr;
use syn::ext::IdentExt;
use syn::spanned::Spanned;

/// Generates the `Shareable` impl and its compile-time checks.
pub(crate) fn expand(input: &Input<'_>) -> TokenStream {
    let krate = &input.options.krate;
    let private = quote!(#krate::__private);
    // Bound once by a `use` in the block, so tokens spanned on the user's code can name it
    // (see `layout_checks`).
    let core = quote!(__shmproc_core);
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

    // Everything the impl needs to know about a field comes from one call,
    // `__shmproc_field::<Ty>()`, spanned on the field's type: an unshareable field is
    // reported there ("`Vec<u8>` cannot be placed in shared memory"), and since every use is
    // the same call with the same spans, rustc reports it once, not once per use.
    let field_info: Vec<TokenStream> = input
        .fields
        .iter()
        .map(|f| {
            let ty = f.ty;
            quote_spanned!(ty.span()=> __shmproc_field::<#ty>())
        })
        .collect();

    let checks = layout_checks(input, &self_ty, &type_name);
    // A non-generic struct is checked where it is defined. A generic one can only be checked
    // once its parameters are known, so its checks run when `FINGERPRINT` is evaluated: at
    // code generation of every allocation and attach (so `cargo check` does not run them).
    let (eager_checks, fingerprint_checks) = if input.generics.params.is_empty() {
        (quote!(const _: () = { #checks };), TokenStream::new())
    } else {
        (TokenStream::new(), checks)
    };

    let fingerprint_fields = input.fields.iter().zip(&field_info).map(|(f, info)| {
        let name = &f.name;
        let len = name.len() as u64;
        quote! {
            let h = #private::extend_u64(h, #len);
            let h = #private::extend(h, #name.as_bytes());
            let h = #private::extend_u64(h, #info.fingerprint);
        }
    });

    // SAFETY (of the emitted `unsafe impl`), one `Shareable` obligation at a time:
    // - every bit pattern of the non-padding bytes is valid, no pointers, references or
    //   process-local resources: `check::check_type` rejects references, pointers, `bool` and
    //   `char` by syntax, and `__shmproc_assert_fields` (and every `__shmproc_field` call)
    //   requires each field type to be `Shareable`, so to satisfy this too; the struct's
    //   bytes are its fields' bytes plus padding;
    // - stable layout: `check::check_repr` requires `repr(C)` or `repr(transparent)` and
    //   rejects `repr(packed)`; `layout_checks` asserts at compile time that every field sits
    //   at its `repr(C)` offset;
    // - no `Drop`: `Shareable` fields need none, and `layout_checks` asserts at compile time
    //   that the struct itself has no `Drop` impl;
    // - `FINGERPRINT` covers the name, size and alignment and every field's name and
    //   fingerprint (hence, through `repr(C)`, every offset); `PADDING_FREE` is true only if
    //   the fields' sizes add up to the struct's size and every field is padding-free.
    // `lib::derive` emits this only when `check::check` found no error.
    // No `allow(unsafe_code)`: rustc does not apply `unsafe_code` to a derive's output, and an
    // `allow` would be an error in a crate that says `#![forbid(unsafe_code)]` (ui test
    // `pass/forbid_unsafe.rs`).
    quote! {
        #[allow(
            dead_code,
            non_camel_case_types,
            non_snake_case,
            unused_qualifications,
            clippy::all,
            clippy::pedantic,
        )]
        const _: () = {
            use #private::core as __shmproc_core;

            struct __ShmprocField {
                fingerprint: #core::primitive::u64,
                padding_free: #core::primitive::bool,
                size: #core::primitive::usize,
            }

            const fn __shmproc_field<__ShmprocT: #krate::Shareable>() -> __ShmprocField {
                __ShmprocField {
                    fingerprint: <__ShmprocT as #krate::Shareable>::FINGERPRINT,
                    padding_free: <__ShmprocT as #krate::Shareable>::PADDING_FREE,
                    size: #core::mem::size_of::<__ShmprocT>(),
                }
            }

            fn __shmproc_assert_fields #impl_generics () #where_clause {
                #(let _ = #field_info;)*
            }

            #eager_checks

            #[automatically_derived]
            unsafe impl #impl_generics #krate::Shareable for #self_ty #where_clause {
                const FINGERPRINT: #core::primitive::u64 = {
                    #fingerprint_checks
                    let h = #private::start(
                        #type_name,
                        #core::mem::size_of::<Self>(),
                        #core::mem::align_of::<Self>(),
                    );
                    #(#fingerprint_fields)*
                    h
                };
                const TYPE_NAME: &'static #core::primitive::str = #type_name;
                const PADDING_FREE: #core::primitive::bool = #core::mem::size_of::<Self>()
                    == 0usize #(+ #field_info.size)*
                    #(&& #field_info.padding_free)*;
            }
        };
    }
}

/// Compile-time assertions on `self_ty`: it has no `Drop` impl, and its fields sit where
/// `repr(C)` puts them (for `repr(transparent)`: its size is its fields' sizes).
///
/// Each assertion is spanned on the item it is about, so a failure points there. That is why
/// `__shmproc_core` is written out in each `quote_spanned!` rather than interpolated: an
/// interpolated path keeps its call-site span, and rustc would then report the derive.
fn layout_checks(input: &Input<'_>, self_ty: &TokenStream, type_name: &str) -> TokenStream {
    // `Shareable` fields never need `Drop` (a non-shareable one is already reported as such),
    // so if the struct does while none of its fields does, the struct implements `Drop`.
    let tys = input.fields.iter().map(|f| f.ty);
    let span = input.ident.span();
    let no_drop_msg = LitStr::new(
        &format!(
            "`{type_name}` implements `Drop`, but values in shared memory are never dropped in \
             place: remove the `Drop` impl"
        ),
        span,
    );
    let no_drop = quote_spanned! {span=>
        __shmproc_core::assert!(
            !__shmproc_core::mem::needs_drop::<#self_ty>()
                #(|| __shmproc_core::mem::needs_drop::<#tys>())*,
            #no_drop_msg
        );
    };

    let placement = if input.repr.c.is_some() {
        let mut prev: Option<&Field<'_>> = None;
        let mut out = TokenStream::new();
        for field in &input.fields {
            let member = &field.member;
            let ty = field.ty;
            let span = field
                .original
                .ident
                .as_ref()
                .map_or_else(|| ty.span(), |ident| ident.span());
            let msg = LitStr::new(
                &format!(
                    "field `{}` of `{type_name}` is not at its `#[repr(C)]` offset",
                    field.name
                ),
                span,
            );
            let expected = match prev {
                None => quote!(0usize),
                Some(p) => {
                    let (pm, pty) = (&p.member, p.ty);
                    quote! {
                        (__shmproc_core::mem::offset_of!(#self_ty, #pm)
                            + __shmproc_core::mem::size_of::<#pty>())
                        .next_multiple_of(__shmproc_core::mem::align_of::<#ty>())
                    }
                }
            };
            out.extend(quote_spanned! {span=>
                __shmproc_core::assert!(
                    __shmproc_core::mem::offset_of!(#self_ty, #member) == #expected,
                    #msg
                );
            });
            prev = Some(field);
        }
        out
    } else {
        let tys = input.fields.iter().map(|f| f.ty);
        let msg = LitStr::new(&format!("`{type_name}` is larger than its fields"), span);
        quote_spanned! {span=>
            __shmproc_core::assert!(
                __shmproc_core::mem::size_of::<#self_ty>()
                    == 0usize #(+ __shmproc_core::mem::size_of::<#tys>())*,
                #msg
            );
        }
    };
    quote!(#no_drop #placement)
}
