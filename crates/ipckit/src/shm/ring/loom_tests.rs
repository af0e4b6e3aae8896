//! Model checking of the ring protocol: every interleaving (up to the preemption bound) of a
//! producer and a consumer thread over a model of the shared memory in which every payload
//! word is a relaxed atomic, so a missing `Acquire`/`Release` shows up as a stale word; and,
//! with loom's model of the futex (`sync.rs`), the sleep handshake of [`wake`] and
//! `wait::wait_on` under every wait strategy on both sides.
//! Run by `.ci/loom` (`RUSTFLAGS="--cfg ipckit_loom" cargo test --lib loom`).

use super::*;
use crate::shm::wait::wait_on;
use crate::wait::{Deadline, Wait};
use crate::{RecvError, SendError};
use loom::sync::Arc;
use std::time::Duration;

/// Checks `f` with at most `cap` preemptions, or `LOOM_MAX_PREEMPTIONS` if lower. The
/// whole-payload model runs at 4 (a few seconds), the six handshakes at 3: 5 s together
/// on two busy cores, against 50 s at 4, and each fails at 3 when the fence of `wake`
/// or of `wait_on`, or the sleeper's re-check or re-announcement, is taken away.
fn model(cap: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(b.preemption_bound.map_or(cap, |p| p.min(cap)));
    b.check(f);
}

fn msg(i: usize) -> Vec<u8> {
    // Lengths that take one, two and three lines, the last forcing a wrap (a pad record)
    // in a 512-byte ring.
    let len = [8, 72, 16, 100, 150][i % 5];
    (0..len).map(|k| (i * 31 + k) as u8).collect()
}

#[test]
fn loom_ring_delivers_in_order_intact() {
    const CAP: usize = 512;
    const N: usize = 5;
    assert!(max_payload(CAP) >= 150);
    model(4, || {
        let mem = Arc::new(HeapMem::new(CAP));
        let m2 = mem.clone();
        let producer = loom::thread::spawn(move || {
            let mut p = Producer::new(CAP);
            for i in 0..N {
                let m = msg(i);
                let start = loop {
                    if let Some(s) = p.reserve(&*m2, m.len()).expect("head in range") {
                        break s;
                    }
                    loom::thread::yield_now();
                };
                m2.write(p.payload_offset(start, m.len()), &m);
                p.commit(&*m2, start, m.len());
            }
        });
        let mut c = Consumer::new(CAP, max_payload(CAP));
        for i in 0..N {
            let f = loop {
                if let Some(f) = c.peek(&*mem).expect("no corrupt header") {
                    break f;
                }
                loom::thread::yield_now();
            };
            let mut got = vec![0u8; f.len];
            mem.read(f.off, &mut got);
            assert_eq!(got, msg(i), "message {i}");
            c.release(&*mem, f.len);
        }
        producer.join().unwrap();
    });
}

/// A spin budget of two spins under loom's logical clock (one µs per clock read).
const ADAPTIVE: Wait = Wait::Adaptive {
    spin: Duration::from_micros(2),
};

/// The sleep handshake: a producer sends `HANDSHAKE_MSGS` messages of the largest size a
/// 256-byte ring carries (two lines each, so with the line of slack the ring holds one)
/// and waits for space, while the consumer waits for data, each the way an endpoint does
/// (the fast attempt, then `wait_on` on its wait line), under the wait strategies `tx`
/// and `rx`. Only a message's first word is written and checked: the handshake, not the
/// copy, is under test (`loom_ring_delivers_in_order_intact` checks whole payloads). A
/// lost wake-up leaves a side asleep for good: loom reports a deadlock, or a spinning
/// peer runs out of branches. `may_sleep` is set before the threads start, as `connect`
/// does, so no timed transition nap is armed (and loom's futex never times out).
fn handshake(tx: Wait, rx: Wait, bound: usize) {
    const CAP: usize = 256;
    const LEN: usize = 64;
    assert_eq!(max_payload(CAP), LEN);
    model(bound, move || {
        let mem = Arc::new(HeapMem::new(CAP));
        let sleeps = |w: Wait| u32::from(w != Wait::Spin);
        mem.ctl.tx.may_sleep.store(sleeps(tx), Ordering::Relaxed);
        mem.ctl.rx.may_sleep.store(sleeps(rx), Ordering::Relaxed);
        let m2 = mem.clone();
        let producer = loom::thread::spawn(move || {
            let m = &*m2;
            let mut p = Producer::new(CAP);
            for i in 0..HANDSHAKE_MSGS {
                let start = match p.reserve(m, LEN).expect("head in range") {
                    Some(s) => s,
                    None => wait_on(tx, Deadline::Never, &m.ctl.tx, &mut None, None, |_| {
                        Ok::<_, SendError>(p.reserve(m, LEN).expect("head in range"))
                    })
                    .expect("no error"),
                };
                m.write(p.payload_offset(start, LEN), &(i as u64).to_le_bytes());
                p.commit(m, start, LEN);
            }
        });
        let m = &*mem;
        let mut c = Consumer::new(CAP, LEN);
        for i in 0..HANDSHAKE_MSGS {
            let peek = |c: &mut Consumer| c.peek(m).expect("no corrupt header");
            let f = match peek(&mut c) {
                Some(f) => f,
                None => wait_on(rx, Deadline::Never, &m.ctl.rx, &mut None, None, |_| {
                    Ok::<_, RecvError>(peek(&mut c))
                })
                .expect("no error"),
            };
            assert_eq!(f.len, LEN);
            let mut got = [0u8; 8];
            m.read(f.off, &mut got);
            assert_eq!(u64::from_le_bytes(got), i as u64, "message {i}");
            c.release(m, f.len);
        }
        producer.join().unwrap();
    });
}

/// Messages in a handshake model: more than the two-line ring holds.
const HANDSHAKE_MSGS: usize = 3;

#[test]
fn loom_wakeup_block_block() {
    handshake(Wait::Block, Wait::Block, 3);
}

#[test]
fn loom_wakeup_adaptive_adaptive() {
    handshake(ADAPTIVE, ADAPTIVE, 3);
}

#[test]
fn loom_wakeup_spin_block() {
    handshake(Wait::Spin, Wait::Block, 3);
}

#[test]
fn loom_wakeup_block_spin() {
    handshake(Wait::Block, Wait::Spin, 3);
}

#[test]
fn loom_wakeup_adaptive_block() {
    handshake(ADAPTIVE, Wait::Block, 3);
}

#[test]
fn loom_wakeup_block_adaptive() {
    handshake(Wait::Block, ADAPTIVE, 3);
}
