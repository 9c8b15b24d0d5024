//! The macros' output compiles without the prelude and with shmproc renamed: it names
//! nothing but the `crate =` path (zerocopy's `zerocopy-derive/tests/hygiene.rs`).

#![no_implicit_prelude]
#![deny(unsafe_code)]
// The workspace's loom rule is for the library; this test needs a real atomic field.
#![allow(clippy::disallowed_types)]

use ::renamed_shmproc::Shareable;
use ::renamed_shmproc::SharedStruct;

#[derive(SharedStruct)]
#[shmproc(crate = "::renamed_shmproc")]
#[repr(C)]
struct Inner {
    a: u16,
    b: ::core::sync::atomic::AtomicU32,
}

#[derive(SharedStruct)]
#[shmproc(crate = "::renamed_shmproc")]
#[repr(C, align(16))]
struct Outer {
    inner: Inner,
    r#type: [::core::primitive::u64; 3],
}

#[derive(SharedStruct)]
#[shmproc(crate = "::renamed_shmproc")]
#[repr(C)]
struct Tuple(u32, [i8; 4]);

#[derive(SharedStruct)]
#[shmproc(crate = "::renamed_shmproc")]
#[repr(transparent)]
struct Wrapper<T>(T);

#[derive(SharedStruct)]
#[shmproc(crate = "::renamed_shmproc")]
#[repr(C)]
struct Unit;

// serde's derive does not withstand the shadowed names below, so the type is declared out of
// their reach; the managed impl block is in their scope.
mod data {
    #[derive(::serde::Serialize, ::serde::Deserialize)]
    pub(crate) struct Tally {
        pub(crate) n: u64,
    }
}
use data::Tally;

#[::renamed_shmproc::managed(crate = "::renamed_shmproc")]
impl Tally {
    pub(crate) fn add(
        &mut self,
        by: ::core::primitive::u64,
        why: &::core::primitive::str,
    ) -> ::core::result::Result<::core::primitive::u64, ::std::string::String> {
        if why.is_empty() {
            return ::core::result::Result::Err(::std::string::ToString::to_string("no reason"));
        }
        self.n += by;
        ::core::result::Result::Ok(self.n)
    }

    pub(crate) fn get(&self) -> &::core::primitive::u64 {
        &self.n
    }
}

// Names the generated code must not capture.
#[allow(dead_code)]
struct Option;
#[allow(dead_code)]
struct Some;
#[allow(non_camel_case_types, dead_code)]
struct usize;
#[allow(non_camel_case_types, dead_code)]
struct u64;
#[allow(non_camel_case_types, dead_code)]
struct bool;
#[allow(non_camel_case_types, dead_code)]
struct str;
#[allow(dead_code)]
fn size_of() {}
#[allow(dead_code)]
struct Result;
#[allow(dead_code)]
struct Ok;
#[allow(dead_code)]
struct Err;
#[allow(dead_code)]
struct Vec;
#[allow(dead_code)]
struct String;
#[allow(dead_code)]
struct Clone;
#[allow(non_camel_case_types, dead_code)]
struct u8;

#[::core::prelude::v1::test]
fn derives_compile_without_prelude_and_with_a_renamed_crate() {
    ::core::assert_eq!(<Outer as Shareable>::TYPE_NAME, "Outer");
    const { ::core::assert!(!<Inner as Shareable>::PADDING_FREE) };
    const { ::core::assert!(!<Outer as Shareable>::PADDING_FREE) };
    const { ::core::assert!(<Tuple as Shareable>::PADDING_FREE) };
    const { ::core::assert!(<Unit as Shareable>::PADDING_FREE) };
    const { ::core::assert!(<Wrapper<::core::primitive::u64> as Shareable>::PADDING_FREE) };
    ::core::assert_ne!(
        <Wrapper<::core::primitive::u64> as Shareable>::FINGERPRINT,
        <Wrapper<i64> as Shareable>::FINGERPRINT
    );
    ::core::assert_ne!(
        <Inner as Shareable>::FINGERPRINT,
        <Outer as Shareable>::FINGERPRINT
    );
}

#[::core::prelude::v1::test]
fn managed_compiles_without_prelude_and_with_a_renamed_crate() {
    use ::renamed_shmproc::manager::Managed;
    ::core::assert_eq!(<Tally as Managed>::TYPE_NAME, "Tally");
    // A server in this process: this test binary may be built without the `test-support`
    // feature, whose constructor a server child started from the test harness would need.
    let address =
        ::renamed_shmproc::connection::Address::Abstract(::std::string::String::into_bytes(
            ::std::format!("shmproc-hygiene-{}", ::std::process::id()),
        ));
    let manager = ::renamed_shmproc::Manager::builder()
        .register::<Tally>()
        .serve(address, b"hygiene")
        .unwrap();
    let tally: TallyProxy = manager.create(Tally { n: 1 }).unwrap();
    let copy = ::core::clone::Clone::clone(&tally);
    ::core::assert_eq!(copy.add(2, "x").ok(), ::core::option::Option::Some(3));
    let err = tally.add(2, "").err().unwrap();
    ::core::assert_eq!(
        err.remote_error::<::std::string::String>().as_deref(),
        ::core::option::Option::Some("no reason")
    );
    ::core::assert_eq!(tally.get().ok(), ::core::option::Option::Some(3));
    manager.shutdown().unwrap();
}
