//! Compile-fail and pass cases for `#[derive(SharedStruct)]`.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p shmproc-derive --test
//! ui`, then read every changed `.stderr`: the message must say why, and the span must be on
//! the offending field or attribute.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
