//! The queue's protocol over any memory (shared memory, or loom's model of it): the slot
//! words, a producer's claim and publish, the consumer's look at its position, and both
//! halves of the producers' sleep handshake. The module docs of `mpsc` describe it; the
//! loom models at the end check it.

use crate::shm::ring::WaitLine;
use crate::shm::sync::{fence, futex_wake, AtomicU32, AtomicU64, Ordering};
use std::io;

/// Producers attached at once, at most (one bit each in the producers' wait line).
pub const MAX_PRODUCERS: usize = 64;

// ---------------------------------------------------------------------------------------
// Slot words.

pub(super) const TAG_BITS: u32 = 8;
pub(super) const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
pub(super) const FREE: u64 = 0;
pub(super) const PUBLISHED: u64 = 1;
/// `CLAIMED + i`: claimed by producer entry `i`.
pub(super) const CLAIMED: u64 = 2;

/// The word `seq << 8 | tag` (the sequence keeps its low 56 bits).
#[inline]
pub(super) fn pack(seq: u64, tag: u64) -> u64 {
    (seq << TAG_BITS) | tag
}

/// How far `w`'s sequence is ahead of `pos`, modulo 2^56 and signed: 0 if it is `pos`'s
/// word, negative if it is still an earlier lap's.
#[inline]
fn lap(w: u64, pos: u64) -> i64 {
    ((w >> TAG_BITS).wrapping_sub(pos) << TAG_BITS) as i64
}

/// The tag of a claim by producer entry `idx`.
#[inline]
fn claim_tag(idx: usize) -> u64 {
    CLAIMED + idx as u64
}

// ---------------------------------------------------------------------------------------
// The algorithm, over any memory (shared memory, or loom's model of it).

/// The enqueue position, alone on its line.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub(crate) struct TailLine {
    pub(crate) tail: AtomicU64,
}

/// The line producers sleep on while the queue is full.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub(crate) struct SpaceLine {
    /// Futex word: bumped by the consumer (and the watcher of a dead consumer).
    pub(crate) seq: AtomicU32,
    _pad: AtomicU32,
    /// Bit `i`: producer entry `i` may sleep (its wait strategy is not `Spin`).
    pub(crate) may_sleep: AtomicU64,
    /// Bit `i`: producer entry `i` is about to sleep or sleeping.
    pub(crate) sleeping: AtomicU64,
}

/// The queue's control lines.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct QueueCtl {
    pub(crate) tail: TailLine,
    /// The consumer's wait line; `closed` is set when the receiver is dropped.
    pub(crate) rx: WaitLine,
    pub(crate) tx: SpaceLine,
}

/// The memory a queue lives in.
pub(crate) trait QueueMem {
    fn ctl(&self) -> &QueueCtl;
    /// The sequence word of slot `slot`.
    fn seq(&self, slot: usize) -> &AtomicU64;
    /// The length word of slot `slot`.
    fn len(&self, slot: usize) -> &AtomicU32;
    /// Copies `src` into slot `slot`'s payload.
    fn write(&self, slot: usize, src: &[u8]);
    /// Copies slot `slot`'s payload into `dst`.
    fn read(&self, slot: usize, dst: &mut [u8]);
}

/// Claims the next position for producer entry `idx`, without moving `tail` on; `None` if
/// the queue is full. `mask` is `slots - 1`.
#[inline]
pub(crate) fn claim_slot<M: QueueMem>(m: &M, mask: usize, idx: usize) -> Option<u64> {
    let tail = &m.ctl().tail.tail;
    let mut pos = tail.load(Ordering::Relaxed);
    loop {
        let word = m.seq(pos as usize & mask);
        let w = word.load(Ordering::Acquire);
        let d = lap(w, pos);
        if d == 0 && w & TAG_MASK == FREE {
            // Acquire: the consumer's read of this slot's last message happens before our
            // write of the next.
            if word
                .compare_exchange(
                    w,
                    pack(pos, claim_tag(idx)),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return Some(pos);
            }
            // Another producer claimed it: look again.
            crate::shm::sync::spin();
        } else if d == 0 {
            // Claimed or published for `pos`, but `tail` still names it: its claimer has not
            // moved `tail` on yet, or died before it could. Do it for them. (Wrapping: `tail`
            // is shared memory, and no correct queue gets near 2^64.)
            let next = pos.wrapping_add(1);
            pos = match tail.compare_exchange(pos, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => next,
                Err(now) => now,
            };
        } else if d < 0 {
            // The slot still holds the message of `pos - slots`.
            return None;
        } else {
            // Our `tail` was stale: it has moved on since, as the slot word we acquired was
            // stored after it did. If it has not, `tail` was written outside the protocol:
            // give up (looks full; `corrupt_tail` tells) rather than spin forever.
            crate::shm::sync::spin();
            let now = tail.load(Ordering::Relaxed);
            if now == pos {
                return None;
            }
            pos = now;
        }
    }
}

/// Moves `tail` past a position we claimed (unless another producer already has).
#[inline]
pub(crate) fn advance<M: QueueMem>(m: &M, pos: u64) {
    let _ = m.ctl().tail.tail.compare_exchange(
        pos,
        pos.wrapping_add(1),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
}

/// Whether `tail` and the slot it names are in a state no correct queue reaches, once
/// [`claim_slot`] has found no free slot: the slot's sequence is not its position modulo the
/// slot count, lies more than one lap behind `tail`, or lies ahead of a `tail` that does
/// not move. Correct queues only ever show a slot one lap behind (full). `mask` is
/// `slots - 1`.
pub(crate) fn corrupt_tail<M: QueueMem>(m: &M, mask: usize) -> Option<io::Error> {
    let tail = &m.ctl().tail.tail;
    let pos = tail.load(Ordering::Relaxed);
    let w = m.seq(pos as usize & mask).load(Ordering::Acquire);
    let ahead = (w >> TAG_BITS).wrapping_sub(pos) & ((1 << (64 - TAG_BITS)) - 1);
    let lap_len = mask as u64 + 1;
    let d = lap(w, pos);
    let bad = ahead & mask as u64 != 0
        || (d < 0 && ahead != (1 << (64 - TAG_BITS)) - lap_len)
        || (d > 0 && tail.load(Ordering::Relaxed) == pos);
    bad.then(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "corrupt MPSC queue: enqueue position {pos} names a slot holding word {w:#018x} \
                 (a process wrote outside the protocol)"
            ),
        )
    })
}

/// Claims a position and moves `tail` on; `None` if the queue is full.
#[inline]
pub(crate) fn try_claim<M: QueueMem>(m: &M, mask: usize, idx: usize) -> Option<u64> {
    let pos = claim_slot(m, mask, idx)?;
    advance(m, pos);
    Some(pos)
}

/// Writes `msg` into the slot claimed at `pos` and publishes it.
#[inline]
pub(crate) fn publish<M: QueueMem>(m: &M, mask: usize, pos: u64, msg: &[u8]) {
    let slot = pos as usize & mask;
    m.len(slot).store(msg.len() as u32, Ordering::Relaxed);
    m.write(slot, msg);
    m.seq(slot).store(pack(pos, PUBLISHED), Ordering::Release);
}

/// What the consumer finds at its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Head {
    /// A message of this many bytes.
    Ready(usize),
    /// Nothing claimed yet.
    Empty,
    /// Claimed by producer entry `idx`, not yet published.
    Claimed(usize),
    /// A word no correct producer writes.
    Corrupt(u64),
}

/// The consumer's private state.
#[derive(Debug)]
pub(crate) struct Consumer {
    head: u64,
    mask: usize,
    max: usize,
}

impl Consumer {
    /// The consumer of a fresh queue of `slots` slots carrying up to `max` bytes each.
    pub(crate) fn new(slots: usize, max: usize) -> Consumer {
        Consumer {
            head: 0,
            mask: slots - 1,
            max,
        }
    }

    /// The position the consumer is at.
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// The state of the slot at the consumer's position.
    #[inline]
    pub(crate) fn peek<M: QueueMem>(&self, m: &M) -> Head {
        let slot = self.head as usize & self.mask;
        let w = m.seq(slot).load(Ordering::Acquire);
        if lap(w, self.head) != 0 {
            // The consumer's own store left FREE(head) here; only a stray write changes the lap.
            return Head::Corrupt(w);
        }
        match w & TAG_MASK {
            FREE => Head::Empty,
            PUBLISHED => {
                let len = m.len(slot).load(Ordering::Relaxed) as usize;
                if len > self.max {
                    Head::Corrupt(w)
                } else {
                    Head::Ready(len)
                }
            }
            t if ((t - CLAIMED) as usize) < MAX_PRODUCERS => Head::Claimed((t - CLAIMED) as usize),
            _ => Head::Corrupt(w),
        }
    }

    /// Copies the ready message at the consumer's position (of `dst.len()` bytes) out.
    #[inline]
    pub(crate) fn read<M: QueueMem>(&self, m: &M, dst: &mut [u8]) {
        m.read(self.head as usize & self.mask, dst);
    }

    /// Skips the slot at the consumer's position: a claim whose producer died, or a corrupt
    /// word. A claimer that died before moving `tail` past its claim left `tail` naming this
    /// very position; moved on first, or producers would find the slot free for a later
    /// lap, take `tail` for stale, and reread it forever.
    pub(crate) fn skip<M: QueueMem>(&mut self, m: &M) {
        let _ = m.ctl().tail.tail.compare_exchange(
            self.head,
            self.head + 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.release(m);
    }

    /// Frees the slot at the consumer's position for the next lap and moves on, after
    /// reading its message.
    #[inline]
    pub(crate) fn release<M: QueueMem>(&mut self, m: &M) {
        let slot = self.head as usize & self.mask;
        let next = self.head + self.mask as u64 + 1;
        m.seq(slot).store(pack(next, FREE), Ordering::Release);
        self.head += 1;
    }
}

/// The consumer's half of the producers' sleep handshake (`ring::wake` for a bitmap): it
/// claims every announcement and wakes every sleeper (they race for the space; the losers
/// announce themselves again).
#[inline]
pub(super) fn wake_space(line: &SpaceLine) {
    if line.may_sleep.load(Ordering::Relaxed) == 0 {
        return;
    }
    fence(Ordering::SeqCst);
    if line.sleeping.load(Ordering::Relaxed) != 0 && line.sleeping.swap(0, Ordering::SeqCst) != 0 {
        line.seq.fetch_add(1, Ordering::SeqCst);
        futex_wake(&line.seq);
    }
}

// ---------------------------------------------------------------------------------------
// Waiting.

/// Producer entry `bit`'s place on the producers' line.
pub(super) struct ProducerSleep<'a> {
    pub(super) line: &'a SpaceLine,
    pub(super) bit: u64,
}

impl crate::shm::wait::Sleeper for ProducerSleep<'_> {
    fn word(&self) -> &AtomicU32 {
        &self.line.seq
    }
    fn enter(&self) {
        self.line.sleeping.fetch_or(self.bit, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.line.sleeping.fetch_and(!self.bit, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(pack(0, FREE), 0);
        assert_eq!(lap(pack(5, PUBLISHED), 5), 0);
        assert!(lap(pack(3, FREE), 5) < 0);
        assert!(lap(pack(7, FREE), 5) > 0);
        // Sequences wrap at 2^56 and still compare.
        let top = (1u64 << 56) - 1;
        assert_eq!(lap(pack(top, FREE), top), 0);
        assert!(lap(pack(top + 1, FREE), top) > 0);
        assert!(lap(pack(top, FREE), top + 1) < 0);
        assert_eq!(claim_tag(MAX_PRODUCERS - 1) & !TAG_MASK, 0);
    }
}

#[cfg(all(test, ipckit_loom))]
mod loom_tests {
    //! The algorithm over heap memory, under loom: every interleaving of two producers and
    //! the consumer (up to `LOOM_MAX_PREEMPTIONS`). Payloads are words of loom atomics
    //! accessed `Relaxed`, so an ordering the protocol forgot shows up as stale data.
    //!
    //! Producers give up on a message after [`TRIES`] full queues instead of waiting for the
    //! consumer: at a yield loom may switch to any thread for free, so two threads waiting
    //! on a third could starve it forever (a schedule no real machine keeps up). Only the
    //! consumer waits; each producer reports what it sent, and exactly that must arrive.
    //!
    //! Weakening the consumer's `Acquire` or either `Release` makes these tests fail (stale
    //! payloads). The claim's `Acquire` orders a write after the consumer's read of the
    //! previous lap, a load-buffering hazard that loom does not model: it is argued at the
    //! claim, not checked here.
    use super::*;
    use crate::shm::ring;
    use crate::shm::wait::wait_on;
    use crate::wait::{Deadline, Wait};
    use crate::{RecvError, SendError};
    use loom::sync::atomic::{AtomicBool as LoomBool, AtomicUsize};
    use loom::sync::Arc;
    use loom::thread;
    use std::time::Duration;

    const WORDS: usize = 2;
    const LEN: usize = 8 * WORDS;
    const TRIES: usize = 2;

    /// Checks `f` with at most `cap` preemptions, or `LOOM_MAX_PREEMPTIONS` if lower. The
    /// caps keep `.ci/loom` (3 by default) near a minute on two cores; measured there, the
    /// four-message model takes 60 s at 2 preemptions and over 10 minutes at 3, the dead
    /// claim model 5 s at 2 and 105 s at 3, the one-slot model 18 s at 3; the wake-up
    /// models 2-4 s each at 2 and 20-50 s at 3 (the all-`Block` one runs at 3).
    fn model(cap: usize, f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(b.preemption_bound.map_or(cap, |p| p.min(cap)));
        b.check(f);
    }

    struct HeapMem {
        ctl: QueueCtl,
        seq: Vec<AtomicU64>,
        len: Vec<AtomicU32>,
        data: Vec<AtomicU64>,
        /// Producer threads finished.
        done: AtomicUsize,
    }

    impl HeapMem {
        fn new(slots: usize) -> HeapMem {
            HeapMem {
                ctl: QueueCtl::default(),
                seq: (0..slots as u64)
                    .map(|i| AtomicU64::new(pack(i, FREE)))
                    .collect(),
                len: (0..slots).map(|_| AtomicU32::new(0)).collect(),
                data: (0..slots * WORDS).map(|_| AtomicU64::new(0)).collect(),
                done: AtomicUsize::new(0),
            }
        }
    }

    impl QueueMem for HeapMem {
        fn ctl(&self) -> &QueueCtl {
            &self.ctl
        }
        fn seq(&self, slot: usize) -> &AtomicU64 {
            &self.seq[slot]
        }
        fn len(&self, slot: usize) -> &AtomicU32 {
            &self.len[slot]
        }
        fn write(&self, slot: usize, src: &[u8]) {
            for (i, c) in src.chunks(8).enumerate() {
                let mut b = [0u8; 8];
                b[..c.len()].copy_from_slice(c);
                self.data[slot * WORDS + i].store(u64::from_le_bytes(b), Ordering::Relaxed);
            }
        }
        fn read(&self, slot: usize, dst: &mut [u8]) {
            for (i, c) in dst.chunks_mut(8).enumerate() {
                let b = self.data[slot * WORDS + i]
                    .load(Ordering::Relaxed)
                    .to_le_bytes();
                c.copy_from_slice(&b[..c.len()]);
            }
        }
    }

    /// Message `i` of producer `p`: its id, and its complement as a check word.
    fn message(p: usize, i: u64) -> [u8; LEN] {
        let id = ((p as u64) << 32) | i;
        let mut m = [0u8; LEN];
        m[..8].copy_from_slice(&id.to_le_bytes());
        m[8..].copy_from_slice(&(!id).to_le_bytes());
        m
    }

    fn decode(m: &[u8]) -> (usize, u64) {
        let id = u64::from_le_bytes(m[..8].try_into().unwrap());
        let check = u64::from_le_bytes(m[8..].try_into().unwrap());
        assert_eq!(check, !id, "payload torn or stale: {id:#x} / {check:#x}");
        ((id >> 32) as usize, id & 0xffff_ffff)
    }

    /// Producer `p` sends `count` messages, each given up after `TRIES` full queues;
    /// returns the indices it sent.
    fn produce(m: &HeapMem, mask: usize, p: usize, count: u64) -> Vec<u64> {
        let mut sent = Vec::new();
        for i in 0..count {
            for _ in 0..TRIES {
                if let Some(pos) = try_claim(m, mask, p) {
                    publish(m, mask, pos, &message(p, i));
                    sent.push(i);
                    break;
                }
                thread::yield_now();
            }
        }
        m.done.fetch_add(1, Ordering::Release);
        sent
    }

    /// Receives until `producers` have finished and the queue is empty; skips the claims of
    /// entry `dead.0` once `dead.1` says it died. Returns the (producer, index) pairs in
    /// order and the number of slots skipped.
    fn drain(
        m: &HeapMem,
        slots: usize,
        producers: usize,
        dead: Option<(usize, &LoomBool)>,
    ) -> (Vec<(usize, u64)>, usize) {
        let mut cons = Consumer::new(slots, LEN);
        let mut got = Vec::new();
        let mut skipped = 0;
        let mut buf = [0u8; LEN];
        loop {
            // Acquire, before the look: whatever the finished producers published is
            // visible to it.
            let finished = m.done.load(Ordering::Acquire) == producers;
            match cons.peek(m) {
                Head::Ready(len) => {
                    assert_eq!(len, LEN);
                    cons.read(m, &mut buf);
                    cons.release(m);
                    got.push(decode(&buf));
                }
                Head::Claimed(i)
                    if dead.is_some_and(|(d, f)| d == i && f.load(Ordering::Acquire)) =>
                {
                    cons.skip(m);
                    skipped += 1;
                }
                Head::Corrupt(w) => panic!("corrupt word {w:#x}"),
                Head::Empty if finished => return (got, skipped),
                Head::Claimed(i) if finished && dead.is_none_or(|(d, _)| d != i) => {
                    panic!("claim of finished producer {i} never published")
                }
                _ => thread::yield_now(),
            }
        }
    }

    fn check(got: &[(usize, u64)], p: usize, sent: &[u64]) {
        let mine: Vec<u64> = got.iter().filter(|m| m.0 == p).map(|m| m.1).collect();
        assert_eq!(mine, sent, "producer {p}: received {got:?}");
    }

    fn run(slots: usize, each: u64, cap: usize) {
        model(cap, move || {
            let m = Arc::new(HeapMem::new(slots));
            let producers: Vec<_> = (0..2)
                .map(|p| {
                    let m = m.clone();
                    thread::spawn(move || produce(&m, slots - 1, p, each))
                })
                .collect();
            let (got, skipped) = drain(&m, slots, 2, None);
            assert_eq!(skipped, 0);
            for (p, t) in producers.into_iter().enumerate() {
                check(&got, p, &t.join().unwrap());
            }
        });
    }

    /// Two producers, two messages each, two slots (so the queue fills and slots are
    /// reused): every message sent arrives once, in each producer's order, intact.
    #[test]
    fn loom_two_producers_one_consumer() {
        run(2, 2, 2);
    }

    /// One slot: each message must be consumed before the next can be claimed.
    #[test]
    fn loom_one_slot() {
        run(1, 1, 3);
    }

    /// A producer's send as `MpscSender::send_deadline` makes it: claim, or wait for space
    /// on the producers' line (`ProducerSleep`), then publish and wake the consumer.
    fn send(m: &HeapMem, idx: usize, wait: Wait, msg: &[u8]) {
        let pos = match try_claim(m, 0, idx) {
            Some(p) => p,
            None => {
                let sleeper = ProducerSleep {
                    line: &m.ctl.tx,
                    bit: 1 << idx,
                };
                wait_on(wait, Deadline::Never, &sleeper, &mut None, None, |_| {
                    Ok::<_, SendError>(try_claim(m, 0, idx))
                })
                .expect("no error")
            }
        };
        publish(m, 0, pos, msg);
        ring::wake(&m.ctl.rx);
    }

    /// A spin budget of two spins under loom's logical clock (one µs per clock read).
    const ADAPTIVE: Wait = Wait::Adaptive {
        spin: Duration::from_micros(2),
    };

    /// The sleep handshake of both lines: two producers, under the wait strategies `tx`,
    /// send one message each through one slot (so one of them waits for space, asleep on
    /// the producers' line), while the consumer, under `rx`, waits for data on its line as
    /// `MpscReceiver::recv` does and frees the slot with `wake_space`. A lost wake-up
    /// leaves a side asleep for good: loom reports a deadlock, or a spinning peer runs out
    /// of branches. `may_sleep` is set before the threads start, so no timed nap is armed.
    /// At most one side spins: two threads spinning on a third may starve it under loom's
    /// free switches at yields (a schedule no machine keeps up).
    fn handshake(tx: [Wait; 2], rx: Wait, cap: usize) {
        model(cap, move || {
            const SLOTS: usize = 1;
            let m = Arc::new(HeapMem::new(SLOTS));
            for (p, w) in tx.iter().enumerate() {
                if *w != Wait::Spin {
                    m.ctl.tx.may_sleep.fetch_or(1 << p, Ordering::Relaxed);
                }
            }
            m.ctl
                .rx
                .may_sleep
                .store(u32::from(rx != Wait::Spin), Ordering::Relaxed);
            let producers: Vec<_> = (0..2)
                .map(|p| {
                    let m = m.clone();
                    thread::spawn(move || send(&m, p, tx[p], &message(p, 0)))
                })
                .collect();
            let mut cons = Consumer::new(SLOTS, LEN);
            let mut got = Vec::new();
            for _ in 0..2 {
                let peek = |cons: &Consumer| match cons.peek(&*m) {
                    Head::Ready(len) => Some(len),
                    Head::Corrupt(w) => panic!("corrupt word {w:#x}"),
                    Head::Empty | Head::Claimed(_) => None,
                };
                let len = match peek(&cons) {
                    Some(len) => len,
                    None => wait_on(rx, Deadline::Never, &m.ctl.rx, &mut None, None, |_| {
                        Ok::<_, RecvError>(peek(&cons))
                    })
                    .expect("no error"),
                };
                assert_eq!(len, LEN);
                let mut buf = [0u8; LEN];
                cons.read(&*m, &mut buf);
                cons.release(&*m);
                wake_space(&m.ctl.tx);
                got.push(decode(&buf));
            }
            for t in producers {
                t.join().unwrap();
            }
            got.sort_unstable();
            assert_eq!(got, [(0, 0), (1, 0)]);
        });
    }

    #[test]
    fn loom_wakeup_block_block() {
        handshake([Wait::Block; 2], Wait::Block, 3);
    }

    #[test]
    fn loom_wakeup_adaptive_adaptive() {
        handshake([ADAPTIVE; 2], ADAPTIVE, 2);
    }

    #[test]
    fn loom_wakeup_block_spin() {
        handshake([Wait::Block; 2], Wait::Spin, 2);
    }

    #[test]
    fn loom_wakeup_spin_and_block_block() {
        handshake([Wait::Spin, Wait::Block], Wait::Block, 2);
    }

    #[test]
    fn loom_wakeup_adaptive_and_block_adaptive() {
        handshake([ADAPTIVE, Wait::Block], ADAPTIVE, 2);
    }

    /// Producer 1 claims a slot and dies before moving `tail` on or publishing; producer 0
    /// still gets its messages through (it moves `tail` on for the dead one), and the
    /// consumer skips the dead claim exactly once.
    #[test]
    fn loom_dead_claim_is_skipped() {
        model(2, || {
            const SLOTS: usize = 2;
            let m = Arc::new(HeapMem::new(SLOTS));
            let dead = Arc::new(LoomBool::new(false));
            let dying = {
                let (m, dead) = (m.clone(), dead.clone());
                thread::spawn(move || {
                    let mut claimed = false;
                    for _ in 0..TRIES {
                        if claim_slot(&*m, SLOTS - 1, 1).is_some() {
                            claimed = true;
                            break;
                        }
                        thread::yield_now();
                    }
                    // Killed here. The consumer learns of it later (a pidfd, in life).
                    dead.store(true, Ordering::Release);
                    m.done.fetch_add(1, Ordering::Release);
                    claimed
                })
            };
            let live = {
                let m = m.clone();
                thread::spawn(move || produce(&m, SLOTS - 1, 0, 2))
            };
            let (got, skipped) = drain(&m, SLOTS, 2, Some((1, &dead)));
            let claimed = dying.join().unwrap();
            check(&got, 0, &live.join().unwrap());
            assert_eq!(skipped, usize::from(claimed));
        });
    }
}
