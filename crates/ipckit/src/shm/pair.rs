//! A ring pair's segment: its layout (the pair header, two ring control blocks, two data
//! areas), the views of a mapping, and the sizes a builder's settings give.

use super::region::Region;
use super::ring::{self, RingCtl, RingMem};
use super::segment::{Layout, Segment};
use super::sync::{AtomicU32, AtomicU64};
use crate::error::invalid;
use std::io;

/// The layout of a ring-pair segment.
pub const PAIR_LAYOUT: Layout = Layout {
    kind: 1,
    version: 1,
};

/// The data area of each ring unless asked otherwise: 4 MiB, the size that measured fastest
/// for 64 KiB messages on the machine ipckit is developed on (README, "Shared memory").
/// Below the L2 size the receiver reads lines still held in the sender's cache (8 GB/s at
/// 256 KiB here); from 4 MiB it reads them from the shared L3 (55 GB/s zero-copy, 26 GB/s
/// copying). A pair maps two of them; choose less with
/// [`PairBuilder::capacity`](super::PairBuilder::capacity).
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

/// The data area of each ring and the largest message that an asked `capacity` and
/// `max_msg_size` give (see [`PairBuilder::ring_size`](super::PairBuilder::ring_size)).
pub(super) fn capacity_for(
    capacity: Option<usize>,
    max_msg_size: Option<usize>,
) -> io::Result<(usize, usize)> {
    let mut cap = match capacity {
        Some(c) if c < ring::MIN_CAPACITY || !c.is_power_of_two() => {
            return Err(invalid(format!(
                "a ring capacity of {c} bytes is not a power of two of at least {} bytes",
                ring::MIN_CAPACITY
            )))
        }
        Some(c) => c,
        None => DEFAULT_CAPACITY,
    };
    if let Some(m) = max_msg_size {
        if m >= u32::MAX as usize / 2 {
            return Err(invalid(format!(
                "a maximum message of {m} bytes is too large"
            )));
        }
        if m > ring::max_payload(cap) {
            if capacity.is_some() {
                return Err(invalid(format!(
                    "a {m}-byte maximum needs a ring of at least {} bytes, not {cap}",
                    ((m + ring::RECORD_ALIGN) * 2).next_power_of_two()
                )));
            }
            cap = ((m + ring::RECORD_ALIGN) * 2).next_power_of_two();
        }
    }
    let max = max_msg_size.unwrap_or(ring::max_payload(cap));
    Ok((cap, max))
}
