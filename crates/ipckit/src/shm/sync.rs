//! The atomics the rings and queues use: std's, or loom's under `cfg(ipckit_loom)` so the
//! model checker can explore every interleaving (see `tests/loom`).

#[cfg(ipckit_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64};
pub(crate) use std::sync::atomic::Ordering;
#[cfg(not(ipckit_loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64};

/// A pause in a spin loop (under loom, a yield so the model can run the other thread).
#[inline]
pub(crate) fn spin() {
    #[cfg(ipckit_loom)]
    loom::thread::yield_now();
    #[cfg(not(ipckit_loom))]
    std::hint::spin_loop();
}

/// Futex wait and wake on a word in shared memory; under loom, a yield and nothing (the
/// model explores the spinning protocol; the sleeping half is tested across processes).
#[cfg(not(ipckit_loom))]
pub(crate) use crate::sys::shm::{futex_wait, futex_wake};

/// See above.
#[cfg(ipckit_loom)]
pub(crate) fn futex_wait(
    _word: &AtomicU32,
    _expected: u32,
    _timeout: Option<std::time::Duration>,
) -> std::io::Result<bool> {
    loom::thread::yield_now();
    Ok(true)
}

/// See above.
#[cfg(ipckit_loom)]
pub(crate) fn futex_wake(_word: &AtomicU32) {}
