//! Descriptor passing over Unix sockets (`SCM_RIGHTS`) and credentials on datagrams
//! (`SCM_CREDENTIALS`), across real processes: the child is the peer binary (`peer.rs`),
//! spawned with a socketpair channel (`ChildChannel` + `Duplex::SocketPair`), over which the
//! parent passes pipes, memfd segments, sockets and files.

#[path = "../util/mod.rs"]
mod util;

mod peer;

use ipckit::pipe::{self, ChildChannel, Duplex, PipeReader};
use ipckit::shm::{SegmentBuilder, SEGMENT_HEADER_LEN};
use ipckit::unix::{self, ancillary::MAX_FDS};
use ipckit::Transport;
use peer::{is_cloexec, seg_read, seg_write, MARKER, SEG_LEN};
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Duration;
use util::{init, peer_command, watchdog, KillOnDrop};

fn spawn(role: &str) -> (KillOnDrop, ipckit::StreamEndpoint) {
    let mut cmd = peer_command(role, &[]);
    let (child, ch) = ChildChannel::new()
        .duplex(Duplex::SocketPair)
        .spawn(&mut cmd)
        .unwrap();
    (KillOnDrop(child), ch)
}

fn wait_ok(mut child: KillOnDrop) {
    let st = child.0.wait().unwrap();
    assert!(st.success(), "child failed: {st}");
}

/// (a) One message carries a pipe's write end and a memfd segment; the child reads the
/// segment, writes it into the pipe with a marker, and overwrites the segment; the parent
/// sees both. Then a second channel is handed over the first and works both ways.
#[test]
fn a_child_uses_a_pipe_end_and_a_memfd_it_was_passed() {
    init();
    watchdog(60, || {
        let (child, ch) = spawn("use-fds");
        let sock = unix::endpoint_socket(&ch).unwrap();
        let (mut r, w) = pipe::raw_pipe().unwrap();
        let seg = SegmentBuilder::anonymous()
            .size(SEG_LEN)
            .create()
            .unwrap()
            .ready();
        let pattern = util::payload(1, SEG_LEN);
        seg_write(&seg, &pattern);
        let n = unix::send_with_fds(sock, b"pipe+segment", &[w.as_fd(), seg.as_fd()]).unwrap();
        assert_eq!(n, 12);
        drop(w); // the child's copy is now the only writer: EOF when it is done
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), SEG_LEN + MARKER.len());
        assert!(back[..SEG_LEN] == pattern[..], "the child read our pattern");
        assert_eq!(&back[SEG_LEN..], MARKER);

        let mut extra = unix::send_channel(sock).unwrap();
        extra.send(b"ping").unwrap();
        let mut b = vec![0u8; extra.max_msg_size()];
        let n = extra.recv(&mut b).unwrap();
        assert_eq!(&b[..n], b"ping back");

        let mut done = [0u8; 8];
        let got = unix::recv_with_fds(sock, &mut done, 0).unwrap();
        assert_eq!(&done[..got.len], b"done");
        assert!(
            seg_read(&seg) == util::payload(2, SEG_LEN),
            "the child's writes are in our mapping"
        );
        wait_ok(child);
    });
}

/// (b) + (e): more descriptors than the receiver allows, and descriptors of the wrong kind,
/// are clear errors, and the receiver's descriptor count is unchanged after each.
#[test]
fn too_many_or_wrong_descriptors_are_refused_and_nothing_leaks() {
    init();
    watchdog(60, || {
        let (child, ch) = spawn("refuse");
        let sock = unix::endpoint_socket(&ch).unwrap();
        let files: Vec<File> = (0..8).map(|_| File::open("/dev/null").unwrap()).collect();
        let fds: Vec<BorrowedFd<'_>> = files.iter().map(|f| f.as_fd()).collect();
        unix::send_with_fds(sock, b"eight", &fds).unwrap();
        unix::send_with_fds(sock, b"four", &fds[..4]).unwrap();
        unix::send_with_fds(sock, b"one", &fds[..1]).unwrap();
        unix::send_fd(sock, &files[0]).unwrap();
        let (mut r, w) = pipe::raw_pipe().unwrap();
        unix::send_fd(sock, &r).unwrap();
        let (s1, _s2) = UnixStream::pair().unwrap();
        unix::send_fd(sock, &s1).unwrap();
        unix::send_fd(sock, &w).unwrap();
        drop(w);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "survived");
        wait_ok(child);
    });
}

/// (d) A datagram socket passed to the child; with SO_PASSCRED on our end, each datagram the
/// child sends carries its pid and uid, as the kernel vouches for them.
#[test]
fn datagrams_carry_the_senders_credentials() {
    init();
    watchdog(60, || {
        let (a, b) = UnixDatagram::pair().unwrap();
        unix::set_pass_credentials(&a, true).unwrap();
        let pidfds = match unix::set_pass_pidfd(&a, true) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("SKIPPED the SCM_PIDFD part: SO_PASSPIDFD needs Linux 6.5+ ({e})");
                false
            }
        };
        let (child, ch) = spawn("creds");
        let child_pid = child.0.id() as i32;
        unix::send_fd(unix::endpoint_socket(&ch).unwrap(), &b).unwrap();
        drop(b);
        let me = unix::own_credentials();
        let mut buf = [0u8; 16];
        for want in [&b"plain"[..], b"claimed"] {
            let got = unix::recv_with_fds(&a, &mut buf, 0).unwrap();
            assert_eq!(&buf[..got.len], want);
            let c = got
                .creds
                .expect("SO_PASSCRED: credentials on every datagram");
            assert_eq!(c.pid, child_pid, "the child's pid");
            assert_eq!((c.uid, c.gid), (me.uid, me.gid));
            if pidfds {
                // SO_PASSPIDFD: a pidfd of the sender, owned and close-on-exec.
                let p = got.pidfd.expect("SO_PASSPIDFD: a pidfd on every datagram");
                assert!(is_cloexec(p.as_fd()));
                let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", p.as_raw_fd()))
                    .unwrap();
                assert!(
                    info.lines().any(|l| l == format!("Pid:\t{child_pid}")),
                    "{info}"
                );
            }
        }
        // Without SO_PASSCRED none come.
        unix::set_pass_credentials(&a, false).unwrap();
        let (c2, d2) = UnixDatagram::pair().unwrap();
        d2.send(b"x").unwrap();
        assert!(unix::recv_with_fds(&c2, &mut buf, 0)
            .unwrap()
            .creds
            .is_none());
        wait_ok(child);
    });
}

/// (c) Received descriptors are close-on-exec, new numbers for the same open file
/// description: an offset moved through one is seen through the other.
#[test]
fn received_descriptors_are_cloexec_and_share_the_file_description() {
    init();
    watchdog(60, || {
        let (a, b) = UnixStream::pair().unwrap();
        let seg = SegmentBuilder::anonymous()
            .size(4096)
            .create()
            .unwrap()
            .ready();
        let mut f = File::from(seg.as_fd().try_clone_to_owned().unwrap());
        unix::send_fd(&a, &f).unwrap();
        let mut g: File = unix::recv_fd(&b).unwrap();
        assert_ne!(f.as_raw_fd(), g.as_raw_fd());
        assert!(is_cloexec(g.as_fd()));
        // Past the segment's header, which must stay intact.
        let at = SEGMENT_HEADER_LEN as u64;
        g.seek(SeekFrom::Start(at)).unwrap();
        g.write_all(b"moved the offset").unwrap();
        assert_eq!(f.stream_position().unwrap(), at + 16, "one offset for both");
        let mut back = [0u8; 16];
        f.read_exact_at(&mut back, at).unwrap();
        assert_eq!(&back, b"moved the offset");
        f.rewind().unwrap();
        // The same descriptor passed twice in one message arrives as two descriptors.
        unix::send_with_fds(&a, b"x", &[f.as_fd(), f.as_fd()]).unwrap();
        let mut buf = [0u8; 4];
        let got = unix::recv_with_fds(&b, &mut buf, 2).unwrap();
        assert_eq!(got.fds.len(), 2);
        assert_ne!(got.fds[0].as_raw_fd(), got.fds[1].as_raw_fd());
        assert!(got.fds.iter().all(|fd| is_cloexec(fd.as_fd())));
    });
}

/// The rules the sender checks, and what the receiver says about a closed peer, a timeout,
/// a datagram cut short, and an endpoint that is not a socket.
#[test]
fn refusals_timeouts_and_edges() {
    init();
    watchdog(60, || {
        let (a, b) = UnixStream::pair().unwrap();
        let f = File::open("/dev/null").unwrap();
        let e = unix::send_with_fds(&a, b"", &[f.as_fd()]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("at least one byte"), "{e}");
        let many = vec![f.as_fd(); MAX_FDS + 1];
        let e = unix::send_with_fds(&a, b"x", &many).unwrap_err();
        assert!(e.to_string().contains("at most 253"), "{e}");
        // The kernel's own limit agrees: 253 pass.
        unix::send_with_fds(&a, b"x", &many[..MAX_FDS]).unwrap();
        let mut buf = [0u8; 4];
        let got = unix::recv_with_fds(&b, &mut buf, MAX_FDS).unwrap();
        assert_eq!(got.fds.len(), MAX_FDS);
        drop(got);

        let e =
            unix::recv_with_fds_timeout(&b, &mut buf, 1, Duration::from_millis(20)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        drop(a);
        let e = unix::recv_fd::<File>(&b).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof, "{e}");

        // A typed receive of a message send_fd did not send.
        let (a, b) = UnixStream::pair().unwrap();
        unix::send_with_fds(&a, b"hello", &[f.as_fd()]).unwrap();
        let e = unix::recv_fd::<File>(&b).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");

        // A datagram longer than the buffer: truncated, its descriptor still delivered.
        let (c, d) = UnixDatagram::pair().unwrap();
        unix::send_with_fds(&c, b"longer than four", &[f.as_fd()]).unwrap();
        let got = unix::recv_with_fds(&d, &mut buf, 1).unwrap();
        assert!(got.truncated);
        assert_eq!((got.len, got.fds.len()), (4, 1));
        // Datagram sockets pass descriptors too, and a wrong kind is named.
        unix::send_fd(&c, &f).unwrap();
        let e = unix::recv_fd::<UnixStream>(&d).unwrap_err();
        assert!(
            e.to_string().contains("expected a Unix stream socket"),
            "{e}"
        );

        // Only Unix socket endpoints carry descriptors.
        let (rx, _tx) = pipe::pipe().unwrap();
        let e = unix::endpoint_socket(&rx).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        // SO_PEERCRED in-process: ourselves.
        let (s1, _s2) = UnixStream::pair().unwrap();
        assert_eq!(
            unix::peer_credentials(&s1).unwrap(),
            unix::own_credentials()
        );
    });
}

/// A non-blocking socket (as every endpoint's is) is waited on, not answered `WouldBlock`.
#[test]
fn non_blocking_sockets_wait() {
    init();
    watchdog(30, || {
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let (r, _w) = pipe::raw_pipe().unwrap();
            unix::send_fd(&a, &r).unwrap();
            a
        });
        let r: PipeReader = unix::recv_fd(&b).unwrap();
        drop(r);
        drop(t.join().unwrap());
    });
}

/// A datagram server reads its first datagram with room for credentials, so descriptors a
/// sender attaches are installed too: they must be closed, not leaked.
#[test]
fn a_datagram_server_closes_descriptors_attached_to_a_hello() {
    init();
    watchdog(60, || {
        let (child, ch) = spawn("dgram-server");
        let sock = unix::endpoint_socket(&ch).unwrap();
        let mut buf = [0u8; 256];
        let got = unix::recv_with_fds(sock, &mut buf, 0).unwrap();
        let addr = String::from_utf8(buf[..got.len].to_vec()).unwrap();
        let d = UnixDatagram::unbound().unwrap();
        d.connect(&addr).unwrap();
        let f = File::open("/dev/null").unwrap();
        unix::send_with_fds(&d, b"garbage", &[f.as_fd(), f.as_fd(), f.as_fd()]).unwrap();
        let got = unix::recv_with_fds(sock, &mut buf, 0).unwrap();
        assert_eq!(&buf[..got.len], b"ok");
        wait_ok(child);
        assert!(
            util::leftover_files().is_empty(),
            "{:?}",
            util::leftover_files()
        );
    });
}
