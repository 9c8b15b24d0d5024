#![no_main]
//! Fuzz target `heap_corrupt`: the body is `shmproc::fuzzing::corrupt::heap_corrupt`, also
//! replayed on stable by `tests/tests/fuzz_replay.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shmproc::fuzzing::corrupt::heap_corrupt(data));
