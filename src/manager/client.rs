//! The client side: connections to a manager server and [`RemoteObject`], the untyped proxy
//! every typed proxy wraps.
//!
//! One [`Client`] per server (endpoint and key) per process keeps idle connections; a call
//! takes one (or opens one), sends its request, waits for the reply and puts the connection
//! back, so threads calling at once use separate connections and a blocking call (a lock's
//! `acquire`) never delays another thread's call. For a server on this host the connection
//! is a shared-memory pipe: the client authenticates on the server's Unix socket (mutual HMAC
//! handshake), hands the server one end of a fresh `pipe()` with its greeting, and sends every
//! request over the pipe. Remote clients send requests over the TCP connection itself. A
//! local server's greeting answer names the server: a server restarted at the same address
//! starts a new epoch of the client, in which the proxies of the old one fail with
//! [`Error::Disconnected`].
//!
//! # Lifetimes of server objects
//! Each proxy (shared by its clones) holds one reference of its process to its object: the
//! creation's, or one taken when a token was decoded (`Adopt`), or one the parent took for
//! a forked child (`manager::inherit`). Dropping the last clone releases it; the server drops
//! a process's references when its last connection ends. The proxies alive in this process
//! are counted by server and object (what a forked child inherits). A proxy that is
//! serialized first *pins* the object: a token in flight carries the (random) id of its own
//! pin (`Lend`), which its receiver takes over when it decodes it (`Adopt`), and which ends
//! the server's pin grace after it was lent otherwise; a proxy encoded in a value that may be
//! decoded any number of times (a managed or shared-memory container, a pool's initializer
//! arguments: encoded inside [`storing`]) takes a lasting pin instead (`Pin`, once per
//! process), which ends the pin grace after its process's last connection ended (see the
//! manager's module docs).

use super::attached::{AttachInfo, Attachment, Home, Local, LocalSlot, Welcome, attachable};
use super::protocol::{CallRef, Endpoint, Fault, MAX_REQUEST, Poll, Reply, Request, ok_result};
use super::tcp::{self, Frames, Sleep, Window};
use crate::codec;
use crate::connection::{Connection, pipe};
use crate::error::{Error, Result};
use crate::loom::{AtomicU64, Ordering};
use crate::sys;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// The first message on every connection to a server.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Greeting {
    /// The client process's nonce (see [`client_nonce`]).
    pub(crate) client: u64,
    /// For a server on this host: the server's end of the pipe the client will use.
    pub(crate) pipe: Option<Connection>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// This process's nonce and the pid it was drawn in.
static NONCE: Mutex<(u32, u64)> = Mutex::new((0, 0));

/// Names a forked child to servers by the nonce its parent took references for before the
/// fork (called in the child, first thing).
pub(crate) fn set_nonce(nonce: u64) {
    *lock(&NONCE) = (sys::current_pid(), nonce);
}

/// A random number naming this process to servers (renewed in a forked child).
pub(crate) fn client_nonce() -> u64 {
    let pid = sys::current_pid();
    let mut g = lock(&NONCE);
    if g.0 != pid || g.1 == 0 {
        *g = (pid, sys::random_u64() | 1);
    }
    g.1
}

/// A number naming the calling thread within this process (owner of a managed `RLock`).
pub(crate) fn thread_number() -> u64 {
    static NEXT: Mutex<u64> = Mutex::new(0);
    thread_local! {
        static ME: u64 = {
            let mut n = lock(&NEXT);
            *n += 1;
            *n
        };
    }
    ME.with(|n| *n)
}

/// This process's connections to one server.
pub(crate) struct Client {
    pub(crate) endpoint: Endpoint,
    authkey: Vec<u8>,
    pid: u32,
    /// Idle connections, each with its reply poll's learned window (pipes only).
    idle: Mutex<Vec<(Connection, Poll)>>,
    /// The server this client talks to (local servers): its identity and home block, which
    /// keeps its segment of attachable objects mapped.
    server: Mutex<Seen>,
    /// How many times a greeting found another server at the endpoint than the one before
    /// (restarted at the same address): the proxies of earlier servers (made in an earlier
    /// epoch) fail with [`Error::Disconnected`] rather than name objects of the new one.
    epoch: AtomicU64,
    /// Idle connections over TCP, each with its read buffer and reply poll window.
    idle_tcp: Mutex<Vec<(Connection, Frames)>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// The server a client's greetings found.
#[derive(Default)]
struct Seen {
    id: Option<u64>,
    home: Option<Home>,
}

/// Returns this process's client of the server at `endpoint` with `authkey`.
pub(crate) fn client_for(endpoint: &Endpoint, authkey: &[u8]) -> Arc<Client> {
    static CLIENTS: Mutex<Vec<Weak<Client>>> = Mutex::new(Vec::new());
    let pid = sys::current_pid();
    let mut all = lock(&CLIENTS);
    all.retain(|w| w.strong_count() > 0);
    for w in all.iter() {
        if let Some(c) = w.upgrade()
            && c.pid == pid
            && c.endpoint == *endpoint
            && c.authkey == authkey
        {
            return c;
        }
    }
    let c = Arc::new(Client {
        endpoint: endpoint.clone(),
        authkey: authkey.to_vec(),
        pid,
        idle: Mutex::new(Vec::new()),
        server: Mutex::new(Seen::default()),
        epoch: AtomicU64::new(0),
        idle_tcp: Mutex::new(Vec::new()),
    });
    all.push(Arc::downgrade(&c));
    c
}

/// This process's client of a server reached through a client inherited across `fork`: kept
/// until the process exits, so the server sees one lasting client (locks it takes, objects it
/// creates) rather than a connection per call, each of whose end would give them back.
fn forked_client(endpoint: &Endpoint, authkey: &[u8]) -> Arc<Client> {
    static KEPT: Mutex<(u32, Vec<Arc<Client>>)> = Mutex::new((0, Vec::new()));
    let c = client_for(endpoint, authkey);
    let pid = sys::current_pid();
    let mut kept = lock(&KEPT);
    if kept.0 != pid {
        // Inherited from the parent: those are its clients, not this process's (forgotten,
        // not dropped: their connections are the parent's).
        std::mem::forget(std::mem::take(&mut kept.1));
        kept.0 = pid;
    }
    if !kept.1.iter().any(|k| Arc::ptr_eq(k, &c)) {
        kept.1.push(Arc::clone(&c));
    }
    c
}

impl Client {
    pub(crate) fn authkey(&self) -> &[u8] {
        &self.authkey
    }

    /// Opens a connection: authenticates, greets, and for a local server moves to a pipe.
    fn connect(&self) -> Result<Connection> {
        let sock =
            crate::connection::Client::connect(self.endpoint.address(), Some(&self.authkey))?;
        let client = client_nonce();
        if self.endpoint.is_local() {
            let (mine, theirs) = pipe()?;
            // A round trip's peer often waits for this very core: yield before sleeping.
            mine.set_yielding();
            sock.send(&Greeting {
                client,
                pipe: Some(theirs),
            })?;
            match sock.recv::<Welcome>()? {
                Welcome::Ok { home, server } => {
                    let home = if home {
                        match sock.recv::<Home>() {
                            Ok(h) => Some(h),
                            Err(e @ (Error::Disconnected | Error::Closed)) => return Err(e),
                            // The segment did not map here: no home, served objects only.
                            Err(e) => Some(Home::failed(e.to_string())),
                        }
                    } else {
                        None
                    };
                    self.greeted(home, server);
                }
                Welcome::Err(f) => return Err(f.into_error()),
            }
            Ok(mine)
        } else {
            super::server::keep_alive(&sock);
            sock.send(&Greeting { client, pipe: None })?;
            expect_ok(sock.recv_bytes()?)?;
            Ok(sock)
        }
    }

    /// Notes the server a local greeting found: the first one's home block keeps its
    /// segment mapped; another server than the one before (restarted at the same address)
    /// starts a new epoch, whose home replaces the old one, and the idle connections (to
    /// the old server) are dropped.
    fn greeted(&self, home: Option<Home>, server: u64) {
        let mut seen = lock(&self.server);
        match seen.id {
            Some(id) if id == server => {
                if seen.home.is_none() {
                    seen.home = home;
                }
            }
            Some(_) => {
                seen.id = Some(server);
                seen.home = home;
                drop(seen);
                {
                    // Under the live count's lock: a proxy is counted in its epoch only
                    // (see `count_live`), and the old server's are forgotten (a fork takes
                    // no references for them from the new server).
                    let mut live = lock(&LIVE);
                    // Relaxed: the proxies compare it only to tell epochs apart; the locks
                    // order the rest.
                    self.epoch.fetch_add(1, Ordering::Relaxed);
                    if let Some(all) = live.as_mut() {
                        all.remove(&(self.endpoint.clone(), self.authkey.clone()));
                    }
                }
                lock(&self.idle).clear();
            }
            None => {
                seen.id = Some(server);
                seen.home = home;
            }
        }
    }

    /// The current epoch (see [`Client::epoch`](Client#structfield.epoch)).
    fn epoch(&self) -> u64 {
        // Relaxed: as in `greeted`.
        self.epoch.load(Ordering::Relaxed)
    }

    /// Why this process has no home block of the server (the block did not attach).
    fn home_error(&self) -> Option<String> {
        lock(&self.server)
            .home
            .as_ref()
            .and_then(Home::error)
            .map(str::to_owned)
    }

    /// Sends one request and returns the reply's encoded result.
    ///
    /// # Errors
    /// The request's [`Fault`] as an error; [`Error::MessageTooLarge`] for a request over
    /// the server's 64 MiB cap (nothing is sent); connection errors
    /// ([`Error::Disconnected`] when the server is gone).
    pub(crate) fn request(&self, req: &Request) -> Result<Vec<u8>> {
        expect_ok(self.round_trip(req)?)
    }

    /// Sends one request (a [`Request`] or its borrowed [`CallRef`] form) and returns the
    /// encoded [`Reply`].
    fn round_trip<T: Serialize>(&self, req: &T) -> Result<Vec<u8>> {
        if self.pid != sys::current_pid() {
            // A forked child calling through its parent's client: its own client of the same
            // server keeps its connections (what it holds lives as long as they do).
            return forked_client(&self.endpoint, &self.authkey).round_trip(req);
        }
        let bytes = codec::to_bytes(req)?;
        if bytes.len() > MAX_REQUEST {
            // Refused here, before a connection is taken: a socket's send would refuse it
            // too, but the connection would then be dropped, and with this process's last
            // one, everything it created and holds in the server.
            return Err(Error::MessageTooLarge {
                size: bytes.len() as u64,
                limit: MAX_REQUEST as u64,
            });
        }
        if !self.endpoint.is_local() {
            return self.tcp_round_trip(&bytes);
        }
        let pooled = lock(&self.idle).pop();
        if let Some((conn, poll)) = pooled {
            match Self::pipe_round_trip(&conn, poll, &bytes) {
                Ok((reply, poll)) => {
                    lock(&self.idle).push((conn, poll));
                    return Ok(reply);
                }
                Err((e, delivered)) => {
                    // An idle connection whose server is gone (stopped, killed, restarted at
                    // the same address): so are the others kept with it.
                    lock(&self.idle).clear();
                    if delivered || !matches!(e, Error::Disconnected) {
                        return Err(e);
                    }
                    // The request never reached the server: sent again on a fresh
                    // connection (to the server now at the address, if any).
                }
            }
        }
        let conn = self.connect()?;
        let (reply, poll) =
            Self::pipe_round_trip(&conn, Poll::REPLY, &bytes).map_err(|(e, _)| e)?;
        lock(&self.idle).push((conn, poll));
        Ok(reply)
    }

    /// One request and reply on a shared-memory pipe; on failure, the error and whether the
    /// request may have reached the server (it was taken out of the pipe).
    fn pipe_round_trip(
        conn: &Connection,
        mut poll: Poll,
        bytes: &[u8],
    ) -> std::result::Result<(Vec<u8>, Poll), (Error, bool)> {
        // A refused send delivered nothing.
        conn.send_bytes(bytes).map_err(|e| (e, false))?;
        // The reply usually comes within microseconds: poll for it before the pipe's
        // receive, which would sleep (and need a wake-up) after a much shorter spin.
        poll.wait(conn);
        match conn.recv_bytes() {
            Ok(reply) => Ok((reply, poll)),
            Err(e) => Err((e, !conn.sent_unread())),
        }
    }

    /// A round trip over TCP: the request frame in one `sendmsg`, the reply read with as
    /// few `recv`s as it arrived in (polled for a window first; see `manager::tcp`).
    fn tcp_round_trip(&self, request: &[u8]) -> Result<Vec<u8>> {
        let pooled = lock(&self.idle_tcp).pop();
        let (conn, mut frames) = match pooled {
            Some(c) => c,
            None => (self.connect()?, Frames::new(Window::REPLY)),
        };
        tcp::send_frame(&conn, request)?;
        let reply = frames.recv(&conn, MAX_REQUEST, &Sleep::InRecv)?.to_vec();
        lock(&self.idle_tcp).push((conn, frames));
        Ok(reply)
    }
}

pub(crate) fn expect_ok(reply: Vec<u8>) -> Result<Vec<u8>> {
    match codec::from_bytes::<Reply>(&reply)? {
        Reply::Ok(b) => Ok(b),
        Reply::Err(f) => Err(f.into_error()),
    }
}

/// The error of a proxy whose server is gone (a proxy of an earlier server at an address
/// another server now listens on).
fn stale() -> Error {
    Error::Disconnected
}

/// The proxies alive in this process, counted by server (endpoint and key) and object: what
/// a forked child inherits in memory, and so what the parent takes references for on its
/// behalf before a fork (see `manager::inherit`).
type Live = HashMap<(Endpoint, Vec<u8>), HashMap<u64, u32>>;
static LIVE: Mutex<Option<Live>> = Mutex::new(None);

/// Counts a proxy of `client`'s epoch `epoch` up or down; nothing for a proxy of an earlier
/// epoch (its server is gone, and its count with it).
fn count_live(client: &Client, epoch: u64, id: u64, up: bool) {
    let mut live = lock(&LIVE);
    if client.epoch() != epoch {
        return;
    }
    let all = live.get_or_insert_with(HashMap::new);
    let key = (client.endpoint.clone(), client.authkey.clone());
    let objects = all.entry(key.clone()).or_default();
    let n = objects.entry(id).or_default();
    if up {
        *n = n.saturating_add(1);
    } else {
        *n = n.saturating_sub(1);
        if *n == 0 {
            objects.remove(&id);
            if objects.is_empty() {
                all.remove(&key);
            }
        }
    }
}

/// The live proxies of one server: its endpoint, key, and `(object, proxies)`.
pub(crate) type LiveOf = (Endpoint, Vec<u8>, Vec<(u64, u32)>);

/// The live proxies' objects, by server.
pub(crate) fn live_proxies() -> Vec<LiveOf> {
    lock(&LIVE)
        .iter()
        .flatten()
        .map(|((e, k), objects)| {
            let v = objects.iter().map(|(id, n)| (*id, *n)).collect();
            (e.clone(), k.clone(), v)
        })
        .collect()
}

/// One proxy's reference to a server object (shared by its clones).
struct Held {
    client: Arc<Client>,
    /// The client's epoch when the proxy was made: its object is of the server of that
    /// epoch.
    epoch: u64,
    id: u64,
    type_name: String,
    /// Whether this proxy holds a reference of this process in the server (released on
    /// drop): its creation, the adoption of a decoded token, or (in a forked child) one its
    /// parent took before the fork. The shared namespace's proxies hold none.
    counted: bool,
    /// The process that pinned the object for this proxy's tokens (0: none yet).
    pinned_by: Mutex<u32>,
    /// The object's in-heap form, attached by a local client of an attachable kind.
    local: LocalSlot,
}

impl Held {
    fn new(client: Arc<Client>, id: u64, type_name: String, counted: bool) -> Arc<Held> {
        let epoch = client.epoch();
        if counted {
            count_live(&client, epoch, id, true);
        }
        Arc::new(Held {
            epoch,
            client,
            id,
            type_name,
            counted,
            pinned_by: Mutex::new(0),
            local: LocalSlot::default(),
        })
    }
}

impl Held {
    /// The client, if the proxy's server is still the one at its address.
    #[inline]
    fn client(&self) -> Result<&Client> {
        if self.client.epoch() == self.epoch {
            Ok(&self.client)
        } else {
            Err(stale())
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.counted {
            count_live(&self.client, self.epoch, self.id, false);
            if self.client().is_err() {
                // Its server is gone: the id would name another server's object.
                return;
            }
            // The server may be gone already; nothing to release then. In a forked child the
            // call goes through the child's own client, which holds the reference its parent
            // took for it (a no-op if it took none).
            let _ = self.client.request(&Request::Release { object: self.id });
        }
    }
}

/// A proxy to an object held by a manager server: clone it, send it to other processes
/// (it is `Serialize`/`Deserialize`), call it from many threads.
///
/// Typed proxies ([`DictProxy`](super::DictProxy), …, and those `#[shmproc::managed]`
/// generates) wrap one and call its methods by name with [`call`](RemoteObject::call).
///
/// Serializing a remote object pins the object in the server (see the
/// [manager's lifetimes](super#lifetimes)) and writes the server's address and
/// authentication key into the token: only pass proxies to processes you would give the
/// key. Decoding a token takes a reference of the decoding process (one round trip).
#[derive(Clone)]
pub struct RemoteObject {
    held: Arc<Held>,
}

impl fmt::Debug for RemoteObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteObject")
            .field("id", &self.held.id)
            .field("type", &self.held.type_name)
            .field("server", &self.held.client.endpoint)
            .finish()
    }
}

impl RemoteObject {
    pub(crate) fn new(client: Arc<Client>, id: u64, type_name: String) -> RemoteObject {
        RemoteObject {
            held: Held::new(client, id, type_name, true),
        }
    }

    /// A proxy to an object that lives as long as the server (nothing to release).
    pub(crate) fn attached(client: Arc<Client>, id: u64, type_name: String) -> RemoteObject {
        RemoteObject {
            held: Held::new(client, id, type_name, false),
        }
    }

    /// Returns the object's id in its server (Python's `_id`): a number from a random base
    /// per server process, so a proxy kept across a restart of its server names no object
    /// of the new one.
    pub fn id(&self) -> u64 {
        self.held.id
    }

    /// Returns the name of the object's type in the server (`"shmproc.dict"`, `"Counter"`).
    pub fn type_name(&self) -> &str {
        &self.held.type_name
    }

    /// Returns the object's in-heap form attached in this process (a queue of a server on
    /// this host), attaching it on first use; `None` if the object is served (a remote
    /// server, a kind that is not attached, an attach that failed).
    #[inline]
    pub(crate) fn local(&self) -> Option<Arc<Local>> {
        match self.attachment() {
            Attachment::Attached(l) => Some(l),
            Attachment::Served | Attachment::Failed(_) => None,
        }
    }

    /// Returns how this process uses the object: attached (attaching it on first use),
    /// served, or neither (an in-heap object whose attach failed, with the reason).
    pub(crate) fn attachment(&self) -> Attachment {
        let h = &self.held;
        if !attachable(&h.type_name) || !h.client.endpoint.is_local() || h.client().is_err() {
            return Attachment::Served;
        }
        h.local.get(&h.type_name, || {
            let info = self
                .call::<(), Option<AttachInfo>>("attach", &())
                .map_err(|e| e.to_string())?;
            match (info.is_some(), h.client.home_error()) {
                // The server's segment itself did not attach here: nothing in it will.
                (true, Some(why)) => Err(format!("the server's segment: {why}")),
                _ => Ok(info),
            }
        })
    }

    /// Calls `method` with the encoded argument tuple `args` and decodes its return value.
    ///
    /// # Errors
    /// [`Error::Remote`] when the method failed in the server (its error's message kept, the
    /// typed error decodable with [`Error::remote_error`]), panicked, or is unknown;
    /// [`Error::Codec`] if the arguments or result do not encode or decode;
    /// [`Error::Disconnected`] if the server is gone.
    pub fn call<A: Serialize, R: DeserializeOwned>(&self, method: &str, args: &A) -> Result<R> {
        self.call_decode(method, codec::to_bytes(args)?)
    }

    /// Calls `method` with already-encoded arguments; returns the encoded reply.
    fn call_reply(&self, method: &str, args: &[u8]) -> Result<Vec<u8>> {
        if args.len() > MAX_REQUEST {
            // Over the cap whatever the rest of the request: not copied into one to find out.
            return Err(Error::MessageTooLarge {
                size: args.len() as u64,
                limit: MAX_REQUEST as u64,
            });
        }
        self.held.client()?.round_trip(&CallRef::Call {
            object: self.held.id,
            thread: thread_number(),
            method,
            args,
        })
    }

    /// Calls `method` and decodes the result from the reply in place.
    pub(crate) fn call_decode<R: DeserializeOwned>(
        &self,
        method: &str,
        args: Vec<u8>,
    ) -> Result<R> {
        let reply = self.call_reply(method, &args)?;
        match ok_result(&reply) {
            Some(result) => codec::from_bytes(result),
            None => codec::from_bytes(&expect_ok(reply)?),
        }
    }
}

/// What a remote object serializes to.
#[derive(Serialize, Deserialize)]
struct Token {
    endpoint: Endpoint,
    authkey: Vec<u8>,
    id: u64,
    type_name: String,
    /// The pin its receiver takes over (0: a lasting pin, or none).
    pin: u64,
}

thread_local! {
    /// Whether proxies serialized now are being stored in a managed container (see
    /// [`storing`]).
    static STORING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, which encodes a value to be decoded any number of times (stored in a managed or
/// shared-memory container, a pool's initializer arguments): a proxy in it takes a lasting
/// pin (while this process is connected, and the pin grace after) rather than one its first
/// receiver takes over. Every encode-once-decode-many path encodes inside it.
pub(crate) fn storing<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the flag back, a panic in `f` included.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            STORING.set(self.0);
        }
    }
    let _restore = Restore(STORING.replace(true));
    f()
}

impl Serialize for RemoteObject {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let h = &self.held;
        let mut pin = 0;
        if h.counted && STORING.get() {
            // Stored in a managed container, whence it may be read any number of times: a
            // lasting pin, once per process (a forked child pins again: the pin is its own).
            let pid = sys::current_pid();
            let mut pinned_by = lock(&h.pinned_by);
            if *pinned_by != pid {
                h.client()
                    .and_then(|c| c.request(&Request::Pin { object: h.id }))
                    .map_err(serde::ser::Error::custom)?;
                *pinned_by = pid;
            }
        } else if h.counted {
            // One token in flight: its receiver takes the pin over.
            let reply = h
                .client()
                .and_then(|c| c.request(&Request::Lend { object: h.id }))
                .map_err(serde::ser::Error::custom)?;
            pin = codec::from_bytes(&reply).map_err(serde::ser::Error::custom)?;
        }
        Token {
            endpoint: h.client.endpoint.clone(),
            authkey: h.client.authkey().to_vec(),
            id: h.id,
            type_name: h.type_name.clone(),
            pin,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for RemoteObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let t = Token::deserialize(d)?;
        let client = client_for(&t.endpoint, &t.authkey);
        // A token whose object (or server) is gone still decodes: its calls fail.
        let counted = t.id != super::server::SHARED_NAMESPACE
            && client
                .request(&Request::Adopt {
                    object: t.id,
                    pin: t.pin,
                })
                .is_ok();
        Ok(RemoteObject {
            held: Held::new(client, t.id, t.type_name, counted),
        })
    }
}

/// Checks that a remote object is of `want`; for typed proxies built from one.
pub(crate) fn check_type(r: &RemoteObject, want: &str) -> Result<()> {
    if r.type_name() == want {
        Ok(())
    } else {
        Err(Fault::BadRequest(format!(
            "proxy for {want} made from a remote {}",
            r.type_name()
        ))
        .into_error())
    }
}

impl From<Error> for Fault {
    fn from(e: Error) -> Fault {
        Fault::BadRequest(e.to_string())
    }
}
