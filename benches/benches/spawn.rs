//! Process start + join per second, per start method, beside the bare mechanisms measured in
//! the same run: `posix_spawn` + `waitpid` (of `/bin/true`, and of this very executable told to
//! exit at once), and `fork` + `_exit` + `waitpid`.
//!
//! Python 3.11 `multiprocessing` on these machines: 13/s (spawn), 389/s (fork), 39/s
//! (forkserver).
//!
//! Run: `nice cargo bench -p shmproc-benches --bench spawn`.

#![allow(clippy::print_stdout)]

use criterion::{Criterion, Throughput};
use shmproc::{Process, StartMethod};
use std::ffi::CString;
use std::hint::black_box;
use std::time::Duration;

/// Set in the environment of the bare self-spawn: exit before criterion starts.
const EXIT_AT_ONCE: &str = "SHMPROC_BENCH_EXIT_AT_ONCE";

fn noop(_: ()) {}

fn bare_posix_spawn(path: &CString, envp: &[*mut libc::c_char]) {
    let argv = [path.as_ptr().cast_mut(), std::ptr::null_mut()];
    let mut pid: libc::pid_t = 0;
    // SAFETY: `path`, `argv` and `envp` are NUL-terminated / NULL-terminated and outlive the
    // call; null file actions and attributes are allowed.
    let r = unsafe {
        libc::posix_spawn(
            &mut pid,
            path.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            argv.as_ptr(),
            envp.as_ptr(),
        )
    };
    assert_eq!(r, 0, "posix_spawn failed");
    wait(pid);
}

fn bare_fork() {
    // SAFETY: the child only calls `_exit`, which is async-signal-safe.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: `_exit` is async-signal-safe and never returns.
        unsafe { libc::_exit(0) };
    }
    assert!(pid > 0, "fork failed");
    wait(pid);
}

fn wait(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: `status` is a valid, writable int.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid failed");
}

fn start_join(method: StartMethod) {
    let p = Process::new(noop, ())
        .start_method(method)
        .start()
        .expect("start");
    assert_eq!(p.join().expect("join"), 0);
}

fn main() {
    shmproc::init();
    if std::env::var_os(EXIT_AT_ONCE).is_some() {
        return;
    }
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut g = c.benchmark_group("spawn/start_join");
    g.throughput(Throughput::Elements(1));

    let true_path = CString::new("/bin/true").expect("no NUL");
    let self_path = CString::new(
        std::env::current_exe()
            .expect("current_exe")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .expect("no NUL");
    let env_exit = CString::new(format!("{EXIT_AT_ONCE}=1")).expect("no NUL");
    let empty_env = [std::ptr::null_mut()];
    let exit_env = [env_exit.as_ptr().cast_mut(), std::ptr::null_mut()];

    g.bench_function("bare_posix_spawn_bin_true", |b| {
        b.iter(|| bare_posix_spawn(black_box(&true_path), &empty_env))
    });
    g.bench_function("bare_posix_spawn_self", |b| {
        b.iter(|| bare_posix_spawn(black_box(&self_path), &exit_env))
    });
    g.bench_function("bare_fork_exit", |b| b.iter(bare_fork));
    g.bench_function("spawn", |b| b.iter(|| start_join(StartMethod::Spawn)));
    g.bench_function("fork", |b| b.iter(|| start_join(StartMethod::Fork)));
    shmproc::ensure_forkserver().expect("forkserver");
    g.bench_function("forkserver", |b| {
        b.iter(|| start_join(StartMethod::ForkServer))
    });
    g.finish();
    c.final_summary();
    summary(&true_path, &self_path, &exit_env, &empty_env);
}

/// Python 3.11 `multiprocessing` start + join per second on these machines.
const PYTHON: [(&str, f64); 3] = [("spawn", 13.0), ("fork", 389.0), ("forkserver", 39.0)];

/// Starts + joins per second of `f`, measured for about `secs` seconds.
fn rate(secs: f64, mut f: impl FnMut()) -> f64 {
    let start = std::time::Instant::now();
    let mut n = 0u32;
    while start.elapsed().as_secs_f64() < secs {
        f();
        n += 1;
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

/// Prints one table: each start method beside the bare mechanism it builds on (measured
/// again here, interleaved, since the machine drifts) and beside Python.
fn summary(
    true_path: &CString,
    self_path: &CString,
    exit_env: &[*mut libc::c_char],
    empty_env: &[*mut libc::c_char],
) {
    let secs = 1.0;
    let mut rows = Vec::new();
    for round in 0..3 {
        let bare_true = rate(secs, || bare_posix_spawn(true_path, empty_env));
        let bare_self = rate(secs, || bare_posix_spawn(self_path, exit_env));
        let bare_fork = rate(secs, bare_fork);
        let spawn = rate(secs, || start_join(StartMethod::Spawn));
        let fork = rate(secs, || start_join(StartMethod::Fork));
        let forkserver = rate(secs, || start_join(StartMethod::ForkServer));
        rows.push((
            round, bare_true, bare_self, bare_fork, spawn, fork, forkserver,
        ));
    }
    println!();
    println!("process start + join per second (3 interleaved rounds of ~1 s each)");
    println!(
        "{:>5} {:>10} {:>10} {:>10} | {:>8} {:>6} {:>6} | {:>8} {:>6} {:>6} | {:>10} {:>6} {:>6}",
        "round",
        "spawn(true)",
        "spawn(self)",
        "fork+exit",
        "Spawn",
        "/bare",
        "/py",
        "Fork",
        "/bare",
        "/py",
        "ForkServer",
        "/bare",
        "/py"
    );
    for (round, bt, bs, bf, s, f, fs) in rows {
        println!(
            "{:>5} {:>10.0} {:>10.0} {:>10.0} | {:>8.0} {:>6.2} {:>6.1} | {:>8.0} {:>6.2} {:>6.1} | {:>10.0} {:>6.2} {:>6.1}",
            round,
            bt,
            bs,
            bf,
            s,
            s / bs,
            s / PYTHON[0].1,
            f,
            f / bf,
            f / PYTHON[1].1,
            fs,
            fs / bf,
            fs / PYTHON[2].1
        );
    }
    println!(
        "bare: posix_spawn+waitpid of /bin/true and of this executable exiting at once; \
         fork+_exit+waitpid. Python: {PYTHON:?}"
    );
}
