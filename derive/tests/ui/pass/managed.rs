// Managed types in a library-like module tree, with every lint that concerns generated code
// denied: the output adds no warning of its own.
#![deny(warnings, missing_docs, missing_debug_implementations, unreachable_pub)]
#![forbid(unsafe_code)]
//! Managed types.

extern crate renamed_shmproc as shmproc;

mod counters {
    use serde::{Deserialize, Serialize};
    use shmproc::Manager;
    use shmproc::manager::Managed;
    use std::fmt;

    /// A counter.
    #[derive(Serialize, Deserialize)]
    pub(crate) struct Counter {
        n: u64,
    }

    /// Why a subtraction failed.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Underflow(pub(crate) u64);

    impl fmt::Display for Underflow {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "short by {}", self.0)
        }
    }

    #[shmproc::managed(name = "counters::Counter")]
    impl Counter {
        /// Makes a counter.
        pub(crate) fn new() -> Self {
            Counter { n: 0 }
        }

        /// Adds `by`.
        pub(crate) fn add(&mut self, by: u64) -> u64 {
            self.n += by;
            self.n
        }

        /// Subtracts `by`.
        pub(crate) fn sub(&mut self, by: u64) -> Result<u64, Underflow> {
            let short = by.saturating_sub(self.n);
            self.n = self.n.checked_sub(by).ok_or(Underflow(short))?;
            Ok(self.n)
        }

        /// Describes the count.
        pub(crate) fn describe(&self, prefix: &str, extra: &[u8]) -> String {
            format!("{prefix}{} {extra:?}", self.n)
        }

        #[cfg(any())]
        pub(crate) fn never(&self) -> NotEvenAType {
            unreachable!()
        }

        fn double(&self) -> u64 {
            self.n * 2
        }

        /// Resets the count (its proxy method is never called).
        pub(crate) fn reset(&mut self) {
            self.n = 0;
        }

        /// The count, under its old name.
        #[deprecated = "use `doubled`"]
        pub(crate) fn twice(&self) -> u64 {
            self.double()
        }

        /// Uses the private method.
        pub(crate) fn doubled(&self) -> u64 {
            self.double()
        }
    }

    pub(crate) fn run() {
        assert_eq!(<Counter as Managed>::TYPE_NAME, "counters::Counter");
        let m = Manager::builder().register::<Counter>().start().unwrap();
        let c: CounterProxy = m.create(Counter::new()).unwrap();
        assert_eq!(c.add(3).unwrap(), 3);
        assert_eq!(c.doubled().unwrap(), 6);
        assert_eq!(c.sub(5).unwrap_err().remote_error::<Underflow>(), Some(Underflow(2)));
        assert_eq!(c.describe("n = ", &[1]).unwrap(), "n = 3 [1]");
        let _ = format!("{c:?}");
        m.shutdown().unwrap();
    }
}

fn main() {
    shmproc::init();
    counters::run();
}
