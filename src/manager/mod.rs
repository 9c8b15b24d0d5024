//! Managers: a server process that holds objects, and proxies that use them from any process
//! on this host or over the network (`multiprocessing.managers`).
//!
//! [`Manager::start`] starts a server process; its factories ([`dict`](Manager::dict),
//! [`list`](Manager::list), [`lock`](Manager::lock), [`queue`](Manager::queue), …) create an
//! object there and return a proxy. Proxies are `Clone`, `Send + Sync` and serde: pass them to
//! children, put them in queues or inside other managed containers (a list of dict proxies);
//! every copy reaches the same object. Custom types are registered by name on the builder
//! ([`ManagerBuilder::register`], for types `#[shmproc::managed]` implements [`Managed`] for)
//! and created with [`Manager::create`].
//!
//! # Transport
//! Clients authenticate on the server's socket with the connections' mutual HMAC handshake
//! before anything they send is decoded. A client on the same host then moves to a
//! shared-memory pipe (`pipe()`), one per calling thread, so a round trip costs two ring
//! messages, not four system calls (see [waiting](#waiting) for how each end waits).
//! A remote client
//! ([`Manager::connect`] to a TCP address) sends its requests over the TCP connection
//! (`TCP_NODELAY` on at both ends): each end sends a frame (its length and body) with one
//! `sendmsg`, and reads what arrived with one `recv` into a buffer it keeps per connection,
//! cutting frames out of it in place, so a round trip costs each end one send and, while
//! the other answers within its window (see [waiting](#waiting)), one or a few receives.
//! Requests and replies are codec-encoded data; requests are capped at 64 MiB before they are
//! received (a client refuses to send a larger one: an [`Error::MessageTooLarge`] for that
//! call, while its connections, and what it created and holds, stay). A reply larger than its client can receive (64 MiB over a socket, the codec's
//! cap over a pipe) is an [`Error::MessageTooLarge`] for that call; the connection, and what
//! the client holds, stay. A client must greet within the handshake timeout (5 s) of its
//! authentication; over a socket, a request frame (or a reply's) that stalls for that long
//! ends the connection, while an idle connection stays open. A socket request frame whose
//! length is over the cap is answered with an error and ends that connection (its bytes are
//! never received). TCP connections have keepalive on at both ends (probes after 30 s of
//! silence, every 10 s, 3 unanswered end the connection), so a peer host that vanished is
//! noticed within about a minute: the server gives back what that client held, and the
//! client's calls fail with an error.
//!
//! # Direct and served primitives
//! **Attached, for local clients: queues, joinable queues, and conditions.** The server
//! holds every managed [`queue`](Manager::queue),
//! [`queue_with_capacity`](Manager::queue_with_capacity) and
//! [`joinable_queue`](Manager::joinable_queue) in its in-heap form (a
//! [`JoinableQueue`](crate::JoinableQueue)'s ring of codec-encoded items), and every managed
//! [`condition`](Manager::condition) of a server on a Unix socket as a
//! [`Condition`](crate::Condition) over its own [`RLock`](crate::RLock), in a segment of its
//! own: a memory file that the answer to each local connection's greeting carries over the
//! Unix socket. A local proxy asks for the object's tokens once per process (one round trip,
//! on its first call) and attaches them, checked like any token (the segment must be the one
//! the server sent; each block's offset, generation, kind and fingerprint; the condition's
//! link to its lock): from then on its calls (a queue's `put`, `get`, `task_done`, `join`,
//! `len`, `is_full`; a condition's `acquire`, `release`, `wait`, `notify`, `notify_all`) run
//! on shared memory, without the server (`is_attached` tells). A forged or stale token is an
//! error to the attach, and the proxy is then served. The object's lifetime is the server's,
//! as for every object (references, pins): when its last reference goes the server drops it
//! and marks it closed; a handle still attached keeps its block mapped and its calls fail
//! with [`Error::Disconnected`].
//!
//! Who is served instead, on the same object: a remote client (TCP) of a queue, and a local
//! one whose attach failed. A server listening on TCP serves its conditions as before (see
//! below), since remote clients cannot attach them; a local client of such a server is
//! served too. A Unix-socket server's condition is never served: its lock belongs to a
//! *thread*, which only an attached handle can take it as (a server thread taking it on a
//! client's behalf would hold it for whichever of that client's threads called). A local
//! proxy whose attach of it failed gets an [`Error::Remote`] (`BadRequest`) from every
//! condition call, with the attach's error; the server refuses those calls likewise to any
//! caller that did not attach.
//!
//! The segment travels in a message of its own after the greeting's answer: a segment that
//! does not map in a client (its header overwritten by a process with the key, say) leaves
//! that client without it, not without a connection: its queues are served and its
//! conditions refuse as above. A client (one per process, server address and key) tells a
//! server restarted at the same address by the identity in the greeting's answer: it takes
//! the new server's segment, drops the idle connections to the old one (a request that a
//! dead server never read is sent again on a fresh connection), and the old server's proxies
//! fail with [`Error::Disconnected`] from then on rather than name the new server's objects.
//! Object ids also count from a random base in each server process (below 2^62; the shared
//! namespace is always 0), so a stale proxy that reaches a new server at its address anyway
//! (a request sent again on a fresh connection, a forked child's first connection, any TCP
//! client: TCP greetings carry no identity) names no object there: its calls fail with
//! [`Error::Remote`] of kind `UnknownObject` and its release frees nothing. Only the shared
//! namespace ([`Manager::shared`]) is the same object for every server at an address.
//!
//! The differences from a served object:
//! - *queue capacity*: a queue made without one holds at most 262,144 items (a `put` beyond
//!   waits for room like a bounded queue's; `is_full` stays `false`); a capacity above 2^24,
//!   or a server segment whose rings took all but its room for items, makes a served queue
//!   instead, with no limit. The segment is 16 GiB of address space, used only as touched:
//!   a queue made without a capacity takes 80 MiB of it (about 330 KiB of memory until its
//!   slots are used), so about 150 such queues are attached before new ones are served,
//!   and rings never take the last 4 GiB;
//! - *server death*: an attached call that waits (`get`, `put` on a full queue, `join`, a
//!   condition's `acquire` and `wait`) checks every 50 ms whether the server process still
//!   lives (by pid and start time) and returns [`Error::Disconnected`] once it is gone (a
//!   `wait` returns without the lock: it lets go of it, or, while another live thread holds
//!   it, stops trying to take it back, checking between 50 ms tries), then marks the
//!   object closed: from then on every
//!   attached call of every process fails with `Disconnected`. A call that does not wait
//!   (`try_get`, `try_put`, `task_done`, `len`, `try_acquire`, `release`, `notify`) reads the
//!   closed word first (one load): it fails once the server stopped ([`Manager::shutdown`],
//!   its drop: the server closes its objects first) or once some attached process noticed its
//!   death; between a `SIGKILL` of the server and that, it still succeeds on shared memory;
//! - *timeouts*: a zero (or already passed) timeout tries the call once, as a served one
//!   does: `get_timeout(ZERO)` takes an item that is there, `put_timeout(ZERO)` uses room
//!   that is there, `join_timeout(ZERO)` returns when nothing is unfinished;
//! - *joinable task counts*: a `put` counts its task as its item goes in (written into its
//!   slot, before any `get` can see it), so a `put` that waits for room, fails, or panics in
//!   the item's `Serialize` counts nothing, and a client killed while its `put` waits leaves
//!   no task behind (`join` is not wedged);
//! - *client death*: a client killed in the middle of an attached `put` loses only that item;
//!   one killed in the middle of a `get` leaves its item to the others (the in-heap queue's
//!   crash safety, see [`Queue`](crate::Queue)). A served (remote) `get` that had to wait
//!   takes an item only if its caller is still connected when it claims it; one whose caller
//!   died leaves it at the head, in its place. A caller that dies after that check (or once
//!   its reply is sent) loses the item, as a process killed right after its `get` returned
//!   would. A client killed holding an attached
//!   condition's lock blocks nobody: the in-heap lock is robust, and the next proxy that
//!   acquires it (a waiter re-taking it included) takes it over silently, as a served lock is
//!   given back silently (no [`OwnerDied`](crate::OwnerDied) is reported). The lock is owned
//!   by a *thread*, so a thread that ends holding it (its process living on) gives it up the
//!   same way, where a served lock stays with its process until that ends;
//! - a condition's waiter woken by a notification is one that was waiting when it came
//!   (the in-heap condition's rule); an attached `wait` is sliced (50 ms) to check the
//!   server, re-taking the lock between slices, which no notification can slip past (a
//!   notifier holds the lock);
//! - items larger than a slot (304 encoded bytes) are stored in blocks of the server's
//!   segment, allocated by whichever process puts them, in the 4 GiB (at least) that rings
//!   leave free; an item is encoded once (its `Serialize` runs once, so a proxy inside it is
//!   pinned once), whatever its size. Large items waiting in attached queues share that
//!   room: a `put` that finds it full fails with [`Error::OutOfMemory`], whose `capacity`
//!   is the manager's segment's (the default heap's size settings do not change it); take
//!   items out, or use a served object (a list) for more than that.
//!
//! **Served: everything else.** Dicts, lists, values, arrays, namespaces, locks, re-entrant
//! locks, semaphores, events, barriers and registered types are served by the server for
//! every client. Their in-heap forms (`Dict`, `List`, `Slot`, `Lock`, …) do not give the
//! same semantics, so they are not substituted for local clients:
//! - a managed lock or semaphore unit is given back when its holder's *process* ends; an
//!   in-heap `Lock` is taken over when its holder's *thread* ends, and reports
//!   [`OwnerDied`](crate::OwnerDied) to the next holder;
//! - a managed dict iterates in insertion order (like Python's); an in-heap `Dict` in table
//!   order;
//! - remote clients reach the same object through the server, which would have to act on an
//!   in-heap lock on behalf of a client: the in-heap locks are owned by threads, and a remote
//!   client's calls arrive on whichever of its connections is free.
//!
//! Where speed matters, use the in-heap containers and primitives directly (no server): a
//! served call is one round trip to another process.
//!
//! # Waiting
//! A round trip is fast only while neither end sleeps: waking a sleeping thread of another
//! process costs a context switch on each side (~5–10 µs here), which capped a loop of local
//! calls near the futex ping-pong rate (~80–100 k/s on 2 cores). So each end of a local
//! connection polls the pipe for the other's next message (two loads of the ring's
//! positions per round, no system call) for a bounded window before the pipe's own wait
//! (its short adaptive spin, a few yields, then a sleep in slices that notices a dead peer):
//! - the client, after sending a request, polls for the reply, unless the server's thread
//!   was asleep (it then answers only after a wake-up, and the client waits as a pipe does);
//! - the server's connection thread, after sending a reply, polls for the next request.
//!
//! A window is skipped when the other end last sent its message on the CPU this thread
//! runs on (the pipe keeps each writer's CPU, one load and a `sched_getcpu` to compare): the
//! two ends then share a core, and polling would only keep the other end from running.
//! A window's round is two loads and a `pause`, never a yield of the core (on a busy machine
//! a yield can give the core to another process for a whole time slice: with yields in the
//! window a loop of calls fell to ~2 k/s on 2 loaded cores). Each window adapts like the
//! spin budgets of shmproc's other waits: a message within it grows it by a quarter, a
//! window that runs out halves it; the client's window keeps 16 to 2000 rounds, the
//! server's 16 to 1000. After 64 windows in a row ran out, the next one is a full one: once
//! both ends sleep, each answer takes a wake-up (tens of microseconds), longer than a halved
//! window, and only a window that outlasts it brings the two ends back to answering within
//! microseconds (without it, a loop of calls could stay at the futex rate on free cores).
//!
//! **CPU cost.** A round costs ~0.1–0.15 µs here, so a window costs at most ~250 µs
//! (client) or ~120 µs (server) of one core, reached only while the peer keeps answering
//! within it, ~2 µs once it has halved to its floor, and a full window once per 64 that ran
//! out. A client that goes idle costs its connection's server thread one window per call
//! (halving to the floor): at one call per millisecond a call cost 40–56 µs of CPU across
//! both processes, against 51 µs without the polls (`perf stat`, 2000 calls, mostly the
//! wake-ups). An idle connection costs nothing (both ends sleep in the pipe's wait). A
//! blocking call that waits long (a lock held elsewhere) costs its client one window.
//!
//! Measured on 2 cores with both free (client and server at real-time priority, so the
//! other load on the machine does not share their cores; `perf stat`, 200 000 calls): a
//! dict `get` 730–740 k calls/s, a lock's acquire or release 790 k calls/s, a queue's put or
//! get 580 k calls/s, each using ~2.7–3.4 µs of CPU per call across both processes, against
//! ~85 k/s without the polls. With both cores busy with other work (load average 8–14), the
//! two ends often share a core and the rate is near the futex round trip's (50–120 k/s).
//!
//! Over TCP, windows of the same kind poll the socket: a round is one
//! `recv(MSG_DONTWAIT)` (a system call, ~0.2 µs here on a free core, ~0.5 µs on a busy
//! one; `SO_BUSY_POLL` does nothing for loopback, which has no device queue to poll). The
//! client, after sending a request, polls for the reply for 2 to 400 rounds before it
//! sleeps in `recv`; the server's connection thread, after a reply, polls for the next
//! request for 2 to 300 rounds before it sleeps in `poll` (in 200 ms slices, to notice that
//! the server stops). They adapt as above (a quarter more on a hit, half on a miss, a full
//! window after 64 misses in a row), except that a full window that runs out too doubles
//! the run of misses before the next one, up to 1024 (a hit sets it back to 64): when the
//! two ends share one core, a window only delays the peer, so no full window pays off there,
//! and the longer runs keep what they cost per call small.
//!
//! **CPU cost over TCP.** A window costs at most ~80 µs (client) or ~60 µs (server) of one
//! core, reached only while the peer answers within it, ~0.5–1 µs at its floor, and a full
//! window once per 64 to 1024 that ran out. An idle client costs its server thread one
//! window per call (halving to the floor); an idle connection costs nothing (the client
//! sleeps in `recv`, the server's thread in `poll`). Over loopback with client and server
//! each on a core of their own (both at real-time priority, so the machine's other load
//! does not share their cores), a dict `get` measured 130–145 k calls/s, against 45–60 k/s
//! when each end sleeps and is woken once per call (no windows); with both on one core
//! (real-time priority), 107 k/s against 118 k/s without windows.
//!
//! # Trust
//! A request names an object kind (built-in, or a registered type's name), an object id and a
//! method by name; an unknown kind, object or method, arguments that do not decode, or a
//! request that does not decode is an error reply to that caller, never a server crash; a
//! method that panics is an error reply and the server goes on. Code addresses never travel:
//! a server process learns its registered types' entry points through its private
//! registration pipe (see `server`).
//!
//! # Process death
//! - The server process dies with the process that started it (it is a daemon child), and
//!   [`Manager::shutdown`] or dropping the last clone of the [`Manager`] stops it. Like every
//!   daemon child, it is tied to the *thread* that started it: start a manager from a thread
//!   that outlives its use (the main thread, typically).
//! - A client process that dies gives back what it held: a managed `Lock` or `RLock`, a
//!   condition's lock (an attached condition's is taken over by its next acquirer),
//!   semaphore units it took and did not release; a barrier it waited on breaks (Python's
//!   managed lock stays locked forever instead).
//! - When the server dies, every call of a client returns an error
//!   ([`Error::Disconnected`]) instead of waiting forever (an attached object's: see
//!   [direct and served primitives](#direct-and-served-primitives)).
//!
//! # Lifetimes
//! An object lives while some client process holds a reference to it, or a pin of a
//! serialized proxy waits for its receiver:
//! - *references*: the creating process takes one; so does every process that decodes a
//!   proxy's token (passed to a child, taken out of a queue or a managed container), one per
//!   decoded proxy; and a child forked by shmproc (the `Fork` start method) gets one for each
//!   proxy it inherits in memory, taken by its parent just before the fork. A proxy's last
//!   clone releases its reference when dropped, and the server drops every reference of a
//!   process when its last connection ends (even by `SIGKILL`). A forked child's inherited
//!   references ride on a connection only the child keeps, so they go with it however it
//!   ends; a process without proxies forks without any request. The parent waits for its
//!   servers at most 5 s in all before forking (all servers at once); a server that does
//!   not answer in time (stopped, hung, unreachable) takes no references for the child, whose
//!   copies of its proxies then rely on the parent's references, as after a bare `fork(2)`.
//! - *pins*: before a proxy's token leaves a process (serialized), that process pins the
//!   object, so a proxy in flight (in a queue, in a child's arguments, in a pipe) finds its
//!   object. Each token carries a pin of its own, named by a random id that only the
//!   token's holders know, which the process that decodes it takes over: the pin ends then,
//!   and the receiver's reference keeps the object. Such a pin waits for its receiver the
//!   pin grace (60 s by default, [`ManagerBuilder::pin_grace`]) from when the token was
//!   encoded, whether or not its sender still lives, then ends (within a quarter grace,
//!   at most 1 s, after): so tokens never decoded (dropped bytes, a child that died before
//!   reading them) keep their object, and the server an entry each, a bounded time. A token decoded later than that finds its object only if something else still
//!   keeps it (its sender's own proxy, say); otherwise its calls fail with
//!   [`Error::Remote`] of kind `UnknownObject`, whose message names the pin grace. A
//!   receiver that may take longer (a token waiting in a long queue after its sender
//!   dropped its proxy) needs the sender to keep a proxy, a longer pin grace, or the
//!   proxy stored instead as below.
//! - *lasting pins*: a value encoded once and decoded any number of times takes a lasting
//!   pin for every proxy in it instead, once per process: a value stored in a managed
//!   container (a dict, list, value, array or namespace), in shmproc's shared-memory
//!   containers ([`Slot`](crate::Slot), [`Dict`](crate::Dict), [`List`](crate::List): keys
//!   and values, lookups included) and a [`Pool`](crate::Pool)'s initializer arguments. A
//!   lasting pin lasts while its process is connected, then the pin grace after its last
//!   connection ended. So a stored proxy keeps its object while the process that stored it
//!   lives and a grace after; read back later, it finds the object gone likewise.
//!
//! The shared namespace ([`Manager::shared`]) lives as long as the server.

mod attached;
mod client;
mod inherit;
pub mod managed;
mod objects;
mod protocol;
mod proxy;
mod server;
mod tcp;

pub use client::RemoteObject;
pub(crate) use client::storing;
pub(crate) use inherit::{Inherited, before_fork};
pub use managed::{DispatchError, Managed, ManagedProxy};
pub use proxy::{
    ArrayProxy, BarrierProxy, BoundedSemaphoreProxy, ConditionProxy, DictProxy, EventProxy,
    JoinableQueueProxy, ListProxy, LockProxy, ManagedLockGuard, NamespaceProxy, QueueProxy,
    RLockProxy, SemaphoreProxy, ValueProxy,
};
#[cfg(feature = "test-support")]
pub(crate) use server::fuzz_protocol;

use crate::codec;
use crate::connection::{Address, Listener, pipe_simplex};
use crate::error::{Error, Result};
use crate::process::{Process, StartMethod, Target, registration_frame};
use crate::sys;
use client::{Client, client_for};
use protocol::{Endpoint, Request};
use serde::Serialize;
use serde::de::DeserializeOwned;
use server::{
    CustomOp, CustomReply, Entry, EntryFn, Server, ServerArgs, custom_entry, server_main,
};
use std::fmt;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long [`Manager::start`] waits for the server to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A registered custom type.
#[derive(Clone, Copy)]
struct Registered {
    name: &'static str,
    entry: EntryFn,
}

/// Configures and starts a [`Manager`] (from [`Manager::builder`]).
pub struct ManagerBuilder {
    name: Option<String>,
    authkey: Option<Vec<u8>>,
    method: Option<StartMethod>,
    address: Option<Address>,
    types: Vec<Registered>,
    pin_grace: Duration,
}

impl fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("name", &self.name)
            .field("method", &self.method)
            .field("address", &self.address)
            .field("pin_grace", &self.pin_grace)
            .field(
                "types",
                &self.types.iter().map(|t| t.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ManagerBuilder {
    /// Names the server process (default `Manager-N`, see [`Process`]).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the authentication key clients must know (default: 32 random bytes, known to
    /// this process and every proxy it serializes).
    pub fn authkey(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.authkey = Some(key.into());
        self
    }

    /// Sets how the server process is started (default: [`start_method`](crate::start_method)).
    /// With registered types the server is always started with [`StartMethod::Spawn`]: its
    /// types' entries reach it through a private registration pipe only a spawned child
    /// inherits.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Sets the address the server listens on (default: a fresh abstract Unix socket name).
    /// A TCP address makes the server reachable from other hosts with
    /// [`Manager::connect`]. The socket file of a Unix path is removed when the owner stops
    /// the server ([`Manager::shutdown`] or its drop); it stays if the owner is killed.
    pub fn address(mut self, address: impl Into<Address>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// Sets how long an object pinned by a serialized proxy waits for a receiver (default
    /// 60 s; see [Lifetimes](self#lifetimes)): a token's pin, from when it was encoded; a
    /// lasting pin (a proxy stored in a container), from the storing process's last
    /// connection to the server. A token decoded later than that may find its object gone
    /// (its calls then fail with [`Error::Remote`]).
    pub fn pin_grace(mut self, grace: Duration) -> Self {
        self.pin_grace = grace;
        self
    }

    /// Registers the custom type `T` (Python's `BaseManager.register`): the server can then
    /// hold values of `T` ([`Manager::create`]). Registering a name twice keeps the first.
    pub fn register<T: Managed>(mut self) -> Self {
        if !self.types.iter().any(|t| t.name == T::TYPE_NAME) {
            self.types.push(Registered {
                name: T::TYPE_NAME,
                entry: custom_entry::<T>,
            });
        }
        self
    }

    fn authkey_or_random(&mut self) -> Vec<u8> {
        self.authkey.take().unwrap_or_else(|| {
            (0..4)
                .flat_map(|_| sys::random_u64().to_le_bytes())
                .collect()
        })
    }

    /// Starts the server process and returns its owner.
    ///
    /// # Errors
    /// The errors of [`ProcessBuilder::start`](crate::ProcessBuilder::start);
    /// [`Error::ChildStartFailed`] if the server could not listen (its reason kept) or did
    /// not report within 30 s.
    pub fn start(mut self) -> Result<Manager> {
        let authkey = self.authkey_or_random();
        let endpoint = match &self.address {
            Some(a) => Endpoint::of(a),
            None => Endpoint::Abstract(
                format!(
                    "shmproc-manager-{}-{:016x}",
                    sys::current_pid(),
                    sys::random_u64()
                )
                .into_bytes(),
            ),
        };
        let (ready_r, ready_w) = pipe_simplex()?;
        let args = ServerArgs {
            endpoint,
            authkey: authkey.clone(),
            types: self.types.iter().map(|t| t.name.to_owned()).collect(),
            registrations: !self.types.is_empty(),
            ready: ready_w,
            pin_grace: self.pin_grace,
        };
        let mut b = Process::new(server_main, args).daemon(true);
        if let Some(n) = self.name.take() {
            b = b.name(n);
        }
        // The registration pipe's write end stays open until the server reported: it reads
        // every frame before listening.
        let mut regs = None;
        let process = if self.types.is_empty() {
            if let Some(m) = self.method {
                b = b.start_method(m);
            }
            b.start()?
        } else {
            let (r, mut w) = sys::pipe().map_err(|e| Error::io("pipe", e))?;
            for t in &self.types {
                let entry: fn(CustomOp) -> CustomReply = t.entry;
                w.write_all(&registration_frame(Target::returning(entry))?)
                    .map_err(|e| Error::io("write registration", e))?;
            }
            let p = b.start_with(&[r.as_fd()])?;
            regs = Some(w);
            p
        };
        let fail = |reason: String| {
            let _ = process.kill();
            let _ = process.join_timeout(Duration::from_secs(5));
            Error::ChildStartFailed { reason }
        };
        if !ready_r.poll(Some(START_TIMEOUT))? {
            return Err(fail("manager server did not start in time".into()));
        }
        let endpoint = match ready_r.recv::<std::result::Result<Endpoint, String>>() {
            Ok(Ok(e)) => e,
            Ok(Err(reason)) => return Err(fail(reason)),
            Err(e) => return Err(fail(e.to_string())),
        };
        drop(regs);
        Ok(Manager::owning(
            client_for(&endpoint, &authkey),
            Owner::Process(process),
        ))
    }

    /// Runs a server in the current process on `address` (TCP, a Unix path or an abstract
    /// name) with `authkey` (the builder's key is ignored), serving until
    /// [`shutdown`](Manager::shutdown) or the drop of the returned owner. The registered
    /// types are served by their entry functions in this process.
    ///
    /// # Errors
    /// The errors of [`Listener::bind`]; [`Error::Io`] if the server thread cannot start.
    pub fn serve(self, address: impl Into<Address>, authkey: &[u8]) -> Result<Manager> {
        let listener = Listener::bind(address, Some(authkey))?;
        let endpoint = Endpoint::of(listener.address());
        let types = self
            .types
            .iter()
            .map(|t| (t.name.to_owned(), Entry::Local(t.entry)))
            .collect();
        let server = Server::new(types, true, self.pin_grace);
        let s2 = Arc::clone(&server);
        let thread = std::thread::Builder::new()
            .name("shmproc-manager".into())
            .spawn(move || s2.accept_loop(&listener))
            .map_err(|e| Error::io("spawn thread", e))?;
        Ok(Manager::owning(
            client_for(&endpoint, authkey),
            Owner::InProcess {
                server,
                thread: Mutex::new(Some(thread)),
            },
        ))
    }
}

/// What an owning [`Manager`] stops.
enum Owner {
    Process(Process),
    InProcess {
        server: Arc<Server>,
        thread: Mutex<Option<JoinHandle<()>>>,
    },
    None,
}

struct Inner {
    client: Arc<Client>,
    owner: Owner,
    stopped: Mutex<bool>,
}

impl Inner {
    fn shutdown(&self) -> Result<()> {
        {
            let mut s = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
            if *s {
                return Ok(());
            }
            *s = true;
        }
        match &self.owner {
            Owner::Process(p) => {
                // The server answers and exits; a server already gone is stopped too.
                let _ = self.client.request(&Request::Shutdown);
                if p.join_timeout(Duration::from_secs(5))?.is_none() {
                    p.kill()?;
                    p.join()?;
                }
                // The server process exits without dropping its listener: the socket file
                // of a Unix path is removed here, once nobody serves on it.
                if let Endpoint::Unix(path) = &self.client.endpoint {
                    let _ = std::fs::remove_file(path);
                }
                Ok(())
            }
            Owner::InProcess { server, thread } => {
                server.stop();
                // Wake the accept loop with one last connection.
                let _ = crate::connection::Client::connect(
                    self.client.endpoint.address(),
                    Some(self.client.authkey()),
                );
                let t = thread.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Some(t) = t {
                    let _ = t.join();
                }
                // Connection threads notice the stop within a poll slice, blocked calls
                // included; a custom method still running after 5 s is left to finish.
                let until = std::time::Instant::now() + Duration::from_secs(5);
                while server.connections() > 0 && std::time::Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(10));
                }
                server.clear();
                Ok(())
            }
            Owner::None => Ok(()),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// A manager: the owner of (or a connection to) a server that holds objects for proxies.
///
/// Clones share the server; dropping the last clone of an owner (from [`Manager::start`] or
/// [`ManagerBuilder::serve`]) stops it, as does [`shutdown`](Manager::shutdown). The server
/// process also dies with the process that started it.
///
/// # Examples
/// ```no_run
/// fn child(d: shmproc::manager::DictProxy<String, i32>) -> bool {
///     d.insert("answer".into(), 42).is_ok()
/// }
///
/// fn main() -> shmproc::Result<()> {
///     shmproc::init();
///     let m = shmproc::Manager::start()?;
///     let d = m.dict::<String, i32>()?;
///     assert!(shmproc::spawn(child, d.clone())?.join()?);
///     assert_eq!(d.get(&"answer".into())?, Some(42));
///     m.shutdown()
/// }
/// ```
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let owner = match &self.inner.owner {
            Owner::Process(p) => format!("process {}", p.pid()),
            Owner::InProcess { .. } => "this process".into(),
            Owner::None => "none".into(),
        };
        f.debug_struct("Manager")
            .field("server", &self.inner.client.endpoint)
            .field("owner", &owner)
            .finish()
    }
}

impl Manager {
    fn owning(client: Arc<Client>, owner: Owner) -> Manager {
        Manager {
            inner: Arc::new(Inner {
                client,
                owner,
                stopped: Mutex::new(false),
            }),
        }
    }

    /// Returns a builder (name, authkey, start method, address, registered types).
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            name: None,
            authkey: None,
            method: None,
            address: None,
            types: Vec::new(),
            pin_grace: server::PIN_GRACE,
        }
    }

    /// Starts a server process with the defaults (see [`ManagerBuilder::start`]).
    ///
    /// # Errors
    /// As for [`ManagerBuilder::start`].
    pub fn start() -> Result<Manager> {
        Manager::builder().start()
    }

    /// Runs a server in the current process on `address` (see [`ManagerBuilder::serve`]).
    ///
    /// # Errors
    /// As for [`ManagerBuilder::serve`]; [`Error::Unauthenticated`] never happens since a key
    /// is required.
    pub fn serve(address: impl Into<Address>, authkey: &[u8]) -> Result<Manager> {
        Manager::builder().serve(address, authkey)
    }

    /// Connects to a server at `address` (from this or another host), checking that it
    /// answers. Dropping the result does not stop the server.
    ///
    /// # Errors
    /// [`Error::AuthFailed`] for a wrong key; [`Error::Io`] if nothing listens there;
    /// [`Error::Timeout`] if the handshake does not finish.
    pub fn connect(address: impl Into<Address>, authkey: &[u8]) -> Result<Manager> {
        let endpoint = Endpoint::of(&address.into());
        let client = client_for(&endpoint, authkey);
        client.request(&Request::Ping)?;
        Ok(Manager {
            inner: Arc::new(Inner {
                client,
                owner: Owner::None,
                stopped: Mutex::new(false),
            }),
        })
    }

    /// Returns the address the server listens on (with the port chosen for a TCP port 0).
    pub fn address(&self) -> Address {
        self.inner.client.endpoint.address()
    }

    /// Returns the server process, for a manager started by [`Manager::start`].
    pub fn process(&self) -> Option<&Process> {
        match &self.inner.owner {
            Owner::Process(p) => Some(p),
            _ => None,
        }
    }

    /// Stops the server (waiting up to 5 s for its process to exit, then killing it). Proxies
    /// then fail with [`Error::Disconnected`]. Does nothing for a manager from
    /// [`connect`](Manager::connect) or one stopped already.
    ///
    /// # Errors
    /// [`Error::Io`] if the server process cannot be killed or reaped.
    pub fn shutdown(&self) -> Result<()> {
        self.inner.shutdown()
    }

    /// Blocks until the server stops: a server process until it exits, an in-process server
    /// ([`Manager::serve`]) until a client asked it to stop with
    /// [`stop_server`](Manager::stop_server) (this then finishes the shutdown). Returns at once
    /// for a manager from [`connect`](Manager::connect).
    ///
    /// # Errors
    /// [`Error::Io`] if the server process cannot be waited for.
    pub fn wait(&self) -> Result<()> {
        match &self.inner.owner {
            Owner::Process(p) => p.join().map(drop),
            Owner::InProcess { server, .. } => {
                while !server.stopping() {
                    std::thread::sleep(Duration::from_millis(50));
                }
                self.shutdown()
            }
            Owner::None => Ok(()),
        }
    }

    /// Asks the server to stop, from any manager connected to it (a remote client included,
    /// unlike [`shutdown`](Manager::shutdown), which only the owner's does).
    ///
    /// # Errors
    /// [`Error::Disconnected`] if the server is gone already.
    pub fn stop_server(&self) -> Result<()> {
        self.inner.client.request(&Request::Shutdown).map(drop)
    }

    /// Returns the server's shared namespace: one namespace per server, reachable by every
    /// client (a remote one included), for publishing proxies by name (Python registers a
    /// callable per shared object for this).
    ///
    /// # Examples
    /// ```no_run
    /// # fn main() -> shmproc::Result<()> {
    /// # let owner = shmproc::Manager::start()?;
    /// let q = owner.queue::<String>()?;
    /// owner.shared()?.set("jobs", &q)?;
    /// // In any client of the same server:
    /// let q: shmproc::manager::QueueProxy<String> = owner.shared()?.get("jobs")?.unwrap();
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// None today; kept fallible like the factories.
    pub fn shared(&self) -> Result<NamespaceProxy> {
        NamespaceProxy::from_remote(RemoteObject::attached(
            Arc::clone(&self.inner.client),
            server::SHARED_NAMESPACE,
            NamespaceProxy::KIND.to_owned(),
        ))
    }

    fn create_raw(&self, kind: &str, init: Vec<u8>) -> Result<RemoteObject> {
        let id: u64 = codec::from_bytes(&self.inner.client.request(&Request::Create {
            kind: kind.to_owned(),
            init,
        })?)?;
        Ok(RemoteObject::new(
            Arc::clone(&self.inner.client),
            id,
            kind.to_owned(),
        ))
    }

    /// Creates an empty dict in the server.
    ///
    /// # Errors
    /// [`Error::Disconnected`] if the server is gone (every factory).
    pub fn dict<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
    ) -> Result<DictProxy<K, V>> {
        let none: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        DictProxy::from_remote(self.create_raw(DictProxy::<K, V>::KIND, codec::to_bytes(&none)?)?)
    }

    /// Creates an empty list in the server.
    ///
    /// # Errors
    /// As for [`dict`](Manager::dict).
    pub fn list<T: Serialize + DeserializeOwned>(&self) -> Result<ListProxy<T>> {
        self.list_from(std::iter::empty())
    }

    /// Creates a list holding `items` in the server.
    ///
    /// # Errors
    /// As for [`dict`](Manager::dict); [`Error::Codec`] if an item does not encode.
    pub fn list_from<T: Serialize + DeserializeOwned>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ListProxy<T>> {
        let items = client::storing(|| {
            items
                .into_iter()
                .map(|v| codec::to_bytes(&v))
                .collect::<Result<Vec<_>>>()
        })?;
        ListProxy::from_remote(self.create_raw(ListProxy::<T>::KIND, codec::to_bytes(&items)?)?)
    }

    /// Creates a value in the server.
    ///
    /// # Errors
    /// As for [`dict`](Manager::dict).
    pub fn value<T: Serialize + DeserializeOwned>(&self, value: T) -> Result<ValueProxy<T>> {
        let init = client::storing(|| codec::to_bytes(&codec::to_bytes(&value)?))?;
        ValueProxy::from_remote(self.create_raw(ValueProxy::<T>::KIND, init)?)
    }

    /// Creates an array of `n` default values in the server.
    ///
    /// # Errors
    /// As for [`dict`](Manager::dict).
    pub fn array<T: Serialize + DeserializeOwned + Default>(
        &self,
        n: usize,
    ) -> Result<ArrayProxy<T>> {
        let one = codec::to_bytes(&T::default())?;
        let init = codec::to_bytes(&vec![one; n])?;
        ArrayProxy::from_remote(self.create_raw(ArrayProxy::<T>::KIND, init)?)
    }

    /// Creates an array holding `items` in the server.
    ///
    /// # Errors
    /// As for [`dict`](Manager::dict).
    pub fn array_from<T: Serialize + DeserializeOwned>(
        &self,
        items: &[T],
    ) -> Result<ArrayProxy<T>> {
        let items = client::storing(|| {
            items
                .iter()
                .map(codec::to_bytes)
                .collect::<Result<Vec<_>>>()
        })?;
        ArrayProxy::from_remote(self.create_raw(ArrayProxy::<T>::KIND, codec::to_bytes(&items)?)?)
    }

    /// Creates an empty namespace in the server.
    ///
    /// # Errors
    /// As for [`dict`](Manager::dict).
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        NamespaceProxy::from_remote(self.create_raw(NamespaceProxy::KIND, Vec::new())?)
    }

    /// Creates a lock in the server.
    ///
    /// # Errors
    /// As for [`dict`](Manager::dict).
    pub fn lock(&self) -> Result<LockProxy> {
        LockProxy::from_remote(self.create_raw(LockProxy::KIND, Vec::new())?)
    }

    /// Creates a re-entrant lock in the server.
    ///
    /// # Errors
    /// As for [`dict`](Manager::dict).
    pub fn rlock(&self) -> Result<RLockProxy> {
        RLockProxy::from_remote(self.create_raw(RLockProxy::KIND, Vec::new())?)
    }

    /// Creates a semaphore with `n` units in the server.
    ///
    /// # Errors
    /// As for [`dict`](Manager::dict).
    pub fn semaphore(&self, n: u32) -> Result<SemaphoreProxy> {
        SemaphoreProxy::from_remote(self.create_raw(SemaphoreProxy::KIND, codec::to_bytes(&n)?)?)
    }

    /// Creates a bounded semaphore with `n` units (and at most `n`) in the server.
    ///
    /// # Errors
    /// As for [`dict`](Manager::dict).
    pub fn bounded_semaphore(&self, n: u32) -> Result<BoundedSemaphoreProxy> {
        BoundedSemaphoreProxy::from_remote(
            self.create_raw(BoundedSemaphoreProxy::KIND, codec::to_bytes(&n)?)?,
        )
    }

    /// Creates a condition variable (with its own re-entrant lock) in the server.
    ///
    /// # Errors
    /// As for [`dict`](Manager::dict).
    pub fn condition(&self) -> Result<ConditionProxy> {
        ConditionProxy::from_remote(self.create_raw(ConditionProxy::KIND, Vec::new())?)
    }

    /// Creates an event in the server.
    ///
    /// # Errors
    /// As for [`dict`](Manager::dict).
    pub fn event(&self) -> Result<EventProxy> {
        EventProxy::from_remote(self.create_raw(EventProxy::KIND, Vec::new())?)
    }

    /// Creates a barrier for `parties` parties in the server.
    ///
    /// # Errors
    /// As for [`dict`](Manager::dict); [`Error::Remote`] for zero parties.
    pub fn barrier(&self, parties: u32) -> Result<BarrierProxy> {
        BarrierProxy::from_remote(self.create_raw(BarrierProxy::KIND, codec::to_bytes(&parties)?)?)
    }

    /// Creates an unbounded queue in the server.
    ///
    /// # Errors
    /// As for [`dict`](Manager::dict).
    pub fn queue<T: Serialize + DeserializeOwned>(&self) -> Result<QueueProxy<T>> {
        QueueProxy::from_remote(
            self.create_raw(QueueProxy::<T>::KIND, codec::to_bytes(&None::<u64>)?)?,
        )
    }

    /// Creates a queue holding at most `capacity` items in the server.
    ///
    /// # Errors
    /// As for [`dict`](Manager::dict).
    pub fn queue_with_capacity<T: Serialize + DeserializeOwned>(
        &self,
        capacity: usize,
    ) -> Result<QueueProxy<T>> {
        let cap = Some(capacity as u64);
        QueueProxy::from_remote(self.create_raw(QueueProxy::<T>::KIND, codec::to_bytes(&cap)?)?)
    }

    /// Creates an unbounded joinable queue in the server.
    ///
    /// # Errors
    /// As for [`dict`](Manager::dict).
    pub fn joinable_queue<T: Serialize + DeserializeOwned>(&self) -> Result<JoinableQueueProxy<T>> {
        JoinableQueueProxy::from_remote(self.create_raw(
            JoinableQueueProxy::<T>::KIND,
            codec::to_bytes(&None::<u64>)?,
        )?)
    }

    /// Creates a value of the registered type `T` in the server and returns its proxy.
    ///
    /// # Errors
    /// [`Error::Remote`] with [`RemoteErrorKind::UnknownType`](crate::RemoteErrorKind) if the
    /// server has no type registered under `T::TYPE_NAME`; as for [`dict`](Manager::dict).
    pub fn create<T: Managed>(&self, value: T) -> Result<T::Proxy> {
        let remote = self.create_raw(T::TYPE_NAME, codec::to_bytes(&value)?)?;
        Ok(T::Proxy::from_remote(remote))
    }
}
