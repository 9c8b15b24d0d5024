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
