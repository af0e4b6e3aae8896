//! Pipe capacity control and FIFO opening rules; raw pipe ends (non-blocking, partial writes,
//! readiness, PIPE_BUF atomicity across processes); spawning a child with a duplex channel.

#[path = "../util/mod.rs"]
mod util;

mod peer;
mod raw;
mod spawn;

use ipckit::fifo::FifoBuilder;
use ipckit::pipe::{self, PipeBuilder};
use ipckit::Transport;
use std::time::{Duration, Instant};

#[test]
fn pipe_capacity_within_the_system_maximum() {
    let pair = PipeBuilder::new().create_pair().unwrap();
    let max = pipe::max_capacity().unwrap();
    let set = pair.set_capacity(256 * 1024).unwrap();
    assert!(set >= 256 * 1024);
    let e = pair.set_capacity(max + 1).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(
        e.to_string().contains(&max.to_string()),
        "the error names the limit: {e}"
    );
    let (r, w) = pipe::pipe().unwrap();
    assert_eq!(w.pipe_capacity().unwrap(), 65536);
    assert_eq!(w.set_pipe_capacity(1 << 20).unwrap(), 1 << 20);
    assert_eq!(r.pipe_capacity().unwrap(), 1 << 20);
}

#[test]
fn in_process_pipe_try_send_keeps_whole_messages() {
    let (mut r, mut w) = PipeBuilder::new().max_msg_size(4096).create().unwrap();
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
    let guard = FifoBuilder::new(&path).mode(0o600).create().unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        FifoBuilder::new(&path)
            .mode(0o600)
            .create()
            .unwrap_err()
            .kind(),
        std::io::ErrorKind::AlreadyExists
    );
    let t = Instant::now();
    let e = FifoBuilder::new(&path)
        .timeout(Duration::from_millis(200))
        .open_writer()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert!(e.to_string().contains("no reader"), "{e}");
    assert!(t.elapsed() >= Duration::from_millis(200));
    drop(guard);
    assert!(!path.exists(), "dropping the guard removes the FIFO");
    let plain = dir.join(ipckit::registry::unique_name("not-a-fifo"));
    std::fs::write(&plain, b"x").unwrap();
    assert_eq!(
        FifoBuilder::new(&plain).open_reader().unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
    std::fs::remove_file(&plain).unwrap();
}

#[test]
fn line_framing_speaks_plain_text() {
    let (mut r, mut w) = pipe::pipe().unwrap();
    r.set_framing(ipckit::framing::Framing::Line);
    w.set_framing(ipckit::framing::Framing::Line);
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

#[test]
fn open_refuses_descriptors_it_does_not_own() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let kind = |addr: &str| PipeBuilder::new().open(addr).unwrap_err().kind();
    assert_eq!(kind("fd:5,5"), std::io::ErrorKind::InvalidInput);
    assert_eq!(kind("fd:0,1"), std::io::ErrorKind::InvalidInput);
    assert_eq!(kind("fd:100000,100001"), std::io::ErrorKind::InvalidInput);

    // A descriptor a File owns is close-on-exec, so it was not inherited: refused, not closed.
    let mut f = std::fs::File::open("/dev/null").unwrap();
    let n = f.as_raw_fd();
    assert_eq!(
        kind(&format!("fd:{n},{n}")),
        std::io::ErrorKind::InvalidInput
    );
    let other = std::fs::File::open("/dev/null").unwrap();
    let e = PipeBuilder::new()
        .open(&format!("fd:{n},{}", other.as_raw_fd()))
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains(&n.to_string()), "{e}");
    let mut buf = [0u8; 8];
    assert_eq!(
        f.read(&mut buf).unwrap(),
        0,
        "the File still owns a working descriptor"
    );
    assert!(f.metadata().is_ok());

    // The child's ends of a PipePair are still owned here (close-on-exec until the fork).
    let pair = PipeBuilder::new().create_pair().unwrap();
    assert_eq!(kind(&pair.address()), std::io::ErrorKind::InvalidInput);
    drop(pair);
}

#[test]
fn fifo_open_refuses_links_and_other_users_modes() {
    let dir = util::init();
    let path = dir.join(ipckit::registry::unique_name("fifo-rules"));
    let guard = FifoBuilder::new(&path).mode(0o600).create().unwrap();
    assert!(std::path::Path::new(guard.name()).is_absolute());

    // A symbolic link to our own FIFO is not followed.
    let link = dir.join(ipckit::registry::unique_name("fifo-link"));
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let e = FifoBuilder::new(&link).open_reader().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert_eq!(
        FifoBuilder::new(&link)
            .allow_other_users(true)
            .open_reader()
            .unwrap_err()
            .kind(),
        std::io::ErrorKind::InvalidInput
    );
    std::fs::remove_file(&link).unwrap();

    // Open to the group: refused unless the caller opts in.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).unwrap();
    let e = FifoBuilder::new(&path).open_reader().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(
        e.to_string().contains("660"),
        "the error names the mode: {e}"
    );
    let r = FifoBuilder::new(&path)
        .allow_other_users(true)
        .open_reader()
        .unwrap();
    assert_eq!(
        FifoBuilder::new(&path)
            .timeout(Duration::from_millis(50))
            .open_writer()
            .unwrap_err()
            .kind(),
        std::io::ErrorKind::PermissionDenied
    );
    drop(
        FifoBuilder::new(&path)
            .timeout(Duration::from_millis(50))
            .allow_other_users(true)
            .open_writer()
            .unwrap(),
    );
    drop(r);

    // Back to 0600; a timeout too large for the clock means no deadline, not a panic.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = FifoBuilder::new(&path).open_reader().unwrap();
    drop(
        FifoBuilder::new(&path)
            .timeout(Duration::MAX)
            .open_writer()
            .unwrap(),
    );
    drop(r);
    drop(guard);
    assert!(!path.exists());
}

#[test]
fn a_frame_cut_by_a_deadline_resumes_whole() {
    let (mut r, mut w) = pipe::pipe().unwrap();
    let msg = util::payload(3, 200_000);
    // The pipe holds 64 KiB: try_send writes part and keeps the rest pending.
    w.try_send(&msg).unwrap();
    let mut buf = vec![0u8; r.max_msg_size()];
    // Mid-frame, a try_recv must not block and must not hand out a partial message.
    assert!(matches!(
        r.try_recv(&mut buf),
        Err(ipckit::RecvError::Empty)
    ));
    assert!(matches!(
        r.recv_timeout(&mut buf, Duration::from_millis(20)),
        Err(ipckit::RecvError::Timeout)
    ));
    let t = std::thread::spawn(move || {
        w.flush().unwrap();
        w
    });
    let n = r.recv_timeout(&mut buf, Duration::from_secs(5)).unwrap();
    assert_eq!(n, msg.len());
    assert!(
        buf[..n] == msg[..],
        "the resumed frame is the whole message"
    );
    drop(t.join().unwrap());
}

#[test]
fn receiving_while_a_send_is_pending_cannot_deadlock() {
    // Both ends of one duplex stream have a large message half-sent (try_send keeps the rest
    // pending) and then both wait to receive: each receive must keep flushing its own rest
    // while it waits, or each would wait for the other forever.
    use ipckit::connect::ChannelBuilder;
    util::init();
    let mut server = ChannelBuilder::new(ipckit::Mechanism::Uds)
        .create()
        .unwrap();
    let addr = server.address();
    let msg = util::payload(9, 900_000);
    let m2 = msg.clone();
    let t = std::thread::spawn(move || {
        let mut b = ChannelBuilder::new(ipckit::Mechanism::Uds)
            .open(&addr)
            .unwrap();
        b.try_send(&m2).unwrap();
        let mut buf = vec![0u8; b.max_msg_size()];
        let n = b.recv_timeout(&mut buf, Duration::from_secs(10)).unwrap();
        assert!(buf[..n] == m2[..]);
    });
    let mut a = server.accept_timeout(Duration::from_secs(10)).unwrap();
    a.try_send(&msg).unwrap();
    let mut buf = vec![0u8; a.max_msg_size()];
    let n = a.recv_timeout(&mut buf, Duration::from_secs(10)).unwrap();
    assert!(buf[..n] == msg[..]);
    // Whatever of a's message is still pending goes out with a's next call, or its drop.
    drop(a);
    t.join().unwrap();
}

#[test]
fn fifo_client_sees_a_server_that_died_before_accepting() {
    use ipckit::connect::ChannelBuilder;
    util::init();
    let server = ChannelBuilder::new(ipckit::Mechanism::Fifo)
        .create()
        .unwrap();
    let mut client = ChannelBuilder::new(ipckit::Mechanism::Fifo)
        .open(&server.address())
        .unwrap();
    drop(server); // never accepted: its read end of the client's FIFO closes
    let mut buf = vec![0u8; client.max_msg_size()];
    let t = Instant::now();
    assert!(matches!(
        client.recv_timeout(&mut buf, Duration::from_secs(5)),
        Err(ipckit::RecvError::PeerGone)
    ));
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "seen through POLLERR, not the timeout"
    );
}
