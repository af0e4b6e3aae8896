//! `ipckit demo` end to end, topic by topic: what each one shows holds (its numbers add up,
//! it reacts to signals, it leaves nothing behind). `tests/demos` runs every topic against
//! the contract they share.

#[path = "../util/mod.rs"]
mod util;

use util::{exists, mq_lock, TestEnv};

#[test]
fn demo_lists_and_runs_topics() {
    let _g = mq_lock();
    let env = TestEnv::new("demo");
    let list = env.run(&["demo"], b"");
    let text = list.ok();
    let pipe = text.find("pipe").unwrap();
    let mq = text.find("mq-priority").unwrap();
    assert!(pipe < mq, "{text}");

    let out = env.run(&["demo", "pipe", "--short"], b"");
    let text = out.ok();
    assert!(text.contains("[child"), "{text}");
    assert!(
        text.trim_end()
            .lines()
            .last()
            .unwrap()
            .contains("per round trip"),
        "{text}"
    );

    let out = env.run(&["demo", "mq-priority", "--short"], b"");
    let text = out.ok();
    assert!(
        text.contains("sent in order 1,5,9,3, received 9,5,3,1"),
        "{text}"
    );
    assert!(
        text.trim_end()
            .lines()
            .last()
            .unwrap()
            .contains("receive latency"),
        "{text}"
    );

    let out = env.run(&["demo", "shm-ring", "--short"], b"");
    let text = out.ok();
    assert!(
        text.contains("read in place without a copy: \"hello"),
        "{text}"
    );
    assert!(text.contains("result: 64 B round trip"), "{text}");
    assert!(!text.contains("correct out of"), "{text}");
    env.assert_clean();
}

/// `demo signals` and `demo shutdown`: the standard signal coalesces while the real-time ones
/// queue; the service drains to 0 with its worker reaped, and a second SIGTERM forces 143.
#[test]
fn demo_signals_and_shutdown() {
    let env = TestEnv::new("demo-signals");
    let out = env.run(&["demo"], b"");
    let list = out.ok();
    let (sig, shut) = (
        list.find("signals").unwrap(),
        list.find("shutdown").unwrap(),
    );
    assert!(sig < shut, "{list}");

    let out = env.run(&["demo", "signals", "--short"], b"");
    let text = out.ok();
    assert!(
        text.contains("result: SIGUSR1 1/5 received, SIGRTMIN+1 5/5 received"),
        "{text}"
    );
    assert!(text.contains("SI_QUEUE) payload Some(4)"), "{text}");

    let out = env.run(&["demo", "shutdown", "--short"], b"");
    let text = out.ok();
    assert!(text.contains("reload; still accepting = true"), "{text}");
    assert!(text.contains("a new request gets None (refused)"), "{text}");
    assert!(
        text.contains("Drained(SIGTERM(15)), exit status by convention 0"),
        "{text}"
    );
    assert!(text.contains("exit status: 0 (no zombie left)"), "{text}");
    assert!(text.contains("exit status Some(143)"), "{text}");
    assert!(text.contains("result: graceful drain exit 0"), "{text}");
    env.assert_clean();
}

/// `demo cow-snapshot`: a forked child snapshots an 8 MiB table while the parent writes to
/// it; the demo verifies the file against the table at fork time, says so, and removes the
/// file (its TMPDIR is the test's directory, which must be left empty). A size of 0 is a
/// user error.
#[test]
fn demo_cow_snapshot_verifies_and_cleans_up() {
    let env = TestEnv::new("demo-cow");
    let mut cmd = env.cmd(&["demo", "cow-snapshot", "--size", "8", "--short"]);
    cmd.env("TMPDIR", &env.dir)
        .stdin(std::process::Stdio::null());
    let out = util::output_within(&mut cmd, util::WATCHDOG * 3, "demo cow-snapshot");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {text}{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        text.contains("verified: the 8 MiB snapshot equals the table at fork time"),
        "{text}"
    );
    let last = text.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("result:") && last.contains("verified"),
        "{text}"
    );
    env.assert_clean();

    env.run(&["demo", "cow-snapshot", "--size", "0"], b"")
        .user_error("from 1 to");
}

/// The numbers of the stream demo's `result:` line: (produced, consumed, in pipe, blocked ms).
fn stream_result(stdout: &str) -> (u64, u64, u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("result: produced = consumed + in pipe: "))
        .unwrap_or_else(|| panic!("no result line: {stdout}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    // produced, consumed, in pipe, blocked ms, then the run's seconds and percent.
    assert!(nums.len() >= 4, "{line}");
    (nums[0], nums[1], nums[2], nums[3])
}

/// The stream demo's player pid, from its first line.
fn player_pid(stdout: &str) -> u32 {
    let l = stdout
        .lines()
        .find(|l| l.starts_with("[player"))
        .unwrap_or_else(|| panic!("no player line: {stdout}"));
    l.trim_start_matches("[player")
        .trim_start()
        .split(']')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// `demo stream --short`: a player slower than the downloader makes it block, and the
/// final counts add up to the byte.
#[test]
fn demo_stream_counters_add_up_and_the_producer_blocks() {
    let env = TestEnv::new("demo-stream");
    let out = env.run(
        &[
            "demo",
            "stream",
            "--short",
            "--rate",
            "40",
            "--consume",
            "10",
            "--pipe-size",
            "131072",
        ],
        b"",
    );
    let text = out.ok();
    assert!(text.contains("a pipe of 128 KiB"), "{text}");
    let last = text.trim_end().lines().last().unwrap();
    assert!(last.starts_with("result: "), "{text}");
    let (produced, consumed, in_pipe, blocked_ms) = stream_result(text);
    assert_eq!(produced, consumed + in_pipe, "{last}");
    assert!(consumed > 0 && produced > 0, "{last}");
    assert!(in_pipe <= 131072, "{last}");
    assert!(
        blocked_ms > 0,
        "the player is slower, the downloader must block: {last}"
    );
    // One report line a second, with all four columns.
    assert!(text.contains("% of the second)"), "{text}");
    let pid = player_pid(text);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    env.assert_clean();
}

/// SIGTERM to the demo, or SIGINT to its whole process group as Ctrl-C sends it (so the
/// player gets one too and must leave the stopping to the downloader): both sides stop,
/// totals are printed and add up, status 130, and no player process is left.
#[test]
fn demo_stream_stops_cleanly_on_sigterm_and_ctrl_c() {
    use std::os::unix::process::CommandExt;
    for (sig, group) in [(libc::SIGTERM, false), (libc::SIGINT, true)] {
        let env = TestEnv::new(&format!("demo-stream-sig{sig}"));
        let mut cmd = env.cmd(&["demo", "stream", "--rate", "40", "--consume", "10"]);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0);
        let bg = util::Bg::start(cmd.spawn().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(1500));
        if group {
            // SAFETY: kill takes plain integers; the group is the one our child leads.
            assert_eq!(unsafe { libc::kill(-(bg.pid() as libc::pid_t), sig) }, 0);
        } else {
            bg.signal(sig);
        }
        let out = bg.finish();
        assert_eq!(out.code(), Some(130), "signal {sig}: {out:?}");
        assert!(!out.stderr.contains("panicked"), "{out:?}");
        assert!(out.stderr.contains("interrupted; cleaned up"), "{out:?}");
        assert!(
            out.stdout.contains("interrupted: I stop writing"),
            "{out:?}"
        );
        assert!(out.stdout.contains("] totals: produced "), "{out:?}");
        let (produced, consumed, in_pipe, _) = stream_result(&out.stdout);
        assert_eq!(produced, consumed + in_pipe, "{out:?}");
        let pid = player_pid(&out.stdout);
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "player {pid} is still there"
        );
        env.assert_clean();
    }
}

/// `demo fifo --short` runs through and leaves no FIFO (nor its directory, nor a record);
/// the topics are in order; the stream options are refused elsewhere.
#[test]
fn demo_fifo_leaves_nothing_and_stream_options_belong_to_stream() {
    let env = TestEnv::new("demo-fifo");
    let list = env.run(&["demo"], b"");
    let text = list.ok();
    let (pipe, fifo, pipeline, stream) = (
        text.find(" pipe ").unwrap(),
        text.find(" fifo ").unwrap(),
        text.find(" pipeline ").unwrap(),
        text.find(" stream ").unwrap(),
    );
    assert!(
        pipe < fifo && fifo < pipeline && pipeline < stream,
        "{text}"
    );

    let mut cmd = env.cmd(&["demo", "fifo", "--short"]);
    cmd.env("TMPDIR", &env.dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = util::Bg::start(cmd.spawn().unwrap()).finish();
    let text = out.ok();
    assert!(text.contains("NotConnected"), "{text}");
    assert!(text.contains("not followed"), "{text}");
    assert!(
        text.contains("read returned 0: end-of-file, because the LAST writer closed"),
        "{text}"
    );
    let last = text.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("result: ") && last.contains("MB/s"),
        "{text}"
    );
    env.assert_clean();

    env.run(&["demo", "pipe", "--rate", "5"], b"")
        .user_error("--rate applies to the stream demo only");
    env.run(&["demo", "fifo", "--consume", "5"], b"")
        .user_error("--consume applies to the stream demo only");
    env.run(&["demo", "pipe", "--pipe-size", "4096"], b"")
        .user_error("--pipe-size applies to the stream demo only");
    env.run(
        &["demo", "stream", "--short", "--pipe-size", "999999999999"],
        b"",
    )
    .user_error("exceeds the system maximum");
}

/// `demo tcp-vs-udp --short`: exits 0; TCP delivers the whole flood; UDP's figures add up
/// (sent = received + lost, on the line that says so and in the result); the Nagle round
/// trips and the datagram limit are reported; nothing is left behind.
#[test]
fn demo_tcp_vs_udp_numbers_add_up() {
    let env = TestEnv::new("demo-tcp-udp");
    let list = env.run(&["demo"], b"");
    assert!(list.ok().contains("tcp-vs-udp"), "{list:?}");
    let out = env.run(&["demo", "tcp-vs-udp", "--short"], b"");
    let text = out.ok();
    let sum = text
        .lines()
        .find_map(|l| l.split("sent = received + lost: ").nth(1))
        .unwrap_or_else(|| panic!("no sum line: {text}"));
    let nums: Vec<u64> = sum
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(nums.len(), 3, "{sum}");
    assert_eq!(nums[0], nums[1] + nums[2], "{sum}");
    let result = text
        .lines()
        .find(|l| l.starts_with("result: "))
        .unwrap_or_else(|| panic!("no result line: {text}"));
    assert!(
        result.contains(&format!("TCP {0}/{0} in order", nums[0])),
        "{result}"
    );
    assert!(
        result.contains(&format!("UDP {}/{} (lost {} =", nums[1], nums[0], nums[2])),
        "{result}"
    );
    assert!(result.contains("with Nagle vs"), "{result}");
    assert!(result.contains("65,508: EMSGSIZE"), "{result}");
    assert!(text.contains("one read(64) returned"), "{text}");
    env.assert_clean();
}

/// `demo fd-pass --short`: the child uses the three descriptors it was passed (the parent
/// sees the file offset it moved, the line it wrote into the pipe, its answer in the memfd),
/// the demo ends with its measured rate, and nothing is left behind.
#[test]
fn demo_fd_pass_shares_open_files_and_leaves_nothing() {
    let env = TestEnv::new("demo-fd-pass");
    let listed = env.run(&["demo"], b"");
    let list = listed.ok();
    let (cow, fd) = (
        list.find(" cow-snapshot ").unwrap(),
        list.find(" fd-pass ").unwrap(),
    );
    assert!(cow < fd, "{list}");

    let out = env.run(&["demo", "fd-pass", "--short"], b"");
    let text = out.ok();
    assert!(text.contains("SCM_RIGHTS"), "{text}");
    assert!(text.contains("now stands at offset 64"), "{text}");
    assert!(
        text.contains("writing into a pipe end it never opened"),
        "{text}"
    );
    assert!(text.contains("was here"), "{text}");
    let last = text.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("result: ") && last.contains("descriptors passed per second"),
        "{text}"
    );
    env.assert_clean();
}

/// `demo zero-copy --short`: every way runs with its reader checking every word, the
/// MSG_ZEROCOPY completions are reported, and nothing is left behind.
#[test]
fn demo_zero_copy_short() {
    let env = TestEnv::new("demo-zero-copy");
    let mut cmd = env.cmd(&["demo", "zero-copy", "--short"]);
    cmd.env("TMPDIR", &env.dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = util::Bg::start(cmd.spawn().unwrap()).finish();
    let text = out.ok();
    for way in [
        "pipe-write",
        "pipe-vmsplice",
        "uds-read-write",
        "uds-splice",
        "uds-sendfile",
        "tcp-send",
        "tcp-zerocopy",
    ] {
        assert!(text.contains(way), "{way} missing: {text}");
    }
    assert!(text.contains("marked"), "{text}");
    let last = text.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("result: ") && last.contains("completions copied"),
        "{text}"
    );
    env.assert_clean();
}

#[test]
fn demo_server_short() {
    let env = TestEnv::new("demo-server");
    let mut c = env.cmd(&["demo", "server", "--short"]);
    c.env("XDG_RUNTIME_DIR", &env.dir);
    let out = util::output_within(&mut c, std::time::Duration::from_secs(60), "demo server");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "pipelining",
        "kill -9 worker",
        "replaced by worker",
        "generation 2 came up first",
        "master exited 0",
        "result: ",
    ] {
        assert!(stdout.contains(needle), "no '{needle}' in: {stdout}");
    }
    let master = stdout
        .split("] master ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap();
    assert!(!exists(&format!("/dev/shm/ipckit-serve-{master}")));
    env.assert_clean();
}
