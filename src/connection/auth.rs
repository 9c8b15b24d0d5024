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

use super::socket::{PREFIX, Stream, frame_len, io_error};
use crate::error::{Error, Result};
use crate::sys;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::io;

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

fn challenge() -> Vec<u8> {
    let mut msg = CHALLENGE.to_vec();
    for _ in 0..NONCE_LEN / 8 {
        msg.extend_from_slice(&sys::random_u64().to_ne_bytes());
    }
    msg
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u64).to_le_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

fn deliver(stream: &Stream, key: &[u8]) -> Result<()> {
    let msg = challenge();
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
    let e = match e {
        Error::MessageTooLarge { .. } => Error::AuthFailed,
        e => e,
    };
    if matches!(e, Error::AuthFailed) {
        crate::trace::event!(warn, "authentication handshake failed");
    }
    e
}

/// The client's side: answer first, then challenge.
pub(crate) fn client(stream: &Stream, key: &[u8]) -> Result<()> {
    answer(stream, key)
        .and_then(|()| deliver(stream, key))
        .map_err(as_auth)
}

/// What a [`ServerHandshake`] waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// The socket to become readable.
    Read,
    /// The socket to become writable.
    Write,
    /// Nothing: the peer is authenticated.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Our challenge is out; the peer's digest of it comes next.
    Answer,
    /// We welcomed the peer; its challenge comes next.
    Challenge,
    /// Our digest of its challenge is out; its welcome comes next.
    Welcome,
}

/// The listener's side of the handshake as a state machine over a non-blocking socket, so that
/// one thread can run many handshakes at once (see `Listener::accept`).
///
/// The messages are those of the module docs (the [`client`] run in reverse); each frame is read exactly, never past its end, so
/// bytes the client sends after the handshake stay in the socket for the connection.
#[derive(Debug)]
pub(crate) struct ServerHandshake {
    step: Step,
    /// Our challenge, kept to check the peer's digest.
    sent: Vec<u8>,
    out: Vec<u8>,
    out_at: usize,
    inbuf: Vec<u8>,
}

impl ServerHandshake {
    /// Starts a handshake: the challenge is queued for sending.
    pub(crate) fn new() -> ServerHandshake {
        let sent = challenge();
        ServerHandshake {
            step: Step::Answer,
            out: frame(&sent),
            sent,
            out_at: 0,
            inbuf: Vec::with_capacity(PREFIX),
        }
    }

    /// Moves the handshake as far as the socket allows without blocking.
    ///
    /// # Errors
    /// [`Error::AuthFailed`], [`Error::Disconnected`], [`Error::Io`].
    pub(crate) fn drive(&mut self, stream: &Stream, key: &[u8]) -> Result<Want> {
        self.drive_inner(stream, key).map_err(as_auth)
    }

    fn drive_inner(&mut self, stream: &Stream, key: &[u8]) -> Result<Want> {
        loop {
            if let Some(rest) = self.out.get(self.out_at..).filter(|r| !r.is_empty()) {
                match stream.try_write(rest) {
                    Ok(n) => self.out_at += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Want::Write),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_error("send", e)),
                }
                continue;
            }
            let Some(payload) = self.read_frame(stream)? else {
                return Ok(Want::Read);
            };
            match self.step {
                Step::Answer => {
                    let mut m = mac(key)?;
                    m.update(&self.sent);
                    if m.verify_slice(&payload).is_err() {
                        // Best effort: the peer learns it failed; we fail either way.
                        let _ = stream.try_write(&frame(FAILURE));
                        return Err(Error::AuthFailed);
                    }
                    self.out = frame(WELCOME);
                    self.step = Step::Challenge;
                }
                Step::Challenge => {
                    parse_challenge(&payload)?;
                    let mut m = mac(key)?;
                    m.update(&payload);
                    self.out = frame(&m.finalize().into_bytes());
                    self.step = Step::Welcome;
                }
                Step::Welcome => {
                    parse_welcome(&payload)?;
                    return Ok(Want::Done);
                }
            }
            self.out_at = 0;
        }
    }

    /// Reads toward the next whole frame; returns its payload once complete.
    fn read_frame(&mut self, stream: &Stream) -> Result<Option<Vec<u8>>> {
        loop {
            let need = match self.inbuf.first_chunk::<PREFIX>() {
                None => PREFIX,
                Some(p) => {
                    let len = frame_len(*p, HANDSHAKE_CAP)?;
                    PREFIX + usize::try_from(len).map_err(|_| Error::AuthFailed)?
                }
            };
            if self.inbuf.len() >= PREFIX && self.inbuf.len() == need {
                let payload = self.inbuf.split_off(PREFIX);
                self.inbuf.clear();
                return Ok(Some(payload));
            }
            let mut buf = [0u8; HANDSHAKE_CAP as usize];
            let want = need - self.inbuf.len();
            let chunk = buf.get_mut(..want).ok_or(Error::AuthFailed)?;
            match stream.try_read(chunk) {
                Ok(0) => return Err(Error::Disconnected),
                Ok(n) => self
                    .inbuf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error("recv", e)),
            }
        }
    }
}
