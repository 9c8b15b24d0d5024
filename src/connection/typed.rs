//! Typed pipe ends: [`typed_pipe`] gives a [`Sender<T>`] and a [`Receiver<T>`], in Rust's
//! `(tx, rx)` order, so sending one type and receiving another does not compile.

use super::pipe::Connection;
use crate::error::Result;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

/// Creates a one-way pipe for values of type `T` in the default heap: `(send end, receive
/// end)`, the order of [`std::sync::mpsc::channel`].
///
/// The ends are [`pipe_simplex`](crate::pipe_simplex)'s, with the message type fixed: a
/// [`Receiver<T>`] only returns `T`, so a value sent as one type cannot be received as
/// another. Both ends are `Serialize`/`Deserialize` and travel to a child as process
/// arguments, like a [`Connection`].
///
/// # Errors
/// As for [`pipe`](crate::pipe).
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// let (tx, rx) = shmproc::typed_pipe::<i32>()?;
/// tx.send(&-1)?;
/// assert_eq!(rx.recv()?, -1);
/// # Ok(()) }
/// ```
///
/// Receiving another type than the one sent is a compile error:
/// ```compile_fail
/// # fn main() -> shmproc::Result<()> {
/// let (tx, rx) = shmproc::typed_pipe::<i32>()?;
/// tx.send(&-1i32)?;
/// let x: u32 = rx.recv()?; // expected `u32`, found `i32`
/// # Ok(()) }
/// ```
pub fn typed_pipe<T>() -> Result<(Sender<T>, Receiver<T>)> {
    let (rx, tx) = crate::pipe_simplex()?;
    Ok((
        Sender {
            conn: tx,
            _t: PhantomData,
        },
        Receiver {
            conn: rx,
            _t: PhantomData,
        },
    ))
}

/// The sending end of a [`typed_pipe`]: sends values of type `T`.
///
/// Blocking, end of stream and process death behave as for [`Connection`].
#[derive(Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct Sender<T> {
    conn: Connection,
    #[serde(skip)]
    _t: PhantomData<fn(T)>,
}

/// The receiving end of a [`typed_pipe`]: receives values of type `T`.
///
/// Blocking, end of stream and process death behave as for [`Connection`].
#[derive(Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct Receiver<T> {
    conn: Connection,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("type", &std::any::type_name::<T>())
            .field("conn", &self.conn)
            .finish()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("type", &std::any::type_name::<T>())
            .field("conn", &self.conn)
            .finish()
    }
}

impl<T: Serialize> Sender<T> {
    /// Sends a value. Blocks while the pipe is full.
    ///
    /// # Errors
    /// As for [`Connection::send`].
    pub fn send(&self, value: &T) -> Result<()> {
        self.conn.send(value)
    }
}

impl<T> Sender<T> {
    /// Closes this end (see [`Connection::close`]).
    pub fn close(&mut self) {
        self.conn.close();
    }

    /// Returns the untyped connection.
    pub fn into_connection(self) -> Connection {
        self.conn
    }

    /// Returns a reference to the untyped connection (for [`wait`](crate::connection::wait)).
    pub fn as_connection(&self) -> &Connection {
        &self.conn
    }
}

impl<T: DeserializeOwned> Receiver<T> {
    /// Receives a value. Blocks until one arrives.
    ///
    /// # Errors
    /// As for [`Connection::recv`]: [`Error::Disconnected`](crate::Error::Disconnected) once
    /// the sender is closed or dead and every value it sent was received.
    pub fn recv(&self) -> Result<T> {
        self.conn.recv()
    }

    /// Receives a value if one is ready now; `Ok(None)` if none is.
    ///
    /// # Errors
    /// As for [`recv`](Receiver::recv).
    pub fn try_recv(&self) -> Result<Option<T>> {
        self.conn.try_recv()
    }

    /// Receives a value, waiting at most `timeout`; `Ok(None)` if none arrived (see
    /// [`Connection::recv_timeout`]).
    ///
    /// # Errors
    /// As for [`recv`](Receiver::recv).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<T>> {
        self.conn.recv_timeout(timeout)
    }
}

impl<T> Receiver<T> {
    /// Returns this end's readiness descriptor for an event loop (see
    /// [`Connection::readiness`]).
    ///
    /// # Errors
    /// As for [`Connection::readiness`].
    pub fn readiness(&self) -> Result<super::Readiness<'_>> {
        self.conn.readiness()
    }

    /// Returns whether a value (or end of stream) is ready, waiting up to `timeout` (see
    /// [`Connection::poll`]).
    ///
    /// # Errors
    /// As for [`Connection::poll`].
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        self.conn.poll(timeout)
    }

    /// Closes this end (see [`Connection::close`]).
    pub fn close(&mut self) {
        self.conn.close();
    }

    /// Returns the untyped connection.
    pub fn into_connection(self) -> Connection {
        self.conn
    }

    /// Returns a reference to the untyped connection (for [`wait`](crate::connection::wait)).
    pub fn as_connection(&self) -> &Connection {
        &self.conn
    }
}
