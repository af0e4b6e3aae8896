//! STAND-IN, to be replaced by the worker branch's `status.rs`.
//!
//! The counters workers publish, in a named shared-memory segment. This stand-in has the
//! interface's constructors and `snapshot`, but reads and writes the slots with
//! `pread`/`pwrite` on the segment's descriptor instead of atomics in the mapping (this
//! crate has no unsafe code, and the library offers no safe atomic view yet).

use ipckit::shm::{Layout, Segment, SegmentBuilder, HEADER_LEN};
use serde::Serialize;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;

/// The layout of a status board segment.
pub const STATUS_LAYOUT: Layout = Layout {
    kind: 0x7001,
    version: 1,
};

const FIELDS: usize = 10;
const SLOT_BYTES: usize = 128;

/// One worker slot's counters, read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SlotSnapshot {
    /// The worker's pid (0: never used).
    pub pid: u64,
    /// The generation the worker belongs to.
    pub generation: u64,
    /// Requests read.
    pub requests: u64,
    /// Connections accepted.
    pub connections: u64,
    /// Connections open now.
    pub active: u64,
    /// Errors.
    pub errors: u64,
    /// 4xx responses.
    pub status_4xx: u64,
    /// 5xx responses.
    pub status_5xx: u64,
    /// When the worker started, ns since the Unix epoch.
    pub started_ns: u64,
    /// The worker's last sign of life, ns since the Unix epoch.
    pub heartbeat_ns: u64,
}

impl SlotSnapshot {
    fn to_words(self) -> [u64; FIELDS] {
        [
            self.pid,
            self.generation,
            self.requests,
            self.connections,
            self.active,
            self.errors,
            self.status_4xx,
            self.status_5xx,
            self.started_ns,
            self.heartbeat_ns,
        ]
    }
    fn from_words(w: [u64; FIELDS]) -> SlotSnapshot {
        SlotSnapshot {
            pid: w[0],
            generation: w[1],
            requests: w[2],
            connections: w[3],
            active: w[4],
            errors: w[5],
            status_4xx: w[6],
            status_5xx: w[7],
            started_ns: w[8],
            heartbeat_ns: w[9],
        }
    }
}

/// The workers' counters in shared memory, one slot per worker.
#[derive(Debug)]
pub struct StatusBoard {
    seg: Segment,
    file: File,
    slots: usize,
}

impl StatusBoard {
    fn wrap(seg: Segment) -> io::Result<StatusBoard> {
        let file = File::from(seg.as_fd().try_clone_to_owned()?);
        let slots = seg.len() / SLOT_BYTES;
        Ok(StatusBoard { seg, file, slots })
    }

    /// Creates the named board (master), `slots` slots, 0600, exclusively; unlinked on drop.
    ///
    /// # Errors
    ///
    /// As [`SegmentBuilder::create`].
    pub fn create_named(name: &str, slots: usize) -> io::Result<StatusBoard> {
        let seg = SegmentBuilder::new(slots.max(1) * SLOT_BYTES)
            .layout(STATUS_LAYOUT)
            .create(name)?
            .ready();
        StatusBoard::wrap(seg)
    }

    /// Opens a board from an inherited descriptor (worker).
    ///
    /// # Errors
    ///
    /// As [`SegmentBuilder::from_fd`].
    pub fn from_fd(fd: OwnedFd) -> io::Result<StatusBoard> {
        StatusBoard::wrap(SegmentBuilder::new(1).layout(STATUS_LAYOUT).from_fd(fd)?)
    }

    /// Opens the named board (`ipckit serve --status`).
    ///
    /// # Errors
    ///
    /// As [`SegmentBuilder::open_existing`].
    pub fn open_named(name: &str) -> io::Result<StatusBoard> {
        StatusBoard::wrap(
            SegmentBuilder::new(1)
                .layout(STATUS_LAYOUT)
                .open_existing(name)?,
        )
    }

    /// How many slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Every slot's counters.
    pub fn snapshot(&self) -> Vec<SlotSnapshot> {
        let mut buf = vec![0u8; self.slots * SLOT_BYTES];
        let _ = self.file.read_exact_at(&mut buf, HEADER_LEN as u64);
        buf.chunks(SLOT_BYTES)
            .map(|c| {
                let mut w = [0u64; FIELDS];
                for (i, x) in w.iter_mut().enumerate() {
                    *x = u64::from_ne_bytes(c[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
                }
                SlotSnapshot::from_words(w)
            })
            .collect()
    }

    /// Writes slot `i` whole (stand-in only: the worker's way to publish).
    pub(crate) fn write_slot(&self, i: usize, s: SlotSnapshot) {
        if i >= self.slots {
            return;
        }
        let mut buf = [0u8; FIELDS * 8];
        for (k, w) in s.to_words().iter().enumerate() {
            buf[k * 8..k * 8 + 8].copy_from_slice(&w.to_ne_bytes());
        }
        let _ = self
            .file
            .write_all_at(&buf, (HEADER_LEN + i * SLOT_BYTES) as u64);
    }
}

impl AsFd for StatusBoard {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.seg.as_fd()
    }
}
