#![no_main]
//! Fuzz target `codec_decode`: the body is `shmproc::fuzzing::codec_decode`, also replayed on stable by
//! `tests/tests/fuzz_replay.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shmproc::fuzzing::codec_decode(data));
