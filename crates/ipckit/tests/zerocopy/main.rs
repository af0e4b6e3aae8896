//! Zero-copy paths: vmsplice rotation read by a real second process with every byte checked
//! (and the hazard it avoids, shown), splice/tee/sendfile moving exact bytes, and
//! MSG_ZEROCOPY across two processes with its completions counted and buffer reuse checked
//! against the kernel's own completions.

#[path = "../util/mod.rs"]
mod util;

mod peer;

use ipckit::pipe;
use ipckit::zerocopy::{
    self, Completion, SpliceFlags, VmspliceSender, ZeroCopyEvent, ZeroCopySender,
};
use peer::{msg_len, TCP_MESSAGES, TCP_SLOT, VMSPLICE_MAX, VMSPLICE_MESSAGES};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

#[test]
fn vmsplice_rotation_is_read_intact_by_another_process() {
    util::init();
    let (r, w) = pipe::raw_pipe().unwrap();
    let cap = w.set_capacity(1 << 20).unwrap();
    let mut cmd = util::peer_command("vmsplice-reader", &[("FD", r.as_raw_fd().to_string())]);
    pipe::inherit_only(&mut cmd, &[r.as_fd()]);
    let mut child = util::KillOnDrop(cmd.spawn().unwrap());
    drop(r);
    let mut tx = VmspliceSender::new(w, VMSPLICE_MAX).unwrap();
    assert_eq!(tx.capacity(), cap);
    assert_eq!(
        tx.ring_pages(),
        zerocopy::vmsplice_ring_pages(cap, VMSPLICE_MAX)
    );
    let stats = util::watchdog(120, move || {
        for i in 0..VMSPLICE_MESSAGES {
            let len = msg_len(i, VMSPLICE_MAX);
            tx.send_with(len, |b| b.copy_from_slice(&util::payload(i, len)))
                .unwrap();
        }
        tx.stats() // dropping `tx` closes the pipe: the reader then sees end-of-file
    });
    assert_eq!(stats.messages, VMSPLICE_MESSAGES);
    let st = util::watchdog(60, move || child.0.wait().unwrap());
    assert!(
        st.success(),
        "the reader found a corrupted or missing message: {st}"
    );
    eprintln!("vmsplice: {stats:?}");
}

/// The hazard the rotation avoids, shown deterministically: a page spliced into a pipe and
/// rewritten before the reader reads it is read as rewritten. (Nothing reads in between, so
/// this never depends on timing.)
#[test]
fn vmsplice_negative_control_a_rewritten_page_is_read_as_rewritten() {
    util::init();
    let (mut r, w) = pipe::raw_pipe().unwrap();
    let page = ipckit::process::page_size();
    // A page-aligned buffer: a Vec of one page, aligned by over-allocating.
    let mut v = vec![0u8; 2 * page];
    let off = v.as_ptr().align_offset(page);
    let buf = &mut v[off..off + page];
    buf.fill(b'A');
    assert_eq!(
        zerocopy::vmsplice(&w, buf, SpliceFlags::NONE).unwrap(),
        page
    );
    buf.fill(b'B'); // too early: the pipe still references this page
    let mut got = vec![0u8; page];
    r.read_exact(&mut got).unwrap();
    assert!(
        got.iter().all(|&b| b == b'B'),
        "the reader sees the rewrite, not what was spliced"
    );
    drop(w);
}

#[test]
fn vmsplice_sender_refuses_a_pipe_that_grew() {
    util::init();
    let (mut r, w) = pipe::raw_pipe().unwrap();
    w.set_capacity(65536).unwrap();
    let w: OwnedFd = w.into();
    let w2 = w.try_clone().unwrap();
    let mut tx = VmspliceSender::new(w, 4096).unwrap();
    let n = tx.ring_pages() as u64;
    let mut buf = vec![0u8; 4096];
    for i in 0..n {
        tx.send(&util::payload(i, 4096)).unwrap();
        r.read_exact(&mut buf).unwrap();
    }
    pipe::set_capacity(&w2, 1 << 20).unwrap();
    let e = tx.send(&[1]).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("grew"), "{e}");
}

fn temp_file_with(data: &[u8]) -> std::fs::File {
    let dir = util::init();
    let path = dir.join(format!(
        "{}zc-{}",
        ipckit::registry::prefix(),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap(); // nothing left behind, whatever happens next
    f.write_all(data).unwrap();
    f
}

fn read_all_in_thread(mut s: UnixStream) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        s.read_to_end(&mut v).unwrap();
        v
    })
}

#[test]
fn sendfile_moves_exact_bytes_and_advances_the_offset() {
    let data = util::payload(7, 300_001);
    let f = temp_file_with(&data);
    let (a, b) = UnixStream::pair().unwrap();
    let reader = read_all_in_thread(b);
    util::watchdog(30, move || {
        let mut off = 1000u64;
        let n = zerocopy::sendfile_exact(&a, &f, &mut off, 250_000).unwrap();
        assert_eq!(n, 250_000);
        assert_eq!(off, 251_000);
        // At end of file: fewer bytes, then none.
        let n = zerocopy::sendfile_exact(&a, &f, &mut off, 100_000).unwrap();
        assert_eq!(n, data.len() - 251_000);
        assert_eq!(zerocopy::sendfile(&a, &f, Some(&mut off), 10).unwrap(), 0);
        drop(a);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), data.len() - 1000);
        assert!(got == data[1000..], "sendfile delivered other bytes");
    });
}

#[test]
fn splice_file_to_pipe_to_socket_and_socket_relay_move_exact_bytes() {
    let data = util::payload(9, 200_003);
    let f = temp_file_with(&data);
    util::watchdog(30, move || {
        // file -> pipe -> socket A -> (relay: socket B -> pipe -> socket C) -> reader
        let (pr, pw) = pipe::raw_pipe().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let (c, d) = UnixStream::pair().unwrap();
        let reader = read_all_in_thread(d);
        let relay = std::thread::spawn(move || {
            let (qr, qw) = pipe::raw_pipe().unwrap();
            let mut total = 0;
            loop {
                let n = zerocopy::splice(&b, None, &qw, None, 65536, SpliceFlags::MOVE).unwrap();
                if n == 0 {
                    break total;
                }
                assert_eq!(zerocopy::splice_exact(&qr, &c, n).unwrap(), n);
                total += n;
            }
        });
        let mut off = 3u64;
        let mut left = data.len() - 3;
        while left > 0 {
            let n = zerocopy::splice(
                &f,
                Some(&mut off),
                &pw,
                None,
                left.min(65536),
                SpliceFlags::MOVE | SpliceFlags::MORE,
            )
            .unwrap();
            assert!(n > 0);
            assert_eq!(zerocopy::splice_exact(&pr, &a, n).unwrap(), n);
            left -= n;
        }
        assert_eq!(off as usize, data.len());
        drop(a);
        assert_eq!(relay.join().unwrap(), data.len() - 3);
        let got = reader.join().unwrap();
        assert!(got == data[3..], "splice delivered other bytes");
    });
}

#[test]
fn tee_duplicates_without_consuming() {
    let (mut r1, w1) = pipe::raw_pipe().unwrap();
    let (mut r2, w2) = pipe::raw_pipe().unwrap();
    let data = util::payload(1, 5000);
    let mut w1 = w1;
    w1.write_all(&data).unwrap();
    let n = zerocopy::tee(&r1, &w2, 100_000, SpliceFlags::NONBLOCK).unwrap();
    assert_eq!(n, data.len());
    let (mut a, mut b) = (vec![0u8; data.len()], vec![0u8; data.len()]);
    r1.read_exact(&mut a).unwrap();
    r2.read_exact(&mut b).unwrap();
    assert!(a == data && b == data);
    drop(w2);
}

/// Replays the sender's record: a buffer may be lent only when every send made from it
/// before is covered by a completion the kernel had reported by then.
fn check_no_early_reuse(events: &[ZeroCopyEvent], slots: usize) -> (u64, u64) {
    let mut last_ids: Vec<Vec<u32>> = vec![Vec::new(); slots];
    let mut completed: Vec<Completion> = Vec::new();
    let covered = |id: u32, done: &[Completion]| {
        done.iter()
            .any(|c| id.wrapping_sub(c.first) <= c.last.wrapping_sub(c.first))
    };
    let (mut lent, mut sent) = (0, 0);
    for e in events {
        match *e {
            ZeroCopyEvent::Lent { slot } => {
                for &id in &last_ids[slot] {
                    assert!(
                        covered(id, &completed),
                        "buffer {slot} lent while send {id} from it was not completed"
                    );
                }
                last_ids[slot].clear();
                lent += 1;
            }
            ZeroCopyEvent::Sent { slot, id } => {
                last_ids[slot].push(id);
                sent += 1;
            }
            ZeroCopyEvent::Completed(c) => completed.push(c),
        }
    }
    (lent, sent)
}

#[test]
fn msg_zerocopy_completions_are_counted_and_buffers_reused_only_after_them() {
    util::init();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let cmd_port = port.to_string();
    let mut cmd = util::peer_command("tcp-reader", &[("PORT", cmd_port)]);
    let mut child = util::KillOnDrop(cmd.spawn().unwrap());
    let (stream, _) = util::watchdog(30, move || l.accept().unwrap());
    let slots = 4;
    let mut tx = ZeroCopySender::new(stream, slots, TCP_SLOT).unwrap();
    tx.record_events(true);
    let (stats, events, in_flight) = util::watchdog(120, move || {
        for i in 0..TCP_MESSAGES {
            let len = msg_len(i, TCP_SLOT);
            tx.send_with(len, |b| b.copy_from_slice(&util::payload(i, len)))
                .unwrap();
        }
        tx.flush_timeout(Duration::from_secs(60)).unwrap();
        let r = (tx.stats(), tx.take_events(), tx.in_flight());
        drop(tx.into_socket()); // end-of-file for the reader
        r
    });
    eprintln!("MSG_ZEROCOPY: {stats:?}");
    assert_eq!(stats.messages, TCP_MESSAGES);
    assert_eq!(in_flight, 0);
    assert!(stats.sends >= TCP_MESSAGES);
    assert_eq!(
        stats.completions, stats.sends,
        "every send is eventually completed"
    );
    assert!(stats.copied <= stats.completions);
    assert!(stats.notifications > 0);
    eprintln!(
        "MSG_ZEROCOPY on loopback: {} of {} completions marked copied ({} notifications, {} waits for a buffer)",
        stats.copied, stats.completions, stats.notifications, stats.waits
    );
    let (lent, sent) = check_no_early_reuse(&events, slots);
    assert_eq!(lent, TCP_MESSAGES);
    assert_eq!(sent, stats.sends);
    let st = util::watchdog(60, move || child.0.wait().unwrap());
    assert!(
        st.success(),
        "the reader found a corrupted or missing message: {st}"
    );
}

#[test]
fn msg_zerocopy_sender_fails_cleanly_when_the_reader_dies() {
    util::init();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut cmd = util::peer_command("tcp-quitter", &[("PORT", port.to_string())]);
    let mut child = util::KillOnDrop(cmd.spawn().unwrap());
    let (stream, _) = util::watchdog(30, move || l.accept().unwrap());
    let mut tx = ZeroCopySender::new(stream, 4, TCP_SLOT).unwrap();
    let (err, stats) = util::watchdog(60, move || {
        let mut err = None;
        for i in 0..1_000_000u64 {
            if let Err(e) = tx.send_with(TCP_SLOT, |b| b.fill(i as u8)) {
                err = Some(e);
                break;
            }
        }
        // Whatever was in flight is completed (the reset freed it) or reported, never hung on.
        let _ = tx.flush_timeout(Duration::from_secs(20));
        (err, tx.stats())
    });
    let e = err.expect("sending to a dead reader fails");
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ),
        "{e}"
    );
    assert!(stats.completions <= stats.sends);
    let _ = child.0.wait();
}

mod parse {
    use ipckit::zerocopy::Completion;
    use proptest::prelude::*;

    /// One control message as the kernel lays it out: `cmsghdr` (length, level, type), data,
    /// padding to the alignment of `size_t`.
    fn cmsg(level: i32, ty: i32, data: &[u8]) -> Vec<u8> {
        let hdr = std::mem::size_of::<libc::cmsghdr>();
        let mut v = Vec::new();
        v.extend_from_slice(&(hdr + data.len()).to_ne_bytes());
        v.extend_from_slice(&level.to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(data);
        while v.len() % std::mem::size_of::<usize>() != 0 {
            v.push(0);
        }
        v
    }

    fn extended_err(errno: u32, origin: u8, code: u8, info: u32, data: u32) -> Vec<u8> {
        let mut v = errno.to_ne_bytes().to_vec();
        v.extend_from_slice(&[origin, 0, code, 0]);
        v.extend_from_slice(&info.to_ne_bytes());
        v.extend_from_slice(&data.to_ne_bytes());
        v
    }

    proptest! {
        /// Any bytes: an answer or none, never a panic.
        #[test]
        fn arbitrary_control_data_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Completion::parse(&bytes);
        }

        /// A well-formed zero-copy completion, after any foreign control message, parses to
        /// exactly its range and copied flag; cut short anywhere, it is refused or still exact.
        #[test]
        fn completions_parse_exactly(
            first in any::<u32>(),
            last in any::<u32>(),
            code in any::<u8>(),
            v6 in any::<bool>(),
            foreign in proptest::collection::vec(any::<u8>(), 0..40),
            cut in 0usize..100,
        ) {
            let (level, ty) = if v6 {
                (libc::SOL_IPV6, libc::IPV6_RECVERR)
            } else {
                (libc::SOL_IP, libc::IP_RECVERR)
            };
            let mut c = cmsg(libc::SOL_SOCKET, 99, &foreign);
            c.extend(cmsg(level, ty, &extended_err(0, 5, code, first, last)));
            let want = Completion { first, last, copied: code & 1 != 0 };
            prop_assert_eq!(Completion::parse(&c), Some(want));
            let short = &c[..c.len().saturating_sub(cut)];
            let got = Completion::parse(short);
            prop_assert!(got.is_none() || got == Some(want));
        }
    }
}
