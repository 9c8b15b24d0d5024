#![no_main]
//! Fuzz target `segment_header`: the body is `shmproc::fuzzing::segment_header`, also replayed on stable by
//! `tests/tests/fuzz_replay.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shmproc::fuzzing::segment_header(data));
