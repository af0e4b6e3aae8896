//! The robust mutex's segment: its layout (ipckit's header, the lock words, the condition
//! variable's word, the value) and where a value of a given type goes.

// Opting in to unsafe (the crate root denies it): the header and the value live in shared
// memory (`Shared`).
#![allow(unsafe_code)]

use super::lock::LockWords;
use super::plain::Plain;
use crate::error::invalid;
use crate::shm::region::Shared;
use crate::shm::segment::{Layout, SEGMENT_HEADER_LEN};
use std::cell::UnsafeCell;
use std::io;
use std::mem::{align_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64};

/// The layout of a robust-mutex segment: [`ShmMutex`](super::ShmMutex)'s header, its mutex
/// and condition variable, then the value.
// Version 2: ipckit's own lock and condition variable (see the module docs); version 1 held
// the C library's pthread objects. A change to the header, offsets or protocol bumps it.
pub const MUTEX_LAYOUT: Layout = Layout {
    kind: 3,
    version: 2,
};

/// Where things are in the segment's data, each on its own cache line.
pub(super) const MUTEX_OFF: usize = 64;
pub(super) const COND_OFF: usize = 128;
/// The value starts here, or at the next multiple of its alignment.
pub(super) const DATA_MIN_OFF: usize = 192;
const _: () = assert!(size_of::<MutexHeader>() <= MUTEX_OFF);
const _: () = assert!(size_of::<LockWords>() <= COND_OFF - MUTEX_OFF);
const _: () = assert!(size_of::<AtomicU32>() <= DATA_MIN_OFF - COND_OFF);

/// `"MUTX"`: the creator initialized the lock, the condition variable and the value.
pub(super) const MUTEX_MAGIC: u32 = u32::from_le_bytes(*b"MUTX");

/// ipckit's header at the start of the segment's data. Atomics only, so an opener reads it
/// safely whatever another process wrote.
#[repr(C)]
pub(super) struct MutexHeader {
    /// [`MUTEX_MAGIC`] once everything else is written and initialized.
    pub(super) magic: AtomicU32,
    _reserved: AtomicU32,
    /// Offset of the value in the data.
    pub(super) data_off: AtomicU64,
    /// `size_of::<T>()` of the creator.
    pub(super) data_size: AtomicU64,
    /// `align_of::<T>()` of the creator.
    pub(super) data_align: AtomicU64,
}

// SAFETY: atomics only; any bit pattern is a valid value.
unsafe impl Shared for MutexHeader {}

/// The value, written only under the lock.
#[repr(transparent)]
pub(super) struct DataCell<T>(pub(super) UnsafeCell<T>);

// SAFETY: `T: Plain` is valid for any bit pattern, holds no pointers and has no drop glue;
// the `UnsafeCell` tells Rust that other holders of the lock write it.
unsafe impl<T: Plain> Shared for DataCell<T> {}

/// Where a `T` goes in the segment's data: its offset, and the data size the segment needs.
pub(super) fn placement<T>() -> io::Result<(usize, usize)> {
    let align = align_of::<T>();
    if align > SEGMENT_HEADER_LEN {
        // The data starts page-aligned: an alignment above a page cannot be honoured.
        return Err(invalid(format!(
            "a value aligned to {align} bytes cannot live in shared memory (at most \
             {SEGMENT_HEADER_LEN})"
        )));
    }
    let off = DATA_MIN_OFF.next_multiple_of(align);
    let total = off
        .checked_add(size_of::<T>())
        .ok_or_else(|| invalid("the value is too large for a segment"))?;
    Ok((off, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_follows_alignment() {
        assert_eq!(placement::<u8>().unwrap(), (DATA_MIN_OFF, DATA_MIN_OFF + 1));
        assert_eq!(placement::<()>().unwrap(), (DATA_MIN_OFF, DATA_MIN_OFF));
        #[repr(C, align(256))]
        #[derive(Clone, Copy)]
        struct Wide(u8);
        assert_eq!(placement::<Wide>().unwrap(), (256, 512));
        #[repr(C, align(8192))]
        struct Huge(u8);
        assert!(placement::<Huge>().is_err());
    }
}
