//! Rows: what each row measures (`Spec`) and what it measured (`Row`).

use crate::limits::Limit;
use crate::measure::{Ctx, Workload};
use crate::python::Python;

/// How a row's figures are expressed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unit {
    /// Operations per second (higher is better); the text names the operation.
    Rate(&'static str),
    /// Nanoseconds per operation (lower is better), computed from rates.
    NsPerOp,
}

impl Unit {
    /// The unit as printed.
    pub(crate) fn text(self) -> &'static str {
        match self {
            Unit::Rate(s) => s,
            Unit::NsPerOp => "ns/op",
        }
    }

    /// Converts a rate (operations per second) into this unit.
    pub(crate) fn convert_rate(self, rate: f64) -> f64 {
        match self {
            Unit::Rate(_) => rate,
            Unit::NsPerOp => 1e9 / rate,
        }
    }

    /// How many times faster `a` is than `b` (both in this unit).
    pub(crate) fn speedup(self, a: f64, b: f64) -> f64 {
        match self {
            Unit::Rate(_) => a / b,
            Unit::NsPerOp => b / a,
        }
    }
}

/// What one row measures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    /// The family (`--only` selects by it).
    pub(crate) family: &'static str,
    /// The case, as printed.
    pub(crate) case: &'static str,
    /// The unit of all three figures.
    pub(crate) unit: Unit,
    /// shmproc's workload (its rate is shmproc's figure); `None` while the capability does
    /// not exist yet.
    pub(crate) shmproc: fn() -> Option<Workload>,
    /// The key of the same workload in `scripts/bench_multiprocessing.py`'s output.
    pub(crate) python: Option<&'static str>,
    /// The bare mechanism this row is compared with.
    pub(crate) limit: Option<Limit>,
    /// The goal as a fraction of the limit, if the issue sets one.
    pub(crate) goal: Option<f64>,
}

/// The Python column of a row.
#[derive(Debug, Clone)]
pub(crate) enum PyCell {
    /// Python's figure, in the row's unit.
    Value(f64),
    /// Why there is no figure (`no python3`, `n/a`, ...).
    Missing(String),
}

/// One measured row.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// The family.
    pub(crate) family: &'static str,
    /// The case.
    pub(crate) case: &'static str,
    /// The unit.
    pub(crate) unit: Unit,
    /// shmproc's figure in `unit`; `None` = not yet.
    pub(crate) shmproc: Option<f64>,
    /// Python's figure.
    pub(crate) python: PyCell,
    /// The limit and its figure in `unit`.
    pub(crate) limit: Option<(Limit, f64)>,
    /// The goal as a fraction of the limit.
    pub(crate) goal: Option<f64>,
    /// The goal as a rate in `unit`, where the issue sets an absolute one.
    pub(crate) goal_rate: Option<f64>,
    /// The spread of the limit's medians over the whole run (its upper mode is `limit`).
    pub(crate) spread: Option<crate::measure::Spread>,
    /// A peer crate's figure for the same workload, measured alternately with shmproc's
    /// (family `peers`): its name and figure in `unit`.
    pub(crate) peer: Option<(&'static str, f64)>,
}

impl Row {
    /// Measures `spec` (shmproc, then its limit) and looks up Python's figure.
    pub(crate) fn measure(spec: &Spec, ctx: &mut Ctx, python: &Python) -> Row {
        crate::measure::progress(&format!("{}: {}", spec.family, spec.case));
        let m = ctx.measure(spec.shmproc, spec.limit);
        let shmproc = m.shmproc.map(|r| spec.unit.convert_rate(r));
        let limit = spec
            .limit
            .zip(m.limit)
            .map(|(l, r)| (l, spec.unit.convert_rate(r)));
        let python = match spec.python {
            None => PyCell::Missing("n/a".into()),
            Some(key) => match python.get(key) {
                Ok(r) => PyCell::Value(spec.unit.convert_rate(r)),
                Err(why) => PyCell::Missing(why),
            },
        };
        Row {
            family: spec.family,
            case: spec.case,
            unit: spec.unit,
            shmproc,
            python,
            limit,
            goal: spec.goal,
            goal_rate: crate::manager::rate_goal(spec),
            spread: None,
            peer: None,
        }
    }

    /// Takes the row's limit at its upper mode over the run (see [`Spread`](crate::measure::Spread)).
    pub(crate) fn use_upper_mode(&mut self, ctx: &crate::measure::Ctx) {
        if let Some((l, _)) = self.limit
            && let Some(s) = ctx.spread(l)
        {
            self.limit = Some((l, self.unit.convert_rate(s.best)));
            self.spread = Some(s);
        }
    }

    /// A row for a bare mechanism itself (family `limit`).
    pub(crate) fn for_limit(limit: Limit, value: f64) -> Row {
        Row {
            family: "limit",
            case: limit.name(),
            unit: Unit::Rate(limit.unit()),
            shmproc: None,
            python: PyCell::Missing("n/a".into()),
            limit: Some((limit, value)),
            goal: None,
            goal_rate: None,
            spread: None,
            peer: None,
        }
    }

    /// Python's figure, if any.
    pub(crate) fn python_value(&self) -> Option<f64> {
        match self.python {
            PyCell::Value(v) => Some(v),
            PyCell::Missing(_) => None,
        }
    }

    /// shmproc / Python (as a speed ratio).
    pub(crate) fn ratio_python(&self) -> Option<f64> {
        Some(self.unit.speedup(self.shmproc?, self.python_value()?))
    }

    /// shmproc / peer (as a speed ratio).
    pub(crate) fn ratio_peer(&self) -> Option<f64> {
        Some(self.unit.speedup(self.shmproc?, self.peer?.1)).filter(|r| r.is_finite())
    }

    /// shmproc / limit (as a speed ratio).
    pub(crate) fn ratio_limit(&self) -> Option<f64> {
        Some(self.unit.speedup(self.shmproc?, self.limit?.1))
    }
}
