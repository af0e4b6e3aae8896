//! One suite, every transport: the same cases run against each mechanism, each across two
//! real processes (`peer.rs`, run by the peer binary).

#[path = "../util/mod.rs"]
mod util;

mod peer;

use ipckit::{Mechanism, RecvError, SendError, Transport, Wait};
use peer::{assert_gone, finish, start, Pair};
use std::process::Command;
use std::time::{Duration, Instant};
use util::{init, payload, peer_command, scarce, watchdog, Rng};

/// Largest random message in the integrity run: keeps 10,000 messages quick and within a
/// System V queue's 16 KiB of room when four are in flight.
const RANDOM_MAX: usize = 2048;
const WINDOW: usize = 4;

// ---------------------------------------------------------------------------------------
// The cases.

/// 10,000 messages of random sizes, echoed, in windows of four: every one comes back whole
/// and in order (UDP: whole, with losses counted).
fn integrity(mech: Mechanism, wait: Wait, count: u64) {
    let _serial = (mech == Mechanism::MqPosix || wait.spins()).then(scarce);
    let mut pair = start(mech, "echo", wait);
    let max = pair.ep.max_msg_size();
    let top = max.min(RANDOM_MAX);
    let mut rng = Rng(0x1234_5678 ^ mech as u64);
    let mut buf = vec![0u8; max];
    let mut lost = 0u64;
    let mut i = 0u64;
    while i < count {
        let batch: Vec<(u64, usize)> = (0..WINDOW as u64)
            .map(|k| {
                let n = i + k;
                // Every 1000th message is the largest the mechanism takes (alone in flight for
                // queues with little room), and a few are empty.
                let len = if n % 1000 == 999 {
                    max.min(64 * 1024)
                } else if n.is_multiple_of(97) {
                    0
                } else {
                    rng.next() as usize % (top + 1)
                };
                (n, len)
            })
            .filter(|(n, _)| *n < count)
            .collect();
        let big = batch.iter().any(|(_, l)| *l > top);
        let batch = if big { batch[..1].to_vec() } else { batch };
        for (n, len) in &batch {
            pair.ep
                .send(&payload(*n, *len))
                .unwrap_or_else(|e| panic!("{mech}: send #{n}: {e}"));
        }
        for (n, len) in &batch {
            let r = if mech.is_lossy() {
                pair.ep.recv_timeout(&mut buf, Duration::from_millis(500))
            } else {
                pair.ep.recv(&mut buf)
            };
            match r {
                Ok(got) => {
                    assert_eq!(
                        got, *len,
                        "{mech}: message #{n} came back with the wrong length"
                    );
                    assert!(
                        buf[..got] == payload(*n, *len)[..],
                        "{mech}: message #{n} came back corrupted"
                    );
                }
                Err(RecvError::Timeout) if mech.is_lossy() => lost += 1,
                Err(e) => panic!("{mech}: recv #{n}: {e}"),
            }
        }
        i += batch.len() as u64;
    }
    if mech.is_lossy() {
        eprintln!("{mech}: {lost} of {count} lost on loopback");
        assert!(lost < count / 10, "{mech}: lost {lost} of {count}");
    }
    finish(pair, mech);
}

/// Empty and maximum-size messages pass; max + 1 is refused and nothing is sent.
fn limits(mech: Mechanism) {
    let _serial = (mech == Mechanism::MqPosix).then(scarce);
    let mut pair = start(mech, "echo", Wait::Block);
    let max = pair.ep.max_msg_size();
    let mut buf = vec![0u8; max + 1];
    pair.ep.send(b"").unwrap();
    assert_eq!(pair.ep.recv(&mut buf).unwrap(), 0, "{mech}: empty message");
    let big = payload(7, max);
    pair.ep
        .send(&big)
        .unwrap_or_else(|e| panic!("{mech}: max-size send ({max}): {e}"));
    let n = pair.ep.recv(&mut buf).unwrap();
    assert_eq!(n, max);
    assert!(buf[..n] == big[..], "{mech}: max-size message corrupted");
    match pair.ep.send(&payload(8, max + 1)) {
        Err(SendError::TooLarge { len, max: m }) => assert_eq!((len, m), (max + 1, max)),
        other => panic!("{mech}: max + 1 should be refused, got {other:?}"),
    }
    // Nothing of the refused message went out: the next message is the next thing back.
    pair.ep.send(b"after").unwrap();
    let n = pair.ep.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"after");
    // try_recv on an empty channel says so instead of waiting.
    assert!(matches!(pair.ep.try_recv(&mut buf), Err(RecvError::Empty)));
    assert!(matches!(
        pair.ep.recv_timeout(&mut buf, Duration::from_millis(20)),
        Err(RecvError::Timeout)
    ));
    finish(pair, mech);
}

/// A peer killed mid-stream: the survivor drains what was sent and then gets `PeerGone`,
/// never a hang. Prints the detection time.
fn peer_killed(mech: Mechanism) {
    let _serial = (mech == Mechanism::MqPosix).then(scarce);
    let mut pair = start(mech, "stream", Wait::Block);
    let mut buf = vec![0u8; pair.ep.max_msg_size()];
    for _ in 0..100 {
        pair.ep.recv(&mut buf).unwrap();
    }
    let pid = pair.child.0.id() as i32;
    let t0 = Instant::now();
    // SIGKILL: no destructor runs in the peer.
    assert_eq!(
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .code(),
        Some(0)
    );
    let mut drained = 0u64;
    let detected = loop {
        match pair.ep.recv(&mut buf) {
            Ok(_) => drained += 1,
            Err(RecvError::PeerGone) => break t0.elapsed(),
            Err(RecvError::Timeout) => unreachable!(),
            Err(e) if mech.is_lossy() => panic!("{mech}: {e}"),
            Err(e) => panic!("{mech}: expected PeerGone, got {e}"),
        }
    };
    eprintln!(
        "DETECTION {mech}: peer death seen after {:.2} ms (drained {drained} messages first)",
        detected.as_secs_f64() * 1e3
    );
    let _ = pair.child.0.wait();
    let Pair { ep, address, .. } = pair;
    drop(ep);
    assert_gone(mech, &address);
}

/// A peer killed while we are blocked sending to it (its buffer or queue full): the send
/// fails with `PeerGone` instead of blocking forever.
fn peer_killed_while_sending(mech: Mechanism) {
    let _serial = (mech == Mechanism::MqPosix).then(scarce);
    let mut pair = start(mech, "sleeper", Wait::Block);
    let msg = payload(1, pair.ep.max_msg_size().min(1024));
    if !mech.is_lossy() {
        // Fill whatever buffer or queue sits between us.
        loop {
            match pair.ep.try_send(&msg) {
                Ok(()) => {}
                Err(SendError::Full) => break,
                Err(e) => panic!("{mech}: filling: {e}"),
            }
        }
    }
    let pid = pair.child.0.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        Instant::now()
    });
    let mut tries = 0u32;
    loop {
        match pair.ep.send(&msg) {
            // UDP sends never block; the peer's death shows up through ICMP or its pidfd.
            Ok(()) if mech.is_lossy() => {
                tries += 1;
                assert!(
                    tries < 10_000,
                    "{mech}: sends to a dead peer kept succeeding"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(()) => {}
            Err(SendError::PeerGone) => break,
            Err(e) => panic!("{mech}: expected PeerGone, got {e}"),
        }
    }
    let killed_at = killer.join().unwrap();
    eprintln!(
        "SEND-DETECTION {mech}: {:.2} ms after the kill",
        killed_at.elapsed().as_secs_f64() * 1e3
    );
    let _ = pair.child.0.wait();
    let Pair { ep, address, .. } = pair;
    drop(ep);
    assert_gone(mech, &address);
}

/// No descriptor leaks on the server side: checked in a child process, where no other test
/// thread opens or closes descriptors meanwhile.
fn no_fd_leak(mech: Mechanism) {
    let _serial = (mech == Mechanism::MqPosix).then(scarce);
    init();
    let mut cmd = peer_command(
        "fdcheck",
        &[("MECH", mech.name().to_owned()), ("ADDR", String::new())],
    );
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{mech}: fd check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

macro_rules! suite {
    ($($modname:ident => $mech:expr),* $(,)?) => {$(
        mod $modname {
            use super::*;
            #[test]
            fn order_and_integrity_10k() {
                watchdog(120, || integrity($mech, Wait::Block, 10_000));
            }
            #[test]
            fn adaptive_and_spin_waits() {
                watchdog(60, || {
                    integrity($mech, Wait::ADAPTIVE, 1_000);
                    integrity($mech, Wait::Spin, 1_000);
                });
            }
            #[test]
            fn empty_max_and_over_max() {
                watchdog(30, || limits($mech));
            }
            #[test]
            fn peer_killed_mid_stream() {
                watchdog(10, || peer_killed($mech));
            }
            #[test]
            fn peer_killed_while_we_send() {
                watchdog(10, || peer_killed_while_sending($mech));
            }
            #[test]
            fn no_fd_leak_and_nothing_left() {
                watchdog(60, || no_fd_leak($mech));
            }
        }
    )*};
}

suite! {
    pipe => Mechanism::Pipe,
    fifo => Mechanism::Fifo,
    uds => Mechanism::Uds,
    uds_dgram => Mechanism::UdsDgram,
    uds_seqpacket => Mechanism::UdsSeqpacket,
    tcp => Mechanism::Tcp,
    udp => Mechanism::Udp,
    mq_posix => Mechanism::MqPosix,
    mq_sysv => Mechanism::MqSysv,
    shm => Mechanism::Shm,
}
