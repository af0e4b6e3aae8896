//! Hostile and careless peers against `ipckit recv` and `ipckit send` (issue 14, rows 4, 6, 7,
//! 8 and 15), across real processes: a bad peer ends only its own connection, a FIFO writer's
//! half message never reaches anyone, a queue sender learns of its receiver's end, a datagram
//! from another user is dropped and counted.

#[path = "../util/mod.rs"]
mod util;

use std::io::Write;
use std::time::Duration;
use util::{Bg, TestEnv};

/// A TCP port nobody is using now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh address for a `tcp` or `uds` listener.
fn stream_addr(env: &TestEnv, via: &str) -> String {
    match via {
        "tcp" => format!("127.0.0.1:{}", free_port()),
        _ => env.path("sock"),
    }
}

/// A raw client of a `tcp` or `uds` listener, writing whatever the test wants.
fn connect_raw(via: &str, at: &str) -> Box<dyn Write> {
    match via {
        "tcp" => Box::new(std::net::TcpStream::connect(at).unwrap()),
        _ => Box::new(std::os::unix::net::UnixStream::connect(at).unwrap()),
    }
}

/// Starts `recv --count 1` on a stream listener and waits for it.
fn listener(env: &TestEnv, via: &str, at: &str, framing: &str) -> Bg {
    listener_for(env, via, at, framing, 1)
}

/// Starts `recv --count N` (15 s at most without a message) and waits for it.
fn listener_for(env: &TestEnv, via: &str, at: &str, framing: &str, count: u32) -> Bg {
    let count = count.to_string();
    let mut r = env.spawn(&[
        "recv",
        "--via",
        via,
        "--at",
        at,
        "--framing",
        framing,
        "--count",
        &count,
        "--timeout",
        "15",
    ]);
    r.wait_ready();
    r
}

/// What the bad peer sends: a 70,000-byte line, or a header announcing 0x7fffffff bytes.
fn bad_bytes(framing: &str) -> Vec<u8> {
    if framing == "line" {
        let mut v = vec![b'x'; 70_000];
        v.push(b'\n');
        v
    } else {
        let mut h = vec![0u8; 16];
        h[..4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        h.extend_from_slice(b"junk");
        h
    }
}

/// Row 7: one client's over-long line or length ends its connection (one line on stderr,
/// counted); the listener goes on and receives the next client's message.
fn bad_peer_then_good(via: &str, framing: &str) {
    let env = TestEnv::new(&format!("badpeer-{via}-{framing}"));
    let at = stream_addr(&env, via);
    let r = listener(&env, via, &at, framing);
    // The bad peer: a raw socket, kept open while the good one sends, so only the receiver
    // can end its connection.
    let mut bad = connect_raw(via, &at);
    let _ = bad.write_all(&bad_bytes(framing));
    let _ = bad.flush();
    std::thread::sleep(Duration::from_millis(200));
    let s = env.run(
        &[
            "send",
            "--via",
            via,
            "--to",
            &at,
            "--framing",
            framing,
            "hello",
        ],
        b"",
    );
    let out = r.finish();
    drop(bad);
    assert!(
        s.status.success(),
        "{via}/{framing}: the good sender failed: {s:?}; recv: {out:?}"
    );
    assert!(
        out.status.success(),
        "{via}/{framing}: the listener did not survive a bad peer: {out:?}"
    );
    assert_eq!(out.stdout, "hello\n", "{via}/{framing}: {out:?}");
    let dropped: Vec<_> = out
        .stderr
        .lines()
        .filter(|l| l.contains("dropped a peer"))
        .collect();
    assert_eq!(
        dropped.len(),
        1,
        "{via}/{framing}: one line per bad peer: {out:?}"
    );
    assert!(
        out.stderr.contains("1 peer(s) dropped"),
        "{via}/{framing}: the count: {out:?}"
    );
    env.assert_clean();
}

#[test]
fn tcp_long_line_ends_only_that_connection() {
    bad_peer_then_good("tcp", "line");
}

#[test]
fn tcp_huge_length_ends_only_that_connection() {
    bad_peer_then_good("tcp", "length");
}

#[test]
fn uds_long_line_ends_only_that_connection() {
    bad_peer_then_good("uds", "line");
}

#[test]
fn uds_huge_length_ends_only_that_connection() {
    bad_peer_then_good("uds", "length");
}

/// Row 8: a FIFO writer writes half a message and is killed; the next writer's `hello`
/// arrives alone (the half is dropped, counted, reported), and with length framing it is not
/// swallowed as the dead writer's payload.
fn fifo_half_then_hello(framing: &str) {
    use std::os::unix::process::CommandExt;
    let env = TestEnv::new(&format!("fifo-half-{framing}"));
    let at = env.path("f");
    let r = listener(&env, "fifo", &at, framing);
    let half: Vec<u8> = if framing == "line" {
        b"half a line, no newline".to_vec()
    } else {
        // A header announcing 100 bytes, then 10 of them.
        let mut h = vec![0u8; 16];
        h[..4].copy_from_slice(&100u32.to_le_bytes());
        h.extend_from_slice(b"0123456789");
        h
    };
    let mut w = std::fs::OpenOptions::new().write(true).open(&at).unwrap();
    w.write_all(&half).unwrap();
    // The writer that dies is a child holding the only other write end.
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .stdout(w.try_clone().unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    drop(w);
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let s = env.run(
        &[
            "send",
            "--via",
            "fifo",
            "--to",
            &at,
            "--framing",
            framing,
            "hello",
        ],
        b"",
    );
    let out = r.finish();
    assert!(s.status.success(), "{framing}: send: {s:?}; recv: {out:?}");
    assert!(out.status.success(), "{framing}: recv: {out:?}");
    assert_eq!(out.stdout, "hello\n", "{framing}: {out:?}");
    assert!(
        out.stderr.contains("dropped 1 unfinished message"),
        "{framing}: the half must be counted and reported: {out:?}"
    );
    env.assert_clean();
}

#[test]
fn fifo_line_half_message_of_a_dead_writer_is_dropped() {
    fifo_half_then_hello("line");
}

#[test]
fn fifo_length_half_frame_of_a_dead_writer_does_not_swallow_the_next() {
    fifo_half_then_hello("length");
}

/// Row 8: a FIFO message over one atomic write is refused before anything is written (exit
/// 2, one line), so a sender is never told "sent" for a message that could be split; the
/// largest that fits goes through.
#[test]
fn fifo_message_over_pipe_buf_is_refused_whole() {
    let env = TestEnv::new("fifo-big");
    let at = env.path("f");
    let r = listener(&env, "fifo", &at, "line");
    let big = "x".repeat(4096);
    env.run(
        &[
            "send",
            "--via",
            "fifo",
            "--to",
            &at,
            "--framing",
            "line",
            &big,
        ],
        b"",
    )
    .user_error("over the fifo limit of 4095 bytes");
    let fits = "y".repeat(4095);
    env.run(
        &[
            "send",
            "--via",
            "fifo",
            "--to",
            &at,
            "--framing",
            "line",
            &fits,
        ],
        b"",
    )
    .ok();
    let out = r.finish();
    assert_eq!(out.stdout, format!("{fits}\n"));
    env.assert_clean();
}

/// Writes `n` with thousands separators, as the docs do (65,535).
fn grouped(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Row 15: the header size and the line limit that `--help` and the README state are the
/// code's constants.
#[test]
fn docs_state_the_real_header_and_line_limit() {
    let env = TestEnv::new("docs");
    let help = env.run(&["send", "--help"], b"").ok().to_owned();
    let header = format!("{}-byte header", ipckit::framing::FRAME_HEADER_LEN);
    let line = grouped(ipckit::framing::LINE_MAX);
    let fifo_line = grouped(ipckit::fifo::ATOMIC_WRITE - 1);
    let fifo_len = grouped(ipckit::fifo::ATOMIC_WRITE - ipckit::framing::FRAME_HEADER_LEN);
    for needle in [&header, &line, &fifo_line, &fifo_len] {
        assert!(
            help.contains(needle.as_str()),
            "send --help lacks '{needle}': {help}"
        );
    }
    assert!(!help.contains("4-byte"), "send --help: {help}");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    for needle in [&header, &format!("{line} B a line"), &fifo_line, &fifo_len] {
        assert!(readme.contains(needle.as_str()), "README lacks '{needle}'");
    }
}

/// Row 15: the wire is what the docs say. A frame built by hand from the documented layout
/// (u32 LE length, 12 zero bytes, payload) is received; a line of exactly the documented
/// limit is received; one byte more loses its connection.
#[test]
fn wire_matches_the_documented_header_and_line_limit() {
    use std::os::unix::net::UnixStream;
    let env = TestEnv::new("wire");
    let at = env.path("sock");
    let r = listener(&env, "uds", &at, "length");
    let mut frame = 5u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&[0u8; 12]);
    frame.extend_from_slice(b"hand!");
    UnixStream::connect(&at).unwrap().write_all(&frame).unwrap();
    assert_eq!(r.finish().stdout, "hand!\n");

    let at = env.path("sock2");
    let r = listener_for(&env, "uds", &at, "line", 2);
    let max = ipckit::framing::LINE_MAX;
    for len in [max + 1, max] {
        let mut l = vec![b'z'; len];
        l.push(b'\n');
        let mut c = UnixStream::connect(&at).unwrap();
        let _ = c.write_all(&l);
        std::thread::sleep(Duration::from_millis(200));
    }
    UnixStream::connect(&at)
        .unwrap()
        .write_all(b"after\n")
        .unwrap();
    let out = r.finish();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, format!("{}\nafter\n", "z".repeat(max)));
    assert!(
        out.stderr
            .contains(&format!("{max}-byte line-framing limit")),
        "{out:?}"
    );
}

/// Row 6: `seq 1 30000000 | ipckit send --via MECH --to ADDR` with the receiver killed (-9)
/// or stopped (TERM) mid-stream: the sender, blocked on the full queue, fails (not exit 0)
/// soon after. The delay is measured and printed; only a generous bound that catches a
/// hang is asserted.
fn queue_sender_learns_of_receiver_end(via: &str, addr: &str, sig: i32) {
    use std::process::Stdio;
    use std::time::Instant;
    let env = TestEnv::new(&format!("mq-end-{via}-{sig}"));
    let r = listener_plain(&env, via, addr);
    let mut send = env.cmd(&["send", "--via", via, "--to", addr]);
    send.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut sender = send.spawn().unwrap();
    let mut stdin = sender.stdin.take().unwrap();
    // `seq 1 30000000`, written until the sender stops reading.
    let feeder = std::thread::spawn(move || {
        let mut buf = String::new();
        for i in 1..=30_000_000u64 {
            buf.push_str(&i.to_string());
            buf.push('\n');
            if buf.len() > 60_000 {
                if stdin.write_all(buf.as_bytes()).is_err() {
                    return;
                }
                buf.clear();
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sender.try_wait().unwrap().is_none(),
        "the sender ended early"
    );
    r.signal(sig);
    let killed = Instant::now();
    let status = loop {
        if let Some(st) = sender.try_wait().unwrap() {
            break st;
        }
        if killed.elapsed() > Duration::from_secs(5) {
            let _ = sender.kill();
            let _ = sender.wait();
            let _ = r.finish();
            let _ = env.run(&["clean"], b"");
            panic!("{via}: the sender still blocked 5 s after the receiver's end (signal {sig})");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let delay = killed.elapsed();
    eprintln!("{via}, receiver signal {sig}: the sender ended {delay:?} after it");
    let mut err = String::new();
    std::io::Read::read_to_string(sender.stderr.as_mut().unwrap(), &mut err).unwrap();
    feeder.join().unwrap();
    let _ = r.finish();
    env.run(&["clean"], b"").ok();
    assert!(
        !status.success(),
        "{via}: send exited 0 though the receiver was gone: {err}"
    );
    assert!(err.contains("went away"), "{via}: {err}");
    assert!(delay < Duration::from_secs(2), "{via}: took {delay:?}");
    env.assert_clean();
}

/// `recv --via MECH --at ADDR` with no count or timeout and its output thrown away (a full
/// stdout pipe would stop it reading), waited for.
fn listener_plain(env: &TestEnv, via: &str, at: &str) -> Bg {
    use std::process::Stdio;
    let mut c = env.cmd(&["recv", "--via", via, "--at", at]);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut r = Bg::start(c.spawn().unwrap());
    r.wait_ready();
    r
}

fn mq_posix_name(tag: &str) -> String {
    format!("/ipckit-peers-{}-{tag}", std::process::id())
}

fn mq_sysv_key(n: u32) -> String {
    format!(
        "0x{:08x}",
        0x5e00_0000 | ((std::process::id() & 0xffff) << 4) | n
    )
}

#[test]
fn mq_posix_sender_learns_of_receiver_kill() {
    queue_sender_learns_of_receiver_end("mq-posix", &mq_posix_name("kill"), libc::SIGKILL);
}

#[test]
fn mq_posix_sender_learns_of_receiver_stop() {
    queue_sender_learns_of_receiver_end("mq-posix", &mq_posix_name("term"), libc::SIGTERM);
}

#[test]
fn mq_sysv_sender_learns_of_receiver_kill() {
    queue_sender_learns_of_receiver_end("mq-sysv", &mq_sysv_key(1), libc::SIGKILL);
}

#[test]
fn mq_sysv_sender_learns_of_receiver_stop() {
    queue_sender_learns_of_receiver_end("mq-sysv", &mq_sysv_key(2), libc::SIGTERM);
}

/// True if this test may go on as another user; a loud skip (or, under CI or as root, a
/// failure) otherwise.
fn can_switch_users(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs root to act as another user, and CI must run it");
    }
    eprintln!("SKIPPED: needs root: {test}");
    false
}

/// An unused numeric uid (and gid) for this test: no account needed.
fn stranger_uid(n: u32) -> u32 {
    60_000 + (std::process::id() % 1000) * 4 + n
}

/// A directory the stranger owns, for its own registry.
fn stranger_dir(env: &TestEnv, uid: u32) -> String {
    let d = env.path(&format!("stranger-{uid}"));
    std::fs::create_dir(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(uid), Some(uid)).unwrap();
    d
}

/// `ipckit ARGS` run as `uid`.
fn as_user(env: &TestEnv, uid: u32, args: &[&str]) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut c = env.cmd(args);
    // std drops the supplementary groups too when root sets a uid.
    c.uid(uid)
        .gid(uid)
        .env("IPCKIT_REGISTRY", stranger_dir(env, uid) + "/reg");
    c
}

/// Sends `msg` to the abstract address `@name` from a forked child running as `uid`: a plain
/// datagram, as Python's `sendto` would send it.
fn raw_sendto_as(uid: u32, name: &str, msg: &[u8]) {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    // Everything the child needs is made before the fork; the child only makes syscalls.
    let sock = std::os::unix::net::UnixDatagram::unbound().unwrap();
    // SAFETY: fork in a test process; the child calls only async-signal-safe functions
    // (setresgid, setgroups, setresuid, send via a socket made before the fork, _exit).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: plain syscalls on integers, then _exit; no allocation.
        unsafe {
            let ok = libc::setgroups(0, std::ptr::null()) == 0
                && libc::setresgid(uid, uid, uid) == 0
                && libc::setresuid(uid, uid, uid) == 0;
            if !ok {
                libc::_exit(3);
            }
        }
        let sent = sock.send_to_addr(msg, &addr).is_ok();
        // SAFETY: _exit ends the child without running the parent's destructors.
        unsafe { libc::_exit(if sent { 0 } else { 4 }) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the stranger's sendto failed: {status}"
    );
}

/// Row 4: `recv --via uds-dgram --at @name` drops (and reports) datagrams from another user,
/// a plain `sendto` or `ipckit send`, and still takes its own user's.
#[test]
fn dgram_receiver_drops_another_users_datagrams() {
    if !can_switch_users("dgram_receiver_drops_another_users_datagrams") {
        return;
    }
    let env = TestEnv::new("dgram-drop");
    let name = format!("ipckit-peers-{}-drop", std::process::id());
    let at = format!("@{name}");
    let r = listener_dgram(&env, &at);
    let uid = stranger_uid(0);
    raw_sendto_as(uid, &name, b"from a stranger");
    let stranger = as_user(
        &env,
        uid,
        &["send", "--via", "uds-dgram", "--to", &at, "ipckit stranger"],
    )
    .output()
    .unwrap();
    env.run(&["send", "--via", "uds-dgram", "--to", &at, "mine"], b"")
        .ok();
    let out = r.finish();
    assert!(
        !stranger.status.success(),
        "the stranger's send: {stranger:?}"
    );
    assert_eq!(out.stdout, "mine\n", "{out:?}");
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains("policy refuses"),
        "drops must be reported: {out:?}"
    );
}

/// `recv --via uds-dgram --count 1` with its output collected.
fn listener_dgram(env: &TestEnv, at: &str) -> Bg {
    let mut r = env.spawn(&[
        "recv",
        "--via",
        "uds-dgram",
        "--at",
        at,
        "--count",
        "1",
        "--timeout",
        "15",
    ]);
    r.wait_ready();
    r
}

/// Row 4: root's `send --via uds-dgram --to @other` to another user's ipckit receiver is
/// refused before anything is sent (the answer's credentials), and nothing arrives there.
#[test]
fn dgram_sender_refuses_another_users_receiver() {
    if !can_switch_users("dgram_sender_refuses_another_users_receiver") {
        return;
    }
    use std::process::Stdio;
    let env = TestEnv::new("dgram-other-rx");
    let at = format!("@ipckit-peers-{}-other", std::process::id());
    let uid = stranger_uid(1);
    let mut c = as_user(
        &env,
        uid,
        &[
            "recv",
            "--via",
            "uds-dgram",
            "--at",
            &at,
            "--count",
            "1",
            "--timeout",
            "4",
        ],
    );
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut r = Bg::start(c.spawn().unwrap());
    r.wait_ready();
    let s = env.run(&["send", "--via", "uds-dgram", "--to", &at, "secret"], b"");
    let out = r.finish();
    assert!(!s.status.success(), "send must refuse: {s:?}");
    // The other user's receiver refuses our probe as we would refuse its answer: either way
    // the sender stops before its message.
    assert!(s.stderr.contains("nothing was sent"), "{s:?}");
    assert_eq!(
        out.stdout, "",
        "nothing may reach the other user's receiver: {out:?}"
    );
}

/// Row 4: a datagram socket that is not ipckit's (same user) never answers the hello: the
/// sender fails with a clear error, and the socket got the probe, not the message.
#[test]
fn dgram_sender_refuses_a_plain_socket() {
    use std::os::linux::net::SocketAddrExt;
    let env = TestEnv::new("dgram-plain");
    let name = format!("ipckit-peers-{}-plain", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let plain = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
    let s = env.run(
        &[
            "send",
            "--via",
            "uds-dgram",
            "--to",
            &format!("@{name}"),
            "hello",
        ],
        b"",
    );
    assert!(!s.status.success(), "{s:?}");
    assert!(s.stderr.contains("did not answer ipckit's hello"), "{s:?}");
    plain.set_nonblocking(true).unwrap();
    let mut b = [0u8; 256];
    let mut got = Vec::new();
    while let Ok(n) = plain.recv(&mut b) {
        got.push(b[..n].to_vec());
    }
    assert_eq!(got.len(), 1, "only the probe: {got:?}");
    assert!(got[0].starts_with(b"ipckit-dgram-hel"), "{got:?}");
}

/// Row 7 on seqpacket: a record over the receiver's maximum (1 MiB) ends that connection
/// only. The record needs a send buffer over the default, which only root may force.
#[test]
fn seqpacket_oversized_record_ends_only_that_connection() {
    if !can_switch_users("seqpacket_oversized_record_ends_only_that_connection") {
        return;
    }
    use std::os::unix::ffi::OsStrExt;
    let env = TestEnv::new("badpeer-seqpacket");
    let at = env.path("sp");
    let mut r = env.spawn(&[
        "recv",
        "--via",
        "uds-seqpacket",
        "--at",
        &at,
        "--count",
        "1",
        "--timeout",
        "15",
    ]);
    r.wait_ready();
    // SAFETY: plain socket calls on integers and on live locals of the sizes passed.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let big: libc::c_int = 8 << 20;
        let r = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            (&big as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(r, 0);
        let mut sa: libc::sockaddr_un = std::mem::zeroed();
        sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in sa
            .sun_path
            .iter_mut()
            .zip(std::ffi::OsStr::new(&at).as_bytes())
        {
            *d = *s as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        assert_eq!(
            libc::connect(fd, (&sa as *const libc::sockaddr_un).cast(), len),
            0
        );
        let rec = vec![b'x'; 2 << 20];
        let n = libc::send(fd, rec.as_ptr().cast(), rec.len(), 0);
        assert_eq!(n, rec.len() as isize);
        std::thread::sleep(Duration::from_millis(200));
        env.run(
            &["send", "--via", "uds-seqpacket", "--to", &at, "after"],
            b"",
        )
        .ok();
        libc::close(fd);
    }
    let out = r.finish();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, "after\n", "{out:?}");
    assert!(out.stderr.contains("1 peer(s) dropped"), "{out:?}");
    env.assert_clean();
}

/// Another user sending to a FIFO in root's 0700 directory is told it may not reach it
/// (a usage error, exit 2), not that there is no FIFO there.
#[test]
fn fifo_out_of_reach_is_permission_denied_not_missing() {
    if !can_switch_users("fifo_out_of_reach_is_permission_denied_not_missing") {
        return;
    }
    let env = TestEnv::new("fifo-reach");
    let d = env.path("closed");
    std::fs::create_dir(&d).unwrap();
    std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let at = format!("{d}/x");
    let r = listener_plain(&env, "fifo", &at);
    let out = as_user(
        &env,
        stranger_uid(3),
        &["send", "--via", "fifo", "--to", &at, "hi"],
    )
    .output()
    .unwrap();
    r.signal(libc::SIGTERM);
    r.finish();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("ermission denied") && !err.contains("no FIFO"),
        "{err}"
    );
}

/// An idle peer (connected, silent) and one that stops half-way through a message do not
/// stall a stream listener: the peers are served side by side, so two other senders'
/// messages arrive at once and each `send` delivered what it said it did.
fn idle_peers_do_not_stall_the_others(via: &str) {
    let env = TestEnv::new(&format!("idle-{via}"));
    let at = stream_addr(&env, via);
    let r = listener_for(&env, via, &at, "line", 2);
    let idle = connect_raw(via, &at);
    let mut half = connect_raw(via, &at);
    half.write_all(b"half a mess").unwrap();
    half.flush().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let start = std::time::Instant::now();
    for m in ["one", "two"] {
        let s = env.run(&["send", "--via", via, "--to", &at, m], b"");
        assert!(s.status.success(), "{via}: {s:?}");
    }
    let out = r.finish();
    let took = start.elapsed();
    drop((idle, half));
    assert!(out.status.success(), "{via}: {out:?}");
    assert_eq!(out.stdout, "one\ntwo\n", "{via}: {out:?}");
    assert!(
        took < Duration::from_secs(5),
        "{via}: the listener waited on an idle peer ({took:?}): {out:?}"
    );
    env.assert_clean();
}

#[test]
fn tcp_idle_peers_do_not_stall_the_others() {
    idle_peers_do_not_stall_the_others("tcp");
}

#[test]
fn uds_idle_peers_do_not_stall_the_others() {
    idle_peers_do_not_stall_the_others("uds");
}

/// `recv` at port 0 says which port the kernel chose, so a sender can reach it.
#[test]
fn port_zero_is_reported_as_bound() {
    let env = TestEnv::new("port-zero");
    for via in ["tcp", "udp"] {
        let mut r = env.spawn(&[
            "recv",
            "--via",
            via,
            "--at",
            "127.0.0.1:0",
            "--count",
            "1",
            "--timeout",
            "15",
        ]);
        let line = r.wait_ready();
        let at = line.rsplit(' ').next().unwrap().to_owned();
        let port: u16 = at.rsplit(':').next().unwrap().parse().unwrap();
        assert_ne!(port, 0, "{via}: {line}");
        let s = env.run(&["send", "--via", via, "--to", &at, "found"], b"");
        assert!(s.status.success(), "{via}: {s:?}");
        let out = r.finish();
        assert_eq!(out.stdout, "found\n", "{via}: {out:?}");
    }
    env.assert_clean();
}
