//! `#[derive(SharedStruct)]` for shmproc: implements `shmproc::Shareable` for `#[repr(C)]`
//! structs whose fields are all shareable.

use proc_macro::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields, parse_macro_input};

/// Derives `shmproc::Shareable`. See the `shmproc` crate's documentation.
#[proc_macro_derive(SharedStruct, attributes(shmproc))]
pub fn derive_shared_struct(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let name = &input.ident;
    let Data::Struct(data) = &input.data else {
        return syn::Error::new_spanned(name, "SharedStruct can only be derived for structs")
            .to_compile_error()
            .into();
    };
    let fields: Vec<_> = match &data.fields {
        Fields::Named(f) => f.named.iter().collect(),
        Fields::Unnamed(f) => f.unnamed.iter().collect(),
        Fields::Unit => Vec::new(),
    };
    let tys: Vec<_> = fields.iter().map(|f| &f.ty).collect();
    let names: Vec<String> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| f.ident.as_ref().map_or(i.to_string(), ToString::to_string))
        .collect();
    let name_str = name.to_string();
    quote! {
        const _: () = {
            #[automatically_derived]
            unsafe impl ::shmproc::Shareable for #name {
                const FINGERPRINT: u64 = {
                    let h = ::shmproc::__private::start(#name_str,
                        ::core::mem::size_of::<#name>(), ::core::mem::align_of::<#name>());
                    #( let h = ::shmproc::__private::extend(h, #names.as_bytes());
                       let h = ::shmproc::__private::extend_u64(h, <#tys as ::shmproc::Shareable>::FINGERPRINT); )*
                    h
                };
                const TYPE_NAME: &'static str = #name_str;
                const PADDING_FREE: bool = ::core::mem::size_of::<#name>() == 0 #( + ::core::mem::size_of::<#tys>() )*;
            }
        };
    }
    .into()
}
