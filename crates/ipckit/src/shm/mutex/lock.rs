//! The lock's protocol on its futex word (see the module docs of `mutex`): taking it for
//! this thread, waiting as long as asked, taking it over from a holder that no longer
//! exists, and giving it back.

// Opting in to unsafe (the crate root denies it): the lock words live in shared memory
// (`Shared`).
#![allow(unsafe_code)]

use crate::shm::region::Shared;
use crate::sys::proc::{this_thread, thread_alive};
use crate::sys::shm::{futex_wait, futex_wake, futex_wake_n};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The lock word's thread-id bits.
pub(super) const TID_MASK: u32 = (1 << 30) - 1;
/// Set in the lock word when a thread may sleep on it: the unlocker wakes one.
pub(super) const WAITERS: u32 = 1 << 31;
/// The lock word of a mutex whose holder died and whose successor unlocked it without
/// repairing the value: nobody may lock it again (`WAITERS` may be set beside it).
pub(super) const NOT_RECOVERABLE: u32 = 1 << 30;
/// How long a waiter sleeps before it checks that the holder still exists: how late, at most,
/// a holder's death is noticed.
pub const CHECK_EVERY: Duration = Duration::from_millis(10);

/// The lock: the futex word, and who holds it.
#[repr(C)]
pub(super) struct LockWords {
    /// The holder's thread id, [`WAITERS`], or [`NOT_RECOVERABLE`] (see the module docs).
    pub(super) state: AtomicU32,
    _reserved: AtomicU32,
    /// `tid << 32 | start`: the holder's thread id and the low 32 bits of its start time,
    /// written just after it locks; a waiter uses it to tell a reused id from the holder.
    pub(super) owner: AtomicU64,
}

// SAFETY: atomics only; any bit pattern is a valid value.
unsafe impl Shared for LockWords {}

impl LockWords {
    /// The lock protocol (see the module docs): takes the lock word for this thread, waiting
    /// as `until` says.
    pub(super) fn acquire(&self, until: Until) -> Acquired {
        let w = self;
        let (me, my_start) = this_thread();
        // After a sleep the lock is taken with WAITERS set: others may sleep still.
        let mut slept = false;
        // Set once the holder (`held_by`) has kept the lock through a whole check interval, or
        // at once when the caller will not wait: then ask whether it still exists.
        let mut check = matches!(until, Until::Now);
        // Set when the time is up and the holder was looked at once more.
        let mut last_look = matches!(until, Until::Now);
        let mut held_by = None;
        loop {
            let s = w.state.load(Ordering::Acquire);
            if s & !WAITERS == NOT_RECOVERABLE {
                return Acquired::NotRecoverable;
            }
            let tid = s & TID_MASK;
            // A word with a stray bit 30 beside an id is not one ipckit writes: treated as
            // the id it names, like any other.
            let free = tid == 0;
            let dead = !free && {
                if tid == me {
                    return Acquired::Deadlock;
                }
                if held_by != Some(tid) {
                    // A new holder: it gets a whole interval before it is looked at.
                    held_by = Some(tid);
                    check |= matches!(until, Until::Now);
                }
                check && {
                    check = false;
                    let o = w.owner.load(Ordering::Relaxed);
                    let start = ((o >> 32) as u32 == tid).then_some(o as u32);
                    !thread_alive(tid, start)
                }
            };
            if free || dead {
                let keep = if slept { WAITERS } else { s & WAITERS };
                if w.state
                    .compare_exchange(s, me | keep, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    w.owner
                        .store(u64::from(me) << 32 | u64::from(my_start), Ordering::Relaxed);
                    return if dead {
                        Acquired::OwnerDied
                    } else {
                        Acquired::Locked
                    };
                }
                continue;
            }
            let slice = match until.left() {
                None => CHECK_EVERY,
                Some(left) if !left.is_zero() => left.min(CHECK_EVERY),
                Some(_) if !last_look => {
                    // The time is up: one last look at whether the holder still exists.
                    (last_look, check) = (true, true);
                    continue;
                }
                Some(_) => {
                    return if matches!(until, Until::Now) {
                        Acquired::Busy
                    } else {
                        Acquired::TimedOut
                    }
                }
            };
            if s & WAITERS == 0
                && w.state
                    .compare_exchange(s, s | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            slept = true;
            // Woken, or the word changed: look again. The slice passed: check the holder.
            // An error (none is expected of a futex wait on our own mapping) is a slice too.
            if !futex_wait(&w.state, s | WAITERS, Some(slice)).unwrap_or(false) {
                check = true;
            }
        }
    }

    /// Unlocks (as the holder): frees the lock word, or marks the mutex unrecoverable, and
    /// wakes a sleeper (every sleeper, for an unrecoverable one).
    pub(super) fn release(&self, inconsistent: bool) {
        let w = self;
        if inconsistent {
            w.state.swap(NOT_RECOVERABLE, Ordering::Release);
            futex_wake(&w.state);
        } else if w.state.swap(0, Ordering::Release) & WAITERS != 0 {
            futex_wake_n(&w.state, 1);
        }
    }
}

/// How long [`LockWords::acquire`] may wait.
#[derive(Clone, Copy)]
pub(super) enum Until {
    /// Not at all (`try_lock`).
    Now,
    /// Until this instant.
    At(Instant),
    /// As long as it takes.
    Never,
}

impl Until {
    pub(super) fn after(timeout: Duration) -> Until {
        Instant::now()
            .checked_add(timeout)
            .map_or(Until::Never, Until::At)
    }

    /// Time left: `None` for no limit.
    fn left(self) -> Option<Duration> {
        match self {
            Until::Now => Some(Duration::ZERO),
            Until::At(t) => Some(t.saturating_duration_since(Instant::now())),
            Until::Never => None,
        }
    }
}

/// What [`LockWords::acquire`] did.
pub(super) enum Acquired {
    Locked,
    /// Locked, taken over from a holder that no longer exists.
    OwnerDied,
    /// Held by another (`Until::Now`).
    Busy,
    TimedOut,
    NotRecoverable,
    /// Held by this thread.
    Deadlock,
}
