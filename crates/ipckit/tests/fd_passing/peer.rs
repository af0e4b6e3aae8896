//! The descriptor-passing tests' children (run by `tests/peers/bin.rs`, spawned with a
//! socketpair channel) and the segment helpers both sides use.

// Half of this module is the test's, half the peer binary's; each build uses its own half.
#![allow(dead_code)]

use crate::util;
use ipckit::pipe::{ChildChannel, PipeWriter};
use ipckit::process::count_open_fds;
use ipckit::shm::Segment;
use ipckit::unix::{self, Passable};
use ipckit::Transport;
use std::io::{ErrorKind, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;

/// Runs peer `role`.
pub fn run(role: &str) {
    match role {
        "use-fds" => use_fds_peer(),
        "refuse" => refuse_peer(),
        "creds" => creds_peer(),
        "dgram-server" => dgram_server_peer(),
        other => panic!("unknown role {other}"),
    }
}

pub const SEG_LEN: usize = 64 * 1024;
pub const MARKER: &[u8] = b"|child-was-here";

/// Copies the segment's data out. The test's protocol gives one process the bytes at a time
/// (the other is blocked in a read or waiting for the child to exit).
pub fn seg_read(seg: &Segment) -> Vec<u8> {
    let mut v = vec![0u8; seg.len()];
    // SAFETY: `as_ptr` points at `seg.len()` mapped bytes, live while `seg` is; no other
    // process writes them during this copy (see above).
    unsafe { std::ptr::copy_nonoverlapping(seg.as_ptr(), v.as_mut_ptr(), v.len()) };
    v
}

pub fn seg_write(seg: &Segment, data: &[u8]) {
    assert!(data.len() <= seg.len());
    // SAFETY: as in `seg_read`: in bounds, and nobody else touches the bytes meanwhile.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), seg.as_ptr(), data.len()) };
}

/// `FD_CLOEXEC`, as `/proc/self/fdinfo` reports the descriptor's flags (octal, `O_CLOEXEC`).
pub fn is_cloexec(fd: BorrowedFd<'_>) -> bool {
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
    let ch = ChildChannel::new().open_from_env().unwrap();
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

/// The child of `too_many_or_wrong_descriptors_are_refused_and_nothing_leaks`: it runs
/// nothing else, so its descriptor count is exact.
fn refuse_peer() {
    let ch = ChildChannel::new().open_from_env().unwrap();
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

/// The child of `datagrams_carry_the_senders_credentials`.
fn creds_peer() {
    let ch = ChildChannel::new().open_from_env().unwrap();
    let sock = unix::endpoint_socket(&ch).unwrap();
    // SO_PEERCRED of a socketpair names its creator (the parent), on both ends.
    let peer = unix::peer_credentials(sock).unwrap();
    assert_eq!(peer.pid as u32, std::os::unix::process::parent_id());
    let d: UnixDatagram = unix::recv_fd(sock).unwrap();
    d.send(b"plain").unwrap();
    unix::send_with_credentials(&d, b"claimed", &[], unix::own_credentials()).unwrap();
}

/// The child of `a_datagram_server_closes_descriptors_attached_to_a_hello`: a Unix datagram
/// server whose first datagram is garbage with descriptors attached.
fn dgram_server_peer() {
    use ipckit::connect::ChannelBuilder;
    let ch = ChildChannel::new().open_from_env().unwrap();
    let sock = unix::endpoint_socket(&ch).unwrap();
    let mut server = ChannelBuilder::new(ipckit::Mechanism::UdsDgram)
        .create()
        .unwrap();
    unix::send_with_fds(sock, server.address().as_bytes(), &[]).unwrap();
    let before = count_open_fds().unwrap();
    let e = server
        .accept_timeout(std::time::Duration::from_secs(10))
        .unwrap_err();
    assert!(e.to_string().contains("not an ipckit hello"), "{e}");
    // The server's own socket is gone, and with it the handle on its socket file's directory
    // (which the file is removed through); nothing the sender attached stayed.
    assert_eq!(count_open_fds().unwrap(), before - 2, "descriptors leaked");
    unix::send_with_fds(sock, b"ok", &[]).unwrap();
}
