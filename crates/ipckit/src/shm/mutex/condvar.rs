//! [`ShmCondvar`]: the condition variable in a robust mutex's segment, a sequence word that
//! waiters sleep on (see the module docs of `mutex`).

use super::error::{LockError, LockResult};
use super::lock::{Acquired, Until, CHECK_EVERY};
use super::plain::Plain;
use super::shm_mutex::{MutexGuard, ShmMutex};
use crate::sys::shm::{futex_wait, futex_wake, futex_wake_n};
use std::fmt;
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl<T: Plain> ShmMutex<T> {
    /// The condition variable that goes with this mutex.
    pub fn condvar(&self) -> ShmCondvar<'_, T> {
        ShmCondvar { mutex: self }
    }
}

/// Whether a [`ShmCondvar::wait_timeout`] returned because its time passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True if the time passed (the condition may still have changed: check it).
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

/// The process-shared condition variable in a [`ShmMutex`]'s segment, used with that mutex's
/// guards only. Wake-ups may be spurious: wait in a loop, or with [`ShmCondvar::wait_while`].
pub struct ShmCondvar<'a, T: Plain> {
    mutex: &'a ShmMutex<T>,
}

impl<T: Plain> Clone for ShmCondvar<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Plain> Copy for ShmCondvar<'_, T> {}

impl<T: Plain> fmt::Debug for ShmCondvar<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmCondvar")
            .field("mutex", self.mutex)
            .finish()
    }
}

impl<'a, T: Plain> ShmCondvar<'a, T> {
    fn check_guard(&self, guard: &MutexGuard<'_, T>) {
        assert!(
            std::ptr::eq(guard.mutex, self.mutex),
            "ShmCondvar: a guard of another ShmMutex than the condition variable's"
        );
    }

    /// Unlocks, sleeps until notified, and locks again.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] if a holder died while this thread slept (locked again:
    /// repair, then [`MutexGuard::make_consistent`]), [`LockError::NotRecoverable`] (not
    /// locked), or [`LockError::Io`].
    ///
    /// # Panics
    ///
    /// If `guard` is of another [`ShmMutex`] than the one this came from.
    #[doc(alias = "pthread_cond_wait")]
    pub fn wait<'g>(&self, guard: MutexGuard<'g, T>) -> LockResult<MutexGuard<'g, T>> {
        self.wait_for(guard, None)
            .map(|(g, _)| g)
            .map_err(|e| e.map(|(g, _)| g))
    }

    /// As [`ShmCondvar::wait`], waiting at most `timeout` (monotonic clock) for a
    /// notification, and then at most `timeout` again (at least [`CHECK_EVERY`]) to take the
    /// lock back: a holder that keeps it longer (a hung or hostile peer) makes this
    /// [`LockError::Timeout`], returned without the lock, rather than a wait with no end.
    ///
    /// # Errors
    ///
    /// As [`ShmCondvar::wait`], and [`LockError::Timeout`] as above. An `OwnerDied` wait
    /// reports that it did not time out.
    ///
    /// # Panics
    ///
    /// As [`ShmCondvar::wait`].
    #[doc(alias = "pthread_cond_timedwait")]
    pub fn wait_timeout<'g>(
        &self,
        guard: MutexGuard<'g, T>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'g, T>, WaitTimeoutResult)> {
        self.wait_for(guard, Some(timeout))
    }

    /// Reads the sequence under the lock, unlocks, sleeps while the sequence is unchanged
    /// (at most `timeout`), and locks again.
    fn wait_for<'g>(
        &self,
        guard: MutexGuard<'g, T>,
        timeout: Option<Duration>,
    ) -> LockResult<(MutexGuard<'g, T>, WaitTimeoutResult)> {
        self.check_guard(&guard);
        let m: &'g ShmMutex<T> = guard.mutex;
        let seq = m.cond_seq();
        let s = seq.load(Ordering::Relaxed);
        let inconsistent = guard.inconsistent;
        guard.disarm();
        m.words().release(inconsistent);
        // Woken, the sequence moved, or a signal: all "notified" (wake-ups may be spurious).
        // An error (none is expected of our own mapping) counts as a wake-up.
        let timed_out = !futex_wait(seq, s, timeout).unwrap_or(true);
        let relock = match timeout {
            None => Until::Never,
            Some(t) => Until::after(t.max(CHECK_EVERY)),
        };
        match m.words().acquire(relock) {
            Acquired::Locked => Ok((MutexGuard::new(m, false), WaitTimeoutResult(timed_out))),
            Acquired::OwnerDied => Err(LockError::OwnerDied((
                MutexGuard::new(m, true),
                WaitTimeoutResult(false),
            ))),
            Acquired::NotRecoverable => Err(LockError::NotRecoverable),
            Acquired::Busy | Acquired::TimedOut => Err(LockError::Timeout),
            Acquired::Deadlock => Err(LockError::Io(io::Error::new(
                io::ErrorKind::Deadlock,
                "the mutex's lock word names this thread, which released it (another \
                 process wrote it)",
            ))),
        }
    }

    /// Waits while `condition` holds for the value, checking it first and after every
    /// wake-up.
    ///
    /// # Errors
    ///
    /// As [`ShmCondvar::wait`]: an `OwnerDied` returns at once, before `condition` is checked
    /// again, so the value can be repaired first.
    ///
    /// # Panics
    ///
    /// As [`ShmCondvar::wait`].
    pub fn wait_while<'g>(
        &self,
        mut guard: MutexGuard<'g, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<MutexGuard<'g, T>> {
        while condition(&mut guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// As [`ShmCondvar::wait_while`], waiting at most `timeout` in all.
    ///
    /// # Errors
    ///
    /// As [`ShmCondvar::wait_while`].
    ///
    /// # Panics
    ///
    /// As [`ShmCondvar::wait`].
    pub fn wait_timeout_while<'g>(
        &self,
        mut guard: MutexGuard<'g, T>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<(MutexGuard<'g, T>, WaitTimeoutResult)> {
        let end = Instant::now().checked_add(timeout);
        while condition(&mut guard) {
            let left = end.map_or(timeout, |e| e.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return Ok((guard, WaitTimeoutResult(true)));
            }
            guard = self.wait_timeout(guard, left)?.0;
        }
        Ok((guard, WaitTimeoutResult(false)))
    }

    /// Wakes one waiter, if any (in any process).
    #[doc(alias = "pthread_cond_signal")]
    pub fn notify_one(&self) {
        let seq = self.mutex.cond_seq();
        seq.fetch_add(1, Ordering::Release);
        futex_wake_n(seq, 1);
    }

    /// Wakes every waiter (in every process).
    #[doc(alias = "pthread_cond_broadcast")]
    pub fn notify_all(&self) {
        let seq = self.mutex.cond_seq();
        seq.fetch_add(1, Ordering::Release);
        futex_wake(seq);
    }
}
