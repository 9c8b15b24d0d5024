//! The measuring method: repeat a workload until a minimum time has elapsed, several runs,
//! median. A shmproc workload and its bare mechanism are measured alternately, run by run, so
//! the machine's drift (it is shared) affects both alike.

use std::time::{Duration, Instant};

use crate::limits::Limit;

/// How long and how often each workload runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    /// Each run repeats the workload until at least this much time has elapsed.
    pub(crate) min_time: Duration,
    /// Number of runs; the median is reported.
    pub(crate) runs: usize,
}

impl Config {
    /// The default run (about two minutes in all, with Python) or the `--quick` smoke run.
    pub(crate) fn new(quick: bool) -> Config {
        if quick {
            Config {
                min_time: Duration::from_millis(20),
                runs: 3,
            }
        } else {
            Config {
                min_time: Duration::from_millis(400),
                runs: 7,
            }
        }
    }
}

/// Median of `v` (which must not be empty).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A workload: `op(reps)` performs `reps * ops_per_rep` operations. It owns whatever it
/// needs (shared objects, peer processes), and releases it when dropped.
pub(crate) struct Workload {
    ops_per_rep: u64,
    op: Box<dyn FnMut(u64)>,
    batch: u64,
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload")
            .field("ops_per_rep", &self.ops_per_rep)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl Workload {
    /// A workload doing `ops_per_rep` operations per repetition.
    pub(crate) fn new(ops_per_rep: u64, op: impl FnMut(u64) + 'static) -> Workload {
        Workload {
            ops_per_rep,
            op: Box::new(op),
            batch: 0,
        }
    }

    /// Finds a batch size that takes a small fraction of `min_time` (warming up on the way).
    /// Each size is timed twice and the faster time counts: the first repetition of a
    /// workload also waits for its peer processes to start (a pipe's receiver took 2 ms to
    /// receive its first object, which under `--quick` kept the batch at one object, so the
    /// row measured a wake-up per object instead of a stream), and on a loaded machine any
    /// one repetition may be preempted.
    fn calibrate(&mut self, cfg: &Config) {
        let mut batch = 1u64;
        loop {
            let mut e = Duration::MAX;
            for _ in 0..2 {
                let t = Instant::now();
                (self.op)(batch);
                e = e.min(t.elapsed());
            }
            if e >= cfg.min_time / 20 || batch >= 1 << 40 {
                break;
            }
            batch = if e < cfg.min_time / 400 {
                batch * 8
            } else {
                batch * 2
            };
        }
        self.batch = batch;
    }

    /// One run of at least `min_time`; returns operations per second.
    fn run(&mut self, cfg: &Config) -> f64 {
        let t = Instant::now();
        let mut reps = 0u64;
        while t.elapsed() < cfg.min_time {
            (self.op)(self.batch);
            reps += self.batch;
        }
        (reps * self.ops_per_rep) as f64 / t.elapsed().as_secs_f64()
    }
}

/// The median rate of `w` over `cfg.runs` runs.
pub(crate) fn rate(cfg: &Config, mut w: Workload) -> f64 {
    w.calibrate(cfg);
    median((0..cfg.runs).map(|_| w.run(cfg)).collect())
}

/// The median rates of `a` and `b`, measured alternately run by run.
pub(crate) fn paired(cfg: &Config, mut a: Workload, mut b: Workload) -> (f64, f64) {
    a.calibrate(cfg);
    b.calibrate(cfg);
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for _ in 0..cfg.runs {
        ra.push(a.run(cfg));
        rb.push(b.run(cfg));
    }
    (median(ra), median(rb))
}

/// Prints the progress line on stderr (overwritten by the next one).
pub(crate) fn progress(what: &str) {
    eprint!("\r\x1b[K  measuring {what} ...");
}

/// Makes a shmproc workload; `None` while the capability does not exist yet.
pub(crate) type MakeWorkload = fn() -> Option<Workload>;

/// What one shmproc workload measured: its rate, and its limit's rate measured alternately.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measured {
    /// shmproc's rate; `None` = not yet.
    pub(crate) shmproc: Option<f64>,
    /// The limit's rate.
    pub(crate) limit: Option<f64>,
}

/// The measuring context: the configuration and every measurement made so far, so a figure
/// used by several rows is measured once per run.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// How long and how often to run.
    pub(crate) cfg: Config,
    memo: Vec<(MakeWorkload, Option<Limit>, Measured)>,
    /// The limits measured so far (first measurement of each), in order.
    pub(crate) limits: Vec<(Limit, f64)>,
    /// Every median measured of every limit (one per pairing, or alone), in order.
    pub(crate) limit_runs: Vec<(Limit, f64)>,
}

impl Ctx {
    /// A context with nothing measured.
    pub(crate) fn new(cfg: Config) -> Ctx {
        Ctx {
            cfg,
            memo: Vec::new(),
            limits: Vec::new(),
            limit_runs: Vec::new(),
        }
    }

    /// Measures the shmproc workload made by `make` alternately with `limit` (once per run of
    /// the program for each pair).
    pub(crate) fn measure(&mut self, make: MakeWorkload, limit: Option<Limit>) -> Measured {
        if let Some((_, _, m)) = self
            .memo
            .iter()
            .find(|(f, l, _)| std::ptr::fn_addr_eq(*f, make) && *l == limit)
        {
            return *m;
        }
        let m = match (make(), limit) {
            (Some(w), Some(l)) => {
                let (s, b) = paired(&self.cfg, w, l.workload());
                self.record_limit(l, b);
                Measured {
                    shmproc: Some(s),
                    limit: Some(b),
                }
            }
            (Some(w), None) => Measured {
                shmproc: Some(rate(&self.cfg, w)),
                limit: None,
            },
            (None, l) => Measured {
                shmproc: None,
                limit: l.map(|l| self.limit(l)),
            },
        };
        self.memo.push((make, limit, m));
        m
    }

    fn record_limit(&mut self, limit: Limit, v: f64) {
        self.limit_runs.push((limit, v));
        if !self.limits.iter().any(|(l, _)| *l == limit) {
            self.limits.push((limit, v));
        }
    }

    /// Returns the machine limit `limit`, measuring it alone the first time.
    pub(crate) fn limit(&mut self, limit: Limit) -> f64 {
        if let Some(&(_, v)) = self.limits.iter().find(|(l, _)| *l == limit) {
            return v;
        }
        progress(&format!("limit: {}", limit.name()));
        let v = rate(&self.cfg, limit.workload());
        self.limits.push((limit, v));
        self.limit_runs.push((limit, v));
        v
    }
}

/// Child processes a workload owns, with the state they share with it: dropping it calls
/// `stop` on the state (close the queue, the connection, ...) and then joins every child.
pub(crate) struct Peers<S> {
    /// What the workload uses (queues, connections, counters).
    pub(crate) state: S,
    stop: fn(&mut S),
    children: Vec<shmproc::Process>,
}

impl<S> Peers<S> {
    /// Owns `children`; `stop` makes them end (they are joined after it).
    pub(crate) fn new(state: S, children: Vec<shmproc::Process>, stop: fn(&mut S)) -> Peers<S> {
        Peers {
            state,
            stop,
            children,
        }
    }
}

impl<S> Drop for Peers<S> {
    fn drop(&mut self) {
        (self.stop)(&mut self.state);
        for c in &self.children {
            if let Err(e) = c.join() {
                eprintln!("benchmarks: joining child {}: {e}", c.pid());
            }
        }
    }
}

/// Waits (spinning briefly, then yielding the core, as the bare ring does) until `done()`
/// holds. Panics after a minute, so a dead peer fails the run instead of hanging it.
pub(crate) fn wait_until(mut done: impl FnMut() -> bool) {
    let mut spins = 0u32;
    let mut since: Option<Instant> = None;
    while !done() {
        if spins < 200 {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
            spins += 1;
            if spins.is_multiple_of(4096) {
                let t = *since.get_or_insert_with(Instant::now);
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "benchmarks: a peer process stopped making progress"
                );
            }
        }
    }
}

/// A limit's medians over the run: the upper mode (the best median, which the row ratios use:
/// a bare mechanism's low figures on these machines are interference, not the mechanism) and
/// the spread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spread {
    /// The best median (rate).
    pub(crate) best: f64,
    /// The worst median (rate).
    pub(crate) worst: f64,
    /// How many medians were taken.
    pub(crate) count: usize,
}

impl Spread {
    /// Whether the medians varied by more than 2×.
    pub(crate) fn bimodal(self) -> bool {
        self.best > 2.0 * self.worst
    }
}

impl Ctx {
    /// Returns the spread of every median measured of `limit`, if any.
    pub(crate) fn spread(&self, limit: Limit) -> Option<Spread> {
        let v: Vec<f64> = self
            .limit_runs
            .iter()
            .filter(|(l, _)| *l == limit)
            .map(|(_, v)| *v)
            .collect();
        let best = v.iter().copied().fold(f64::NAN, f64::max);
        let worst = v.iter().copied().fold(f64::NAN, f64::min);
        (!v.is_empty()).then_some(Spread {
            best,
            worst,
            count: v.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a workload whose first repetition waits for something slow (its peers'
    /// start) is still calibrated to a batch of many repetitions, not one.
    #[test]
    fn a_slow_first_repetition_does_not_fix_the_batch_at_one() {
        let cfg = Config::new(true);
        let mut first = true;
        let mut w = Workload::new(1, move |_| {
            if std::mem::take(&mut first) {
                std::thread::sleep(cfg.min_time);
            }
        });
        w.calibrate(&cfg);
        assert!(w.batch > 1, "calibrated to a batch of {}", w.batch);
    }
}
