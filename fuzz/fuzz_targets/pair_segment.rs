//! A ring-pair segment written by a hostile or buggy peer: the pair is created, the fuzzer
//! rewrites words of its segment (the segment header, the pair header with its capacity,
//! maximum, attach state and hellos, both rings' control blocks and data), then a client
//! attaches and both ends send and receive, with more writes between the steps as a live
//! peer would make them. Errors are fine; a panic, an out-of-bounds access or a hang is not.
#![no_main]

use ipckit::shm::{PairBuilder, ShmEndpoint, SEGMENT_HEADER_LEN};
use ipckit::{Deadline, Transport, Wait};
use ipckit_fuzz::{unique_name, Input, SegmentFile};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

/// The pair's layout in the segment file (`shm/pair.rs`): the pair header, the control
/// blocks of ring A (server to client) and ring B, then the two data areas.
const H: u64 = SEGMENT_HEADER_LEN as u64;
const CTL_LEN: u64 = 4096;

fn exercise(ep: &mut ShmEndpoint, inp: &mut Input<'_>, buf: &mut [u8]) {
    match inp.byte() % 4 {
        0 => {
            let _ = ep.try_recv(buf);
        }
        1 => {
            let n = usize::from(inp.u16()) % (ep.max_msg_size() + 2);
            let msg: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let _ = ep.try_send(&msg);
        }
        2 => {
            if let Ok(m) = ep.recv_ref(Deadline::Now) {
                // Copy first, then look (the bytes are the peer's to rewrite).
                let copy = m.to_vec();
                std::hint::black_box(copy);
            }
        }
        _ => {
            let n = usize::from(inp.u16()) % (ep.max_msg_size() + 1);
            if let Ok(mut loan) = ep.loan(n, Deadline::Now) {
                loan.fill(0x5a);
                let keep = usize::from(inp.u16()) % (n + 1);
                loan.commit_len(keep);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let cap = 4096usize << (inp.byte() % 2);
    let name = unique_name("pair");
    let opts = PairBuilder::new(&name)
        .wait([Wait::Spin, Wait::Block][usize::from(inp.byte() % 2)])
        .max_msg_size([64, 1000, cap / 2 - 64][usize::from(inp.byte() % 3)])
        .capacity(cap)
        .populate(false);
    let mut listener = opts.clone().create().expect("create the pair");
    let file = SegmentFile::open(&name);
    let cap = cap as u64;
    let focus = [
        0..64,
        H..H + 128,
        H + 512..H + 512 + 384,
        H + 1024..H + 1024 + 384,
        H + CTL_LEN..H + CTL_LEN + cap,
        H + CTL_LEN + cap..H + CTL_LEN + 2 * cap,
    ];
    for _ in 0..inp.byte() % 8 {
        file.patch(&mut inp, &focus);
    }
    // The listener unlinks the name when it drops, whatever happens below.
    let Ok(mut client) = opts.open() else {
        return;
    };
    let mut server = listener.accept_timeout(Duration::from_millis(20)).ok();
    drop(listener);
    let mut buf = vec![0u8; 1 << 16];
    for _ in 0..64 {
        if inp.is_empty() {
            break;
        }
        match inp.byte() % 4 {
            0 => exercise(&mut client, &mut inp, &mut buf),
            1 => {
                if let Some(s) = server.as_mut() {
                    exercise(s, &mut inp, &mut buf);
                }
            }
            2 => file.patch(&mut inp, &focus),
            _ => {
                // One side closes; the other carries on and must see PeerGone, not a hang.
                server = None;
            }
        }
    }
});
