//! The derive's output compiles without the prelude and with shmproc renamed: it names
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
