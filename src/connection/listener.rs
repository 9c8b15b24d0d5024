//! [`Listener`] and [`Client`]: authenticated socket connections over Unix paths, Linux
//! abstract names and TCP (`multiprocessing.connection.Listener` / `Client`).

use super::Connection;
use super::auth;
use super::socket::{SockConn, Stream, io_error};
use crate::error::{Error, Result};
use crate::sys;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{self as unix, UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

/// The default handshake timeout: a client that has not completed authentication by then is
/// dropped, so a silent client cannot block the listener.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The default cap on one message over a socket connection: 64 MiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 64 << 20;

/// Where a [`Listener`] listens and a [`Client`] connects.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Address {
    /// A Unix socket at a filesystem path, removed again when the listener is dropped (by the
    /// process serving on it: the creator, or the child it forked to serve).
    Unix(PathBuf),
    /// A Linux abstract Unix socket name (no file; gone with the last socket).
    Abstract(Vec<u8>),
    /// A TCP address; port 0 picks a free port (see [`Listener::address`]).
    Tcp(SocketAddr),
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Address::Tcp(a)
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Self {
        Address::Unix(p)
    }
}

enum Inner {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Accepts authenticated connections.
///
/// With an authkey, every accepted socket runs the mutual HMAC-SHA256 handshake (see
/// `connection::auth`) under a timeout before [`accept`](Listener::accept) returns it; a
/// client that fails (wrong key, garbage, silence) makes that `accept` return an error, and
/// the listener keeps serving: call `accept` again.
///
/// # Examples
/// ```
/// use shmproc::connection::Address;
/// use shmproc::{Client, Listener};
/// # fn main() -> shmproc::Result<()> {
/// let addr = Address::Abstract(format!("shmproc-doc-{}", std::process::id()).into_bytes());
/// let listener = Listener::bind(addr.clone(), Some(b"secret"))?;
/// let server = std::thread::spawn(move || -> shmproc::Result<()> {
///     let conn = listener.accept()?;
///     let n: u32 = conn.recv()?;
///     conn.send(&(n + 1))
/// });
/// let conn = Client::connect(addr, Some(b"secret"))?;
/// conn.send(&41u32)?;
/// assert_eq!(conn.recv::<u32>()?, 42);
/// server.join().unwrap()?;
/// # Ok(()) }
/// ```
pub struct Listener {
    inner: Inner,
    address: Address,
    authkey: Option<Vec<u8>>,
    handshake_timeout: Duration,
    max_message: u64,
    unlink: Option<PathBuf>,
    creator: u32,
    epoch: u64,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authenticated", &self.authkey.is_some())
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Binds a listener. `authkey` `None` means no authentication, which is refused for TCP
    /// (any host process or network peer could connect); use
    /// [`bind_unauthenticated`](Listener::bind_unauthenticated) to allow it explicitly.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] for TCP without a key; [`Error::Io`] if binding fails.
    pub fn bind(address: impl Into<Address>, authkey: Option<&[u8]>) -> Result<Listener> {
        let address = address.into();
        if authkey.is_none() && matches!(address, Address::Tcp(_)) {
            return Err(Error::Unauthenticated);
        }
        Self::bind_inner(address, authkey)
    }

    /// Binds a listener without authentication, TCP included.
    ///
    /// # Errors
    /// [`Error::Io`] if binding fails.
    pub fn bind_unauthenticated(address: impl Into<Address>) -> Result<Listener> {
        Self::bind_inner(address.into(), None)
    }

    fn bind_inner(address: Address, authkey: Option<&[u8]>) -> Result<Listener> {
        let bind_err = |e| Error::io("bind", e);
        let (inner, address, unlink) = match address {
            Address::Unix(p) => {
                let l = UnixListener::bind(&p).map_err(bind_err)?;
                (Inner::Unix(l), Address::Unix(p.clone()), Some(p))
            }
            Address::Abstract(name) => {
                let a = unix::SocketAddr::from_abstract_name(&name).map_err(bind_err)?;
                let l = UnixListener::bind_addr(&a).map_err(bind_err)?;
                (Inner::Unix(l), Address::Abstract(name), None)
            }
            Address::Tcp(a) => {
                let l = TcpListener::bind(a).map_err(bind_err)?;
                let bound = l.local_addr().map_err(|e| Error::io("getsockname", e))?;
                (Inner::Tcp(l), Address::Tcp(bound), None)
            }
        };
        Ok(Listener {
            inner,
            address,
            authkey: authkey.map(<[u8]>::to_vec),
            handshake_timeout: HANDSHAKE_TIMEOUT,
            max_message: DEFAULT_MAX_MESSAGE,
            unlink,
            creator: sys::current_pid(),
            epoch: sys::fork_epoch(),
        })
    }

    /// Sets how long a client may take to authenticate (default [`HANDSHAKE_TIMEOUT`]).
    pub fn set_handshake_timeout(&mut self, t: Duration) {
        self.handshake_timeout = t;
    }

    /// Sets the largest message accepted connections receive or send (default
    /// [`DEFAULT_MAX_MESSAGE`]).
    pub fn set_max_message(&mut self, bytes: u64) {
        self.max_message = bytes;
    }

    /// Returns the address bound (for TCP port 0, with the port the system picked).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for a client, authenticates it, and returns the connection.
    ///
    /// # Errors
    /// [`Error::AuthFailed`] if the client failed the handshake (wrong key, malformed or
    /// oversized handshake messages); [`Error::Timeout`] if it did not finish within the
    /// handshake timeout; [`Error::Disconnected`] if it hung up; [`Error::Io`] if `accept`
    /// fails. The listener stays usable after any of these.
    pub fn accept(&self) -> Result<Connection> {
        let stream = match &self.inner {
            Inner::Unix(l) => Stream::Unix(l.accept().map_err(|e| Error::io("accept", e))?.0),
            Inner::Tcp(l) => {
                let s = l.accept().map_err(|e| Error::io("accept", e))?.0;
                s.set_nodelay(true)
                    .map_err(|e| Error::io("setsockopt", e))?;
                Stream::Tcp(s)
            }
        };
        if let Some(key) = &self.authkey {
            stream.set_timeout(Some(self.handshake_timeout))?;
            auth::server(&stream, key)?;
            stream.set_timeout(None)?;
        }
        Ok(Connection::from_socket(SockConn::new(
            stream,
            self.max_message,
        )))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // The socket file is removed by the process that serves on it: the creator unless it
        // forked since (a child then owns the listener), or the forked child dropping its copy.
        let me = sys::current_pid();
        let owner = if me == self.creator {
            self.epoch == sys::fork_epoch()
        } else {
            true
        };
        if let (Some(p), true) = (&self.unlink, owner) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Connects to a [`Listener`] (`multiprocessing.connection.Client`).
#[derive(Debug)]
pub struct Client;

impl Client {
    /// Connects to `address` and, with an `authkey`, runs the mutual handshake (within
    /// [`HANDSHAKE_TIMEOUT`]). Messages are capped at [`DEFAULT_MAX_MESSAGE`].
    ///
    /// # Errors
    /// [`Error::AuthFailed`] if the keys differ or the server misbehaves; [`Error::Timeout`];
    /// [`Error::Disconnected`] if the server hung up; [`Error::Io`] if connecting fails.
    pub fn connect(address: impl Into<Address>, authkey: Option<&[u8]>) -> Result<Connection> {
        let conn_err = |e| Error::io("connect", e);
        let stream = match address.into() {
            Address::Unix(p) => Stream::Unix(UnixStream::connect(p).map_err(conn_err)?),
            Address::Abstract(name) => {
                let a = unix::SocketAddr::from_abstract_name(&name).map_err(conn_err)?;
                Stream::Unix(UnixStream::connect_addr(&a).map_err(conn_err)?)
            }
            Address::Tcp(a) => {
                let s = TcpStream::connect(a).map_err(conn_err)?;
                s.set_nodelay(true).map_err(|e| io_error("setsockopt", e))?;
                Stream::Tcp(s)
            }
        };
        if let Some(key) = authkey {
            stream.set_timeout(Some(HANDSHAKE_TIMEOUT))?;
            auth::client(&stream, key)?;
            stream.set_timeout(None)?;
        }
        Ok(Connection::from_socket(SockConn::new(
            stream,
            DEFAULT_MAX_MESSAGE,
        )))
    }
}
