//! Diagnostics through `tracing`, behind the `tracing` feature (off by default).
//!
//! [`event!`](crate::trace::event) expands to a `tracing` event under the feature and to
//! nothing without it (its arguments are then not evaluated), so call sites cost nothing in a
//! build without the feature. Events use the target `shmproc`:
//!
//! | level | event |
//! | --- | --- |
//! | `debug` | a process started (pid, name, start method); a process ended (pid, exit code) |
//! | `warn` | a lock's owner died and this thread recovered the lock (the dead owner's thread id) |
//! | `warn` | a queue slot claimed by a dead process was recovered; a pipe's receive turn held by a dead thread was taken over; a pipe's writer died without closing |
//! | `warn` | an authentication handshake failed |
//! | `error` | a child could not start its target (instead of a line on standard error) |
//!
//! A child runs its target inside an `info` span `shmproc_child` (its name and pid).

/// Emits a `tracing` event with target `shmproc` when the `tracing` feature is on; nothing
/// otherwise.
macro_rules! event {
    ($level:ident, $($arg:tt)+) => {
        #[cfg(feature = "tracing")]
        {
            ::tracing::$level!(target: "shmproc", $($arg)+);
        }
    };
}

pub(crate) use event;

#[cfg(all(test, feature = "tracing", feature = "test-support"))]
mod tests {
    use std::sync::{Arc, Mutex, PoisonError};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    /// Collects `target message fields` of every event.
    struct Capture(Arc<Mutex<Vec<String>>>);

    struct Line(String);

    impl Visit for Line {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut line = Line(event.metadata().target().to_owned());
            event.record(&mut line);
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line.0);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    fn hold_and_die(lock: crate::Lock) {
        std::mem::forget(lock.lock());
    }

    fn double(x: u32) -> u32 {
        2 * x
    }

    /// Issue 18: the `tracing` feature reports process start and exit, a dead lock owner
    /// recovered, and a failed authentication.
    #[test]
    fn events_for_processes_dead_owners_and_failed_authentication() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        tracing::subscriber::with_default(Capture(lines.clone()), || {
            assert_eq!(
                crate::spawn(double, 21).and_then(|h| h.join()).ok(),
                Some(42)
            );
            let lock = crate::Lock::new().expect("lock");
            let child = crate::Process::new(hold_and_die, lock.clone())
                .start()
                .expect("spawn");
            assert_eq!(child.join().ok(), Some(0));
            assert!(lock.lock().is_err(), "the dead holder is reported");
            let name = format!("shmproc-trace-{}", std::process::id()).into_bytes();
            let listener =
                crate::Listener::bind(crate::Address::Abstract(name.clone()), Some(b"right"))
                    .expect("bind");
            let client = std::thread::spawn(move || {
                crate::Client::connect(crate::Address::Abstract(name), Some(b"wrong")).is_err()
            });
            let e = listener.accept().err();
            assert!(matches!(e, Some(crate::Error::AuthFailed)), "{e:?}");
            assert!(client.join().unwrap_or(false));
        });
        let lines = lines.lock().unwrap_or_else(PoisonError::into_inner);
        let has = |what: &str| {
            lines
                .iter()
                .any(|l| l.starts_with("shmproc") && l.contains(what))
        };
        assert!(has("process started"), "{lines:?}");
        assert!(has("process ended"), "{lines:?}");
        assert!(has("lock owner died"), "{lines:?}");
        assert!(has("authentication handshake failed"), "{lines:?}");
    }
}
