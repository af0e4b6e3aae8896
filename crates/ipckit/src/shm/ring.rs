//! The SPSC ring: variable-size messages, one producer process, one consumer process.
//!
//! # Layout
//!
//! A ring is a control block ([`RingCtl`]) and a data area of `cap` bytes, `cap` a power of
//! two. Positions are absolute byte counts (`u64`, never wrapping in practice); the offset of
//! position `p` is `p & (cap - 1)`. Only offsets are stored in shared memory, never pointers.
//!
//! Each message is a *record* starting on a 64-byte boundary: an 8-byte header, then the
//! payload, rounded up to 64 bytes ([`record_len`]). A record never wraps: one that would
//! cross the end of the data area is preceded by a *pad* header and written at the start.
//! A message of up to 56 bytes is one cache line with its header.
//!
//! # Protocol
//!
//! The header word is `len << 32 | stamp(pos)`, stored by the producer with `Release` after
//! the payload. The consumer polls the header at its position and takes the record when the
//! stamp matches its position ([`stamp`]); a stale header from the previous lap, or the zeroes
//! of a fresh ring, never match. So the consumer spins on the very line the message arrives
//! in: a small message costs one cache-line transfer, as the floor's ping-pong does.
//!
//! The consumer publishes how far it has read in `head` (`Release`, after reading the
//! payload); the producer reads it (`Acquire`) only when the space it last saw runs out.
//! `head` sits on its own 128-byte line (two lines: the adjacent-line prefetcher pairs them).
//!
//! # Sleeping
//!
//! A side that may sleep (`Adaptive`, `Block`) says so in `may_sleep` of its wait line. The
//! other side, after publishing, checks that flag; only if it is set does it pay a `SeqCst`
//! fence and look at `sleeping`, and wake the sleeper with a futex on `seq`. A spinning peer
//! costs the publisher one load of a line that never changes. See `endpoint.rs` for the
//! sleeper's half of this Dekker handshake.

use super::sync::{fence, AtomicU32, AtomicU64, Ordering};

/// Records start on this boundary.
pub const RECORD_ALIGN: usize = 64;
/// Bytes of a record's header.
pub const RECORD_HEADER: usize = 8;
/// The length that marks a pad record: skip to the start of the data area.
const PAD: u32 = u32::MAX;
/// Smallest data area.
pub const MIN_CAPACITY: usize = 4096;

/// Payloads longer than this start a whole line after their header, 64-byte aligned: a bulk
/// copy or vector loop over an aligned payload runs at full speed, and the 56 bytes this
/// costs are nothing beside the payload. Shorter ones follow the header at once, so a message
/// of up to 56 bytes is one cache line.
pub const ALIGN_ABOVE: usize = 1024;

/// Where the payload of a `len`-byte record starts, from the record's start.
#[inline]
pub fn payload_gap(len: usize) -> usize {
    if len > ALIGN_ABOVE {
        RECORD_ALIGN
    } else {
        RECORD_HEADER
    }
}

/// Bytes a record with `len` payload bytes takes.
#[inline]
pub fn record_len(len: usize) -> usize {
    (payload_gap(len) + len).next_multiple_of(RECORD_ALIGN)
}

/// The stamp of a record at position `pos`: never 0 in the first lap, so a zeroed area holds
/// no record; differs from the stamp one lap earlier for any capacity below 2^38 bytes.
#[inline]
pub fn stamp(pos: u64) -> u32 {
    ((pos / RECORD_ALIGN as u64) as u32).wrapping_add(1)
}

/// The header word of a record of `len` bytes at `pos`.
#[inline]
pub fn header(pos: u64, len: u32) -> u64 {
    (u64::from(len) << 32) | u64::from(stamp(pos))
}

/// Where a record of `rec` bytes goes when the producer is at `pos`: its start position
/// (`pos`, or the next lap's start if it would cross the end) and the position after it.
#[inline]
pub fn place(pos: u64, rec: usize, cap: usize) -> (u64, u64) {
    let off = offset(pos, cap);
    let start = if off + rec <= cap {
        pos
    } else {
        pos + (cap - off) as u64
    };
    (start, start + rec as u64)
}

/// The data-area offset of position `pos`.
#[inline]
pub fn offset(pos: u64, cap: usize) -> usize {
    (pos as usize) & (cap - 1)
}

/// The largest payload a ring of `cap` bytes carries: half of it, so a sender can write a
/// maximal message while the receiver still holds one.
pub fn max_payload(cap: usize) -> usize {
    cap / 2 - RECORD_ALIGN
}

/// A line one side sleeps on and the other wakes.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct WaitLine {
    /// Futex word: bumped by the waker.
    pub seq: AtomicU32,
    /// Non-zero while the owner is about to sleep or sleeping.
    pub sleeping: AtomicU32,
    /// Non-zero if the owner ever sleeps (its wait strategy is not `Spin`).
    pub may_sleep: AtomicU32,
    /// Non-zero once the owner has closed its end.
    pub closed: AtomicU32,
}

/// The consumer's position, alone on its line.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct HeadLine {
    /// Position up to which the consumer has released records.
    pub head: AtomicU64,
}

/// A ring's control block, in shared memory before its data area.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RingCtl {
    /// Released position.
    pub head: HeadLine,
    /// The consumer's wait line (it sleeps there for data).
    pub rx: WaitLine,
    /// The producer's wait line (it sleeps there for space).
    pub tx: WaitLine,
}

// SAFETY: atomics only; any bit pattern is a valid value.
#[allow(unsafe_code)]
unsafe impl super::region::Shared for RingCtl {}

/// The memory a ring lives in: shared memory, or (under loom) a model of it.
pub trait RingMem {
    /// The control block.
    fn ctl(&self) -> &RingCtl;
    /// The header word at data offset `off` (a multiple of 64).
    fn word(&self, off: usize) -> &AtomicU64;
    /// Copies `src` into the data area at `off`.
    fn write(&self, off: usize, src: &[u8]);
    /// Copies from the data area at `off` into `dst`.
    fn read(&self, off: usize, dst: &mut [u8]);
    /// The data area's size.
    fn cap(&self) -> usize;
}

/// A record the consumer found: its payload's data offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Data offset of the payload.
    pub off: usize,
    /// Payload length.
    pub len: usize,
}

/// A header that cannot have been written by a correct producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt {
    /// The position.
    pub pos: u64,
    /// The header word found there.
    pub word: u64,
}

/// The producer's private state.
#[derive(Debug)]
pub struct Producer {
    pos: u64,
    head: u64,
    cap: usize,
}

impl Producer {
    /// A producer of a fresh ring of `cap` bytes.
    pub fn new(cap: usize) -> Producer {
        Producer {
            pos: 0,
            head: 0,
            cap,
        }
    }

    /// Finds room for `len` payload bytes; returns the record's start position, or `None` if
    /// the ring is full. `len` must be at most [`max_payload`].
    #[inline]
    pub fn reserve<M: RingMem>(&mut self, m: &M, len: usize) -> Option<u64> {
        let (start, end) = place(self.pos, record_len(len), self.cap);
        if end - self.head > self.cap as u64 {
            self.head = m.ctl().head.head.load(Ordering::Acquire);
            if end - self.head > self.cap as u64 {
                return None;
            }
        }
        Some(start)
    }

    /// Data offset of the payload of a `len`-byte record reserved at `start`.
    #[inline]
    pub fn payload_offset(&self, start: u64, len: usize) -> usize {
        offset(start, self.cap) + payload_gap(len)
    }

    /// Publishes the record reserved at `start` with `len` payload bytes (already written),
    /// and wakes the consumer if it sleeps.
    #[inline]
    pub fn commit<M: RingMem>(&mut self, m: &M, start: u64, len: usize) {
        if start != self.pos {
            m.word(offset(self.pos, self.cap))
                .store(header(self.pos, PAD), Ordering::Release);
        }
        m.word(offset(start, self.cap))
            .store(header(start, len as u32), Ordering::Release);
        self.pos = start + record_len(len) as u64;
        wake(&m.ctl().rx);
    }
}

/// The consumer's private state.
#[derive(Debug)]
pub struct Consumer {
    pos: u64,
    cap: usize,
    max: usize,
}

impl Consumer {
    /// A consumer of a fresh ring of `cap` bytes accepting payloads up to `max`.
    pub fn new(cap: usize, max: usize) -> Consumer {
        Consumer { pos: 0, cap, max }
    }

    /// The record at the consumer's position, if one is published.
    ///
    /// # Errors
    ///
    /// [`Corrupt`] for a header no correct producer writes (a length over the maximum).
    #[inline]
    pub fn peek<M: RingMem>(&mut self, m: &M) -> Result<Option<Found>, Corrupt> {
        loop {
            let off = offset(self.pos, self.cap);
            let w = m.word(off).load(Ordering::Acquire);
            if w as u32 != stamp(self.pos) {
                return Ok(None);
            }
            let len = (w >> 32) as u32;
            if len == PAD {
                self.pos += (self.cap - off) as u64;
                continue;
            }
            let len = len as usize;
            if len > self.max || off + payload_gap(len) + len > self.cap {
                return Err(Corrupt {
                    pos: self.pos,
                    word: w,
                });
            }
            return Ok(Some(Found {
                off: off + payload_gap(len),
                len,
            }));
        }
    }

    /// Releases the record [`Consumer::peek`] returned (of `len` bytes), and wakes the
    /// producer if it sleeps for space.
    #[inline]
    pub fn release<M: RingMem>(&mut self, m: &M, len: usize) {
        self.pos += record_len(len) as u64;
        m.ctl().head.head.store(self.pos, Ordering::Release);
        wake(&m.ctl().tx);
    }
}

/// The publisher's half of the sleep handshake: wake `line`'s owner if it may be asleep.
///
/// The waker claims the sleeper's announcement (swaps `sleeping` to 0) before it wakes, so
/// one sleep costs one wake-up: what is published while the woken side is on its way out of
/// the kernel finds no announcement and makes no syscall (the sleeper announces itself
/// again before each look; see `wait.rs`).
#[inline]
pub fn wake(line: &WaitLine) {
    if line.may_sleep.load(Ordering::Relaxed) == 0 {
        return;
    }
    // Orders our publication before the look at `sleeping`; the sleeper orders its
    // `sleeping` store before its last look at the ring the same way.
    fence(Ordering::SeqCst);
    if line.sleeping.load(Ordering::Relaxed) != 0 && line.sleeping.swap(0, Ordering::SeqCst) != 0 {
        line.seq.fetch_add(1, Ordering::SeqCst);
        super::sync::futex_wake(&line.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The ring's index arithmetic against a model that keeps every live record as an
    /// explicit (start, end) interval.
    #[derive(Debug, Clone)]
    enum Op {
        Send(usize),
        Recv,
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![(0usize..5000).prop_map(Op::Send), Just(Op::Recv)],
            0..400,
        )
    }

    proptest! {
        #[test]
        fn placement_matches_model(cap_shift in 12u32..16, ops in ops()) {
            let cap = 1usize << cap_shift;
            let max = max_payload(cap);
            // Model: a queue of (start, end, len) records; producer position; head.
            let mut live: std::collections::VecDeque<(u64, u64, usize)> = Default::default();
            let mut pos = 0u64;
            let mut head = 0u64;
            for op in ops {
                match op {
                    Op::Send(len) => {
                        let len = len.min(max);
                        let rec = record_len(len);
                        let gap = payload_gap(len);
                        prop_assert!(rec.is_multiple_of(RECORD_ALIGN) && rec >= gap + len);
                        prop_assert!(rec < gap + len + RECORD_ALIGN);
                        prop_assert!(gap == RECORD_HEADER || gap.is_multiple_of(RECORD_ALIGN));
                        let (start, end) = place(pos, rec, cap);
                        // Never split: the record lies within one lap.
                        prop_assert!(offset(start, cap) + rec <= cap);
                        prop_assert_eq!(start / cap as u64, (end - 1) / cap as u64);
                        // Skips only what would not fit.
                        if start != pos {
                            prop_assert!(offset(pos, cap) + rec > cap);
                            prop_assert_eq!(offset(start, cap), 0);
                        }
                        if end - head <= cap as u64 {
                            // Fits: it overlaps no live record.
                            for &(s, e, _) in &live {
                                let (a, b) = (offset(s, cap), offset(s, cap) + (e - s) as usize);
                                let (c, d) = (offset(start, cap), offset(start, cap) + rec);
                                prop_assert!(b <= c || d <= a, "overlap");
                            }
                            live.push_back((start, end, len));
                            pos = end;
                        }
                    }
                    Op::Recv => {
                        if let Some((_, end, _)) = live.pop_front() {
                            head = end;
                        }
                    }
                }
                // Stamps of a position and the same offset one lap later differ.
                prop_assert_ne!(stamp(pos), stamp(pos + cap as u64));
            }
        }
    }

    #[test]
    fn small_messages_fit_one_line() {
        assert_eq!(record_len(0), 64);
        assert_eq!(record_len(56), 64);
        assert_eq!(record_len(57), 128);
        assert_eq!(stamp(0), 1);
        assert_ne!(header(0, 0), 0);
    }
}

/// Model checking of the ring protocol: every interleaving (up to the preemption bound) of a
/// producer and a consumer thread over a model of the shared memory in which every payload
/// word is a relaxed atomic, so a missing `Acquire`/`Release` shows up as a stale word; and,
/// with loom's model of the futex (`sync.rs`), the sleep handshake of [`wake`] and
/// `wait::wait_on` under every wait strategy on both sides.
/// Run by `.ci/loom` (`RUSTFLAGS="--cfg ipckit_loom" cargo test --lib loom`).
#[cfg(all(test, ipckit_loom))]
mod loom_tests {
    use super::*;
    use crate::shm::wait::wait_on;
    use crate::wait::{Deadline, Wait};
    use crate::{RecvError, SendError};
    use loom::sync::Arc;
    use std::time::Duration;

    /// Checks `f` with at most `cap` preemptions, or `LOOM_MAX_PREEMPTIONS` if lower. Every
    /// model here takes 4 (measured on two busy cores: under 2 s the first, 20 s the six
    /// handshakes together; 3 takes a tenth of that).
    fn model(cap: usize, f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(b.preemption_bound.map_or(cap, |p| p.min(cap)));
        b.check(f);
    }

    struct HeapMem {
        ctl: RingCtl,
        words: Vec<AtomicU64>,
    }

    impl HeapMem {
        fn new(cap: usize) -> HeapMem {
            HeapMem {
                ctl: RingCtl::default(),
                words: (0..cap / 8).map(|_| AtomicU64::new(0)).collect(),
            }
        }
    }

    impl RingMem for HeapMem {
        fn ctl(&self) -> &RingCtl {
            &self.ctl
        }
        fn word(&self, off: usize) -> &AtomicU64 {
            &self.words[off / 8]
        }
        fn write(&self, off: usize, src: &[u8]) {
            for (i, c) in src.chunks(8).enumerate() {
                let mut b = [0u8; 8];
                b[..c.len()].copy_from_slice(c);
                self.words[off / 8 + i].store(u64::from_le_bytes(b), Ordering::Relaxed);
            }
        }
        fn read(&self, off: usize, dst: &mut [u8]) {
            for (i, c) in dst.chunks_mut(8).enumerate() {
                let b = self.words[off / 8 + i]
                    .load(Ordering::Relaxed)
                    .to_le_bytes();
                let n = c.len();
                c.copy_from_slice(&b[..n]);
            }
        }
        fn cap(&self) -> usize {
            self.words.len() * 8
        }
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
                        if let Some(s) = p.reserve(&*m2, m.len()) {
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

    /// The sleep handshake: a producer sends `HANDSHAKE_MSGS` one-line messages through a
    /// ring of two lines, so it waits for space, while the consumer waits for data, each
    /// the way an endpoint does (the fast attempt, then `wait_on` on its wait line), under
    /// the wait strategies `tx` and `rx`. A lost wake-up leaves a side asleep for good:
    /// loom reports a deadlock, or a spinning peer runs out of branches. `may_sleep` is set
    /// before the threads start, as `connect` does, so no timed transition nap is armed
    /// (and loom's futex never times out).
    fn handshake(tx: Wait, rx: Wait, bound: usize) {
        const CAP: usize = 128;
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
                    let start = match p.reserve(m, 8) {
                        Some(s) => s,
                        None => wait_on(tx, Deadline::Never, &m.ctl.tx, &mut None, None, |_| {
                            Ok::<_, SendError>(p.reserve(m, 8))
                        })
                        .expect("no error"),
                    };
                    m.write(p.payload_offset(start, 8), &(i as u64).to_le_bytes());
                    p.commit(m, start, 8);
                }
            });
            let m = &*mem;
            let mut c = Consumer::new(CAP, 8);
            for i in 0..HANDSHAKE_MSGS {
                let peek = |c: &mut Consumer| c.peek(m).expect("no corrupt header");
                let f = match peek(&mut c) {
                    Some(f) => f,
                    None => wait_on(rx, Deadline::Never, &m.ctl.rx, &mut None, None, |_| {
                        Ok::<_, RecvError>(peek(&mut c))
                    })
                    .expect("no error"),
                };
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
        handshake(Wait::Block, Wait::Block, 4);
    }

    #[test]
    fn loom_wakeup_adaptive_adaptive() {
        handshake(ADAPTIVE, ADAPTIVE, 4);
    }

    #[test]
    fn loom_wakeup_spin_block() {
        handshake(Wait::Spin, Wait::Block, 4);
    }

    #[test]
    fn loom_wakeup_block_spin() {
        handshake(Wait::Block, Wait::Spin, 4);
    }

    #[test]
    fn loom_wakeup_adaptive_block() {
        handshake(ADAPTIVE, Wait::Block, 4);
    }

    #[test]
    fn loom_wakeup_block_adaptive() {
        handshake(Wait::Block, ADAPTIVE, 4);
    }
}
