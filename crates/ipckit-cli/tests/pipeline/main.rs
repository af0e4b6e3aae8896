//! `ipckit pipeline` end to end: the same stdout and exit status as bash for the same stages
//! (with and without `--pipefail`), one clear line and exit 2 for bad input with nothing
//! started, signals while it waits, and the `pipeline` demo.

#[path = "../util/mod.rs"]
mod util;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};
use util::{run_tool, Out, TestEnv};

/// Pipelines whose stdout and status do not depend on scheduling.
const CASES: &[&[&str]] = &[
    &["seq 1 100000", "grep 7", "wc -l"],
    // The first stage dies of SIGPIPE.
    &["yes", "head -n 3"],
    // The middle stage fails.
    &["printf 'a\\nb\\n'", "grep nomatch", "cat"],
    &["true", "sh -c 'exit 3'", "sh -c 'cat; exit 4'"],
    &["sh -c 'kill -TERM $$'", "cat"],
    &["echo hi", "sh -c 'kill -KILL $$'"],
    &[
        "printf '%s\\n' \"a b\" 'c\\d' e\\ f \"\\$x\"",
        "sort -r",
        "tr a-z A-Z",
    ],
    // Words a shell leaves alone, though they look special.
    &["echo --prefix=~/x \"q\"=~ 1a=~ x~ a#b ]x} !", "cat"],
];

/// The exit status as a shell's `$?`.
fn shell_status(o: &Out) -> i32 {
    o.status
        .code()
        .or_else(|| o.status.signal().map(|s| 128 + s))
        .unwrap()
}

fn bash(stages: &[&str], pipefail: bool) -> Out {
    let line = stages.join(" | ");
    let mut args = vec!["-c", &line];
    if pipefail {
        args.splice(0..0, ["-o", "pipefail"]);
    }
    run_tool("bash", &args)
}

fn ipckit(env: &TestEnv, flags: &[&str], stages: &[&str]) -> Out {
    let mut args = vec!["pipeline"];
    args.extend_from_slice(flags);
    args.extend_from_slice(stages);
    env.run(&args, b"")
}

#[test]
fn same_stdout_and_status_as_bash() {
    let env = TestEnv::new("pipeline-bash");
    for stages in CASES {
        for pipefail in [false, true] {
            let flags: &[&str] = if pipefail { &["--pipefail"] } else { &[] };
            let ours = ipckit(&env, flags, stages);
            let theirs = bash(stages, pipefail);
            let what = format!("{stages:?} pipefail={pipefail}: {ours:?}");
            assert_eq!(ours.stdout, theirs.stdout, "{what}");
            assert_eq!(shell_status(&ours), shell_status(&theirs), "{what}");
            assert!(
                ours.status.code().is_some(),
                "ipckit itself was killed: {what}"
            );
            assert!(!ours.stderr.contains("ipckit"), "{what}");
        }
    }
}

#[test]
fn sigpipe_and_a_failing_middle_stage_with_and_without_pipefail() {
    let env = TestEnv::new("pipeline-status");
    let o = ipckit(&env, &["--status"], &["yes", "head -n 3"]);
    assert_eq!((o.stdout.as_str(), o.code()), ("y\ny\ny\n", Some(0)));
    assert!(o.stderr.contains("PIPESTATUS=(141 0) status 0"), "{o:?}");
    assert!(o.stderr.contains("killed by SIGPIPE"), "{o:?}");
    let o = ipckit(&env, &["--status", "--pipefail"], &["yes", "head -n 3"]);
    assert_eq!(o.code(), Some(141), "{o:?}");
    assert!(o.stderr.contains("PIPESTATUS=(141 0) status 141"), "{o:?}");

    let middle = ["printf 'a\\nb\\n'", "grep nomatch", "cat"];
    let o = ipckit(&env, &["--status"], &middle);
    assert_eq!(o.code(), Some(0), "{o:?}");
    assert!(o.stderr.contains("PIPESTATUS=(0 1 0) status 0"), "{o:?}");
    let o = ipckit(&env, &["--pipefail"], &middle);
    assert_eq!(o.code(), Some(1), "{o:?}");
}

#[test]
fn pipe_size_is_applied_and_checked() {
    let env = TestEnv::new("pipeline-size");
    let o = ipckit(
        &env,
        &["--pipe-size", "1MiB"],
        &["seq 1 200000", "cat", "wc -l"],
    );
    assert_eq!(o.ok().trim(), "200000");
    let max: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let over = (max + 1).to_string();
    let marker = marker(1);
    let o = ipckit(
        &env,
        &["--pipe-size", &over],
        &[&format!("sleep {marker}"), "cat"],
    );
    o.user_error("pipe-max-size");
    assert_eq!(running_with_marker(&marker), Vec::<u32>::new());
}

/// A number unique to this test process, to find its `sleep` stages in `/proc`.
fn marker(n: u32) -> String {
    format!("{}{n}", 100_000 + std::process::id())
}

/// Every live process with `marker` as one of its arguments: the stages, not ipckit or bash,
/// which have it inside a longer argument ("sleep MARKER").
fn running_with_marker(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == marker.as_bytes()))
                && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| !s.contains(") Z "))
        })
        .collect()
}

/// The descriptor numbers open in `pid`.
fn fds_of(pid: u32) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    v.sort();
    v
}

/// Descriptors above 2 that `pid` has without close-on-exec (so its children inherit them).
fn inheritable_fds(pid: u32) -> Vec<u32> {
    fds_of(pid)
        .into_iter()
        .filter(|&n| {
            n > 2
                && std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{n}")).is_ok_and(|info| {
                    info.lines()
                        .find_map(|l| l.strip_prefix("flags:"))
                        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
                        .is_some_and(|f| f & 0o2000000 == 0)
                })
        })
        .collect()
}

fn wait_for_marker(marker: &str, count: usize) {
    let until = Instant::now() + util::WATCHDOG;
    while running_with_marker(marker).len() < count {
        assert!(Instant::now() < until, "the stages never started");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn bad_input_is_one_line_and_exit_2_with_nothing_started() {
    let env = TestEnv::new("pipeline-bad");
    let m = marker(2);
    let first = format!("sleep {m}");
    for (stages, needle) in [
        (
            vec![first.as_str(), "ipckit-no-such-program", "cat"],
            "stage 2: 'ipckit-no-such-program': command not found",
        ),
        (vec![first.as_str(), "", "cat"], "stage 2 \"\": empty stage"),
        (vec![first.as_str(), "   "], "empty stage"),
        (vec![first.as_str(), "cat 'x"], "unbalanced quote"),
        (vec![first.as_str(), "ls *"], "'*' at column 4"),
        (vec![first.as_str(), "echo $HOME"], "'$' at column 6"),
        (vec![first.as_str(), "sort >out"], "'>' at column 6"),
        (vec![first.as_str(), "cat a|b"], "'|' at column 6"),
        (vec![first.as_str(), "LC_ALL=C sort"], "variable assignment"),
        (vec![first.as_str(), "/"], "is a directory"),
    ] {
        let o = ipckit(&env, &[], &stages);
        o.user_error(needle);
        assert_eq!(o.stdout, "", "{o:?}");
    }
    ipckit(&env, &[], &[]).user_error("required");
    assert_eq!(running_with_marker(&m), Vec::<u32>::new());
}

#[test]
fn sigterm_is_passed_on_and_no_stage_is_left_running() {
    let env = TestEnv::new("pipeline-term");
    let m = marker(3);
    let stage = format!("sleep {m}");
    let bg = env.spawn(&["pipeline", "--status", &stage, &stage]);
    wait_for_marker(&m, 2);
    // While they run: each stage holds 0, 1 and 2, and only what ipckit itself inherited
    // without close-on-exec (from this test's environment), nothing ipckit opened.
    // Read until the loader has closed what it opens after exec; a leak would stay.
    let inherited = inheritable_fds(bg.pid());
    let until = Instant::now() + Duration::from_secs(10);
    for pid in running_with_marker(&m) {
        loop {
            let fds: Vec<u32> = fds_of(pid)
                .into_iter()
                .filter(|n| !inherited.contains(n))
                .collect();
            if fds == [0, 1, 2] {
                break;
            }
            assert!(Instant::now() < until, "stage {pid} holds {fds:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    bg.signal(libc::SIGTERM);
    let o = bg.finish();
    assert_eq!(o.code(), Some(143), "{o:?}");
    assert!(o.stderr.contains("PIPESTATUS=(143 143)"), "{o:?}");
    assert_eq!(running_with_marker(&m), Vec::<u32>::new());
}

#[test]
fn sigint_to_ipckit_alone_does_not_stop_the_wait() {
    let env = TestEnv::new("pipeline-int");
    let m = marker(4);
    // The stage outlives the SIGINT; ipckit must wait for it and exit with its status.
    let stage = format!("sh -c 'sleep 1; echo done; exit 7' {m}");
    let bg = env.spawn(&["pipeline", &stage]);
    wait_for_marker(&m, 1);
    bg.signal(libc::SIGINT);
    bg.signal(libc::SIGQUIT);
    let o = bg.finish();
    assert_eq!((o.stdout.as_str(), o.code()), ("done\n", Some(7)), "{o:?}");
}

/// Starts `prog ARGS` as the leader of a new process group, as a shell starts a job: with
/// SIGINT and SIGQUIT at their defaults, as an interactive shell sets them for a foreground
/// job, whatever this test inherited (a non-interactive shell's background command, such as
/// `bash .ci/run &`, has both ignored, and an ignored SIGINT stays ignored across exec).
fn spawn_job(mut cmd: std::process::Command) -> util::Bg {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    // SAFETY: between fork and exec only `signal`, which is async-signal-safe, is called.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGQUIT] {
                if libc::signal(sig, libc::SIG_DFL) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    util::Bg::start(cmd.spawn().unwrap())
}

/// Ctrl-C: SIGINT to the whole process group of `leader`.
fn ctrl_c(leader: u32) {
    // SAFETY: kill takes plain integers; the group is our own child's, which it leads.
    let r = unsafe { libc::kill(-(leader as libc::pid_t), libc::SIGINT) };
    assert_eq!(r, 0);
}

#[test]
fn ctrl_c_ends_the_stages_and_then_ipckit_as_it_ends_bash() {
    let env = TestEnv::new("pipeline-ctrl-c");
    let m = marker(5);
    let stage = format!("sleep {m}");
    let bg = spawn_job(env.cmd(&["pipeline", &stage, &stage]));
    wait_for_marker(&m, 2);
    ctrl_c(bg.pid());
    let ours = bg.finish();
    assert_eq!(running_with_marker(&m), Vec::<u32>::new());

    let mut cmd = std::process::Command::new("bash");
    cmd.args(["-c", &format!("{stage} | {stage}")]);
    let bg = spawn_job(cmd);
    wait_for_marker(&m, 2);
    ctrl_c(bg.pid());
    let theirs = bg.finish();
    assert_eq!(ours.status.signal(), Some(libc::SIGINT), "{ours:?}");
    assert_eq!(ours.status.signal(), theirs.status.signal(), "{theirs:?}");
}

#[test]
fn the_pipeline_demo_runs() {
    let env = TestEnv::new("pipeline-demo");
    let list = env.run(&["demo"], b"");
    let list = list.ok();
    let (fifo, pipeline) = (
        list.find(" fifo ").unwrap(),
        list.find(" pipeline ").unwrap(),
    );
    assert!(fifo < pipeline, "{list}");
    let o = env.run(&["demo", "pipeline", "--short"], b"");
    let out = o.ok();
    assert!(out.contains("141"), "{out}");
    assert!(out.contains("result:"), "{out}");
    env.assert_clean();
}
