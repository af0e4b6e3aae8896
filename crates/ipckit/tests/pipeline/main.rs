//! Pipelines against bash: the same stages give the same bytes and the same status as
//! `bash -c 'a | b | c'` (and `bash -o pipefail -c`), SIGPIPE ends a writer as it does under a
//! shell, each stage holds its own pipe ends and no others, and a stage that cannot start
//! means no stage is left running.

#[path = "../util/mod.rs"]
mod util;

use ipckit::pipeline::{Outcome, Pipeline, StageStatus};
use ipckit::signal::Signal;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use util::watchdog;

/// Pipelines whose output and status do not depend on scheduling, with the PIPESTATUS we
/// expect where that is deterministic too.
const CASES: &[(&[&str], Option<&[u8]>)] = &[
    (&["seq 1 100000", "grep 7", "wc -l"], Some(&[0, 0, 0])),
    // The first stage dies of SIGPIPE once `head` has exited.
    (&["yes", "head -n 3"], Some(&[141, 0])),
    // The middle stage fails.
    (
        &["printf 'a\\nb\\n'", "grep nomatch", "cat"],
        Some(&[0, 1, 0]),
    ),
    (
        &["true", "sh -c 'exit 3'", "sh -c 'cat; exit 4'"],
        Some(&[0, 3, 4]),
    ),
    // A stage killed by a signal counts as 128 + n.
    (&["sh -c 'kill -TERM $$'", "cat"], Some(&[143, 0])),
    // `echo` may or may not be hit by SIGPIPE before its reader dies: only the status is fixed.
    (&["echo hi", "sh -c 'kill -KILL $$'"], None),
    (
        &[
            "printf '%s\\n' \"a b\" 'c\\d' e\\ f \"\\$x\"",
            "sort -r",
            "tr a-z A-Z",
        ],
        Some(&[0, 0, 0]),
    ),
    // Words a shell leaves alone, though they look special.
    (
        &["echo --prefix=~/x \"q\"=~ 1a=~ x~ a#b ]x} !", "cat"],
        Some(&[0, 0]),
    ),
];

/// Runs our pipeline, stdin empty, collecting stdout.
fn ours(stages: &[&str], pipefail: bool) -> (Vec<u8>, Outcome) {
    let mut p = Pipeline::new().pipefail(pipefail);
    for s in stages {
        p = p.stage_str(s).unwrap();
    }
    let mut running = p
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = Vec::new();
    running
        .take_stdout()
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    (out, running.wait().unwrap())
}

/// Runs the same stages joined by ` | ` under bash, stdin empty; the status as bash's `$?`.
fn bash(stages: &[&str], pipefail: bool) -> (Vec<u8>, u8) {
    let mut c = Command::new("bash");
    if pipefail {
        c.args(["-o", "pipefail"]);
    }
    let out = c
        .arg("-c")
        .arg(stages.join(" | "))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let st = out.status;
    let code = st.code().or_else(|| st.signal().map(|s| 128 + s)).unwrap();
    (out.stdout, code as u8)
}

#[test]
fn same_output_and_status_as_bash() {
    watchdog(60, || {
        for (stages, pipestatus) in CASES {
            for pipefail in [false, true] {
                let (out, outcome) = ours(stages, pipefail);
                let (bash_out, bash_status) = bash(stages, pipefail);
                let what = format!("{stages:?} pipefail={pipefail}");
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&bash_out),
                    "{what}"
                );
                assert_eq!(outcome.status(), bash_status, "{what}: {outcome:?}");
                if let Some(want) = pipestatus {
                    assert_eq!(outcome.pipestatus(), *want, "{what}");
                }
            }
        }
    });
}

#[test]
fn status_rules() {
    watchdog(30, || {
        // yes | head -n 3: SIGPIPE is a signal death (141), which only pipefail reports.
        let (out, o) = ours(&["yes", "head -n 3"], false);
        assert_eq!(out, b"y\ny\ny\n");
        assert_eq!(
            o.stages(),
            [
                StageStatus::Signaled(Signal::SIGPIPE),
                StageStatus::Exited(0)
            ]
        );
        assert_eq!((o.status(), o.success()), (0, true));
        let (_, o) = ours(&["yes", "head -n 3"], true);
        assert_eq!((o.status(), o.success()), (141, false));
        // The rightmost non-zero status wins under pipefail, the last one without.
        let (_, o) = ours(&["sh -c 'exit 5'", "sh -c 'exit 6'", "true"], true);
        assert_eq!((o.pipestatus(), o.status()), (vec![5, 6, 0], 6));
        let (_, o) = ours(&["sh -c 'exit 5'", "sh -c 'exit 6'", "true"], false);
        assert_eq!(o.status(), 0);
        let (_, o) = ours(&["false"], false);
        assert_eq!((o.pipestatus(), o.status()), (vec![1], 1));
    });
}

#[test]
fn stages_get_default_sigpipe_and_an_empty_mask() {
    watchdog(30, || {
        // This thread blocks a signal and Rust ignores SIGPIPE in this process; neither may
        // reach the stages.
        ipckit::signal::block_for_process(&[Signal::SIGUSR2]).unwrap();
        let (out, o) = ours(&["grep -E '^Sig(Blk|Ign):' /proc/self/status"], false);
        assert!(o.success(), "{o:?}");
        let text = String::from_utf8(out).unwrap();
        let mask = |name: &str| {
            let line = text.lines().find(|l| l.starts_with(name)).unwrap();
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        assert_eq!(mask("SigBlk:"), 0, "{text}");
        assert_eq!(
            mask("SigIgn:") & (1 << (13 - 1)),
            0,
            "SIGPIPE ignored: {text}"
        );
    });
}

#[test]
fn a_signalled_stage_is_128_plus_n() {
    watchdog(30, || {
        let mut running = Pipeline::new()
            .stage(["sleep", "30"])
            .stage(["cat"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        assert!(running.try_wait().unwrap().is_none());
        running.signal(Signal::SIGTERM).unwrap();
        let o = running.wait().unwrap();
        // cat was signalled too, or saw end-of-file first: either way the rule holds.
        assert_eq!(o.pipestatus()[0], 128 + 15);
        assert!(matches!(o.pipestatus()[1], 0 | 143), "{o:?}");

        let mut running = Pipeline::new()
            .stage(["sleep", "30"])
            .stage(["sleep", "30"])
            .spawn()
            .unwrap();
        assert!(running
            .wait_timeout(Duration::from_millis(50))
            .unwrap()
            .is_none());
        let o = running.kill().unwrap();
        assert_eq!(o.pipestatus(), [137, 137]);
        assert_eq!(o.status(), 137);
    });
}

#[test]
fn wait_timeout_returns_once_all_have_ended() {
    watchdog(30, || {
        let mut running = Pipeline::new()
            .stage(["sleep", "0.2"])
            .stage(["true"])
            .spawn()
            .unwrap();
        let o = running.wait_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(o.map(|o| o.pipestatus()), Some(vec![0, 0]));
    });
}

/// `/proc/PID/fd`: descriptor number -> what it is (`pipe:[inode]`, a path, ...).
fn fds_of(pid: u32) -> BTreeMap<i32, String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse().ok()?;
            let link = std::fs::read_link(e.path()).ok()?;
            Some((n, link.to_string_lossy().into_owned()))
        })
        .collect()
}

/// Descriptors of this process that a child would inherit (no `FD_CLOEXEC`), beyond stdio.
fn inheritable_fds() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fdinfo")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n: i32 = e.file_name().to_str()?.parse().ok()?;
            let info = std::fs::read_to_string(e.path()).ok()?;
            let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
            let flags = u32::from_str_radix(flags.trim(), 8).ok()?;
            (n > 2 && flags & 0o2000000 == 0).then_some(n)
        })
        .collect()
}

#[test]
fn each_stage_holds_its_own_pipe_ends_and_no_others() {
    watchdog(30, || {
        let mut running = Pipeline::new()
            .stage(["sleep", "30"])
            .stage(["sleep", "30"])
            .stage(["sleep", "30"])
            .stage(["sleep", "30"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pids = running.pids();
        let extra = inheritable_fds();
        // Just after exec the dynamic loader opens and closes files of its own (ld.so.cache,
        // libc): read each table until it is down to stdio, or give up after 10 s and show
        // it. A leaked pipe end would never go away.
        let until = Instant::now() + Duration::from_secs(10);
        let settled = |pid: u32| loop {
            let t = fds_of(pid);
            if t.keys().filter(|n| !extra.contains(n)).eq(&[0, 1, 2]) || Instant::now() > until {
                return t;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let tables: Vec<_> = pids.iter().map(|&p| settled(p)).collect();
        let mut pipes_seen = Vec::new();
        for (i, t) in tables.iter().enumerate() {
            let numbers: Vec<i32> = t.keys().copied().filter(|n| !extra.contains(n)).collect();
            assert_eq!(numbers, [0, 1, 2], "stage {} has {t:?}", i + 1);
            // Pipes beyond stdio, other than what this process itself lets children inherit.
            let others: Vec<(&i32, &String)> = t
                .iter()
                .filter(|(n, l)| **n > 2 && !extra.contains(n) && l.starts_with("pipe:"))
                .collect();
            assert_eq!(others, [], "stage {} holds another pipe: {t:?}", i + 1);
            let want = usize::from(i > 0) + usize::from(i + 1 < tables.len());
            // stderr may itself be a pipe (the test harness's); count only 0 and 1.
            let own: Vec<&String> = [&t[&0], &t[&1]]
                .into_iter()
                .filter(|l| l.starts_with("pipe:"))
                .collect();
            assert_eq!(own.len(), want, "stage {}: {t:?}", i + 1);
            if i > 0 {
                assert_eq!(
                    t[&0],
                    tables[i - 1][&1],
                    "stage {} reads another pipe",
                    i + 1
                );
            }
            pipes_seen.extend(own.into_iter().cloned());
        }
        // Three distinct pipes, each seen at exactly its two ends.
        pipes_seen.sort();
        pipes_seen.dedup();
        assert_eq!(pipes_seen.len(), 3, "{tables:?}");
        let o = running.kill().unwrap();
        assert_eq!(o.pipestatus(), [137; 4]);
    });
}

/// Processes whose parent is this one and whose argv is exactly `argv`.
fn children_running(argv: &[&str]) -> Vec<u32> {
    let me = std::process::id();
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            ppid == Some(me)
                && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want)
        })
        .collect()
}

#[test]
fn a_missing_program_starts_nothing() {
    watchdog(30, || {
        let marker = ["sleep", "987653"];
        let err = Pipeline::new()
            .stage(marker)
            .stage(["ipckit-no-such-program"])
            .stage(["cat"])
            .spawn()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            "stage 2: 'ipckit-no-such-program': command not found"
        );
        assert_eq!(children_running(&marker), Vec::<u32>::new());

        let err = Pipeline::new().stage(["/"]).spawn().unwrap_err();
        assert_eq!(err.to_string(), "stage 1: '/': is a directory");
        let err = Pipeline::new()
            .stage(["cat"])
            .stage(["/ipckit/no/such/file"])
            .spawn()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(
            err.to_string()
                .starts_with("stage 2: '/ipckit/no/such/file': "),
            "{err}"
        );
    });
}

#[test]
fn a_stage_that_fails_to_start_takes_the_started_ones_down() {
    watchdog(30, || {
        // Executable, so it passes the PATH check, but its interpreter does not exist, so
        // execve fails (ENOENT) after the first stage has started.
        let dir = util::init();
        let script = dir.join(format!("bad-interpreter-{}", std::process::id()));
        std::fs::write(&script, "#!/ipckit/no/such/interpreter\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
        let marker = ["sleep", "987654"];
        let err = Pipeline::new()
            .stage(marker)
            .stage([&script])
            .spawn()
            .unwrap_err();
        std::fs::remove_file(&script).unwrap();
        assert!(err.to_string().starts_with("stage 2: '"), "{err}");
        // Killed and reaped: not running, not a zombie.
        assert_eq!(children_running(&marker), Vec::<u32>::new());
    });
}

#[test]
fn bad_pipelines_are_refused_before_anything_starts() {
    watchdog(30, || {
        let err = Pipeline::new().spawn().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let err = Pipeline::new()
            .stage(["true"])
            .stage(Vec::<String>::new())
            .spawn()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "stage 2: empty stage: there is no command to run"
        );
        assert!(Pipeline::new().stage_str("").is_err());
        assert!(Pipeline::new().stage_str("cat 'x").is_err());
        assert!(Pipeline::new().stage_str("cat $HOME").is_err());
        assert!(Pipeline::new().stage_str("cat >x").is_err());

        let max = ipckit::pipe::max_capacity().unwrap();
        let marker = ["sleep", "987655"];
        let err = Pipeline::new()
            .stage(marker)
            .stage(["cat"])
            .pipe_capacity(max + 1)
            .spawn()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("pipe-max-size"), "{err}");
        assert_eq!(children_running(&marker), Vec::<u32>::new());
        // One stage has no pipe, but the size is still checked.
        let err = Pipeline::new()
            .stage(["true"])
            .pipe_capacity(max + 1)
            .spawn()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    });
}

#[test]
fn pipe_size_sets_every_pipe() {
    watchdog(30, || {
        let size = ipckit::pipe::max_capacity().unwrap().min(1 << 20);
        let mut running = Pipeline::new()
            .stage(["seq", "1", "50000"])
            .stage(["cat"])
            .stage(["wc", "-l"])
            .pipe_capacity(size)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        assert_eq!(running.pipe_capacity(), Some(size));
        let mut out = String::new();
        running
            .take_stdout()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out.trim(), "50000");
        assert!(running.wait().unwrap().success());
        // Without it, the system's default (one page's worth of slots, 64 KiB usually).
        let mut running = Pipeline::new()
            .stage(["true"])
            .stage(["true"])
            .spawn()
            .unwrap();
        assert!(running.pipe_capacity().is_some_and(|c| c >= 4096));
        running.wait().unwrap();
    });
}

#[test]
fn stdin_can_be_fed_from_here() {
    watchdog(30, || {
        let mut running = Pipeline::new()
            .stage(["sort"])
            .stage(["uniq", "-c"])
            .stage(["sort", "-rn"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = running.take_stdin().unwrap();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            stdin.write_all(b"b\na\nb\nc\nb\na\n").unwrap();
        });
        let mut out = String::new();
        running
            .take_stdout()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        writer.join().unwrap();
        let lines: Vec<String> = out
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(lines, ["3 b", "2 a", "1 c"]);
        assert!(running.wait().unwrap().success());
    });
}

#[test]
fn dropping_a_running_pipeline_kills_and_reaps_it() {
    watchdog(30, || {
        let marker = ["sleep", "987656"];
        let running = Pipeline::new().stage(marker).stage(marker).spawn().unwrap();
        assert_eq!(children_running(&marker).len(), 2);
        drop(running);
        assert_eq!(children_running(&marker), Vec::<u32>::new());
    });
}

/// The words bash makes of `line` (as arguments to printf, so no keyword rules apply).
fn bash_words(line: &str) -> Option<Vec<String>> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("printf '%s\\0' {line}"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let mut words: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .map(String::from)
        .collect();
    words.pop(); // after the last NUL
    Some(words)
}

/// Lines built from the pieces of shell quoting, with characters that are special somewhere.
fn shell_line() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let piece = prop_oneof![
        "[ab=:!}~#-]{1,3}",
        "[ab_]{1,2}=[ab:~]{0,3}",
        "'[ab \"\\\\$*=~#{}\t-]{0,4}'",
        "\"([ab '*=~#{}\t-]|\\\\[$`\"\\\\ab])*\"",
        "\\\\[ab '\"$*=~#{}\t-]",
        "[ \t]{1,2}",
    ];
    proptest::collection::vec(piece, 1..8).prop_map(|v| v.concat())
}

/// Whatever the splitter accepts, bash splits into the same words: it may refuse more than
/// bash would, never split differently. (A runner rather than `proptest!`, to be under the
/// watchdog like every test that starts processes.)
#[test]
fn accepted_stages_split_as_bash_splits_them() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    watchdog(120, || {
        let mut runner = TestRunner::new(Config {
            cases: 300,
            // Nothing to persist: a failure prints the line, which is the regression case.
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&shell_line(), |line| {
            if let Ok(words) = ipckit::pipeline::split(&format!("printf {line}")) {
                let ours = words[1..].to_vec();
                if !ours.is_empty() && Some(&ours) != bash_words(&line).as_ref() {
                    return Err(TestCaseError::fail(format!(
                        "{line:?}: split gives {ours:?}, bash {:?}",
                        bash_words(&line)
                    )));
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    });
}
