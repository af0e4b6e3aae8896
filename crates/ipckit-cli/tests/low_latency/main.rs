//! `ipckit demo low-latency --short`, alone in its test binary: it spins on both CPUs, runs a
//! real-time process and a CPU-bound competitor, so it must not run beside other tests (cargo
//! runs test binaries one after another). It exits 0, narrates every step of the recipe with
//! its percentiles, ends with one `result:` line, and leaves nothing behind: no object, no
//! process (the competitor and the echoing children killed and reaped).

#[path = "../demos/common.rs"]
mod common;
#[path = "../util/mod.rs"]
mod util;

use common::{assert_nothing_left, demo_cmd, run_short};
use util::TestEnv;

#[test]
fn the_recipe_step_by_step_leaves_nothing() {
    let env = TestEnv::new("demo-low-latency");
    let run = format!("dl{}", std::process::id());
    let mut cmd = demo_cmd(&env, &run, &["demo", "low-latency", "--short"]);
    let stdout = run_short(&mut cmd, "low-latency");
    if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
        for step in ["default", "pinned", "pinned + spin"] {
            let line = stdout
                .lines()
                .find(|l| l.contains(&format!("] {step}: ")))
                .unwrap_or_else(|| panic!("no figures for step {step}: {stdout}"));
            for q in ["p50 ", "p99 ", "p99.9 ", "max "] {
                assert!(line.contains(q), "step {step} lacks {q}: {line}");
            }
        }
        // The real-time steps ran, or said why not (throttling off, not permitted).
        for step in ["+ SCHED_FIFO", "+ mlockall"] {
            assert!(
                stdout.contains(&format!("] {step}: ")) || stdout.contains("step skipped"),
                "step {step}: {stdout}"
            );
        }
    }
    assert_nothing_left(&env, &run, &stdout, "demo low-latency");
}
