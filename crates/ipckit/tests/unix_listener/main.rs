//! Unix listeners with a peer policy: a peer of another uid (a real second process that
//! dropped to `nobody`) is refused before a byte is read, on an abstract socket so that no
//! file permission can be what stops it; gid rules with supplementary groups; stale socket
//! files reclaimed and live ones left alone; unsafe directories refused; exact modes under
//! any umask; clear errors for addresses that cannot be.

#[path = "../util/mod.rs"]
mod util;

mod peer;

use ipckit::connect::ChannelBuilder;
use ipckit::framing::FRAME_HEADER_LEN;
use ipckit::registry::unique_name;
use ipckit::unix::{ListenerBuilder, Policy, UnixListener};
use ipckit::Mechanism;
use peer::{MARK, PAYLOAD};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;
use util::{init, peer_command, watchdog, KillOnDrop};

const NOBODY: u32 = 65534;

/// The next report line of a peer (the harness's own lines are skipped); "" at the end.
fn report(r: &mut impl BufRead) -> String {
    loop {
        let mut s = String::new();
        if r.read_line(&mut s).unwrap() == 0 {
            return String::new();
        }
        if let Some(l) = s.strip_prefix(MARK) {
            return l.trim_end().to_owned();
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!(
            "\n*** SKIPPED: this test needs root (to run a peer as another uid); \
             run the tests as root to exercise it ***\n"
        );
    }
    root
}

/// Makes the child drop to `uid`/`gid` with exactly the supplementary `groups` before exec.
fn run_as(cmd: &mut Command, uid: u32, gid: u32, groups: Vec<u32>) {
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe calls
    // (setgroups, setgid, setuid) on data moved into it; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The peer binary, copied into the per-run directory where `nobody` can execute it (the
/// checkout may sit under a directory closed to others, like `/root`); removed on drop.
struct OpenExe(PathBuf);

impl OpenExe {
    fn new() -> OpenExe {
        let p = init().join(unique_name("exe"));
        std::fs::copy(util::peer_exe(), &p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        OpenExe(p)
    }

    /// `peer_command`, running this copy.
    fn peer_command(&self, role: &str, vars: &[(&str, String)]) -> Command {
        util::peer_command_at(&self.0, role, vars)
    }
}

impl Drop for OpenExe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Client {
    child: KillOnDrop,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    /// A client; `user` (uid, gid, groups) runs it as another user, from `exe`.
    fn spawn(
        mech: Mechanism,
        addr: &str,
        user: Option<(u32, u32, Vec<u32>)>,
        exe: &OpenExe,
    ) -> Client {
        let vars = [("ADDR", addr.to_owned()), ("MECH", mech.name().to_owned())];
        let mut cmd = match &user {
            Some(_) => exe.peer_command("client", &vars),
            None => peer_command("client", &vars),
        };
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        if let Some((uid, gid, groups)) = user {
            run_as(&mut cmd, uid, gid, groups);
        }
        // A copy just written may still be open for writing in a child another test forked
        // before its own exec (ETXTBSY): try again.
        let mut tries = 0;
        let child = loop {
            match cmd.spawn() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => break r.expect("spawn client"),
            }
        };
        let mut child = KillOnDrop(child);
        let stdin = child.0.stdin.take().unwrap();
        let stdout = BufReader::new(child.0.stdout.take().unwrap());
        Client {
            child,
            stdin,
            stdout,
        }
    }

    fn line(&mut self) -> String {
        report(&mut self.stdout)
    }

    fn go(&mut self) {
        writeln!(self.stdin, "go").unwrap();
        self.stdin.flush().unwrap();
    }

    fn finish(mut self) -> String {
        let l = self.line();
        assert!(self.child.0.wait().unwrap().success());
        l
    }
}

/// Accepts the client's connection and echoes its message back as a reply.
fn serve_one(l: &UnixListener, mut c: Client) {
    let mut ep = l.accept_timeout(Duration::from_secs(10)).expect("accept");
    let mut buf = vec![0u8; ep.max_msg_size()];
    let n = ep.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], &util::payload(1, PAYLOAD)[..]);
    ep.send(b"welcome").unwrap();
    c.go();
    assert_eq!(c.finish(), "reply welcome");
}

/// A refused client: its connection is accepted, found outside the policy, and closed
/// with everything it sent still unread; the client then sees the connection end.
fn refuse_one(l: &UnixListener, mut c: Client, uid: u32) {
    let before = l.rejected();
    let e = l.accept_timeout(Duration::from_secs(10)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains(&format!("uid {uid}")), "{e}");
    assert_eq!(l.rejected(), before + 1);
    let r = l.last_rejection().unwrap();
    assert_eq!(r.cred.uid, uid);
    assert_eq!(r.cred.pid as u32, c.child.0.id());
    // Every byte the client wrote was still queued when the socket was closed: the listener
    // read none of them. (A stream carries the 16-byte frame header too.)
    let sent = match l.mechanism() {
        Mechanism::Uds => FRAME_HEADER_LEN + PAYLOAD,
        _ => PAYLOAD,
    };
    assert_eq!(r.unread, sent, "bytes left unread at the close");
    c.go();
    assert_eq!(c.finish(), "closed");
}

#[test]
fn another_uid_is_refused_unread_on_an_abstract_socket() {
    init();
    if !is_root() {
        return;
    }
    watchdog(60, || {
        let exe = OpenExe::new();
        for mech in [Mechanism::Uds, Mechanism::UdsSeqpacket] {
            let addr = format!("@{}", unique_name(&format!("uid-{mech}")));
            let l = ListenerBuilder::new(&addr)
                .policy(Policy::same_uid())
                .seqpacket(mech == Mechanism::UdsSeqpacket)
                .create()
                .unwrap();
            let mut c = Client::spawn(mech, &addr, Some((NOBODY, NOBODY, vec![])), &exe);
            // The client has connected and written before we accept.
            assert_eq!(c.line(), format!("sent uid={NOBODY}"));
            refuse_one(&l, c, NOBODY);
            // Our own uid is let in.
            let mut c = Client::spawn(mech, &addr, None, &exe);
            assert_eq!(c.line(), "sent uid=0");
            serve_one(&l, c);
            assert_eq!(l.rejected(), 1);
        }
    });
}

#[test]
fn gid_rules_see_supplementary_groups() {
    init();
    if !is_root() {
        return;
    }
    watchdog(60, || {
        const GROUP: u32 = 4242;
        let exe = OpenExe::new();
        let addr = format!("@{}", unique_name("gid"));
        let l = ListenerBuilder::new(&addr)
            .policy(Policy::gids([GROUP]))
            .create()
            .unwrap();
        // Primary gid in the rule.
        let l2addr = format!("@{}", unique_name("gid2"));
        let l2 = ListenerBuilder::new(&l2addr)
            .policy(Policy::gids([NOBODY]))
            .create()
            .unwrap();
        let mut c = Client::spawn(
            Mechanism::Uds,
            &l2addr,
            Some((NOBODY, NOBODY, vec![])),
            &exe,
        );
        c.line();
        serve_one(&l2, c);
        // A supplementary group in the rule.
        let mut c = Client::spawn(
            Mechanism::Uds,
            &addr,
            Some((NOBODY, NOBODY, vec![NOBODY, GROUP])),
            &exe,
        );
        c.line();
        serve_one(&l, c);
        // No group in the rule, and root is no exception.
        let mut c = Client::spawn(Mechanism::Uds, &addr, Some((NOBODY, NOBODY, vec![])), &exe);
        c.line();
        refuse_one(&l, c, NOBODY);
        let mut c = Client::spawn(Mechanism::Uds, &addr, None, &exe);
        c.line();
        refuse_one(&l, c, 0);
        // Either rule lets in.
        let l3addr = format!("@{}", unique_name("gid3"));
        let l3 = ListenerBuilder::new(&l3addr)
            .policy(Policy::gids([GROUP]).or(Policy::same_uid()))
            .create()
            .unwrap();
        let mut c = Client::spawn(Mechanism::Uds, &l3addr, None, &exe);
        c.line();
        serve_one(&l3, c);
    });
}

fn sock_path(tag: &str) -> PathBuf {
    init().join(unique_name(tag))
}

/// An in-process client and one exchange, proving the listener works.
fn exchange(l: &UnixListener) {
    let addr = l.address().to_owned();
    let t = std::thread::spawn(move || {
        let mut c = ChannelBuilder::new(Mechanism::Uds).open(&addr).unwrap();
        c.send(b"ping").unwrap();
        let mut b = vec![0u8; 16];
        let n = c.recv(&mut b).unwrap();
        assert_eq!(&b[..n], b"pong");
    });
    let mut ep = l.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut b = vec![0u8; ep.max_msg_size()];
    let n = ep.recv(&mut b).unwrap();
    assert_eq!(&b[..n], b"ping");
    ep.send(b"pong").unwrap();
    t.join().unwrap();
}

#[test]
fn stale_socket_is_reclaimed_live_one_is_not() {
    init();
    watchdog(60, || {
        let path = sock_path("stale");
        let p = path.to_str().unwrap().to_owned();
        // A listener killed with SIGKILL leaves its socket file behind.
        let mut cmd = peer_command("hold", &[("ADDR", p.clone())]);
        cmd.stdout(Stdio::piped());
        let mut child = KillOnDrop(cmd.spawn().unwrap());
        let mut out = BufReader::new(child.0.stdout.take().unwrap());
        assert_eq!(report(&mut out), "ready");
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_socket());

        // Reclaimed, and working.
        let l = ListenerBuilder::new(&p)
            .create()
            .expect("reclaim a stale socket");
        exchange(&l);

        // Live: refused, for a listener of either type, and the live one is undisturbed (the
        // probe queued no connection: the next accept sees only the real client).
        for seq in [false, true] {
            let e = ListenerBuilder::new(&p)
                .seqpacket(seq)
                .create()
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e}");
            assert!(e.to_string().contains("a live listener is at"), "{e}");
        }
        let e = l.accept_timeout(Duration::from_millis(100)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        exchange(&l);
        drop(l);
        assert!(
            !path.exists(),
            "the socket file is removed with its listener"
        );

        // Not a socket: refused and left alone.
        std::fs::write(&path, "keep me").unwrap();
        let e = ListenerBuilder::new(&p).create().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
        std::fs::remove_file(&path).unwrap();

        // A symbolic link, even to a stale socket: refused and left alone.
        let target = sock_path("stale-target");
        {
            let _l = ListenerBuilder::new(target.to_str().unwrap())
                .create()
                .unwrap();
            std::os::unix::fs::symlink(&target, &path).unwrap();
            let e = ListenerBuilder::new(&p).create().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
            assert!(e.to_string().contains("symbolic link"), "{e}");
        }
        assert!(std::fs::symlink_metadata(&path).is_ok());
        std::fs::remove_file(&path).unwrap();
        assert!(!records_name(&p), "no registry record is left");
    });
}

fn records_name(p: &str) -> bool {
    ipckit::registry::list().unwrap().iter().any(|e| {
        e.record
            .name
            .ends_with(Path::new(p).file_name().unwrap().to_str().unwrap())
    })
}

#[test]
fn unsafe_directories_are_refused() {
    init();
    let dir = sock_path("dir");
    std::fs::create_dir(&dir).unwrap();
    let sock = dir.join("s");
    let s = sock.to_str().unwrap().to_owned();

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = ListenerBuilder::new(&s).create().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(
        e.to_string().contains("0777") && e.to_string().contains("sticky"),
        "{e}"
    );
    assert!(!sock.exists());

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    drop(
        ListenerBuilder::new(&s)
            .create()
            .expect("a sticky directory is safe"),
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    drop(
        ListenerBuilder::new(&s)
            .create()
            .expect("a private directory is safe"),
    );

    let link = sock_path("dirlink");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    let e = ListenerBuilder::new(link.join("s").to_str().unwrap())
        .create()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    std::fs::remove_file(&link).unwrap();

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
        let e = ListenerBuilder::new(&s).create().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("belongs to uid 65534"), "{e}");
    } else {
        eprintln!("*** SKIPPED the other-owner directory case: needs root ***");
    }
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn socket_files_get_exactly_their_mode_under_any_umask() {
    init();
    watchdog(60, || {
        for (umask, mode, want) in [
            ("0", "600", 0o600),
            ("77", "600", 0o600),
            ("77", "660", 0o660),
            ("22", "666", 0o666),
            ("0", "400", 0o400),
        ] {
            let p = sock_path("mode");
            let out = peer_command(
                "mode",
                &[
                    ("ADDR", p.to_str().unwrap().to_owned()),
                    ("UMASK", umask.into()),
                    ("MODE", mode.into()),
                ],
            )
            .output()
            .unwrap();
            assert!(out.status.success(), "{out:?}");
            let got = report(&mut &out.stdout[..]);
            assert_eq!(
                u32::from_str_radix(&got, 8).unwrap(),
                want,
                "umask {umask}, mode {mode}"
            );
            assert!(!p.exists());
        }
    });
}

#[test]
fn impossible_addresses_are_clear_errors() {
    let dir = init();
    let check = |addr: &str, needle: &str| {
        let e = ListenerBuilder::new(addr).create().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{addr:?}: {e}");
        assert!(e.to_string().contains(needle), "{addr:?}: {e}");
    };
    // A path of exactly 107 bytes fits; 108 does not.
    let base = format!("{}/{}", dir.display(), unique_name("len"));
    let fit = format!("{base}{}", "x".repeat(107 - base.len()));
    assert_eq!(fit.len(), 107);
    drop(ListenerBuilder::new(&fit).create().expect("107 bytes fit"));
    check(&format!("{fit}y"), "at most 107 bytes");
    check(&format!("@{}", "n".repeat(108)), "at most 107 bytes");
    drop(
        ListenerBuilder::new(format!("@{}", "n".repeat(107)))
            .create()
            .expect("a 107-byte abstract name fits"),
    );
    check("@bad\0name", "NUL");
    check("@", "cannot be empty");
    check("", "cannot be empty");
    // The connect side says the same.
    let e = ChannelBuilder::new(Mechanism::Uds)
        .open("@bad\0name")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

/// Every socket endpoint, and the listener, can be watched with epoll through `AsFd`: each
/// is reported readable when a message (or a connection) arrives, with its own token.
#[test]
fn every_socket_type_is_usable_from_epoll() {
    use ipckit::epoll::{Epoll, Events, Interest};
    use ipckit::Transport as _;
    init();
    watchdog(60, || {
        let ep = Epoll::new().unwrap();
        let mut events = Events::with_capacity(8);
        let mechs = [
            Mechanism::Uds,
            Mechanism::UdsDgram,
            Mechanism::UdsSeqpacket,
            Mechanism::Tcp,
            Mechanism::Udp,
        ];
        for (i, mech) in mechs.into_iter().enumerate() {
            let token = 100 + i as u64;
            let mut server = ChannelBuilder::new(mech).create().unwrap();
            let addr = server.address();
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let t = std::thread::spawn(move || {
                let mut s = server.accept_timeout(Duration::from_secs(10)).unwrap();
                rx.recv().unwrap();
                s.send(b"ready").unwrap();
                // Hold the endpoint until the client has read.
                let _ = rx.recv();
            });
            let mut buf = vec![0u8; 64 * 1024];
            let got = if mech.is_stream() {
                let mut c = ChannelBuilder::new(mech).open_stream(&addr).unwrap();
                ep.add(&c, token, Interest::READABLE).unwrap();
                assert_eq!(ep.try_wait(&mut events).unwrap(), 0);
                tx.send(()).unwrap();
                assert_eq!(
                    ep.wait_timeout(&mut events, Duration::from_secs(10))
                        .unwrap(),
                    1
                );
                let e = events.iter().next().unwrap();
                assert!(e.token() == token && e.is_readable(), "{mech}: {e:?}");
                let n = c.try_recv(&mut buf).unwrap();
                ep.delete(&c).unwrap();
                buf[..n].to_vec()
            } else {
                let mut c = ChannelBuilder::new(mech).open_dgram(&addr).unwrap();
                ep.add(&c, token, Interest::READABLE).unwrap();
                assert_eq!(ep.try_wait(&mut events).unwrap(), 0);
                tx.send(()).unwrap();
                assert_eq!(
                    ep.wait_timeout(&mut events, Duration::from_secs(10))
                        .unwrap(),
                    1
                );
                let e = events.iter().next().unwrap();
                assert!(e.token() == token && e.is_readable(), "{mech}: {e:?}");
                let n = c.try_recv(&mut buf).unwrap();
                ep.delete(&c).unwrap();
                buf[..n].to_vec()
            };
            assert_eq!(got, b"ready", "{mech}");
            drop(tx);
            t.join().unwrap();
        }
        // The listener: readable when a peer is waiting to be accepted.
        let l = ListenerBuilder::new(format!("@{}", unique_name("epoll")))
            .create()
            .unwrap();
        ep.add(&l, 7, Interest::READABLE).unwrap();
        assert_eq!(ep.try_wait(&mut events).unwrap(), 0);
        let _c = ChannelBuilder::new(Mechanism::Uds)
            .open(l.address())
            .unwrap();
        assert_eq!(
            ep.wait_timeout(&mut events, Duration::from_secs(10))
                .unwrap(),
            1
        );
        assert_eq!(events.iter().next().unwrap().token(), 7);
        drop(l.try_accept_raw().unwrap());
    });
}
