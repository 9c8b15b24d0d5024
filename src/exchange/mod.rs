//! pprocess's API: processes started with a [`Channel`] back to their creator, an
//! [`Exchange`] that watches many channels and caps how many run at once, and the parallel
//! map built on them ([`pmap`], [`Map`], [`Queue`], over reusable [`Workers`]).
//!
//! | pprocess | shmproc |
//! |---|---|
//! | `channel = start(fn, arg)` | [`start`]`(f, arg)`, `f: fn(Channel, A)` |
//! | `channel = create(); if channel.pid == 0: …` | [`create`] → [`Forked::Child`] / [`Forked::Parent`] |
//! | `channel.send(x)`, `channel.receive()` | [`Channel::send`], [`Channel::receive`] |
//! | `Exchange(channels, limit=n)` | [`Exchange::from_channels`], [`Exchange::with_limit`] |
//! | `exchange.ready(timeout)` | [`Exchange::ready`]`(Some(duration))` |
//! | `class MyExchange(Exchange): def store_data(self, ch)` | [`Exchange::with_store`] and a [`StoreData`] (a closure or your type) |
//! | `exchange.start(fn, arg)` | [`Exchange::start`] (queues while at the limit) |
//! | `waitall()` | [`waitall`] |
//! | `pmap(fn, seq, limit=n)`, `Map`, `Queue` | [`pmap`], [`Map`], [`Queue`] |
//!
//! Functions follow shmproc's target rule: they are `fn` items (or non-capturing closures)
//! handed to the child in its private start-up message, never sent as messages.
//!
//! # Examples
//! ```no_run
//! use shmproc::exchange::{self, Channel, Exchange};
//!
//! fn square(ch: Channel, i: u64) {
//!     ch.send(&(i, i * i)).unwrap();
//! }
//!
//! fn main() -> shmproc::Result<()> {
//!     shmproc::init();
//!     let mut results = Vec::new();
//!     let mut ex = Exchange::with_limit(3).with_store(|ch: &mut Channel| {
//!         results.push(ch.receive::<(u64, u64)>()?);
//!         Ok(())
//!     });
//!     for i in 0..12 {
//!         ex.start(square, i)?;
//!     }
//!     ex.finish()?;
//!     drop(ex);
//!     assert_eq!(results.len(), 12);
//!     Ok(())
//! }
//! ```

mod channel;
mod workers;

pub use channel::Channel;
use channel::Peek;
pub use workers::{Map, Queue, Workers, pmap};

use crate::connection::{Waitable, pipe, wait};
use crate::error::Result;
use crate::process::{Driver, ForkedHere, Process, fork_here, spawn_driven};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Children started by [`start`] and [`create`] that [`waitall`] has not reaped yet, with
/// the pid of the process that started them (a forked child inherits this list in memory,
/// but not the children in it).
static STARTED: Mutex<Vec<(u32, Process)>> = Mutex::new(Vec::new());

fn remember(p: &Process) {
    let me = std::process::id();
    let mut started = STARTED.lock().unwrap_or_else(PoisonError::into_inner);
    started.retain(|(by, p)| *by == me && p.exitcode().is_none());
    started.push((me, p.share()));
}

/// Drops the registry's handle to a child its channel reaped.
pub(crate) fn forget(pid: i32) {
    STARTED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|(_, p)| p.pid() != pid);
}

/// Runs `f(channel, args)` in the child of a [`start`].
struct StartDriver<A>(PhantomData<A>);

impl<A: DeserializeOwned + 'static> Driver for StartDriver<A> {
    type Function = fn(Channel, A);
    type Args = (Channel, A);
    fn drive(f: fn(Channel, A), (channel, args): (Channel, A)) {
        f(channel, args);
    }
}

/// Starts a child process that runs `f(channel, args)` and returns the creator's side of the
/// channel (pprocess's `start(callable, *args)`).
///
/// The child uses the current [`start_method`](crate::start_method). `f` returns nothing;
/// it talks through its channel. If `f` panics, the creator's
/// [`receive`](Channel::receive) reports [`Error::ChildPanicked`](crate::Error::ChildPanicked)
/// with the message once every message sent before the panic was received.
///
/// # Errors
/// As for [`ProcessBuilder::start`](crate::ProcessBuilder::start); the errors of
/// [`pipe`].
pub fn start<A>(f: fn(Channel, A), args: A) -> Result<Channel>
where
    A: Serialize + DeserializeOwned + Send + 'static,
{
    let (mine, theirs) = pipe()?;
    let handle = spawn_driven::<StartDriver<A>>(f, (Channel::child_side(theirs), args))?;
    remember(handle.process());
    Ok(Channel::started(mine, handle))
}

/// The two sides of a [`create`].
#[derive(Debug)]
pub enum Forked {
    /// In the creating process: the channel to the child (its [`pid`](Channel::pid) is the
    /// child's).
    Parent(Channel),
    /// In the created process: the channel to the creator (pid 0).
    Child(Channel),
}

/// Forks this process, which continues in both (pprocess's `create()`, `os.fork` style).
///
/// The child should end with [`exit`] when its work is done, so that it does not go on to
/// run the creator's code (Rust has no exception to unwind it out of the caller's frames).
///
/// # Errors
/// [`Error::ForkWhileThreaded`](crate::Error::ForkWhileThreaded) unless this process is
/// single-threaded, as for the `Fork` start method;
/// [`Error::NotInitialized`](crate::Error::NotInitialized) without [`init`](crate::init);
/// [`Error::Io`](crate::Error::Io) if `fork` fails; the errors of [`pipe`].
pub fn create() -> Result<Forked> {
    let (mine, theirs) = pipe()?;
    match fork_here(&theirs)? {
        ForkedHere::Parent(process) => {
            drop(theirs);
            remember(&process);
            Ok(Forked::Parent(Channel::forked(mine, process)))
        }
        ForkedHere::Child(conn) => {
            // Copies of the creator's handles: dropping them here closes nothing of his.
            drop((mine, theirs));
            Ok(Forked::Child(Channel::child_side(conn)))
        }
    }
}

/// Ends the calling process at once with `code`, after flushing standard output and error;
/// for a [`create`] child. Destructors do not run: close or drop channels first.
pub fn exit(code: i32) -> ! {
    crate::process::init::exit(code)
}

/// Waits for every child started by [`start`] or [`create`] to end, and reaps it
/// (pprocess's `waitall()`).
///
/// # Errors
/// [`Error::Io`](crate::Error::Io) if waiting fails.
pub fn waitall() -> Result<()> {
    let started = std::mem::take(&mut *STARTED.lock().unwrap_or_else(PoisonError::into_inner));
    let me = std::process::id();
    for (by, p) in started {
        if by == me {
            p.join()?;
        }
    }
    Ok(())
}

/// What [`Exchange::wait`] and [`Exchange::finish`] do with each ready channel
/// (pprocess's `store_data` method, which a subclass of `Exchange` defines).
///
/// Closures `FnMut(&mut Channel) -> Result<()>` implement it. The channel has a message to
/// [`receive`](Channel::receive), or its child ended with an error that `receive` returns.
pub trait StoreData {
    /// Receives from `channel` and keeps what arrived.
    ///
    /// # Errors
    /// Whatever the implementation reports; `wait`/`finish` return it.
    fn store_data(&mut self, channel: &mut Channel) -> Result<()>;
}

impl<F: FnMut(&mut Channel) -> Result<()>> StoreData for F {
    fn store_data(&mut self, channel: &mut Channel) -> Result<()> {
        self(channel)
    }
}

/// The store of an [`Exchange`] without one: ready messages are received and dropped.
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl StoreData for Discard {
    fn store_data(&mut self, channel: &mut Channel) -> Result<()> {
        channel.receive_raw().map(drop)
    }
}

type Queued = Box<dyn FnOnce() -> Result<Channel> + Send>;

/// Watches many channels: which have data ([`ready`](Exchange::ready)), which children ended
/// (removed and reaped), and how many may run at once ([`with_limit`](Exchange::with_limit),
/// [`start`](Exchange::start), [`add_wait`](Exchange::add_wait)). pprocess's `Exchange`.
///
/// The "convenient" form gives it a [`StoreData`] ([`with_store`](Exchange::with_store)):
/// then [`wait`](Exchange::wait) makes room under the limit and [`finish`](Exchange::finish)
/// runs everything to the end, handing each ready channel to the store.
pub struct Exchange<S = Discard> {
    channels: Vec<Channel>,
    /// Channels whose child ended, listed by the last `ready` (already reaped).
    finished: Vec<Channel>,
    limit: Option<usize>,
    queued: VecDeque<Queued>,
    store: S,
}

impl<S> fmt::Debug for Exchange<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("channels", &self.channels)
            .field("limit", &self.limit)
            .field("queued", &self.queued.len())
            .finish_non_exhaustive()
    }
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange::new()
    }
}

impl Exchange {
    /// An empty exchange without a limit.
    pub fn new() -> Exchange {
        Exchange {
            channels: Vec::new(),
            finished: Vec::new(),
            limit: None,
            queued: VecDeque::new(),
            store: Discard,
        }
    }

    /// An exchange watching `channels`.
    pub fn from_channels(channels: impl IntoIterator<Item = Channel>) -> Exchange {
        Exchange {
            channels: channels.into_iter().collect(),
            ..Exchange::new()
        }
    }

    /// An empty exchange that runs at most `limit` channels at once (at least 1).
    pub fn with_limit(limit: usize) -> Exchange {
        Exchange {
            limit: Some(limit.max(1)),
            ..Exchange::new()
        }
    }

    /// Gives this exchange a store for [`wait`](Exchange::wait) and
    /// [`finish`](Exchange::finish).
    pub fn with_store<T: StoreData>(self, store: T) -> Exchange<T> {
        Exchange {
            channels: self.channels,
            finished: self.finished,
            limit: self.limit,
            queued: self.queued,
            store,
        }
    }
}

impl From<Vec<Channel>> for Exchange {
    fn from(channels: Vec<Channel>) -> Self {
        Exchange::from_channels(channels)
    }
}

impl<S: StoreData> Exchange<S> {
    /// The store.
    pub fn store(&mut self) -> &mut S {
        &mut self.store
    }

    /// Returns the store (after [`finish`](Exchange::finish), typically).
    pub fn into_store(self) -> S {
        self.store
    }

    /// The limit, if any.
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }

    /// Watches `channel` too (even beyond the limit; see [`add_wait`](Exchange::add_wait)).
    pub fn add(&mut self, channel: Channel) {
        self.channels.push(channel);
    }

    /// Waits for room under the limit ([`wait`](Exchange::wait)), then adds `channel`.
    ///
    /// # Errors
    /// As for [`wait`](Exchange::wait).
    pub fn add_wait(&mut self, channel: Channel) -> Result<()> {
        self.wait()?;
        self.add(channel);
        Ok(())
    }

    /// The channels being watched (pprocess's `active()`); empty when the exchange is not
    /// active.
    pub fn active(&self) -> &[Channel] {
        &self.channels
    }

    /// The number of calls [`start`](Exchange::start) queued that have not started yet.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// Stops watching the channel of child `pid` and returns it (neither closed nor reaped).
    pub fn remove(&mut self, pid: i32) -> Option<Channel> {
        let i = self.channels.iter().position(|c| c.pid() == pid)?;
        Some(self.channels.remove(i))
    }

    fn has_room(&self) -> bool {
        self.limit.is_none_or(|l| self.channels.len() < l)
    }

    /// Starts `f(channel, args)` in a child now and watches its channel, or, while the
    /// exchange is at its limit, queues the call; queued calls start in order as
    /// [`ready`](Exchange::ready) removes ended channels.
    ///
    /// # Errors
    /// As for [`start`](start()) when it starts now.
    pub fn start<A>(&mut self, f: fn(Channel, A), args: A) -> Result<()>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        if self.has_room() && self.queued.is_empty() {
            self.channels.push(start(f, args)?);
        } else {
            self.queued.push_back(Box::new(move || start(f, args)));
        }
        Ok(())
    }

    fn start_queued(&mut self) -> Result<()> {
        while self.has_room() {
            let Some(call) = self.queued.pop_front() else {
                break;
            };
            self.channels.push(call()?);
        }
        Ok(())
    }

    /// Waits up to `timeout` (`None`: until something happens; `Some(Duration::ZERO)`: not
    /// at all) and returns the channels that are ready: those with a message to receive, and
    /// those whose child ended, which are removed from the exchange and reaped (their
    /// [`receive`](Channel::receive) returns any messages left and then how the child ended).
    /// Queued [`start`](Exchange::start) calls then start as room allows.
    ///
    /// A zero timeout checks every channel once and never sleeps; a child killed by a signal
    /// (which closes nothing) is seen through the liveness check of its channel.
    ///
    /// # Errors
    /// As for [`connection::wait`](crate::connection::wait); the errors of starting a
    /// queued call.
    pub fn ready(&mut self, timeout: Option<Duration>) -> Result<Vec<&mut Channel>> {
        let ready = self.ready_indices(timeout)?;
        let finished = &mut self.finished;
        let live = self
            .channels
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| ready.binary_search(i).is_ok())
            .map(|(_, c)| c);
        Ok(live.chain(finished.iter_mut()).collect())
    }

    /// Like [`ready`](Exchange::ready); returns the indices into `channels` of the live
    /// ready channels, sorted, and leaves the ended ones in `finished`.
    fn ready_indices(&mut self, timeout: Option<Duration>) -> Result<Vec<usize>> {
        self.finished.clear();
        self.start_queued()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if self.channels.is_empty() {
                return Ok(Vec::new());
            }
            let mut candidates: Vec<usize> = Vec::new();
            let mut map = Vec::new();
            let mut waitables: Vec<Waitable<'_>> = Vec::new();
            for (i, c) in self.channels.iter().enumerate() {
                match c.waitable() {
                    None => candidates.push(i),
                    Some(w) => {
                        map.push(i);
                        waitables.push(w);
                    }
                }
            }
            let left = match deadline {
                _ if !candidates.is_empty() => Some(Duration::ZERO),
                Some(d) => Some(d.saturating_duration_since(Instant::now())),
                None => None,
            };
            for k in wait(&waitables, left)? {
                if let Some(&i) = map.get(k) {
                    candidates.push(i);
                }
            }
            drop(waitables);
            candidates.sort_unstable();
            let mut live = Vec::new();
            let mut ended = Vec::new();
            for i in candidates {
                let Some(c) = self.channels.get_mut(i) else {
                    continue;
                };
                match c.peek()? {
                    Peek::Message => live.push(i),
                    Peek::Ended => ended.push(i),
                    Peek::Nothing => {}
                }
            }
            // Remove ended channels from the back so the live indices below them stay valid.
            for &i in ended.iter().rev() {
                self.finished.push(self.channels.remove(i));
                for l in live.iter_mut() {
                    if *l > i {
                        *l -= 1;
                    }
                }
            }
            self.finished.reverse();
            self.start_queued()?;
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            if !live.is_empty() || !self.finished.is_empty() || expired {
                return Ok(live);
            }
        }
    }

    /// Handles one round of ready channels with the store: every live ready channel, and
    /// every ended one whose child failed.
    fn store_round(&mut self, timeout: Option<Duration>) -> Result<()> {
        let live = self.ready_indices(timeout)?;
        deliver(
            &mut self.store,
            &mut self.channels,
            &mut self.finished,
            live,
        )
    }

    /// Like [`finish`](Exchange::finish), with `store` instead of the exchange's own store
    /// (DESIGN's `ex.finish(|ch| store(ch))` spelling).
    ///
    /// # Errors
    /// What `store` returns; as for [`ready`](Exchange::ready).
    pub fn finish_with(&mut self, mut store: impl StoreData) -> Result<()> {
        while !self.channels.is_empty() || !self.queued.is_empty() {
            let live = self.ready_indices(None)?;
            deliver(&mut store, &mut self.channels, &mut self.finished, live)?;
        }
        self.finished.clear();
        Ok(())
    }

    /// Stores ready data until there is room under the limit (pprocess's `wait`); returns at
    /// once without a limit.
    ///
    /// # Errors
    /// What the store returns; as for [`ready`](Exchange::ready).
    pub fn wait(&mut self) -> Result<()> {
        while self.limit.is_some_and(|l| self.channels.len() >= l) {
            self.store_round(None)?;
        }
        Ok(())
    }

    /// Stores ready data until every channel ended and every queued call ran (pprocess's
    /// `finish`).
    ///
    /// # Errors
    /// What the store returns; as for [`ready`](Exchange::ready).
    pub fn finish(&mut self) -> Result<()> {
        while !self.channels.is_empty() || !self.queued.is_empty() {
            self.store_round(None)?;
        }
        self.finished.clear();
        Ok(())
    }
}

/// Hands `store` every live ready channel (indices `live`) and every ended one with a
/// message left or a failure to report.
fn deliver(
    store: &mut impl StoreData,
    channels: &mut [Channel],
    finished: &mut [Channel],
    live: Vec<usize>,
) -> Result<()> {
    for i in live {
        if let Some(c) = channels.get_mut(i) {
            store.store_data(c)?;
        }
    }
    for c in finished.iter_mut() {
        if c.peek()? == Peek::Message || c.has_failure() {
            store.store_data(c)?;
        }
    }
    Ok(())
}
