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
//! stamp matches its position ([`stamp`]); the zeroes of a fresh ring never match, and a
//! header of an earlier lap never does either (a lap moves every stamp). So the consumer
//! spins on the very line the message arrives in: a small message costs one cache-line
//! transfer, as the floor's ping-pong does.
//!
//! The consumer must never take a word that the producer did not write as a header in this
//! lap: in mixed-size traffic, a 64-byte boundary of this lap can lie inside an earlier lap's
//! payload, and a payload word is anything the sender chose, the right stamp included. So
//! before publishing a record the producer looks at the header word of the record that will
//! follow it and clears it if it carries that position's stamp (the zero is ordered before
//! the record's `Release` header; `reserve` keeps that one line of slack free). The consumer,
//! having taken the record before, therefore never finds its position's stamp there until
//! the producer writes the real header. A matching header is still checked: a length above
//! the negotiated maximum, a record that would cross the end of the data area, a pad where a
//! maximal record still fits, or a released position the producer never reached is
//! [`Corrupt`]. A pad is stored after the record it leads to, so a consumer that takes the
//! pad finds the record.
//!
//! The producer only *clears* when a word matches (about never, for payloads that are not
//! built to collide): an unconditional store would put a second line in the store path, and
//! on x86 the header cannot become visible before that line is the producer's, which cost a
//! 64-byte round trip 60-70 ns here. And it only *looks* where it last wrote payload (a bit
//! per line in its private memory): a header of an earlier lap never carries a later stamp,
//! and in traffic of one size the next record starts where a header stood, so the common
//! case reads no second shared line either.
//!
//! The consumer publishes how far it has read in `head` (`Release`, after reading the
//! payload); the producer reads it (`Acquire`) only when the space it last saw runs out.
//! `head` sits on its own 128-byte line (two lines: the adjacent-line prefetcher pairs them).
//!
//! # Sleeping
//!
//! A side that may sleep (`Adaptive`, `Block`) says so in `may_sleep` of its wait line. The
//! other side, after publishing, checks that flag; only if it is set does it pay a `SeqCst`
//! fence and look at `sleeping`, and, if it claims the sleeper's announcement (swaps it to
//! 0), wake the sleeper with a futex on `seq`: one wake-up per sleep. A spinning peer costs
//! the publisher one load of a line that never changes. See `wait.rs` for the sleeper's half
//! of this Dekker handshake, and `.ci/loom` for its model checking.

use super::sync::{fence, prefetch_write, AtomicU32, AtomicU64, Ordering};

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

/// The stamp of a record at position `pos`: its line number modulo 2^32 - 1, plus one. Never 0
/// (however far the positions run), so a cleared word holds no record; and a lap of any
/// power-of-two capacity moves it (2^k is never a multiple of 2^32 - 1), so a header of the
/// lap before never carries the stamp of this one.
#[inline]
pub fn stamp(pos: u64) -> u32 {
    // `line % (2^32 - 1)` by folding, as 2^32 = 1 modulo 2^32 - 1: the high half added to the
    // low half (below 2^33), folded once more (at most 2^32), and one conditional subtract.
    // No division on the path of every record. The remainder is below 2^32 - 1, so the
    // cast and the `+ 1` neither truncate nor wrap.
    const M: u64 = u32::MAX as u64;
    let line = pos / RECORD_ALIGN as u64;
    let r = (line & M) + (line >> 32);
    let r = (r & M) + (r >> 32);
    let r = if r >= M { r - M } else { r };
    r as u32 + 1
}

/// The header word of a record of `len` bytes at `pos`.
#[inline]
pub fn header(pos: u64, len: u32) -> u64 {
    with_stamp(stamp(pos), len)
}

/// The header word of a record of `len` bytes whose position has stamp `stamp`.
#[inline]
fn with_stamp(stamp: u32, len: u32) -> u64 {
    (u64::from(len) << 32) | u64::from(stamp)
}

/// `stamp(pos + bytes)` from `s = stamp(pos)`, for `bytes` a multiple of [`RECORD_ALIGN`]:
/// an add and a conditional subtract. Each side keeps its position's stamp this way instead
/// of folding the position on every record (that was about a fifth of the instructions the
/// integrity fix added per message).
#[inline]
fn advance(s: u32, bytes: u64) -> u32 {
    const M: u64 = u32::MAX as u64;
    let lines = bytes / RECORD_ALIGN as u64;
    // A step is at most the data area; only one of 256 GiB or more has M lines.
    let k = if lines < M { lines } else { lines % M };
    // s in 1..=M and k < M: the sum is below 2M, one subtract brings it back to 1..=M,
    // which fits in u32.
    let t = u64::from(s) + k;
    (if t > M { t - M } else { t }) as u32
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

/// A word in the ring that no correct peer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt {
    /// The position of the side that found it.
    pub pos: u64,
    /// The word found (a header, or the released position).
    pub word: u64,
    /// What is wrong with it.
    pub what: &'static str,
}

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "corrupt ring: {} ({:#018x} at position {}; the peer wrote outside the protocol)",
            self.what, self.word, self.pos
        )
    }
}

/// The producer's private state.
#[derive(Debug)]
pub struct Producer {
    pos: u64,
    /// `stamp(pos)`, kept by [`advance`].
    stamp: u32,
    head: u64,
    cap: usize,
    /// The end of the record [`Producer::reserve`] last placed, and whether the line there
    /// held payload then (so `commit` need not look at the bitmap again).
    reserved_end: u64,
    reserved_end_payload: bool,
    /// One bit per line of the data area: set while the line's first word is one no later
    /// position's stamp can match (zero, a header or a pad this producer wrote), clear while
    /// it is a payload word. Private memory, so the common case (the next record starts
    /// where a header stood a lap ago) costs no look at the shared line.
    header_like: Vec<u64>,
}

impl Producer {
    /// A producer of a fresh ring of `cap` bytes.
    pub fn new(cap: usize) -> Producer {
        let lines = cap / RECORD_ALIGN;
        Producer {
            pos: 0,
            stamp: stamp(0),
            head: 0,
            cap,
            reserved_end: u64::MAX,
            reserved_end_payload: false,
            // A fresh ring is zeroes: every line is header-like.
            header_like: vec![u64::MAX; lines.div_ceil(64)],
        }
    }

    /// Whether the word at `end` (whose stamp is `end_stamp`) carries that stamp without
    /// being a header for it: only a payload word can, so the shared line is read only where
    /// this producer last wrote payload.
    #[inline]
    fn needs_clear<M: RingMem>(&self, m: &M, end: u64, end_stamp: u32) -> bool {
        let off = offset(end, self.cap);
        let payload = if end == self.reserved_end {
            self.reserved_end_payload
        } else {
            !self.is_header_like(off / RECORD_ALIGN)
        };
        payload && m.word(off).load(Ordering::Relaxed) as u32 == end_stamp
    }

    #[inline]
    fn is_header_like(&self, line: usize) -> bool {
        self.header_like[line / 64] & (1 << (line % 64)) != 0
    }

    #[inline]
    fn set_header_like(&mut self, line: usize) {
        self.header_like[line / 64] |= 1 << (line % 64);
    }

    /// Marks the `n` lines of a record starting at line `first`: a header, then payload.
    #[inline]
    fn mark_record(&mut self, first: usize, n: usize) {
        let b = first % 64;
        if b + n <= 64 {
            // The common case, one word: bits b..b+n cleared, bit b set. n is 1..=64, so
            // the shift is 0..=63.
            let mask = (u64::MAX >> (64 - n)) << b;
            let w = &mut self.header_like[first / 64];
            *w = (*w & !mask) | (1 << b);
        } else {
            self.set_header_like(first);
            self.set_payload(first + 1, first + n);
        }
    }

    /// Marks lines `from..to` as holding payload words.
    #[inline]
    fn set_payload(&mut self, from: usize, to: usize) {
        if from >= to {
            return;
        }
        // Bits `from..to`: a partial first word, whole words between (a large record spans
        // many: one fill, not a loop of masks), a partial last word.
        let (w0, w1) = (from / 64, (to - 1) / 64);
        let first = u64::MAX << (from % 64);
        let last = u64::MAX >> (63 - (to - 1) % 64);
        if w0 == w1 {
            self.header_like[w0] &= !(first & last);
        } else {
            self.header_like[w0] &= !first;
            self.header_like[w0 + 1..w1].fill(0);
            self.header_like[w1] &= !last;
        }
    }

    /// Finds room for `len` payload bytes; returns the record's start position, or `None` if
    /// the ring is full. `len` must be at most [`max_payload`]. Room means the record and the
    /// line after it (whose header word [`Producer::commit`] clears).
    ///
    /// # Errors
    ///
    /// [`Corrupt`] if the consumer's released position (peer-written) lies beyond this
    /// producer's position or went backwards.
    #[inline]
    pub fn reserve<M: RingMem>(&mut self, m: &M, len: usize) -> Result<Option<u64>, Corrupt> {
        let (start, end) = place(self.pos, record_len(len), self.cap);
        let need = end + RECORD_ALIGN as u64;
        if need - self.head > self.cap as u64 && !self.refresh_head(m, need)? {
            return Ok(None);
        }
        // Ask for the line `commit` will look at now, so that it arrives during the payload
        // copy (a load here would stall the copy until it came: a zero-copy 64 KiB message
        // lost 5-20% of its throughput to that).
        let off = offset(end, self.cap);
        let payload = !self.is_header_like(off / RECORD_ALIGN);
        if payload {
            prefetch_write(m.word(off));
        }
        self.reserved_end = end;
        self.reserved_end_payload = payload;
        Ok(Some(start))
    }

    /// The space last seen ran out: reads the consumer's released position again; whether
    /// the ring now has room up to `need`. Out of line: most records fit in what was seen.
    #[cold]
    #[inline(never)]
    fn refresh_head<M: RingMem>(&mut self, m: &M, need: u64) -> Result<bool, Corrupt> {
        let head = m.ctl().head.head.load(Ordering::Acquire);
        if head < self.head || head > self.pos || !head.is_multiple_of(RECORD_ALIGN as u64) {
            return Err(Corrupt {
                pos: self.pos,
                word: head,
                what: "released position outside what was sent",
            });
        }
        self.head = head;
        Ok(need - self.head <= self.cap as u64)
    }

    /// Data offset of the payload of a `len`-byte record reserved at `start`.
    #[inline]
    pub fn payload_offset(&self, start: u64, len: usize) -> usize {
        offset(start, self.cap) + payload_gap(len)
    }

    /// Publishes the record reserved at `start` with `len` payload bytes (already written at
    /// [`Producer::payload_offset`] for `len`), and wakes the consumer if it sleeps.
    #[inline]
    pub fn commit<M: RingMem>(&mut self, m: &M, start: u64, len: usize) {
        let rec = record_len(len);
        let end = start + rec as u64;
        let start_stamp = if start == self.pos {
            self.stamp
        } else {
            advance(self.stamp, start - self.pos)
        };
        let end_stamp = advance(start_stamp, rec as u64);
        // 1. The next record's header word (reserved slack: nobody reads it now) must not
        //    look like a record for `end`: an earlier lap's payload word there may carry
        //    `end`'s stamp. Clear it if so; the `Release` below orders the zero before the
        //    header. Only the producer writes the data area, so the word read is one it
        //    wrote, and the consumer sees that one or a later one (see the module docs for
        //    why the store is conditional).
        if self.needs_clear(m, end, end_stamp) {
            m.word(offset(end, self.cap)).store(0, Ordering::Relaxed);
        }
        m.word(offset(start, self.cap))
            .store(with_stamp(start_stamp, len as u32), Ordering::Release);
        self.mark_record(offset(start, self.cap) / RECORD_ALIGN, rec / RECORD_ALIGN);
        // 2. A pad after the record it leads to: a consumer that takes the pad finds it.
        if start != self.pos {
            m.word(offset(self.pos, self.cap))
                .store(with_stamp(self.stamp, PAD), Ordering::Release);
            self.set_header_like(offset(self.pos, self.cap) / RECORD_ALIGN);
        }
        self.pos = end;
        self.stamp = end_stamp;
        wake(&m.ctl().rx);
    }
}

/// The consumer's private state.
#[derive(Debug)]
pub struct Consumer {
    pos: u64,
    /// `stamp(pos)`, kept by [`advance`].
    stamp: u32,
    cap: usize,
    max: usize,
}

impl Consumer {
    /// A consumer of a fresh ring of `cap` bytes accepting payloads up to `max` (the
    /// negotiated maximum, at most [`max_payload`]).
    pub fn new(cap: usize, max: usize) -> Consumer {
        Consumer {
            pos: 0,
            stamp: stamp(0),
            cap,
            max: max.min(max_payload(cap)),
        }
    }

    /// The record at the consumer's position, if one is published.
    ///
    /// # Errors
    ///
    /// [`Corrupt`] for a word no correct producer writes there: a stamp of another position,
    /// a length over the maximum, a record crossing the end of the data area, or a pad where
    /// a record of the maximum size would still fit.
    #[inline]
    pub fn peek<M: RingMem>(&mut self, m: &M) -> Result<Option<Found>, Corrupt> {
        loop {
            let off = offset(self.pos, self.cap);
            let w = m.word(off).load(Ordering::Acquire);
            if w as u32 != self.stamp {
                // Not published yet: a cleared word or one of an earlier lap, which the
                // producer made sure does not carry this position's stamp.
                return Ok(None);
            }
            let bad = |what| Corrupt {
                pos: self.pos,
                word: w,
                what,
            };
            let len = (w >> 32) as u32;
            if len == PAD {
                let left = self.cap - off;
                if off == 0 || left >= record_len(self.max) {
                    return Err(bad("a pad where a record still fits"));
                }
                self.pos += left as u64;
                self.stamp = advance(self.stamp, left as u64);
                continue;
            }
            let len = len as usize;
            if len > self.max {
                return Err(bad("a length above the maximum message size"));
            }
            if off + record_len(len) > self.cap {
                return Err(bad("a record crossing the end of the ring"));
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
        let rec = record_len(len) as u64;
        self.pos += rec;
        self.stamp = advance(self.stamp, rec);
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

/// Ring memory on the heap, for the unit and loom tests: every word an atomic (loom's under
/// loom), so a missing `Acquire`/`Release` shows up there as a stale word.
#[cfg(test)]
pub(crate) struct HeapMem {
    ctl: RingCtl,
    words: Vec<AtomicU64>,
}

#[cfg(test)]
impl HeapMem {
    pub(crate) fn new(cap: usize) -> HeapMem {
        HeapMem {
            ctl: RingCtl::default(),
            words: (0..cap / 8).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

#[cfg(test)]
impl RingMem for HeapMem {
    fn ctl(&self) -> &RingCtl {
        &self.ctl
    }
    fn word(&self, off: usize) -> &AtomicU64 {
        &self.words[off / 8]
    }
    fn write(&self, off: usize, src: &[u8]) {
        assert!(off.is_multiple_of(8));
        for (i, c) in src.chunks(8).enumerate() {
            let w = &self.words[off / 8 + i];
            let mut b = w.load(Ordering::Relaxed).to_le_bytes();
            b[..c.len()].copy_from_slice(c);
            w.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
    }
    fn read(&self, off: usize, dst: &mut [u8]) {
        assert!(off.is_multiple_of(8));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_is_the_line_modulo_2_32_minus_1_plus_one() {
        let check = |line: u64| {
            let want = (line % u64::from(u32::MAX)) as u32 + 1;
            assert_eq!(stamp(line * RECORD_ALIGN as u64), want, "line {line:#x}");
        };
        let m = u64::from(u32::MAX);
        for line in [
            0,
            1,
            m - 1,
            m,
            m + 1,
            2 * m,
            2 * m + 1,
            u64::MAX / 64,
            1 << 32,
            (1 << 33) - 1,
        ] {
            check(line);
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            check(x / RECORD_ALIGN as u64);
        }
    }

    #[test]
    fn advance_keeps_the_stamp_of_the_position() {
        let m = u64::from(u32::MAX);
        let line = RECORD_ALIGN as u64;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Steps of every size a side takes (a record, a pad, up to a whole data area) and
        // beyond (M lines and more), from positions near the stamp's wrap and at random.
        let steps = [0, 1, 2, 63, 64, 1 << 20, m - 1, m, m + 1, 3 * m + 5];
        for base in [0, 1, m - 2, m - 1, m, m + 1, 2 * m - 1] {
            for k in steps {
                let (p, b) = (base * line, k * line);
                assert_eq!(advance(stamp(p), b), stamp(p + b), "line {base} + {k}");
            }
        }
        for _ in 0..100_000 {
            let p = (next() % (1 << 50)) * line;
            let b = (next() % (1 << 30)) * line;
            assert_eq!(advance(stamp(p), b), stamp(p + b), "{p} + {b}");
        }
    }

    #[test]
    fn mark_record_is_a_header_bit_then_payload_bits() {
        // Against the two-step update it replaces, over every start bit and length that
        // stays in one word or crosses into the next ones.
        for first in 0..128 {
            for n in 1..=130 {
                let cap = 512 * RECORD_ALIGN;
                for fill in [0, u64::MAX, 0x5555_5555_5555_5555] {
                    let mut a = Producer::new(cap);
                    a.header_like.fill(fill);
                    let mut b = Producer::new(cap);
                    b.header_like.fill(fill);
                    a.mark_record(first, n);
                    b.set_header_like(first);
                    b.set_payload(first + 1, first + n);
                    assert_eq!(a.header_like, b.header_like, "first {first}, n {n}");
                }
            }
        }
    }
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
                        if end + RECORD_ALIGN as u64 - head <= cap as u64 {
                            // Fits: neither it nor the next header line it clears overlaps a
                            // live record.
                            for &(s, e, _) in &live {
                                let (a, b) = (offset(s, cap), offset(s, cap) + (e - s) as usize);
                                let (c, d) = (offset(start, cap), offset(start, cap) + rec);
                                prop_assert!(b <= c || d <= a, "overlap");
                                let z = offset(end, cap);
                                prop_assert!(b <= z || z + RECORD_ALIGN <= a, "cleared line overlaps");
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

    /// Payload words chosen to look like records: every 64-byte-aligned word of the payload
    /// (where a later lap may look for a header) holds a header stamped for that offset one
    /// to three laps on, with a small length; the other words follow `fill`.
    fn colliding(start: u64, len: usize, cap: usize, fill: u8, seed: u64) -> Vec<u8> {
        let base = offset(start, cap) + payload_gap(len);
        let mut x = seed | 1;
        let mut p = vec![0u8; len];
        for (i, c) in p.chunks_mut(8).enumerate() {
            let at = base + i * 8;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let w = if at.is_multiple_of(RECORD_ALIGN) {
                let later =
                    start - offset(start, cap) as u64 + at as u64 + cap as u64 * (1 + x % 3);
                header(later, (x >> 8) as u32 % 64)
            } else {
                match fill {
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

    /// Sends `msg` if there is room; the start position it went to.
    fn send(p: &mut Producer, m: &HeapMem, msg: &[u8]) -> Option<u64> {
        send_cut(p, m, msg, msg.len())
    }

    /// Sends `msg` in room reserved for `reserved` bytes (at least its length), as a loan
    /// cut short with `commit_len` does.
    fn send_cut(p: &mut Producer, m: &HeapMem, msg: &[u8], reserved: usize) -> Option<u64> {
        let start = p.reserve(m, reserved).expect("head in range")?;
        m.write(p.payload_offset(start, msg.len()), msg);
        p.commit(m, start, msg.len());
        Some(start)
    }

    fn recv(c: &mut Consumer, m: &HeapMem) -> Option<Vec<u8>> {
        let f = c.peek(m).expect("no corrupt header")?;
        let mut got = vec![0u8; f.len];
        m.read(f.off, &mut got);
        c.release(m, f.len);
        Some(got)
    }

    /// The reproduction of issue 13: four 1000-byte messages and one of 56 bytes through a
    /// 4 KiB ring; the first holds the stamp of position 4160 (66) at payload bytes 56..64,
    /// exactly where the consumer looks after the fifth. Before the fix it took that word for
    /// an empty record.
    #[test]
    fn no_phantom_record_after_mixed_sizes() {
        let (cap, max) = (4096, 1024);
        let m = HeapMem::new(cap);
        let (mut p, mut c) = (Producer::new(cap), Consumer::new(cap, max));
        let mut first = vec![0xabu8; 1000];
        first[56..64].copy_from_slice(&66u64.to_le_bytes());
        let sent = [
            first,
            vec![1; 1000],
            vec![2; 1000],
            vec![3; 1000],
            vec![4; 56],
        ];
        for (i, msg) in sent.iter().enumerate() {
            assert!(send(&mut p, &m, msg).is_some(), "message {i} fits");
            assert_eq!(recv(&mut c, &m).as_ref(), Some(msg), "message {i}");
        }
        assert_eq!(recv(&mut c, &m), None, "a message nobody sent");
    }

    /// The same trap at every record size class (up to 56 bytes, 57 bytes to 1 KiB, over
    /// 1 KiB) and across pads at the wrap: each message's aligned words carry headers of later
    /// laps, sent in lockstep and in bursts.
    #[test]
    fn no_phantom_record_at_any_size_class() {
        let cap = 4096;
        let max = max_payload(cap);
        for sizes in [
            &[1000, 1000, 1000, 1000, 56][..],
            &[0, 8, 56, 40, 24, 56, 56][..],
            &[57, 100, 500, 1024, 777, 64, 1000][..],
            &[1025, 1500, max, 1100, max - 1, 1025][..],
            &[1900, 56, 1900, 57, 1900, 1025, 1900, 0][..],
        ] {
            for burst in [1, 3] {
                let m = HeapMem::new(cap);
                let (mut p, mut c) = (Producer::new(cap), Consumer::new(cap, max));
                let mut queue = std::collections::VecDeque::new();
                for round in 0..40u64 {
                    for (i, &len) in sizes.iter().enumerate() {
                        let (start, _) = place(p.pos, record_len(len), cap);
                        let msg = colliding(start, len, cap, (i % 4) as u8, round * 31 + i as u64);
                        while send(&mut p, &m, &msg).is_none() {
                            assert_eq!(recv(&mut c, &m), queue.pop_front(), "{sizes:?}");
                        }
                        queue.push_back(msg);
                        if queue.len() >= burst {
                            assert_eq!(recv(&mut c, &m), queue.pop_front(), "{sizes:?}");
                        }
                    }
                }
                while let Some(want) = queue.pop_front() {
                    assert_eq!(recv(&mut c, &m), Some(want));
                }
                assert_eq!(recv(&mut c, &m), None, "a message nobody sent: {sizes:?}");
            }
        }
    }

    proptest! {
        /// Differential: random sizes (0 to the maximum) with payloads drawn to collide with
        /// headers, sends and receives interleaved at random, through a small ring; what comes
        /// out is what went in, byte for byte, and nothing else.
        #[test]
        fn received_equals_sent(
            cap_shift in 12u32..15,
            ops in prop::collection::vec((any::<bool>(), 0usize..8192, 0u8..4, any::<u64>()), 1..300),
            cut in prop::collection::vec(0usize..300, 1..8),
        ) {
            let cap = 1usize << cap_shift;
            let max = max_payload(cap);
            let m = HeapMem::new(cap);
            let (mut p, mut c) = (Producer::new(cap), Consumer::new(cap, max));
            let mut queue = std::collections::VecDeque::new();
            for (i, (is_send, len, fill, seed)) in ops.into_iter().enumerate() {
                if is_send {
                    let len = len.min(max);
                    // Some loans are cut short: room reserved for more than is committed.
                    let reserved = (len + cut[i % cut.len()]).min(max);
                    let (start, _) = place(p.pos, record_len(reserved), cap);
                    let msg = colliding(start, len, cap, fill, seed);
                    if send_cut(&mut p, &m, &msg, reserved).is_some() {
                        queue.push_back(msg);
                    }
                } else {
                    prop_assert_eq!(recv(&mut c, &m), queue.pop_front());
                }
            }
            while let Some(want) = queue.pop_front() {
                prop_assert_eq!(recv(&mut c, &m), Some(want));
            }
            prop_assert_eq!(recv(&mut c, &m), None);
        }
    }

    /// Words a hostile peer can write make errors, never a panic or an out-of-bounds read.
    #[test]
    fn hostile_words_are_corrupt_not_panics() {
        let cap = 4096;
        let max = 1000;
        let vals = [
            0,
            1,
            max as u64,
            max as u64 + 1,
            u32::MAX as u64,
            1 << 63,
            u64::MAX,
        ];
        // The released position, seen by the producer.
        for &h in &vals[1..] {
            let m = HeapMem::new(cap);
            let mut p = Producer::new(cap);
            for _ in 0..3 {
                send(&mut p, &m, &[7; 1000]).unwrap();
            }
            m.ctl.head.head.store(h, Ordering::Relaxed);
            // Whatever it says, the next reserve that must look at it cannot trust it.
            let r = p.reserve(&m, 1000);
            assert!(r.is_err(), "head {h:#x} gave {r:?}");
        }
        // Header words at the consumer's position, with every length.
        for &len in &vals {
            for stamped in [true, false] {
                let m = HeapMem::new(cap);
                let mut c = Consumer::new(cap, max);
                let low = if stamped { u64::from(stamp(0)) } else { 5 };
                let w = (len << 32) | low;
                m.word(0).store(w, Ordering::Relaxed);
                match c.peek(&m) {
                    Err(_) => assert!(stamped, "{w:#x}"),
                    // Another position's stamp is not a record (yet).
                    Ok(None) => assert!(!stamped, "{w:#x}"),
                    Ok(Some(f)) => {
                        assert!(stamped && f.len <= max && f.off + f.len <= cap, "{f:?}");
                    }
                }
            }
        }
        // A pad at the start of the ring would skip a whole lap.
        let m = HeapMem::new(cap);
        m.word(0).store(header(0, PAD), Ordering::Relaxed);
        assert!(Consumer::new(cap, max).peek(&m).is_err());
        // A record crossing the end.
        let m = HeapMem::new(cap);
        let mut c = Consumer::new(cap, max_payload(cap));
        let mut p = Producer::new(cap);
        for _ in 0..3 {
            send(&mut p, &m, &[1; 960]).unwrap();
            recv(&mut c, &m).unwrap();
        }
        m.word(3072).store(header(3072, 1100), Ordering::Relaxed);
        assert!(c.peek(&m).is_err());
    }

    #[test]
    fn small_messages_fit_one_line() {
        assert_eq!(record_len(0), 64);
        assert_eq!(record_len(56), 64);
        assert_eq!(record_len(57), 128);
        assert_eq!(stamp(0), 1);
        assert_ne!(header(0, 0), 0);
        // Never 0, however far the positions run: a cleared word is never a record.
        let wrap = u64::from(u32::MAX) * RECORD_ALIGN as u64;
        for p in [wrap - 64, wrap, wrap + 64, u64::MAX - 63] {
            assert_ne!(stamp(p), 0, "{p}");
        }
        // A lap of any capacity moves the stamp.
        for k in 12..40 {
            assert_ne!(stamp(4096), stamp(4096 + (1u64 << k)));
        }
    }

    #[test]
    fn payload_bits_clear_exactly_the_range() {
        // Every range of a 200-line ring against a bit-by-bit model.
        for from in 0..200 {
            for to in from..=200 {
                let mut p = Producer::new(200 * RECORD_ALIGN);
                p.set_payload(from, to);
                for l in 0..200 {
                    assert_eq!(
                        p.is_header_like(l),
                        !(from..to).contains(&l),
                        "{from}..{to}: {l}"
                    );
                }
            }
        }
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
}
