//! A ring pair's segment: its layout (the pair header, two ring control blocks, two data
//! areas), the views of a mapping, and the options that size it.

use super::region::Region;
use super::ring::{self, RingCtl, RingMem};
use super::segment::{Layout, Segment};
use super::sync::{AtomicU32, AtomicU64};
use crate::error::invalid;
use crate::wait::Wait;
use std::io;
use std::time::Duration;

/// The layout of a ring-pair segment.
pub const PAIR_LAYOUT: Layout = Layout {
    kind: 1,
    version: 1,
};

/// The data area of each ring unless asked otherwise: 4 MiB, the size that measured fastest
/// for 64 KiB messages on the machine ipckit is developed on (README, "Shared memory").
/// Below the L2 size the receiver reads lines still held in the sender's cache (8 GB/s at
/// 256 KiB here); from 4 MiB it reads them from the shared L3 (55 GB/s zero-copy, 26 GB/s
/// copying). A pair maps two of them; choose less with [`PairOptions::capacity`].
pub const DEFAULT_CAPACITY: usize = 4 << 20;

/// Bytes before the first ring's data: the pair header and both control blocks.
pub(super) const CTL_LEN: usize = 4096;
const RING_A: usize = 512; // server -> client
const RING_B: usize = 1024; // client -> server

/// Attach states.
pub(super) const WAITING: u32 = 0;
pub(super) const CLAIMED: u32 = 1;
pub(super) const ATTACHED: u32 = 2;

/// The pair's header, at the start of the segment's data.
#[repr(C, align(128))]
pub(super) struct PairHeader {
    pub(super) state: AtomicU32,
    /// Futex word the server sleeps on until a client attaches.
    pub(super) attach_seq: AtomicU32,
    pub(super) cap: AtomicU64,
    pub(super) max: AtomicU64,
    pub(super) server_hello: [AtomicU64; 6],
    pub(super) client_hello: [AtomicU64; 6],
}

// SAFETY: atomics only; any bit pattern is a valid value.
#[allow(unsafe_code)]
unsafe impl super::region::Shared for PairHeader {}

/// One ring as seen from a mapping.
#[derive(Clone, Copy)]
pub(super) struct ShmRing {
    pub(super) ctl: &'static RingCtl,
    pub(super) data: Region<'static>,
}

impl RingMem for ShmRing {
    #[inline]
    fn ctl(&self) -> &RingCtl {
        self.ctl
    }
    #[inline]
    fn word(&self, off: usize) -> &AtomicU64 {
        self.data.at(off)
    }
    #[inline]
    fn write(&self, off: usize, src: &[u8]) {
        self.data.copy_in(off, src);
    }
    #[inline]
    fn read(&self, off: usize, dst: &mut [u8]) {
        self.data.copy_out(off, dst);
    }
    fn cap(&self) -> usize {
        self.data.len()
    }
}

/// The views of a pair segment. `'static` stands for "as long as the segment": every
/// holder keeps the `Segment` alive longer (it is the last field of
/// [`ShmEndpoint`](super::ShmEndpoint), and the watcher thread is joined before it drops).
pub(super) struct Views {
    pub(super) hdr: &'static PairHeader,
    pub(super) a: ShmRing,
    pub(super) b: ShmRing,
}

pub(super) fn views(seg: &Segment, cap: usize) -> io::Result<Views> {
    // `cap` may come from the peer-written header: every sum is checked.
    let need = cap.checked_mul(2).and_then(|c| c.checked_add(CTL_LEN));
    if need.is_none_or(|n| seg.len() < n) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "segment of {} bytes is too small for two {cap}-byte rings",
                seg.len()
            ),
        ));
    }
    let r: Region<'static> = unsafe_region(seg);
    Ok(Views {
        hdr: r.at(0),
        a: ShmRing {
            ctl: r.at(RING_A),
            data: r.sub(CTL_LEN, cap),
        },
        b: ShmRing {
            ctl: r.at(RING_B),
            data: r.sub(CTL_LEN + cap, cap),
        },
    })
}

#[allow(unsafe_code)]
fn unsafe_region(seg: &Segment) -> Region<'static> {
    // SAFETY: callers keep the segment alive longer than every use of the region (see
    // `Views`).
    unsafe { seg.region().detach() }
}

/// How to make a ring pair.
#[derive(Debug, Clone, Copy)]
pub struct PairOptions {
    /// Wait strategy.
    pub wait: Wait,
    /// Largest message: at most half the ring; `None` for half the ring.
    pub max_msg_size: Option<usize>,
    /// Data area of each ring (a power of two, at least 4 KiB); `None` for
    /// [`DEFAULT_CAPACITY`], or larger if `max_msg_size` needs it.
    pub capacity: Option<usize>,
    /// How long the server waits for a client, and the client for the segment.
    pub timeout: Duration,
    /// Permission bits (0600).
    pub mode: u32,
    /// Fault the pages in at creation (`MAP_POPULATE`).
    pub populate: bool,
}

impl Default for PairOptions {
    fn default() -> Self {
        PairOptions {
            wait: Wait::Block,
            max_msg_size: None,
            capacity: None,
            timeout: Duration::from_secs(5),
            mode: 0o600,
            populate: true,
        }
    }
}

impl PairOptions {
    /// The data area of each ring and the largest message these options give: the asked
    /// capacity, or the default grown to fit the asked maximum (a message takes at most half
    /// a ring).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a capacity that is not a power of two of at least 4 KiB, or one too
    /// small for the asked maximum.
    pub fn ring_size(&self) -> io::Result<(usize, usize)> {
        capacity_for(self)
    }
}

pub(super) fn capacity_for(o: &PairOptions) -> io::Result<(usize, usize)> {
    let mut cap = match o.capacity {
        Some(c) if c < ring::MIN_CAPACITY || !c.is_power_of_two() => {
            return Err(invalid(format!(
                "a ring capacity of {c} bytes is not a power of two of at least {} bytes",
                ring::MIN_CAPACITY
            )))
        }
        Some(c) => c,
        None => DEFAULT_CAPACITY,
    };
    if let Some(m) = o.max_msg_size {
        if m >= u32::MAX as usize / 2 {
            return Err(invalid(format!(
                "a maximum message of {m} bytes is too large"
            )));
        }
        if m > ring::max_payload(cap) {
            if o.capacity.is_some() {
                return Err(invalid(format!(
                    "a {m}-byte maximum needs a ring of at least {} bytes, not {cap}",
                    ((m + ring::RECORD_ALIGN) * 2).next_power_of_two()
                )));
            }
            cap = ((m + ring::RECORD_ALIGN) * 2).next_power_of_two();
        }
    }
    let max = o.max_msg_size.unwrap_or(ring::max_payload(cap));
    Ok((cap, max))
}
