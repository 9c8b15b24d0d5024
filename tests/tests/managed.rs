//! `#[shmproc::managed]` types registered with a manager, created in its server process and
//! called through their generated proxies: every kind of method, typed errors, unknown
//! methods, bad arguments, and panics caught by the server, which goes on serving.

// Tests may unwrap (STYLE section 3).
#![allow(clippy::unwrap_used)]

use serde::{Deserialize, Serialize};
use shmproc::manager::{DispatchError, Managed, ManagedProxy, RemoteObject};
use shmproc::testing::watchdog;
use shmproc::{Error, Manager, RemoteErrorKind};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

/// How long one test may run before its watchdog aborts it.
const LIMIT: Duration = Duration::from_secs(240);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    n: u64,
    log: Vec<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum CounterError {
    Underflow { short_by: u64 },
    Frozen,
}

impl fmt::Display for CounterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CounterError::Underflow { short_by } => write!(f, "short by {short_by}"),
            CounterError::Frozen => write!(f, "frozen"),
        }
    }
}

#[shmproc::managed]
impl Counter {
    /// Makes a counter at zero (no receiver: not managed).
    fn new() -> Self {
        Counter {
            n: 0,
            log: Vec::new(),
        }
    }

    /// Adds `by`, returns the new count.
    pub fn add(&mut self, by: u64) -> u64 {
        self.n += by;
        self.n
    }

    pub fn get(&self) -> u64 {
        self.n
    }

    pub fn checked_sub(&mut self, by: u64) -> Result<u64, CounterError> {
        if by == 13 {
            return Err(CounterError::Frozen);
        }
        self.n = self
            .n
            .checked_sub(by)
            .ok_or_else(|| CounterError::Underflow {
                short_by: by - self.n,
            })?;
        Ok(self.n)
    }

    pub fn reset(&mut self) {
        self.n = 0;
    }

    pub fn note(&mut self, text: &str, tags: &[u8], extra: &(u8, u8)) -> usize {
        self.log.push(format!("{text}{tags:?}{extra:?}"));
        self.log.len()
    }

    pub fn last_note(&self) -> &str {
        self.log.last().map_or("", String::as_str)
    }

    pub fn notes(&self) -> &[String] {
        &self.log
    }

    pub fn snapshot(&self) -> Self {
        self.clone()
    }

    pub fn merge(&mut self, other: Self, (a, b): (u64, u64)) -> std::result::Result<(), String> {
        self.n += other.n + a + b;
        Ok(())
    }

    pub(crate) fn explode(&self, why: String) -> u8 {
        panic!("exploded: {why}")
    }

    // Private: not managed, no proxy method.
    #[allow(dead_code)]
    fn helper(&self) -> u64 {
        self.n * 2
    }
}

/// Starts a manager (a server process) serving every managed type of this file.
fn manager() -> Manager {
    Manager::builder()
        .register::<Counter>()
        .register::<named::Registry>()
        .register::<named::Grid>()
        .register::<named::Greeter>()
        .start()
        .unwrap()
}

/// A manager and a new counter held by its server; the counter lives as long as the manager.
fn counter() -> (Manager, CounterProxy) {
    let m = manager();
    let c = m.create(Counter::new()).unwrap();
    (m, c)
}

#[test]
fn every_method_kind_runs_on_the_managed_value() {
    watchdog(LIMIT, "managed method kinds", || {
        let (m, c) = counter();
        // The value lives in the server, another process.
        let server = m.process().unwrap().pid();
        assert_ne!(i64::from(server), i64::from(std::process::id()));
        assert_eq!(c.add(5).unwrap(), 5);
        assert_eq!(c.add(2).unwrap(), 7);
        assert_eq!(c.get().unwrap(), 7);
        assert_eq!(c.checked_sub(3).unwrap(), 4);
        c.reset().unwrap();
        assert_eq!(c.get().unwrap(), 0);
        assert_eq!(c.note("a", &[1, 2], &(3, 4)).unwrap(), 1);
        let owned_tags = vec![9u8];
        assert_eq!(c.note(&String::from("b"), &owned_tags, &(0, 0)).unwrap(), 2);
        assert_eq!(c.last_note().unwrap(), "b[9](0, 0)");
        assert_eq!(
            c.notes().unwrap(),
            vec!["a[1, 2](3, 4)".to_owned(), "b[9](0, 0)".to_owned()]
        );
        c.add(1).unwrap();
        let snap: Counter = c.snapshot().unwrap();
        assert_eq!(snap.n, 1);
        c.merge(snap, (10, 100)).unwrap();
        assert_eq!(c.get().unwrap(), 112);
        m.shutdown().unwrap();
    });
}

#[test]
fn proxies_are_clone_serde_send_sync_and_debug() {
    fn check<T: Send + Sync + Clone + fmt::Debug + Serialize + serde::de::DeserializeOwned>() {}
    fn proxy_of<T: Managed<Proxy = P>, P: ManagedProxy>() {}
    check::<CounterProxy>();
    check::<RemoteObject>();
    proxy_of::<Counter, CounterProxy>();
}

#[test]
fn clones_and_decoded_proxies_call_the_same_object() {
    watchdog(LIMIT, "managed clones", || {
        let (m, c) = counter();
        let other = c.clone();
        other.add(4).unwrap();
        assert_eq!(c.get().unwrap(), 4);
        let bytes = shmproc::codec::to_bytes(&c).unwrap();
        let decoded: CounterProxy = shmproc::codec::from_bytes(&bytes).unwrap();
        decoded.add(1).unwrap();
        assert_eq!(c.get().unwrap(), 5);
        // A remote object of another type does not decode as a `CounterProxy`.
        let registry = m.create(named::Registry::default()).unwrap();
        let bytes = shmproc::codec::to_bytes(&registry).unwrap();
        let err = shmproc::codec::from_bytes::<CounterProxy>(&bytes).unwrap_err();
        assert!(matches!(err, Error::Codec { .. }), "{err:?}");
        let decoded = shmproc::codec::from_bytes::<named::RegistryProxy>(&bytes).unwrap();
        assert_eq!(decoded.insert("x").unwrap(), Some(0));
        assert_eq!(registry.first().unwrap().as_deref(), Some("x"));
        assert!(format!("{c:?}").starts_with("CounterProxy(RemoteObject"));
        m.shutdown().unwrap();
    });
}

#[test]
fn method_errors_come_back_typed() {
    watchdog(LIMIT, "managed method errors", || {
        let (m, c) = counter();
        c.add(2).unwrap();
        let err = c.checked_sub(5).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Remote { kind: RemoteErrorKind::Method, message, .. } if message == "short by 3"
            ),
            "{err:?}"
        );
        assert_eq!(
            err.remote_error::<CounterError>(),
            Some(CounterError::Underflow { short_by: 3 })
        );
        let err = c.checked_sub(13).unwrap_err();
        assert_eq!(
            err.remote_error::<CounterError>(),
            Some(CounterError::Frozen)
        );
        assert_eq!(err.to_string(), "remote call failed (Method): frozen");
        // The failed calls changed nothing.
        assert_eq!(c.get().unwrap(), 2);
        m.shutdown().unwrap();
    });
}

#[test]
fn dispatch_reports_unknown_methods_and_bad_arguments() {
    let mut value = Counter::new();
    assert_eq!(<Counter as Managed>::TYPE_NAME, "Counter");
    // Private methods and associated functions are not managed.
    for name in ["helper", "new", "Add", ""] {
        assert_eq!(
            value.dispatch(name, &[]),
            Err(DispatchError::UnknownMethod {
                type_name: "Counter".to_owned(),
                method: name.to_owned(),
            })
        );
    }
    // Wrong arity, wrong type, trailing bytes.
    let cases: [Vec<u8>; 4] = [
        shmproc::codec::to_bytes(&()).unwrap(),
        shmproc::codec::to_bytes(&("five",)).unwrap(),
        shmproc::codec::to_bytes(&(5u64, 6u64)).unwrap(),
        vec![0xff; 11],
    ];
    for args in &cases {
        let r = value.dispatch("add", args);
        assert!(
            matches!(&r, Err(DispatchError::BadArguments { method, .. }) if method == "add"),
            "{args:?}: {r:?}"
        );
    }
    assert_eq!(value.n, 0);
    let ok = value
        .dispatch("add", &shmproc::codec::to_bytes(&(5u64,)).unwrap())
        .unwrap();
    assert_eq!(shmproc::codec::from_bytes::<u64>(&ok).unwrap(), 5);

    // Through a proxy, as `Error::Remote`.
    watchdog(LIMIT, "managed unknown methods", || {
        let (m, c) = counter();
        let err = ManagedProxy::remote(&c)
            .call::<_, u64>("helper", &())
            .unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Remote {
                    kind: RemoteErrorKind::UnknownMethod,
                    payload: None,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.remote_error::<CounterError>(), None);
        let err = ManagedProxy::remote(&c)
            .call::<_, u64>("add", &("x", 1))
            .unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Remote {
                    kind: RemoteErrorKind::BadArguments,
                    ..
                }
            ),
            "{err:?}"
        );
        // Neither call reached the value.
        assert_eq!(c.get().unwrap(), 0);
        m.shutdown().unwrap();
    });
}

#[test]
fn a_panicking_method_is_caught_by_the_server_which_goes_on_serving() {
    // Called directly, `dispatch` lets the panic unwind into its caller.
    let mut value = Counter::new();
    let args = shmproc::codec::to_bytes(&("why",)).unwrap();
    let panic = catch_unwind(AssertUnwindSafe(|| value.dispatch("explode", &args))).unwrap_err();
    assert_eq!(panic.downcast_ref::<String>().unwrap(), "exploded: why");

    // In a server, the panic comes back as an error with its message.
    watchdog(LIMIT, "managed panic", || {
        let (m, c) = counter();
        let other = m.create(Counter::new()).unwrap();
        c.add(3).unwrap();
        other.add(10).unwrap();
        let err = c.explode("again".to_owned()).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Remote {
                    kind: RemoteErrorKind::Panicked,
                    message,
                    payload: None,
                } if message.contains("exploded: again")
            ),
            "{err:?}"
        );
        assert_eq!(err.remote_error::<CounterError>(), None);
        // The object, its neighbours and the server are still usable.
        assert_eq!(c.add(1).unwrap(), 4);
        assert_eq!(other.get().unwrap(), 10);
        let later = m.create(Counter::new()).unwrap();
        assert_eq!(later.add(2).unwrap(), 2);
        m.shutdown().unwrap();
    });
}

/// Options, `Self` in signatures, and lifetimes.
mod named {
    use super::{LIMIT, manager};
    use serde::{Deserialize, Serialize};
    use shmproc::manager::{Managed, ManagedProxy};
    use shmproc::testing::watchdog;

    #[derive(Default, Serialize, Deserialize)]
    pub(crate) struct Registry {
        names: Vec<String>,
    }

    #[shmproc::managed(name = "tests::Registry")]
    impl Registry {
        // An explicit lifetime is copied to the proxy method.
        #[allow(clippy::needless_lifetimes)]
        pub(crate) fn insert<'a>(&mut self, name: &'a str) -> Option<usize> {
            if self.names.iter().any(|n| n == name) {
                return None;
            }
            self.names.push(name.to_owned());
            Some(self.names.len() - 1)
        }

        /// A raw identifier is called by its plain name.
        pub(crate) fn r#type(&self) -> &'static str {
            "registry"
        }

        pub(crate) fn first(&self) -> Option<String> {
            self.names.first().cloned()
        }

        pub(crate) fn longest<'a>(&'a self, other: &'a str) -> &'a str {
            self.names
                .iter()
                .map(String::as_str)
                .chain([other])
                .max_by_key(|n| n.len())
                .unwrap_or(other)
        }
    }

    #[derive(Serialize, Deserialize)]
    pub(crate) struct Grid {
        cells: Vec<u8>,
    }

    // The explicit receiver types are what this test is about.
    #[allow(clippy::needless_arbitrary_self_type)]
    #[shmproc::managed]
    impl Grid {
        const WIDTH: usize = 3;

        /// Typed receivers, and `Self` paths in the signature.
        pub(crate) fn set_row(self: &mut Self, row: [u8; Self::WIDTH]) -> Option<Self> {
            let old = Grid {
                cells: self.cells.clone(),
            };
            self.cells = row.to_vec();
            Some(old)
        }

        pub(crate) fn row(self: &Self) -> [u8; Grid::WIDTH] {
            let mut row = [0; Self::WIDTH];
            row.copy_from_slice(&self.cells[..Self::WIDTH]);
            row
        }
    }

    /// Methods written by a `macro_rules!`, whose types arrive wrapped in invisible groups.
    macro_rules! greeter {
        ($name:ident, $arg:ty, $ret:ty) => {
            #[derive(Serialize, Deserialize)]
            pub(crate) struct $name;

            #[shmproc::managed]
            impl $name {
                pub(crate) fn greet(&self, who: $arg) -> $ret {
                    format!("hello {who}")
                }
            }
        };
    }

    greeter!(Greeter, &str, String);

    #[test]
    fn types_from_macro_rules() {
        watchdog(LIMIT, "managed macro_rules", || {
            let m = manager();
            let g: GreeterProxy = m.create(Greeter).unwrap();
            assert_eq!(g.greet("you").unwrap(), "hello you");
            m.shutdown().unwrap();
        });
    }

    #[test]
    fn typed_receivers_and_self_paths() {
        watchdog(LIMIT, "managed typed receivers", || {
            let m = manager();
            let g: GridProxy = m
                .create(Grid {
                    cells: vec![0, 0, 0],
                })
                .unwrap();
            let old = g.set_row([1, 2, 3]).unwrap().unwrap();
            assert_eq!(old.cells, [0, 0, 0]);
            assert_eq!(g.row().unwrap(), [1, 2, 3]);
            m.shutdown().unwrap();
        });
    }

    #[test]
    fn name_option_and_lifetimes() {
        assert_eq!(<Registry as Managed>::TYPE_NAME, "tests::Registry");
        watchdog(LIMIT, "managed name option", || {
            let m = manager();
            let r: RegistryProxy = m.create(Registry { names: vec![] }).unwrap();
            assert_eq!(ManagedProxy::remote(&r).type_name(), "tests::Registry");
            assert_eq!(r.insert("a").unwrap(), Some(0));
            assert_eq!(r.insert("b").unwrap(), Some(1));
            assert_eq!(r.insert("a").unwrap(), None);
            assert_eq!(r.first().unwrap().as_deref(), Some("a"));
            assert_eq!(r.r#type().unwrap(), "registry");
            assert_eq!(
                ManagedProxy::call_remote::<_, String>(&r, "type", &()).unwrap(),
                "registry"
            );
            r.insert("ccc").unwrap();
            assert_eq!(r.longest("dd").unwrap(), "ccc");
            assert_eq!(r.longest("eeee").unwrap(), "eeee");
            m.shutdown().unwrap();
        });
    }
}

// ------------------------------------------------------------------ in-process servers

/// How many `Tracked` values were dropped in this process.
static TRACKED_DROPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A value that counts its drops, to see whether an in-process server gives back what it held.
#[derive(Debug, Serialize, Deserialize)]
pub struct Tracked {
    n: u32,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        TRACKED_DROPS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[shmproc::managed]
impl Tracked {
    pub fn get(&self) -> u32 {
        self.n
    }
}

/// The values an in-process server holds are dropped when it stops, also those whose proxy
/// outlived the server or was serialized (pinned), not kept in the process for good.
#[test]
fn an_in_process_server_drops_its_custom_values_when_it_stops() {
    use std::sync::atomic::Ordering;
    watchdog(LIMIT, "managed in-process drop", || {
        let addr = shmproc::connection::Address::Abstract(
            format!("shmproc-test-tracked-{}", std::process::id()).into_bytes(),
        );
        let m = Manager::builder()
            .register::<Tracked>()
            .serve(addr, b"key")
            .unwrap();
        // Decoding the creation argument makes and drops a value of its own.
        let before = TRACKED_DROPS.load(Ordering::SeqCst);
        let pinned = m.create(Tracked { n: 1 }).unwrap();
        let kept = m.create(Tracked { n: 2 }).unwrap();
        assert_eq!(pinned.get().unwrap(), 1);
        assert_eq!(kept.get().unwrap(), 2);
        let _token = shmproc::codec::to_bytes(&pinned).unwrap();
        drop(pinned);
        let created = TRACKED_DROPS.load(Ordering::SeqCst) - before;
        m.shutdown().unwrap();
        drop(kept); // its release finds the server gone
        drop(m);
        assert_eq!(
            TRACKED_DROPS.load(Ordering::SeqCst) - before - created,
            2,
            "values of a stopped in-process server are still held"
        );
    });
}

/// A value the next one refers to.
#[derive(Debug, Serialize, Deserialize)]
pub struct Leaf {
    n: u32,
}

#[shmproc::managed]
impl Leaf {
    pub fn get(&self) -> u32 {
        self.n
    }
}

/// A value whose drop calls another managed value of the same server.
#[derive(Debug, Serialize, Deserialize)]
pub struct Branch {
    leaf: LeafProxy,
}

impl Drop for Branch {
    fn drop(&mut self) {
        let _ = self.leaf.get();
    }
}

#[shmproc::managed]
impl Branch {
    pub fn leaf(&self) -> u32 {
        self.leaf.get().unwrap_or(0)
    }
}

/// Dropping a managed value whose `Drop` calls another managed value of the same server
/// does not deadlock the server.
#[test]
fn a_drop_that_calls_the_server_does_not_deadlock_it() {
    watchdog(Duration::from_secs(60), "managed drop calls back", || {
        let addr = shmproc::connection::Address::Abstract(
            format!("shmproc-test-branch-{}", std::process::id()).into_bytes(),
        );
        let m = Manager::builder()
            .register::<Leaf>()
            .register::<Branch>()
            .serve(addr, b"key")
            .unwrap();
        let leaf = m.create(Leaf { n: 3 }).unwrap();
        let branch = m.create(Branch { leaf: leaf.clone() }).unwrap();
        assert_eq!(branch.leaf().unwrap(), 3);
        drop(branch);
        assert_eq!(leaf.get().unwrap(), 3);
        drop(leaf);
        m.shutdown().unwrap();
    });
}
