//! [`Plain`]: the values a [`ShmMutex`](super::ShmMutex) may guard.

// Opting in to unsafe (the crate root denies it): `Plain` is an unsafe trait, a promise about
// the layout of the types that implement it.
#![allow(unsafe_code)]

/// Plain data that can live in shared memory under a [`ShmMutex`]: integers, floats, arrays of
/// plain data, and your own `#[repr(C)]` structs of them.
///
/// [`ShmMutex`]: super::ShmMutex
///
/// ```
/// use ipckit::shm::Plain;
///
/// #[repr(C)]
/// #[derive(Clone, Copy)]
/// struct Account {
///     balance: i64,
///     pending: [u32; 4],
/// }
/// // SAFETY: repr(C); integers only, so every bit pattern is an Account; no pointers.
/// unsafe impl Plain for Account {}
/// ```
///
/// # Safety
///
/// Implement only for a type that is:
/// - `#[repr(C)]` or `#[repr(transparent)]` (or a primitive), so every process built from the
///   same source lays it out alike;
/// - valid for every bit pattern: no `bool`, `char`, enums, `NonZero*` or references. A holder
///   that died mid-write leaves torn bytes, and another process may be another build;
/// - free of pointers and file descriptors, which mean nothing in another process.
pub unsafe trait Plain: Copy + Send + Sync + 'static {}

macro_rules! plain {
    ($($t:ty)*) => ($(
        // SAFETY: a primitive number: every bit pattern is a value, no pointers.
        unsafe impl Plain for $t {}
    )*)
}
plain! { u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize f32 f64 }

// SAFETY: an array of plain data is laid out element by element, with no padding of its own.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}
