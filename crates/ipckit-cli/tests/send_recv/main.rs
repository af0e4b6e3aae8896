//! `ipckit send` and `ipckit recv` end to end: a round trip over every mechanism (and with
//! sh, echo, cat), user errors as one line and status 2, oversize and empty messages, a
//! timeout, cleanup on SIGTERM, and a closed stdout.

#[path = "../util/mod.rs"]
mod util;

use util::{exists, free_port, mq_lock, run_tool, spawn_tool, TestEnv};

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
    assert!(ipckit::mq::posix::PosixMqBuilder::new(&q).open().is_err());
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
    assert!(ipckit::mq::sysv::SysvMqBuilder::new(k).open().is_err());
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
