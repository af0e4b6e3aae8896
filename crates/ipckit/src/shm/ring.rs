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
        !self.is_header_like(off / RECORD_ALIGN)
            && m.word(off).load(Ordering::Relaxed) as u32 == end_stamp
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
            self.mark_record_wide(first, n);
        }
    }

    /// [`Producer::mark_record`] for a record whose lines span bitmap words: large records,
    /// out of the small-message path.
    #[cold]
    #[inline(never)]
    fn mark_record_wide(&mut self, first: usize, n: usize) {
        self.set_header_like(first);
        self.set_payload(first + 1, first + n);
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
    #[inline(always)]
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
        if !self.is_header_like(off / RECORD_ALIGN) {
            prefetch_write(m.word(off));
        }
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
    #[inline(always)]
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
    #[inline(always)]
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
    #[inline(always)]
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
mod tests;

#[cfg(all(test, ipckit_loom))]
mod loom_tests;
