//! The MPSC tests' peers (run by `tests/peers/bin.rs`): producers and a receiver, and the
//! message format both sides check.

// Half of this module is the test's, half the peer binary's; each build uses its own half.
#![allow(dead_code)]

use crate::util::{payload, Rng};
use ipckit::shm::__fuzz::abandon_claim_at;
use ipckit::shm::MpscBuilder;
use ipckit::Wait;
use std::time::Duration;

pub const PRODUCERS: u32 = 4;
pub const PER_PRODUCER: u64 = 20_000;
/// Bytes before a message's payload: producer id and sequence number.
pub const ID_LEN: usize = 12;

pub fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"))
}

pub fn wait_of(s: &str) -> Wait {
    Wait::parse(s).unwrap_or_else(|| panic!("bad wait {s}"))
}

/// Message `seq` of producer `id`, of a length from `rng` (at least the id and sequence).
pub fn message(id: u32, seq: u64, rng: &mut Rng, max: usize) -> Vec<u8> {
    let len = ID_LEN + (rng.next() as usize) % (max - ID_LEN + 1);
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&payload(seq ^ (u64::from(id) << 40), len - ID_LEN));
    m
}

/// Checks a received message and returns its producer id and sequence number.
pub fn check(m: &[u8]) -> (u32, u64) {
    assert!(
        m.len() >= ID_LEN,
        "message of {} bytes is too short",
        m.len()
    );
    let id = u32::from_le_bytes(m[..4].try_into().unwrap());
    let seq = u64::from_le_bytes(m[4..12].try_into().unwrap());
    assert!(
        m[ID_LEN..] == payload(seq ^ (u64::from(id) << 40), m.len() - ID_LEN)[..],
        "payload of message {seq} from producer {id} is corrupt"
    );
    (id, seq)
}

/// Runs peer `role` on the queue named `$NAME`.
pub fn run(role: &str) {
    let name = env("NAME");
    match role {
        "producer" | "endless" => {
            let id: u32 = env("ID").parse().unwrap();
            let count: u64 = if role == "endless" {
                u64::MAX
            } else {
                env("COUNT").parse().unwrap()
            };
            let mut tx = MpscBuilder::new(&name)
                .wait(wait_of(&env("WAIT")))
                .open()
                .expect("open");
            println!("ready");
            if role == "producer" {
                // Start together: the receiver's PeerGone means "all gone" only once every
                // producer has registered.
                let mut go = String::new();
                std::io::stdin().read_line(&mut go).unwrap();
            }
            let mut rng = Rng(0x5eed ^ u64::from(id));
            let max = tx.max_msg_size();
            for seq in 0..count {
                if let Err(e) = tx.send(&message(id, seq, &mut rng, max)) {
                    eprintln!("producer {id}: send {seq}: {e}");
                    std::process::exit(2);
                }
            }
        }
        "abandon" => {
            let mut tx = MpscBuilder::new(&name)
                .wait(Wait::Block)
                .open()
                .expect("open");
            let count: u64 = env("COUNT").parse().unwrap();
            let mut rng = Rng(7);
            for seq in 0..count {
                tx.send(&message(9, seq, &mut rng, tx.max_msg_size()))
                    .unwrap();
            }
            // Stop the next send at STEP (default: claimed, `tail` moved on).
            let step = std::env::var("STEP").unwrap_or_else(|_| "advance".into());
            let m = message(9, count, &mut rng, tx.max_msg_size());
            abandon_claim_at(&mut tx, &step, &m).unwrap();
            println!("claimed");
            std::thread::sleep(Duration::from_secs(60));
        }
        "receiver" => {
            let opts = MpscBuilder::new(&name)
                .slots(env("SLOTS").parse().unwrap())
                .slot_size(64);
            let _rx = opts.create().expect("create");
            println!("ready");
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}
