//! The concurrent fuzzer: an input decodes to a [`Schedule`] of operations for 2–4 real
//! forked processes on shared objects, with kill points; invariants are checked after each
//! run.
//!
//! # Objects and invariants
//!
//! | object | operation (child)                                  | invariant (parent, after the run)          |
//! |--------|----------------------------------------------------|--------------------------------------------|
//! | `Array<i64>` accounts + journal | transfer under the lock, journaled; an `OwnerDied` acquirer rolls the journal back | balances sum to the start total |
//! | `Value<u64>` counter | `*lock() += 1`, then acknowledge              | counter within [acknowledged, acknowledged + kills] |
//! | `RawArray<u64>` | disjoint writers, one region per process           | each slot 0 or its writer's tag, never older than acknowledged |
//! | `Lock` + `RawValue<u32>` | hold, mark the cell, spin, check, unmark     | nobody else inside while held (mutual exclusion) |
//! | all | —                                                          | no process stuck past the watchdog; no block, descriptor or child leaked; every lock usable afterwards |
//!
//! # Adding a primitive
//!
//! Queue, Condition, Event, Barrier (and later the manager) plug in at four places: a handle
//! in [`Objects`], its operations in [`Op`] and [`Op::decode`], the child side in
//! `Objects::apply`, and its invariant in `Objects::check`. The fuzz target, the corpus
//! replay and the kill suite then cover it with no other change.

use crate::loom::{Ordering, fence};
use crate::testing::{Child, ForkPermit, fork};
use crate::{Array, Lock, OwnerDied, RawArray, RawValue, Segment, Value};
use std::time::{Duration, Instant};

/// Most processes in a schedule.
pub const MAX_PROCS: usize = 4;
const ACCOUNTS: usize = 4;
const START_BALANCE: i64 = 1000;
/// Journal slots after the accounts: from, to, old from, old to, stage.
const JOURNAL: usize = ACCOUNTS;
const SLOTS: usize = 8;
const MAX_OPS: usize = 48;
/// How long a run may take before it counts as stuck.
pub const WATCHDOG: Duration = Duration::from_secs(30);

/// Exit codes of a child.
const EXIT_OK: i32 = 0;
const EXIT_EXCLUSION: i32 = 3;
const EXIT_ERROR: i32 = 4;

/// One operation of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Move `amount` between two accounts, `rounds` times, each under the array's lock.
    Transfer { from: u8, to: u8, rounds: u8 },
    /// Increment the counter under its lock, `n` times.
    Increment { n: u8 },
    /// Write this process's tag into each of its slots, `rounds` times.
    RawWrite { rounds: u8 },
    /// Take the lock and spin `spins` times inside, checking nobody else is.
    HoldLock { spins: u16 },
}

impl Op {
    /// Decodes one operation from one byte.
    pub fn decode(b: u8) -> Op {
        match b & 3 {
            0 => Op::Transfer {
                from: (b >> 2) & 3,
                to: (b >> 4) & 3,
                rounds: 1 + (b >> 6) * 4,
            },
            1 => Op::Increment { n: 1 + (b >> 2) },
            2 => Op::RawWrite {
                rounds: 1 + ((b >> 2) & 7),
            },
            _ => Op::HoldLock {
                spins: u16::from(b >> 2) * 16,
            },
        }
    }
}

/// What each process does and when it is killed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    /// Operations per process (2 to 4 processes).
    pub procs: Vec<Vec<Op>>,
    /// Kill process `k` with `SIGKILL` once it has completed this many operations.
    pub kills: Vec<Option<u32>>,
}

impl Schedule {
    /// Decodes a schedule: process count, one kill byte per process, then operations dealt
    /// round-robin.
    pub fn decode(data: &[u8]) -> Schedule {
        let Some((&first, rest)) = data.split_first() else {
            return Schedule::default();
        };
        let n = 2 + usize::from(first % 3);
        let (kill_bytes, ops) = rest.split_at(rest.len().min(n));
        let kills = (0..n)
            .map(|k| {
                kill_bytes
                    .get(k)
                    .filter(|&&b| b & 0x80 != 0)
                    .map(|&b| u32::from(b & 0x3f))
            })
            .collect();
        let mut procs = vec![Vec::new(); n];
        for (i, &b) in ops.iter().take(MAX_OPS * n).enumerate() {
            procs[i % n].push(Op::decode(b));
        }
        Schedule { procs, kills }
    }
}

/// How a run went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Processes killed by the schedule (before they exited by themselves).
    pub killed: usize,
    /// Times a lock was found with a dead owner (by the children and the final check).
    pub owner_died: u64,
}

/// The shared objects of a run. One field per primitive.
#[derive(Debug)]
pub struct Objects {
    accounts: Array<i64>,
    counter: Value<u64>,
    raw: RawArray<u64>,
    lock: Lock,
    inside: RawValue<u32>,
    /// Per process: operations completed, increments acknowledged, raw rounds acknowledged,
    /// `OwnerDied`s seen.
    progress: RawArray<u64>,
}

const P_OPS: usize = 0;
const P_INCS: usize = 1;
const P_RAW: usize = 2;
const P_DIED: usize = 3;
const P_READY: usize = 4;
const P_WIDTH: usize = 5;
/// Each decoded round or increment is repeated this often, so processes overlap.
const REPEAT: u32 = 8;

fn roll_back(g: &mut [i64]) {
    if g[JOURNAL + 4] == 1 {
        let (from, to) = (g[JOURNAL] as usize, g[JOURNAL + 1] as usize);
        g[from] = g[JOURNAL + 2];
        g[to] = g[JOURNAL + 3];
        fence(Ordering::SeqCst);
        g[JOURNAL + 4] = 0;
    }
}

impl Objects {
    /// Creates the objects in `seg`.
    ///
    /// # Panics
    /// If the segment is too small.
    pub fn new(seg: &Segment) -> Objects {
        let mut init = vec![START_BALANCE; ACCOUNTS];
        init.extend([0; 5]);
        Objects {
            accounts: Array::from_slice_in(seg, &init).expect("accounts"),
            counter: Value::new_in(seg, 0).expect("counter"),
            raw: RawArray::new_in(seg, MAX_PROCS * SLOTS).expect("raw array"),
            lock: Lock::new_in(seg).expect("lock"),
            inside: RawValue::new_in(seg, 0).expect("cell"),
            progress: RawArray::new_in(seg, MAX_PROCS * P_WIDTH).expect("progress"),
        }
    }

    fn bump(&self, k: usize, what: usize) {
        let i = k * P_WIDTH + what;
        let v = self.progress.get(i).unwrap_or(0);
        let _ = self.progress.set(i, v + 1);
    }

    fn died<G>(&self, k: usize, r: Result<G, OwnerDied<G>>) -> G {
        r.unwrap_or_else(|d| {
            self.bump(k, P_DIED);
            d.into_inner()
        })
    }

    /// Runs one operation as process `k`; returns an exit code on a violated invariant.
    fn apply(&self, k: usize, op: Op) -> Result<(), i32> {
        match op {
            Op::Transfer { from, to, rounds } => {
                for r in 0..u32::from(rounds) * REPEAT {
                    let mut g = self.died(k, self.accounts.lock());
                    roll_back(&mut g);
                    let (from, to) = (usize::from(from), usize::from(to));
                    let amount = i64::from(r % 16) + 1;
                    g[JOURNAL] = from as i64;
                    g[JOURNAL + 1] = to as i64;
                    g[JOURNAL + 2] = g[from];
                    g[JOURNAL + 3] = g[to];
                    fence(Ordering::SeqCst);
                    g[JOURNAL + 4] = 1;
                    fence(Ordering::SeqCst);
                    g[from] -= amount;
                    fence(Ordering::SeqCst);
                    g[to] += amount;
                    fence(Ordering::SeqCst);
                    g[JOURNAL + 4] = 0;
                }
            }
            Op::Increment { n } => {
                for _ in 0..u32::from(n) * REPEAT {
                    *self.died(k, self.counter.lock()) += 1;
                    self.bump(k, P_INCS);
                }
            }
            Op::RawWrite { rounds } => {
                for _ in 0..rounds {
                    let round = self.progress.get(k * P_WIDTH + P_RAW).unwrap_or(0) + 1;
                    for s in 0..SLOTS {
                        self.raw
                            .set(k * SLOTS + s, (k as u64 + 1) << 32 | round)
                            .map_err(|_| EXIT_ERROR)?;
                    }
                    self.bump(k, P_RAW);
                }
            }
            Op::HoldLock { spins } => {
                let (_g, died) = match self.lock.lock() {
                    Ok(g) => (g, false),
                    Err(d) => {
                        self.bump(k, P_DIED);
                        (d.into_inner(), true)
                    }
                };
                let me = std::process::id();
                // A mark left behind is legitimate only when its holder died.
                if self.inside.get() != 0 && !died {
                    return Err(EXIT_EXCLUSION);
                }
                self.inside.set(me);
                for _ in 0..spins {
                    if self.inside.get() != me {
                        return Err(EXIT_EXCLUSION);
                    }
                    core::hint::spin_loop();
                }
                self.inside.set(0);
            }
        }
        self.bump(k, P_OPS);
        Ok(())
    }

    fn run_child(&self, k: usize, n: usize, ops: &[Op]) -> i32 {
        // Start together: forks are slow next to the operations, so without this gate the
        // first process would often finish before the last one starts.
        let _ = self.progress.set(k * P_WIDTH + P_READY, 1);
        while (0..n).any(|j| self.progress(j, P_READY) == 0) {
            core::hint::spin_loop();
        }
        for &op in ops {
            if let Err(code) = self.apply(k, op) {
                return code;
            }
        }
        EXIT_OK
    }

    fn progress(&self, k: usize, what: usize) -> u64 {
        self.progress.get(k * P_WIDTH + what).unwrap_or(0)
    }

    /// Checks every invariant after all processes ended; `exited[k]` says whether process
    /// `k` ran to its end (else it was killed).
    fn check(&self, exited: &[bool], report: &mut Report) {
        let mut died = 0;
        let mut g = self.accounts.lock().unwrap_or_else(|d| {
            died += 1;
            d.into_inner()
        });
        roll_back(&mut g);
        let total: i64 = g[..ACCOUNTS].iter().sum();
        assert_eq!(
            total,
            START_BALANCE * ACCOUNTS as i64,
            "transfers lost money: {:?}",
            &g[..]
        );
        drop(g);

        let acked: u64 = (0..exited.len()).map(|k| self.progress(k, P_INCS)).sum();
        let killed = exited.iter().filter(|e| !**e).count() as u64;
        let count = *self.counter.lock().unwrap_or_else(|d| {
            died += 1;
            d.into_inner()
        });
        assert!(
            (acked..=acked + killed).contains(&count),
            "counter {count}, acknowledged {acked}, killed {killed}"
        );

        for (k, _) in exited.iter().enumerate() {
            let round = self.progress(k, P_RAW);
            for s in 0..SLOTS {
                let v = self.raw.get(k * SLOTS + s).unwrap_or(u64::MAX);
                if v == 0 {
                    assert_eq!(round, 0, "slot {k}/{s} lost acknowledged round {round}");
                    continue;
                }
                assert_eq!(
                    v >> 32,
                    k as u64 + 1,
                    "slot {k}/{s} written by another process"
                );
                assert!(
                    v & 0xffff_ffff >= round,
                    "slot {k}/{s} older than acknowledged"
                );
            }
        }

        match self.lock.lock() {
            Ok(_) => assert_eq!(self.inside.get(), 0, "lock free but marked held"),
            Err(d) => {
                died += 1;
                drop(d.into_inner());
            }
        }
        self.inside.set(0);
        for lock in [
            &self.lock,
            self.accounts.get_lock(),
            self.counter.get_lock(),
        ] {
            let g = lock.try_lock().ok().flatten();
            assert!(g.is_some(), "lock unusable after the run");
        }
        report.owner_died = died
            + (0..exited.len())
                .map(|k| self.progress(k, P_DIED))
                .sum::<u64>();
    }
}

/// Runs a schedule and checks every invariant; panics on a violation.
pub fn run(schedule: &Schedule) -> Report {
    let mut report = Report::default();
    if schedule.procs.len() < 2 {
        return report;
    }
    let mut pids = Vec::new();
    let seg_fd;
    {
        let seg = Segment::create(1 << 20).expect("segment");
        seg_fd = fd_identity(&seg);
        let start = seg.stats().used;
        {
            let objs = Objects::new(&seg);
            let mut kids: Vec<(Child, Option<u32>, Option<bool>)> = schedule
                .procs
                .iter()
                .enumerate()
                .map(|(k, ops)| {
                    let o = &objs;
                    let n = schedule.procs.len();
                    #[allow(unsafe_code)]
                    // SAFETY: the child only runs `run_child`, operations on shared-memory
                    // objects that take no process-local lock (its allocations are safe after
                    // glibc's `fork`); schedules run from single-threaded fuzz targets and tests.
                    let permit = unsafe { ForkPermit::new() };
                    let child = fork(permit, move || o.run_child(k, n, ops));
                    pids.push(child.pid());
                    (child, schedule.kills.get(k).copied().flatten(), None)
                })
                .collect();
            let deadline = Instant::now() + WATCHDOG;
            while kids.iter().any(|k| k.2.is_none()) {
                for (k, (child, kill_at, done)) in kids.iter_mut().enumerate() {
                    if done.is_some() {
                        continue;
                    }
                    if let Some(end) = child.try_wait() {
                        assert_eq!(end, Ok(EXIT_OK), "process {k} failed: {schedule:?}");
                        *done = Some(true);
                    } else if kill_at.is_some_and(|p| {
                        // Never before the start gate: the others would wait for it forever.
                        objs.progress(k, P_READY) == 1 && objs.progress(k, P_OPS) >= u64::from(p)
                    }) {
                        let _ = child.kill();
                        report.killed += 1;
                        *done = Some(false);
                    }
                }
                if Instant::now() > deadline {
                    panic!("a process is stuck past the {WATCHDOG:?} watchdog: {schedule:?}");
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            let exited: Vec<bool> = kids.iter().map(|k| k.2 == Some(true)).collect();
            objs.check(&exited, &mut report);
        }
        assert_eq!(seg.stats().used, start, "a block leaked");
    }
    // Only this run's own resources are checked: other tests may share the process.
    assert!(!fd_still_open(seg_fd), "the segment's descriptor leaked");
    for pid in pids {
        assert!(!is_our_child(pid), "child process {pid} leaked");
    }
    report
}

fn fd_identity(seg: &Segment) -> (i32, u64) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let fd = seg.as_fd().as_raw_fd();
    let ino = std::fs::metadata(format!("/proc/self/fd/{fd}")).map_or(0, |m| m.ino());
    (fd, ino)
}

fn fd_still_open((fd, ino): (i32, u64)) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/self/fd/{fd}")).is_ok_and(|m| m.ino() == ino)
}

fn is_our_child(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let ppid = stat
        .rfind(')')
        .and_then(|c| stat.get(c + 2..))
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|p| p.parse::<u32>().ok());
    ppid == Some(std::process::id())
}

/// The fuzz target body: bytes → schedule → run.
pub fn run_bytes(data: &[u8]) {
    run(&Schedule::decode(data));
}
