//! Every `ipckit demo` topic, in the learning path's order, run through the real binary with
//! `--short`: each exits 0, narrates as `[role pid] ...` and ends with one `result:` line,
//! and leaves nothing behind: no file in its TMPDIR or XDG_RUNTIME_DIR, no registry record,
//! no shared memory or message queue, no process. And a demo whose stdout is closed early
//! (`ipckit demo X | head -n 1`) still exits 0, without a panic, and cleans up the same way.

#[path = "../util/mod.rs"]
mod util;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
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
        &["fd-pass", "tcp-vs-udp", "zero-copy", "server"],
    ),
];

/// How long one demo may take before it counts as hung (the longest takes a few seconds).
const LIMIT: Duration = Duration::from_secs(60);

/// The environment variable that marks every process a demo starts (children inherit it), so
/// a process left running can be found in `/proc`.
const MARK: &str = "IPCKIT_DEMOS_TEST_MARK";

/// `ipckit demo` with a run id and a mark of its own, TMPDIR and XDG_RUNTIME_DIR in the
/// test's directory.
fn demo_cmd(env: &TestEnv, run: &str, args: &[&str]) -> Command {
    let mut c = env.cmd(args);
    c.env("IPCKIT_RUN_ID", run)
        .env(MARK, run)
        .env("TMPDIR", &env.dir)
        .env("XDG_RUNTIME_DIR", &env.dir)
        .stdin(Stdio::null());
    c
}

/// The pids a demo named: those in its `[role pid]` prefixes and after "master"/"worker".
fn named_pids(text: &str) -> BTreeSet<u32> {
    let mut pids = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix('[') {
            if let Some(head) = rest.split(']').next() {
                pids.extend(
                    head.split_whitespace()
                        .filter_map(|w| w.parse::<u32>().ok()),
                );
            }
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        for w in words.windows(2) {
            if w[0] == "master" || w[0] == "worker" {
                let digits: String = w[1].chars().take_while(char::is_ascii_digit).collect();
                pids.extend(digits.parse::<u32>().ok());
            }
        }
    }
    pids
}

/// Objects in /dev/shm and /dev/mqueue that carry `run` or end in one of `pids`.
fn objects_left(run: &str, pids: &BTreeSet<u32>) -> Vec<String> {
    let mut left = Vec::new();
    for dir in ["/dev/shm", "/dev/mqueue"] {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = name.contains(run)
                || (name.starts_with("ipckit")
                    && pids.iter().any(|p| name.ends_with(&format!("-{p}"))));
            if ours {
                left.push(format!("{dir}/{name}"));
            }
        }
    }
    left
}

/// Processes whose environment holds `MARK=run` (a zombie's environment reads empty).
fn processes_left(run: &str) -> Vec<u32> {
    let needle = format!("{MARK}={run}");
    let mut left = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if environ.split(|&b| b == 0).any(|v| v == needle.as_bytes()) {
            left.push(pid);
        }
    }
    left
}

/// Asserts that the demo run `run` left nothing: files, records, objects, processes.
fn assert_nothing_left(env: &TestEnv, run: &str, stdout: &str, what: &str) {
    env.assert_clean();
    let pids = named_pids(stdout);
    assert!(!pids.is_empty(), "{what}: no [role pid] line in: {stdout}");
    let objects = objects_left(run, &pids);
    assert!(objects.is_empty(), "{what} left {objects:?}");
    // The demo has exited; a process it killed may take a moment more to be gone.
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let procs = processes_left(run);
        if procs.is_empty() {
            break;
        }
        assert!(
            Instant::now() < until,
            "{what} left processes {procs:?} running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

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
    for (i, topic) in PATH.iter().flat_map(|(_, ts)| ts.iter()).enumerate() {
        let env = TestEnv::new(&format!("demos-{topic}"));
        let run = format!("dt{}x{i}", std::process::id());
        let mut cmd = demo_cmd(&env, &run, &["demo", topic, "--short"]);
        let out = util::output_within(&mut cmd, LIMIT, &format!("demo {topic}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "demo {topic}: {:?}\n{stdout}\n{stderr}",
            out.status
        );
        assert!(!stderr.contains("panicked"), "demo {topic}: {stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        let results = lines.iter().filter(|l| l.starts_with("result: ")).count();
        assert_eq!(results, 1, "demo {topic}: {stdout}");
        assert!(
            lines.last().is_some_and(|l| l.starts_with("result: ")),
            "demo {topic} does not end with its result: {stdout}"
        );
        for l in &lines[..lines.len() - 1] {
            let narrated = l.starts_with('[') && l.contains("] ");
            let aside = l.is_empty() || l.starts_with(' ') || l.starts_with("-- ");
            assert!(
                narrated || aside,
                "demo {topic}: line not in the [role pid] form: {l:?}"
            );
        }
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
