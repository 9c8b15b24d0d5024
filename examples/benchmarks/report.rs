//! Output: the terminal table, the goals summary and the JSON file.

use std::fmt::Write as _;

use serde_json::json;

use crate::python::Python;
use crate::row::{PyCell, Row, Unit};

/// The families in display order, with their titles.
pub(crate) const FAMILIES: [(&str, &str); 12] = [
    ("sequence", "Integers retrieved from a sequence per second"),
    ("lock", "Acquires/releases of a lock per second"),
    (
        "objects",
        "256-byte objects passed between processes per second",
    ),
    (
        "condition",
        "Interleaved waits/notifies per second on a condition, two processes",
    ),
    (
        "manager",
        "Calls on objects managed by a server per second (round trips)",
    ),
    ("pingpong", "Round trips between two processes per second"),
    ("spawn", "Processes started and joined per second"),
    ("pool", "Pool tasks per second"),
    (
        "exchange",
        "pprocess-style pmap and reusable workers: tasks per second",
    ),
    (
        "overhead",
        "Cost per operation beside the bare mechanism (ns/op, lower is better)",
    ),
    (
        "peers",
        "shmproc beside the crates a user would pick instead, measured alternately in this run",
    ),
    (
        "limit",
        "The machine's limits: bare mechanisms measured in this run",
    ),
];

/// A figure with an SI prefix (rates) or a time unit (ns/op).
pub(crate) fn value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::NsPerOp => {
            if v >= 1e6 {
                format!("{:.2} ms", v / 1e6)
            } else if v >= 1e3 {
                format!("{:.2} µs", v / 1e3)
            } else {
                format!("{v:.2} ns")
            }
        }
        Unit::Rate(_) => {
            let (d, p) = if v >= 1e9 {
                (1e9, " G")
            } else if v >= 1e6 {
                (1e6, " M")
            } else if v >= 1e3 {
                (1e3, " k")
            } else {
                (1.0, "  ")
            };
            format!("{}{p}", sig3(v / d))
        }
    }
}

/// Three significant digits.
fn sig3(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// A ratio such as `0.93×`.
pub(crate) fn ratio(r: f64) -> String {
    if r < 0.01 {
        format!("{r:.4}×")
    } else {
        format!("{}×", sig3(r))
    }
}

/// The whole table as text.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    for (family, title) in FAMILIES {
        let rows: Vec<&Row> = rows.iter().filter(|r| r.family == family).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n{title}  [{family}]");
        if family == "peers" {
            let _ = writeln!(
                s,
                "  {:<46} {:>11}  {:<28} {:>11} {:>8}  unit",
                "case", "shmproc", "peer", "peer rate", "×peer"
            );
            for r in rows {
                let shm = r.shmproc.map_or_else(|| "—".into(), |v| value(v, r.unit));
                let (name, pv) = r.peer.map_or(("", f64::NAN), |p| p);
                let pv = if pv.is_finite() {
                    value(pv, r.unit)
                } else {
                    "—".into()
                };
                let x = r.ratio_peer().map_or_else(String::new, ratio);
                let _ = writeln!(
                    s,
                    "  {:<46} {shm:>11}  {name:<28} {pv:>11} {x:>8}  {}",
                    r.case,
                    r.unit.text()
                );
            }
            continue;
        }
        if family == "limit" {
            let _ = writeln!(
                s,
                "  {:<46} {:>11}  {:<24} unit",
                "mechanism", "best", "spread (medians)"
            );
            for r in rows {
                let v = r.limit.map_or_else(String::new, |(_, v)| value(v, r.unit));
                let spread = r.spread.map_or_else(String::new, |sp| {
                    format!(
                        "{}–{} ×{}{}",
                        value(sp.worst, r.unit).trim(),
                        value(sp.best, r.unit).trim(),
                        sp.count,
                        if sp.bimodal() { " bimodal" } else { "" }
                    )
                });
                let _ = writeln!(
                    s,
                    "  {:<46} {v:>11}  {spread:<24} {}",
                    r.case,
                    r.unit.text()
                );
            }
            continue;
        }
        let _ = writeln!(
            s,
            "  {:<40} {:>11} {:>11} {:>9} {:>11} {:>8}  {:<13} unit",
            "case", "shmproc", "Python", "×Python", "limit", "×limit", "goal"
        );
        for r in rows {
            let shm = r
                .shmproc
                .map_or_else(|| "not yet".into(), |v| value(v, r.unit));
            let py = match &r.python {
                PyCell::Value(v) => value(*v, r.unit),
                PyCell::Missing(why) => why.clone(),
            };
            let lim = r
                .limit
                .map_or_else(|| "—".into(), |(_, v)| value(v, r.unit));
            let rp = r.ratio_python().map_or_else(String::new, ratio);
            let rl = r.ratio_limit().map_or_else(String::new, ratio);
            let _ = writeln!(
                s,
                "  {:<40} {shm:>11} {py:>11} {rp:>9} {lim:>11} {rl:>8}  {:<13} {}",
                r.case,
                goal(r),
                r.unit.text()
            );
        }
    }
    s
}

/// The goal column: `≥ 0.8× met`, `≥ 0.8× MISSED`, or the bare goal while not measurable;
/// for an absolute goal, `≥300 k met` and so on.
fn goal(r: &Row) -> String {
    if let Some(g) = r.goal_rate {
        let g_text = value(g, r.unit);
        return match r.shmproc {
            Some(v) if r.unit.speedup(v, g) >= 1.0 => format!("≥{g_text} met"),
            Some(_) => format!("≥{g_text} MISSED"),
            None => format!("≥{g_text}"),
        };
    }
    match (r.goal, r.ratio_limit()) {
        (Some(g), Some(x)) if x >= g => format!("≥{g}× met"),
        (Some(g), Some(_)) => format!("≥{g}× MISSED"),
        (Some(g), None) => format!("≥{g}×"),
        (None, _) => String::new(),
    }
}

/// One line per goal: reached or missed (and by how much), or not measurable yet.
pub(crate) fn goals(rows: &[Row]) -> String {
    let mut s = String::from(
        "\nGoals (a rate, or a fraction of the bare mechanism at its upper mode in this run):\n",
    );
    for r in rows.iter().filter(|r| r.goal_rate.is_some()) {
        let Some(g) = r.goal_rate else {
            continue;
        };
        let line = match r.shmproc {
            Some(v) if r.unit.speedup(v, g) >= 1.0 => format!("met     {}", value(v, r.unit)),
            Some(v) => format!(
                "MISSED  {} (short by {:.0}%)",
                value(v, r.unit),
                (1.0 - r.unit.speedup(v, g)) * 100.0
            ),
            None => "not yet".into(),
        };
        let _ = writeln!(
            s,
            "  {:<10} {:<38} vs {:<45} {line}",
            r.family,
            r.case,
            format!("≥ {} {}", value(g, r.unit), r.unit.text())
        );
    }
    for r in rows
        .iter()
        .filter(|r| r.goal.is_some() && r.goal_rate.is_none() && r.family != "overhead")
    {
        let (Some(g), Some((l, _))) = (r.goal, r.limit) else {
            continue;
        };
        let flag = match r.spread {
            Some(sp) if sp.bimodal() => {
                format!(" (limit varied {} over the run)", ratio(sp.best / sp.worst))
            }
            _ => String::new(),
        };
        let line = match r.ratio_limit() {
            Some(x) if x >= g => format!("met     {} ≥ {g}×", ratio(x)),
            Some(x) => format!(
                "MISSED  {} < {g}× (short by {:.0}%)",
                ratio(x),
                (1.0 - x / g) * 100.0
            ),
            None => "not yet".into(),
        };
        let _ = writeln!(
            s,
            "  {:<10} {:<38} vs {:<45} {line}{flag}",
            r.family,
            r.case,
            l.name()
        );
    }
    s
}

/// The machine this ran on: CPU model, cores, kernel.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "?".into(), |k| k.trim().to_owned());
    format!("{cpu}, {cores} cores, Linux {kernel}")
}

/// The JSON document: machine, Python version, and per row family, case, shmproc value,
/// unit, Python value, limit value (nulls where there is none) and the ratios.
pub(crate) fn json(rows: &[Row], python: &Python, quick: bool) -> serde_json::Value {
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "family": r.family,
                "case": r.case,
                "shmproc": r.shmproc,
                "unit": r.unit.text(),
                "python": r.python_value(),
                "python_note": match &r.python {
                    PyCell::Value(_) => None,
                    PyCell::Missing(why) => Some(why.clone()),
                },
                "limit": r.limit.map(|(_, v)| v),
                "limit_case": r.limit.map(|(l, _)| l.name()),
                "limit_spread": r.spread.map(|sp| [sp.worst, sp.best]),
                "limit_bimodal": r.spread.map(|sp| sp.bimodal()),
                "ratio_python": r.ratio_python(),
                "ratio_limit": r.ratio_limit(),
                "goal_ratio_limit": r.goal,
                "goal_rate": r.goal_rate,
                "peer": r.peer.map(|(name, _)| name),
                "peer_value": r.peer.map(|(_, v)| v).filter(|v| v.is_finite()),
                "ratio_peer": r.ratio_peer(),
            })
        })
        .collect();
    json!({
        "machine": machine(),
        "python": python.version(),
        "quick": quick,
        "rows": rows,
    })
}
