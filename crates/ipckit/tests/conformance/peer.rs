//! The conformance suite's peers (run by `tests/peers/bin.rs`) and the pair machinery both
//! sides use: the fd check runs whole pairs inside a peer.

// Half of this module is the test's, half the peer binary's; each build uses its own half.
#![allow(dead_code)]

use crate::util::{self, init, payload, peer_command, KillOnDrop};
use ipckit::connect::ChannelBuilder;
use ipckit::mq::posix::PosixMqBuilder;
use ipckit::mq::sysv::{self, SysvMqBuilder};
use ipckit::{Mechanism, RecvError, Transport, Wait};
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs peer `role`; the process exits with the role's verdict.
pub fn run(role: &str) {
    if role == "fdcheck" {
        fdcheck();
    }
    let mech: Mechanism = std::env::var("MECH").unwrap().parse().unwrap();
    let addr = std::env::var("ADDR").unwrap();
    let wait = Wait::parse(&std::env::var("WAIT").unwrap_or_else(|_| "block".into())).unwrap();
    let opts = ChannelBuilder::new(mech).wait(wait);
    let code = match role {
        "echo" => {
            let before = ipckit::process::count_open_fds().unwrap();
            {
                let mut ep = opts.open(&addr).expect("peer connect");
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
            let after = ipckit::process::count_open_fds().unwrap();
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
            let mut ep = opts.open(&addr).expect("peer connect");
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
            let _ep = opts.open(&addr).expect("peer connect");
            std::thread::sleep(Duration::from_secs(60));
            0
        }
        other => panic!("unknown role {other}"),
    };
    std::process::exit(code);
}

pub struct Pair {
    pub ep: Box<dyn Transport>,
    pub child: KillOnDrop,
    pub address: String,
}

pub fn start(mech: Mechanism, role: &str, wait: Wait) -> Pair {
    init();
    let mut server = ChannelBuilder::new(mech)
        .wait(wait)
        .create()
        .expect("server create");
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
    let ep = server
        .accept_timeout(Duration::from_secs(10))
        .expect("accept");
    Pair { ep, child, address }
}

/// After the endpoint is dropped, nothing of this pair may remain.
pub fn assert_gone(mech: Mechanism, address: &str) {
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
                let e = PosixMqBuilder::new(&n)
                    .open()
                    .expect_err("queue left behind");
                assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{n}: {e}");
            }
        }
        Mechanism::MqSysv => {
            let k = sysv::parse_key(address).unwrap();
            for key in [k, k + 1] {
                let e = SysvMqBuilder::new(key)
                    .open()
                    .expect_err("System V queue left behind");
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

pub fn finish(pair: Pair, mech: Mechanism) {
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

pub fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
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

/// The server half of the fd check, run in a child, where no other thread opens or closes
/// descriptors meanwhile.
fn fdcheck() -> ! {
    let mech: Mechanism = std::env::var("MECH").unwrap().parse().unwrap();
    let before = ipckit::process::count_open_fds().unwrap();
    for _ in 0..3 {
        let mut pair = start(mech, "echo", Wait::Block);
        let mut buf = vec![0u8; pair.ep.max_msg_size()];
        pair.ep.send(b"x").unwrap();
        pair.ep.recv(&mut buf).unwrap();
        finish(pair, mech);
    }
    let after = ipckit::process::count_open_fds().unwrap();
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
