//! Unix sockets by path and in the abstract namespace, TCP and UDP on IPv4 and IPv6
//! loopback, and the one-way receiver/sender endpoints the CLI uses.

#[path = "../util/mod.rs"]
mod util;

use ipckit::connect::{ChannelBuilder, Receiver};
use ipckit::Mechanism;
use std::time::Duration;

fn in_thread_pair(mech: Mechanism, addr: &str) {
    util::init();
    let mut server = ChannelBuilder::new(mech).create_at(addr).unwrap();
    let a = server.address();
    let t = std::thread::spawn(move || {
        let mut c = ChannelBuilder::new(mech).open(&a).unwrap();
        c.send(b"hello").unwrap();
        let mut b = vec![0u8; c.max_msg_size()];
        let n = c.recv(&mut b).unwrap();
        assert_eq!(&b[..n], b"world");
    });
    let mut s = server.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut b = vec![0u8; s.max_msg_size()];
    let n = s.recv(&mut b).unwrap();
    assert_eq!(&b[..n], b"hello");
    s.send(b"world").unwrap();
    t.join().unwrap();
}

#[test]
fn abstract_namespace_stream_dgram_seqpacket() {
    let tag = format!("@ipckit-{}-abs", std::process::id());
    in_thread_pair(Mechanism::Uds, &format!("{tag}-s"));
    in_thread_pair(Mechanism::UdsDgram, &format!("{tag}-d"));
    in_thread_pair(Mechanism::UdsSeqpacket, &format!("{tag}-q"));
}

#[test]
fn tcp_and_udp_on_ipv4_and_ipv6() {
    in_thread_pair(Mechanism::Tcp, "127.0.0.1:0");
    in_thread_pair(Mechanism::Udp, "127.0.0.1:0");
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        in_thread_pair(Mechanism::Tcp, "[::1]:0");
        in_thread_pair(Mechanism::Udp, "[::1]:0");
    }
}

#[test]
fn socket_files_are_owner_only_and_removed() {
    let dir = util::init();
    let path = dir.join(ipckit::registry::unique_name("uds-perm"));
    let p = path.to_str().unwrap().to_owned();
    let server = ChannelBuilder::new(Mechanism::Uds).create_at(&p).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let e = ChannelBuilder::new(Mechanism::Uds)
        .create_at(&p)
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    drop(server);
    assert!(!path.exists());
}

#[test]
fn wrong_addresses_and_missing_peers_are_clear_errors() {
    util::init();
    let o = Duration::from_millis(200);
    for (m, a) in [
        (Mechanism::Tcp, "no-port"),
        (Mechanism::Udp, "nohost"),
        (Mechanism::Uds, "@"),
        (Mechanism::MqSysv, "not-a-key"),
        (Mechanism::MqPosix, "no-slash"),
    ] {
        let e = ChannelBuilder::new(m)
            .timeout(o)
            .open_sender(a)
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{m} {a}: {e}");
    }
    let missing = format!("/tmp/ipckit-{}-missing.sock", std::process::id());
    let e = ChannelBuilder::new(Mechanism::Uds)
        .timeout(o)
        .open_sender(&missing)
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    let e = ChannelBuilder::new(Mechanism::Fifo)
        .timeout(o)
        .open_sender(&missing)
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
}

#[test]
fn one_way_datagram_receiver_takes_any_sender() {
    let dir = util::init();
    let path = dir.join(ipckit::registry::unique_name("dgram-rx"));
    let p = path.to_str().unwrap().to_owned();
    let Receiver::Endpoint(mut rx) = ChannelBuilder::new(Mechanism::UdsDgram)
        .create_receiver(&p)
        .unwrap()
    else {
        panic!("datagram receivers are endpoints")
    };
    // A sender's open waits for the receiver to answer its hello: the receiver must be
    // receiving meanwhile.
    let receiver = std::thread::spawn(move || {
        let mut b = vec![0u8; rx.max_msg_size()];
        for i in 0..3u8 {
            let n = rx.recv_timeout(&mut b, Duration::from_secs(10)).unwrap();
            assert_eq!(&b[..n], &[i; 10]);
        }
        assert_eq!(rx.dropped(), 0);
    });
    for i in 0..3u8 {
        let mut tx = ChannelBuilder::new(Mechanism::UdsDgram)
            .open_sender(&p)
            .unwrap();
        tx.send(&[i; 10]).unwrap();
    }
    receiver.join().unwrap();
    assert!(!path.exists());
}

/// A pair listener that finds no peer yet (`try_accept`, an `accept_timeout` that runs out)
/// stays ready for the next try, whatever the mechanism: queues and shared memory included,
/// whose objects pass to the endpoint only once the peer is there.
#[test]
fn a_missed_accept_leaves_the_pair_listener_ready() {
    util::init();
    let _q = util::scarce();
    for mech in [
        Mechanism::MqPosix,
        Mechanism::MqSysv,
        Mechanism::Shm,
        Mechanism::Uds,
        Mechanism::Fifo,
        Mechanism::Tcp,
    ] {
        let mut server = ChannelBuilder::new(mech).create().unwrap();
        let e = server.try_accept().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{mech}: {e}");
        let e = server
            .accept_timeout(Duration::from_millis(30))
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{mech}: {e}");
        let a = server.address();
        let t = std::thread::spawn(move || {
            let mut c = ChannelBuilder::new(mech).open(&a).unwrap();
            c.send(b"late").unwrap();
            let mut b = vec![0u8; c.max_msg_size()];
            let n = c.recv(&mut b).unwrap();
            assert_eq!(&b[..n], b"on time", "{mech}");
        });
        let mut s = server.accept_timeout(Duration::from_secs(10)).unwrap();
        let mut b = vec![0u8; s.max_msg_size()];
        let n = s.recv(&mut b).unwrap();
        assert_eq!(&b[..n], b"late", "{mech}");
        s.send(b"on time").unwrap();
        t.join().unwrap();
        // Accepted: the listener is spent now.
        let e = server.try_accept().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{mech}: {e}");
    }
}
