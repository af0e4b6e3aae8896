//! The ring never invents, loses, reorders or changes a message: issue 13's phantom-record
//! reproduction and a differential test whose payloads are drawn to collide with headers,
//! between two threads and two processes, through the copy and the zero-copy API.

use super::util::{init, peer_command, watchdog, KillOnDrop, Rng};
use ipckit::registry;
use ipckit::shm::__fuzz as ring;
use ipckit::shm::{PairBuilder, ShmEndpoint};
use ipckit::{Deadline, RecvError, SendError, Transport, Wait};
use proptest::prelude::*;
use std::time::Duration;

/// The positions a producer's records start at: they depend only on the sequence of lengths,
/// so the test knows where each message will lie in the ring (both rings of an echo carry the
/// same sequence).
struct Positions {
    pos: u64,
    cap: usize,
}

impl Positions {
    fn next(&mut self, len: usize) -> u64 {
        let (start, end) = ring::place(self.pos, ring::record_len(len), self.cap);
        self.pos = end;
        start
    }
}

/// A payload whose every 64-byte-aligned word (where a later lap may look for a header)
/// holds a header stamped for that offset one to three laps on; the other words are zeroes,
/// all-ones, small integers or random, after `fill`.
fn colliding(start: u64, len: usize, cap: usize, fill: u8, rng: &mut Rng) -> Vec<u8> {
    let base = (start as usize & (cap - 1)) + ring::payload_gap(len);
    let lap = start - (start & (cap as u64 - 1));
    let mut p = vec![0u8; len];
    for (i, c) in p.chunks_mut(8).enumerate() {
        let at = base + i * 8;
        let x = rng.next();
        let w = if at.is_multiple_of(ring::RECORD_ALIGN) {
            ring::header(
                lap + at as u64 + cap as u64 * (1 + x % 3),
                (x >> 8) as u32 % 64,
            )
        } else {
            match fill % 4 {
                0 => 0,
                1 => u64::MAX,
                2 => x % 128,
                _ => x,
            }
        };
        c.copy_from_slice(&w.to_le_bytes()[..c.len()]);
    }
    p
}

fn messages(sizes: &[usize], cap: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed | 1);
    let mut at = Positions { pos: 0, cap };
    sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| colliding(at.next(len), len, cap, i as u8, &mut rng))
        .collect()
}

/// How long the server waits for its echo.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

fn pair_options(name: &str, cap: usize, max: usize) -> PairBuilder {
    PairBuilder::new(name)
        .capacity(cap)
        .max_msg_size(max)
        .wait(Wait::Spin)
}

/// Sends every message to an echo and checks what comes back, up to `window` messages in
/// flight, with the copy or zero-copy API chosen per message; then checks nothing more comes.
fn drive(ep: &mut ShmEndpoint, msgs: &[Vec<u8>], window: usize, seed: u64) {
    let mut rng = Rng(seed | 1);
    let (mut sent, mut got) = (0, 0);
    let mut buf = vec![0u8; ep.max_msg_size()];
    while got < msgs.len() {
        if sent < msgs.len() && sent - got < window {
            let m = &msgs[sent];
            let ok = if rng.next().is_multiple_of(2) {
                match ep.try_send(m) {
                    Ok(()) => true,
                    Err(SendError::Full) => false,
                    Err(e) => panic!("send {sent}: {e}"),
                }
            } else {
                match ep.loan(m.len(), Deadline::Now) {
                    Ok(mut loan) => {
                        loan.copy_from_slice(m);
                        loan.commit();
                        true
                    }
                    Err(SendError::Full) => false,
                    Err(e) => panic!("loan {sent}: {e}"),
                }
            };
            sent += usize::from(ok);
        }
        let back = if rng.next().is_multiple_of(2) {
            match ep.try_recv(&mut buf) {
                Ok(n) => Some(buf[..n].to_vec()),
                Err(RecvError::Empty) => None,
                Err(e) => panic!("recv after {got}: {e}"),
            }
        } else {
            match ep.recv_ref(Deadline::Now) {
                Ok(m) => Some(m.to_vec()),
                Err(RecvError::Empty) => None,
                Err(e) => panic!("recv_ref after {got}: {e}"),
            }
        };
        if let Some(b) = back {
            assert!(
                got < sent,
                "message {got} came back before it was sent: one nobody sent"
            );
            assert!(
                b == msgs[got],
                "message {got} ({} B) came back as a different {}-byte message",
                msgs[got].len(),
                b.len()
            );
            got += 1;
        }
    }
    match ep.recv_timeout(&mut buf, Duration::from_millis(20)) {
        Err(RecvError::Timeout) => {}
        Ok(n) => panic!("a {n}-byte message nobody sent, after all {got}"),
        Err(e) => panic!("after all {got}: {e}"),
    }
}

/// An echo on a thread of this process, through the copy or the zero-copy API.
fn echo_thread(name: String, zero_copy: bool) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut ep = PairBuilder::new(&name).open().unwrap();
        let mut buf = vec![0u8; ep.max_msg_size()];
        loop {
            let n = if zero_copy {
                match ep.recv_ref(Deadline::Never) {
                    Ok(m) => {
                        buf[..m.len()].copy_from_slice(&m);
                        m.len()
                    }
                    Err(RecvError::PeerGone) => return,
                    Err(e) => panic!("echo: {e}"),
                }
            } else {
                match ep.recv(&mut buf) {
                    Ok(n) => n,
                    Err(RecvError::PeerGone) => return,
                    Err(e) => panic!("echo: {e}"),
                }
            };
            match ep.send(&buf[..n]) {
                Ok(()) => {}
                Err(SendError::PeerGone) => return,
                Err(e) => panic!("echo: {e}"),
            }
        }
    })
}

/// Runs `sizes` through a fresh pair with an echo in another thread or process.
fn round_trip(sizes: Vec<usize>, cap: usize, max: usize, window: usize, seed: u64, peer: Peer) {
    watchdog(60, move || {
        init();
        let name = format!("/{}", registry::unique_name("integrity"));
        let mut l = pair_options(&name, cap, max).create().unwrap();
        let msgs = messages(&sizes, cap, seed);
        match peer {
            Peer::Process => {
                let mut child = KillOnDrop(
                    peer_command("zc-echo", &[("NAME", name.clone())])
                        .spawn()
                        .unwrap(),
                );
                let mut ep = l.accept_timeout(ACCEPT_TIMEOUT).unwrap();
                drive(&mut ep, &msgs, window, seed);
                drop(ep);
                let st = child.0.wait().unwrap();
                assert!(st.success(), "the echo process failed: {st}");
            }
            Peer::Thread { zero_copy } => {
                let echo = echo_thread(name.clone(), zero_copy);
                let mut ep = l.accept_timeout(ACCEPT_TIMEOUT).unwrap();
                drive(&mut ep, &msgs, window, seed);
                drop(ep);
                echo.join().expect("the echo thread panicked");
            }
        }
    });
}

#[derive(Debug, Clone, Copy)]
enum Peer {
    Thread { zero_copy: bool },
    Process,
}

/// Issue 13's reproduction, across processes: four 1000-byte messages, then one of 56, through
/// a 4 KiB ring; the first carries the stamp of position 4160 (66) at payload bytes 56..64,
/// where the consumer looks after the fifth. Then the same trap at every size class and
/// across pads at the wrap, in lockstep and in bursts.
#[test]
fn no_phantom_record_across_processes() {
    let mut first = vec![0xab; 1000];
    first[56..64].copy_from_slice(&66u64.to_le_bytes());
    let exact = vec![
        first,
        vec![1; 1000],
        vec![2; 1000],
        vec![3; 1000],
        vec![4; 56],
    ];
    watchdog(60, move || {
        init();
        let name = format!("/{}", registry::unique_name("phantom"));
        let mut l = pair_options(&name, 4096, 1024).create().unwrap();
        let mut child = KillOnDrop(
            peer_command("zc-echo", &[("NAME", name.clone())])
                .spawn()
                .unwrap(),
        );
        let mut ep = l.accept_timeout(ACCEPT_TIMEOUT).unwrap();
        drive(&mut ep, &exact, 1, 1);
        drop(ep);
        assert!(child.0.wait().unwrap().success());
    });
    let max = ring::max_payload(4096);
    for sizes in [
        vec![0, 8, 56, 40, 24, 56, 56],
        vec![57, 100, 500, 1024, 777, 64, 1000],
        vec![1025, 1500, max, 1100, max - 1, 1025],
        vec![1900, 56, 1900, 57, 1900, 1025, 1900, 0],
    ] {
        let all: Vec<usize> = sizes
            .iter()
            .copied()
            .cycle()
            .take(sizes.len() * 30)
            .collect();
        for window in [1, 3] {
            round_trip(all.clone(), 4096, max, window, 7, Peer::Process);
        }
    }
}

fn sizes(max: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![
            0..=56usize,
            57..=1024usize,
            1025..=max,
            Just(max),
            Just(0usize)
        ],
        1..200,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Differential, two threads: random sizes from 0 to the maximum, colliding payloads,
    /// random windows, the copy and zero-copy APIs mixed on both sides.
    #[test]
    fn received_equals_sent_between_threads(
        cap_shift in 12u32..15,
        seed in any::<u64>(),
        window in 1usize..9,
        zero_copy in any::<bool>(),
        sizes in sizes(ring::max_payload(1 << 12)),
    ) {
        let cap = 1usize << cap_shift;
        round_trip(sizes, cap, ring::max_payload(cap), window, seed, Peer::Thread { zero_copy });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Differential, two processes (the peer echoes through the zero-copy API).
    #[test]
    fn received_equals_sent_between_processes(
        cap_shift in 12u32..15,
        seed in any::<u64>(),
        window in 1usize..9,
        sizes in sizes(ring::max_payload(1 << 12)),
    ) {
        let cap = 1usize << cap_shift;
        round_trip(sizes, cap, ring::max_payload(cap), window, seed, Peer::Process);
    }
}
