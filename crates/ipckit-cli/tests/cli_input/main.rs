//! The CLI's inputs under attack (issue 14, rows 10, 11 and 16), against the real binary:
//! - config files and JSON inputs are read only from regular files and with a size limit:
//!   a FIFO, `/dev/zero`, a directory or an oversized file is one line and exit 2, at once;
//! - durations have a maximum: `--timeout 1e30` or `18446744073709551616` is one line, exit 2;
//! - permission denied, a file name too long, the queue name `/..` and malformed System V
//!   keys (`0x-1`, ` 12`, `+5`) are one line and exit 2;
//! - `recv` exits 0 after SIGTERM, having printed what had already arrived.

#[path = "../util/mod.rs"]
mod util;

use std::os::unix::process::CommandExt;
use std::time::Duration;
use util::{Out, TestEnv, WATCHDOG};

/// Runs `ipckit ARGS` (with `env`'s registry and `XDG_RUNTIME_DIR`) and fails the test if it
/// has not finished after `limit`: a hang, not a slow run.
fn run_within(env: &TestEnv, args: &[&str], limit: Duration) -> Out {
    let mut c = env.cmd(args);
    c.env("XDG_RUNTIME_DIR", &env.dir)
        .stdin(std::process::Stdio::null());
    let o = util::output_within(&mut c, limit, &format!("ipckit {}", args.join(" ")));
    Out {
        status: o.status,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// As [`run_within`] with the address space limited to 1 GiB (`ulimit -v`), so that an
/// unbounded read of `/dev/zero` fails fast instead of eating the machine's memory.
fn run_limited(env: &TestEnv, args: &[&str]) -> Out {
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg("ulimit -v 1048576; exec \"$0\" \"$@\"")
        .arg(util::bin())
        .args(args)
        .env("IPCKIT_REGISTRY", &env.registry)
        .env("XDG_RUNTIME_DIR", &env.dir)
        .stdin(std::process::Stdio::null());
    let o = util::output_within(&mut c, WATCHDOG, &format!("ipckit {}", args.join(" ")));
    Out {
        status: o.status,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn mkfifo(path: &str) {
    let o = util::run_tool("mkfifo", &[path]);
    assert!(o.status.success(), "mkfifo: {o:?}");
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Row 10: `serve --config` and the JSON inputs of `recommend`, `report` and `compare` given a
/// FIFO (no writer: an open for reading would block for ever), `/dev/zero`, a directory, or a
/// file over the limit: one line naming what it is, exit 2, within 10 s.
#[test]
fn config_and_json_inputs_only_from_bounded_regular_files() {
    let env = TestEnv::new("input-files");
    let fifo = env.path("fifo");
    mkfifo(&fifo);
    let html = env.path("out.html");
    let good = fixture("compare-a.json");
    let hang = Duration::from_secs(10);
    // FIFOs first: on a build that opens them, this fails at once with a hang, before the
    // /dev/zero cases below.
    for args in [
        &["serve", "--config", &fifo][..],
        &["recommend", "--from", &fifo],
        &["report", "--html", &html, &fifo],
        &["compare", &good, &fifo],
        &["compare", &fifo, &good],
    ] {
        let o = run_within(&env, args, hang);
        o.user_error("a FIFO, not a regular file");
    }
    let dir = env.dir.to_str().unwrap();
    for (args, what) in [
        (&["serve", "--config", "/dev/zero"][..], "character device"),
        (&["recommend", "--from", "/dev/zero"], "character device"),
        (
            &["report", "--html", &html, "/dev/zero"],
            "character device",
        ),
        (&["compare", "/dev/zero", &good], "character device"),
        (&["serve", "--config", dir], "a directory"),
        (&["recommend", "--from", dir], "a directory"),
    ] {
        run_limited(&env, args).user_error(what);
    }
    // Over the limit: a config file of 1 MiB and one byte (comments: valid text).
    let big = env.path("big.conf");
    let mut text = "# padding\n".repeat((1 << 20) / 10 + 1);
    text.truncate((1 << 20) + 1);
    std::fs::write(&big, text).unwrap();
    run_limited(&env, &["serve", "--config", &big]).user_error("larger than 1048576 bytes");
    assert!(
        !util::exists(&html),
        "report wrote its output for a bad input"
    );
    std::fs::remove_file(&fifo).unwrap();
    std::fs::remove_file(&big).unwrap();
    env.assert_clean();
}

/// Row 11: every duration option has a maximum; an absurd one is one line and exit 2, not a
/// panic.
#[test]
fn durations_are_bounded() {
    let env = TestEnv::new("input-durations");
    let p = env.path("q");
    for t in [
        "1e30",
        "18446744073709551616",
        "1e400",
        "inf",
        "NaN",
        "0",
        "-1",
    ] {
        let o = run_within(
            &env,
            &[
                "recv",
                "--via",
                "fifo",
                "--at",
                &p,
                &format!("--timeout={t}"),
            ],
            WATCHDOG,
        );
        o.user_error("--timeout");
        assert!(!util::exists(&p));
    }
    let o = run_within(
        &env,
        &[
            "recommend",
            "--from",
            &fixture("default-2cpu-vm.json"),
            "--latency-p99",
            "99999999999999999999s",
        ],
        WATCHDOG,
    );
    o.user_error("at most");
    // The largest allowed is taken.
    let o = run_within(
        &env,
        &[
            "recv",
            "--via",
            "fifo",
            "--at",
            &p,
            "--timeout",
            "31536000",
            "--count",
            "0",
        ],
        WATCHDOG,
    );
    o.ok();
    env.assert_clean();
}

/// Root needs another user for a permission error (root passes permission checks).
fn other_user(n: u32) -> Option<u32> {
    // SAFETY: geteuid has no preconditions.
    (unsafe { libc::geteuid() } == 0).then_some(60_000 + n)
}

/// Row 16: permission denied, a file name too long, the queue names `/..` and `/.`, and
/// System V keys `0x-1`, ` 12`, `+5` (and others not strictly 0x-hex or decimal) are each one
/// line and exit 2.
#[test]
fn user_errors_are_one_line_and_exit_2() {
    let env = TestEnv::new("input-user-errors");
    // Permission denied: a directory we may not write to. As root, a child with an unused uid
    // (and its own registry) is refused root's directory; otherwise a 0500 directory of ours.
    let closed = env.path("closed");
    std::fs::create_dir(&closed).unwrap();
    let at = format!("{closed}/x");
    let o = match other_user(14) {
        Some(uid) => {
            let reg = env.path(&format!("registry-{uid}"));
            std::fs::create_dir(&reg).unwrap();
            std::os::unix::fs::chown(&reg, Some(uid), Some(uid)).unwrap();
            let mut c = std::process::Command::new(util::bin());
            c.args(["recv", "--via", "fifo", "--at", &at, "--timeout", "0.2"])
                .env("IPCKIT_REGISTRY", &reg)
                .stdin(std::process::Stdio::null())
                .uid(uid)
                .gid(uid);
            let o = util::output_within(&mut c, WATCHDOG, "recv as another user");
            let left: Vec<_> = std::fs::read_dir(&reg).unwrap().flatten().collect();
            assert!(left.is_empty(), "records left: {left:?}");
            std::fs::remove_dir(&reg).unwrap();
            Out {
                status: o.status,
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            }
        }
        None => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o500)).unwrap();
            run_within(
                &env,
                &["recv", "--via", "fifo", "--at", &at, "--timeout", "0.2"],
                WATCHDOG,
            )
        }
    };
    o.user_error("ermission denied");
    assert!(!util::exists(&at));
    std::fs::remove_dir(&closed).unwrap();

    let long = env.path(&"n".repeat(300));
    for via in ["fifo", "uds"] {
        run_within(
            &env,
            &["recv", "--via", via, "--at", &long, "--timeout", "0.2"],
            WATCHDOG,
        )
        .user_error("");
    }
    for name in ["/..", "/."] {
        run_within(
            &env,
            &[
                "recv",
                "--via",
                "mq-posix",
                "--at",
                name,
                "--timeout",
                "0.2",
            ],
            WATCHDOG,
        )
        .user_error("not a POSIX queue name");
        run_within(&env, &["send", "--via", "mq-posix", "--to", name], WATCHDOG)
            .user_error("not a POSIX queue name");
    }
    for key in [
        "0x-1",
        " 12",
        "+5",
        "-5",
        "12 ",
        "0x",
        "0x100000000",
        "4294967296",
    ] {
        run_within(
            &env,
            &[
                "recv",
                "--via",
                "mq-sysv",
                &format!("--at={key}"),
                "--timeout",
                "0.2",
            ],
            WATCHDOG,
        )
        .user_error("is not a System V key");
    }
    // A missing argument is named, on the one line.
    run_within(&env, &["send", "--to", "/q", "hi"], WATCHDOG).user_error("--via");
    run_within(&env, &["recv", "--at", "/q"], WATCHDOG).user_error("--via");
    env.assert_clean();
}

/// Row 16: SIGTERM makes `recv` print what had already arrived, remove its queue and exit 0
/// (as `signal listen` does). The receiver is stopped (SIGSTOP) while five messages are put in
/// its queue, then gets TERM and CONT: all five come out.
#[test]
fn recv_drains_and_exits_0_on_sigterm() {
    let env = TestEnv::new("input-term");
    let q = format!("/ipckit-i14-term-{}", std::process::id());
    let mut r = env.spawn(&["recv", "--via", "mq-posix", "--at", &q]);
    r.wait_ready();
    r.signal(libc::SIGSTOP);
    for i in 1..=5 {
        let o = env.run(
            &["send", "--via", "mq-posix", "--to", &q],
            format!("m{i}\n").as_bytes(),
        );
        o.ok();
    }
    r.signal(libc::SIGTERM);
    r.signal(libc::SIGCONT);
    let o = r.finish();
    assert_eq!(o.code(), Some(0), "{o:?}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines, ["m1", "m2", "m3", "m4", "m5"], "{o:?}");
    assert!(!std::path::Path::new(&format!("/dev/mqueue{q}")).exists());
    env.assert_clean();
}

/// SIGHUP (a closed terminal or ssh session) and SIGQUIT (Ctrl-\) end `recv` as SIGINT does:
/// what it made is removed and it exits 128 + the signal.
#[test]
fn recv_cleans_up_on_sighup_and_sigquit() {
    let env = TestEnv::new("input-hup");
    for sig in [libc::SIGHUP, libc::SIGQUIT] {
        let at = env.path(&format!("fifo-{sig}"));
        let mut r = env.spawn(&["recv", "--via", "fifo", "--at", &at]);
        r.wait_ready();
        assert!(util::exists(&at));
        r.signal(sig);
        let o = r.finish();
        assert_eq!(o.code(), Some(128 + sig), "{o:?}");
        assert!(o.stderr.contains("cleaned up"), "{o:?}");
        assert!(!util::exists(&at), "signal {sig} left {at} behind");
    }
    env.assert_clean();
}
