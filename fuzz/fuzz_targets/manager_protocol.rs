#![no_main]
//! Fuzz target `manager_protocol`: the body is `shmproc::fuzzing::target("manager_protocol")`
//! (`shmproc::manager`'s protocol: greetings, requests served by an in-process server, replies),
//! also replayed on stable by `tests/tests/fuzz_replay.rs`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(body) = shmproc::fuzzing::target("manager_protocol") {
        body(data);
    }
});
