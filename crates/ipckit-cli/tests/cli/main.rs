//! The `ipckit` binary end to end: send/recv over every mechanism (and with sh, echo, cat),
//! user errors, list/clean after a killed process, the demos, cleanup on SIGTERM.

#[path = "../util/mod.rs"]
mod util;

use std::sync::Mutex;
use util::{exists, free_port, run_tool, spawn_tool, TestEnv};

/// POSIX queue tests run one at a time: RLIMIT_MSGQUEUE (bytes of queues per user) is small.
static MQ_POSIX: Mutex<()> = Mutex::new(());

fn mq_lock() -> std::sync::MutexGuard<'static, ()> {
    MQ_POSIX.lock().unwrap_or_else(|p| p.into_inner())
}

/// A System V key for this test process (`n` tells tests apart).
fn sysv_key(n: u32) -> String {
    format!(
        "0x{:08x}",
        0x1c5e_0000u32 ^ ((std::process::id() & 0xfff) << 4) ^ n
    )
}

/// `recv --count 2` at `addr`, then two `send`s; checks what came out and what is left.
fn round_trip(env: &TestEnv, mech: &str, addr: &str, extra: &[&str]) {
    let mut args = vec![
        "recv",
        "--via",
        mech,
        "--at",
        addr,
        "--count",
        "2",
        "--timeout",
        "10",
    ];
    args.extend_from_slice(extra);
    let mut r = env.spawn(&args);
    r.wait_ready();
    for msg in ["hello", "second message"] {
        let mut a = vec!["send", "--via", mech, "--to", addr];
        a.extend_from_slice(extra);
        a.push(msg);
        env.run(&a, b"").ok();
    }
    let out = r.finish();
    assert_eq!(out.ok(), "hello\nsecond message\n", "{mech}");
}

#[test]
fn fifo_round_trip_and_stdin() {
    let env = TestEnv::new("fifo");
    let p = env.path("fifo");
    round_trip(&env, "fifo", &p, &[]);
    // stdin: one message per line.
    let mut r = env.spawn(&[
        "recv",
        "--via",
        "fifo",
        "--at",
        &p,
        "--count",
        "3",
        "--timeout",
        "10",
    ]);
    r.wait_ready();
    env.run(&["send", "--via", "fifo", "--to", &p], b"a\nb b\nc\n")
        .ok();
    assert_eq!(r.finish().ok(), "a\nb b\nc\n");
    assert!(!exists(&p));
    env.assert_clean();
}

#[test]
fn fifo_with_sh_and_cat() {
    let env = TestEnv::new("fifo-sh");
    let p = env.path("fifo");
    // sh writes plain lines into the FIFO ipckit created.
    let mut r = env.spawn(&[
        "recv",
        "--via",
        "fifo",
        "--at",
        &p,
        "--count",
        "2",
        "--timeout",
        "10",
    ]);
    r.wait_ready();
    let sh = format!("echo hi > '{p}'; echo there > '{p}'");
    run_tool("sh", &["-c", &sh]).ok();
    assert_eq!(r.finish().ok(), "hi\nthere\n");
    assert!(!exists(&p));
    // ipckit sends raw lines, no header, into a FIFO that cat reads.
    run_tool("mkfifo", &[&p]).ok();
    let cat = spawn_tool("cat", &[&p]);
    env.run(&["send", "--via", "fifo", "--to", &p, "plain bytes"], b"")
        .ok();
    assert_eq!(cat.finish().ok(), "plain bytes\n");
    std::fs::remove_file(&p).unwrap();
    env.assert_clean();
}

#[test]
fn uds_round_trip() {
    let env = TestEnv::new("uds");
    let p = env.path("sock");
    round_trip(&env, "uds", &p, &[]);
    round_trip(&env, "uds", &p, &["--framing", "length"]);
    assert!(!exists(&p));
    env.assert_clean();
}

#[test]
fn uds_dgram_round_trip_abstract() {
    let env = TestEnv::new("dgram");
    round_trip(
        &env,
        "uds-dgram",
        &format!("@ipckit-cli-test-{}", env.tag),
        &[],
    );
    let p = env.path("dgram");
    round_trip(&env, "uds-dgram", &p, &[]);
    env.assert_clean();
}

#[test]
fn uds_seqpacket_round_trip() {
    let env = TestEnv::new("seqpacket");
    round_trip(&env, "uds-seqpacket", &env.path("seq"), &[]);
    env.assert_clean();
}

#[test]
fn tcp_round_trip() {
    let env = TestEnv::new("tcp");
    round_trip(&env, "tcp", &format!("127.0.0.1:{}", free_port(false)), &[]);
    round_trip(
        &env,
        "tcp",
        &format!("127.0.0.1:{}", free_port(false)),
        &["--framing", "length"],
    );
    env.assert_clean();
}

#[test]
fn udp_round_trip() {
    let env = TestEnv::new("udp");
    round_trip(&env, "udp", &format!("127.0.0.1:{}", free_port(true)), &[]);
    env.assert_clean();
}

#[test]
fn shm_round_trip() {
    let env = TestEnv::new("shm");
    let name = format!("/ipckit-cli-test-shm-{}", env.tag);
    round_trip(&env, "shm", &name, &[]);
    assert!(!exists(&format!("/dev/shm{name}")), "segment left behind");
    env.assert_clean();
}

#[test]
fn mq_posix_round_trip() {
    let _g = mq_lock();
    let env = TestEnv::new("mqp");
    let q = format!("/ipckit-cli-test-{}", env.tag);
    round_trip(&env, "mq-posix", &q, &[]);
    assert!(ipckit::mq::posix::PosixMq::open(&q, ipckit::Wait::Block).is_err());
    env.assert_clean();
}

#[test]
fn mq_posix_priorities_come_highest_first() {
    let _g = mq_lock();
    let env = TestEnv::new("mqp-prio");
    let q = format!("/ipckit-cli-test-{}", env.tag);
    // The receiver creates the queue; it reads after all three are in.
    let mut r = env.spawn(&[
        "recv",
        "--via",
        "mq-posix",
        "--at",
        &q,
        "--count",
        "3",
        "--timeout",
        "10",
    ]);
    r.wait_ready();
    r.signal(libc::SIGSTOP);
    for (m, p) in [("low", "1"), ("high", "9"), ("mid", "5")] {
        env.run(
            &["send", "--via", "mq-posix", "--to", &q, "--priority", p, m],
            b"",
        )
        .ok();
    }
    r.signal(libc::SIGCONT);
    assert_eq!(r.finish().ok(), "high\nmid\nlow\n");
    env.assert_clean();
}

#[test]
fn mq_sysv_round_trip_and_types() {
    let env = TestEnv::new("sysv");
    let key = sysv_key(1);
    round_trip(&env, "mq-sysv", &key, &[]);
    // --type picks messages of one type; --priority sets the type.
    let mut r = env.spawn(&[
        "recv",
        "--via",
        "mq-sysv",
        "--at",
        &key,
        "--count",
        "1",
        "--timeout",
        "10",
        "--type",
        "7",
    ]);
    r.wait_ready();
    env.run(
        &[
            "send",
            "--via",
            "mq-sysv",
            "--to",
            &key,
            "--priority",
            "3",
            "three",
        ],
        b"",
    )
    .ok();
    env.run(
        &[
            "send",
            "--via",
            "mq-sysv",
            "--to",
            &key,
            "--priority",
            "7",
            "seven",
        ],
        b"",
    )
    .ok();
    assert_eq!(r.finish().ok(), "seven\n");
    let k = ipckit::mq::sysv::parse_key(&key).unwrap();
    assert!(ipckit::mq::sysv::SysvMq::open(k, ipckit::Wait::Block).is_err());
    env.assert_clean();
}

#[test]
fn bad_input_is_one_line_and_status_2() {
    let env = TestEnv::new("bad");
    env.run(&["send", "--via", "carrier-pigeon", "--to", "x", "hi"], b"")
        .user_error("unknown mechanism");
    env.run(&["send", "--via", "mq-posix", "--to", "noslash", "hi"], b"")
        .user_error("noslash");
    env.run(&["recv", "--via", "mq-posix", "--at", "noslash"], b"")
        .user_error("noslash");
    env.run(
        &["send", "--via", "tcp", "--to", "/not/host/port", "hi"],
        b"",
    )
    .user_error("host:port");
    env.run(&["send", "--via", "mq-sysv", "--to", "/q", "hi"], b"")
        .user_error("System V key");
    env.run(&["send", "--via", "pipe", "--to", "x", "hi"], b"")
        .user_error("no address");
    let missing = env.path("nobody-here");
    for mech in ["uds", "uds-dgram", "uds-seqpacket", "fifo"] {
        env.run(&["send", "--via", mech, "--to", &missing, "hi"], b"")
            .user_error("no receiver");
    }
    env.run(
        &[
            "send",
            "--via",
            "tcp",
            "--to",
            &format!("127.0.0.1:{}", free_port(false)),
            "hi",
        ],
        b"",
    )
    .user_error("no receiver");
    env.run(
        &[
            "send",
            "--via",
            "mq-posix",
            "--to",
            &format!("/ipckit-cli-none-{}", env.tag),
            "hi",
        ],
        b"",
    )
    .user_error("no receiver");
    env.run(&["recv", "--via", "uds", "--at", "@"], b"")
        .user_error("'@'");
    env.run(
        &["recv", "--via", "udp", "--at", "127.0.0.1:1", "--type", "3"],
        b"",
    )
    .user_error("--type");
    env.run(&["demo", "no-such-topic"], b"")
        .user_error("unknown demo topic");
    env.assert_clean();
}

#[test]
fn oversize_and_empty_messages_are_refused() {
    let _g = mq_lock();
    let env = TestEnv::new("oversize");
    let q = format!("/ipckit-cli-test-{}", env.tag);
    let limit: usize = std::fs::read_to_string("/proc/sys/fs/mqueue/msgsize_max")
        .map(|s| s.trim().parse().unwrap())
        .unwrap_or(8192);
    let mut r = env.spawn(&[
        "recv",
        "--via",
        "mq-posix",
        "--at",
        &q,
        "--count",
        "1",
        "--timeout",
        "10",
    ]);
    r.wait_ready();
    let big = "x".repeat(limit + 1);
    env.run(&["send", "--via", "mq-posix", "--to", &q, &big], b"")
        .user_error(&format!("limit of {limit} bytes"));
    env.run(&["send", "--via", "mq-posix", "--to", &q, "fits"], b"")
        .ok();
    assert_eq!(r.finish().ok(), "fits\n");

    let p = env.path("seq");
    let mut r = env.spawn(&[
        "recv",
        "--via",
        "uds-seqpacket",
        "--at",
        &p,
        "--count",
        "1",
        "--timeout",
        "10",
    ]);
    r.wait_ready();
    env.run(&["send", "--via", "uds-seqpacket", "--to", &p, ""], b"")
        .user_error("empty message");
    env.run(&["send", "--via", "uds-seqpacket", "--to", &p, "ok"], b"")
        .ok();
    assert_eq!(r.finish().ok(), "ok\n");

    let f = env.path("fifo");
    let mut r = env.spawn(&[
        "recv",
        "--via",
        "fifo",
        "--at",
        &f,
        "--count",
        "1",
        "--timeout",
        "10",
    ]);
    r.wait_ready();
    env.run(&["send", "--via", "fifo", "--to", &f, "two\nlines"], b"")
        .user_error("newline");
    env.run(&["send", "--via", "fifo", "--to", &f, "one line"], b"")
        .ok();
    assert_eq!(r.finish().ok(), "one line\n");
    env.assert_clean();
}

#[test]
fn recv_times_out_and_cleans_up_on_sigterm() {
    let env = TestEnv::new("timeout");
    let p = env.path("fifo");
    let out = env.run(
        &[
            "recv",
            "--via",
            "fifo",
            "--at",
            &p,
            "--count",
            "1",
            "--timeout",
            "0.3",
        ],
        b"",
    );
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("timed out"), "{out:?}");
    assert!(!exists(&p));
    let s = env.path("sock");
    let mut r = env.spawn(&["recv", "--via", "uds", "--at", &s]);
    r.wait_ready();
    assert!(exists(&s));
    r.signal(libc::SIGTERM);
    let out = r.finish();
    // SIGTERM is a request to stop (issue 14): exit 0 after draining, as `signal listen`.
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(!exists(&s));
    env.assert_clean();
}

#[test]
fn closed_stdout_is_success() {
    let env = TestEnv::new("epipe");
    let p = env.path("sock");
    let mut r = env.spawn(&[
        "recv",
        "--via",
        "uds-dgram",
        "--at",
        &p,
        "--count",
        "2",
        "--timeout",
        "10",
    ]);
    r.wait_ready();
    r.close_stdout();
    env.run(
        &[
            "send",
            "--via",
            "uds-dgram",
            "--to",
            &p,
            "nobody reads this",
        ],
        b"",
    )
    .ok();
    let out = r.finish();
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(!exists(&p));
    env.assert_clean();
}

#[test]
fn clean_removes_what_a_killed_process_left_and_nothing_else() {
    let env = TestEnv::new("clean");
    let dead = env.path("dead-fifo");
    let live = env.path("live-fifo");
    let mut victim = env.spawn(&["recv", "--via", "fifo", "--at", &dead]);
    victim.wait_ready();
    let mut keeper = env.spawn(&[
        "recv",
        "--via",
        "fifo",
        "--at",
        &live,
        "--count",
        "1",
        "--timeout",
        "15",
    ]);
    keeper.wait_ready();
    let victim_pid = victim.pid();
    victim.signal(libc::SIGKILL);
    let _ = victim.finish();
    assert!(exists(&dead), "SIGKILL leaves the FIFO behind");

    let list = env.run(&["list"], b"");
    let text = list.ok();
    let dead_line = text.lines().find(|l| l.ends_with(&dead)).expect(text);
    assert!(
        dead_line.contains("dead") && dead_line.contains(&victim_pid.to_string()),
        "{text}"
    );
    let live_line = text.lines().find(|l| l.ends_with(&live)).expect(text);
    assert!(live_line.contains("alive"), "{text}");

    let dry = env.run(&["clean", "--dry-run"], b"");
    assert!(dry.ok().contains("would remove fifo"), "{dry:?}");
    assert!(exists(&dead));

    let clean = env.run(&["clean"], b"");
    let text = clean.ok();
    assert!(text.contains(&format!("removed fifo {dead}")), "{text}");
    assert!(text.contains(&format!("kept fifo {live}")), "{text}");
    assert!(!exists(&dead));
    assert!(exists(&live));

    env.run(&["send", "--via", "fifo", "--to", &live, "bye"], b"")
        .ok();
    assert_eq!(keeper.finish().ok(), "bye\n");
    assert!(!exists(&live));
    env.assert_clean();
}

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

/// `bench --quick --format json` parses, names every mechanism, reports no errors, and
/// leaves nothing behind. Serialised with the POSIX queue tests: the bench makes queues too.
#[test]
fn bench_quick_json_has_every_mechanism() {
    let _q = mq_lock();
    let env = TestEnv::new("bench-json");
    let mut cmd = env.cmd(&["bench", "--quick", "--format", "json"]);
    // The bench's own limit is 30 s on an idle machine; other tests run beside it here.
    let out = util::output_within(
        &mut cmd,
        std::time::Duration::from_secs(120),
        "bench --quick",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(v["schema"], 1);
    for key in [
        "cpu_model",
        "cpu_count",
        "kernel",
        "clock_source",
        "profile",
    ] {
        assert!(!v["machine"][key].is_null(), "machine.{key} missing");
    }
    assert!(v["floor"]["cacheline_rtt_ns"]["p50"].as_f64().unwrap() > 0.0);
    let rows = v["rows"].as_array().unwrap();
    let mechs: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r["mechanism"].as_str().unwrap())
        .collect();
    for m in [
        "pipe",
        "fifo",
        "uds",
        "uds-dgram",
        "uds-seqpacket",
        "tcp",
        "udp",
        "mq-posix",
        "mq-sysv",
        "eventfd",
        // Shared memory: the copy API, the zero-copy API and the MPSC queue, each its own row.
        "shm",
        "shm-zerocopy",
        "shm-mpsc",
    ] {
        assert!(mechs.contains(m), "{m} missing from {mechs:?}");
    }
    for r in rows {
        for key in [
            "wait",
            "placement",
            "size",
            "rtt_ns",
            "rtt_batched_ns",
            "throughput_mbps",
            "msgs_per_s",
            "cpu_ns_per_msg",
            "spread_pct",
            "lost",
            "reordered",
            "errors",
        ] {
            assert!(r.get(key).is_some(), "row lacks {key}: {r}");
        }
        assert_eq!(r["errors"], 0, "row with errors: {r}");
        assert!(r["msgs_per_s"].as_f64().unwrap() > 0.0, "{r}");
    }
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

/// `signal listen --json` and `signal send`: queued payloads in order, kill without one, the
/// six keys exactly, and a summary on SIGTERM with exit status 0.
#[test]
fn signal_listen_json_and_send_round_trip() {
    let env = TestEnv::new("signal-json");
    let mut l = env.spawn(&["signal", "listen", "--signals", "USR1,RTMIN+3", "--json"]);
    l.wait_ready();
    let pid = l.pid().to_string();
    env.run(
        &[
            "signal", "send", "--pid", &pid, "--signal", "RTMIN+3", "--value", "42", "--count", "3",
        ],
        b"",
    )
    .ok();
    env.run(
        &["signal", "send", "--pid", &pid, "--signal", "SIGUSR1"],
        b"",
    )
    .ok();
    env.run(
        &[
            "signal",
            "send",
            "--pid",
            &pid,
            "--signal",
            "SIGRTMIN+3",
            "--value",
            "-7",
        ],
        b"",
    )
    .ok();
    // Everything sent is pending or read by now; SIGTERM ends the run after reading the rest.
    l.signal(libc::SIGTERM);
    let out = l.finish();
    let stdout = out.ok();
    // SAFETY: getuid takes nothing and cannot fail.
    let uid = u64::from(unsafe { libc::getuid() });
    let mut rt = Vec::new();
    let mut usr1 = 0;
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let o = v.as_object().unwrap();
        let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["code", "number", "pid", "signal", "uid", "value"],
            "{line}"
        );
        assert_eq!(o["uid"].as_u64(), Some(uid));
        let sender = o["pid"].as_u64().unwrap();
        assert!(sender > 0 && sender.to_string() != pid, "{line}");
        match o["signal"].as_str().unwrap() {
            "SIGRTMIN+3" => {
                assert_eq!(o["code"], "SI_QUEUE");
                assert!(o["number"].as_i64().unwrap() > 32);
                rt.push(o["value"].as_i64().unwrap());
            }
            "SIGUSR1" => {
                assert_eq!(o["code"], "SI_USER");
                assert_eq!(o["number"], libc::SIGUSR1);
                assert!(o["value"].is_null());
                usr1 += 1;
            }
            other => panic!("unexpected signal {other}: {line}"),
        }
    }
    // Queued real-time signals: every one, in the order sent.
    assert_eq!(rt, [42, 42, 42, -7]);
    assert_eq!(usr1, 1);
    assert!(
        out.stderr.contains("summary: 5 signal(s) received"),
        "{out:?}"
    );
    assert!(out.stderr.contains("SIGRTMIN+3   4"), "{out:?}");
    env.assert_clean();
}

/// Plain text, the default signal list, and SIGINT as the end.
#[test]
fn signal_listen_text_ends_on_sigint() {
    let env = TestEnv::new("signal-text");
    let mut l = env.spawn(&["signal", "listen"]);
    l.wait_ready();
    let pid = l.pid().to_string();
    env.run(&["signal", "send", "--pid", &pid, "--signal", "usr2"], b"")
        .ok();
    env.run(
        &[
            "signal", "send", "--pid", &pid, "--signal", "RTMIN", "--value", "9",
        ],
        b"",
    )
    .ok();
    l.signal(libc::SIGINT);
    let out = l.finish();
    let stdout = out.ok();
    assert!(stdout.contains("SIGUSR2 (12) from pid"), "{stdout}");
    assert!(stdout.contains("SIGRTMIN ("), "{stdout}");
    assert!(stdout.contains("SI_QUEUE value 9"), "{stdout}");
    assert!(stdout.contains("summary: 2 signal(s) received"), "{stdout}");
}

#[test]
fn signal_bad_input_is_one_line_and_status_2() {
    let env = TestEnv::new("signal-bad");
    for (args, needle) in [
        (
            &["signal", "listen", "--signals", "KILL"][..],
            "SIGKILL cannot be",
        ),
        (
            &["signal", "listen", "--signals", "STOP"],
            "SIGSTOP cannot be",
        ),
        (
            &["signal", "listen", "--signals", "USR1,BOGUS"],
            "unknown signal 'BOGUS'",
        ),
        (
            &["signal", "listen", "--signals", "65"],
            "not a signal number",
        ),
        (
            &["signal", "send", "--pid", "1", "--signal", "0"],
            "not a signal number",
        ),
        (
            &["signal", "send", "--pid", "1", "--signal", "RTMIN+99"],
            "outside SIGRTMIN..SIGRTMAX",
        ),
        (
            &[
                "signal", "send", "--pid", "1", "--signal", "USR1", "--count", "0",
            ],
            "--count",
        ),
        (
            &["signal", "send", "--pid", "0", "--signal", "USR1"],
            "--pid",
        ),
    ] {
        env.run(args, b"").user_error(needle);
    }
    // A pid that no longer exists: a reaped child's.
    let mut c = std::process::Command::new("true").spawn().unwrap();
    c.wait().unwrap();
    let gone = c.id().to_string();
    env.run(&["signal", "send", "--pid", &gone, "--signal", "USR1"], b"")
        .user_error("no process with pid");
    env.assert_clean();
}

/// Interop: `signal listen --json` names the real sender when ordinary tools send. procps or
/// util-linux `/bin/kill -s USR1` (SI_USER, no value), `/bin/kill --queue V -s RTMIN+2`
/// (sigqueue: SI_QUEUE with the value) and `ipckit signal send`; each sender is spawned
/// here, so the reported "pid" must be that Child's id, and "uid" ours.
#[test]
fn signal_listen_json_names_senders_from_ordinary_tools() {
    let env = TestEnv::new("signal-interop");
    let mut l = env.spawn(&["signal", "listen", "--signals", "USR1,RTMIN+2", "--json"]);
    l.wait_ready();
    let pid = l.pid().to_string();
    // Runs one sender to completion; returns its pid.
    let sent_by = |bg: util::Bg| -> u32 {
        let id = bg.pid();
        let out = bg.finish();
        assert!(out.status.success(), "{out:?}");
        id
    };
    let kill = "/bin/kill";
    let mut want: Vec<(String, u32, Option<i64>)> = Vec::new();
    let k1 = sent_by(spawn_tool(kill, &["-s", "USR1", &pid]));
    want.push(("SIGUSR1".into(), k1, None));
    let help = run_tool(kill, &["--help"]);
    if format!("{}{}", help.stdout, help.stderr).contains("--queue") {
        let k2 = sent_by(spawn_tool(kill, &["--queue", "77", "-s", "RTMIN+2", &pid]));
        want.push(("SIGRTMIN+2".into(), k2, Some(77)));
    } else {
        eprintln!("note: {kill} has no --queue here; skipping its sigqueue part");
    }
    let mut c = env.cmd(&[
        "signal", "send", "--pid", &pid, "--signal", "RTMIN+2", "--value", "-5",
    ]);
    c.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let k3 = sent_by(util::Bg::start(c.spawn().unwrap()));
    want.push(("SIGRTMIN+2".into(), k3, Some(-5)));
    l.signal(libc::SIGTERM);
    let out = l.finish();
    let stdout = out.ok();
    // SAFETY: getuid takes nothing and cannot fail.
    let uid = u64::from(unsafe { libc::getuid() });
    let mut got = Vec::new();
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["uid"].as_u64(), Some(uid), "{line}");
        let code = if v["value"].is_null() {
            "SI_USER"
        } else {
            "SI_QUEUE"
        };
        assert_eq!(v["code"], code, "{line}");
        got.push((
            v["signal"].as_str().unwrap().to_owned(),
            u32::try_from(v["pid"].as_u64().unwrap()).unwrap(),
            v["value"].as_i64(),
        ));
    }
    // The standard signal is read first (lowest number), then the real-time ones in order.
    assert_eq!(got, want, "{stdout}");
    env.assert_clean();
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

/// `bench --mech` takes the TCP/UDP variant rows: each is measured without errors, under its
/// own name (the split-write row through the raw loop), with the socket buffers the kernel
/// granted and, for UDP, the share of the flood lost; an unknown name is a user error.
#[test]
fn bench_tcp_udp_variant_rows() {
    let env = TestEnv::new("bench-net");
    let out = env.run(
        &[
            "bench",
            "--quick",
            "--format",
            "json",
            "--mech",
            "tcp,tcp-nagle,tcp-nagle-split,tcp-bigbuf,udp-defbuf",
            "--size",
            "64",
            "--wait",
            "block",
            "--mpsc-producers",
            "0",
        ],
        b"",
    );
    let v: serde_json::Value = serde_json::from_str(out.ok()).expect("one JSON document");
    let rows = v["rows"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["mechanism"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "tcp",
            "tcp-nagle",
            "tcp-nagle-split",
            "tcp-bigbuf",
            "udp-defbuf"
        ]
    );
    for r in rows {
        assert_eq!(r["errors"], 0, "{r}");
        assert!(r["socket_buffers"]["rcvbuf"].as_u64().unwrap() > 0, "{r}");
        assert!(r["rtt_ns"]["p50"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert_eq!(rows[2]["impl"], "raw");
    assert!(rows[2]["note"].as_str().unwrap().contains("two write(2)s"));
    // 4 MiB asked: the kernel grants twice what it is given, within net.core.wmem_max.
    let wmem_max: u64 = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        rows[3]["socket_buffers"]["sndbuf"].as_u64().unwrap(),
        2 * wmem_max.min(4 << 20),
        "{}",
        rows[3]
    );
    assert!(rows[4]["loss_pct"].as_f64().is_some(), "{}", rows[4]);
    assert!(rows[0]["loss_pct"].is_null());
    env.run(&["bench", "--mech", "tcp-turbo"], b"")
        .user_error("tcp-nagle");
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

/// `bench --mech zero-copy`: every zero-copy row runs beside its copying baseline with no
/// verification error, the MSG_ZEROCOPY row carries its completion counts (copied never more
/// than completed), and nothing is left behind.
#[test]
fn bench_zero_copy_rows() {
    let env = TestEnv::new("bench-zero-copy");
    let mut cmd = env.cmd(&[
        "bench",
        "--mech",
        "zero-copy",
        "--quick",
        "--size",
        "4K",
        "--wait",
        "block",
        "--format",
        "json",
    ]);
    cmd.env("TMPDIR", &env.dir);
    let out = util::output_within(
        &mut cmd,
        std::time::Duration::from_secs(120),
        "bench --mech zero-copy",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    let rows = v["rows"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["mechanism"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "pipe-write",
            "pipe-vmsplice",
            "uds-read-write",
            "uds-splice",
            "uds-sendfile",
            "tcp-send",
            "tcp-zerocopy"
        ]
    );
    for r in rows {
        assert_eq!(r["errors"], 0, "{r}");
        assert!(r["throughput_mbps"].as_f64().unwrap() > 0.0, "{r}");
    }
    let zc = &rows[6];
    let completions = zc["zc_completions"].as_u64().unwrap();
    let copied = zc["zc_copied"].as_u64().unwrap();
    assert!(completions > 0 && copied <= completions, "{zc}");
    assert!(zc["ratio_to_raw_msgs"].as_f64().unwrap() > 0.0);
    assert!(zc["note"].as_str().unwrap().contains("completions"), "{zc}");
    assert!(rows[0]["zc_completions"].is_null());
    assert_eq!(v["options"]["zero_copy"][0], "pipe-vmsplice");
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
