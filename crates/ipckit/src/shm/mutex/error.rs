//! [`LockError`]: why a lock or a wait did not simply succeed.

use std::fmt;
use std::io;

/// Why a lock (or a wait, which relocks) did not simply succeed. `G` is what a successful
/// call returns: the guard, or the guard and a [`WaitTimeoutResult`].
///
/// Converts into `io::Error` for callers that only want `?`; an `OwnerDied` guard dropped that
/// way leaves the mutex unrecoverable (see
/// [`ShmMutex`](super::ShmMutex#when-a-holder-dies)).
///
/// [`WaitTimeoutResult`]: super::WaitTimeoutResult
#[non_exhaustive]
pub enum LockError<G> {
    /// The previous holder died holding the lock. The lock is yours (the guard is here), but
    /// the value may be half-updated: repair it and call
    /// [`MutexGuard::make_consistent`](super::MutexGuard::make_consistent), or the mutex
    /// becomes unrecoverable when the guard drops.
    OwnerDied(G),
    /// A holder died and its successor unlocked without
    /// [`MutexGuard::make_consistent`](super::MutexGuard::make_consistent): the mutex can
    /// never be locked again, in any process. Make a new segment.
    NotRecoverable,
    /// [`ShmMutex::try_lock`](super::ShmMutex::try_lock): another thread (of any process) holds it.
    WouldBlock,
    /// [`ShmMutex::lock_timeout`](super::ShmMutex::lock_timeout): the time passed before the
    /// lock was free.
    Timeout,
    /// Any other error: `Deadlock` if this thread already holds the lock, or an OS error.
    Io(io::Error),
}

/// The result of a lock or a wait.
pub type LockResult<G> = Result<G, LockError<G>>;

impl<G> LockError<G> {
    /// The guard of an [`LockError::OwnerDied`]; `None` for the other errors.
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }

    pub(super) fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(g) => LockError::OwnerDied(f(g)),
            LockError::NotRecoverable => LockError::NotRecoverable,
            LockError::WouldBlock => LockError::WouldBlock,
            LockError::Timeout => LockError::Timeout,
            LockError::Io(e) => LockError::Io(e),
        }
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::NotRecoverable => f.write_str("NotRecoverable"),
            LockError::WouldBlock => f.write_str("WouldBlock"),
            LockError::Timeout => f.write_str("Timeout"),
            LockError::Io(e) => f.debug_tuple("Io").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str(
                "the mutex's previous holder died holding it; the state it guards may be \
                 inconsistent",
            ),
            LockError::NotRecoverable => f.write_str(
                "the mutex is not recoverable: a holder died and nobody marked the state \
                 consistent",
            ),
            LockError::WouldBlock => f.write_str("the mutex is held"),
            LockError::Timeout => f.write_str("timed out waiting for the mutex"),
            LockError::Io(e) => e.fmt(f),
        }
    }
}

impl<G> std::error::Error for LockError<G> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl<G> From<LockError<G>> for io::Error {
    /// `EOWNERDEAD` (the guard is dropped: the mutex becomes unrecoverable),
    /// `ENOTRECOVERABLE`, `WouldBlock`, `TimedOut`, or the error itself.
    fn from(e: LockError<G>) -> io::Error {
        let msg = e.to_string();
        match e {
            LockError::OwnerDied(_) => os_error(libc::EOWNERDEAD, msg),
            LockError::NotRecoverable => os_error(libc::ENOTRECOVERABLE, msg),
            LockError::WouldBlock => io::Error::new(io::ErrorKind::WouldBlock, msg),
            LockError::Timeout => io::Error::new(io::ErrorKind::TimedOut, msg),
            LockError::Io(e) => e,
        }
    }
}

fn os_error(code: i32, msg: String) -> io::Error {
    io::Error::new(io::Error::from_raw_os_error(code).kind(), msg)
}
