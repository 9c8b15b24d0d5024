//! The `examples/` twins of the reference documents print what the Python prints.
//!
//! The examples are built once with the cargo that runs this test (`cargo build --examples`,
//! same profile), then run from `target/<profile>/examples/`: `cargo run --example` per
//! example would be far slower.

use shmproc::testing::watchdog;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn examples_dir() -> PathBuf {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let mut build = Command::new(env!("CARGO"));
    build.args([
        "build",
        "--quiet",
        "-p",
        "shmproc",
        "--examples",
        "--manifest-path",
        manifest,
    ]);
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo");
    assert!(status.success(), "cargo build --examples failed");
    // This test binary is target/<profile>/deps/examples-<hash>.
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples")
}

fn run(dir: &std::path::Path, name: &str) -> String {
    let out = Command::new(dir.join(name)).output().expect("run example");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} failed: {stderr}");
    assert!(stderr.is_empty(), "{name} wrote to stderr: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn examples_print_what_the_python_prints() {
    watchdog(Duration::from_secs(600), "examples", || {
        let dir = examples_dir();
        assert_eq!(run(&dir, "hello"), "hello bob\n");
        assert_eq!(
            run(&dir, "value_array"),
            "3.1415927\n[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]\n"
        );
        assert_eq!(run(&dir, "pass_resources"), "");
        let out = run(&dir, "lock_print");
        let mut lines: Vec<&str> = out.lines().collect();
        lines.sort_by_key(|l| l.rsplit(' ').next().and_then(|n| n.parse::<u32>().ok()));
        let expected: Vec<String> = (0..10).map(|i| format!("hello world {i}")).collect();
        assert_eq!(lines, expected);
        assert_eq!(run(&dir, "queue"), "[42, None, 'hello']\n");
        assert_eq!(run(&dir, "pipe"), "[42, None, 'hello']\n");
        assert_eq!(run(&dir, "join_before_get"), "");
        let mut want: String = (0..20u64)
            .map(|i| format!("square({i}) = {}\n", i * i))
            .collect();
        want.push_str("workers done: 4\n");
        assert_eq!(run(&dir, "workers"), want);
        let grid: String = (0..10u64)
            .map(|i| {
                let mut line: String = (0..10).map(|j| format!("{} ", i * 10 + j)).collect();
                line.push('\n');
                line
            })
            .collect();
        for name in [
            "exchange_thread_style",
            "exchange_fork_style",
            "exchange_message",
            "exchange_convenient",
            "exchange_pmap",
        ] {
            assert_eq!(run(&dir, name), grid, "{name}");
        }
        assert_eq!(
            run(&dir, "pool"),
            "100\n[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n"
        );
        assert_eq!(
            run(&dir, "pool_slices"),
            "sum of squares below 1000000: 333332833333500000\nslices: 8\n"
        );
        assert_eq!(
            run(&dir, "slices"),
            "squared 1000000 elements in 4 slices; sum = 333332833333500000\n"
        );
        assert_eq!(
            run(&dir, "locked_slices"),
            "squared 100000 elements in 4 locked ranges; sum = 333328333350000\n"
        );
        assert_eq!(
            run(&dir, "async_recv"),
            "received: hello from the child\ngot from the queue: 42\n"
        );
        assert_eq!(
            run(&dir, "manager_containers"),
            "{0.25: None, 1: '1', '2': 2}\n[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]\n"
        );
        assert_eq!(
            run(&dir, "manager"),
            "{0.25: None, 1: '1', '2': 2}\n[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]\n"
        );
        let greetings: String = (0..3)
            .map(|i| format!("hello {i} from a remote client\n"))
            .collect();
        assert_eq!(run(&dir, "manager_remote"), greetings);
    });
}
