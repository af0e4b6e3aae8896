//! The counters workers publish in a shared-memory segment, read by the master and by
//! `ipckit serve --status`.
//!
//! The segment (an ipckit [`Segment`] with layout [`STATUS_LAYOUT`]) holds an array of
//! `AtomicU64`: a 128-byte board header (word 0: the number of slots) and then one 128-byte
//! [`Slot`] per worker, so two workers' counters never share a cache line. Workers update
//! their own slot with `Relaxed` atomics (one uncontended `lock add` per counter); readers
//! take a [`snapshot`](StatusBoard::snapshot). Every bit pattern is a valid `u64`, so a reader
//! is safe whatever a crashed worker left behind.

use ipckit::shm::{Layout, Segment, SegmentBuilder};
use serde::{Deserialize, Serialize};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The segment layout of a status board.
pub const STATUS_LAYOUT: Layout = Layout {
    kind: 0x5356_5354, // "SVST"
    version: 1,
};

/// Words (u64) per slot: 10 counters padded to 128 bytes.
const WORDS: usize = 16;
/// Most slots a board may have.
pub const MAX_SLOTS: usize = 4096;

/// A status board: one slot of counters per worker.
#[derive(Debug)]
pub struct StatusBoard {
    seg: Segment,
    slots: usize,
}

/// One worker's counters (references into the shared segment).
#[derive(Debug, Clone, Copy)]
pub struct Slot<'a> {
    /// The worker's pid (0: slot unused).
    pub pid: &'a AtomicU64,
    /// The worker's generation (incremented by the master at each reload).
    pub generation: &'a AtomicU64,
    /// Requests answered.
    pub requests: &'a AtomicU64,
    /// Connections accepted.
    pub connections: &'a AtomicU64,
    /// Connections open now.
    pub active: &'a AtomicU64,
    /// Errors (bad requests, I/O errors, refused connections).
    pub errors: &'a AtomicU64,
    /// 4xx responses sent.
    pub status_4xx: &'a AtomicU64,
    /// 5xx responses sent.
    pub status_5xx: &'a AtomicU64,
    /// When the worker started, ns since the Unix epoch.
    pub started_ns: &'a AtomicU64,
    /// When the worker last went round its loop, ns since the Unix epoch.
    pub heartbeat_ns: &'a AtomicU64,
}

/// A copy of one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotSnapshot {
    /// The slot's index.
    pub slot: usize,
    /// See [`Slot::pid`].
    pub pid: u64,
    /// See [`Slot::generation`].
    pub generation: u64,
    /// See [`Slot::requests`].
    pub requests: u64,
    /// See [`Slot::connections`].
    pub connections: u64,
    /// See [`Slot::active`].
    pub active: u64,
    /// See [`Slot::errors`].
    pub errors: u64,
    /// See [`Slot::status_4xx`].
    pub status_4xx: u64,
    /// See [`Slot::status_5xx`].
    pub status_5xx: u64,
    /// See [`Slot::started_ns`].
    pub started_ns: u64,
    /// See [`Slot::heartbeat_ns`].
    pub heartbeat_ns: u64,
}

fn size_for(slots: usize) -> io::Result<usize> {
    if slots == 0 || slots > MAX_SLOTS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("status board: {slots} slots (1..={MAX_SLOTS})"),
        ));
    }
    Ok((slots + 1) * WORDS * 8)
}

impl StatusBoard {
    /// Creates an anonymous board (a memfd) of `slots` zeroed slots, to hand to workers by
    /// descriptor.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for 0 or more than [`MAX_SLOTS`] slots, or the OS error.
    pub fn create(slots: usize) -> io::Result<StatusBoard> {
        let seg = SegmentBuilder::anonymous()
            .size(size_for(slots)?)
            .layout(STATUS_LAYOUT)
            .create()?;
        Self::init(seg, slots)
    }

    /// Creates the named board `name` (`/ipckit-serve-<master pid>`), exclusively, 0600; it
    /// is unlinked when this value is dropped.
    ///
    /// # Errors
    ///
    /// `InvalidInput`, `AlreadyExists`, or the OS error.
    pub fn create_named(name: &str, slots: usize) -> io::Result<StatusBoard> {
        let seg = SegmentBuilder::new(name)
            .size(size_for(slots)?)
            .layout(STATUS_LAYOUT)
            .create()?;
        Self::init(seg, slots)
    }

    fn init(seg: Segment, slots: usize) -> io::Result<StatusBoard> {
        let seg = seg.ready();
        seg.atomic_u64s()[0].store(slots as u64, Relaxed);
        Self::check(seg)
    }

    fn check(seg: Segment) -> io::Result<StatusBoard> {
        let words = seg.atomic_u64s();
        let slots = words[0].load(Relaxed) as usize;
        if slots == 0 || slots > MAX_SLOTS || (slots + 1) * WORDS > words.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "status board: header says {slots} slots, the segment holds {} bytes",
                    seg.len()
                ),
            ));
        }
        Ok(StatusBoard { seg, slots })
    }

    /// Opens a board from an inherited descriptor (a worker).
    ///
    /// # Errors
    ///
    /// As [`SegmentBuilder::open_fd`], or `InvalidData` for a board with a bad slot count.
    pub fn from_fd(fd: OwnedFd) -> io::Result<StatusBoard> {
        Self::check(
            SegmentBuilder::anonymous()
                .layout(STATUS_LAYOUT)
                .open_fd(fd)?,
        )
    }

    /// Opens the named board (for `--status`, from another process of the same user).
    ///
    /// # Errors
    ///
    /// `NotFound` if no server runs under that name, or as [`StatusBoard::from_fd`].
    pub fn open_named(name: &str) -> io::Result<StatusBoard> {
        Self::check(SegmentBuilder::new(name).layout(STATUS_LAYOUT).open()?)
    }

    /// The number of slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The board's name, if it was created or opened by name.
    pub fn name(&self) -> Option<&str> {
        self.seg.name()
    }

    /// Slot `i`.
    ///
    /// # Panics
    ///
    /// If `i >= self.slots()`.
    pub fn slot(&self, i: usize) -> Slot<'_> {
        assert!(i < self.slots, "status slot {i} of {}", self.slots);
        let w = &self.seg.atomic_u64s()[(i + 1) * WORDS..(i + 2) * WORDS];
        Slot {
            pid: &w[0],
            generation: &w[1],
            requests: &w[2],
            connections: &w[3],
            active: &w[4],
            errors: &w[5],
            status_4xx: &w[6],
            status_5xx: &w[7],
            started_ns: &w[8],
            heartbeat_ns: &w[9],
        }
    }

    /// A copy of every slot.
    pub fn snapshot(&self) -> Vec<SlotSnapshot> {
        (0..self.slots)
            .map(|i| {
                let s = self.slot(i);
                SlotSnapshot {
                    slot: i,
                    pid: s.pid.load(Relaxed),
                    generation: s.generation.load(Relaxed),
                    requests: s.requests.load(Relaxed),
                    connections: s.connections.load(Relaxed),
                    active: s.active.load(Relaxed),
                    errors: s.errors.load(Relaxed),
                    status_4xx: s.status_4xx.load(Relaxed),
                    status_5xx: s.status_5xx.load(Relaxed),
                    started_ns: s.started_ns.load(Relaxed),
                    heartbeat_ns: s.heartbeat_ns.load(Relaxed),
                }
            })
            .collect()
    }
}

impl Slot<'_> {
    /// Zeroes the counters and records a new worker in the slot.
    pub fn claim(&self, pid: u32, generation: u64, now_ns: u64) {
        for c in [
            self.requests,
            self.connections,
            self.active,
            self.errors,
            self.status_4xx,
            self.status_5xx,
        ] {
            c.store(0, Relaxed);
        }
        self.generation.store(generation, Relaxed);
        self.started_ns.store(now_ns, Relaxed);
        self.heartbeat_ns.store(now_ns, Relaxed);
        self.pid.store(u64::from(pid), Relaxed);
    }
}

impl AsFd for StatusBoard {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.seg.as_fd()
    }
}
