//! Descriptor passing over Unix sockets (`SCM_RIGHTS`) and credentials on datagrams
//! (`SCM_CREDENTIALS`), across real processes: the child is this test binary re-executed,
//! spawned with a socketpair channel (`ChildChannel` + `Duplex::SocketPair`), over which the
//! parent passes pipes, memfd segments, sockets and files.

#[path = "../util/mod.rs"]
mod util;

use ipckit::pipe::{self, ChildChannel, Duplex, PipeReader, PipeWriter};
use ipckit::shm::{Segment, SegmentBuilder, HEADER_LEN};
use ipckit::unix::{self, ancillary::MAX_FDS, Passable};
use ipckit::{count_open_fds, Transport, Wait};
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Duration;
use util::{init, peer_command, watchdog, KillOnDrop};

/// A re-executed copy of this binary playing a peer's role (see `util::peer_command`).
#[test]
fn peer_entry() {
    let Ok(role) = std::env::var(util::ROLE) else {
        return;
    };
    match role.as_str() {
        "use-fds" => use_fds_peer(),
        "refuse" => refuse_peer(),
        "creds" => creds_peer(),
        "dgram-server" => dgram_server_peer(),
        other => panic!("unknown role {other}"),
    }
}

const SEG_LEN: usize = 64 * 1024;
const MARKER: &[u8] = b"|child-was-here";

/// Copies the segment's data out. The test's protocol gives one process the bytes at a time
/// (the other is blocked in a read or waiting for the child to exit).
fn seg_read(seg: &Segment) -> Vec<u8> {
    let mut v = vec![0u8; seg.len()];
    // SAFETY: `as_ptr` points at `seg.len()` mapped bytes, live while `seg` is; no other
    // process writes them during this copy (see above).
    unsafe { std::ptr::copy_nonoverlapping(seg.as_ptr(), v.as_mut_ptr(), v.len()) };
    v
}

fn seg_write(seg: &Segment, data: &[u8]) {
    assert!(data.len() <= seg.len());
    // SAFETY: as in `seg_read`: in bounds, and nobody else touches the bytes meanwhile.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), seg.as_ptr(), data.len()) };
}

/// `FD_CLOEXEC`, as `/proc/self/fdinfo` reports the descriptor's flags (octal, `O_CLOEXEC`).
fn is_cloexec(fd: BorrowedFd<'_>) -> bool {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
        .unwrap();
    flags & libc::O_CLOEXEC as u32 != 0
}

/// The child of `a_child_uses_a_pipe_end_and_a_memfd_it_was_passed`.
fn use_fds_peer() {
    let ch = pipe::channel_from_env(Wait::Block, None).unwrap();
    let sock = unix::endpoint_socket(&ch).unwrap();
    let mut buf = [0u8; 64];
    let got = unix::recv_with_fds(sock, &mut buf, 4).unwrap();
    assert_eq!(&buf[..got.len], b"pipe+segment");
    assert_eq!(got.fds.len(), 2);
    for fd in &got.fds {
        assert!(
            is_cloexec(fd.as_fd()),
            "received descriptors are close-on-exec"
        );
    }
    let mut fds = got.fds.into_iter();
    let mut w = PipeWriter::from_received(fds.next().unwrap()).unwrap();
    let seg = Segment::from_received(fds.next().unwrap()).unwrap();
    // What the parent put in the segment, back through the pipe, with our mark.
    let mut out = seg_read(&seg);
    out.extend_from_slice(MARKER);
    w.write_all(&out).unwrap();
    drop(w);
    // And the segment answered in place.
    seg_write(&seg, &util::payload(2, SEG_LEN));
    drop(seg);
    // A further channel, passed over the first one.
    let mut extra = unix::recv_channel(sock).unwrap();
    let mut b = vec![0u8; extra.max_msg_size()];
    let n = extra.recv(&mut b).unwrap();
    extra.send(&[&b[..n], b" back"].concat()).unwrap();
    // Tell the parent we are done with the segment.
    unix::send_with_fds(sock, b"done", &[]).unwrap();
}

fn spawn(role: &str) -> (KillOnDrop, ipckit::StreamEndpoint) {
    let mut cmd = peer_command(role, &[]);
    let (child, ch) = ChildChannel::new(Duplex::SocketPair)
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
        let seg = SegmentBuilder::new(SEG_LEN).create_memfd().unwrap().ready();
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

/// The child of `too_many_or_wrong_descriptors_are_refused_and_nothing_leaks`: it runs
/// nothing else, so its descriptor count is exact.
fn refuse_peer() {
    let ch = pipe::channel_from_env(Wait::Block, None).unwrap();
    let sock = unix::endpoint_socket(&ch).unwrap();
    let before = count_open_fds().unwrap();
    let mut buf = [0u8; 64];

    // 8 descriptors, room for 2: the kernel truncates (MSG_CTRUNC), we close the 2.
    let e = unix::recv_with_fds(sock, &mut buf, 2).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("more descriptors than the 2 this receiver allows")
            && text.contains("the ones that arrived were closed"),
        "{text}"
    );
    assert_eq!(
        count_open_fds().unwrap(),
        before,
        "after MSG_CTRUNC: {text}"
    );

    // 4 descriptors, 3 allowed: CMSG_SPACE(3 ints) has room for a 4th (alignment), so the
    // kernel installs 4 without MSG_CTRUNC; refused all the same, and closed.
    let e = unix::recv_with_fds(sock, &mut buf, 3).unwrap_err();
    assert!(e.to_string().contains("than the 3 this"), "{e}");
    assert_eq!(count_open_fds().unwrap(), before, "after 4 of 3: {e}");

    // A descriptor where none is allowed.
    let e = unix::recv_with_fds(sock, &mut buf, 0).unwrap_err();
    assert!(e.to_string().contains("than the 0 this"), "{e}");
    assert_eq!(count_open_fds().unwrap(), before, "after 1 of 0: {e}");

    // (e) A file where a pipe's write end is expected: refused by the typed layer, closed.
    let e = unix::recv_fd::<PipeWriter>(sock).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("expected the write end of a pipe")
            && text.contains("/dev/null")
            && text.contains("\"file\""),
        "{text}"
    );
    assert_eq!(
        count_open_fds().unwrap(),
        before,
        "after a wrong kind: {text}"
    );

    // A pipe's read end where the write end is expected: the direction is checked too.
    let e = unix::recv_fd::<PipeWriter>(sock).unwrap_err();
    assert!(e.to_string().contains("not a pipe's write end"), "{e}");
    assert_eq!(
        count_open_fds().unwrap(),
        before,
        "after the wrong end: {e}"
    );

    // A socket where a segment is expected.
    let e = unix::recv_fd::<Segment>(sock).unwrap_err();
    assert!(e.to_string().contains("socket:["), "{e}");
    assert_eq!(count_open_fds().unwrap(), before, "after a socket: {e}");

    // After all that the channel still works: the right kind is taken and used.
    let mut w: PipeWriter = unix::recv_fd(sock).unwrap();
    assert_eq!(count_open_fds().unwrap(), before + 1);
    w.write_all(b"survived").unwrap();
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

/// The child of `datagrams_carry_the_senders_credentials`.
fn creds_peer() {
    let ch = pipe::channel_from_env(Wait::Block, None).unwrap();
    let sock = unix::endpoint_socket(&ch).unwrap();
    // SO_PEERCRED of a socketpair names its creator (the parent), on both ends.
    let peer = unix::peer_credentials(sock).unwrap();
    assert_eq!(peer.pid as u32, std::os::unix::process::parent_id());
    let d: UnixDatagram = unix::recv_fd(sock).unwrap();
    d.send(b"plain").unwrap();
    unix::send_with_credentials(&d, b"claimed", &[], unix::own_credentials()).unwrap();
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
        let seg = SegmentBuilder::new(4096).create_memfd().unwrap().ready();
        let mut f = File::from(seg.as_fd().try_clone_to_owned().unwrap());
        unix::send_fd(&a, &f).unwrap();
        let mut g: File = unix::recv_fd(&b).unwrap();
        assert_ne!(f.as_raw_fd(), g.as_raw_fd());
        assert!(is_cloexec(g.as_fd()));
        // Past the segment's header, which must stay intact.
        let at = HEADER_LEN as u64;
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
        let (rx, _tx) = pipe::pipe(Wait::Block, None).unwrap();
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

/// The child of `a_datagram_server_closes_descriptors_attached_to_a_hello`: a Unix datagram
/// server whose first datagram is garbage with descriptors attached.
fn dgram_server_peer() {
    use ipckit::connect::{Options, Server};
    let ch = pipe::channel_from_env(Wait::Block, None).unwrap();
    let sock = unix::endpoint_socket(&ch).unwrap();
    let server = Server::create(ipckit::Mechanism::UdsDgram, &Options::default()).unwrap();
    unix::send_with_fds(sock, server.address().as_bytes(), &[]).unwrap();
    let before = count_open_fds().unwrap();
    let e = server.accept().unwrap_err();
    assert!(e.to_string().contains("not an ipckit hello"), "{e}");
    // The server's own socket is gone; nothing the sender attached stayed.
    assert_eq!(count_open_fds().unwrap(), before - 1, "descriptors leaked");
    unix::send_with_fds(sock, b"ok", &[]).unwrap();
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
