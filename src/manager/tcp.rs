//! Request and reply frames over a manager's socket connections (TCP, and the Unix socket of
//! a connection that carries no pipe), with few system calls and bounded polling.
//!
//! A frame is the connections' own: an 8-byte little-endian length, then that many bytes
//! (see `connection::socket`). Each end keeps a read buffer per connection ([`Frames`]):
//! one `recv` takes whatever arrived (a frame's length and body together, and any frame
//! after it), frames are cut out of the buffer in place, and a frame's length is checked
//! against its cap before the buffer grows for it (it then grows only as bytes arrive, at
//! most doubling, so a peer that announces a large frame and stalls costs no more memory
//! than it sent). A frame is sent with one `sendmsg` of its length and body.
//!
//! # Waiting
//! A read that finds nothing first polls the socket for a bounded, adaptive window of
//! `recv(MSG_DONTWAIT)` rounds (one system call each, no sleep), then sleeps: a client in
//! `recv` itself, a server in `poll` slices (to notice that it stops) and within
//! [`HANDSHAKE_TIMEOUT`] of the last byte of a frame that started (a stalled frame ends the
//! connection). See "Waiting" in the manager's module docs for the windows and their cost.

use crate::connection::{Connection, HANDSHAKE_TIMEOUT, io_error};
use crate::error::{Error, Result};
use crate::sys;
use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Bytes of a frame's length prefix.
const PREFIX: usize = 8;

/// The read buffer's first size, and the largest one kept after a large frame.
const KEEP: usize = 16 << 10;

/// How often a server's sleep on an idle connection wakes to see whether the server stops.
const SLICE: Duration = Duration::from_millis(200);

/// Sends one frame holding `payload` with one `sendmsg` (more only if the socket's buffer
/// takes part of it), waiting for room as the socket's send timeout allows.
///
/// # Errors
/// [`Error::Disconnected`] if the peer is gone; [`Error::Timeout`] past the send timeout.
pub(crate) fn send_frame(conn: &Connection, payload: &[u8]) -> Result<()> {
    let ready = conn.readiness()?;
    let fd = ready.as_fd();
    let prefix = (payload.len() as u64).to_le_bytes();
    let mut sent = 0usize;
    let total = PREFIX.saturating_add(payload.len());
    while sent < total {
        let (head, body) = match prefix.get(sent..) {
            Some(rest) if !rest.is_empty() => (rest, payload),
            _ => (
                &[][..],
                payload
                    .get(sent.saturating_sub(PREFIX)..)
                    .unwrap_or_default(),
            ),
        };
        let n = sys::send_parts(fd, &[head, body]).map_err(|e| io_error("sendmsg", e))?;
        if n == 0 {
            return Err(Error::Disconnected);
        }
        sent = sent.saturating_add(n);
    }
    Ok(())
}

/// A bounded, adaptive poll window: how many `recv(MSG_DONTWAIT)` rounds an end tries
/// before it sleeps. A message within the window grows it by a quarter (at most `max`), a
/// window that runs out halves it (at least `min`), and after a run of windows that ran out
/// ([`PROBE_AFTER`] at first) the next one is a full one, a probe. A probe that runs out
/// too doubles the run before the next (up to [`PROBE_AFTER_MAX`]); a message within any
/// window sets it back (see "Waiting" in the manager's module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    rounds: u32,
    min: u32,
    max: u32,
    misses: u32,
    /// Windows in a row that run out before the next probe.
    probe_after: u32,
    /// Whether the current window is a probe.
    probing: bool,
}

/// Windows in a row that ran out before the first probe.
const PROBE_AFTER: u32 = 64;

/// The longest run of windows between probes: when the two ends share a core, a window
/// only delays the peer and no probe ever pays off.
const PROBE_AFTER_MAX: u32 = 1024;

impl Window {
    /// A client waiting for its reply: a polling server on another core answers a call in
    /// ~5–10 µs over loopback, one asleep in `poll` after its wake-up (tens of µs); 2 to 400
    /// rounds (a round is ~0.2 µs on a free core, ~0.5 µs on a busy one).
    pub(crate) const REPLY: Window = Window {
        rounds: 100,
        min: 2,
        max: 400,
        misses: 0,
        probe_after: PROBE_AFTER,
        probing: false,
    };

    /// A server's connection thread waiting for the next request after a reply: a client
    /// calling in a loop on another core sends it within ~5 µs, one asleep in `recv` after
    /// its wake-up; 2 to 300 rounds.
    pub(crate) const REQUEST: Window = Window {
        rounds: 50,
        min: 2,
        max: 300,
        misses: 0,
        probe_after: PROBE_AFTER,
        probing: false,
    };

    fn hit(&mut self) {
        let r = self.rounds;
        self.rounds = r.saturating_add(r / 4 + 1).min(self.max);
        self.misses = 0;
        self.probe_after = PROBE_AFTER;
        self.probing = false;
    }

    fn miss(&mut self) {
        if self.probing {
            self.probing = false;
            self.probe_after = self.probe_after.saturating_mul(2).min(PROBE_AFTER_MAX);
        }
        self.misses = self.misses.saturating_add(1);
        if self.misses >= self.probe_after {
            self.misses = 0;
            self.probing = true;
            self.rounds = self.max;
        } else {
            self.rounds = (self.rounds / 2).max(self.min);
        }
    }
}

/// How a read that found nothing sleeps.
pub(crate) enum Sleep<'a> {
    /// In `recv` itself, as long as the socket's receive timeout allows (a client).
    InRecv,
    /// In `poll` slices, ending with [`Error::Closed`] once `stop` says so, and with
    /// [`Error::Timeout`] when a frame that started stalls for [`HANDSHAKE_TIMEOUT`] (a
    /// server).
    Poll { stop: &'a dyn Fn() -> bool },
}

/// One socket connection's read side: a buffer of received bytes, cut into frames in place.
#[derive(Debug)]
pub(crate) struct Frames {
    buf: Vec<u8>,
    /// The unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    window: Window,
}

impl Frames {
    pub(crate) fn new(window: Window) -> Frames {
        Frames {
            buf: Vec::new(),
            start: 0,
            end: 0,
            window,
        }
    }

    /// The length of the frame at the buffer's start, once its prefix is there.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] for a length over `cap`.
    fn next_len(&self, cap: usize) -> Result<Option<usize>> {
        let Some(p) = self
            .buf
            .get(self.start..self.end)
            .and_then(|b| b.first_chunk::<PREFIX>())
        else {
            return Ok(None);
        };
        let len = u64::from_le_bytes(*p);
        match usize::try_from(len) {
            Ok(n) if n <= cap => Ok(Some(n)),
            _ => Err(Error::MessageTooLarge {
                size: len,
                limit: cap as u64,
            }),
        }
    }

    /// Makes room after the buffered bytes (for the rest of a frame of `len` bytes, or its
    /// length when `None`): when the buffer is full, moves what is buffered to its front or
    /// grows it, at most twofold and never past that frame (so memory grows only with bytes
    /// received).
    fn make_room(&mut self, len: Option<usize>) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end < self.buf.len() {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end < self.buf.len() {
                return;
            }
        }
        // Full from its start with a frame not yet whole: the frame needs more than `end`.
        let need = len.map_or(PREFIX, |l| l.saturating_add(PREFIX));
        let grown = self.buf.len().saturating_mul(2).min(need).max(KEEP);
        self.buf.resize(grown.max(self.end.saturating_add(1)), 0);
    }

    /// One read of what arrived into the free room: `Ok(true)` if bytes came, `Ok(false)` if
    /// none were there (`now`) or the receive timeout passed.
    ///
    /// # Errors
    /// [`Error::Disconnected`] at end of stream or when the peer is gone.
    fn read(&mut self, conn: &Connection, now: bool) -> Result<bool> {
        let ready = conn.readiness()?;
        let room = self.buf.get_mut(self.end..).unwrap_or_default();
        let r = if now {
            sys::recv_now(ready.as_fd(), room)
        } else {
            sys::recv_wait(ready.as_fd(), room)
        };
        match r {
            Ok(0) => Err(Error::Disconnected),
            Ok(n) => {
                self.end = self.end.saturating_add(n).min(self.buf.len());
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(io_error("recv", e)),
        }
    }

    /// Receives the next frame of at most `cap` bytes: from the buffer if it holds one whole,
    /// else reading (polling the window's rounds, then sleeping as `sleep` says).
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] for a frame over `cap` (its bytes are not received: the
    /// stream has lost its frame boundary, so the caller ends the connection);
    /// [`Error::Disconnected`] at end of stream; [`Error::Timeout`], [`Error::Closed`] as for
    /// [`Sleep`].
    pub(crate) fn recv(
        &mut self,
        conn: &Connection,
        cap: usize,
        sleep: &Sleep<'_>,
    ) -> Result<&[u8]> {
        if self.start == self.end && self.buf.len() > KEEP {
            // A large frame's buffer is not kept for the life of the connection.
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
        }
        let mut polled = false;
        let mut progress = Instant::now();
        loop {
            let len = self.next_len(cap)?;
            if let Some(l) = len
                && self.end.saturating_sub(self.start) >= l.saturating_add(PREFIX)
            {
                let from = self.start.saturating_add(PREFIX);
                let to = from.saturating_add(l);
                self.start = to;
                return Ok(self.buf.get(from..to).unwrap_or_default());
            }
            self.make_room(len);
            if self.read(conn, true)? {
                progress = Instant::now();
                continue;
            }
            if !polled {
                polled = true;
                if self.poll_window(conn)? {
                    progress = Instant::now();
                    continue;
                }
            }
            match sleep {
                Sleep::InRecv => {
                    if !self.read(conn, false)? {
                        return Err(Error::Timeout);
                    }
                    progress = Instant::now();
                }
                Sleep::Poll { stop } => {
                    if stop() {
                        return Err(Error::Closed);
                    }
                    let mut slice = SLICE;
                    if self.start != self.end {
                        // A frame started: it may stall only so long.
                        let left = HANDSHAKE_TIMEOUT.saturating_sub(progress.elapsed());
                        if left.is_zero() {
                            return Err(Error::Timeout);
                        }
                        slice = slice.min(left);
                    }
                    conn.poll(Some(slice))?;
                }
            }
        }
    }

    /// Polls the socket for the window's rounds; whether bytes came.
    fn poll_window(&mut self, conn: &Connection) -> Result<bool> {
        for _ in 0..self.window.rounds {
            if self.read(conn, true)? {
                self.window.hit();
                return Ok(true);
            }
        }
        self.window.miss();
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{Address, Client, Listener};
    use std::net::SocketAddr;

    /// A connected pair of TCP connections on loopback: `(reader, writer)`.
    fn tcp_pair() -> (Connection, Connection) {
        let l = Listener::bind_unauthenticated(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let Address::Tcp(addr) = l.address().clone() else {
            panic!("not a TCP listener");
        };
        let writer = Client::connect(addr, None).unwrap();
        (l.accept().unwrap(), writer)
    }

    /// Writes raw bytes (any piece of any frame) to `conn`'s socket.
    fn write_raw(conn: &Connection, bytes: &[u8]) {
        let ready = conn.readiness().unwrap();
        let mut done = 0;
        while done < bytes.len() {
            done += sys::send_parts(ready.as_fd(), &[&bytes[done..]]).unwrap();
        }
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    /// A window halves to its floor on misses, probes with a full window after a run of
    /// them; a probe that misses doubles the run before the next (to a bound), a hit sets
    /// it back and grows the window.
    #[test]
    fn windows_adapt_and_probes_back_off() {
        let mut w = Window::REPLY;
        let misses_to_probe = |w: &mut Window| {
            let mut n = 0;
            loop {
                w.miss();
                n += 1;
                if w.probing {
                    return n;
                }
                assert!(n <= PROBE_AFTER_MAX, "no probe");
            }
        };
        w.miss();
        assert_eq!(w.rounds, Window::REPLY.rounds / 2);
        let first = 1 + misses_to_probe(&mut w);
        assert_eq!((first, w.rounds), (PROBE_AFTER, w.max));
        assert_eq!(misses_to_probe(&mut w), 2 * PROBE_AFTER);
        assert_eq!(w.rounds, w.max);
        for _ in 0..8 {
            misses_to_probe(&mut w);
        }
        assert_eq!(misses_to_probe(&mut w), PROBE_AFTER_MAX);
        w.miss();
        assert_eq!(w.rounds, w.max / 2);
        w.hit();
        assert!(w.rounds > w.max / 2);
        assert_eq!(misses_to_probe(&mut w), PROBE_AFTER);
    }

    /// A frame whose length and body arrive in pieces, split inside the length prefix and
    /// inside the body, is received whole; so is one larger than the buffer's first size,
    /// whose buffer is let go after it.
    #[test]
    fn a_frame_split_across_reads_is_reassembled() {
        let (r, w) = tcp_pair();
        let body: Vec<u8> = (0..100u8).collect();
        let big: Vec<u8> = (0..(3 * KEEP + 5)).map(|i| (i % 251) as u8).collect();
        let (f1, f2) = (frame(&body), frame(&big));
        let writer = std::thread::spawn(move || {
            for piece in [&f1[..3], &f1[3..10], &f1[10..]] {
                write_raw(&w, piece);
                std::thread::sleep(Duration::from_millis(20));
            }
            for piece in f2.chunks(5000) {
                write_raw(&w, piece);
                std::thread::sleep(Duration::from_millis(2));
            }
            w
        });
        let mut frames = Frames::new(Window::REPLY);
        assert_eq!(frames.recv(&r, 1 << 20, &Sleep::InRecv).unwrap(), &body[..]);
        assert_eq!(frames.recv(&r, 1 << 20, &Sleep::InRecv).unwrap(), &big[..]);
        assert!(
            frames.buf.len() > KEEP,
            "the large frame did not grow the buffer"
        );
        let w = writer.join().unwrap();
        w.send_bytes(b"after").unwrap();
        assert_eq!(frames.recv(&r, 1 << 20, &Sleep::InRecv).unwrap(), b"after");
        assert!(
            frames.buf.len() <= KEEP,
            "the large frame's buffer was kept"
        );
    }

    /// Frames that arrive in one read are all received, in order, each once; the end of the
    /// stream after them is `Disconnected`.
    #[test]
    fn frames_arriving_together_are_received_in_order() {
        let (r, w) = tcp_pair();
        let mut all = Vec::new();
        for body in [&b"one"[..], b"", b"three"] {
            all.extend(frame(body));
        }
        write_raw(&w, &all);
        drop(w);
        let mut frames = Frames::new(Window::REQUEST);
        let stop = || false;
        let sleep = Sleep::Poll { stop: &stop };
        assert_eq!(frames.recv(&r, 64, &sleep).unwrap(), b"one");
        assert_eq!(frames.recv(&r, 64, &sleep).unwrap(), b"");
        assert_eq!(frames.recv(&r, 64, &sleep).unwrap(), b"three");
        assert!(matches!(
            frames.recv(&r, 64, &sleep),
            Err(Error::Disconnected)
        ));
    }

    /// A length over the cap is refused as soon as its prefix is there, before the buffer
    /// grows for it; the frame before it is received first.
    #[test]
    fn a_length_over_the_cap_is_refused_before_its_bytes() {
        let (r, w) = tcp_pair();
        let mut bytes = frame(b"ok");
        bytes.extend(1000u64.to_le_bytes());
        bytes.extend([7u8; 200]);
        write_raw(&w, &bytes);
        let mut frames = Frames::new(Window::REPLY);
        assert_eq!(frames.recv(&r, 999, &Sleep::InRecv).unwrap(), b"ok");
        match frames.recv(&r, 999, &Sleep::InRecv) {
            Err(Error::MessageTooLarge { size, limit }) => assert_eq!((size, limit), (1000, 999)),
            other => panic!("an over-cap length gave {other:?}"),
        }
        assert!(frames.buf.len() <= KEEP);
        drop(w);
    }

    /// A server's read of a frame that started ends when the server stops (not only after a
    /// stalled frame's timeout), and an idle one too.
    #[test]
    fn a_server_read_ends_when_the_server_stops() {
        let (r, w) = tcp_pair();
        write_raw(&w, &[40, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
        let polls = std::cell::Cell::new(0);
        let stop = || {
            polls.set(polls.get() + 1);
            polls.get() > 2
        };
        let mut frames = Frames::new(Window::REQUEST);
        let sleep = Sleep::Poll { stop: &stop };
        assert!(matches!(frames.recv(&r, 64, &sleep), Err(Error::Closed)));
        let (r2, w2) = tcp_pair();
        let stopped = || true;
        let mut idle = Frames::new(Window::REQUEST);
        assert!(matches!(
            idle.recv(&r2, 64, &Sleep::Poll { stop: &stopped }),
            Err(Error::Closed)
        ));
        drop((w, w2));
    }

    /// A server's read of a frame that stalls ends after the stall timeout (the server
    /// still running); an idle connection's read does not.
    #[test]
    fn a_stalled_frame_ends_a_server_read() {
        let (r, w) = tcp_pair();
        write_raw(&w, &[40, 0, 0]);
        let stop = || false;
        let mut frames = Frames::new(Window::REQUEST);
        let start = Instant::now();
        assert!(matches!(
            frames.recv(&r, 64, &Sleep::Poll { stop: &stop }),
            Err(Error::Timeout)
        ));
        assert!(start.elapsed() >= HANDSHAKE_TIMEOUT);
        drop(w);
    }

    /// `send_frame` writes the connections' frame: the socket's own receive reads it, a large
    /// one included.
    #[test]
    fn sent_frames_are_the_connections_frames() {
        let (r, w) = tcp_pair();
        let big: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 253) as u8).collect();
        let big2 = big.clone();
        let writer = std::thread::spawn(move || {
            send_frame(&w, b"small").unwrap();
            send_frame(&w, &big2).unwrap();
            w
        });
        assert_eq!(r.recv_bytes().unwrap(), b"small");
        assert_eq!(r.recv_bytes().unwrap(), big);
        drop(writer.join().unwrap());
        // The peer is gone: a send fails with `Disconnected` (never a `SIGPIPE`) once the
        // kernel knows it.
        let failed = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(5));
            matches!(send_frame(&r, b"x"), Err(Error::Disconnected))
        });
        assert!(failed, "sends to a closed peer kept succeeding");
    }
}
