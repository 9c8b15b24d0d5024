//! The bare machine mechanisms ("limits") that shmproc is measured against, for the criterion
//! benches. The source lives with shmproc's `benchmarks` example (so the published package
//! builds that example on its own); this crate compiles the same file.

#[path = "../../examples/benchmarks/bare.rs"]
mod bare;

pub use bare::*;
