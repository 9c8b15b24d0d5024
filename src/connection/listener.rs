//! [`Listener`] and [`Client`]: authenticated socket connections over Unix paths, Linux
//! abstract names and TCP (`multiprocessing.connection.Listener` / `Client`).

use super::Connection;
use super::auth;
use super::socket::{SockConn, Stream, io_error};
use crate::error::{Error, Result};
use crate::sys::{self, Deadline};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{self as unix, UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The default handshake timeout: a client that has not completed authentication by then is
/// dropped, so a silent client cannot block the listener.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The most handshakes one listener runs at once (default; see
/// [`Listener::set_max_handshakes`]). Past it, or when the process is out of descriptors
/// (a limit below the table), a new client displaces the oldest unfinished handshake, which
/// ends as if it had timed out: a flood of silent clients cannot keep a
/// newcomer waiting, and an honest client, whose handshake takes a round trip, is displaced
/// only if that many newer clients connect during it.
pub const MAX_HANDSHAKES: usize = 1024;
/// The default cap on one message over a socket connection: 64 MiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 64 << 20;

/// Where a [`Listener`] listens and a [`Client`] connects.
///
/// # Examples
/// ```
/// use shmproc::Address;
/// let path = Address::Unix("/tmp/my-service.sock".into());
/// let abstract_name = Address::Abstract(b"my-service".to_vec());
/// let tcp: Address = "127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into();
/// assert_ne!(path, abstract_name);
/// assert!(matches!(tcp, Address::Tcp(_)));
/// ```
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
/// `connection::auth`) before [`accept`](Listener::accept) returns it. Handshakes run
/// concurrently (up to [`MAX_HANDSHAKES`], driven by `accept` over non-blocking sockets), each
/// under one overall deadline (the handshake timeout, not a per-read timeout): `accept`
/// returns whichever client authenticates first, so silent or slow clients cannot hold the
/// door shut for a legitimate one. A client that fails (wrong key, garbage, silence past its
/// deadline) makes one `accept` return an error, and the listener keeps serving: call
/// `accept` again. Handshakes still in progress when `accept` returns continue in the next
/// call; calls from several threads take turns.
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
    max_handshakes: usize,
    max_message: u64,
    unlink: Option<PathBuf>,
    creator: u32,
    epoch: u64,
    /// Handshakes in progress, carried from one `accept` to the next.
    pending: Mutex<Vec<Pending>>,
}

/// One accepted socket whose handshake is under way.
struct Pending {
    stream: Stream,
    handshake: auth::ServerHandshake,
    deadline: Deadline,
    /// When it was accepted: the oldest is displaced first.
    since: Instant,
    want: auth::Want,
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
            max_handshakes: MAX_HANDSHAKES,
            max_message: DEFAULT_MAX_MESSAGE,
            unlink,
            creator: sys::current_pid(),
            epoch: sys::fork_epoch(),
            pending: Mutex::new(Vec::new()),
        })
    }

    /// Sets how long a client may take to authenticate, from connection to the end of the
    /// handshake (default [`HANDSHAKE_TIMEOUT`]).
    pub fn set_handshake_timeout(&mut self, t: Duration) {
        self.handshake_timeout = t;
    }

    /// Sets how many handshakes run at once (default [`MAX_HANDSHAKES`], at least 1). Past
    /// it, a new client displaces the oldest unfinished handshake.
    pub fn set_max_handshakes(&mut self, n: usize) {
        self.max_handshakes = n.max(1);
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
    /// Handshakes of several clients progress together; the first to authenticate is returned
    /// and the others continue in the next call. At most [`set_max_handshakes`] run at once;
    /// a client arriving past that, or while the process is out of descriptors, displaces the
    /// oldest unfinished one.
    ///
    /// [`set_max_handshakes`]: Listener::set_max_handshakes
    ///
    /// # Errors
    /// [`Error::AuthFailed`] if a client failed the handshake (wrong key, malformed or
    /// oversized handshake messages); [`Error::Timeout`] if one did not finish within the
    /// handshake timeout or was displaced by a newer client; [`Error::Disconnected`] if one
    /// hung up; [`Error::Io`] if `accept` or
    /// `poll` fails (out of descriptors with no handshake to displace). Each error concerns one client; the listener stays usable after any of
    /// these.
    pub fn accept(&self) -> Result<Connection> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(key) = &self.authkey else {
            // No handshake: the next client is the connection.
            return Ok(self.connection(self.accept_one(true)?.ok_or(Error::Timeout)?));
        };
        loop {
            if let Some(i) = pending.iter().position(|p| p.deadline.has_passed()) {
                drop(pending.swap_remove(i));
                return Err(Error::Timeout);
            }
            let listener = self.listener_fd();
            let mut fds: Vec<_> = pending
                .iter()
                .map(|p| (p.stream.fd(), p.want == auth::Want::Write))
                .collect();
            fds.push((listener, false));
            let deadline = pending.iter().map(|p| p.deadline).reduce(Deadline::min);
            let ready =
                sys::poll_ready(&fds, deadline.as_ref()).map_err(|e| Error::io("poll", e))?;
            drop(fds);
            for &i in ready.iter().rev() {
                let Some(p) = pending.get_mut(i) else {
                    continue; // the listening socket
                };
                match p.handshake.drive(&p.stream, key) {
                    Ok(auth::Want::Done) => {
                        let p = pending.swap_remove(i);
                        p.stream.set_nonblocking(false)?;
                        return Ok(self.connection(p.stream));
                    }
                    Ok(want) => p.want = want,
                    Err(e) => {
                        drop(pending.swap_remove(i));
                        return Err(e);
                    }
                }
            }
            if ready.last() == Some(&pending.len()) {
                // Take the waiting clients (at most a table's worth per round, so a steady
                // flood cannot keep this loop from driving handshakes) and send each its
                // challenge; at the cap, each displaces the oldest unfinished handshake.
                let mut displaced = false;
                for _ in 0..self.max_handshakes {
                    let stream = match self.accept_one(false) {
                        Ok(Some(stream)) => stream,
                        Ok(None) => break,
                        // Out of descriptors (a limit below the table): the oldest handshake
                        // makes room, as at the cap, instead of every call failing while
                        // silent clients hold the descriptors.
                        Err(Error::Io { source, .. })
                            if sys::out_of_descriptors(&source) && !pending.is_empty() =>
                        {
                            Self::displace_oldest(&mut pending);
                            displaced = true;
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    if pending.len() >= self.max_handshakes {
                        displaced |= Self::displace_oldest(&mut pending);
                    }
                    stream.set_nonblocking(true)?;
                    let mut p = Pending {
                        stream,
                        handshake: auth::ServerHandshake::new(),
                        deadline: Deadline::after(self.handshake_timeout),
                        since: Instant::now(),
                        want: auth::Want::Read,
                    };
                    match p.handshake.drive(&p.stream, key)? {
                        // A quick client can finish before we ever wait.
                        auth::Want::Done => {
                            p.stream.set_nonblocking(false)?;
                            return Ok(self.connection(p.stream));
                        }
                        want => {
                            p.want = want;
                            pending.push(p);
                        }
                    }
                }
                if displaced {
                    return Err(Error::Timeout);
                }
            }
        }
    }

    /// Ends the oldest unfinished handshake; returns whether there was one.
    fn displace_oldest(pending: &mut Vec<Pending>) -> bool {
        let oldest = pending.iter().enumerate().min_by_key(|(_, p)| p.since);
        match oldest.map(|(i, _)| i) {
            Some(i) => {
                drop(pending.swap_remove(i));
                true
            }
            None => false,
        }
    }

    fn listener_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.inner {
            Inner::Unix(l) => l.as_fd(),
            Inner::Tcp(l) => l.as_fd(),
        }
    }

    fn connection(&self, stream: Stream) -> Connection {
        Connection::from_socket(SockConn::new(stream, self.max_message))
    }

    /// Accepts one client: waiting for one if `block`, else `None` when none is waiting.
    fn accept_one(&self, block: bool) -> Result<Option<Stream>> {
        let set = |l: std::io::Result<()>| l.map_err(|e| Error::io("fcntl", e));
        let r = match &self.inner {
            Inner::Unix(l) => {
                set(l.set_nonblocking(!block))?;
                l.accept().map(|(s, _)| Stream::Unix(s))
            }
            Inner::Tcp(l) => {
                set(l.set_nonblocking(!block))?;
                l.accept().and_then(|(s, _)| {
                    s.set_nodelay(true)?;
                    Ok(Stream::Tcp(s))
                })
            }
        };
        match r {
            Ok(s) => Ok(Some(s)),
            Err(e) if !block && e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(Error::io("accept", e)),
        }
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
///
/// # Examples
/// ```
/// use shmproc::{Address, Client, Listener};
/// # fn main() -> shmproc::Result<()> {
/// let name = format!("shmproc-doc-client-{}", std::process::id()).into_bytes();
/// let listener = Listener::bind(Address::Abstract(name.clone()), Some(b"secret"))?;
/// let server = std::thread::spawn(move || -> shmproc::Result<String> {
///     let conn = listener.accept()?;
///     conn.recv()
/// });
/// let conn = Client::connect(Address::Abstract(name), Some(b"secret"))?;
/// conn.send("hello")?;
/// assert_eq!(server.join().unwrap()?, "hello");
/// # Ok(()) }
/// ```
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
