//! The one place the shm module turns addresses in a mapping into references.
//!
//! A [`Region`] is a window of a mapping (or, under loom, of a heap buffer) that outlives it.
//! Everything the rings and queues do to shared memory goes through it:
//!
//! - [`Region::at`] hands out `&T` for the atomics and `#[repr(C)]` control blocks placed in
//!   the region: bounds and alignment are checked, and every `T` used is made only of atomics
//!   and integers, valid for any bit pattern another process may have written. The value a
//!   robust mutex guards is such bytes in an `UnsafeCell`, written only by the lock's holder
//!   (see `mutex/shm_mutex.rs`).
//! - [`Region::copy_in`] / [`Region::copy_out`] copy payload bytes with bounds checked.
//! - [`Region::slice`] / [`Region::slice_mut`] lend payload bytes for the zero-copy API; they
//!   are `unsafe` because only the ring protocol knows that no other process writes those
//!   bytes while the borrow lives (see `ring.rs`).
#![allow(unsafe_code)]

use std::marker::PhantomData;

/// A bounds-checked window of shared memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region<'a> {
    ptr: *mut u8,
    len: usize,
    _life: PhantomData<&'a [u8]>,
}

// SAFETY: the region is memory shared with other processes anyway; all access to it is
// through atomics or under the ring protocols.
unsafe impl Send for Region<'_> {}
// SAFETY: as above.
unsafe impl Sync for Region<'_> {}

/// Types that may live in shared memory and be read through `&T`: atomics, integers and
/// `#[repr(C)]` structs of them, valid for any bit pattern.
///
/// # Safety
///
/// Implement only for types with no invalid bit patterns, no pointers and no drop glue.
pub(crate) unsafe trait Shared {}

impl<'a> Region<'a> {
    /// A region over `len` bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr..ptr+len` must be mapped, readable and writable for `'a`, and aligned to 64.
    pub(crate) unsafe fn new(ptr: *mut u8, len: usize) -> Region<'a> {
        debug_assert_eq!(ptr as usize % 64, 0);
        Region {
            ptr,
            len,
            _life: PhantomData,
        }
    }

    /// The whole of a mapping.
    pub(crate) fn of_mapping(m: &'a crate::sys::shm::Mapping) -> Region<'a> {
        // SAFETY: a `Mapping` is mapped read-write and page-aligned for as long as it lives,
        // which the borrow ties `'a` to.
        unsafe { Region::new(m.ptr(), m.len()) }
    }

    /// The same region with its lifetime cut loose, for structures that keep the segment
    /// beside the views into it.
    ///
    /// # Safety
    ///
    /// The caller keeps the mapping alive for as long as the returned region (and every
    /// reference obtained from it) is used.
    pub(crate) unsafe fn detach(self) -> Region<'static> {
        Region {
            ptr: self.ptr,
            len: self.len,
            _life: PhantomData,
        }
    }

    /// The region's length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The sub-region `off..off+len`. Panics if it is out of bounds (a bug in ipckit, never
    /// input: every offset here is computed from sizes checked at creation).
    pub(crate) fn sub(&self, off: usize, len: usize) -> Region<'a> {
        assert!(off.checked_add(len).is_some_and(|e| e <= self.len) && off.is_multiple_of(64));
        Region {
            // In bounds, checked above.
            ptr: self.ptr.wrapping_add(off),
            len,
            _life: PhantomData,
        }
    }

    /// The `T` at byte offset `off`.
    pub(crate) fn at<T: Shared>(&self, off: usize) -> &'a T {
        let size = std::mem::size_of::<T>();
        assert!(off.checked_add(size).is_some_and(|e| e <= self.len));
        let p = self.ptr.wrapping_add(off);
        assert_eq!(p as usize % std::mem::align_of::<T>(), 0);
        // SAFETY: in bounds and aligned (checked above), mapped for 'a (`new`'s contract), and
        // `T: Shared` is valid for whatever bytes are there; shared access only, as atomics.
        unsafe { &*p.cast::<T>() }
    }

    /// `n` consecutive `T`s starting at byte offset `off`, as a slice.
    pub(crate) fn slice_of<T: Shared>(&self, off: usize, n: usize) -> &'a [T] {
        let size = std::mem::size_of::<T>()
            .checked_mul(n)
            .expect("slice_of: size overflows");
        assert!(off.checked_add(size).is_some_and(|e| e <= self.len));
        let p = self.ptr.wrapping_add(off);
        assert_eq!(p as usize % std::mem::align_of::<T>(), 0);
        // SAFETY: as `at`, for `n` elements: the whole range is in bounds and aligned (checked
        // above), mapped for 'a, and every `T: Shared` is valid for any bytes; shared access only.
        unsafe { std::slice::from_raw_parts(p.cast::<T>(), n) }
    }

    /// Copies `src` to offset `off`.
    #[inline]
    pub(crate) fn copy_in(&self, off: usize, src: &[u8]) {
        assert!(off.checked_add(src.len()).is_some_and(|e| e <= self.len));
        #[cfg(target_arch = "x86_64")]
        if src.len() >= STREAM_COPY {
            // SAFETY: as below; `stream_copy` reads and writes exactly `src.len()` bytes.
            unsafe { stream_copy(src.as_ptr(), self.ptr.add(off), src.len()) };
            return;
        }
        // SAFETY: the destination is in bounds (checked) and cannot overlap `src`, a Rust
        // slice outside... or inside the region only through `slice`, whose callers never
        // pass it back here. The bytes are owned by the writer under the ring protocol.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(off), src.len());
        }
    }

    /// Copies `dst.len()` bytes from offset `off`.
    #[inline]
    pub(crate) fn copy_out(&self, off: usize, dst: &mut [u8]) {
        assert!(off.checked_add(dst.len()).is_some_and(|e| e <= self.len));
        #[cfg(target_arch = "x86_64")]
        if dst.len() >= STREAM_COPY {
            // SAFETY: as below; `stream_copy` reads and writes exactly `dst.len()` bytes.
            unsafe { stream_copy(self.ptr.add(off), dst.as_mut_ptr(), dst.len()) };
            return;
        }
        // SAFETY: as `copy_in`, reading; the bytes were published to us by the protocol.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.add(off), dst.as_mut_ptr(), dst.len());
        }
    }

    /// Lends `off..off+len` for reading.
    ///
    /// # Safety
    ///
    /// No process may write those bytes while the slice lives (the ring protocol: a
    /// published, unreleased record).
    #[inline]
    pub(crate) unsafe fn slice(&self, off: usize, len: usize) -> &'a [u8] {
        assert!(off.checked_add(len).is_some_and(|e| e <= self.len));
        // SAFETY: in bounds; the caller guarantees no writer.
        unsafe { std::slice::from_raw_parts(self.ptr.add(off), len) }
    }

    /// Lends `off..off+len` for writing.
    ///
    /// # Safety
    ///
    /// No process may read or write those bytes while the slice lives (the ring protocol:
    /// reserved, uncommitted space), and no other slice of them may exist.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self, off: usize, len: usize) -> &'a mut [u8] {
        assert!(off.checked_add(len).is_some_and(|e| e <= self.len));
        // SAFETY: in bounds; the caller guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(off), len) }
    }
}

/// Copies at least this long out of a ring use [`stream_copy`].
#[cfg(target_arch = "x86_64")]
const STREAM_COPY: usize = 4096;

/// Copies `len` bytes with plain 16-byte SSE2 loads and stores, four at a time.
///
/// Reading a large message that the other process has just written, glibc's `memcpy` (`rep
/// movsb` on CPUs with fast string moves) ran at half the speed of plain vector loads here:
/// the loads keep the hardware prefetcher streaming lines out of the writer's cache.
///
/// # Safety
///
/// `src..src+len` readable, `dst..dst+len` writable, the two not overlapping.
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn stream_copy(src: *const u8, dst: *mut u8, len: usize) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_storeu_si128};
    let mut i = 0;
    while i + 64 <= len {
        // SAFETY: i + 64 <= len: every 16-byte access is in bounds (the caller's contract);
        // SSE2 is part of x86-64, unaligned forms used.
        unsafe {
            let s = src.add(i).cast::<__m128i>();
            let d = dst.add(i).cast::<__m128i>();
            let a = _mm_loadu_si128(s);
            let b = _mm_loadu_si128(s.add(1));
            let c = _mm_loadu_si128(s.add(2));
            let e = _mm_loadu_si128(s.add(3));
            _mm_storeu_si128(d, a);
            _mm_storeu_si128(d.add(1), b);
            _mm_storeu_si128(d.add(2), c);
            _mm_storeu_si128(d.add(3), e);
        }
        i += 64;
    }
    // SAFETY: the tail, i..len, is in bounds.
    unsafe { std::ptr::copy_nonoverlapping(src.add(i), dst.add(i), len - i) };
}

// SAFETY: atomics of plain integers are valid for any bit pattern.
unsafe impl Shared for std::sync::atomic::AtomicU64 {}
// SAFETY: as above.
unsafe impl Shared for std::sync::atomic::AtomicU32 {}

// SAFETY: under loom the shm endpoints are compiled but never run (only the ring and queue
// cores are, over heap memory); these impls only let that code type-check.
#[cfg(ipckit_loom)]
unsafe impl Shared for loom::sync::atomic::AtomicU64 {}
// SAFETY: as above.
#[cfg(ipckit_loom)]
unsafe impl Shared for loom::sync::atomic::AtomicU32 {}
