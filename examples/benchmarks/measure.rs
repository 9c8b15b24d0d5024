//! The measuring method: repeat a workload until a minimum time has elapsed, several runs,
//! median; and the memo that lets several rows share one measurement.

use std::collections::HashMap;
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
                min_time: Duration::from_millis(500),
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

/// Measures a workload: `op(reps)` performs `reps * ops_per_rep` operations. Finds a batch size
/// that takes a small fraction of `min_time`, then makes `runs` runs of at least `min_time`
/// each and returns the median rate in operations per second.
pub(crate) fn rate(cfg: &Config, ops_per_rep: u64, mut op: impl FnMut(u64)) -> f64 {
    let mut batch = 1u64;
    loop {
        let t = Instant::now();
        op(batch);
        let e = t.elapsed();
        if e >= cfg.min_time / 20 || batch >= 1 << 40 {
            break;
        }
        batch = if e < cfg.min_time / 400 {
            batch * 8
        } else {
            batch * 2
        };
    }
    let rates = (0..cfg.runs)
        .map(|_| {
            let t = Instant::now();
            let mut reps = 0u64;
            while t.elapsed() < cfg.min_time {
                op(batch);
                reps += batch;
            }
            (reps * ops_per_rep) as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    median(rates)
}

/// Prints the progress line on stderr (overwritten by the next one).
pub(crate) fn progress(what: &str) {
    eprint!("\r\x1b[K  measuring {what} ...");
}

/// The measuring context: the configuration and every measurement made so far, by key, so a
/// limit or a shmproc figure used by several rows is measured once per run.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// How long and how often to run.
    pub(crate) cfg: Config,
    memo: HashMap<&'static str, Option<f64>>,
    /// The limits measured so far, in order.
    pub(crate) limits: Vec<(Limit, f64)>,
}

impl Ctx {
    /// A context with nothing measured.
    pub(crate) fn new(cfg: Config) -> Ctx {
        Ctx {
            cfg,
            memo: HashMap::new(),
            limits: Vec::new(),
        }
    }

    /// Returns the measurement `key`, running `f` the first time.
    pub(crate) fn measure(
        &mut self,
        key: &'static str,
        f: impl FnOnce(&Config) -> Option<f64>,
    ) -> Option<f64> {
        if let Some(v) = self.memo.get(key) {
            return *v;
        }
        let v = f(&self.cfg);
        self.memo.insert(key, v);
        v
    }

    /// Returns the machine limit `limit`, measuring it the first time.
    pub(crate) fn limit(&mut self, limit: Limit) -> f64 {
        if let Some(&(_, v)) = self.limits.iter().find(|(l, _)| *l == limit) {
            return v;
        }
        let v = match limit.derived_from() {
            Some((base, factor)) => self.limit(base) * factor,
            None => {
                progress(&format!("limit: {}", limit.name()));
                limit.measure(&self.cfg)
            }
        };
        self.limits.push((limit, v));
        v
    }
}
