//! The shared memory tests' peers (run by `tests/peers/bin.rs`).

use ipckit::registry;
use ipckit::shm::{PairBuilder, SegmentBuilder};
use ipckit::{Deadline, RecvError, Transport};
use std::time::Duration;

/// Runs peer `role` on the segment or pair named `$NAME`.
pub fn run(role: &str) {
    let name = std::env::var("NAME").unwrap_or_default();
    match role {
        // Creates two segments, says their names, and waits to be killed.
        "creator" => {
            let a = SegmentBuilder::new(&format!("/{}", registry::unique_name("orphan-a")))
                .size(4096)
                .create()
                .unwrap()
                .ready();
            let b = SegmentBuilder::new(&format!("/{}", registry::unique_name("orphan-b")))
                .size(4096)
                .create()
                .unwrap()
                .ready();
            println!("{}\n{}\nready", a.name().unwrap(), b.name().unwrap());
            std::thread::sleep(Duration::from_secs(60));
        }
        // Maps a segment and keeps it mapped, with its descriptor closed.
        "mapper" => {
            let seg = SegmentBuilder::new(&name).open().unwrap();
            println!("mapped\nready");
            std::thread::sleep(Duration::from_secs(60));
            drop(seg);
        }
        // Echoes with the zero-copy API: borrow in place, copy into a loan, commit.
        "zc-echo" => {
            let mut ep = PairBuilder::new(&name).open().unwrap();
            let mut tmp = vec![0u8; ep.max_msg_size()];
            loop {
                let n = match ep.recv_ref(Deadline::Never) {
                    Ok(m) => {
                        tmp[..m.len()].copy_from_slice(&m);
                        m.len()
                    }
                    Err(RecvError::PeerGone) => break,
                    Err(e) => panic!("zc-echo: {e}"),
                };
                let mut loan = ep.loan(n, Deadline::Never).unwrap();
                loan.copy_from_slice(&tmp[..n]);
                loan.commit();
            }
        }
        // Attaches and sleeps: never sends.
        "sleeper" => {
            let _ep = PairBuilder::new(&name).open().unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
}
