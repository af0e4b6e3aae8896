//! `ipckit signal listen` and `ipckit signal send` end to end: queued payloads, the JSON
//! keys, the end on SIGTERM or SIGINT, user errors, and senders that are ordinary tools.

#[path = "../util/mod.rs"]
mod util;

use util::{run_tool, spawn_tool, TestEnv};

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
