//! The one wait loop of the shared-memory structures: spin under the wait strategy, then
//! sleep on a futex word with the Dekker handshake that `ring::wake` (and the MPSC queue's
//! wakers) complete: the sleeper announces itself (`SeqCst`), fences, looks once more, and
//! sleeps only on the word value it read before announcing.

use super::ring::WaitLine;
use super::sync::{fence, futex_wait, AtomicU32, Ordering};
use crate::error::WaitError;
use crate::wait::{Deadline, Wait};
use std::time::{Duration, Instant};

/// One side's way to announce that it sleeps on a futex word.
pub(crate) trait Sleeper {
    fn word(&self) -> &AtomicU32;
    /// About to sleep (`SeqCst`, before the last look at the queue).
    fn enter(&self);
    /// Awake again.
    fn leave(&self);
}

impl Sleeper for WaitLine {
    fn word(&self) -> &AtomicU32 {
        &self.seq
    }
    fn enter(&self) {
        self.sleeping.store(1, Ordering::SeqCst);
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
const CLOCK_EVERY: u32 = 64;

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
        let start = Instant::now();
        loop {
            super::sync::spin();
            n = n.wrapping_add(1);
            let slow = n.is_multiple_of(CLOCK_EVERY);
            if let Some(v) = attempt(slow)? {
                return Ok(v);
            }
            if slow {
                let now = Instant::now();
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
        let now = Instant::now();
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
        let r = futex_wait(sleeper.word(), s, timeout);
        sleeper.leave();
        r?;
    }
}
