#![no_main]
//! Fuzz target `concurrent`: the body is `shmproc::fuzzing::concurrent::run_bytes`, also replayed on stable by
//! `tests/tests/fuzz_replay.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shmproc::fuzzing::concurrent::run_bytes(data));
