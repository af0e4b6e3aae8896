//! The zero-copy tests' readers (run by `tests/peers/bin.rs`) and the message lengths both
//! sides agree on.

// Half of this module is the test's, half the peer binary's; each build uses its own half.
#![allow(dead_code)]

use crate::util;
use ipckit::pipe;
use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

/// Runs reader `role`.
pub fn run(role: &str) {
    match role {
        "vmsplice-reader" => vmsplice_reader(),
        "tcp-reader" => tcp_reader(),
        "tcp-quitter" => tcp_quitter(),
        other => panic!("unknown role {other}"),
    }
}

pub const VMSPLICE_MAX: usize = 64 * 1024;
pub const VMSPLICE_MESSAGES: u64 = 3000;

/// Length of message `i`: deterministic, so the reader knows the boundaries without framing;
/// mostly the maximum (to keep the pipe full of whole pages), sometimes odd sizes.
pub fn msg_len(i: u64, max: usize) -> usize {
    let r = util::Rng(i.wrapping_mul(0x9E37_79B9) | 1).next();
    match r % 4 {
        0 => 1 + (r >> 8) as usize % max,
        _ => max,
    }
}

/// The reader of `vmsplice_rotation_...`: reads every message with `read` (a copy, as the
/// rotation rule needs) and checks every byte.
fn vmsplice_reader() {
    let fd: i32 = std::env::var("FD").unwrap().parse().unwrap();
    let mut r = pipe::PipeReader::from_inherited(fd).unwrap();
    let mut buf = vec![0u8; VMSPLICE_MAX];
    for i in 0..VMSPLICE_MESSAGES {
        let len = msg_len(i, VMSPLICE_MAX);
        r.read_exact(&mut buf[..len]).unwrap();
        // Slow down now and then, so the writer runs ahead and the pipe stays full.
        if i % 97 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let want = util::payload(i, len);
        if buf[..len] != want[..] {
            let at = buf[..len].iter().zip(&want).position(|(a, b)| a != b);
            panic!("message {i} ({len} B) corrupted at byte {at:?}");
        }
    }
    let mut rest = [0u8; 1];
    assert_eq!(
        r.read(&mut rest).unwrap(),
        0,
        "nothing after the last message"
    );
}

pub const TCP_SLOT: usize = 64 * 1024;
pub const TCP_MESSAGES: u64 = 4000;

/// The reader of the MSG_ZEROCOPY test: connects, reads every message, checks every byte;
/// reads slowly at times so that sends stay in flight and the sender must wait.
fn tcp_reader() {
    let port: u16 = std::env::var("PORT").unwrap().parse().unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut buf = vec![0u8; TCP_SLOT];
    for i in 0..TCP_MESSAGES {
        let len = msg_len(i, TCP_SLOT);
        s.read_exact(&mut buf[..len]).unwrap();
        if i % 211 == 0 {
            std::thread::sleep(Duration::from_millis(3));
        }
        let want = util::payload(i, len);
        if buf[..len] != want[..] {
            let at = buf[..len].iter().zip(&want).position(|(a, b)| a != b);
            panic!("message {i} ({len} B) corrupted at byte {at:?}");
        }
    }
    let mut rest = [0u8; 1];
    assert_eq!(
        s.read(&mut rest).unwrap(),
        0,
        "nothing after the last message"
    );
}

/// Reads a few messages, then exits with data unread: the kernel resets the connection.
fn tcp_quitter() {
    let port: u16 = std::env::var("PORT").unwrap().parse().unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut buf = vec![0u8; TCP_SLOT];
    for _ in 0..10 {
        s.read_exact(&mut buf).unwrap();
    }
}
