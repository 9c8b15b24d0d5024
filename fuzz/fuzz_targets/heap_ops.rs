#![no_main]
//! Fuzz target `heap_ops`: the body is `shmproc::fuzzing::heap_ops`, also replayed on stable by
//! `tests/tests/fuzz_replay.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shmproc::fuzzing::heap_ops(data));
