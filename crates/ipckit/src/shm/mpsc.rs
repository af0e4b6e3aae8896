//! The MPSC queue: many producer processes, one consumer process, fixed-size slots.
//!
//! # Layout
//!
//! One segment ([`MPSC_LAYOUT`]): a header with the geometry and the receiver's hello, the
//! control lines (the enqueue position `tail`, the consumer's wait line, the producers' wait
//! line, each on its own 128-byte line), a table of [`MAX_PRODUCERS`] producer entries, then
//! `slots` slots of `stride` bytes each, `stride` a multiple of 64 so every slot starts a
//! cache line. A slot is a sequence word, a length word and `slot_size` payload bytes; a slot
//! of up to 48 payload bytes is one cache line.
//!
//! # Protocol
//!
//! Dmitry Vyukov's bounded queue, with the claim recorded in the sequence word. Positions are
//! absolute counts; position `p` lives in slot `p & (slots - 1)`. A slot's word is
//! `seq << 8 | tag`: `FREE` (the slot waits for position `seq`), `PUBLISHED` (it holds
//! position `seq`'s message) or `CLAIMED + i` (producer entry `i` is writing position `seq`).
//!
//! - A producer reads `tail` and compare-and-swaps the slot's word from `FREE(tail)` to
//!   `CLAIMED(tail, me)` (`Acquire`: the consumer's last read of that slot is done), then moves
//!   `tail` on with a CAS that may fail harmlessly. A producer that finds the slot claimed or
//!   published for `tail` moves `tail` on for the claimer; so a producer that dies between its
//!   claim and its move of `tail` stops nobody. A slot still holding the previous lap means the
//!   queue is full.
//! - It writes the length and payload, then stores `PUBLISHED(pos)` (`Release`).
//! - The single consumer needs no CAS: it loads the word of its own position (`Acquire`),
//!   copies the message out, and stores `FREE(pos + slots)` (`Release`).
//!
//! Because the claim names the claimer in the same word, a slot claimed by a producer that
//! then died is recognised: the consumer skips it and counts it in [`MpscReceiver::lost`].
//!
//! # Who is there
//!
//! A producer registers in the table when it opens (its entry holds its hello: pid, start
//! time, boot id, pid namespace) and frees its entry when dropped. The consumer looks at the
//! table (a "scan") whenever it has waited [`SCAN`] for a message, and at once when a producer
//! leaves or registers (a producer wakes it after registering); it watches each producer with
//! a pidfd, and a thread per producer waiting on a copy of that pidfd wakes the consumer for
//! a look when the producer dies. A producer found dead has its entry marked
//! dead; the entry is reused only once the consumer has passed every position it could have
//! claimed, so a claim's entry index always names its own claimer.
//!
//! Producers watch the consumer with a pidfd in a small thread (as the ring pair does): when
//! the consumer dies the thread wakes every producer asleep on a full queue.
//!
//! # Sleeping
//!
//! As in the ring (see `ring.rs`): a side that may sleep says so, and the other side pays a
//! `SeqCst` fence and a look at the sleepers only then, so spinning sides cost no fence. The
//! consumer's line is a [`WaitLine`]; the producers share one line whose `may_sleep` and
//! `sleeping` words are bitmaps of producer entries, so a producer killed in its sleep is
//! cleared by the consumer instead of leaving a count that makes every receive pay a wake-up.
//! A freed slot wakes every sleeping producer; they race for it, and the losers sleep again.

use super::endpoint::{get_hello, put_hello};
use super::region::Region;
use super::ring::{self, WaitLine};
use super::segment::{Layout, Segment, SegmentBuilder};
use super::sync::{fence, futex_wake, AtomicU32, AtomicU64, Ordering};
use super::wait::wait_on;
use crate::error::invalid;
use crate::peer::{self, Hello, Watcher};
use crate::sys::fd as sysfd;
use crate::transport::PeerInfo;
use crate::wait::{Deadline, Wait};
use crate::{RecvError, SendError};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The layout of an MPSC queue segment.
pub const MPSC_LAYOUT: Layout = Layout {
    kind: 2,
    version: 1,
};

/// Producers attached at once, at most (one bit each in the producers' wait line).
pub const MAX_PRODUCERS: usize = 64;
/// Slots unless asked otherwise: with [`DEFAULT_SLOT_SIZE`], 256 KiB, the ring's default.
pub const DEFAULT_SLOTS: usize = 1024;
/// Payload bytes per slot unless asked otherwise: a slot is then four cache lines.
pub const DEFAULT_SLOT_SIZE: usize = 240;
/// Most slots a queue may have.
pub const MAX_SLOTS: usize = 1 << 24;
/// Largest payload a slot may carry (its length is a `u32`; 1 GiB is far beyond any sane
/// queue already).
pub const MAX_SLOT_SIZE: usize = 1 << 30;
/// Bytes of a slot before its payload: the sequence word and the length.
const SLOT_HEADER: usize = 16;
/// A blocked or spinning consumer looks for producers that died without a word (SIGKILL)
/// this often. A scan is one `poll` per attached producer.
const SCAN: Duration = Duration::from_millis(20);
/// A producer entry left half-registered this long (its process was killed while opening)
/// is freed.
const REGISTER_GRACE: Duration = Duration::from_secs(1);

const HDR_OFF: usize = 0;
const CTL_OFF: usize = 512;
const TABLE_OFF: usize = 1024;
const ENTRY_LEN: usize = 64;
/// Page-aligned start of the slots.
const SLOTS_OFF: usize = 8192;

// ---------------------------------------------------------------------------------------
// Slot words.

const TAG_BITS: u32 = 8;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
const FREE: u64 = 0;
const PUBLISHED: u64 = 1;
/// `CLAIMED + i`: claimed by producer entry `i`.
const CLAIMED: u64 = 2;

/// The word `seq << 8 | tag` (the sequence keeps its low 56 bits).
#[inline]
fn pack(seq: u64, tag: u64) -> u64 {
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
            super::sync::spin();
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
            super::sync::spin();
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
fn wake_space(line: &SpaceLine) {
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
// The segment.

/// The queue's header, at the start of the segment's data.
#[repr(C, align(128))]
struct MpscHeader {
    slots: AtomicU64,
    slot_size: AtomicU64,
    stride: AtomicU64,
    max_producers: AtomicU64,
    /// Producers that ever registered.
    opened: AtomicU64,
    /// Producers that left cleanly: the consumer scans the table when this moves.
    left: AtomicU64,
    receiver: [AtomicU64; 6],
}

/// A producer entry: `state` is `token << 8 | ENTRY_*`, the token unique to one
/// registration (pid and a counter), so no compare-and-swap on a stale state succeeds.
#[repr(C, align(64))]
struct Entry {
    state: AtomicU64,
    hello: [AtomicU64; 6],
}

const ENTRY_FREE: u64 = 0;
const ENTRY_CLAIMING: u64 = 1;
const ENTRY_LIVE: u64 = 2;
const ENTRY_DEAD: u64 = 3;

#[cfg(not(ipckit_loom))]
const _: () = {
    assert!(std::mem::size_of::<MpscHeader>() <= CTL_OFF - HDR_OFF);
    assert!(std::mem::size_of::<QueueCtl>() <= TABLE_OFF - CTL_OFF);
    assert!(std::mem::size_of::<Entry>() == ENTRY_LEN);
    assert!(TABLE_OFF + MAX_PRODUCERS * ENTRY_LEN <= SLOTS_OFF);
    assert!(MAX_PRODUCERS <= 64 && CLAIMED + MAX_PRODUCERS as u64 <= TAG_MASK);
};

// SAFETY: atomics only; any bit pattern is a valid value.
#[allow(unsafe_code)]
unsafe impl super::region::Shared for MpscHeader {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl super::region::Shared for Entry {}
// SAFETY: as above (the padding of `SpaceLine` is an `AtomicU32` too).
#[allow(unsafe_code)]
unsafe impl super::region::Shared for QueueCtl {}

/// The views of a queue segment. `'static` stands for "as long as the segment": every holder
/// keeps the `Segment` as its last field and joins its watcher thread before it drops.
#[derive(Clone, Copy)]
struct ShmQueue {
    hdr: &'static MpscHeader,
    ctl: &'static QueueCtl,
    table: Region<'static>,
    slots: Region<'static>,
    stride: usize,
}

impl QueueMem for ShmQueue {
    #[inline]
    fn ctl(&self) -> &QueueCtl {
        self.ctl
    }
    #[inline]
    fn seq(&self, slot: usize) -> &AtomicU64 {
        self.slots.at(slot * self.stride)
    }
    #[inline]
    fn len(&self, slot: usize) -> &AtomicU32 {
        self.slots.at(slot * self.stride + 8)
    }
    #[inline]
    fn write(&self, slot: usize, src: &[u8]) {
        self.slots.copy_in(slot * self.stride + SLOT_HEADER, src);
    }
    #[inline]
    fn read(&self, slot: usize, dst: &mut [u8]) {
        self.slots.copy_out(slot * self.stride + SLOT_HEADER, dst);
    }
}

impl ShmQueue {
    fn entry(&self, idx: usize) -> &'static Entry {
        self.table.at(idx * ENTRY_LEN)
    }
}

/// The slot geometry of `opts`: (slots, stride, segment data size).
fn geometry(slots: usize, slot_size: usize) -> io::Result<(usize, usize)> {
    if slots == 0 || !slots.is_power_of_two() {
        return Err(invalid(format!(
            "an MPSC queue needs a power of two of slots (1, 2, 4, ...), not {slots}"
        )));
    }
    if slots > MAX_SLOTS {
        return Err(invalid(format!(
            "an MPSC queue has at most {MAX_SLOTS} slots, not {slots}"
        )));
    }
    if slot_size == 0 {
        return Err(invalid(
            "a slot size of 0 bytes is not allowed: a slot carries at least one payload byte",
        ));
    }
    if slot_size > MAX_SLOT_SIZE {
        return Err(invalid(format!(
            "a slot size of {slot_size} bytes is over the maximum of {MAX_SLOT_SIZE}"
        )));
    }
    let stride = (SLOT_HEADER + slot_size).next_multiple_of(64);
    let total = slots
        .checked_mul(stride)
        .and_then(|b| b.checked_add(SLOTS_OFF))
        .filter(|t| *t <= isize::MAX as usize / 4)
        .ok_or_else(|| {
            invalid(format!(
                "{slots} slots of {slot_size} bytes are too large a queue"
            ))
        })?;
    Ok((stride, total))
}

fn views(seg: &Segment, slots: usize, stride: usize) -> io::Result<ShmQueue> {
    let need = slots
        .checked_mul(stride)
        .and_then(|b| b.checked_add(SLOTS_OFF))
        .unwrap_or(usize::MAX);
    if seg.len() < need {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "segment of {} bytes is too small for {slots} slots of {stride} bytes",
                seg.len()
            ),
        ));
    }
    let r = detached(seg);
    Ok(ShmQueue {
        hdr: r.at(HDR_OFF),
        ctl: r.at(CTL_OFF),
        table: r.sub(TABLE_OFF, MAX_PRODUCERS * ENTRY_LEN),
        slots: r.sub(SLOTS_OFF, slots * stride),
        stride,
    })
}

#[allow(unsafe_code)]
fn detached(seg: &Segment) -> Region<'static> {
    // SAFETY: callers keep the segment alive longer than every use of the region (see
    // `ShmQueue`).
    unsafe { seg.region().detach() }
}

/// How to make an MPSC queue.
#[derive(Debug, Clone, Copy)]
pub struct MpscOptions {
    /// Number of slots: a power of two, at most [`MAX_SLOTS`].
    pub slots: usize,
    /// Payload bytes per slot, the largest message (1 to [`MAX_SLOT_SIZE`]).
    pub slot_size: usize,
    /// The receiver's wait strategy.
    pub wait: Wait,
    /// Permission bits (0600).
    pub mode: u32,
    /// Fault the pages in at creation (`MAP_POPULATE`).
    pub populate: bool,
}

impl Default for MpscOptions {
    fn default() -> Self {
        MpscOptions {
            slots: DEFAULT_SLOTS,
            slot_size: DEFAULT_SLOT_SIZE,
            wait: Wait::Block,
            mode: 0o600,
            populate: true,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Waiting.

/// Producer entry `bit`'s place on the producers' line.
struct ProducerSleep<'a> {
    line: &'a SpaceLine,
    bit: u64,
}

impl super::wait::Sleeper for ProducerSleep<'_> {
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

// ---------------------------------------------------------------------------------------
// The receiver.

/// A producer the consumer has seen registered, and how it watches it.
struct Watched {
    /// The entry's state word when seen.
    state: u64,
    /// Its pidfd (or a descriptor readable from the start, if it was already gone); `None`
    /// if it cannot be watched.
    fd: Option<OwnedFd>,
    /// pid and start time, for kernels without pidfds; `None` for a producer in another
    /// pid namespace or on another kernel, which cannot be watched at all.
    local: Option<(u32, u64)>,
    /// A thread waiting on a copy of the pidfd, which wakes the consumer when the producer
    /// dies (so a stuck claim is skipped, or `PeerGone` comes, within about a millisecond
    /// rather than at the next timed look). Dropped (stopped and joined) with the entry.
    _watcher: Option<Watcher>,
}

impl Watched {
    fn alive(&self) -> bool {
        match (&self.fd, self.local) {
            (Some(fd), _) => !matches!(sysfd::revents(fd.as_fd(), libc::POLLIN), Ok(r) if r != 0),
            (None, Some((pid, start))) => crate::is_alive(pid, start),
            (None, None) => true,
        }
    }
}

/// The consumer's knowledge of the producer table.
struct Watch {
    seen: Vec<Option<Watched>>,
    /// Entries half-registered when first seen: their state word and when.
    claiming: Vec<Option<(u64, Instant)>>,
    /// Entries this consumer marked dead, and `tail` when it did: the dead producer's claim,
    /// if any, is at or before it.
    dead: Vec<(usize, u64)>,
    last_scan: Instant,
    seen_left: u64,
    seen_opened: u64,
    /// True if the last scan found producers had registered and none is attached now.
    gone: bool,
    /// Set by a producer's watcher thread when it dies: look at the table now.
    died: Arc<AtomicBool>,
    present: usize,
    received: u32,
}

impl Watch {
    fn new() -> Watch {
        Watch {
            seen: (0..MAX_PRODUCERS).map(|_| None).collect(),
            claiming: vec![None; MAX_PRODUCERS],
            dead: Vec::new(),
            last_scan: Instant::now(),
            seen_left: 0,
            seen_opened: 0,
            gone: false,
            died: Arc::new(AtomicBool::new(false)),
            present: 0,
            received: 0,
        }
    }

    /// Time for a look at the table: a producer died (its watcher said so), left, or
    /// registered (it wakes the consumer, which starts to watch it), or [`SCAN`] has passed.
    fn due(&self, q: &ShmQueue) -> bool {
        self.died.load(Ordering::Acquire)
            || q.hdr.left.load(Ordering::Relaxed) != self.seen_left
            || q.hdr.opened.load(Ordering::Relaxed) != self.seen_opened
            || self.last_scan.elapsed() >= SCAN
    }

    /// Still "all gone": no producer registered since the scan that found them gone.
    fn still_gone(&self, q: &ShmQueue) -> bool {
        self.gone && q.hdr.opened.load(Ordering::Acquire) == self.seen_opened
    }

    fn alive(&mut self, q: &ShmQueue, e: &Entry, idx: usize, state: u64) -> bool {
        if let Some(w) = &self.seen[idx] {
            if w.state == state {
                return w.alive();
            }
        }
        let Some(hello) = get_hello(&e.hello) else {
            // Not a hello: nothing to watch. Counted as attached, never declared dead.
            return true;
        };
        let (info, fd) = peer::watch(&hello);
        let mut w = Watched {
            state,
            fd,
            local: info.map(|_| (hello.pid, hello.start)),
            _watcher: None,
        };
        let alive = w.alive();
        if alive {
            w._watcher = w.fd.as_ref().and_then(|fd| self.watcher(q, fd.as_fd()));
        }
        self.seen[idx] = Some(w);
        alive
    }

    /// Starts a thread that wakes the consumer when the process behind `pidfd` ends; `None`
    /// if it cannot (then the timed looks find the death).
    fn watcher(&self, q: &ShmQueue, pidfd: std::os::fd::BorrowedFd<'_>) -> Option<Watcher> {
        let fd = sysfd::dup(pidfd).ok()?;
        let died = self.died.clone();
        // 'static: the watcher is joined when dropped, with this `Watch`, before the segment
        // (see `ShmQueue`).
        let rx = &q.ctl.rx;
        Watcher::start("ipckit-mpsc-rx-watch", fd, move |_| {
            died.store(true, Ordering::SeqCst);
            rx.seq.fetch_add(1, Ordering::SeqCst);
            futex_wake(&rx.seq);
        })
        .ok()
    }

    /// Looks at every producer entry: marks the dead, frees entries left half-registered,
    /// skips the claims of the dead at the consumer's position, and reuses the entries of the
    /// dead the consumer has passed. Returns the number of slots skipped.
    fn scan(&mut self, q: &ShmQueue, cons: &mut Consumer) -> u64 {
        let now = Instant::now();
        self.last_scan = now;
        self.died.store(false, Ordering::SeqCst);
        self.seen_left = q.hdr.left.load(Ordering::Acquire);
        self.seen_opened = q.hdr.opened.load(Ordering::Acquire);
        let mut present = 0;
        for idx in 0..MAX_PRODUCERS {
            let e = q.entry(idx);
            let st = e.state.load(Ordering::Acquire);
            match st & TAG_MASK {
                ENTRY_FREE => {
                    self.seen[idx] = None;
                    self.claiming[idx] = None;
                }
                ENTRY_CLAIMING => match self.claiming[idx] {
                    Some((w, t)) if w == st && now.duration_since(t) >= REGISTER_GRACE => {
                        // A producer died while opening (it cannot have claimed a slot yet).
                        let _ = e.state.compare_exchange(
                            st,
                            ENTRY_FREE,
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        );
                        self.claiming[idx] = None;
                    }
                    Some((w, _)) if w == st => present += 1,
                    _ => {
                        self.claiming[idx] = Some((st, now));
                        present += 1;
                    }
                },
                ENTRY_LIVE => {
                    if self.alive(q, e, idx, st) {
                        present += 1;
                    } else if e
                        .state
                        .compare_exchange(
                            st,
                            (st & !TAG_MASK) | ENTRY_DEAD,
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        self.seen[idx] = None;
                        let bit = !(1u64 << idx);
                        q.ctl.tx.may_sleep.fetch_and(bit, Ordering::SeqCst);
                        q.ctl.tx.sleeping.fetch_and(bit, Ordering::SeqCst);
                        self.dead
                            .push((idx, q.ctl.tail.tail.load(Ordering::Acquire)));
                    }
                    // else: the state changed under us; the next scan looks again.
                }
                _ => {} // ENTRY_DEAD: ours, retired below.
            }
        }
        self.present = present;
        self.gone = self.seen_opened > 0 && present == 0;
        let mut skipped = 0;
        while let Head::Claimed(idx) = cons.peek(q) {
            let st = q.entry(idx).state.load(Ordering::Acquire);
            if st & TAG_MASK != ENTRY_DEAD {
                break;
            }
            // Claimed by a producer that died before publishing: nobody will.
            cons.skip(q);
            skipped += 1;
        }
        if skipped > 0 {
            wake_space(&q.ctl.tx);
        }
        let head = cons.head();
        self.dead.retain(|&(idx, tail)| {
            if head >= tail {
                // Every position the dead producer could have claimed is behind us.
                q.entry(idx).state.store(ENTRY_FREE, Ordering::Release);
                false
            } else {
                true
            }
        });
        skipped
    }
}

/// The consumer of an MPSC queue: creates the segment and receives from every producer.
///
/// ```no_run
/// use ipckit::shm::{MpscOptions, MpscReceiver, MpscSender};
/// use ipckit::Wait;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Process 1: the one consumer.
/// let opts = MpscOptions { slots: 1024, slot_size: 240, ..MpscOptions::default() };
/// let mut rx = MpscReceiver::create("/jobs", &opts)?; // owner-only, exclusive
/// let mut buf = vec![0; rx.max_msg_size()];
/// let n = rx.recv(&mut buf)?; // PeerGone once every producer is gone and all is read
///
/// // Processes 2, 3, ...: any number of producers.
/// let mut tx = MpscSender::open("/jobs", Wait::Block)?;
/// tx.send(b"job 1")?; // PeerGone, never a hang, if the consumer dies
/// # Ok(()) }
/// ```
///
/// # Producers that come and go
///
/// [`MpscReceiver::recv`] returns [`RecvError::PeerGone`] once at least one producer has
/// opened the queue, none is attached now, and every message published has been read.
/// Before the first producer opens, `recv` waits; after `PeerGone`, a producer that opens
/// makes it wait and deliver again.
///
/// The receiver looks at the producer table at once when a producer opens the queue or is
/// dropped, and every 20 ms while it waits. It watches each producer with a pidfd, and a
/// small thread per producer waits on that pidfd and wakes the receiver when the producer
/// ends. So a producer that exits or is SIGKILLed is noticed at once: measured here,
/// `PeerGone` came 0.3-0.5 ms after the last producer was killed.
///
/// A producer killed between claiming a slot and publishing it (at any step: claimed, half
/// written, written but not published) leaves the slot claimed. While the claimer lives, the
/// receiver waits for it (it is a send in progress); once it is dead, the receiver skips the
/// slot and counts it in [`MpscReceiver::lost`] (measured: 0.4-0.5 ms after the kill).
/// Everything it published before is delivered.
///
/// # Limits
///
/// - Slots are taken in order, so a producer *stopped* (SIGSTOP, a debugger) between its
///   claim and its publish holds up the receiver until it runs again; the others fill the
///   queue and wait. Only death is detected, not slowness.
/// - A producer in another pid namespace or on another kernel cannot be watched: its death
///   is never noticed (its claim is never skipped, and `PeerGone` does not come while it is
///   registered). Its clean drop is seen as any other.
/// - At most [`MAX_PRODUCERS`] producers at once; each watched producer costs the receiver
///   a thread asleep in `poll` (and two descriptors) while it is attached.
/// - A receiver that is killed cannot unlink the segment: `ipckit clean` removes it, as its
///   registry record names a dead creator.
/// - A slot freed wakes every producer asleep on a full queue; they race for it and the
///   others sleep again.
pub struct MpscReceiver {
    q: ShmQueue,
    cons: Consumer,
    slots: usize,
    max: usize,
    wait: Wait,
    woke_up_at: Option<Instant>,
    watch: Watch,
    lost: u64,
    seg: Segment,
}

impl fmt::Debug for MpscReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpscReceiver")
            .field("segment", &self.seg)
            .field("slots", &self.slots)
            .field("max", &self.max)
            .field("wait", &self.wait)
            .field("lost", &self.lost)
            .finish()
    }
}

impl MpscReceiver {
    /// Creates the queue segment `name` (`/name`), exclusively, owner-only, recorded in the
    /// registry; its name is removed when the receiver is dropped.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad name (empty, or with a '/' other than a leading one), a slot
    /// count that is not a power of two, a slot size of 0 or over [`MAX_SLOT_SIZE`];
    /// `AlreadyExists`; or the OS error.
    pub fn create(name: &str, opts: &MpscOptions) -> io::Result<MpscReceiver> {
        let (stride, total) = geometry(opts.slots, opts.slot_size)?;
        let mut seg = SegmentBuilder::new(total)
            .mode(opts.mode)
            .layout(MPSC_LAYOUT)
            .populate(opts.populate)
            .create(name)?;
        let q = views(&seg, opts.slots, stride)?;
        q.hdr.slots.store(opts.slots as u64, Ordering::Relaxed);
        q.hdr
            .slot_size
            .store(opts.slot_size as u64, Ordering::Relaxed);
        q.hdr.stride.store(stride as u64, Ordering::Relaxed);
        q.hdr
            .max_producers
            .store(MAX_PRODUCERS as u64, Ordering::Relaxed);
        put_hello(&q.hdr.receiver, &Hello::mine());
        // Slot `i` waits for position `i` (slot 0's zeroes already say so).
        for i in 1..opts.slots {
            q.seq(i).store(pack(i as u64, FREE), Ordering::Relaxed);
        }
        // The magic's Release store publishes all of the above.
        seg.publish();
        let mut rx = MpscReceiver {
            q,
            cons: Consumer::new(opts.slots, opts.slot_size),
            slots: opts.slots,
            max: opts.slot_size,
            wait: Wait::Spin,
            woke_up_at: None,
            watch: Watch::new(),
            lost: 0,
            seg,
        };
        rx.set_wait(opts.wait);
        Ok(rx)
    }

    /// The segment's name, for the producers.
    pub fn name(&self) -> &str {
        self.seg.name().unwrap_or("")
    }

    /// The segment behind the queue.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The largest message: the slot size.
    pub fn max_msg_size(&self) -> usize {
        self.max
    }

    /// The wait strategy.
    pub fn wait(&self) -> Wait {
        self.wait
    }

    /// Changes the wait strategy; publishes whether the receiver may now sleep.
    pub fn set_wait(&mut self, wait: Wait) {
        let sleeps = u32::from(wait != Wait::Spin);
        if self.q.ctl.rx.may_sleep.swap(sleeps, Ordering::SeqCst) == 0 && sleeps == 1 {
            self.woke_up_at = Some(Instant::now());
        }
        self.wait = wait;
    }

    /// Messages lost: slots claimed by a producer that died before publishing them (and
    /// slots whose contents were corrupt), skipped.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Producers attached at the last look at the table (the consumer looks while it waits).
    pub fn producers(&self) -> usize {
        self.watch.present
    }

    /// Receives one message into `buf`, waiting under the wait strategy.
    ///
    /// # Errors
    ///
    /// [`RecvError::PeerGone`] once producers have opened the queue, none is attached now
    /// (each was dropped, exited or was killed) and every message published has been read;
    /// before any producer opens it, `recv` waits. [`RecvError::BufferTooSmall`] (the message
    /// is left in place); `Io(InvalidData)` for a slot no correct producer wrote (skipped
    /// and counted in [`MpscReceiver::lost`]).
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_deadline(buf, Deadline::Never)
    }

    /// Receives a message if one is ready now.
    ///
    /// # Errors
    ///
    /// [`RecvError::Empty`], or as [`MpscReceiver::recv`].
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_deadline(buf, Deadline::Now)
    }

    /// Receives a message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvError::Timeout`], or as [`MpscReceiver::recv`].
    pub fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, RecvError> {
        self.recv_deadline(buf, Deadline::after(timeout))
    }

    /// Receives a message, waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As [`MpscReceiver::recv`], [`MpscReceiver::try_recv`] and
    /// [`MpscReceiver::recv_timeout`].
    #[inline]
    pub fn recv_deadline(
        &mut self,
        buf: &mut [u8],
        deadline: Deadline,
    ) -> Result<usize, RecvError> {
        let len = match self.cons.peek(&self.q) {
            Head::Ready(len) => len,
            _ => self.next(deadline)?,
        };
        if len > buf.len() {
            return Err(RecvError::BufferTooSmall { needed: len });
        }
        self.cons.read(&self.q, &mut buf[..len]);
        self.cons.release(&self.q);
        wake_space(&self.q.ctl.tx);
        // A consumer that never waits still looks at the table now and then, so the
        // entries of dead producers are reused.
        self.watch.received = self.watch.received.wrapping_add(1);
        if self.watch.received.is_multiple_of(4096) && self.watch.due(&self.q) {
            self.lost += self.watch.scan(&self.q, &mut self.cons);
        }
        Ok(len)
    }

    #[cold]
    fn next(&mut self, deadline: Deadline) -> Result<usize, RecvError> {
        let q = self.q;
        let (cons, watch, lost) = (&mut self.cons, &mut self.watch, &mut self.lost);
        wait_on(
            self.wait,
            deadline,
            &q.ctl.rx,
            &mut self.woke_up_at,
            Some(SCAN),
            |slow| {
                let mut scanned = false;
                loop {
                    match cons.peek(&q) {
                        Head::Ready(len) => return Ok(Some(len)),
                        Head::Corrupt(w) => {
                            let pos = cons.head();
                            cons.skip(&q);
                            wake_space(&q.ctl.tx);
                            *lost += 1;
                            return Err(RecvError::Io(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!(
                                    "corrupt MPSC slot: word {w:#018x} at position {pos} (a \
                                     process wrote outside the protocol); skipped"
                                ),
                            )));
                        }
                        Head::Claimed(idx) => {
                            // A claim in progress, unless its producer is known dead (found
                            // so by an earlier scan, while the consumer was further back).
                            let dead =
                                q.entry(idx).state.load(Ordering::Acquire) & TAG_MASK == ENTRY_DEAD;
                            if scanned || !(dead || slow && watch.due(&q)) {
                                return Ok(None);
                            }
                        }
                        Head::Empty => {
                            if scanned || watch.still_gone(&q) {
                                // Whatever the producers published before leaving was
                                // delivered first: this look at the queue came after the
                                // look at the table.
                                return if watch.gone {
                                    Err(RecvError::PeerGone)
                                } else {
                                    Ok(None)
                                };
                            }
                            if !slow || !watch.due(&q) {
                                return Ok(None);
                            }
                        }
                    }
                    *lost += watch.scan(&q, cons);
                    scanned = true;
                }
            },
        )
    }
}

impl Drop for MpscReceiver {
    fn drop(&mut self) {
        // Producers see PeerGone from now on; wake those asleep on a full queue.
        self.q.ctl.rx.closed.store(1, Ordering::Release);
        self.q.ctl.tx.seq.fetch_add(1, Ordering::SeqCst);
        futex_wake(&self.q.ctl.tx.seq);
        // The segment (last field) unlinks the name and removes the registry record.
    }
}

// ---------------------------------------------------------------------------------------
// The producers.

/// One producer of an MPSC queue. Any number of processes (up to [`MAX_PRODUCERS`] at once)
/// may each open their own; see [`MpscReceiver`] for an example.
///
/// A send claims a slot with one compare-and-swap on the slot, moves the shared enqueue
/// position on with another, copies the message and publishes it: it never waits for
/// another producer.
///
/// # The receiver dies
///
/// Each sender watches the receiver with a pidfd, in a small thread. When the receiver exits
/// or is killed, a `send` blocked on a full queue returns [`SendError::PeerGone`] (measured
/// here: 0.3-0.7 ms after a SIGKILL, under every wait strategy) and every later call returns
/// it at once. A dropped receiver marks the queue closed, with the same effect. Messages still
/// queued then are lost with the receiver. A receiver in another pid namespace cannot be
/// watched: only its clean drop is seen.
pub struct MpscSender {
    q: ShmQueue,
    idx: usize,
    mask: usize,
    max: usize,
    wait: Wait,
    woke_up_at: Option<Instant>,
    receiver: Option<PeerInfo>,
    dead: Arc<AtomicBool>,
    watcher: Option<Watcher>,
    /// A claim of ours will never be published (see `abandon_claim`).
    abandoned: bool,
    seg: Segment,
}

impl fmt::Debug for MpscSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpscSender")
            .field("segment", &self.seg)
            .field("entry", &self.idx)
            .field("max", &self.max)
            .field("wait", &self.wait)
            .field("receiver", &self.receiver)
            .finish()
    }
}

/// A token unique to one registration of this process: its pid and a counter.
fn token() -> u64 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xff_ffff;
    (u64::from(crate::sys::proc::getpid()) << 24) | u64::from(n)
}

fn refused(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, msg)
}

impl MpscSender {
    /// Opens the queue `name` made by [`MpscReceiver::create`] and registers as a producer.
    ///
    /// # Errors
    ///
    /// `NotFound`; `InvalidData` for a segment of another layout or version or with a bad
    /// geometry; `ConnectionRefused` if its receiver is gone or closed; `AddrInUse` if
    /// [`MAX_PRODUCERS`] producers are attached already; or the OS error.
    pub fn open(name: &str, wait: Wait) -> io::Result<MpscSender> {
        let seg = SegmentBuilder::new(1)
            .layout(MPSC_LAYOUT)
            .open_existing(name)?;
        let bad = |what: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{name}: {what} in the header is not valid"),
            )
        };
        let (slots, slot_size, stride, maxp) = {
            // The header is published: open_existing saw the magic.
            let hdr: &MpscHeader = seg.region().at(HDR_OFF);
            let l = |a: &AtomicU64| a.load(Ordering::Relaxed) as usize;
            (
                l(&hdr.slots),
                l(&hdr.slot_size),
                l(&hdr.stride),
                l(&hdr.max_producers),
            )
        };
        let (want_stride, _) = geometry(slots, slot_size).map_err(|e| {
            bad(format!(
                "the geometry ({slots} slots of {slot_size} bytes: {e})"
            ))
        })?;
        if stride != want_stride {
            return Err(bad(format!("slot stride {stride}")));
        }
        if maxp != MAX_PRODUCERS {
            return Err(bad(format!("a producer table of {maxp}")));
        }
        let q = views(&seg, slots, stride)?;
        let server =
            get_hello(&q.hdr.receiver).ok_or_else(|| bad("the receiver's hello".into()))?;
        if q.ctl.rx.closed.load(Ordering::Acquire) != 0 {
            return Err(refused(format!("{name}: its receiver has closed it")));
        }
        let (receiver, pidfd) = peer::watch(&server);
        if let Some(fd) = &pidfd {
            if sysfd::revents(fd.as_fd(), libc::POLLIN)? != 0 {
                return Err(refused(format!(
                    "{name}: its receiver (pid {}) is gone",
                    server.pid
                )));
            }
        }
        let idx = register(&q).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{name}: all {MAX_PRODUCERS} producer entries are in use"),
            )
        })?;
        // Wake a waiting consumer: it looks at the table and starts to watch this process at
        // once, so a death even before the first publish is noticed within a millisecond.
        q.ctl.rx.seq.fetch_add(1, Ordering::SeqCst);
        futex_wake(&q.ctl.rx.seq);
        let dead = Arc::new(AtomicBool::new(false));
        let mut tx = MpscSender {
            q,
            idx,
            mask: slots - 1,
            max: slot_size,
            wait: Wait::Spin,
            woke_up_at: None,
            receiver,
            dead: dead.clone(),
            watcher: None,
            abandoned: false,
            seg,
        };
        // From here, dropping `tx` deregisters.
        if let Some(fd) = pidfd {
            // Wakes this process's producers asleep on a full queue (others have their own).
            let seq = &q.ctl.tx.seq;
            tx.watcher = Some(Watcher::start("ipckit-mpsc-watch", fd, move |_| {
                dead.store(true, Ordering::SeqCst);
                seq.fetch_add(1, Ordering::SeqCst);
                futex_wake(seq);
            })?);
        }
        tx.set_wait(wait);
        Ok(tx)
    }

    /// The largest message: the queue's slot size.
    pub fn max_msg_size(&self) -> usize {
        self.max
    }

    /// The wait strategy.
    pub fn wait(&self) -> Wait {
        self.wait
    }

    /// Changes the wait strategy; publishes whether this producer may now sleep.
    pub fn set_wait(&mut self, wait: Wait) {
        let bit = 1u64 << self.idx;
        let line = &self.q.ctl.tx.may_sleep;
        if wait == Wait::Spin {
            line.fetch_and(!bit, Ordering::SeqCst);
        } else if line.fetch_or(bit, Ordering::SeqCst) & bit == 0 {
            self.woke_up_at = Some(Instant::now());
        }
        self.wait = wait;
    }

    /// The receiver's pid, as far as it can be known here.
    pub fn receiver(&self) -> Option<PeerInfo> {
        self.receiver
    }

    /// The segment behind the queue.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    fn receiver_gone(q: &ShmQueue, dead: &AtomicBool) -> bool {
        q.ctl.rx.closed.load(Ordering::Acquire) != 0 || dead.load(Ordering::Acquire)
    }

    /// Sends `msg`, waiting for a free slot under the wait strategy.
    ///
    /// # Errors
    ///
    /// [`SendError::TooLarge`] for a message over the slot size; [`SendError::PeerGone`] if
    /// the receiver was dropped, exited or was killed; `Io(InvalidData)` if the queue's
    /// enqueue position was written outside the protocol. Nothing is sent in these cases.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_deadline(msg, Deadline::Never)
    }

    /// Sends `msg` if a slot is free now.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`], or as [`MpscSender::send`].
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_deadline(msg, Deadline::Now)
    }

    /// Sends `msg`, waiting at most `timeout` for a free slot.
    ///
    /// # Errors
    ///
    /// [`SendError::Timeout`], or as [`MpscSender::send`].
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.send_deadline(msg, Deadline::after(timeout))
    }

    /// Sends `msg`, waiting until `deadline` for a free slot.
    ///
    /// # Errors
    ///
    /// As [`MpscSender::send`], [`MpscSender::try_send`] and [`MpscSender::send_timeout`].
    #[inline]
    pub fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<(), SendError> {
        if msg.len() > self.max {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max: self.max,
            });
        }
        let (q, mask, idx) = (self.q, self.mask, self.idx);
        if Self::receiver_gone(&q, &self.dead) {
            return Err(SendError::PeerGone);
        }
        let pos = match try_claim(&q, mask, idx) {
            Some(p) => p,
            None => {
                let dead = &*self.dead;
                let sleeper = ProducerSleep {
                    line: &q.ctl.tx,
                    bit: 1 << idx,
                };
                wait_on(
                    self.wait,
                    deadline,
                    &sleeper,
                    &mut self.woke_up_at,
                    None,
                    |_| {
                        if let Some(p) = try_claim(&q, mask, idx) {
                            return Ok(Some(p));
                        }
                        if Self::receiver_gone(&q, dead) {
                            return Err(SendError::PeerGone);
                        }
                        if let Some(e) = corrupt_tail(&q, mask) {
                            return Err(SendError::Io(e));
                        }
                        Ok(None)
                    },
                )?
            }
        };
        publish(&q, mask, pos, msg);
        ring::wake(&q.ctl.rx);
        Ok(())
    }
}

impl MpscSender {
    /// Claims a slot and never publishes it: what a producer killed in the middle of a send
    /// leaves behind, for tests of that case. The entry stays registered after this sender
    /// is dropped, so the consumer skips the claim only once this process is gone.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`] if no slot is free, [`SendError::PeerGone`] if the receiver is.
    #[doc(hidden)]
    pub fn abandon_claim(&mut self) -> Result<(), SendError> {
        self.abandon_claim_at("advance", &[])
    }

    /// Like [`MpscSender::abandon_claim`], stopping the send of `msg` at `step`: `"claim"`
    /// (the slot is claimed, `tail` not moved on), `"advance"` (`tail` moved on too),
    /// `"mid-write"` (the length and half of `msg` written) or `"written"` (all of it
    /// written, not published): every point at which a producer can be killed.
    ///
    /// # Errors
    ///
    /// As [`MpscSender::abandon_claim`]; [`SendError::TooLarge`]; `Io(InvalidInput)` for
    /// another `step`.
    #[doc(hidden)]
    pub fn abandon_claim_at(&mut self, step: &str, msg: &[u8]) -> Result<(), SendError> {
        const STEPS: [&str; 4] = ["claim", "advance", "mid-write", "written"];
        let Some(n) = STEPS.iter().position(|s| *s == step) else {
            return Err(SendError::Io(invalid(format!(
                "no step {step:?} in a send (one of {STEPS:?})"
            ))));
        };
        if msg.len() > self.max {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max: self.max,
            });
        }
        if Self::receiver_gone(&self.q, &self.dead) {
            return Err(SendError::PeerGone);
        }
        let pos = claim_slot(&self.q, self.mask, self.idx).ok_or(SendError::Full)?;
        self.abandoned = true;
        if n >= 1 {
            advance(&self.q, pos);
        }
        if n >= 2 {
            let slot = pos as usize & self.mask;
            self.q.len(slot).store(msg.len() as u32, Ordering::Relaxed);
            let part = if n == 2 { msg.len() / 2 } else { msg.len() };
            self.q.write(slot, &msg[..part]);
        }
        Ok(())
    }
}

/// Takes a free producer entry and writes our hello in it; `None` if all are taken.
fn register(q: &ShmQueue) -> Option<usize> {
    let hello = Hello::mine();
    'again: loop {
        for idx in 0..MAX_PRODUCERS {
            let e = q.entry(idx);
            let claiming = (token() << TAG_BITS) | ENTRY_CLAIMING;
            if e.state
                .compare_exchange(ENTRY_FREE, claiming, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            put_hello(&e.hello, &hello);
            // A CAS, not a store: the consumer frees an entry left claiming too long (its
            // process presumed killed while opening), and another may have taken it since.
            if e.state
                .compare_exchange(
                    claiming,
                    (claiming & !TAG_MASK) | ENTRY_LIVE,
                    Ordering::Release,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue 'again;
            }
            q.hdr.opened.fetch_add(1, Ordering::SeqCst);
            return Some(idx);
        }
        return None;
    }
}

impl Drop for MpscSender {
    fn drop(&mut self) {
        let bit = !(1u64 << self.idx);
        let tx = &self.q.ctl.tx;
        tx.may_sleep.fetch_and(bit, Ordering::SeqCst);
        tx.sleeping.fetch_and(bit, Ordering::SeqCst);
        // Every claim of ours is published (send claims and publishes in one call), so the
        // entry can be reused at once; unless one was abandoned: then it stays ours until
        // this process is gone, and the consumer skips the claim and retires the entry.
        if !self.abandoned {
            self.q
                .entry(self.idx)
                .state
                .store(ENTRY_FREE, Ordering::Release);
        }
        self.q.hdr.left.fetch_add(1, Ordering::SeqCst);
        let rx = &self.q.ctl.rx;
        rx.seq.fetch_add(1, Ordering::SeqCst);
        futex_wake(&rx.seq);
        // Join the watcher before the segment (and the word it wakes) is unmapped.
        self.watcher.take();
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

    #[test]
    fn handles_move_between_threads() {
        fn send<T: Send>() {}
        send::<MpscReceiver>();
        send::<MpscSender>();
    }

    #[test]
    fn geometry_checks() {
        assert!(geometry(0, 8).is_err());
        assert!(geometry(3, 8).is_err());
        assert!(geometry(MAX_SLOTS * 2, 8).is_err());
        assert!(geometry(4, 0).is_err());
        assert!(geometry(4, MAX_SLOT_SIZE + 1).is_err());
        assert_eq!(geometry(1, 48).unwrap(), (64, SLOTS_OFF + 64));
        assert_eq!(geometry(4, 49).unwrap(), (128, SLOTS_OFF + 4 * 128));
    }

    #[test]
    fn geometry_of_hostile_header_values_is_an_error_not_a_panic() {
        // What `MpscSender::open` reads from a peer-written header, as u64 -> usize.
        let hostile = [0, 1, 64, 65, u32::MAX as usize, 1 << 63, usize::MAX];
        for slots in hostile.into_iter().chain([MAX_SLOTS, MAX_SLOTS + 1]) {
            for size in hostile
                .into_iter()
                .chain([MAX_SLOT_SIZE, MAX_SLOT_SIZE + 1])
            {
                if let Ok((stride, total)) = geometry(slots, size) {
                    assert!(slots.is_power_of_two() && slots <= MAX_SLOTS && size <= MAX_SLOT_SIZE);
                    assert!(stride >= SLOT_HEADER + size && total >= SLOTS_OFF + slots * stride);
                }
            }
        }
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
    use crate::shm::wait::wait_on;
    use loom::sync::atomic::{AtomicBool as LoomBool, AtomicUsize};
    use loom::sync::Arc;
    use loom::thread;

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
