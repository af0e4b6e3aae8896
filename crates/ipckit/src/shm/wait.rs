//! The one wait loop of the shared-memory structures: spin under the wait strategy, then
//! sleep on a futex word with the Dekker handshake that `ring::wake` (and the MPSC queue's
//! `wake_space`) complete.
//!
//! The sleeper, on every pass: reads the futex word, announces itself (`SeqCst`), fences,
//! looks once more, and sleeps only on the word value it read before announcing. The waker,
//! after publishing: fences, and if it finds an announcement it *claims* it (swaps it to
//! 0), then bumps the word and wakes. Either the sleeper's last look sees the publication
//! or the waker's look sees the announcement (the two fences are ordered one way or the
//! other); and a claimed announcement is a wake-up on its way, since the bump comes after
//! the sleeper's read of the word. Claiming makes it one wake-up per sleep: publications
//! while the woken sleeper is still on its way out of the kernel find no announcement and
//! make no syscall. Hence the sleeper announces itself again on every pass.

use super::ring::WaitLine;
use super::sync::{self, fence, futex_wait, AtomicU32, Ordering};
use crate::error::WaitError;
use crate::wait::{Deadline, Wait};
use std::time::{Duration, Instant};

/// One side's way to announce that it sleeps on a futex word.
pub(crate) trait Sleeper {
    fn word(&self) -> &AtomicU32;
    /// About to sleep (`SeqCst`, before the last look at the queue). On every pass: a waker
    /// that claims the announcement clears it.
    fn enter(&self);
    /// Awake and going: withdraws an announcement no waker claimed.
    fn leave(&self);
}

impl Sleeper for WaitLine {
    fn word(&self) -> &AtomicU32 {
        &self.seq
    }
    fn enter(&self) {
        // A swap, not a store: the same `xchg` on x86, and as a read-modify-write it is
        // ordered after a waker's claim of the previous announcement (loom, whose
        // modification order of plain stores is partial, would otherwise let the next
        // waker read the claim's 0 after its fence saw this 1).
        self.sleeping.swap(1, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.sleeping.store(0, Ordering::Relaxed);
    }
}

/// For this long after a side starts to sleep, having only spun
/// before, its sleeps are capped at [`TRANSITION_NAP`]: the other side may have published
/// with the old "never sleeps" flag in view and skipped the wake-up.
const TRANSITION: Duration = Duration::from_millis(10);
const TRANSITION_NAP: Duration = Duration::from_millis(1);
/// Spins between clock reads (and the slow checks).
const CLOCK_EVERY: u32 = sync::SPINS_PER_CLOCK_READ;

/// Runs `attempt` under `wait` until it yields, the deadline passes, or it fails.
/// `attempt(true)` may do the slow checks (the consumer's scan); it is called so at least
/// every [`CLOCK_EVERY`] spins and on every wake-up. Each sleep lasts at most `nap`.
pub(crate) fn wait_on<T, E: WaitError>(
    wait: Wait,
    deadline: Deadline,
    sleeper: &impl Sleeper,
    woke: &mut Option<Instant>,
    nap: Option<Duration>,
    mut attempt: impl FnMut(bool) -> Result<Option<T>, E>,
) -> Result<T, E> {
    if let Some(v) = attempt(true)? {
        return Ok(v);
    }
    if deadline == Deadline::Now {
        return Err(E::would_block());
    }
    let spin_for = match wait {
        Wait::Spin => None,
        Wait::Block => Some(Duration::ZERO),
        Wait::Adaptive { spin } => Some(spin),
    };
    if spin_for != Some(Duration::ZERO) {
        let mut n: u32 = 0;
        let start = sync::now();
        loop {
            sync::spin();
            n = n.wrapping_add(1);
            let slow = n.is_multiple_of(CLOCK_EVERY);
            if let Some(v) = attempt(slow)? {
                return Ok(v);
            }
            if slow {
                let now = sync::now();
                if let Deadline::At(t) = deadline {
                    if now >= t {
                        return Err(E::timed_out());
                    }
                }
                if spin_for.is_some_and(|s| now.duration_since(start) >= s) {
                    break;
                }
            }
        }
    }
    loop {
        let s = sleeper.word().load(Ordering::SeqCst);
        sleeper.enter();
        fence(Ordering::SeqCst);
        match attempt(true) {
            Ok(None) => {}
            Ok(Some(v)) => {
                sleeper.leave();
                return Ok(v);
            }
            Err(e) => {
                sleeper.leave();
                return Err(e);
            }
        }
        let now = sync::now();
        let mut timeout = match deadline {
            Deadline::At(t) if now >= t => {
                sleeper.leave();
                return Err(E::timed_out());
            }
            Deadline::At(t) => Some(t - now),
            _ => None,
        };
        if let Some(w) = *woke {
            if now.duration_since(w) < TRANSITION {
                timeout = Some(timeout.map_or(TRANSITION_NAP, |t| t.min(TRANSITION_NAP)));
            } else {
                *woke = None;
            }
        }
        if let Some(n) = nap {
            timeout = Some(timeout.map_or(n, |t| t.min(n)));
        }
        // No `leave` after the sleep: a waker claimed the announcement, or it stands until
        // the next pass renews it (a timeout or a spurious return).
        if let Err(e) = futex_wait(sleeper.word(), s, timeout) {
            sleeper.leave();
            return Err(e.into());
        }
    }
}
