//! The harness shared by shmproc's multi-process tests.
pub use shmproc::testing;

/// A small xorshift generator for randomized tests: reproducible from its seed, no
/// dependency, the same in every process of a test.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose state is exactly `state` (must be non-zero; 0 is made 1).
    pub fn from_state(state: u64) -> Rng {
        Rng(state.max(1))
    }

    /// A generator seeded from `seed` (mixed, so nearby seeds give unrelated streams).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The wire form of a manager request (`shmproc::manager`'s protocol: the same variants in the
/// same order), for tests that speak to a server as a raw or hostile client would.
#[derive(Debug, serde::Serialize)]
pub enum WireRequest {
    /// A client's greeting on a new connection.
    Hello {
        /// The client's number.
        client: u64,
    },
    /// Creates an object of a registered kind.
    Create {
        /// The registered kind's name.
        kind: String,
        /// The encoded initial value.
        init: Vec<u8>,
    },
    /// Calls a method of an object.
    Call {
        /// The object's id.
        object: u64,
        /// The calling thread's number.
        thread: u64,
        /// The method's name.
        method: String,
        /// The encoded arguments.
        args: Vec<u8>,
    },
    /// Keeps an object alive until the server stops.
    Pin {
        /// The object's id.
        object: u64,
    },
    /// Drops the caller's reference to an object.
    Release {
        /// The object's id.
        object: u64,
    },
    /// Asks for an object's kind.
    TypeOf {
        /// The object's id.
        object: u64,
    },
    /// Asks for a reply and nothing else.
    Ping,
    /// Stops the server.
    Shutdown,
    /// Takes a reference to an object, taking over the token pin `pin`.
    Adopt {
        /// The object's id.
        object: u64,
        /// The pin's id (0: none).
        pin: u64,
    },
    /// Takes `count` references to each object.
    Inherit {
        /// The objects and counts.
        objects: Vec<(u64, u32)>,
    },
    /// Pins an object for one token; replies the pin's id.
    Lend {
        /// The object's id.
        object: u64,
    },
}

/// Writes `bytes` into a test heap at offset `at` (scribbling shared memory as a faulty or
/// hostile process would).
pub fn poke(heap: &shmproc::heap_testing::TestHeap, at: u64, bytes: &[u8]) {
    for (i, b) in (0u64..).zip(bytes) {
        heap.poke_u8(at + i, *b).unwrap();
    }
}

/// Reads `N` bytes of a test heap at offset `at`.
fn peek<const N: usize>(heap: &shmproc::heap_testing::TestHeap, at: u64) -> [u8; N] {
    let mut b = [0u8; N];
    for (i, slot) in (0u64..).zip(b.iter_mut()) {
        *slot = heap.peek_u8(at + i).unwrap();
    }
    b
}

/// Reads a little-endian `u32` of a test heap at offset `at`.
pub fn peek_u32(heap: &shmproc::heap_testing::TestHeap, at: u64) -> u32 {
    u32::from_le_bytes(peek(heap, at))
}

/// Reads a little-endian `u64` of a test heap at offset `at`.
pub fn peek_u64(heap: &shmproc::heap_testing::TestHeap, at: u64) -> u64 {
    u64::from_le_bytes(peek(heap, at))
}

/// The id of a process that has exited and been reaped.
pub fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}
