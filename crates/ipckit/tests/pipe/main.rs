//! Pipe capacity control and FIFO opening rules.

#[path = "../util/mod.rs"]
mod util;

use ipckit::pipe::{self, PipePair};
use ipckit::{fifo, Transport, Wait};
use std::time::{Duration, Instant};

#[test]
fn pipe_capacity_within_the_system_maximum() {
    let pair = PipePair::new(Wait::Block, None).unwrap();
    let max = pipe::max_capacity().unwrap();
    let set = pair.set_capacity(256 * 1024).unwrap();
    assert!(set >= 256 * 1024);
    let e = pair.set_capacity(max + 1).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(
        e.to_string().contains(&max.to_string()),
        "the error names the limit: {e}"
    );
    let (r, w) = pipe::pipe(Wait::Block, None).unwrap();
    assert_eq!(w.pipe_capacity().unwrap(), 65536);
    assert_eq!(w.set_pipe_capacity(1 << 20).unwrap(), 1 << 20);
    assert_eq!(r.pipe_capacity().unwrap(), 1 << 20);
}

#[test]
fn in_process_pipe_try_send_keeps_whole_messages() {
    let (mut r, mut w) = pipe::pipe(Wait::Block, Some(4096)).unwrap();
    let mut sent = 0u64;
    // Fill the pipe with try_send: every accepted message must arrive whole.
    loop {
        match w.try_send(&[sent as u8; 1000]) {
            Ok(()) => sent += 1,
            Err(ipckit::SendError::Full) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let mut buf = vec![0u8; 4096];
    for i in 0..sent {
        // The last message may have been only partly written; recv flushes nothing here (the
        // writer is another endpoint), so flush it by sending from the writer side.
        if i == sent - 1 {
            w.flush().unwrap_or(());
        }
        let n = r.recv_timeout(&mut buf, Duration::from_secs(2)).unwrap();
        assert_eq!(n, 1000);
        assert!(buf[..n].iter().all(|&b| b == i as u8));
    }
}

#[test]
fn fifo_is_0600_exclusive_and_open_write_times_out() {
    let dir = util::init();
    let path = dir.join(ipckit::registry::unique_name("fifo-open"));
    let guard = fifo::create(&path, 0o600).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fifo::create(&path, 0o600).unwrap_err().kind(),
        std::io::ErrorKind::AlreadyExists
    );
    let t = Instant::now();
    let e = fifo::open_write(&path, Duration::from_millis(200)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert!(e.to_string().contains("no reader"), "{e}");
    assert!(t.elapsed() >= Duration::from_millis(200));
    drop(guard);
    assert!(!path.exists(), "dropping the guard removes the FIFO");
    let plain = dir.join(ipckit::registry::unique_name("not-a-fifo"));
    std::fs::write(&plain, b"x").unwrap();
    assert_eq!(
        fifo::open_read(&plain).unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
    std::fs::remove_file(&plain).unwrap();
}

#[test]
fn line_framing_speaks_plain_text() {
    let (mut r, mut w) = pipe::pipe(Wait::Block, None).unwrap();
    r.set_framing(ipckit::Framing::Line);
    w.set_framing(ipckit::Framing::Line);
    assert_eq!(
        w.max_msg_size(),
        64 * 1024 - 1,
        "a line must fit the receive buffer"
    );
    w.send(b"first").unwrap();
    w.send(b"").unwrap();
    assert!(
        w.send(b"two\nlines").is_err(),
        "a newline cannot be inside a line message"
    );
    w.send(b"last").unwrap();
    drop(w);
    let mut buf = vec![0u8; 100];
    let mut got = Vec::new();
    loop {
        match r.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8(buf[..n].to_vec()).unwrap()),
            Err(ipckit::RecvError::PeerGone) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, ["first", "", "last"]);
}
