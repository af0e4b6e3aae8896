//! The pipe tests' peers (run by `tests/peers/bin.rs`): a writer of PIPE_BUF records and a
//! channel child, and the record format both sides check.

// Half of this module is the test's, half the peer binary's; each build uses its own half.
#![allow(dead_code)]

use ipckit::pipe::{ChildChannel, PipeWriter, PIPE_BUF};
use ipckit::{RecvError, Transport};

/// Runs peer `role`.
pub fn run(role: &str) {
    match role {
        "channel" => channel_peer(),
        "atomic-writer" => atomic_writer_peer(),
        other => panic!("unknown role {other}"),
    }
}

pub const RECORDS: u32 = 3000;

/// Fills a record: writer id, sequence number, then a byte pattern of both.
pub fn record(id: u32, seq: u32) -> [u8; PIPE_BUF] {
    let mut r = [0u8; PIPE_BUF];
    r[..4].copy_from_slice(&id.to_le_bytes());
    r[4..8].copy_from_slice(&seq.to_le_bytes());
    let fill = (id * 61 + seq) as u8;
    r[8..].fill(fill);
    r
}

/// A writer process: `RECORDS` writes of exactly PIPE_BUF bytes into the inherited pipe.
fn atomic_writer_peer() {
    let fd: i32 = std::env::var("FD").unwrap().parse().unwrap();
    let id: u32 = std::env::var("ID").unwrap().parse().unwrap();
    let mut w = PipeWriter::from_inherited(fd).unwrap();
    for seq in 0..RECORDS {
        w.write_atomic(&record(id, seq)).unwrap();
    }
}

/// The child: lists its open descriptors before it opens anything else, sends the list over
/// the channel, then echoes until the parent closes its end.
fn channel_peer() {
    let fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let target = std::fs::read_link(e.path()).ok()?;
            Some(format!(
                "{}={}",
                e.file_name().to_str().unwrap(),
                target.display()
            ))
        })
        // The directory handle of this very listing is an entry too.
        .filter(|l| !(l.contains("=/proc/") && l.ends_with("/fd")))
        .collect();
    let mut ch = ChildChannel::new().open_from_env().unwrap();
    ch.send(fds.join("\n").as_bytes()).unwrap();
    let mut buf = vec![0u8; ch.max_msg_size()];
    loop {
        match ch.recv(&mut buf) {
            Ok(n) => ch.send(&buf[..n]).unwrap(),
            Err(RecvError::PeerGone) => std::process::exit(0),
            Err(e) => panic!("{e}"),
        }
    }
}
