//! The tokio tests' peers (run by `tests/peers/bin.rs`): blocking ipckit, no tokio.

// Half of this module is the test's, half the peer binary's; each build uses its own half.
#![allow(dead_code)]

use ipckit::connect::ChannelBuilder;
use ipckit::{Mechanism, RecvError};
use std::io::Write;

pub const MARK: &str = "@@ ";

/// Runs peer `role` over `$MECH`.
pub fn run(role: &str) {
    let mech: Mechanism = std::env::var("MECH").unwrap().parse().unwrap();
    let say = |s: &str| {
        let mut o = std::io::stdout().lock();
        writeln!(o, "{MARK}{s}").unwrap();
        o.flush().unwrap();
    };
    match role {
        // Creates a server, prints its address, echoes every message until the peer goes.
        "echo" => {
            let mut server = ChannelBuilder::new(mech).create().unwrap();
            say(&server.address());
            let mut ep = server
                .accept_timeout(std::time::Duration::from_secs(10))
                .unwrap();
            let mut buf = vec![0u8; ep.max_msg_size()];
            loop {
                match ep.recv(&mut buf) {
                    Ok(n) => {
                        if ep.send(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(RecvError::PeerGone) => break,
                    Err(e) => panic!("echo recv: {e}"),
                }
            }
        }
        // Connects to ADDR, sends "hello", prints the reply.
        "client" => {
            let addr = std::env::var("ADDR").unwrap();
            let mut ep = ChannelBuilder::new(mech).open(&addr).unwrap();
            let mut buf = vec![0u8; ep.max_msg_size()];
            // A refused client may already be closed when it sends.
            match ep.send(b"hello") {
                Err(e) => say(&format!("error {e}")),
                Ok(()) => match ep.recv(&mut buf) {
                    Ok(n) => say(&format!("reply {}", String::from_utf8_lossy(&buf[..n]))),
                    Err(e) => say(&format!("error {e}")),
                },
            }
        }
        r => panic!("unknown role {r}"),
    }
    std::process::exit(0);
}
