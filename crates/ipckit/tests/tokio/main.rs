//! `ipckit::tokio` (feature `tokio`): every socket type driven by tokio against a real second
//! process that echoes; a sender and a receiver task on one endpoint and one thread, with
//! messages large enough that a sequential loop would fill both buffers and stop; a peer
//! killed while we wait is `PeerGone`, not a hang; async accept applies the policy.

#[path = "../util/mod.rs"]
mod util;

mod peer;

use ipckit::connect::ChannelBuilder;
use ipckit::tokio::{AsyncEndpoint, AsyncSocket, AsyncUnixListener};
use ipckit::unix::{ListenerBuilder, Policy};
use ipckit::{Mechanism, RecvError, SendError};
use peer::MARK;
use std::io::{BufRead, BufReader, ErrorKind};
use std::process::{ChildStdout, Stdio};
use std::sync::Arc;
use std::time::Duration;
use util::{init, payload, peer_command, watchdog, KillOnDrop};

const SOCKETS: [Mechanism; 5] = [
    Mechanism::Uds,
    Mechanism::UdsDgram,
    Mechanism::UdsSeqpacket,
    Mechanism::Tcp,
    Mechanism::Udp,
];
fn report(r: &mut BufReader<ChildStdout>) -> String {
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

/// A child echoing at a fresh address of `mech`: the child and the address.
fn echo_peer(mech: Mechanism) -> (KillOnDrop, String) {
    init();
    let mut cmd = peer_command("echo", &[("MECH", mech.name().to_owned())]);
    cmd.stdout(Stdio::piped());
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let addr = report(&mut out);
    assert!(!addr.is_empty(), "{mech}: the echo peer printed no address");
    (child, addr)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap()
}

/// Message sizes for `mech`: UDP stays under a datagram; the others go past what one socket
/// buffer holds, so stream sends are written in parts.
fn sizes(mech: Mechanism) -> Vec<usize> {
    if mech == Mechanism::Udp {
        vec![0, 1, 100, 1000, 8000]
    } else {
        vec![0, 1, 100, 4096, 65_536, 300_000, 1 << 20]
    }
}

async fn echo_rounds<T: AsyncSocket>(ep: &AsyncEndpoint<T>, mech: Mechanism) {
    let mut buf = vec![0u8; ep.max_msg_size()];
    for (i, len) in sizes(mech).into_iter().cycle().take(60).enumerate() {
        let len = len.min(ep.max_msg_size());
        let m = payload(i as u64, len);
        ep.send(&m).await.unwrap();
        let n = ep.recv(&mut buf).await.unwrap();
        assert!(
            buf[..n] == m[..],
            "{mech}: message {i} of {len} bytes came back wrong"
        );
    }
}

#[test]
fn echo_across_processes_for_every_socket_type() {
    watchdog(120, || {
        for mech in SOCKETS {
            let (mut child, addr) = echo_peer(mech);
            runtime().block_on(async {
                if mech.is_stream() {
                    let c = ChannelBuilder::new(mech).open_stream(&addr).unwrap();
                    echo_rounds(&AsyncEndpoint::new(c).unwrap(), mech).await;
                } else {
                    let c = ChannelBuilder::new(mech).open_dgram(&addr).unwrap();
                    echo_rounds(&AsyncEndpoint::new(c).unwrap(), mech).await;
                }
            });
            // Our endpoint is gone: the echo peer sees PeerGone and exits cleanly.
            assert!(
                child.0.wait().unwrap().success(),
                "{mech}: echo peer failed"
            );
        }
    });
}

async fn send_while_receiving<T: AsyncSocket + 'static>(ep: AsyncEndpoint<T>, mech: Mechanism) {
    const N: u64 = 200;
    const LEN: usize = 200_000;
    let ep = Arc::new(ep);
    let tx = Arc::clone(&ep);
    let sender = tokio::task::spawn_local(async move {
        for i in 0..N {
            tx.send(&payload(i, LEN)).await.unwrap();
        }
    });
    let mut buf = vec![0u8; ep.max_msg_size()];
    for i in 0..N {
        let n = ep.recv(&mut buf).await.unwrap();
        assert!(buf[..n] == payload(i, LEN)[..], "{mech}: message {i} wrong");
    }
    sender.await.unwrap();
}

/// 200 messages of 200 KB each way through a peer that echoes one at a time: 40 MB that
/// no socket buffer holds, so only a sender and a receiver running together get through.
#[test]
fn concurrent_send_and_recv_on_one_runtime() {
    watchdog(120, || {
        for mech in [Mechanism::Uds, Mechanism::UdsSeqpacket, Mechanism::Tcp] {
            let (mut child, addr) = echo_peer(mech);
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime(), async {
                if mech.is_stream() {
                    let c = ChannelBuilder::new(mech).open_stream(&addr).unwrap();
                    send_while_receiving(AsyncEndpoint::new(c).unwrap(), mech).await;
                } else {
                    let c = ChannelBuilder::new(mech).open_dgram(&addr).unwrap();
                    send_while_receiving(AsyncEndpoint::new(c).unwrap(), mech).await;
                }
            });
            assert!(
                child.0.wait().unwrap().success(),
                "{mech}: echo peer failed"
            );
        }
    });
}

async fn outlive<T: AsyncSocket>(ep: AsyncEndpoint<T>, mech: Mechanism, pid: u32) {
    let mut buf = vec![0u8; ep.max_msg_size()];
    ep.send(b"first").await.unwrap();
    assert_eq!(ep.recv(&mut buf).await.unwrap(), 5);
    // Kill the peer while we wait in recv.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let ok = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    });
    let r = ep.recv(&mut buf).await;
    assert!(matches!(r, Err(RecvError::PeerGone)), "{mech}: {r:?}");
    killer.join().unwrap();
    // Sending to it is PeerGone too (streams: EPIPE; datagrams: refused, or the pidfd).
    let mut r = ep.send(b"after").await;
    // TCP takes a write or two before the peer's reset comes back.
    for _ in 0..100 {
        if r.is_err() || mech != Mechanism::Tcp {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        r = ep.send(b"after").await;
    }
    assert!(matches!(r, Err(SendError::PeerGone)), "{mech}: {r:?}");
}

#[test]
fn a_killed_peer_is_peer_gone_not_a_hang() {
    watchdog(120, || {
        for mech in SOCKETS {
            let (mut child, addr) = echo_peer(mech);
            let pid = child.0.id();
            runtime().block_on(async {
                if mech.is_stream() {
                    let c = ChannelBuilder::new(mech).open_stream(&addr).unwrap();
                    outlive(AsyncEndpoint::new(c).unwrap(), mech, pid).await;
                } else {
                    let c = ChannelBuilder::new(mech).open_dgram(&addr).unwrap();
                    outlive(AsyncEndpoint::new(c).unwrap(), mech, pid).await;
                }
            });
            let _ = child.0.wait();
            // SIGKILL ran no destructor in the peer: its socket file and record are left, for
            // `clean` to remove, as `ipckit clean` would.
            ipckit::registry::clean(false).unwrap();
            assert!(
                !std::path::Path::new(&addr).exists(),
                "{mech}: {addr} left behind"
            );
        }
    });
}

#[test]
fn async_accept_applies_the_policy() {
    init();
    watchdog(60, || {
        for mech in [Mechanism::Uds, Mechanism::UdsSeqpacket] {
            let seq = mech == Mechanism::UdsSeqpacket;
            let addr = format!("@{}", ipckit::registry::unique_name("tokio-accept"));
            let spawn_client = || {
                let mut cmd = peer_command(
                    "client",
                    &[("MECH", mech.name().to_owned()), ("ADDR", addr.clone())],
                );
                cmd.stdout(Stdio::piped());
                let mut child = KillOnDrop(cmd.spawn().unwrap());
                let out = BufReader::new(child.0.stdout.take().unwrap());
                (child, out)
            };
            runtime().block_on(async {
                // A policy that leaves us out: the client is refused, unread, and counted.
                let l = AsyncUnixListener::new(
                    ListenerBuilder::new(&addr)
                        .seqpacket(seq)
                        .policy(Policy::uids([u32::MAX - 1]))
                        .create()
                        .unwrap(),
                )
                .unwrap();
                let (mut child, mut out) = spawn_client();
                let e = l.accept_raw().await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
                assert_eq!(l.get_ref().rejected(), 1);
                assert!(report(&mut out).starts_with("error"));
                child.0.wait().unwrap();
                drop(l);

                // Our own uid: accepted and answered.
                let l = AsyncUnixListener::new(
                    ListenerBuilder::new(&addr).seqpacket(seq).create().unwrap(),
                )
                .unwrap();
                let (mut child, mut out) = spawn_client();
                let mut buf = vec![0u8; 64];
                if seq {
                    let ep = l.accept_seqpacket().await.unwrap();
                    let n = ep.recv(&mut buf).await.unwrap();
                    assert_eq!(&buf[..n], b"hello");
                    ep.send(b"hi there").await.unwrap();
                } else {
                    let ep = l.accept_stream().await.unwrap();
                    let n = ep.recv(&mut buf).await.unwrap();
                    assert_eq!(&buf[..n], b"hello");
                    ep.send(b"hi there").await.unwrap();
                }
                assert_eq!(report(&mut out), "reply hi there");
                assert!(child.0.wait().unwrap().success());
            });
        }
    });
}

/// Outside a tokio runtime, registering is an error that says so, not tokio's panic.
#[test]
fn outside_a_runtime_is_an_error_not_a_panic() {
    init();
    let dir = util::init();
    let path = dir.join(ipckit::registry::unique_name("no-rt"));
    let listener = ListenerBuilder::new(path.to_str().unwrap())
        .policy(Policy::same_uid())
        .create()
        .unwrap();
    let e = AsyncUnixListener::new(listener).unwrap_err();
    assert!(e.to_string().contains("tokio runtime"), "{e}");
}
