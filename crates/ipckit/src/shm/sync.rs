//! What the rings and queues take from the platform: atomics, the futex, the spin hint and
//! the clock of a wait loop. std's and the kernel's; or, under `cfg(ipckit_loom)`, models
//! that let loom explore every interleaving (the loom models in `ring/loom_tests.rs` and
//! `mpsc/queue.rs`, run by `.ci/loom`). Nothing else differs between the two builds.

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

/// Asks for the cache line of `word`, for writing, without waiting for it: the producer's
/// look at a far line (`ring::Producer::commit`) then finds it arrived during the payload
/// copy. A load there instead would hold up every instruction after it until the line
/// came, the copy included. Nothing under loom, or off x86-64.
#[inline]
#[allow(unsafe_code)]
pub(crate) fn prefetch_write(word: &AtomicU64) {
    #[cfg(all(target_arch = "x86_64", not(ipckit_loom)))]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
        // SAFETY: 1. the CPU has SSE (part of the x86-64 baseline), the one requirement of
        // `_mm_prefetch`; 2. a prefetch is a hint: it never faults and changes no memory,
        // whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_ET0>(word.as_ptr().cast::<i8>()) }
    }
    #[cfg(not(all(target_arch = "x86_64", not(ipckit_loom))))]
    let _ = word;
}

/// Futex wait and wake on a word in shared memory.
#[cfg(not(ipckit_loom))]
pub(crate) use crate::sys::shm::{futex_wait, futex_wake};

/// The clock of a wait loop.
#[cfg(not(ipckit_loom))]
#[inline]
pub(crate) fn now() -> std::time::Instant {
    std::time::Instant::now()
}
/// Spins in a wait loop between two reads of the clock (and the slow checks).
#[cfg(not(ipckit_loom))]
pub(crate) const SPINS_PER_CLOCK_READ: u32 = 64;

#[cfg(ipckit_loom)]
pub(crate) use model::{futex_wait, futex_wake, now, SPINS_PER_CLOCK_READ};

/// The futex and the clock under loom.
///
/// The futex is the kernel's contract and nothing more: `futex_wait` sleeps only if the word
/// still holds `expected` (checked under the same lock `futex_wake` takes, as the kernel
/// checks under its hash-bucket lock), and only a `futex_wake` of that same word ends the
/// sleep. A timeout never fires: a model that needs one to make progress has lost a
/// wake-up, and loom reports it as a deadlock (every thread blocked) instead of the
/// timeout hiding it. So models must not depend on `wait_on`'s timed naps (they set
/// `may_sleep` before the other side starts, so no transition nap is ever armed, and wait
/// with `Deadline::Never` and no `nap`).
///
/// The clock is logical: every read is one microsecond after the calling thread's previous
/// read, so a spin budget is a deterministic number of spins (loom replays each execution
/// and needs the same choices every time), and a clock read comes after every spin.
#[cfg(ipckit_loom)]
mod model {
    use super::{AtomicU32, Ordering};
    use loom::sync::{Condvar, Mutex};
    use std::collections::HashMap;
    use std::time::Duration;

    /// Per execution of a model (loom resets its lazy statics): the wake-ups each word has
    /// had, and the one condition variable every sleeper waits on.
    struct Futexes {
        woken: Mutex<HashMap<usize, u64>>,
        cv: Condvar,
    }

    loom::lazy_static! {
        static ref FUTEXES: Futexes = Futexes {
            woken: Mutex::new(HashMap::new()),
            cv: Condvar::new(),
        };
    }

    fn key(word: &AtomicU32) -> usize {
        word as *const AtomicU32 as usize
    }

    pub(crate) fn futex_wait(
        word: &AtomicU32,
        expected: u32,
        _timeout: Option<Duration>,
    ) -> std::io::Result<bool> {
        let f = &*FUTEXES;
        let mut woken = f.woken.lock().unwrap();
        if word.load(Ordering::SeqCst) != expected {
            // EAGAIN: the word moved on before we slept.
            return Ok(true);
        }
        let mine = woken.get(&key(word)).copied().unwrap_or(0);
        // A wake of another word notifies us too: sleep on until ours comes.
        while woken.get(&key(word)).copied().unwrap_or(0) == mine {
            woken = f.cv.wait(woken).unwrap();
        }
        Ok(true)
    }

    pub(crate) fn futex_wake(word: &AtomicU32) {
        let f = &*FUTEXES;
        let mut woken = f.woken.lock().unwrap();
        *woken.entry(key(word)).or_insert(0) += 1;
        f.cv.notify_all();
    }

    /// A spin budget of `n` µs is `n` spins.
    pub(crate) const SPINS_PER_CLOCK_READ: u32 = 1;

    loom::thread_local! {
        static TICKS: std::cell::Cell<u64> = std::cell::Cell::new(0);
    }

    /// A logical instant: one microsecond after this thread's previous read.
    pub(crate) fn now() -> std::time::Instant {
        static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let base = *BASE.get_or_init(std::time::Instant::now);
        let t = TICKS.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        base + Duration::from_micros(t)
    }
}
