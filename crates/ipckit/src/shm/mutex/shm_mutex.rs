//! [`ShmMutex`]: initializing and checking a robust-mutex segment (which
//! [`MutexBuilder`](super::MutexBuilder) makes or opens), and locking it; and
//! [`MutexGuard`], the lock held.

// Opting in to unsafe (the crate root denies it): the guard lends the value, which only the
// lock makes exclusive. Every block says what it relies on.
#![allow(unsafe_code)]

use super::error::{LockError, LockResult};
use super::layout::{
    placement, DataCell, MutexHeader, COND_OFF, DATA_MIN_OFF, MUTEX_MAGIC, MUTEX_OFF,
};
use super::lock::{Acquired, LockWords, Until};
use super::plain::Plain;
use crate::shm::segment::Segment;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A mutex over a `T` in shared memory that survives its holder's death.
///
/// The segment holds the lock, a condition variable (both ipckit's own, on futex words: see
/// the module docs) and the `T`. Every process that maps it locks the mutex to
/// read or write the value; [`ShmCondvar`] (from [`ShmMutex::condvar`]) sleeps until another
/// process changes it. A named segment is unlinked when its creator's `ShmMutex` drops; other
/// processes keep their mapping, so nothing is left behind whoever dies first.
///
/// ```
/// use ipckit::shm::{LockError, MutexBuilder};
/// # fn main() -> std::io::Result<()> {
/// let m = MutexBuilder::anonymous().create([0u64; 2])?; // or MutexBuilder::new("/name")
/// let mut g = match m.lock() {
///     Ok(g) => g,
///     // The last holder died while holding it: the value is as it left it. Repair it,
///     // then say so; otherwise the mutex is unusable for everyone from now on.
///     Err(LockError::OwnerDied(mut g)) => {
///         g[1] = g[0];
///         g.make_consistent()?;
///         g
///     }
///     Err(e) => return Err(e.into()),
/// };
/// g[0] += 1;
/// g[1] += 1;
/// drop(g);
/// assert_eq!(*m.lock()?, [1, 1]);
/// # Ok(()) }
/// ```
///
/// Across processes, one creates the segment and the others open it by name:
///
/// ```
/// use ipckit::shm::{MutexBuilder, ShmMutex};
/// use std::time::Duration;
/// # fn main() -> std::io::Result<()> {
/// # let jobs = format!("/doc-jobs-{}", std::process::id()); // unique: examples run at once
/// # let name = jobs.clone();
/// // Process 1
/// let m = MutexBuilder::new(&jobs).create(0u64)?; // owner-only, exclusive; unlinked on drop
///
/// // Process 2 (another process in real use; a thread here, so that the example runs)
/// let process_2 = std::thread::spawn(move || -> std::io::Result<()> {
///     let m = ShmMutex::<u64>::builder(&name).open()?; // checks the layout and value's size
///     *m.lock_timeout(Duration::from_secs(1))? += 1;
///     m.condvar().notify_all();
///     Ok(())
/// });
///
/// // Process 1
/// let ready = m.condvar();
/// let (g, _) = ready.wait_timeout_while(m.lock()?, Duration::from_secs(10), |jobs| *jobs == 0)?;
/// assert_eq!(*g, 1);
/// # drop(g);
/// # process_2.join().unwrap()?;
/// # Ok(()) }
/// ```
///
/// # When a holder dies
///
/// A process (or thread) that dies holding the lock does not leave it locked: a waiter sees
/// within [`CHECK_EVERY`] that the holder's thread is gone, takes the lock over, and gets
/// [`LockError::OwnerDied`] carrying the guard (so does any later locker). That
/// locker holds the mutex; the value is exactly as the dead holder left it, perhaps
/// half-updated. Repair it and call [`MutexGuard::make_consistent`]. **A guard from
/// `OwnerDied` dropped without `make_consistent` makes the mutex unrecoverable**: every later
/// lock, wait or try, in every process, returns [`LockError::NotRecoverable`], and the only
/// way on is a new segment. This is POSIX's robust-mutex protocol (`EOWNERDEAD`,
/// `pthread_mutex_consistent`, `ENOTRECOVERABLE`): the conservative default for a state
/// nobody vouched for. A wait on the condition variable that reacquires such a mutex returns
/// `OwnerDied` the same way.
///
/// # Limits
///
/// - Every process must use the same `T`: its size and alignment are recorded and checked
///   when it is opened ([`MutexBuilder::open`](super::MutexBuilder::open)). A segment that
///   fails a check is refused with `InvalidData`, never used.
/// - Holders are named by thread id: every process sharing the mutex must be in one pid
///   namespace (a container's processes with the host's do not qualify).
/// - A peer that can write the segment can hold the lock for ever (so can one that locks it
///   and never unlocks); it cannot make a call wait past its timeout, read or write outside
///   the mapping, or panic. Lock with [`ShmMutex::lock_timeout`] where that matters.
/// - Lock and unlock happen on one thread: [`MutexGuard`] is not `Send`.
///
/// # References
///
/// `futex(2)`; the robust-mutex protocol it follows: `pthread_mutexattr_setrobust(3)`,
/// `pthread_mutex_consistent(3)`; Drepper, "Futexes Are Tricky" (the lock word's protocol).
///
/// [`ShmCondvar`]: super::ShmCondvar
/// [`CHECK_EVERY`]: super::CHECK_EVERY
pub struct ShmMutex<T: Plain> {
    data_off: usize,
    seg: Segment,
    _value: PhantomData<T>,
}

impl<T: Plain> fmt::Debug for ShmMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmMutex")
            .field("segment", &self.seg)
            .field("value", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

impl<T: Plain> ShmMutex<T> {
    /// Writes the header and the value (the lock words of a new segment are zero: free),
    /// then publishes the segment to openers.
    pub(super) fn init(mut seg: Segment, off: usize, init: T) -> io::Result<ShmMutex<T>> {
        {
            let r = seg.region();
            let cell: &DataCell<T> = r.at(off);
            // SAFETY: not yet published, so no one else reads or writes these bytes; the
            // zeroes overwritten are a `T: Plain`, which has no drop glue.
            unsafe { cell.0.get().write(init) };
            let h: &MutexHeader = r.at(0);
            h.data_off.store(off as u64, Ordering::Relaxed);
            h.data_size.store(size_of::<T>() as u64, Ordering::Relaxed);
            h.data_align
                .store(align_of::<T>() as u64, Ordering::Relaxed);
            h.magic.store(MUTEX_MAGIC, Ordering::Relaxed);
        }
        // The segment's magic is stored with `Release`: an opener that sees it sees all this.
        seg.publish();
        Ok(ShmMutex::new(seg, off))
    }

    /// Checks an opened segment's header against this build and this `T`.
    pub(super) fn adopt(seg: Segment) -> io::Result<ShmMutex<T>> {
        let (off, total) = placement::<T>()?;
        let what = seg.name().unwrap_or("the segment").to_owned();
        let bad = |msg: String| io::Error::new(io::ErrorKind::InvalidData, format!("{what} {msg}"));
        if seg.len() < DATA_MIN_OFF {
            return Err(bad(format!(
                "is {} bytes, too small for a robust mutex",
                seg.len()
            )));
        }
        let r = seg.region();
        let h: &MutexHeader = r.at(0);
        // Opening saw the segment's magic with `Acquire`: the header is complete.
        if h.magic.load(Ordering::Relaxed) != MUTEX_MAGIC {
            return Err(bad(
                "has the robust-mutex layout but its mutex was never initialized (not made by \
                 ShmMutex)"
                    .into(),
            ));
        }
        let (size, align, at) = (
            h.data_size.load(Ordering::Relaxed),
            h.data_align.load(Ordering::Relaxed),
            h.data_off.load(Ordering::Relaxed),
        );
        if (size, align) != (size_of::<T>() as u64, align_of::<T>() as u64) {
            return Err(bad(format!(
                "guards a {size}-byte value aligned to {align}; a ShmMutex<{}> guards {} bytes \
                 aligned to {}",
                std::any::type_name::<T>(),
                size_of::<T>(),
                align_of::<T>()
            )));
        }
        if at != off as u64 || seg.len() < total {
            return Err(bad(format!(
                "puts its value at offset {at} of {} bytes; expected offset {off} of at least \
                 {total}",
                seg.len()
            )));
        }
        Ok(ShmMutex::new(seg, off))
    }

    fn new(seg: Segment, data_off: usize) -> ShmMutex<T> {
        ShmMutex {
            data_off,
            seg,
            _value: PhantomData,
        }
    }

    pub(super) fn words(&self) -> &LockWords {
        self.seg.region().at(MUTEX_OFF)
    }

    pub(super) fn cond_seq(&self) -> &AtomicU32 {
        self.seg.region().at(COND_OFF)
    }

    fn cell(&self) -> &DataCell<T> {
        self.seg.region().at(self.data_off)
    }

    /// Locks, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (locked: repair, then [`MutexGuard::make_consistent`]),
    /// [`LockError::NotRecoverable`], or [`LockError::Io`] (`Deadlock` if this thread holds
    /// it already).
    #[doc(alias = "pthread_mutex_lock")]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        self.guard(self.words().acquire(Until::Never))
    }

    /// Locks if no one holds the mutex; never waits.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] if someone does; otherwise as [`ShmMutex::lock`].
    #[doc(alias = "pthread_mutex_trylock")]
    pub fn try_lock(&self) -> LockResult<MutexGuard<'_, T>> {
        self.guard(self.words().acquire(Until::Now))
    }

    /// Locks, waiting at most `timeout` (on the monotonic clock).
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`]; otherwise as [`ShmMutex::lock`].
    #[doc(alias = "pthread_mutex_timedlock")]
    #[doc(alias = "pthread_mutex_clocklock")]
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<MutexGuard<'_, T>> {
        self.guard(self.words().acquire(Until::after(timeout)))
    }

    fn guard(&self, r: Acquired) -> LockResult<MutexGuard<'_, T>> {
        match r {
            Acquired::Locked => Ok(MutexGuard::new(self, false)),
            Acquired::OwnerDied => Err(LockError::OwnerDied(MutexGuard::new(self, true))),
            Acquired::Busy => Err(LockError::WouldBlock),
            Acquired::TimedOut => Err(LockError::Timeout),
            Acquired::NotRecoverable => Err(LockError::NotRecoverable),
            Acquired::Deadlock => Err(LockError::Io(io::Error::new(
                io::ErrorKind::Deadlock,
                "this thread holds the mutex already",
            ))),
        }
    }

    /// The segment's name (`/name`), or `None` for a memfd.
    pub fn name(&self) -> Option<&str> {
        self.seg.name()
    }

    /// The segment: its creator, its size, whether this process owns its name.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl<T: Plain> AsFd for ShmMutex<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.seg.as_fd()
    }
}

/// The lock, held: derefs to the value. Unlocks on drop, on the thread that locked (so it is
/// not `Send`).
#[must_use = "the mutex unlocks as soon as the guard drops"]
pub struct MutexGuard<'a, T: Plain> {
    pub(super) mutex: &'a ShmMutex<T>,
    /// Taken over from a dead holder and not yet made consistent.
    pub(super) inconsistent: bool,
    /// The lock word names the thread that locked it.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a `&MutexGuard` only lends `&T`, and `T: Plain` is `Sync`.
unsafe impl<T: Plain> Sync for MutexGuard<'_, T> {}

impl<'a, T: Plain> MutexGuard<'a, T> {
    pub(super) fn new(mutex: &'a ShmMutex<T>, inconsistent: bool) -> MutexGuard<'a, T> {
        MutexGuard {
            mutex,
            inconsistent,
            _not_send: PhantomData,
        }
    }

    /// Says the value a dead holder left has been repaired: the mutex goes on as normal. Call
    /// it on the guard of a [`LockError::OwnerDied`] before dropping it, or the mutex becomes
    /// unrecoverable. On any other guard it does nothing.
    ///
    /// # Errors
    ///
    /// None today: the `Result` is kept so that a check can be added without breaking
    /// callers.
    #[doc(alias = "pthread_mutex_consistent")]
    pub fn make_consistent(&mut self) -> io::Result<()> {
        self.inconsistent = false;
        Ok(())
    }

    /// Forgets the guard without unlocking: for a wait that came back without the lock.
    pub(super) fn disarm(self) {
        std::mem::forget(self);
    }
}

impl<T: Plain> Deref for MutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this thread holds the lock, and every process touches the value only under
        // it (ShmMutex offers no other access), so nobody writes it while this borrow lives;
        // `T: Plain` is valid for whatever bytes a previous holder, even one that died
        // mid-write, left there.
        unsafe { &*self.mutex.cell().0.get() }
    }
}

impl<T: Plain> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow of the value.
        unsafe { &mut *self.mutex.cell().0.get() }
    }
}

impl<T: Plain> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // Unlocking an inconsistent mutex is what makes it unrecoverable (POSIX): that is the
        // documented result of dropping an `OwnerDied` guard without `make_consistent`.
        self.mutex.words().release(self.inconsistent);
    }
}

impl<T: Plain + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
