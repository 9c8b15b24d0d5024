//! [`Channel`]: a connection to a child process together with that process.

use crate::connection::{Connection, Waitable};
use crate::error::{Error, Result};
use crate::process::{JoinHandle, Process};
use crate::transfer::{self, Received};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

/// What [`Channel::peek`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peek {
    /// A message is ready.
    Message,
    /// The other side ended and every message was received; the child is reaped.
    Ended,
    /// Nothing yet.
    Nothing,
}

/// The process at the other end, seen from the side that created it.
enum Child {
    /// The child side of a channel (or a channel whose process was already reaped).
    None,
    /// Started by [`start`](super::start): its handle reports a panic.
    Started(JoinHandle<()>),
    /// Forked by [`create`](super::create).
    Forked(Process),
}

/// A communications channel between a process and a child it created with
/// [`start`](super::start) or [`create`](super::create) (pprocess's `Channel`).
///
/// Both sides [`send`](Channel::send) and [`receive`](Channel::receive) values (encoded with
/// [`codec`](crate::codec); shared objects inside travel as handles). On the creating side
/// the channel also owns the child: [`pid`](Channel::pid) is its pid, [`wait`](Channel::wait)
/// reaps it, and when the child ends, `receive` returns the messages it sent and then an
/// error saying how it ended: [`Error::ChildPanicked`] with the panic message,
/// [`Error::ChildFailed`] if it was killed or exited with a non-zero code without panicking,
/// or [`Error::Disconnected`] after a normal end. On the child's side `pid` is 0, as in
/// pprocess.
///
/// A channel is pollable: `Waitable::from(&channel)` joins it to
/// [`connection::wait`](crate::connection::wait) (ready when a message or the end of the
/// stream can be received), and on the creating side [`sentinel`](Channel::sentinel) gives the
/// child's pidfd, readable when the child ends. An [`Exchange`](super::Exchange) watches many.
pub struct Channel {
    conn: Connection,
    /// A message received ahead (by [`Channel::has_message`]), not yet decoded.
    peeked: Option<Vec<u8>>,
    child: Child,
    pid: i32,
    exitcode: Option<i32>,
    /// How the child ended, if that is an error not yet reported by `receive`.
    failure: Option<Error>,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("pid", &self.pid)
            .field("exitcode", &self.exitcode)
            .field("peeked", &self.peeked.is_some())
            .finish_non_exhaustive()
    }
}

impl Channel {
    pub(crate) fn child_side(conn: Connection) -> Channel {
        Channel {
            conn,
            peeked: None,
            child: Child::None,
            pid: 0,
            exitcode: None,
            failure: None,
        }
    }

    pub(crate) fn started(conn: Connection, handle: JoinHandle<()>) -> Channel {
        let pid = handle.process().pid();
        Channel {
            pid,
            child: Child::Started(handle),
            ..Channel::child_side(conn)
        }
    }

    pub(crate) fn forked(conn: Connection, process: Process) -> Channel {
        Channel {
            pid: process.pid(),
            child: Child::Forked(process),
            ..Channel::child_side(conn)
        }
    }

    /// The child's pid on the creating side; 0 on the child's side.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The child's exit code once it has been reaped (see [`Process::exitcode`]).
    pub fn exitcode(&self) -> Option<i32> {
        self.exitcode
    }

    pub(crate) fn process(&self) -> Option<&Process> {
        match &self.child {
            Child::None => None,
            Child::Started(h) => Some(h.process()),
            Child::Forked(p) => Some(p),
        }
    }

    /// Sends `value` to the other side. Blocks while the pipe is full.
    ///
    /// # Errors
    /// As for [`Connection::send`]; [`Error::Disconnected`] if the other side is gone.
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.conn.send(value)
    }

    /// Sends bytes encoded as `send` encodes a value.
    pub(crate) fn send_raw(&self, bytes: &[u8]) -> Result<()> {
        self.conn.send_bytes(bytes)
    }

    /// Receives the next value. Blocks until one arrives or the other side ends.
    ///
    /// # Errors
    /// On the creating side, once the child has ended and every message it sent was
    /// received: [`Error::ChildPanicked`], [`Error::ChildFailed`] or [`Error::Disconnected`]
    /// (see the type's docs); the child is reaped first. Decode errors of `T`; the errors of
    /// [`Connection::recv`].
    pub fn receive<T: DeserializeOwned>(&mut self) -> Result<T> {
        let bytes = self.receive_raw()?;
        transfer::open(&bytes, Received::none())
    }

    /// Receives the next value if one is ready now; `Ok(None)` otherwise. Never blocks.
    ///
    /// # Errors
    /// As for [`receive`](Channel::receive).
    pub fn try_receive<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        self.receive_timeout(Duration::ZERO)
    }

    /// Receives the next value if one arrives within `timeout`; `Ok(None)` otherwise.
    ///
    /// # Errors
    /// As for [`receive`](Channel::receive).
    pub fn receive_timeout<T: DeserializeOwned>(&mut self, timeout: Duration) -> Result<Option<T>> {
        if self.peeked.is_none() && !self.conn.poll(Some(timeout))? {
            return Ok(None);
        }
        self.receive().map(Some)
    }

    /// Looks whether a message can be received now without blocking. At end of stream the
    /// child is reaped (see [`receive`](Channel::receive)).
    ///
    /// # Errors
    /// As for [`Connection::recv`], except [`Error::Disconnected`].
    pub(crate) fn peek(&mut self) -> Result<Peek> {
        if self.peeked.is_some() {
            return Ok(Peek::Message);
        }
        if !self.conn.poll(Some(Duration::ZERO))? {
            return Ok(Peek::Nothing);
        }
        match self.conn.recv_bytes() {
            Ok(b) => {
                self.peeked = Some(b);
                Ok(Peek::Message)
            }
            Err(Error::Disconnected) => {
                let e = self.ended();
                if !matches!(e, Error::Disconnected) {
                    self.failure = Some(e);
                }
                Ok(Peek::Ended)
            }
            Err(e) => Err(e),
        }
    }

    /// Receives the next message's bytes.
    pub(crate) fn receive_raw(&mut self) -> Result<Vec<u8>> {
        match self.peeked.take() {
            Some(b) => Ok(b),
            None => match self.conn.recv_bytes() {
                Ok(b) => Ok(b),
                Err(Error::Disconnected) => Err(self.ended()),
                Err(e) => Err(e),
            },
        }
    }

    /// Whether the child ended with an error that `receive` has not reported yet.
    pub(crate) fn has_failure(&self) -> bool {
        self.failure.is_some()
    }

    /// Reaps the child after end of stream and returns the error that describes its end.
    fn ended(&mut self) -> Error {
        if let Some(e) = self.failure.take() {
            return e;
        }
        match self.reap() {
            Ok(()) => self.failure.take().unwrap_or(Error::Disconnected),
            Err(e) => e,
        }
    }

    /// Waits for the child to end and reaps it, keeping how it ended.
    fn reap(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.child, Child::None) {
            Child::None => {}
            Child::Started(h) => {
                let code = h.process().join()?;
                self.exitcode = Some(code);
                if let Err(e) = h.join() {
                    self.failure = Some(e);
                }
            }
            Child::Forked(p) => {
                let code = p.join()?;
                self.exitcode = Some(code);
                if code != 0 {
                    self.failure = Some(Error::ChildFailed { exitcode: code });
                }
            }
        }
        if self.exitcode.is_some() {
            super::forget(self.pid);
        }
        Ok(())
    }

    /// Closes this side: the other side's receives end once it has drained what was sent.
    pub fn close(&mut self) {
        self.conn.close();
    }

    /// Closes this side, waits for the child to end, reaps it and returns its exit code
    /// (pprocess's `wait`). On the child's side, or once reaped, returns at once.
    ///
    /// # Errors
    /// [`Error::Io`] if waiting fails.
    pub fn wait(&mut self) -> Result<Option<i32>> {
        self.close();
        self.reap()?;
        Ok(self.exitcode)
    }

    /// The child's sentinel on the creating side: a descriptor (pidfd) that becomes readable
    /// when the child ends, for `poll` or [`connection::wait`](crate::connection::wait).
    /// `None` on the child's side and once the child was reaped.
    pub fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        self.process().map(AsFd::as_fd)
    }

    pub(crate) fn waitable(&self) -> Option<Waitable<'_>> {
        if self.peeked.is_some() {
            return None;
        }
        Some(Waitable::from(&self.conn))
    }
}

impl<'a> From<&'a Channel> for Waitable<'a> {
    fn from(c: &'a Channel) -> Self {
        Waitable::from(&c.conn)
    }
}

/// A channel travels as its connection (this is how a started child receives its end); the
/// received copy has no child process.
impl Serialize for Channel {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.conn.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Connection::deserialize(d).map(Channel::child_side)
    }
}
