//! Mutual HMAC-SHA256 challenge-response, run on every authenticated socket connection before
//! a single application byte is decoded (CPython's `deliver_challenge`/`answer_challenge`).
//!
//! ```text
//! server → client   "#CHALLENGE#{sha256}" ‖ 32 random bytes
//! client → server   HMAC-SHA256(key, that whole message)
//! server → client   "#WELCOME#"  or  "#FAILURE#" (then both sides fail with AuthFailed)
//! … and the same again with the roles swapped, so each side proves it knows the key.
//! ```
//!
//! Every handshake message is a frame of at most [`HANDSHAKE_CAP`] bytes: an HTTP request or
//! random bytes fail on the length prefix, before anything is allocated. The digest is compared
//! in constant time (`Mac::verify_slice`).

use super::socket::Stream;
use crate::error::{Error, Result};
use crate::sys;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The largest handshake frame.
pub(crate) const HANDSHAKE_CAP: u64 = 256;
/// Random bytes in a challenge.
pub(crate) const NONCE_LEN: usize = 32;
const CHALLENGE: &[u8] = b"#CHALLENGE#{sha256}";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";

fn mac(key: &[u8]) -> Result<Hmac<Sha256>> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).map_err(|_| Error::AuthFailed)
}

/// Checks that `frame` is a challenge: the prefix and exactly [`NONCE_LEN`] bytes after it.
pub(crate) fn parse_challenge(frame: &[u8]) -> Result<&[u8]> {
    match frame.strip_prefix(CHALLENGE) {
        Some(nonce) if nonce.len() == NONCE_LEN => Ok(nonce),
        _ => Err(Error::AuthFailed),
    }
}

/// Checks that `frame` is the welcome message.
pub(crate) fn parse_welcome(frame: &[u8]) -> Result<()> {
    if frame == WELCOME {
        Ok(())
    } else {
        Err(Error::AuthFailed)
    }
}

fn deliver(stream: &Stream, key: &[u8]) -> Result<()> {
    let mut msg = CHALLENGE.to_vec();
    for _ in 0..NONCE_LEN / 8 {
        msg.extend_from_slice(&sys::random_u64().to_ne_bytes());
    }
    stream.write_frame(&msg)?;
    let answer = stream.read_frame(HANDSHAKE_CAP)?;
    let mut m = mac(key)?;
    m.update(&msg);
    if m.verify_slice(&answer).is_ok() {
        stream.write_frame(WELCOME)
    } else {
        // Best effort: the peer learns it failed; we fail either way.
        let _ = stream.write_frame(FAILURE);
        Err(Error::AuthFailed)
    }
}

fn answer(stream: &Stream, key: &[u8]) -> Result<()> {
    let msg = stream.read_frame(HANDSHAKE_CAP)?;
    parse_challenge(&msg)?;
    let mut m = mac(key)?;
    m.update(&msg);
    stream.write_frame(&m.finalize().into_bytes())?;
    parse_welcome(&stream.read_frame(HANDSHAKE_CAP)?)
}

/// An oversized handshake frame is a failed handshake, not a large message.
fn as_auth(e: Error) -> Error {
    match e {
        Error::MessageTooLarge { .. } => Error::AuthFailed,
        e => e,
    }
}

/// The listener's side: challenge first, then answer.
pub(crate) fn server(stream: &Stream, key: &[u8]) -> Result<()> {
    deliver(stream, key)
        .and_then(|()| answer(stream, key))
        .map_err(as_auth)
}

/// The client's side: answer first, then challenge.
pub(crate) fn client(stream: &Stream, key: &[u8]) -> Result<()> {
    answer(stream, key)
        .and_then(|()| deliver(stream, key))
        .map_err(as_auth)
}
