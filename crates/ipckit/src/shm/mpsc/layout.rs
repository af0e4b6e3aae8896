//! The queue's segment: its layout (header, control lines, producer table, slots), the
//! views of a mapping, and the checks of a geometry read from a header another process wrote.

use super::queue::{QueueCtl, QueueMem, MAX_PRODUCERS};
use crate::error::invalid;
use crate::shm::region::Region;
use crate::shm::segment::{Layout, Segment};
use crate::shm::sync::{AtomicU32, AtomicU64};
use std::io;

/// The layout of an MPSC queue segment.
pub const MPSC_LAYOUT: Layout = Layout {
    kind: 2,
    version: 1,
};

/// Most slots a queue may have.
pub const MAX_SLOTS: usize = 1 << 24;
/// Largest payload a slot may carry (its length is a `u32`; 1 GiB is far beyond any sane
/// queue already).
pub const MAX_SLOT_SIZE: usize = 1 << 30;
/// Bytes of a slot before its payload: the sequence word and the length.
const SLOT_HEADER: usize = 16;

pub(super) const HDR_OFF: usize = 0;
const CTL_OFF: usize = 512;
const TABLE_OFF: usize = 1024;
const ENTRY_LEN: usize = 64;
/// Page-aligned start of the slots.
const SLOTS_OFF: usize = 8192;

/// The queue's header, at the start of the segment's data.
#[repr(C, align(128))]
pub(super) struct MpscHeader {
    pub(super) slots: AtomicU64,
    pub(super) slot_size: AtomicU64,
    pub(super) stride: AtomicU64,
    pub(super) max_producers: AtomicU64,
    /// Producers that ever registered.
    pub(super) opened: AtomicU64,
    /// Producers that left cleanly: the consumer scans the table when this moves.
    pub(super) left: AtomicU64,
    pub(super) receiver: [AtomicU64; 6],
}

/// A producer entry: `state` is `token << 8 | ENTRY_*`, the token unique to one
/// registration (pid and a counter), so no compare-and-swap on a stale state succeeds.
#[repr(C, align(64))]
pub(super) struct Entry {
    pub(super) state: AtomicU64,
    pub(super) hello: [AtomicU64; 6],
}

pub(super) const ENTRY_FREE: u64 = 0;
pub(super) const ENTRY_CLAIMING: u64 = 1;
pub(super) const ENTRY_LIVE: u64 = 2;
pub(super) const ENTRY_DEAD: u64 = 3;

#[cfg(not(ipckit_loom))]
const _: () = {
    use super::queue::{CLAIMED, TAG_MASK};
    assert!(std::mem::size_of::<MpscHeader>() <= CTL_OFF - HDR_OFF);
    assert!(std::mem::size_of::<QueueCtl>() <= TABLE_OFF - CTL_OFF);
    assert!(std::mem::size_of::<Entry>() == ENTRY_LEN);
    assert!(TABLE_OFF + MAX_PRODUCERS * ENTRY_LEN <= SLOTS_OFF);
    assert!(MAX_PRODUCERS <= 64 && CLAIMED + MAX_PRODUCERS as u64 <= TAG_MASK);
};

// SAFETY: atomics only; any bit pattern is a valid value.
#[allow(unsafe_code)]
unsafe impl crate::shm::region::Shared for MpscHeader {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl crate::shm::region::Shared for Entry {}
// SAFETY: as above (the padding of `SpaceLine` is an `AtomicU32` too).
#[allow(unsafe_code)]
unsafe impl crate::shm::region::Shared for QueueCtl {}

/// The views of a queue segment. `'static` stands for "as long as the segment": every holder
/// keeps the `Segment` as its last field and joins its watcher thread before it drops.
#[derive(Clone, Copy)]
pub(super) struct ShmQueue {
    pub(super) hdr: &'static MpscHeader,
    pub(super) ctl: &'static QueueCtl,
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
    pub(super) fn entry(&self, idx: usize) -> &'static Entry {
        self.table.at(idx * ENTRY_LEN)
    }
}

/// The slot geometry of `opts`: (slots, stride, segment data size).
pub(super) fn geometry(slots: usize, slot_size: usize) -> io::Result<(usize, usize)> {
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

pub(super) fn views(seg: &Segment, slots: usize, stride: usize) -> io::Result<ShmQueue> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
