//! Raw pipe ends: non-blocking mode, partial writes, readiness through poll and epoll, and
//! PIPE_BUF atomicity with four writer processes.

use super::peer::{record, RECORDS};
use super::util;
use ipckit::epoll::{Epoll, Events, Interest};
use ipckit::pipe::{self, PipeReader, PipeWriter, PIPE_BUF};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

const WRITERS: u32 = 4;

#[test]
fn pipe_buf_writes_from_four_processes_never_interleave() {
    util::init();
    let (mut r, w) = pipe::raw_pipe().unwrap();
    let mut children: Vec<util::KillOnDrop> = (0..WRITERS)
        .map(|id| {
            let mut cmd = util::peer_command(
                "atomic-writer",
                &[("FD", w.as_raw_fd().to_string()), ("ID", id.to_string())],
            );
            pipe::inherit_only(&mut cmd, &[w.as_fd()]);
            util::KillOnDrop(cmd.spawn().unwrap())
        })
        .collect();
    drop(w); // ours: end-of-file comes when the last writer exits
    let data = util::watchdog(60, move || {
        // Read in pieces that straddle record boundaries, as a real reader would.
        let mut data = Vec::new();
        let mut buf = [0u8; 1000];
        loop {
            match r.read(&mut buf).unwrap() {
                0 => break data,
                n => data.extend_from_slice(&buf[..n]),
            }
        }
    });
    for c in &mut children {
        assert!(c.0.wait().unwrap().success());
    }
    assert_eq!(data.len(), (WRITERS * RECORDS) as usize * PIPE_BUF);
    let mut next = [0u32; WRITERS as usize];
    let mut switches = 0;
    let mut last = u32::MAX;
    for (i, rec) in data.chunks_exact(PIPE_BUF).enumerate() {
        let id = u32::from_le_bytes(rec[..4].try_into().unwrap());
        let seq = u32::from_le_bytes(rec[4..8].try_into().unwrap());
        assert!(
            id < WRITERS,
            "record {i}: writer id {id}: bytes interleaved"
        );
        assert_eq!(seq, next[id as usize], "record {i} of writer {id}");
        assert!(
            rec == record(id, seq),
            "record {i} (writer {id}, seq {seq}) holds another writer's bytes"
        );
        next[id as usize] += 1;
        if id != last {
            switches += 1;
            last = id;
        }
    }
    // The writers really were concurrent: records alternate between them, yet each is whole.
    eprintln!(
        "{switches} switches between writers in {} records",
        data.len() / PIPE_BUF
    );
    assert!(
        switches > WRITERS,
        "the writers never overlapped ({switches} switches)"
    );
}

#[test]
fn non_blocking_writes_are_partial_then_would_block() {
    let (r, mut w) = pipe::raw_pipe().unwrap();
    w.set_nonblocking(true);
    let cap = w.capacity().unwrap();
    // A write larger than the pipe goes in part: exactly the capacity on an empty pipe.
    let big = vec![7u8; cap + 10_000];
    assert_eq!(w.write(&big).unwrap(), cap);
    assert_eq!(r.queued().unwrap(), cap);
    assert_eq!(w.write(b"x").unwrap_err().kind(), ErrorKind::WouldBlock);
    assert!(!w.try_wait_ready().unwrap());
    // write_timeout gives up at its deadline and says how much went in: nothing here.
    assert_eq!(w.write_timeout(&big, Duration::from_millis(50)).unwrap(), 0);
    // With a reader draining on the other side, it writes everything, in pieces.
    let reader = std::thread::spawn(move || {
        let mut r = r;
        let mut total = 0;
        let mut buf = vec![0u8; 4096];
        loop {
            match r.read(&mut buf).unwrap() {
                0 => break total,
                n => total += n,
            }
        }
    });
    let msg = vec![1u8; 1 << 20];
    assert_eq!(w.write_timeout(&msg, Duration::MAX).unwrap(), msg.len());
    drop(w);
    assert_eq!(reader.join().unwrap(), cap + msg.len());
}

#[test]
fn write_atomic_is_all_or_nothing() {
    let (r, mut w) = pipe::raw_pipe().unwrap();
    w.set_nonblocking(true);
    let e = w.write_atomic(&[0u8; PIPE_BUF + 1]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("PIPE_BUF"), "{e}");
    // Leave 100 bytes free: a PIPE_BUF write does not fit and writes nothing...
    let cap = w.capacity().unwrap();
    assert_eq!(w.write(&vec![0u8; cap - 100]).unwrap(), cap - 100);
    assert_eq!(
        w.write_atomic(&[1u8; PIPE_BUF]).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    assert_eq!(r.queued().unwrap(), cap - 100);
    // ...while a longer plain write may go in part. (Linux first tops up the last page with
    // the write's length modulo the page size, here 1 byte, then finds no free page.)
    let n = w.write(&[2u8; PIPE_BUF + 1]).unwrap();
    assert!((1..=100).contains(&n), "{n}");
    assert_eq!(r.queued().unwrap(), cap - 100 + n);
}

#[test]
fn readiness_through_poll_and_epoll() {
    let (mut r, mut w) = pipe::raw_pipe().unwrap();
    r.set_nonblocking(true);
    let mut buf = [0u8; 64];
    assert_eq!(r.read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
    assert!(!r.wait_ready_timeout(Duration::from_millis(10)).unwrap());
    r.set_nonblocking(false);
    r.set_read_timeout(Duration::from_millis(20));
    let e = r.read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(r.blocked() >= Duration::from_millis(20));
    r.set_nonblocking(true);

    let ep = Epoll::new().unwrap();
    ep.add(&r, 1, Interest::READABLE | Interest::EDGE).unwrap();
    ep.add(&w, 2, Interest::WRITABLE).unwrap();
    let mut ev = Events::with_capacity(8);
    assert_eq!(ep.try_wait(&mut ev).unwrap(), 1);
    assert_eq!(
        ev.iter().next().unwrap().token(),
        2,
        "empty pipe: writable only"
    );
    ep.delete(&w).unwrap();

    w.write_all(b"hello world").unwrap();
    assert_eq!(ep.wait_timeout(&mut ev, Duration::from_secs(5)).unwrap(), 1);
    let e = ev.iter().next().unwrap();
    assert!(e.token() == 1 && e.is_readable() && !e.is_hangup());
    // Edge-triggered: a partial read does not re-arm it; new data does.
    assert_eq!(r.read(&mut buf[..5]).unwrap(), 5);
    assert_eq!(ep.try_wait(&mut ev).unwrap(), 0);
    w.write_all(b"!").unwrap();
    assert_eq!(ep.wait_timeout(&mut ev, Duration::from_secs(5)).unwrap(), 1);
    assert_eq!(r.read(&mut buf).unwrap(), 7);
    assert_eq!(&buf[..7], b" world!");
    // The last writer closing is a hangup; the reader then sees end-of-file.
    drop(w);
    assert_eq!(ep.wait_timeout(&mut ev, Duration::from_secs(5)).unwrap(), 1);
    assert!(ev.iter().next().unwrap().is_hangup());
    assert_eq!(r.read(&mut buf).unwrap(), 0);
    // Registering twice is a clear error; a regular file cannot be watched.
    assert_eq!(
        ep.add(&r, 1, Interest::READABLE).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    let f = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    assert_eq!(
        ep.add(&f, 3, Interest::READABLE).unwrap_err().kind(),
        ErrorKind::PermissionDenied,
        "a regular file is always ready: epoll refuses it"
    );
}

#[test]
fn a_writer_without_readers_gets_broken_pipe() {
    let (r, mut w) = pipe::raw_pipe().unwrap();
    drop(r);
    assert!(w.try_wait_ready().unwrap(), "ready: the error is pending");
    assert_eq!(w.write(b"x").unwrap_err().kind(), ErrorKind::BrokenPipe);
    assert_eq!(
        w.write_atomic(b"x").unwrap_err().kind(),
        ErrorKind::BrokenPipe
    );
}

#[test]
fn ends_are_checked_before_they_are_adopted() {
    let (r, w) = pipe::raw_pipe().unwrap();
    // Owned here (close-on-exec), so not inherited: refused, and left open.
    let e = PipeWriter::from_inherited(w.as_raw_fd()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(w.capacity().is_ok());
    assert!(
        PipeReader::from_inherited(1).is_err(),
        "stdio is never a channel"
    );
    // The wrong direction, or not a pipe at all.
    let e = PipeWriter::try_from_fd(OwnedFd::from(r)).unwrap_err();
    assert!(e.to_string().contains("write end"), "{e}");
    let f = std::fs::File::open("/dev/null").unwrap();
    assert!(PipeReader::try_from_fd(OwnedFd::from(f)).is_err());
    assert!(PipeWriter::try_from_fd(OwnedFd::from(w)).is_ok());
}
