//! Socket connections: length-prefixed frames over a Unix or TCP stream.
//!
//! A frame is an 8-byte little-endian length followed by that many bytes. A length over the
//! connection's cap is rejected with [`Error::MessageTooLarge`] before anything is allocated;
//! payloads are read in bounded chunks, so memory grows only with bytes actually received.
//!
//! On a Unix socket, a value whose handles need descriptors (see `crate::transfer`) travels as
//! a frame whose first byte carries them (`SCM_RIGHTS`) and whose payload is the envelope's
//! wire form (a header naming the segments, then the encoded value). Every prefix of a Unix
//! frame is read with `recvmsg`, so descriptors attached to it are kept with that frame and
//! closed if the frame is received as bytes or fails to decode.

use super::ring::Sink;
use crate::error::{Error, Result};
use crate::sys::{self, Deadline};
use crate::transfer::{self, Envelope};
use serde::de::DeserializeOwned;
use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Bytes of a frame's length prefix.
pub(crate) const PREFIX: usize = 8;
/// Prefix bit of a tag frame: not a message, but the description of the message frame that
/// follows it (debug builds' type tag; see `connection`'s module docs). Every receiver of
/// messages skips it; its length is at most `ring::MAX_TAG`.
const TAG_FRAME: u64 = 1 << 63;
const CHUNK: usize = 64 * 1024;

/// Decodes a frame's length prefix, checking it against `cap`.
///
/// # Errors
/// [`Error::MessageTooLarge`] past `cap`.
pub(crate) fn frame_len(prefix: [u8; PREFIX], cap: u64) -> Result<u64> {
    let len = u64::from_le_bytes(prefix);
    if len > cap {
        return Err(Error::MessageTooLarge {
            size: len,
            limit: cap,
        });
    }
    Ok(len)
}

/// Maps a stream error to the crate's error.
pub(crate) fn io_error(op: &'static str, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted => Error::Disconnected,
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout,
        _ => Error::io(op, e),
    }
}

/// A connected stream socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }

    pub(crate) fn set_timeout(&self, t: Option<Duration>) -> Result<()> {
        let r = match self {
            Stream::Unix(s) => s.set_read_timeout(t).and(s.set_write_timeout(t)),
            Stream::Tcp(s) => s.set_read_timeout(t).and(s.set_write_timeout(t)),
        };
        r.map_err(|e| Error::io("setsockopt", e))
    }

    /// Switches the socket between blocking and non-blocking mode.
    pub(crate) fn set_nonblocking(&self, on: bool) -> Result<()> {
        let r = match self {
            Stream::Unix(s) => s.set_nonblocking(on),
            Stream::Tcp(s) => s.set_nonblocking(on),
        };
        r.map_err(|e| Error::io("fcntl", e))
    }

    /// One `read`: what arrived (0 at end of stream), or `WouldBlock` in non-blocking mode.
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).read(buf),
            Stream::Tcp(s) => (&*s).read(buf),
        }
    }

    /// One `write`: how much was taken, or `WouldBlock` in non-blocking mode.
    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).write(buf),
            Stream::Tcp(s) => (&*s).write(buf),
        }
    }

    fn read_exact(&self, buf: &mut [u8]) -> Result<()> {
        let r = match self {
            Stream::Unix(s) => (&*s).read_exact(buf),
            Stream::Tcp(s) => (&*s).read_exact(buf),
        };
        r.map_err(|e| io_error("recv", e))
    }

    fn write_all(&self, buf: &[u8]) -> Result<()> {
        let r = match self {
            Stream::Unix(s) => (&*s).write_all(buf),
            Stream::Tcp(s) => (&*s).write_all(buf),
        };
        r.map_err(|e| io_error("send", e))
    }

    /// Writes one frame.
    pub(crate) fn write_frame(&self, payload: &[u8]) -> Result<()> {
        let prefix = (payload.len() as u64).to_le_bytes();
        if payload.len() <= CHUNK {
            let mut one = Vec::with_capacity(PREFIX + payload.len());
            one.extend_from_slice(&prefix);
            one.extend_from_slice(payload);
            self.write_all(&one)
        } else {
            self.write_all(&prefix)?;
            self.write_all(payload)
        }
    }

    fn read_prefix(&self, cap: u64) -> Result<u64> {
        let mut p = [0u8; PREFIX];
        self.read_exact(&mut p)?;
        frame_len(p, cap)
    }

    /// Reads a message frame's prefix with the descriptors attached to it (none on TCP),
    /// keeping the payload of a tag frame before it in `tag`.
    fn read_message_prefix(
        &self,
        cap: u64,
        tag: &mut Option<Box<[u8]>>,
    ) -> Result<(u64, Vec<OwnedFd>)> {
        loop {
            let (raw, fds) = self.read_prefix_with_fds(u64::MAX)?;
            if raw & TAG_FRAME == 0 {
                return Ok((frame_len(raw.to_le_bytes(), cap)?, fds));
            }
            let n = usize::try_from(raw & !TAG_FRAME).unwrap_or(usize::MAX);
            if n > super::ring::MAX_TAG {
                // Not a tag a sender makes: an oversized frame, refused as any other.
                return Err(Error::MessageTooLarge {
                    size: raw,
                    limit: cap,
                });
            }
            if !fds.is_empty() {
                return Err(Error::CorruptObject {
                    reason: "descriptors arrived with a tag frame",
                });
            }
            let mut t = vec![0u8; n];
            self.read_exact(&mut t)?;
            *tag = Some(t.into_boxed_slice());
        }
    }

    /// Writes a tag frame (see [`TAG_FRAME`]).
    fn write_tag_frame(&self, tag: &[u8]) -> Result<()> {
        let tag = tag.get(..super::ring::MAX_TAG).unwrap_or(tag);
        let mut frame = (tag.len() as u64 | TAG_FRAME).to_le_bytes().to_vec();
        frame.extend_from_slice(tag);
        self.write_all(&frame)
    }

    /// Reads a frame's prefix with the descriptors attached to it (none on TCP).
    fn read_prefix_with_fds(&self, cap: u64) -> Result<(u64, Vec<OwnedFd>)> {
        let Stream::Unix(s) = self else {
            return Ok((self.read_prefix(cap)?, Vec::new()));
        };
        let mut p = [0u8; PREFIX];
        let mut got = 0;
        let mut fds = Vec::new();
        while let Some(rest) = p.get_mut(got..).filter(|r| !r.is_empty()) {
            let (n, more) =
                sys::recv_with_fds(s.as_fd(), rest).map_err(|e| io_error("recvmsg", e))?;
            fds.extend(more);
            if n == 0 {
                return Err(Error::Disconnected);
            }
            got += n;
        }
        Ok((frame_len(p, cap)?, fds))
    }

    /// Writes one frame whose first byte carries `fds` (Unix sockets only).
    fn write_frame_with_fds(&self, payload: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        let Stream::Unix(s) = self else {
            return Err(Error::NoDescriptorChannel {
                channel: "a TCP socket",
                count: fds.len(),
            });
        };
        let prefix = (payload.len() as u64).to_le_bytes();
        let sent =
            sys::send_with_fds(s.as_fd(), &prefix, fds).map_err(|e| io_error("sendmsg", e))?;
        self.write_all(prefix.get(sent..).unwrap_or_default())?;
        self.write_all(payload)
    }

    fn read_payload(&self, len: u64, sink: &mut dyn Sink) -> Result<()> {
        let mut buf = vec![0u8; CHUNK.min(usize::try_from(len).unwrap_or(CHUNK))];
        let mut done = 0u64;
        while done < len {
            let n = usize::try_from(len - done).unwrap_or(CHUNK).min(buf.len());
            let chunk = buf.get_mut(..n).ok_or(Error::InvalidSize {
                reason: "frame chunk",
            })?;
            self.read_exact(chunk)?;
            sink.put(usize::try_from(done).unwrap_or(usize::MAX), chunk)?;
            done += n as u64;
        }
        Ok(())
    }

    /// Reads one frame of at most `cap` bytes into a `Vec`.
    pub(crate) fn read_frame(&self, cap: u64) -> Result<Vec<u8>> {
        let len = self.read_prefix(cap)?;
        let mut sink = VecCollect(Vec::new());
        self.read_payload(len, &mut sink)?;
        Ok(sink.0)
    }
}

struct VecCollect(Vec<u8>);

impl Sink for VecCollect {
    fn start(&mut self, _total: usize) -> Result<()> {
        Ok(())
    }
    fn put(&mut self, _offset: usize, bytes: &[u8]) -> Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// The socket side of a [`Connection`](super::Connection).
#[derive(Debug)]
pub(crate) struct SockConn {
    pub(crate) stream: Stream,
    /// Length of a frame whose prefix was read but whose payload was not (kept after
    /// `BufferTooSmall`).
    pending: Cell<Option<u64>>,
    /// Descriptors that arrived with the frame being received.
    pending_fds: RefCell<Vec<OwnedFd>>,
    /// The tag frame's payload that preceded the message being (or last) received.
    message_tag: RefCell<Option<Box<[u8]>>>,
    cap: u64,
}

impl SockConn {
    pub(crate) fn new(stream: Stream, cap: u64) -> SockConn {
        SockConn {
            stream,
            pending: Cell::new(None),
            pending_fds: RefCell::new(Vec::new()),
            message_tag: RefCell::new(None),
            cap,
        }
    }

    pub(crate) fn send(&self, payload: &[u8]) -> Result<()> {
        if payload.len() as u64 > self.cap {
            return Err(Error::MessageTooLarge {
                size: payload.len() as u64,
                limit: self.cap,
            });
        }
        self.stream.write_frame(payload)
    }

    /// Receives one frame into `sink`; the descriptors that arrived with it are closed.
    pub(crate) fn recv(&self, sink: &mut dyn Sink) -> Result<()> {
        let r = self.recv_keeping_fds(sink);
        if !matches!(r, Err(Error::BufferTooSmall { .. })) {
            drop(self.pending_fds.take());
        }
        r
    }

    /// Receives one frame into `sink`, leaving the descriptors that arrived with it in
    /// `pending_fds`.
    fn recv_keeping_fds(&self, sink: &mut dyn Sink) -> Result<()> {
        let len = match self.pending.take() {
            Some(l) => l,
            None => {
                drop(self.pending_fds.take());
                let mut tag = None;
                let (len, fds) = self.stream.read_message_prefix(self.cap, &mut tag)?;
                *self.pending_fds.borrow_mut() = fds;
                *self.message_tag.borrow_mut() = tag;
                len
            }
        };
        if let Err(e) = sink.start(usize::try_from(len).unwrap_or(usize::MAX)) {
            self.pending.set(Some(len));
            return Err(e);
        }
        self.stream.read_payload(len, sink)
    }

    /// Sends a sealed value: a plain frame when nothing but bytes must travel, else (Unix
    /// sockets) a frame carrying the segments' and handles' descriptors.
    ///
    /// `tag` (debug builds' type tag) goes in a tag frame just before the message frame, once
    /// the message passed every check, so it never describes another message.
    pub(crate) fn send_envelope(&self, env: &Envelope, tag: Option<&[u8]>) -> Result<()> {
        let plain = env.segments.is_empty() && env.fds.is_empty();
        if !plain && let Stream::Tcp(_) = self.stream {
            // Segments are not sent over TCP: the receiver maps them already (or by name) or
            // gets `SegmentNotTransferred`. Descriptors cannot travel at all.
            if env.needs_descriptors() {
                return Err(Error::NoDescriptorChannel {
                    channel: "a TCP socket",
                    count: env.fds.len(),
                });
            }
        }
        if plain || matches!(self.stream, Stream::Tcp(_)) {
            if env.bytes.len() as u64 > self.cap {
                return Err(Error::MessageTooLarge {
                    size: env.bytes.len() as u64,
                    limit: self.cap,
                });
            }
            if let Some(t) = tag {
                self.stream.write_tag_frame(t)?;
            }
            return self.stream.write_frame(&env.bytes);
        }
        let (payload, fds) = env.to_wire()?;
        if payload.len() as u64 > self.cap {
            return Err(Error::MessageTooLarge {
                size: payload.len() as u64,
                limit: self.cap,
            });
        }
        if let Some(t) = tag {
            self.stream.write_tag_frame(t)?;
        }
        self.stream.write_frame_with_fds(&payload, &fds)
    }

    /// Returns the tag frame's payload that preceded the message received last, if any.
    #[cfg_attr(not(debug_assertions), allow(dead_code))] // Debug builds check tags.
    pub(crate) fn take_message_tag(&self) -> Option<Box<[u8]>> {
        self.message_tag.take()
    }

    /// Receives a value sent with [`send_envelope`](SockConn::send_envelope), decoding it with
    /// exactly the descriptors that arrived with its frame, after `check` of its tag.
    pub(crate) fn recv_envelope<T: DeserializeOwned>(
        &self,
        check: impl FnOnce(&SockConn) -> Result<()>,
    ) -> Result<T> {
        let mut sink = VecCollect(Vec::new());
        let r = self.recv_keeping_fds(&mut sink);
        let fds = self.pending_fds.take();
        r?;
        check(self)?;
        if fds.is_empty() {
            transfer::open(&sink.0, transfer::Received::none())
        } else {
            transfer::open_wire(&sink.0, fds)
        }
    }

    pub(crate) fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        if self.pending.get().is_some() {
            return Ok(true);
        }
        let deadline = timeout.map(Deadline::after);
        loop {
            let ready = sys::poll_readable(&[self.stream.fd()], deadline.as_ref())
                .map_err(|e| Error::io("poll", e))?;
            if !ready.is_empty() {
                return Ok(true);
            }
            if deadline.as_ref().is_some_and(Deadline::has_passed) {
                return Ok(false);
            }
        }
    }

    pub(crate) fn has_pending(&self) -> bool {
        self.pending.get().is_some()
    }

    pub(crate) fn send_fd(&self, fd: BorrowedFd<'_>) -> Result<()> {
        match &self.stream {
            Stream::Unix(s) => sys::send_fd(s, fd).map_err(|e| io_error("sendmsg", e)),
            Stream::Tcp(_) => Err(Error::WrongDirection {
                needed: "a Unix socket",
            }),
        }
    }

    pub(crate) fn recv_fd(&self) -> Result<OwnedFd> {
        if self.has_pending() {
            return Err(Error::CorruptObject {
                reason: "a message is pending, not a descriptor",
            });
        }
        match &self.stream {
            Stream::Unix(s) => sys::recv_fd(s).map_err(|e| io_error("recvmsg", e)),
            Stream::Tcp(_) => Err(Error::WrongDirection {
                needed: "a Unix socket",
            }),
        }
    }
}
