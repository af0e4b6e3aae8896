//! The shared-memory ring's send and receive path, in instructions per message: one process,
//! both ends of a pair, 64 messages sent then 64 received, over and over. Run it under
//! callgrind, which counts instructions exactly where this VM has no hardware counters
//! (`perf` has only software events here); `bench/ring-instructions.sh` runs it at two
//! message counts and prints the difference per message, so set-up costs cancel.
//!
//! `ring_instructions MODE N SIZE`: MODE is `block`, `spin`, `blockzc` or `spinzc` (the pair's
//! wait strategy; `zc` for the zero-copy API, `loan` and `recv_ref`), N messages of SIZE bytes.
//!
//! Instructions are not time, and this is not how the bench measures (two pinned processes):
//! it shows what one change to the path costs, deterministically, where paired timings of
//! a few nanoseconds drown in the VM's noise.

use ipckit::shm::{self, PairOptions, ShmListener};
use ipckit::{Deadline, Transport, Wait};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("block", String::as_str);
    let n: usize = args
        .get(2)
        .map_or(64_000, |s| s.parse().expect("N: a count"));
    let size: usize = args.get(3).map_or(64, |s| s.parse().expect("SIZE: bytes"));
    assert!(size >= 8, "SIZE: at least 8 bytes");
    let wait = if mode.starts_with("spin") {
        Wait::Spin
    } else {
        Wait::Block
    };
    let zero_copy = mode.ends_with("zc");
    let name = format!("/ipckit-ring-instructions-{}", std::process::id());
    let opts = PairOptions {
        wait,
        capacity: Some(1 << 22),
        ..PairOptions::default()
    };
    let listener = ShmListener::create(&name, &opts).expect("create the pair");
    let accept = std::thread::spawn(move || listener.accept().expect("accept"));
    let mut tx = shm::connect(&name, &opts).expect("connect");
    let mut rx = accept.join().expect("the accepting thread");
    let msg = vec![7u8; size];
    let mut buf = vec![0u8; size];
    for _ in 0..n / 64 {
        for _ in 0..64 {
            if zero_copy {
                let mut loan = tx.loan(size, Deadline::Never).expect("loan");
                loan[..8].copy_from_slice(&msg[..8]);
                loan.commit();
            } else {
                tx.send(&msg).expect("send");
            }
        }
        for _ in 0..64 {
            if zero_copy {
                let m = rx.recv_ref(Deadline::Never).expect("recv_ref");
                assert_eq!(m.len(), size);
                buf[..8].copy_from_slice(&m[..8]);
            } else {
                assert_eq!(rx.recv(&mut buf).expect("recv"), size);
            }
        }
    }
}
