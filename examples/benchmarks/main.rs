//! `cargo run --release --example benchmarks`: shmproc beside Python's `multiprocessing` and
//! beside the machine's bare mechanisms, in one run.
//!
//! Reproduces the speed tables of the original `processing` package (256-byte objects through
//! queues and pipes, lock and RLock acquire+release, condition waits, integers read from a
//! sequence; plain and managed) plus ping-pong round trips, process start per start method,
//! pool throughput and shmproc's per-operation overhead. Each row shows shmproc's figure,
//! Python's figure for the same workload (`scripts/bench_multiprocessing.py`, run with `python3`
//! when present) and the bare mechanism's figure measured in the same run, with the ratios.
//! A row whose shmproc capability does not exist yet says `not yet`.
//!
//! The `peers` family measures the crates a user would pick instead (iceoryx2, interprocess,
//! ipc-channel, procspawn, pthread mutexes, `std::sync::Mutex`) alternately with shmproc.
//!
//! Options: `--quick` (short smoke run, no timing claims), `--only FAMILY`, `--json FILE`,
//! `--svg FILE`.

// A command-line program: printing the table (stdout) and progress (stderr) is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[allow(unreachable_pub, dead_code)]
mod bare;
mod chart;
mod condition;
mod exchange;
mod limits;
mod lock;
mod manager;
mod measure;
mod objects;
mod overhead;
mod peers;
mod pingpong;
mod pool;
mod python;
mod report;
mod row;
mod sequence;
mod spawn;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use limits::Limit;
use measure::{Config, Ctx};
use python::Python;
use row::{Row, Spec};

/// Command-line options.
#[derive(Debug, Default)]
struct Args {
    quick: bool,
    only: Option<String>,
    json: Option<PathBuf>,
    svg: Option<PathBuf>,
}

const USAGE: &str = "usage: benchmarks [--quick] [--only FAMILY] [--json FILE] [--svg FILE]
families: sequence lock objects condition manager pingpong spawn pool exchange overhead peers limit";

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = Args::default();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("quick") => args.quick = true,
            Long("only") => args.only = Some(parser.value()?.string()?),
            Long("json") => args.json = Some(parser.value()?.into()),
            Long("svg") => args.svg = Some(parser.value()?.into()),
            Short('h') | Long("help") => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(args)
}

/// Every row, in display order.
fn all_specs() -> Vec<Spec> {
    [
        sequence::specs(),
        lock::specs(),
        objects::specs(),
        condition::specs(),
        manager::specs(),
        pingpong::specs(),
        spawn::specs(),
        pool::specs(),
        exchange::specs(),
        overhead::specs(),
    ]
    .concat()
}

fn main() -> ExitCode {
    // The `Command` peer of the process-start rows: this executable, exiting at once.
    if std::env::var_os(peers::EXIT_AT_ONCE).is_some() {
        return ExitCode::SUCCESS;
    }
    // Children (spawn and forkserver start methods re-execute this binary) divert here, and
    // procspawn's children (the procspawn peer) there.
    shmproc::init();
    procspawn::init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("benchmarks: {e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(f) = &args.only
        && !report::FAMILIES.iter().any(|(name, _)| name == f)
    {
        eprintln!("benchmarks: unknown family {f:?}\n{USAGE}");
        return ExitCode::FAILURE;
    }
    let started = Instant::now();
    let selected = |family: &str| args.only.as_deref().is_none_or(|f| f == family);
    let specs: Vec<Spec> = all_specs()
        .into_iter()
        .filter(|s| selected(s.family))
        .collect();

    let mut keys: Vec<&str> = specs.iter().filter_map(|s| s.python).collect();
    keys.sort_unstable();
    keys.dedup();
    let python = Python::run(&keys, args.quick);

    let mut ctx = Ctx::new(Config::new(args.quick));
    let mut rows: Vec<Row> = specs
        .iter()
        .map(|s| Row::measure(s, &mut ctx, &python))
        .collect();
    if selected("peers") {
        rows.extend(peers::rows(&ctx.cfg));
    }
    if selected("limit") {
        for l in Limit::ALL {
            ctx.limit(l);
        }
    }
    for r in &mut rows {
        r.use_upper_mode(&ctx);
    }
    for l in Limit::ALL {
        if ctx.limits.iter().any(|(m, _)| *m == l) {
            let mut row = Row::for_limit(l, 0.0);
            row.use_upper_mode(&ctx);
            rows.push(row);
        }
    }
    eprint!("\r\x1b[K");

    let title = format!(
        "shmproc benchmarks{} — {}",
        if args.quick { " (--quick)" } else { "" },
        report::machine()
    );
    println!("{title}");
    match python.version() {
        Some(v) => println!("Python: {}", v.lines().next().unwrap_or(v)),
        None => println!("Python: {}", python.get("").err().unwrap_or_default()),
    }
    println!(
        "Method: each workload repeated for at least {:?}, median of {} runs (Python: same method);\n\
         a shmproc row and its limit are measured alternately run by run; a limit is taken at its\n\
         upper mode (the best of its pairings' medians, spread in the machine-limits table; a limit\n\
         that varied more than 2x is flagged `bimodal`).",
        ctx.cfg.min_time, ctx.cfg.runs
    );
    print!("{}", report::table(&rows));
    print!("{}", report::goals(&rows));
    println!("\n(total {:.0} s)", started.elapsed().as_secs_f64());

    let mut ok = true;
    if let Some(path) = &args.json {
        let doc = report::json(&rows, &python, args.quick);
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("benchmarks: writing {}: {e}", path.display());
            ok = false;
        }
    }
    if let Some(path) = &args.svg
        && let Err(e) = chart::draw(path, &rows, &title)
    {
        eprintln!("benchmarks: drawing {}: {e}", path.display());
        ok = false;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
