//! Every `ipckit demo` topic, in the learning path's order, run through the real binary with
//! `--short`: each exits 0, narrates as `[role pid] ...` and ends with one `result:` line,
//! and leaves nothing behind: no file in its TMPDIR or XDG_RUNTIME_DIR, no registry record,
//! no shared memory or message queue, no process. And a demo whose stdout is closed early
//! (`ipckit demo X | head -n 1`) still exits 0, without a panic, and cleans up the same way.

#[path = "common.rs"]
mod common;
#[path = "../util/mod.rs"]
mod util;

use common::{assert_nothing_left, demo_cmd, run_short, LIMIT};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use util::TestEnv;

/// The learning path: (level, topics), in the order the issue gives them.
const PATH: &[(&str, &[&str])] = &[
    (
        "beginner",
        &["signals", "shutdown", "pipe", "fifo", "pipeline", "stream"],
    ),
    ("intermediate", &["mq-priority", "shm-ring", "cow-snapshot"]),
    (
        "advanced",
        &[
            "fd-pass",
            "tcp-vs-udp",
            "zero-copy",
            "server",
            "low-latency",
        ],
    ),
];

/// Demos that must not run beside other tests, each in a test binary of its own
/// (`tests/low_latency`): it spins on both CPUs and runs a real-time process.
const ALONE: &[&str] = &["low-latency"];

/// `ipckit demo` lists exactly the learning path, level by level, in order, and nothing
/// unwritten.
#[test]
fn the_list_is_the_learning_path() {
    let env = TestEnv::new("demos-list");
    let out = env.run(&["demo"], b"");
    let text = out.ok();
    assert!(!text.contains("not written"), "{text}");
    let mut got: Vec<(String, String)> = Vec::new();
    let mut level = String::new();
    for line in text.lines().skip(1) {
        if let Some(l) = line.strip_suffix(':') {
            level = l.to_owned();
        } else if let Some((_, rest)) = line.trim_start().split_once(". ") {
            let name = rest.split_whitespace().next().unwrap();
            got.push((level.clone(), name.to_owned()));
        }
    }
    let want: Vec<(String, String)> = PATH
        .iter()
        .flat_map(|(l, ts)| ts.iter().map(|t| (l.to_string(), t.to_string())))
        .collect();
    assert_eq!(got, want, "{text}");
    env.assert_clean();
}

/// Every topic with `--short`, one after the other: exit 0, no panic, narration as
/// `[role pid] ...` (indented continuation lines, blank lines and `-- section --` headers
/// aside), exactly one `result:` line and it is the last; nothing left behind.
#[test]
fn every_demo_runs_short_and_leaves_nothing() {
    for (i, topic) in PATH
        .iter()
        .flat_map(|(_, ts)| ts.iter())
        .filter(|t| !ALONE.contains(t))
        .enumerate()
    {
        let env = TestEnv::new(&format!("demos-{topic}"));
        let run = format!("dt{}x{i}", std::process::id());
        let mut cmd = demo_cmd(&env, &run, &["demo", topic, "--short"]);
        let stdout = run_short(&mut cmd, topic);
        assert_nothing_left(&env, &run, &stdout, &format!("demo {topic}"));
    }
}

/// `ipckit demo X | head -n 1`: the reader closes the pipe after the first line; the demo
/// (and its children, which share the stdout) stops early, exits 0 without a panic, and
/// still removes what it made.
#[test]
fn a_closed_stdout_ends_demos_quietly() {
    for (i, topic) in ["fifo", "stream", "pipeline", "mq-priority", "server"]
        .iter()
        .enumerate()
    {
        let env = TestEnv::new(&format!("demos-head-{topic}"));
        let run = format!("dh{}x{i}", std::process::id());
        let mut cmd = demo_cmd(&env, &run, &["demo", topic, "--short"]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let pid = child.id();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // The reader is dropped here: the pipe's read end is closed, like `head -n 1` exiting.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(LIMIT) {
            Ok(o) => o.unwrap(),
            Err(_) => {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                panic!("demo {topic} | head -n 1 did not finish");
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "demo {topic} | head -n 1: {:?}: {stderr}",
            out.status
        );
        assert!(!stderr.contains("panicked"), "demo {topic}: {stderr}");
        assert!(first.starts_with('['), "demo {topic}: {first:?}");
        assert_nothing_left(&env, &run, &first, &format!("demo {topic} | head -n 1"));
    }
}
