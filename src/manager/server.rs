//! The manager server: accepts authenticated connections, serves each on its own thread, and
//! holds the objects.
//!
//! # Custom types
//! A registered type is served by its *entry*, `custom_entry::<T>`, a monomorphised function
//! that creates, calls and drops values of `T` kept in this process. The server never takes a
//! code address from a message: a server started by [`Manager::start`](super::Manager) learns
//! the entries through its private registration pipe (as a pool worker learns its functions;
//! see `process::target`) and calls one by the id of its registration; a server running in
//! the current process ([`Manager::serve`](super::Manager::serve)) holds the function pointers
//! its builder registered. A request names a type by name; an unknown name is an error to
//! that caller.
//!
//! # What happens when a client dies
//! Each connection's thread notices the end of its connection (the client closed it or its
//! process is gone) and, when it was the last connection of that client process, gives back
//! everything the process held: locks (including a condition's), `RLock` depths, semaphore
//! units. A blocked call of a dead client (waiting on a lock, a queue, a condition) ends
//! within a slice of the server's wait.

#![allow(unsafe_code)]

use super::attached::{HeapCondition, HeapHome, HeapQueue, Welcome};
use super::client::Greeting;
use super::managed::{DispatchError, Managed};
use super::objects::{BUILTIN, Ctx, Object};
use super::protocol::{Endpoint, Fault, MAX_REQUEST, Poll, Reply, Request, encode_ok};
use super::tcp::{self, Frames, Sleep, Window};
use crate::codec;
use crate::connection::{Connection, HANDSHAKE_TIMEOUT, Listener};
use crate::error::{Error, Result};
use crate::process::{
    Outcome, Registrations, TargetId, panic_message, run_installed, take_inherited,
};
use crate::sys;
use crate::transfer::Received;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The largest reply buffer a connection keeps for its next reply.
const OUT_KEEP: usize = 64 << 10;

/// The most connections a server serves at once; past it, new ones are closed at once.
pub(crate) const MAX_CONNECTIONS: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a custom type's entry is asked to do.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum CustomOp {
    Create {
        object: u64,
        value: Vec<u8>,
    },
    Call {
        object: u64,
        method: String,
        args: Vec<u8>,
    },
    Drop {
        object: u64,
    },
}

/// What a custom type's entry answers.
pub(crate) type CustomReply = std::result::Result<Vec<u8>, DispatchError>;

/// A type's entry function.
pub(crate) type EntryFn = fn(CustomOp) -> CustomReply;

type Cell = Arc<Mutex<Box<dyn Any + Send>>>;

/// The custom values this process serves, by object id.
static CUSTOM: Mutex<Option<HashMap<u64, Cell>>> = Mutex::new(None);

/// Creates, calls or drops a value of `T` held in this process.
pub(crate) fn custom_entry<T: Managed>(op: CustomOp) -> CustomReply {
    match op {
        CustomOp::Create { object, value } => {
            let v: T = codec::from_bytes(&value).map_err(|e| DispatchError::BadArguments {
                method: "create".into(),
                reason: e.to_string(),
            })?;
            let cell: Cell = Arc::new(Mutex::new(Box::new(v)));
            lock(&CUSTOM)
                .get_or_insert_with(HashMap::new)
                .insert(object, cell);
            Ok(Vec::new())
        }
        CustomOp::Call {
            object,
            method,
            args,
        } => {
            let cell = lock(&CUSTOM).as_ref().and_then(|m| m.get(&object).cloned());
            let Some(cell) = cell else {
                return Err(DispatchError::BadArguments {
                    method,
                    reason: format!("no object {object}"),
                });
            };
            // A method that panicked may have left the value half-updated; like Python, the
            // object stays in service (the caller was told of the panic).
            let mut g = lock(&cell);
            match g.downcast_mut::<T>() {
                Some(v) => v.dispatch(&method, &args),
                None => Err(DispatchError::UnknownMethod {
                    type_name: T::TYPE_NAME.into(),
                    method,
                }),
            }
        }
        CustomOp::Drop { object } => {
            // The value is dropped after the table's lock is let go: its `Drop` may call
            // the server (another of its values) and so need the table.
            let removed = lock(&CUSTOM).as_mut().and_then(|m| m.remove(&object));
            drop(removed);
            Ok(Vec::new())
        }
    }
}

/// How the server reaches a type's entry.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entry {
    /// A function of this process (a server in the current process).
    Local(EntryFn),
    /// An entry installed through the private registration pipe.
    Installed(TargetId),
}

/// One server object, with the references and pins that keep it.
struct Slot {
    obj: Arc<Object>,
    /// References by client process (nonce): its creation, a received proxy adopted, a
    /// forked child's inherited copies. A client's references go with its last connection.
    refs: HashMap<u64, u32>,
    /// Lasting pins by client process (a proxy to the object was stored in a managed
    /// container there, whence it may be read any number of times): `None` while that
    /// process is connected, then the time until which the pin waits for a reader.
    pins: HashMap<u64, Option<Instant>>,
    /// Pins of single tokens in flight, by pin id (random: whoever knows it may end the
    /// pin, so only the token's holders do), with the time until which each waits for its
    /// receiver: the pin grace after it was lent, whether or not the lender still lives (so
    /// tokens never decoded keep the object a bounded time). A receiver's `Adopt` takes the
    /// pin over (ends it).
    lent: HashMap<u64, Instant>,
    /// The shared namespace: lives as long as the server.
    permanent: bool,
    type_name: Arc<str>,
}

impl Slot {
    fn new(obj: Object, type_name: Arc<str>) -> Slot {
        Slot {
            obj: Arc::new(obj),
            refs: HashMap::new(),
            pins: HashMap::new(),
            lent: HashMap::new(),
            permanent: false,
            type_name,
        }
    }

    /// Whether nothing keeps the object any more.
    fn unused(&self) -> bool {
        !self.permanent && self.refs.is_empty() && self.pins.is_empty() && self.lent.is_empty()
    }

    /// Drops one reference of `client`; whether it had one.
    fn release(&mut self, client: u64) -> bool {
        match self.refs.get_mut(&client) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => drop(self.refs.remove(&client)),
            None => return false,
        }
        true
    }
}

/// How long a pin waits for a receiver after its process's last connection ended, by
/// default (see [`ManagerBuilder::pin_grace`](super::ManagerBuilder::pin_grace)).
pub(crate) const PIN_GRACE: Duration = Duration::from_secs(60);

/// A client process's live connections and the objects it may hold something of.
#[derive(Default)]
struct ClientRec {
    sessions: u32,
    touched: Arc<Mutex<HashSet<u64>>>,
}

/// The server state shared by its connection threads.
pub(crate) struct Server {
    types: Vec<(String, Entry)>,
    objects: Mutex<HashMap<u64, Slot>>,
    clients: Mutex<HashMap<u64, ClientRec>>,
    connections: Mutex<usize>,
    stopping: Mutex<bool>,
    /// How long a pin outlives its process's last connection.
    pin_grace: Duration,
    /// Whether the thread that ends expired pins runs; its wake-up (new pins to expire are
    /// always due after those it waits for, so only `stop` wakes it).
    reaper: Mutex<bool>,
    reaper_wake: std::sync::Condvar,
    /// The server itself, for starting the reaper from a request.
    me: std::sync::Weak<Server>,
    /// Whether the server runs inside a user's process (it must then stop its threads rather
    /// than exit).
    in_process: bool,
    /// The segment of the objects local clients attach (queues, conditions).
    home: HeapHome,
    /// Whether the listener is a TCP one (set when it starts accepting): conditions are then
    /// served, since remote clients cannot attach them.
    tcp: OnceLock<bool>,
}

/// The id of the server's shared namespace ([`Manager::shared`](super::Manager::shared)).
pub(crate) const SHARED_NAMESPACE: u64 = 0;

/// The next object id, unique in the process (several in-process servers share the custom
/// values); `None` until the first.
static NEXT_ID: Mutex<Option<u64>> = Mutex::new(None);

/// Object ids: unique in the process, counted from a random base (below 2^62, never 0, the
/// shared namespace's), so an id that a proxy of a stopped server kept names nothing in a
/// server started later at the same address: such a proxy's calls fail with
/// `UnknownObject` and its release frees nothing, instead of reaching (or freeing) the new
/// server's object of the same number.
fn next_id() -> u64 {
    let mut n = lock(&NEXT_ID);
    let id = n.unwrap_or_else(|| (sys::random_u64() >> 2).max(1)) + 1;
    *n = Some(id);
    id
}

impl Server {
    pub(crate) fn new(
        types: Vec<(String, Entry)>,
        in_process: bool,
        pin_grace: Duration,
    ) -> Arc<Server> {
        // Object 0: the namespace every client reaches by `Manager::shared`, for the life of
        // the server.
        let mut objects = HashMap::new();
        objects.insert(
            SHARED_NAMESPACE,
            Slot {
                permanent: true,
                ..Slot::new(
                    Object::Namespace(Mutex::default()),
                    "shmproc.namespace".into(),
                )
            },
        );
        Arc::new_cyclic(|me| Server {
            me: me.clone(),
            types,
            objects: Mutex::new(objects),
            clients: Mutex::new(HashMap::new()),
            connections: Mutex::new(0),
            stopping: Mutex::new(false),
            pin_grace,
            reaper: Mutex::new(false),
            reaper_wake: std::sync::Condvar::new(),
            in_process,
            home: HeapHome::default(),
            tcp: OnceLock::new(),
        })
    }

    pub(crate) fn stopping(&self) -> bool {
        *lock(&self.stopping)
    }

    pub(crate) fn stop(&self) {
        *lock(&self.stopping) = true;
        self.close_attached();
        let _reaper = lock(&self.reaper);
        self.reaper_wake.notify_all();
    }

    /// Accepts connections until the server stops; each is served on its own thread.
    pub(crate) fn accept_loop(self: &Arc<Self>, listener: &Listener) {
        // Clients of a TCP listener may be on other hosts: their greeting cannot hand over a
        // pipe (see `read_greeting`).
        let remote = !Endpoint::of(listener.address()).is_local();
        let _ = self.tcp.set(remote);
        while !self.stopping() {
            let conn = match listener.accept() {
                Ok(c) => c,
                // One client failed its handshake (or timed out): the others go on.
                Err(Error::Io { .. }) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                Err(_) => continue,
            };
            if self.stopping() {
                break;
            }
            if remote {
                keep_alive(&conn);
            }
            {
                let mut n = lock(&self.connections);
                if *n >= MAX_CONNECTIONS {
                    drop(n);
                    // The client waits for the answer to its greeting: it gets this one (a
                    // short message to a fresh socket does not block), then the connection
                    // closes.
                    let f = Fault::BadRequest(format!(
                        "the server serves its maximum of {MAX_CONNECTIONS} connections"
                    ));
                    let _ = send_reply(&conn, &Reply::Err(f), MAX_REQUEST);
                    continue;
                }
                *n += 1;
            }
            let me = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("shmproc-manager-conn".into())
                .spawn(move || {
                    me.serve_connection(conn, remote);
                    *lock(&me.connections) -= 1;
                });
            if spawned.is_err() {
                *lock(&self.connections) -= 1;
            }
        }
    }

    /// Serves one connection: its greeting, then requests until it ends.
    fn serve_connection(self: &Arc<Self>, sock: Connection, remote: bool) {
        if !self.greeting_arrives(&sock) {
            return;
        }
        let Some(greeting) = read_greeting(&sock, remote) else {
            return;
        };
        // The largest reply the client receives: a socket connection's message cap, or a
        // pipe's.
        let limit = if greeting.pipe.is_some() {
            codec::MAX_MESSAGE
        } else {
            MAX_REQUEST
        };
        let socket = greeting.pipe.is_none();
        let conn = match greeting.pipe {
            Some(pipe) => {
                // The segment of the objects local clients attach travels with the answer.
                let home = self.home.home();
                let welcome = Welcome::Ok {
                    home: home.is_some(),
                    server: self.home.id(),
                };
                if sock.send(&welcome).is_err() || home.is_some_and(|h| sock.send(&h).is_err()) {
                    return;
                }
                drop(sock);
                pipe.set_yielding();
                pipe
            }
            None => {
                if send_reply(&sock, &Reply::Ok(Vec::new()), MAX_REQUEST).is_err() {
                    return;
                }
                sock
            }
        };
        let client = greeting.client;
        let touched = {
            let mut clients = lock(&self.clients);
            let rec = clients.entry(client).or_default();
            rec.sessions += 1;
            Arc::clone(&rec.touched)
        };
        self.session(&conn, client, &touched, limit, socket);
        self.client_left(client);
    }

    /// Waits for a freshly authenticated client's greeting, as long as a handshake may take
    /// ([`HANDSHAKE_TIMEOUT`]) and while the server runs: a client that never greets is
    /// dropped rather than holding a thread (and a stopping server's shutdown) forever.
    fn greeting_arrives(&self, sock: &Connection) -> bool {
        let until = Instant::now() + HANDSHAKE_TIMEOUT;
        loop {
            let now = Instant::now();
            if self.stopping() || now >= until {
                return false;
            }
            match sock.poll(Some((until - now).min(Duration::from_millis(200)))) {
                Ok(true) => return true,
                Ok(false) => {}
                Err(_) => return false,
            }
        }
    }

    fn session(
        &self,
        conn: &Connection,
        client: u64,
        touched: &Mutex<HashSet<u64>>,
        limit: usize,
        socket: bool,
    ) {
        // A blocked call ends when its client is gone or the server stops (an in-process
        // server's threads must not outlive its owner's `shutdown`).
        let gone = || self.stopping() || !matches!(conn.poll(Some(Duration::ZERO)), Ok(false));
        let mut poll = Poll::REQUEST;
        let mut out = Vec::new();
        // Over a socket: the connection's read buffer and request poll window; its reads end
        // when the server stops or a frame stalls (see `manager::tcp`).
        let mut frames = Frames::new(Window::REQUEST);
        let stop = || self.stopping();
        let sleep = Sleep::Poll { stop: &stop };
        loop {
            // A local client calling in a loop sends its next request within microseconds:
            // poll the pipe for it before its receive (or the in-process server's wait for a
            // stop), which would sleep after a much shorter spin.
            let arrived = !socket && poll.wait(conn);
            if !arrived && self.in_process && !socket {
                // Wake up now and then to notice that the server stopped.
                match conn.poll(Some(Duration::from_millis(200))) {
                    Ok(true) => {}
                    Ok(false) => {
                        if self.stopping() {
                            return;
                        }
                        continue;
                    }
                    Err(_) => return,
                }
            }
            let received = if socket {
                frames.recv(conn, MAX_REQUEST, &sleep).map(Cow::Borrowed)
            } else {
                conn.recv_bytes_max(MAX_REQUEST).map(Cow::Owned)
            };
            let bytes = match received {
                Ok(b) => b,
                Err(Error::MessageTooLarge { size, limit: cap }) => {
                    let f = Fault::BadRequest(format!(
                        "request of {size} bytes over the {cap}-byte cap"
                    ));
                    // Over a socket only the frame's length was read (its bytes are never
                    // received into memory): the stream has lost its frame boundary, so the
                    // connection ends after the reply. A pipe drops the message whole.
                    if send_reply(conn, &Reply::Err(f), limit).is_err() || socket {
                        return;
                    }
                    continue;
                }
                Err(_) => return,
            };
            let mut shutdown = false;
            let reply = match codec::from_bytes::<Request>(&bytes) {
                Ok(Request::Shutdown) => {
                    shutdown = true;
                    Reply::Ok(Vec::new())
                }
                Ok(req) => {
                    let ctx = Ctx {
                        client,
                        thread: 0,
                        gone: &gone,
                    };
                    match self.handle(req, ctx, touched) {
                        Ok(b) => Reply::Ok(b),
                        Err(f) => Reply::Err(f),
                    }
                }
                Err(e) => Reply::Err(Fault::BadRequest(format!("undecodable request: {e}"))),
            };
            if shutdown {
                self.stop();
                let _ = send_reply(conn, &reply, limit);
                if !self.in_process {
                    // The server process ends here: its objects and connections go with it.
                    crate::process::init::exit(0);
                }
                return;
            }
            if self.in_process && self.stopping() {
                // The call may have ended because the server stops (a blocking acquire then
                // answers `false`): the client gets `Disconnected`, not a wrong answer.
                return;
            }
            let sent = match reply {
                // The common case: assembled in the connection's buffer (no `Vec` per reply).
                // `encode_ok` adds at most 11 bytes (a tag and a varint).
                Reply::Ok(result) if result.len().saturating_add(11) <= limit => {
                    out.clear();
                    encode_ok(&mut out, &result);
                    if socket {
                        tcp::send_frame(conn, &out)
                    } else {
                        conn.send_bytes(&out)
                    }
                }
                reply => send_reply(conn, &reply, limit),
            };
            if sent.is_err() {
                return;
            }
            if out.capacity() > OUT_KEEP {
                // A large reply's buffer is not kept for the life of the connection.
                out = Vec::new();
            }
        }
    }

    /// How many connections are being served.
    pub(crate) fn connections(&self) -> usize {
        *lock(&self.connections)
    }

    /// Drops every object (a stopped in-process server: its custom values are kept in this
    /// process's table and would otherwise stay there for good).
    pub(crate) fn clear(&self) {
        let all: Vec<(u64, Slot)> = lock(&self.objects).drain().collect();
        for (_, slot) in &all {
            slot.obj.close_attached();
        }
        for (object, slot) in all {
            if let Object::Custom { entry } = *slot.obj {
                let _ = self.run_custom(entry, CustomOp::Drop { object });
            }
        }
    }

    /// Closes every attached object's in-heap form: attached calls fail from now on (the
    /// server is stopping).
    pub(crate) fn close_attached(&self) {
        for slot in lock(&self.objects).values() {
            slot.obj.close_attached();
        }
    }

    /// Creates a built-in object: a queue in its in-heap form where it can be made (in the
    /// server's named segment), else served.
    fn create_builtin(&self, kind: &str, init: &[u8]) -> std::result::Result<Object, Fault> {
        if let "shmproc.queue" | "shmproc.joinable_queue" = kind
            && let Ok(capacity) = codec::from_bytes::<Option<u64>>(init)
            && let Some(seg) = self.home.segment()
            && let Some(q) = HeapQueue::create(&seg, capacity, kind == "shmproc.joinable_queue")
        {
            return Ok(Object::HeapQueue(q));
        }
        if kind == "shmproc.condition"
            && self.tcp.get() == Some(&false)
            && let Some(seg) = self.home.segment()
            && let Some(c) = HeapCondition::create(&seg)
        {
            return Ok(Object::HeapCondition(c));
        }
        Object::create(kind, init)
    }

    fn lookup(&self, object: u64) -> std::result::Result<(Arc<Object>, Arc<str>), Fault> {
        lock(&self.objects)
            .get(&object)
            .map(|s| (Arc::clone(&s.obj), Arc::clone(&s.type_name)))
            .ok_or(Fault::UnknownObject(object))
    }

    fn handle(
        &self,
        req: Request,
        mut ctx: Ctx<'_>,
        touched: &Mutex<HashSet<u64>>,
    ) -> std::result::Result<Vec<u8>, Fault> {
        match req {
            Request::Call {
                object,
                thread,
                method,
                args,
            } => {
                let (obj, _) = self.lookup(object)?;
                ctx.thread = thread;
                match *obj {
                    Object::Custom { entry } => self.run_custom(
                        entry,
                        CustomOp::Call {
                            object,
                            method,
                            args,
                        },
                    ),
                    ref o => {
                        if o.holds() {
                            lock(touched).insert(object);
                        }
                        o.call(&method, &args, &ctx)
                    }
                }
            }
            Request::Create { kind, init } => {
                let id = next_id();
                let obj = if BUILTIN.contains(&kind.as_str()) {
                    self.create_builtin(&kind, &init)?
                } else {
                    let entry = self
                        .types
                        .iter()
                        .position(|(n, _)| *n == kind)
                        .ok_or_else(|| Fault::UnknownType(kind.clone()))?;
                    self.run_custom(
                        entry,
                        CustomOp::Create {
                            object: id,
                            value: init,
                        },
                    )?;
                    Object::Custom { entry }
                };
                let mut slot = Slot::new(obj, kind.into());
                slot.refs.insert(ctx.client, 1);
                lock(&self.objects).insert(id, slot);
                codec::to_bytes(&id).map_err(Fault::from)
            }
            Request::Pin { object } => {
                let mut objects = lock(&self.objects);
                let slot = objects
                    .get_mut(&object)
                    .ok_or(Fault::UnknownObject(object))?;
                if !slot.permanent {
                    slot.pins.insert(ctx.client, None);
                }
                Ok(codec::to_bytes(&()).map_err(Fault::from)?)
            }
            Request::Adopt { object, pin } => {
                let mut objects = lock(&self.objects);
                let slot = objects
                    .get_mut(&object)
                    .ok_or(Fault::UnknownObject(object))?;
                if !slot.permanent {
                    let n = slot.refs.entry(ctx.client).or_default();
                    *n = n.saturating_add(1);
                    slot.lent.remove(&pin);
                }
                Ok(codec::to_bytes(&()).map_err(Fault::from)?)
            }
            Request::Lend { object } => {
                let mut objects = lock(&self.objects);
                let slot = objects
                    .get_mut(&object)
                    .ok_or(Fault::UnknownObject(object))?;
                let pin = if slot.permanent {
                    0
                } else {
                    // Random: a pin id is the capability to end the pin (`Adopt`), so only
                    // a holder of the token may; never 0 (no pin) nor one in use.
                    let pin = loop {
                        let p = sys::random_u64();
                        if p != 0 && !slot.lent.contains_key(&p) {
                            break p;
                        }
                    };
                    slot.lent.insert(pin, Instant::now() + self.pin_grace);
                    pin
                };
                drop(objects);
                if pin != 0
                    && let Some(me) = self.me.upgrade()
                {
                    me.expire_pins_later();
                }
                codec::to_bytes(&pin).map_err(Fault::from)
            }
            Request::Inherit { objects: inherited } => {
                let mut objects = lock(&self.objects);
                for (object, count) in inherited {
                    if let Some(slot) = objects.get_mut(&object)
                        && !slot.permanent
                        && count > 0
                    {
                        let n = slot.refs.entry(ctx.client).or_default();
                        *n = n.saturating_add(count);
                    }
                }
                Ok(codec::to_bytes(&()).map_err(Fault::from)?)
            }
            Request::Release { object } => {
                // A client releases only references it holds; a release from any other is a
                // no-op.
                let removed = {
                    let mut objects = lock(&self.objects);
                    let slot = objects
                        .get_mut(&object)
                        .ok_or(Fault::UnknownObject(object))?;
                    if slot.release(ctx.client) && slot.unused() {
                        objects.remove(&object)
                    } else {
                        None
                    }
                };
                if let Some(slot) = removed {
                    self.drop_object(object, &slot);
                }
                Ok(codec::to_bytes(&()).map_err(Fault::from)?)
            }
            Request::TypeOf { object } => {
                let (_, name) = self.lookup(object)?;
                codec::to_bytes(&*name).map_err(Fault::from)
            }
            Request::Ping => codec::to_bytes(&()).map_err(Fault::from),
            Request::Hello { .. } => Err(Fault::BadRequest("greeting sent twice".into())),
            Request::Shutdown => Ok(Vec::new()),
        }
    }

    /// Runs a custom type's entry, turning a panic into an error for the caller.
    fn run_custom(&self, entry: usize, op: CustomOp) -> std::result::Result<Vec<u8>, Fault> {
        let (_, e) = self
            .types
            .get(entry)
            .ok_or_else(|| Fault::UnknownType(format!("#{entry}")))?;
        match *e {
            Entry::Local(f) => match catch_unwind(AssertUnwindSafe(|| f(op))) {
                Ok(r) => r.map_err(Fault::Dispatch),
                Err(p) => Err(Fault::Dispatch(DispatchError::Panicked {
                    message: panic_message(p.as_ref()),
                })),
            },
            Entry::Installed(id) => {
                let bytes = codec::to_bytes(&op).map_err(Fault::from)?;
                match run_installed(id, &bytes, Received::none()).map_err(Fault::from)? {
                    Outcome::Returned(b) => codec::from_bytes::<CustomReply>(&b)
                        .map_err(Fault::from)?
                        .map_err(Fault::Dispatch),
                    Outcome::Panicked(message) => {
                        Err(Fault::Dispatch(DispatchError::Panicked { message }))
                    }
                    Outcome::Failed(reason) => Err(Fault::BadRequest(reason)),
                    Outcome::Exited(code) => {
                        Err(Fault::BadRequest(format!("entry exited with {code}")))
                    }
                }
            }
        }
    }

    /// One connection of `client` ended; the last one gives back what it held and its
    /// references, and starts the grace of its lasting pins.
    fn client_left(self: &Arc<Self>, client: u64) {
        let mut orphaned = false;
        let (touched, removed) = {
            let mut clients = lock(&self.clients);
            let Some(rec) = clients.get_mut(&client) else {
                return;
            };
            rec.sessions = rec.sessions.saturating_sub(1);
            if rec.sessions > 0 {
                return;
            }
            let Some(rec) = clients.remove(&client) else {
                return;
            };
            // The references it still held go too: its proxies are gone with it. Its lasting
            // pins (proxies it stored in a container) now wait the grace for a reader; the
            // pins of its tokens in flight wait theirs already (from when they were lent).
            // Taken under the clients' lock: a new connection of the same client (which
            // would create under the same nonce) is counted before or after this, never
            // during.
            let until = Instant::now() + self.pin_grace;
            let mut objects = lock(&self.objects);
            let mut gone = Vec::new();
            for (id, slot) in objects.iter_mut() {
                let had = slot.refs.remove(&client).is_some();
                if let Some(p) = slot.pins.get_mut(&client) {
                    *p = Some(until);
                    orphaned = true;
                }
                if had && slot.unused() {
                    gone.push(*id);
                }
            }
            let removed: Vec<(u64, Slot)> = gone
                .into_iter()
                .filter_map(|id| objects.remove(&id).map(|s| (id, s)))
                .collect();
            (rec.touched, removed)
        };
        if orphaned {
            self.expire_pins_later();
        }
        let ids: Vec<u64> = lock(&touched).drain().collect();
        for id in ids {
            if let Ok((obj, _)) = self.lookup(id) {
                obj.release_client(client);
            }
        }
        // What the client held in an object it created is given back above only if the
        // object is still in the table; a removed one is dropped here, outside the table's
        // lock (a custom value's `Drop` may call the server).
        for (id, slot) in removed {
            slot.obj.release_client(client);
            self.drop_object(id, &slot);
        }
    }

    /// Makes sure the thread that ends expired pins runs.
    fn expire_pins_later(self: &Arc<Self>) {
        let mut running = lock(&self.reaper);
        if *running || self.stopping() {
            return;
        }
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("shmproc-manager-pins".into())
            .spawn(move || me.expire_pins());
        *running = spawned.is_ok();
    }

    /// Ends pins whose grace is over (dropping the objects nothing else keeps), sleeping
    /// until the next one is due (or a quarter grace, at most 1 s, if that is later: a pin
    /// may end that much after its grace); returns once none waits or the server stops.
    fn expire_pins(&self) {
        let mut running = lock(&self.reaper);
        loop {
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            let removed: Vec<(u64, Slot)> = {
                let mut objects = lock(&self.objects);
                let mut gone = Vec::new();
                for (id, slot) in objects.iter_mut() {
                    let mut keep = |until: &Option<Instant>| match until {
                        Some(t) if *t <= now => false,
                        Some(t) => {
                            next = Some(next.map_or(*t, |n| n.min(*t)));
                            true
                        }
                        None => true,
                    };
                    slot.pins.retain(|_, until| keep(until));
                    slot.lent.retain(|_, until| keep(&Some(*until)));
                    if slot.unused() {
                        gone.push(*id);
                    }
                }
                gone.into_iter()
                    .filter_map(|id| objects.remove(&id).map(|s| (id, s)))
                    .collect()
            };
            if !removed.is_empty() {
                // Dropped outside the reaper's lock too: a custom value's `Drop` may call the
                // server, whose client may leave and so need it.
                drop(running);
                for (id, slot) in &removed {
                    self.drop_object(*id, slot);
                }
                running = lock(&self.reaper);
                continue;
            }
            let Some(next) = next.filter(|_| !self.stopping()) else {
                *running = false;
                return;
            };
            // Pins due close together end together: at most one pass over the table per
            // quarter grace (and per second), however many tokens are lent.
            let next = next.max(now + (self.pin_grace / 4).min(Duration::from_secs(1)));
            running = self
                .reaper_wake
                .wait_timeout(running, next.saturating_duration_since(now))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Lets go of an object taken out of the table: a custom value is dropped by its entry.
    fn drop_object(&self, object: u64, slot: &Slot) {
        if let Object::Custom { entry } = *slot.obj {
            let _ = self.run_custom(entry, CustomOp::Drop { object });
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.clear();
    }
}

/// TCP keepalive of manager connections: probes start after 30 s of silence, one every 10 s,
/// and 3 unanswered end the connection, so a peer host that vanished (powered off, cut off)
/// is noticed within about a minute: a server then gives back what that client held, a
/// client's call fails with an error.
const KEEPALIVE: (Duration, Duration, u32) = (Duration::from_secs(30), Duration::from_secs(10), 3);

/// Turns keepalive on for a manager connection over TCP (see [`KEEPALIVE`]); a connection
/// where it cannot be set works without it.
pub(crate) fn keep_alive(conn: &Connection) {
    use std::os::fd::AsFd;
    if let Ok(r) = conn.readiness() {
        let (idle, interval, count) = KEEPALIVE;
        let _ = crate::sys::set_tcp_keepalive(r.as_fd(), idle, interval, count);
    }
}

/// The most bytes a greeting from a client of a TCP listener may take (its nonce and the
/// `None` of its pipe take at most 11).
const MAX_REMOTE_GREETING: usize = 16;

/// What a greeting's pipe decodes to for a client of a TCP listener: nothing. Such a client
/// sends its requests over the socket and never hands over a pipe, so the server decodes no
/// connection token (none that would make it attach a shared-memory object the client names).
enum NoPipe {}

impl<'de> Deserialize<'de> for NoPipe {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> std::result::Result<NoPipe, D::Error> {
        Err(serde::de::Error::custom(
            "a client over TCP cannot hand the server a pipe",
        ))
    }
}

/// The greeting of a client of a TCP listener: [`Greeting`]'s encoding, with no pipe.
#[derive(Deserialize)]
struct RemoteGreeting {
    client: u64,
    #[allow(dead_code)] // decoded only to be refused if present
    pipe: Option<NoPipe>,
}

/// Reads a connection's greeting. A client of a TCP listener may send only its nonce (in a
/// greeting of at most 16 bytes); a local one may also hand over the server's end of a
/// shared-memory pipe. `None` for a greeting that does not decode, or whose frame stalls for
/// [`HANDSHAKE_TIMEOUT`] (the connection is closed).
fn read_greeting(sock: &Connection, remote: bool) -> Option<Greeting> {
    // A client that stalls mid-greeting is dropped instead of holding its thread forever.
    // The timeout stays for the session over the socket, which polls before each read: it
    // bounds only a request frame that stalls, or a reply the client stops reading.
    sock.set_socket_timeout(Some(HANDSHAKE_TIMEOUT)).ok()?;
    read_greeting_frame(sock, remote)
}

fn read_greeting_frame(sock: &Connection, remote: bool) -> Option<Greeting> {
    if remote {
        let bytes = sock.recv_bytes_max(MAX_REMOTE_GREETING).ok()?;
        let g: RemoteGreeting = codec::from_bytes(&bytes).ok()?;
        Some(Greeting {
            client: g.client,
            pipe: None,
        })
    } else {
        sock.recv::<Greeting>().ok()
    }
}

/// Sends `reply`, or if it does not encode within `limit` bytes, an error saying so: a
/// reply the client could not receive would end the connection, and with the client's last
/// connection, what it holds.
fn send_reply(conn: &Connection, reply: &Reply, limit: usize) -> Result<()> {
    let fault = match codec::to_bytes(reply) {
        Ok(bytes) if bytes.len() <= limit => return conn.send_bytes(&bytes),
        Ok(bytes) => Fault::ReplyTooLarge {
            size: bytes.len() as u64,
            limit: limit as u64,
        },
        Err(e) => Fault::BadRequest(format!("reply: {e}")),
    };
    conn.send_bytes(&codec::to_bytes(&Reply::Err(fault))?)
}

/// What a server process is started with.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ServerArgs {
    pub(crate) endpoint: Endpoint,
    pub(crate) authkey: Vec<u8>,
    /// Registered type names, in the order of their registration frames (ids 1, 2, …).
    pub(crate) types: Vec<String>,
    /// Whether descriptor 0 is the registration pipe.
    pub(crate) registrations: bool,
    /// Where the server reports that it listens (`Ok`) or why it cannot (`Err`).
    pub(crate) ready: Connection,
    /// How long a pin outlives its process's last connection.
    pub(crate) pin_grace: Duration,
}

/// The main function of a server process.
pub(crate) fn server_main(args: ServerArgs) {
    let mut types = Vec::new();
    if args.registrations {
        let Some(fd) = take_inherited(0) else {
            let _ = args
                .ready
                .send(&Err::<Endpoint, String>("no registration pipe".into()));
            return;
        };
        // SAFETY: descriptor 0 of this process's `extra` list is the read end of the
        // registration pipe the manager created for this server and passed in its validated
        // start-up message (`ProcessBuilder::start_spawn_with`); the manager keeps the write
        // end close-on-exec and writes only registration frames to it.
        let mut regs = unsafe { Registrations::new(File::from(fd)) };
        if let Err(e) = regs.drain() {
            let _ = args.ready.send(&Err::<Endpoint, String>(e.to_string()));
            return;
        }
        for (i, name) in args.types.iter().enumerate() {
            let id = u32::try_from(i + 1).unwrap_or(u32::MAX);
            types.push((name.clone(), Entry::Installed(TargetId(id))));
        }
    }
    let listener = match Listener::bind(args.endpoint.address(), Some(&args.authkey)) {
        Ok(l) => l,
        Err(e) => {
            let _ = args.ready.send(&Err::<Endpoint, String>(e.to_string()));
            return;
        }
    };
    let server = Server::new(types, false, args.pin_grace);
    let bound = Endpoint::of(listener.address());
    if args.ready.send(&Ok::<Endpoint, String>(bound)).is_err() {
        return;
    }
    drop(args.ready);
    server.accept_loop(&listener);
    crate::process::init::exit(0);
}

/// The body of the `manager_protocol` fuzz target (see `crate::fuzzing`): `data` is a
/// sequence of frames, each `[client, flags, len, bytes…]`. Each frame's bytes are decoded as
/// a TCP client's greeting, as a reply (what a client decodes), and as a request; a request
/// that decodes is served by a server in this process for client `client % 3`, and its reply
/// must encode and decode again. Flag bit 0 ends that client's session afterwards (what it
/// held and created is given back). Garbage is an error, never a panic; no call blocks past a
/// slice of the server's wait (every client counts as gone while it waits).
#[cfg(feature = "test-support")]
pub(crate) fn fuzz_protocol(mut data: &[u8]) {
    // Ids from 1 in a fuzzing process, so the seeds' object numbers name objects.
    lock(&NEXT_ID).get_or_insert(0);
    let server = Server::new(Vec::new(), true, PIN_GRACE);
    let gone = || true;
    let mut sessions: HashMap<u64, Arc<Mutex<HashSet<u64>>>> = HashMap::new();
    let mut created: Vec<u64> = Vec::new();
    while let [client, flags, len, rest @ ..] = data {
        let n = usize::from(*len).min(rest.len());
        let (frame, tail) = rest.split_at(n);
        data = tail;
        let client = u64::from(*client % 3) + 1;
        let _ = codec::from_bytes::<RemoteGreeting>(frame);
        if let Ok(Reply::Err(f)) = codec::from_bytes::<Reply>(frame) {
            let _ = f.into_error();
        }
        let touched = sessions
            .entry(client)
            .or_insert_with(|| {
                let mut clients = lock(&server.clients);
                let rec = clients.entry(client).or_default();
                rec.sessions += 1;
                Arc::clone(&rec.touched)
            })
            .clone();
        if let Ok(mut req) = codec::from_bytes::<Request>(frame) {
            // Object ids are unique in the process, so an input names objects by their rank
            // among those it created (0 is the shared namespace): it replays the same way.
            match &mut req {
                Request::Shutdown => continue,
                Request::Call { object, .. }
                | Request::Pin { object }
                | Request::Adopt { object, .. }
                | Request::Lend { object }
                | Request::Release { object }
                | Request::TypeOf { object }
                    if *object != 0 && !created.is_empty() =>
                {
                    let rank = usize::try_from(*object - 1).unwrap_or(usize::MAX);
                    *object = created[rank % created.len()];
                }
                _ => {}
            }
            let creating = matches!(req, Request::Create { .. });
            let ctx = Ctx {
                client,
                thread: u64::from(*flags >> 1),
                gone: &gone,
            };
            let reply = match server.handle(req, ctx, &touched) {
                Ok(b) => Reply::Ok(b),
                Err(f) => Reply::Err(f),
            };
            if creating && let Reply::Ok(b) = &reply {
                match codec::from_bytes::<u64>(b) {
                    Ok(id) => created.push(id),
                    Err(e) => panic!("a created object's id does not decode: {e}"),
                }
            }
            let decoded = codec::to_bytes(&reply).and_then(|b| codec::from_bytes::<Reply>(&b));
            match decoded {
                Ok(Reply::Ok(_)) => {}
                Ok(Reply::Err(f)) => drop(f.into_error()),
                Err(e) => panic!("a reply does not encode and decode again: {e}"),
            }
        }
        if *flags & 1 != 0 && sessions.remove(&client).is_some() {
            server.client_left(client);
        }
    }
    for client in sessions.into_keys() {
        server.client_left(client);
    }
    // Ends the thread that would expire the pins of the clients that left.
    server.stop();
    // Every reference went with its client's session.
    let left = lock(&server.objects);
    assert!(
        left.values().all(|s| s.refs.is_empty()),
        "a reference outlived its client's session"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small xorshift generator (deterministic: a failure replays).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn bytes(&mut self) -> Vec<u8> {
            let n = self.below(12);
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    const METHODS: &[&str] = &[
        "get",
        "insert",
        "remove",
        "contains_key",
        "get_or_insert",
        "update",
        "len",
        "clear",
        "keys",
        "values",
        "items",
        "push",
        "extend",
        "pop",
        "set",
        "truncate",
        "reverse",
        "to_vec",
        "index_of",
        "contains",
        "replace",
        "names",
        "acquire",
        "release",
        "is_locked",
        "is_owned",
        "value",
        "wait",
        "notify",
        "notify_all",
        "is_set",
        "abort",
        "reset",
        "is_broken",
        "n_waiting",
        "parties",
        "put",
        "is_empty",
        "is_full",
        "task_done",
        "join",
        "nonsense",
    ];

    /// Requests with any kind, object, method and argument bytes get an answer (an error for
    /// what does not make sense); nothing panics and nothing blocks past a slice.
    #[test]
    fn any_request_is_answered_without_a_panic() {
        let server = Server::new(Vec::new(), true, PIN_GRACE);
        let gone = || true;
        let touched = Mutex::new(HashSet::new());
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut ok = 0;
        for _ in 0..3000 {
            let req = match rng.below(4) {
                0 => Request::Create {
                    kind: BUILTIN[rng.below(BUILTIN.len())].to_owned(),
                    init: rng.bytes(),
                },
                1 => Request::Release {
                    object: rng.below(8) as u64,
                },
                _ => Request::Call {
                    object: rng.below(40) as u64,
                    thread: rng.below(2) as u64,
                    method: METHODS[rng.below(METHODS.len())].to_owned(),
                    args: rng.bytes(),
                },
            };
            let ctx = Ctx {
                client: 1,
                thread: 0,
                gone: &gone,
            };
            if server.handle(req, ctx, &touched).is_ok() {
                ok += 1;
            }
        }
        assert!(ok > 0, "no request was well formed");
        // Undecodable bytes are refused by the decoder before the server sees them.
        for _ in 0..1000 {
            let b = rng.bytes();
            let _ = codec::from_bytes::<Request>(&b);
        }
    }
}
