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
