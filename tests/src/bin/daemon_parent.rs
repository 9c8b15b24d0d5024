//! A parent of daemon children, for the test that SIGKILLs it: starts one daemon child per
//! start method named on the command line (`spawn`, `fork`, `forkserver`), each sleeping
//! until killed, prints `ready <pid> <pid> …`, then sleeps until it is killed itself.

#![allow(clippy::print_stdout)]

use shmproc::{Process, StartMethod};
use std::io::Write;
use std::time::Duration;

fn sleep_forever(_: ()) {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn main() -> shmproc::Result<()> {
    shmproc::init();
    let mut pids = Vec::new();
    let mut keep = Vec::new();
    for arg in std::env::args().skip(1) {
        let method = match arg.as_str() {
            "spawn" => StartMethod::Spawn,
            "fork" => StartMethod::Fork,
            "forkserver" => StartMethod::ForkServer,
            _ => continue,
        };
        let p = Process::new(sleep_forever, ())
            .daemon(true)
            .start_method(method)
            .start()?;
        pids.push(p.pid().to_string());
        keep.push(p);
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready {}", pids.join(" "));
    let _ = out.flush();
    drop(out);
    sleep_forever(());
    Ok(())
}
