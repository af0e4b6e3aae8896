//! The Unix listener tests' peers (run by `tests/peers/bin.rs`, sometimes as another uid).

// Half of this module is the test's, half the peer binary's; each build uses its own half.
#![allow(dead_code)]

use crate::util;
use ipckit::connect::ChannelBuilder;
use ipckit::unix::ListenerBuilder;
use ipckit::{Mechanism, RecvError};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

/// Bytes the client sends.
pub const PAYLOAD: usize = 64;
/// Marks the peers' report lines among what the test harness prints.
pub const MARK: &str = "@@ ";

/// Runs peer `role` at `$ADDR`.
pub fn run(role: &str) {
    let addr = std::env::var("ADDR").unwrap();
    let out = |s: String| {
        let mut o = std::io::stdout().lock();
        writeln!(o, "{MARK}{s}").unwrap();
        o.flush().unwrap();
    };
    match role {
        // Connects (accepting a listener of any uid), sends PAYLOAD bytes, says so, waits for
        // a line on stdin, then reports what a receive gives: a reply, or how it was closed.
        "client" => {
            let mech: Mechanism = std::env::var("MECH").unwrap().parse().unwrap();
            let opts = ChannelBuilder::new(mech).allow_other_users(true);
            let mut ep = opts.open(&addr).expect("client connect");
            ep.send(&util::payload(1, PAYLOAD)).unwrap();
            // SAFETY: geteuid has no preconditions.
            let uid = unsafe { libc::geteuid() };
            out(format!("sent uid={uid}"));
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            let mut buf = vec![0u8; ep.max_msg_size()];
            match ep.recv_timeout(&mut buf, Duration::from_secs(10)) {
                Ok(n) => out(format!("reply {}", String::from_utf8_lossy(&buf[..n]))),
                Err(RecvError::PeerGone) => out("closed".into()),
                Err(e) => out(format!("error {e}")),
            }
        }
        // Binds a listener at ADDR, says so, and waits to be killed.
        "hold" => {
            let _l = ListenerBuilder::new(addr).create().expect("hold bind");
            out("ready".into());
            std::thread::sleep(Duration::from_secs(60));
        }
        // Binds at ADDR with MODE under UMASK and reports the file's mode.
        "mode" => {
            let umask = u32::from_str_radix(&std::env::var("UMASK").unwrap(), 8).unwrap();
            let mode = u32::from_str_radix(&std::env::var("MODE").unwrap(), 8).unwrap();
            // SAFETY: umask has no preconditions; this process is single-threaded here.
            unsafe { libc::umask(umask as libc::mode_t) };
            let _l = ListenerBuilder::new(&addr).mode(mode).create().unwrap();
            let m = std::fs::symlink_metadata(&addr).unwrap().mode() & 0o7777;
            out(format!("{m:o}"));
        }
        r => panic!("unknown role {r}"),
    }
    std::process::exit(0);
}
