//! What every demo test checks, shared by `tests/demos` (every topic) and
//! `tests/low_latency` (the one demo that must run alone): run it with `--short` within a
//! time limit, its narration's shape, and that it left nothing behind.

use super::util::{self, TestEnv};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one demo may take before it counts as hung (the longest takes a few seconds).
pub const LIMIT: Duration = Duration::from_secs(60);

/// The environment variable that marks every process a demo starts (children inherit it), so
/// a process left running can be found in `/proc`.
const MARK: &str = "IPCKIT_DEMOS_TEST_MARK";

/// `ipckit demo` with a run id and a mark of its own, TMPDIR and XDG_RUNTIME_DIR in the
/// test's directory.
pub fn demo_cmd(env: &TestEnv, run: &str, args: &[&str]) -> Command {
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
pub fn assert_nothing_left(env: &TestEnv, run: &str, stdout: &str, what: &str) {
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

/// Runs a demo command built by [`demo_cmd`] for `topic` with `--short`: exit 0, no panic,
/// narration as `[role pid] ...` (indented continuation lines, blank lines and `-- section --`
/// headers aside), exactly one `result:` line and it is the last. Returns its stdout.
pub fn run_short(cmd: &mut Command, topic: &str) -> String {
    let out = util::output_within(cmd, LIMIT, &format!("demo {topic}"));
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
    stdout
}
