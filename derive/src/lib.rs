//! The macros of shmproc: `#[derive(SharedStruct)]` implements `shmproc::Shareable` for
//! `#[repr(C)]` structs whose fields are all shareable, so they can live in shared memory;
//! `#[shmproc::managed]` on an `impl` block makes a type's methods callable through a manager.
//!
//! Use them through `shmproc::SharedStruct` and `shmproc::managed`; the documentation of
//! [`SharedStruct`] and [`managed`] says what is accepted and rejected.
//!
//! The crate is laid out like thiserror's `impl`: `ast` reads the input into our model, `attr`
//! reads `#[repr]` and `#[shmproc]`, `check` rejects what the syntax already shows is wrong,
//! `expand` generates the impl; `ctxt` collects every error so they are reported together.
//! `managed/` has the same four modules for the attribute.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod ast;
mod attr;
mod check;
mod ctxt;
mod expand;
mod managed;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `shmproc::Shareable`, so the struct can be placed in `Value`, `Array`, `RawValue`
/// and `RawArray` and shared between processes.
///
/// ```
/// # extern crate renamed_shmproc as shmproc;
/// use shmproc::SharedStruct;
/// use std::sync::atomic::AtomicU32;
///
/// #[derive(SharedStruct)]
/// #[repr(C)]
/// struct Stats {
///     hits: AtomicU32,
///     bounds: [f64; 2],
/// }
/// ```
///
/// # Accepted
///
/// - Structs with named fields, tuple structs and unit structs marked `#[repr(C)]` (also
///   `#[repr(C, align(N))]`) or `#[repr(transparent)]`: their layout is fixed by the field
///   order, so every program built from the same source agrees on it.
/// - Fields of `Shareable` types only: integers, floats, atomic integers, arrays of shareable
///   types, and other `SharedStruct`s.
/// - Generic structs with type and const parameters. Each type parameter gets a
///   `T: Shareable` bound, and the struct's fingerprint includes the fingerprints of the field
///   types, so `Pair<u32>` and `Pair<i32>` never attach as each other. Lifetime parameters
///   are rejected. The `Drop` and layout assertions of a generic struct run when its
///   `FINGERPRINT` is evaluated for concrete parameters, which every allocation and attach
///   does during code generation (so `cargo build` reports them, `cargo check` does not);
///   those of a non-generic struct run where it is defined.
///
/// # Rejected, with a compile error at the offending item
///
/// - A struct without `#[repr(C)]` or `#[repr(transparent)]` (at the struct's name): the
///   default layout is unspecified and may change between compilations.
/// - `#[repr(packed)]` (at `packed`): it misaligns fields, and atomics and locks must be
///   aligned.
/// - Enums and unions: another process could write a discriminant that names no variant, and
///   a union's bytes do not say which field is valid.
/// - Lifetime parameters, reference, raw pointer and function pointer fields: addresses mean
///   nothing in another process.
/// - `bool` and `char` fields: not every bit pattern is a valid value; use `u8` and `u32`.
/// - Any other field type that is not `Shareable`, such as `Box`, `Vec`, `String`, `Rc`,
///   `Arc` or a tuple (at the field's type, as an unsatisfied `Shareable` bound).
/// - A struct that needs `Drop` (a compile-time assertion): values in shared memory are never
///   dropped in place.
///
/// When any of these is found, only the errors are emitted, never the `unsafe impl`.
///
/// # Generated items
///
/// Everything lives in `const _: () = { ... };`: the `unsafe impl Shareable` with
///
/// - `FINGERPRINT`: an FNV-1a hash of the struct's name, size and alignment, then of each
///   field's name and its type's `FINGERPRINT`; checked when a handle re-attaches, so a token
///   for one struct type is refused as another (`Error::TypeMismatch`);
/// - `TYPE_NAME`: the struct's name;
/// - `PADDING_FREE`: true when the field sizes add up to the struct's size and every field is
///   padding-free (required by `RawValue`/`RawArray`);
///
/// and compile-time assertions that every field is `Shareable`, that the struct does not need
/// `Drop`, and that each field is at its `repr(C)` offset.
///
/// # Options
///
/// `#[shmproc(crate = "path")]` names the path to the shmproc crate when it is not `::shmproc`
/// (a renamed dependency, or a crate that re-exports it). Generated code reaches shmproc only
/// through that path, so it also compiles under `#![no_implicit_prelude]`.
#[proc_macro_derive(SharedStruct, attributes(shmproc))]
pub fn derive_shared_struct(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Makes a type's methods callable through a manager: on an inherent `impl` block, implements
/// `shmproc::manager::Managed` for the type and generates its proxy, `<Type>Proxy`.
///
/// ```
/// # extern crate renamed_shmproc as shmproc;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Counter {
///     n: u64,
/// }
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Underflow {
///     short_by: u64,
/// }
///
/// impl std::fmt::Display for Underflow {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         write!(f, "short by {}", self.short_by)
///     }
/// }
///
/// #[shmproc::managed]
/// impl Counter {
///     /// Adds `by` and returns the new count.
///     pub fn add(&mut self, by: u64) -> u64 {
///         self.n += by;
///         self.n
///     }
///
///     pub fn sub(&mut self, by: u64) -> Result<u64, Underflow> {
///         let short_by = by.saturating_sub(self.n);
///         self.n = self.n.checked_sub(by).ok_or(Underflow { short_by })?;
///         Ok(self.n)
///     }
///
///     pub fn label(&self, prefix: &str) -> String {
///         format!("{prefix}{}", self.n)
///     }
///
///     // Not `pub`: stays local, no proxy method.
///     fn check(&self) -> bool {
///         self.n < 1_000
///     }
/// }
///
/// fn main() -> shmproc::Result<()> {
///     // The server is a child process running this program: `init` first.
///     shmproc::init();
///     let manager = shmproc::Manager::builder().register::<Counter>().start()?;
///     // The server holds the counter; the proxy calls its methods there.
///     let counter: CounterProxy = manager.create(Counter { n: 0 })?;
///     assert_eq!(counter.add(5)?, 5);
///     assert_eq!(counter.label("n = ")?, "n = 5");
///     let err = counter.sub(7).unwrap_err();
///     assert_eq!(err.remote_error::<Underflow>(), Some(Underflow { short_by: 2 }));
///     assert_eq!(counter.sub(2)?, 3);
///     manager.shutdown()
/// }
/// ```
///
/// # Managed methods
///
/// The methods with a `self` receiver and a `pub` visibility (`pub`, `pub(crate)`, …) are
/// managed; the proxy gets a method of the same name and visibility. Private methods and
/// associated functions without a receiver (constructors) stay as they are, local to the
/// process that owns the value. Each managed method:
///
/// - takes `&self` or `&mut self` (the server keeps the object; calls on one object run one
///   at a time);
/// - takes parameters whose types are serde. Borrowed parameters are accepted: `&str`,
///   `&[T]` and `&T` are sent as they are and decoded as `String`, `Vec<T>` and `T` in the
///   server, which passes the method a reference to them;
/// - returns `()`, a serde value (`&str`, `&[T]` and `&T` come back as `String`, `Vec<T>`
///   and `T`), or `Result<T, E>` with `E: Display + Serialize`, written as a path ending in
///   `Result` with two arguments (an alias such as `io::Result<T>` is taken as a plain value).
///
/// For `add(&mut self, by: u64) -> u64` the proxy has `add(&self, by: u64) ->
/// shmproc::Result<u64>`; for `Result<T, E>` it returns `shmproc::Result<T>`, and `Err(e)`
/// comes back as `shmproc::Error::Remote` of kind `RemoteErrorKind::Method` with `e`'s
/// `Display` text as the message and `e` itself decodable with `error.remote_error::<E>()`.
/// A method that panics in a server gives the caller `Error::Remote` of kind
/// `RemoteErrorKind::Panicked`. The method's doc comments, `#[cfg]`s and `#[deprecated]` are
/// copied to the proxy method.
///
/// # Rejected, with a compile error at the offending item
///
/// - A trait impl (`impl Trait for Counter`), an impl with generic parameters or a where
///   clause, and an impl of a type with generic arguments: the server decodes one concrete
///   type registered under one name.
/// - Among managed methods: type or const parameters (lifetimes are fine), `async` and
///   `unsafe` methods, `self` by value or `self: Box<Self>` (and other smart pointers),
///   `&mut` parameters and return types (writes would never reach the other side), a
///   reference inside a type (`Vec<&str>`, `Option<&T>`: nothing to borrow from on the other
///   side), `impl Trait`, trait objects, raw and function pointers, more than 16 parameters.
///   Make such a method private to keep it out of the proxy.
/// - Parameter, return and error types that are not serde: an unsatisfied `Serialize` or
///   `DeserializeOwned` bound (or `Display` for an error type), reported by rustc at the type.
///
/// # Calls carry data, never code
///
/// A call names the method by its name as a string and carries the codec encoding of the
/// argument tuple; the server matches the name against the methods this macro saw and decodes
/// the arguments as that method's parameter types. An unknown name is
/// `RemoteErrorKind::UnknownMethod` and arguments that do not decode are
/// `RemoteErrorKind::BadArguments`, to that caller only. Because names and encodings are all
/// that is checked, the proxy and the server must come from the same build of the type (one
/// program, or programs built from the same source): a method whose parameter types changed
/// may decode arguments of the old types.
///
/// # Options
///
/// - `#[shmproc::managed(name = "...")]`: the name the type is registered under, by default
///   its path as written in the `impl` (`"Counter"`). Two managed types of one manager need
///   distinct names.
/// - `#[shmproc::managed(crate = "path")]`: the path to the shmproc crate when it is not
///   `::shmproc`.
///
/// One `impl` block per type may carry the attribute (it implements `Managed` once).
///
/// # Generated items
///
/// After the block as written: `pub struct CounterProxy` (beside the type; `pub` because it
/// must be at least as visible as the type, which an attribute on the `impl` cannot see)
/// and, in `const _: () = { ... };`, `impl Managed for Counter` (`TYPE_NAME`, `type Proxy`,
/// `dispatch`), and for the proxy `ManagedProxy`, `Clone`, `Debug`, `Serialize`,
/// `Deserialize` (it travels as its remote object; decoding one whose type name is not this
/// type's fails) and its methods.
#[proc_macro_attribute]
pub fn managed(args: TokenStream, item: TokenStream) -> TokenStream {
    managed::managed(args.into(), item.into()).into()
}

/// Reads, checks and expands one input; on any error returns all of them and no impl.
fn derive(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let cx = ctxt::Ctxt::new();
    let parsed = ast::Input::from_syn(&cx, input);
    if let Some(parsed) = &parsed {
        check::check(&cx, parsed);
    }
    cx.check()?;
    match parsed {
        Some(parsed) => Ok(expand::expand(&parsed)),
        None => Err(syn::Error::new_spanned(
            &input.ident,
            "SharedStruct can only be derived for structs",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::derive;
    use syn::parse_quote;

    #[test]
    fn every_error_is_reported_and_no_impl_is_emitted() {
        let input = parse_quote! {
            #[shmproc(nope)]
            struct Bad<'a> {
                name: &'a str,
                done: bool,
                at: *const u8,
            }
        };
        let Err(errors) = derive(&input) else {
            panic!("expected errors");
        };
        // Unknown option, missing repr(C), lifetime, reference, bool, pointer.
        assert_eq!(errors.into_iter().count(), 6);
        let Err(errors) = derive(&input) else {
            panic!("expected errors");
        };
        let emitted = errors.into_compile_error().to_string();
        assert!(!emitted.contains("unsafe"), "{emitted}");
    }

    #[test]
    fn valid_struct_gets_one_unsafe_impl_inside_an_anonymous_const() {
        let input = parse_quote! {
            #[repr(C)]
            struct Good {
                x: u64,
                y: [f32; 2],
            }
        };
        let Ok(out) = derive(&input) else {
            panic!("expected an impl");
        };
        let out = out.to_string();
        assert!(out.starts_with("# [allow"), "{out}");
        assert!(out.contains("const _ : () ="), "{out}");
        assert_eq!(out.matches("unsafe impl").count(), 1, "{out}");
        assert!(out.contains(":: shmproc :: Shareable for Good"), "{out}");
    }

    #[test]
    fn crate_option_replaces_the_default_path() {
        let input = parse_quote! {
            #[repr(transparent)]
            #[shmproc(crate = "my::reexport")]
            struct Meters(f64);
        };
        let Ok(out) = derive(&input) else {
            panic!("expected an impl");
        };
        let out = out.to_string();
        assert!(
            out.contains("my :: reexport :: Shareable for Meters"),
            "{out}"
        );
        assert!(!out.contains(":: shmproc ::"), "{out}");
    }

    #[test]
    fn primitives_are_recognised_only_by_their_real_paths() {
        use crate::check::is_primitive;
        assert!(is_primitive(&parse_quote!(bool), "bool"));
        assert!(is_primitive(&parse_quote!(core::primitive::bool), "bool"));
        assert!(is_primitive(&parse_quote!(std::primitive::char), "char"));
        assert!(!is_primitive(&parse_quote!(my::bool), "bool"));
        assert!(!is_primitive(&parse_quote!(::bool), "bool"));
        assert!(!is_primitive(&parse_quote!(Wrapper<bool>), "bool"));
    }
}
