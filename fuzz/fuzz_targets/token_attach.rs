#![no_main]
//! Fuzz target `token_attach`: the body is `shmproc::fuzzing::token_attach`, also replayed on stable by
//! `tests/tests/fuzz_replay.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shmproc::fuzzing::token_attach(data));
