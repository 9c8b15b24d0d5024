//! Runs `scripts/bench_multiprocessing.py` (Python's `multiprocessing` on the same workloads)
//! and holds its figures.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::process::{Command, Stdio};

/// The script, found from the source tree this example was built from.
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/bench_multiprocessing.py"
);

/// Python's figures, or why there are none.
#[derive(Debug)]
pub(crate) enum Python {
    /// The script ran: its version string and rates (operations per second) by key.
    Ran {
        /// `sys.version` of the interpreter.
        version: String,
        /// Rates by workload key; a workload that failed is absent.
        rates: HashMap<String, f64>,
    },
    /// No figures: the reason, printed in the Python column.
    Missing(String),
}

impl Python {
    /// Runs the script on the workloads `keys` (comma-separated keys), `--quick` if asked.
    pub(crate) fn run(keys: &[&str], quick: bool) -> Python {
        if keys.is_empty() {
            return Python::Missing("n/a".into());
        }
        if !std::path::Path::new(SCRIPT).exists() {
            // Built from the published package, which does not ship the Python script.
            return Python::Missing("no script".into());
        }
        crate::measure::progress("Python multiprocessing (python3)");
        let mut cmd = Command::new("python3");
        cmd.arg(SCRIPT).arg("--only").arg(keys.join(","));
        if quick {
            cmd.arg("--quick");
        }
        let out = match cmd.stdin(Stdio::null()).stderr(Stdio::inherit()).output() {
            Ok(out) => out,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Python::Missing("no python3".into());
            }
            Err(e) => return Python::Missing(format!("python3: {e}")),
        };
        if !out.status.success() {
            return Python::Missing(format!("python3 failed ({})", out.status));
        }
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            return Python::Missing("bad python output".into());
        };
        let version = json["python"].as_str().unwrap_or("?").to_owned();
        let rates = json["results"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        Python::Ran { version, rates }
    }

    /// Python's rate for workload `key`, or the text to print instead.
    pub(crate) fn get(&self, key: &str) -> Result<f64, String> {
        match self {
            Python::Ran { rates, .. } => rates.get(key).copied().ok_or_else(|| "failed".into()),
            Python::Missing(why) => Err(why.clone()),
        }
    }

    /// The interpreter's version, if it ran.
    pub(crate) fn version(&self) -> Option<&str> {
        match self {
            Python::Ran { version, .. } => Some(version),
            Python::Missing(_) => None,
        }
    }
}
