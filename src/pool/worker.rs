//! The worker side of a pool: the loop a worker process runs, and the messages it exchanges
//! with the pool.
//!
//! A worker takes [`Task`]s from its own queue, records which chunk it is about to run in its
//! claim slot (so the pool can tell, if the worker dies, which chunk it was running and which
//! ones it never started), runs each item by [`TargetId`] and puts one [`Reply`] per chunk in
//! the pool's reply queue. Functions reach it only through its private registration pipe
//! (see `process::target`); a task naming an id the pipe never delivered is refused.

#![allow(unsafe_code)]

use crate::error::Error;
use crate::process::{
    Outcome, Registrations, TargetId, record_panic_location, run_installed, take_inherited,
};
use crate::queue::Queue;
use crate::segment::{Segment, registry};
use crate::shared::RawArray;
use crate::sys::{self, Deadline};
use crate::transfer::Received;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

/// A message in a worker's task queue.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Task {
    /// Run these chunks, in order.
    Run(Vec<Chunk>),
    /// Leave the loop and exit.
    Stop,
}

/// Batch function `target` on the `count` items (a `Vec`, laid out as module `wire`
/// describes) of the chunk that starts at index `start` of job `job`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Chunk {
    pub(crate) job: u64,
    pub(crate) start: u64,
    pub(crate) count: u64,
    pub(crate) target: u32,
    #[serde(with = "bytes")]
    pub(crate) args: Vec<u8>,
    /// The identities of the segments the arguments' handles live in (from their transfer
    /// envelope); the pool sends a worker each one it may not map before the chunk.
    pub(crate) segments: Vec<u64>,
    /// Those segments, held by the pool (not sent) until the chunk is done.
    #[serde(skip)]
    pub(crate) keep: Vec<Segment>,
}

/// What a chunk gave.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ChunkResult {
    /// The values of the items that returned and the index and message of each item that
    /// panicked, laid out as module `wire` describes (see `Target::batch`).
    Returned(#[serde(with = "bytes")] Vec<u8>),
    /// The chunk could not run (arguments, result encoding, unknown function): why.
    Failed(String),
}

/// A message in the pool's reply queue.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// The chunk `(job, start)` ran on the worker in `slot`.
    Done {
        slot: u32,
        job: u64,
        start: u64,
        result: ChunkResult,
    },
    /// The worker in `slot` reached `max_tasks_per_child` and exits now.
    Retiring { slot: u32 },
    /// Sent by the pool's own process to wake the thread taking replies; carries nothing.
    Wake,
}

/// Encodes a byte vector as one length-prefixed byte string (serde's `bytes`), not as a
/// sequence of `u8` values, each a separate call on both sides.
mod bytes {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::ser::Serializer;
    use std::fmt;

    // `serde(with)` hands the field by reference.
    #[allow(clippy::ptr_arg)]
    pub(super) fn serialize<S: Serializer>(b: &Vec<u8>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut v = Vec::new();
            while let Some(b) = seq.next_element()? {
                v.push(b);
            }
            Ok(v)
        }
    }
}

/// A worker's arguments (its private registration pipe is its first inherited descriptor,
/// its end of the segment socket the second).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub(crate) slot: u32,
    pub(crate) tasks: Queue<Task>,
    pub(crate) replies: Queue<Reply>,
    /// Two words per slot: the job and `start + 1` of the chunk being run (0: none yet).
    pub(crate) claims: RawArray<u64>,
    pub(crate) max_tasks: Option<u64>,
    /// The initializer's id and encoded arguments.
    pub(crate) initializer: Option<(u32, Vec<u8>)>,
}

/// The loop of a pool worker process.
pub(crate) fn worker_main(args: WorkerArgs) {
    let Some(fd) = take_inherited(0) else {
        return;
    };
    // Chunks allocate and free large buffers: keep the memory rather than fault it in anew.
    sys::keep_freed_memory();
    // SAFETY: descriptor 0 of this process's `extra` list is the read end of the registration
    // pipe the pool created for this worker and passed in its validated start-up message
    // (`ProcessBuilder::start_spawn_with`); the pool keeps the write end close-on-exec and
    // writes only registration frames to it.
    let mut regs = unsafe { Registrations::new(File::from(fd)) };
    std::panic::set_hook(Box::new(|info| {
        record_panic_location(info.location().map(|l| l.to_string()));
    }));
    if regs.drain().is_err() {
        return;
    }
    if let Some((id, bytes)) = &args.initializer {
        // An initializer that fails leaves the worker without its set-up: stop it, like an
        // exception in a CPython initializer ends that worker.
        if !matches!(run_chunk(&mut regs, *id, bytes), ChunkResult::Returned(_)) {
            std::process::exit(1);
        }
    }
    let base = usize::try_from(args.slot).unwrap_or(usize::MAX / 4) * 2;
    let mut done = 0u64;
    let segment_socket = take_inherited(1);
    // Segments received from the pool stay mapped for the worker's life.
    let mut held: Vec<Segment> = Vec::new();
    loop {
        let Ok(Task::Run(chunks)) = args.tasks.get() else {
            return;
        };
        for Chunk {
            job,
            start,
            target,
            args: bytes,
            segments,
            ..
        } in chunks
        {
            if let Some(sock) = &segment_socket {
                map_segments(sock, &segments, &mut held);
            }
            // The claim must be visible before the chunk runs: if this process dies from here
            // on, the pool reports this chunk as `WorkerDied` and resubmits the others it had
            // queued.
            if args.claims.set(base, job).is_err() || args.claims.set(base + 1, start + 1).is_err()
            {
                return;
            }
            let reply = Reply::Done {
                slot: args.slot,
                job,
                start,
                result: run_chunk(&mut regs, target, &bytes),
            };
            if args.replies.put(&reply).is_err() {
                return;
            }
            done += 1;
            if args.max_tasks.is_some_and(|m| done >= m) {
                // The chunks left in this message (and the queue) are resubmitted by the pool
                // when it sees this worker end.
                let _ = args.replies.put(&Reply::Retiring { slot: args.slot });
                return;
            }
        }
    }
}

/// Maps the segments of `ids` this process does not map yet, from the frames the pool sent on
/// the segment socket before the chunk (each: the segment's identity, with its descriptor).
/// Never waits: a segment that did not come makes the arguments fail to decode with
/// [`Error::SegmentNotTransferred`].
fn map_segments(sock: &OwnedFd, ids: &[u64], held: &mut Vec<Segment>) {
    for &id in ids {
        while registry::lookup(id).is_none() {
            let now = Deadline::after(Duration::ZERO);
            if !sys::poll_readable(&[sock.as_fd()], Some(&now)).is_ok_and(|r| !r.is_empty()) {
                break;
            }
            let Ok(Some((payload, mut fds))) = sys::recv_frame(sock.as_fd(), 8) else {
                break;
            };
            let (Ok(declared), Some(fd)) = (<[u8; 8]>::try_from(payload.as_slice()), fds.pop())
            else {
                continue;
            };
            // The header is checked as for any segment received; the identity must be the
            // one the pool declared.
            if let Ok(seg) = Segment::from_fd(fd)
                && seg.id() == u64::from_le_bytes(declared)
            {
                held.push(seg);
            }
        }
    }
}

/// Runs function `target` of the registered table on encoded arguments.
fn run_chunk(regs: &mut Registrations, target: u32, args: &[u8]) -> ChunkResult {
    // Id 0 is this worker's own loop (its start-up table); pool functions start at 1.
    if target == 0 {
        return ChunkResult::Failed(
            Error::UnknownTarget {
                id: 0,
                registered: 0,
            }
            .to_string(),
        );
    }
    let id = TargetId(target);
    let mut ran = run_installed(id, args, Received::none());
    if matches!(ran, Err(Error::UnknownTarget { .. })) {
        // The pool writes a registration before any task that names it: it is in the pipe.
        ran = regs
            .drain()
            .and_then(|_| run_installed(id, args, Received::none()));
    }
    match ran {
        Ok(Outcome::Returned(b)) => ChunkResult::Returned(b),
        Ok(Outcome::Panicked(m)) => ChunkResult::Failed(format!("panicked: {m}")),
        Ok(Outcome::Failed(reason)) => ChunkResult::Failed(reason),
        Ok(Outcome::Exited(code)) => ChunkResult::Failed(format!("exit code {code}")),
        Err(e) => ChunkResult::Failed(e.to_string()),
    }
}
