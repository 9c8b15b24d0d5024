//! Fuzz target bodies for the socket frame and handshake decoders (and the codec behind them).
//! Not public API; `fuzz/fuzz_targets/connection_frame.rs` calls [`frame_and_handshake`], and a
//! stable test replays `fuzz/corpus/connection_frame/`.

use super::auth;
use super::socket::{PREFIX, frame_len};

/// Decodes arbitrary bytes as a frame prefix, a challenge, a welcome, and a codec message;
/// must return (with `Ok` or `Err`) and never panic, hang or allocate past the caps.
pub fn frame_and_handshake(data: &[u8]) {
    if let Some(prefix) = data.get(..PREFIX) {
        let mut p = [0u8; PREFIX];
        p.copy_from_slice(prefix);
        if let Ok(len) = frame_len(p, auth::HANDSHAKE_CAP) {
            assert!(len <= auth::HANDSHAKE_CAP);
        }
        let _ = frame_len(p, super::DEFAULT_MAX_MESSAGE);
        let body = data.get(PREFIX..).unwrap_or_default();
        let _ = auth::parse_challenge(body);
        let _ = auth::parse_welcome(body);
    }
    let _ = crate::codec::from_bytes::<(u64, String, Vec<u8>, Option<i32>)>(data);
    let _ = crate::codec::from_bytes::<Vec<Vec<u16>>>(data);
}
