//! One suite, every transport: the same cases run against each mechanism, each across two
//! real processes (this test binary re-executed as the peer).

#[path = "../util/mod.rs"]
mod util;

use ipckit::connect::{connect, Options, Server};
use ipckit::mq::posix::PosixMq;
use ipckit::mq::sysv::{self, SysvMq};
use ipckit::{Mechanism, RecvError, SendError, Transport, Wait};
use std::process::Command;
use std::time::{Duration, Instant};
use util::{init, payload, peer_command, scarce, watchdog, KillOnDrop, Rng};

/// Largest random message in the integrity run: keeps 10,000 messages quick and within a
/// System V queue's 16 KiB of room when four are in flight.
const RANDOM_MAX: usize = 2048;
const WINDOW: usize = 4;

// ---------------------------------------------------------------------------------------
// The peer side, run in the re-executed binary.

/// Entry point for peer processes; does nothing in a normal test run.
#[test]
fn peer_entry() {
    let Ok(role) = std::env::var(util::ROLE) else {
        return;
    };
    let mech: Mechanism = std::env::var("MECH").unwrap().parse().unwrap();
    let addr = std::env::var("ADDR").unwrap();
    let wait = Wait::parse(&std::env::var("WAIT").unwrap_or_else(|_| "block".into())).unwrap();
    let opts = Options {
        wait,
        ..Options::default()
    };
    let code = match role.as_str() {
        "echo" => {
            let before = ipckit::count_open_fds().unwrap();
            {
                let mut ep = connect(mech, &addr, &opts).expect("peer connect");
                let mut buf = vec![0u8; ep.max_msg_size()];
                loop {
                    match ep.recv(&mut buf) {
                        Ok(n) => {
                            if ep.send(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        Err(RecvError::PeerGone) => break,
                        Err(e) => panic!("peer recv: {e}"),
                    }
                }
            }
            let after = ipckit::count_open_fds().unwrap();
            // A pipe peer adopts two inherited descriptors, which its endpoint closes.
            let inherited = if mech == Mechanism::Pipe { 2 } else { 0 };
            if after + inherited != before {
                eprintln!("fd leak in peer: {before} open before connect, {after} after drop");
                3
            } else {
                0
            }
        }
        "stream" => {
            let mut ep = connect(mech, &addr, &opts).expect("peer connect");
            let mut i = 0u64;
            loop {
                let m = payload(i, 64);
                match ep.send(&m) {
                    Ok(()) => i += 1,
                    Err(_) => break,
                }
            }
            0
        }
        "sleeper" => {
            let _ep = connect(mech, &addr, &opts).expect("peer connect");
            std::thread::sleep(Duration::from_secs(60));
            0
        }
        other => panic!("unknown role {other}"),
    };
    std::process::exit(code);
}

// ---------------------------------------------------------------------------------------
// The cases.

struct Pair {
    ep: Box<dyn Transport>,
    child: KillOnDrop,
    address: String,
}

fn start(mech: Mechanism, role: &str, wait: Wait) -> Pair {
    init();
    let opts = Options {
        wait,
        ..Options::default()
    };
    let server = Server::create(mech, &opts).expect("server create");
    let address = server.address();
    let mut cmd: Command = peer_command(
        role,
        &[
            ("MECH", mech.name().to_owned()),
            ("ADDR", address.clone()),
            ("WAIT", wait.name().to_owned()),
        ],
    );
    server.configure_child(&mut cmd);
    let child = KillOnDrop(cmd.spawn().expect("spawn peer"));
    let ep = server.accept().expect("accept");
    Pair { ep, child, address }
}

/// After the endpoint is dropped, nothing of this pair may remain.
fn assert_gone(mech: Mechanism, address: &str) {
    match mech {
        Mechanism::Fifo => {
            for ext in ["c2s", "s2c"] {
                let p = format!("{address}.{ext}");
                assert!(!std::path::Path::new(&p).exists(), "{p} left behind");
            }
        }
        Mechanism::Uds | Mechanism::UdsDgram | Mechanism::UdsSeqpacket => {
            assert!(
                !std::path::Path::new(address).exists(),
                "{address} left behind"
            );
        }
        Mechanism::MqPosix => {
            for ext in ["c2s", "s2c"] {
                let n = format!("{address}.{ext}");
                let e = PosixMq::open(&n, Wait::Block).expect_err("queue left behind");
                assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{n}: {e}");
            }
        }
        Mechanism::MqSysv => {
            let k = sysv::parse_key(address).unwrap();
            for key in [k, k + 1] {
                let e = SysvMq::open(key, Wait::Block).expect_err("System V queue left behind");
                assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
            }
        }
        Mechanism::Shm => {
            let p = format!("/dev/shm/{}", address.trim_start_matches('/'));
            assert!(!std::path::Path::new(&p).exists(), "{p} left behind");
        }
        _ => {}
    }
    let recs: Vec<_> = ipckit::registry::list()
        .unwrap()
        .into_iter()
        .filter(|e| e.record.name.starts_with(address) || address.contains(&e.record.name))
        .collect();
    assert!(recs.is_empty(), "registry records left behind: {recs:?}");
}

fn finish(pair: Pair, mech: Mechanism) {
    let Pair {
        ep,
        mut child,
        address,
    } = pair;
    drop(ep);
    let status = wait_exit(&mut child.0, Duration::from_secs(5));
    assert_eq!(
        status,
        Some(0),
        "peer exited badly (3 = fd leak in the peer)"
    );
    assert_gone(mech, &address);
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if t.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

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
    cmd.env(util::ROLE, "fdcheck");
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{mech}: fd check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The server half of the fd check, run in a child.
#[test]
fn fdcheck_entry() {
    if std::env::var(util::ROLE).as_deref() != Ok("fdcheck") {
        return;
    }
    let mech: Mechanism = std::env::var("MECH").unwrap().parse().unwrap();
    let before = ipckit::count_open_fds().unwrap();
    for _ in 0..3 {
        let mut pair = start(mech, "echo", Wait::Block);
        let mut buf = vec![0u8; pair.ep.max_msg_size()];
        pair.ep.send(b"x").unwrap();
        pair.ep.recv(&mut buf).unwrap();
        finish(pair, mech);
    }
    let after = ipckit::count_open_fds().unwrap();
    if before != after {
        eprintln!("fd leak: {before} open before, {after} after three pairs");
        std::process::exit(3);
    }
    // Nothing named with this run's prefix and this process's pid is left in the temp dir.
    let mine = format!("-{}-", std::process::id());
    let left: Vec<String> = util::leftover_files()
        .into_iter()
        .filter(|n| n.contains(&mine))
        .collect();
    if !left.is_empty() {
        eprintln!("left behind: {left:?}");
        std::process::exit(4);
    }
    std::process::exit(0);
}

macro_rules! suite {
    ($($modname:ident => $mech:expr),* $(,)?) => {$(
        mod $modname {
            use super::*;
            #[test]
            fn order_and_integrity_10k() {
                if std::env::var(util::ROLE).is_ok() { return; }
                watchdog(120, || integrity($mech, Wait::Block, 10_000));
            }
            #[test]
            fn adaptive_and_spin_waits() {
                if std::env::var(util::ROLE).is_ok() { return; }
                watchdog(60, || {
                    integrity($mech, Wait::ADAPTIVE, 1_000);
                    integrity($mech, Wait::Spin, 1_000);
                });
            }
            #[test]
            fn empty_max_and_over_max() {
                if std::env::var(util::ROLE).is_ok() { return; }
                watchdog(30, || limits($mech));
            }
            #[test]
            fn peer_killed_mid_stream() {
                if std::env::var(util::ROLE).is_ok() { return; }
                watchdog(10, || peer_killed($mech));
            }
            #[test]
            fn peer_killed_while_we_send() {
                if std::env::var(util::ROLE).is_ok() { return; }
                watchdog(10, || peer_killed_while_sending($mech));
            }
            #[test]
            fn no_fd_leak_and_nothing_left() {
                if std::env::var(util::ROLE).is_ok() { return; }
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
