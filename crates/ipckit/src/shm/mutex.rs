//! A robust, process-shared mutex over a plain value in shared memory, and its condition
//! variable: [`ShmMutex`] (whose docs say how it behaves when a holder dies), [`ShmCondvar`],
//! the [`Plain`] trait for the value, and [`LockError`].
//!
//! One segment of [`MUTEX_LAYOUT`] holds, in its data: ipckit's `MutexHeader` (the value's
//! size, alignment and offset, checked by every opener), the lock's words at 64 (the futex
//! word and the holder's identity), the condition variable's sequence word at 128, and the
//! value from 192 (or its alignment).
//!
//! # The lock's protocol
//!
//! Both objects are ipckit's own, on futex words, so that nothing another process writes into
//! the segment is ever handed to code that trusts it (a C library's pthread objects carry
//! pointers and kinds that glibc follows). The lock word holds the holder's thread id (bits
//! 0-29; Linux ids stay below 2^22), bit 31 when someone may sleep on it, and
//! [`NOT_RECOVERABLE`] for a mutex nobody may lock again. Locking is a compare-and-swap from
//! a free word to our id; unlocking swaps in 0 and wakes one sleeper if the bit was set, a
//! sleeper that wakes taking the lock with the bit set again (it cannot know it was the
//! last). The holder then records its id and start time in the owner word. A waiter that
//! finds the lock held by the same id for a whole [`CHECK_EVERY`] asks the kernel whether
//! that thread still exists (not a zombie, and started when the owner word says if the word
//! names it): if not, it takes the lock over and is told [`LockError::OwnerDied`]. Every word
//! is checked, never trusted: a word naming a thread that does not exist is a dead holder, a
//! live one is a holder (a peer that writes a live thread's id holds the lock, as it could
//! by locking), and every wait has a deadline or rechecks, so no value makes a call hang
//! beyond its timeout.
//!
//! The condition variable is a sequence number: a waiter reads it under the lock, unlocks,
//! and sleeps while it is unchanged; a notifier increments it and wakes one or all.

// Opting in to unsafe (the crate root denies it): the guard lends the value, which only the
// lock makes exclusive. Every block says what it relies on.
#![allow(unsafe_code)]

use super::region::Shared;
use super::segment::{Layout, Segment, SegmentBuilder, HEADER_LEN};
use crate::error::invalid;
use crate::sys::proc::{this_thread, thread_alive};
use crate::sys::shm::{futex_wait, futex_wake, futex_wake_n};
use std::cell::UnsafeCell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The layout of a robust-mutex segment: [`ShmMutex`]'s header, its mutex and condition
/// variable, then the value.
// Version 2: ipckit's own lock and condition variable (see the module docs); version 1 held
// the C library's pthread objects. A change to the header, offsets or protocol bumps it.
pub const MUTEX_LAYOUT: Layout = Layout {
    kind: 3,
    version: 2,
};

/// Where things are in the segment's data, each on its own cache line.
const MUTEX_OFF: usize = 64;
const COND_OFF: usize = 128;
/// The value starts here, or at the next multiple of its alignment.
const DATA_MIN_OFF: usize = 192;
const _: () = assert!(size_of::<MutexHeader>() <= MUTEX_OFF);
const _: () = assert!(size_of::<LockWords>() <= COND_OFF - MUTEX_OFF);
const _: () = assert!(size_of::<AtomicU32>() <= DATA_MIN_OFF - COND_OFF);

/// `"MUTX"`: the creator initialized the lock, the condition variable and the value.
const MUTEX_MAGIC: u32 = u32::from_le_bytes(*b"MUTX");

/// The lock word's thread-id bits.
const TID_MASK: u32 = (1 << 30) - 1;
/// Set in the lock word when a thread may sleep on it: the unlocker wakes one.
const WAITERS: u32 = 1 << 31;
/// The lock word of a mutex whose holder died and whose successor unlocked it without
/// repairing the value: nobody may lock it again (`WAITERS` may be set beside it).
const NOT_RECOVERABLE: u32 = 1 << 30;
/// How long a waiter sleeps before it checks that the holder still exists: how late, at most,
/// a holder's death is noticed.
pub const CHECK_EVERY: Duration = Duration::from_millis(10);

/// Plain data that can live in shared memory under a [`ShmMutex`]: integers, floats, arrays of
/// plain data, and your own `#[repr(C)]` structs of them.
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

/// ipckit's header at the start of the segment's data. Atomics only, so an opener reads it
/// safely whatever another process wrote.
#[repr(C)]
struct MutexHeader {
    /// [`MUTEX_MAGIC`] once everything else is written and initialized.
    magic: AtomicU32,
    _reserved: AtomicU32,
    /// Offset of the value in the data.
    data_off: AtomicU64,
    /// `size_of::<T>()` of the creator.
    data_size: AtomicU64,
    /// `align_of::<T>()` of the creator.
    data_align: AtomicU64,
}

// SAFETY: atomics only; any bit pattern is a valid value.
unsafe impl Shared for MutexHeader {}

/// The lock: the futex word, and who holds it.
#[repr(C)]
struct LockWords {
    /// The holder's thread id, [`WAITERS`], or [`NOT_RECOVERABLE`] (see the module docs).
    state: AtomicU32,
    _reserved: AtomicU32,
    /// `tid << 32 | start`: the holder's thread id and the low 32 bits of its start time,
    /// written just after it locks; a waiter uses it to tell a reused id from the holder.
    owner: AtomicU64,
}

// SAFETY: atomics only; any bit pattern is a valid value.
unsafe impl Shared for LockWords {}

/// The value, written only under the lock.
#[repr(transparent)]
struct DataCell<T>(UnsafeCell<T>);

// SAFETY: `T: Plain` is valid for any bit pattern, holds no pointers and has no drop glue;
// the `UnsafeCell` tells Rust that other holders of the lock write it.
unsafe impl<T: Plain> Shared for DataCell<T> {}

/// Where a `T` goes in the segment's data: its offset, and the data size the segment needs.
fn placement<T>() -> io::Result<(usize, usize)> {
    let align = align_of::<T>();
    if align > HEADER_LEN {
        // The data starts page-aligned: an alignment above a page cannot be honoured.
        return Err(invalid(format!(
            "a value aligned to {align} bytes cannot live in shared memory (at most \
             {HEADER_LEN})"
        )));
    }
    let off = DATA_MIN_OFF.next_multiple_of(align);
    let total = off
        .checked_add(size_of::<T>())
        .ok_or_else(|| invalid("the value is too large for a segment"))?;
    Ok((off, total))
}

/// Why a lock (or a wait, which relocks) did not simply succeed. `G` is what a successful
/// call returns: the guard, or the guard and a [`WaitTimeoutResult`].
///
/// Converts into `io::Error` for callers that only want `?`; an `OwnerDied` guard dropped that
/// way leaves the mutex unrecoverable (see [`ShmMutex`](ShmMutex#when-a-holder-dies)).
#[non_exhaustive]
pub enum LockError<G> {
    /// The previous holder died holding the lock. The lock is yours (the guard is here), but
    /// the value may be half-updated: repair it and call [`MutexGuard::make_consistent`], or
    /// the mutex becomes unrecoverable when the guard drops.
    OwnerDied(G),
    /// A holder died and its successor unlocked without [`MutexGuard::make_consistent`]: the
    /// mutex can never be locked again, in any process. Make a new segment.
    NotRecoverable,
    /// [`ShmMutex::try_lock`]: another thread (of any process) holds it.
    WouldBlock,
    /// [`ShmMutex::lock_timeout`]: the time passed before the lock was free.
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

    fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
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

/// A mutex over a `T` in shared memory that survives its holder's death.
///
/// The segment holds the lock, a condition variable (both ipckit's own, on futex words: see
/// the module docs) and the `T`. Every process that maps it locks the mutex to
/// read or write the value; [`ShmCondvar`] (from [`ShmMutex::condvar`]) sleeps until another
/// process changes it. A named segment is unlinked when its creator's `ShmMutex` drops; other
/// processes keep their mapping, so nothing is left behind whoever dies first.
///
/// ```
/// use ipckit::shm::{LockError, ShmMutex};
/// # fn main() -> std::io::Result<()> {
/// let m = ShmMutex::create_memfd([0u64; 2])?; // or ShmMutex::create("/name", ..)
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
/// ```no_run
/// use ipckit::shm::ShmMutex;
/// use std::time::Duration;
/// # fn main() -> std::io::Result<()> {
/// // Process 1
/// let m = ShmMutex::create("/jobs", 0u64)?; // owner-only, exclusive; unlinked on drop
/// let ready = m.condvar();
/// let g = ready.wait_while(m.lock()?, |jobs| *jobs == 0)?;
///
/// // Process 2
/// let m = ShmMutex::<u64>::open("/jobs")?; // checks the layout and the value's size
/// *m.lock_timeout(Duration::from_secs(1))? += 1;
/// m.condvar().notify_all();
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
/// - Every process must use the same `T`: its size and alignment are recorded and checked at
///   [`ShmMutex::open`]. A segment that fails a check is refused with `InvalidData`, never
///   used.
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
    /// Creates the segment `name` (`/name` or `name`) holding `init`, exclusively and
    /// owner-only (0600), recorded in the [`crate::registry`] and unlinked on drop.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad name (empty, a '/' after the first, over
    /// [`super::NAME_MAX`] bytes) or a `T` aligned above a page; `AlreadyExists`; or the OS
    /// error.
    pub fn create(name: &str, init: T) -> io::Result<ShmMutex<T>> {
        let (off, total) = placement::<T>()?;
        let seg = SegmentBuilder::new(total)
            .layout(MUTEX_LAYOUT)
            .create(name)?;
        ShmMutex::init(seg, off, init)
    }

    /// Creates an anonymous segment holding `init` (`memfd_create`), to be handed to another
    /// process by descriptor ([`AsFd`]) and opened there with [`ShmMutex::from_fd`].
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a `T` aligned above a page, or the OS error.
    pub fn create_memfd(init: T) -> io::Result<ShmMutex<T>> {
        let (off, total) = placement::<T>()?;
        let seg = SegmentBuilder::new(total)
            .layout(MUTEX_LAYOUT)
            .create_memfd()?;
        ShmMutex::init(seg, off, init)
    }

    /// Opens the segment `name` made by [`ShmMutex::create`] with the same `T`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad name; `NotFound`; `PermissionDenied` for a segment another
    /// user can write; `InvalidData` for a segment of another layout (not a mutex), a mutex
    /// over a value of another size or alignment.
    pub fn open(name: &str) -> io::Result<ShmMutex<T>> {
        let seg = SegmentBuilder::new(1)
            .layout(MUTEX_LAYOUT)
            .open_existing(name)?;
        ShmMutex::adopt(seg)
    }

    /// Opens a segment from a descriptor (a memfd from [`ShmMutex::create_memfd`] or a named
    /// segment's, received from another process), checking it as [`ShmMutex::open`] does.
    ///
    /// # Errors
    ///
    /// As [`ShmMutex::open`].
    pub fn from_fd(fd: OwnedFd) -> io::Result<ShmMutex<T>> {
        let seg = SegmentBuilder::new(1).layout(MUTEX_LAYOUT).from_fd(fd)?;
        ShmMutex::adopt(seg)
    }

    /// Writes the header and the value (the lock words of a new segment are zero: free),
    /// then publishes the segment to openers.
    fn init(mut seg: Segment, off: usize, init: T) -> io::Result<ShmMutex<T>> {
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
    fn adopt(seg: Segment) -> io::Result<ShmMutex<T>> {
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
        // `open_existing` saw the segment's magic with `Acquire`: the header is complete.
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

    fn words(&self) -> &LockWords {
        self.seg.region().at(MUTEX_OFF)
    }

    fn cond_seq(&self) -> &AtomicU32 {
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
        self.guard(self.acquire(Until::Never))
    }

    /// Locks if no one holds the mutex; never waits.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] if someone does; otherwise as [`ShmMutex::lock`].
    #[doc(alias = "pthread_mutex_trylock")]
    pub fn try_lock(&self) -> LockResult<MutexGuard<'_, T>> {
        self.guard(self.acquire(Until::Now))
    }

    /// Locks, waiting at most `timeout` (on the monotonic clock).
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`]; otherwise as [`ShmMutex::lock`].
    #[doc(alias = "pthread_mutex_timedlock")]
    #[doc(alias = "pthread_mutex_clocklock")]
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<MutexGuard<'_, T>> {
        self.guard(self.acquire(Until::after(timeout)))
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

    /// The lock protocol (see the module docs): takes the lock word for this thread, waiting
    /// as `until` says.
    fn acquire(&self, until: Until) -> Acquired {
        let w = self.words();
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
    fn release(&self, inconsistent: bool) {
        let w = self.words();
        if inconsistent {
            w.state.swap(NOT_RECOVERABLE, Ordering::Release);
            futex_wake(&w.state);
        } else if w.state.swap(0, Ordering::Release) & WAITERS != 0 {
            futex_wake_n(&w.state, 1);
        }
    }

    /// The condition variable that goes with this mutex.
    pub fn condvar(&self) -> ShmCondvar<'_, T> {
        ShmCondvar { mutex: self }
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

/// How long [`ShmMutex::acquire`] may wait.
#[derive(Clone, Copy)]
enum Until {
    /// Not at all (`try_lock`).
    Now,
    /// Until this instant.
    At(Instant),
    /// As long as it takes.
    Never,
}

impl Until {
    fn after(timeout: Duration) -> Until {
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

/// What [`ShmMutex::acquire`] did.
enum Acquired {
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

/// The lock, held: derefs to the value. Unlocks on drop, on the thread that locked (so it is
/// not `Send`).
#[must_use = "the mutex unlocks as soon as the guard drops"]
pub struct MutexGuard<'a, T: Plain> {
    mutex: &'a ShmMutex<T>,
    /// Taken over from a dead holder and not yet made consistent.
    inconsistent: bool,
    /// The lock word names the thread that locked it.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a `&MutexGuard` only lends `&T`, and `T: Plain` is `Sync`.
unsafe impl<T: Plain> Sync for MutexGuard<'_, T> {}

impl<'a, T: Plain> MutexGuard<'a, T> {
    fn new(mutex: &'a ShmMutex<T>, inconsistent: bool) -> MutexGuard<'a, T> {
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
    fn disarm(self) {
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
        self.mutex.release(self.inconsistent);
    }
}

impl<T: Plain + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
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
        m.release(inconsistent);
        // Woken, the sequence moved, or a signal: all "notified" (wake-ups may be spurious).
        // An error (none is expected of our own mapping) counts as a wake-up.
        let timed_out = !futex_wait(seq, s, timeout).unwrap_or(true);
        let relock = match timeout {
            None => Until::Never,
            Some(t) => Until::after(t.max(CHECK_EVERY)),
        };
        match m.acquire(relock) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn reopen<U: Plain>(m: &ShmMutex<impl Plain>) -> io::Result<ShmMutex<U>> {
        ShmMutex::from_fd(m.as_fd().try_clone_to_owned()?)
    }

    #[test]
    fn placement_follows_alignment() {
        assert_eq!(placement::<u8>().unwrap(), (DATA_MIN_OFF, DATA_MIN_OFF + 1));
        assert_eq!(placement::<()>().unwrap(), (DATA_MIN_OFF, DATA_MIN_OFF));
        #[repr(C, align(256))]
        #[derive(Clone, Copy)]
        struct Wide(u8);
        assert_eq!(placement::<Wide>().unwrap(), (256, 512));
        #[repr(C, align(8192))]
        struct Huge(u8);
        assert!(placement::<Huge>().is_err());
    }

    /// Whatever another process writes into the lock and condition words, every call
    /// returns within its timeout (plus a check interval), never panics, and a word naming no
    /// live thread is a dead holder taken over.
    #[test]
    fn hostile_words_never_hang_or_panic() {
        let m = ShmMutex::create_memfd(7u64).unwrap();
        let (me, _) = this_thread();
        let short = Duration::from_millis(5);
        let limit = short + CHECK_EVERY * 3 + Duration::from_millis(200);
        let values = [
            0,
            1, // init: alive, so a holder
            me,
            me | WAITERS,
            WAITERS,
            NOT_RECOVERABLE,
            NOT_RECOVERABLE | me,
            TID_MASK,
            TID_MASK | WAITERS,
            u32::MAX,
            (1 << 22) + 5, // above every Linux thread id: nobody, so a dead holder
        ];
        for v in values {
            for owner in [0, u64::MAX, u64::from(v) << 32 | 12345] {
                for seq in [0, u32::MAX] {
                    m.words().state.store(v, Ordering::Relaxed);
                    m.words().owner.store(owner, Ordering::Relaxed);
                    m.cond_seq().store(seq, Ordering::Relaxed);
                    let t = Instant::now();
                    let r = m.lock_timeout(short);
                    let took = t.elapsed();
                    assert!(took < limit, "{v:#x}/{owner:#x}: {took:?}");
                    let g = match r {
                        Ok(g) => Some(g),
                        Err(LockError::OwnerDied(g)) => Some(g),
                        Err(_) => None,
                    };
                    if let Some(g) = g {
                        let t = Instant::now();
                        let _ = m.condvar().wait_timeout(g, short);
                        assert!(t.elapsed() < limit * 2, "{v:#x}: wait {:?}", t.elapsed());
                    }
                    let t = Instant::now();
                    drop(m.try_lock());
                    assert!(t.elapsed() < limit, "{v:#x}: try_lock {:?}", t.elapsed());
                }
            }
        }
        // A word naming nobody is a dead holder: taken over, OwnerDied, repairable.
        m.words().state.store((1 << 22) + 5, Ordering::Relaxed);
        let mut g = m.lock().unwrap_err().into_guard().unwrap();
        g.make_consistent().unwrap();
        drop(g);
        assert!(m.try_lock().is_ok());
    }

    #[test]
    fn another_value_type_is_refused() {
        let m = ShmMutex::create_memfd(7u64).unwrap();
        for e in [
            reopen::<u32>(&m).unwrap_err(),
            reopen::<[u64; 2]>(&m).unwrap_err(),
            reopen::<[u32; 2]>(&m).unwrap_err(), // same size, other alignment
        ] {
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
            assert!(e.to_string().contains("value"), "{e}");
        }
    }

    #[test]
    fn relocking_from_the_holder_is_deadlock_not_a_hang() {
        let m = ShmMutex::create_memfd(0u8).unwrap();
        let _g = m.lock().unwrap();
        match m.lock() {
            Err(LockError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::Deadlock),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            m.lock_timeout(Duration::from_millis(1)),
            Err(LockError::Io(_) | LockError::Timeout)
        ));
    }

    #[test]
    fn a_thread_that_exits_holding_it_leaves_it_owner_died() {
        let m = ShmMutex::create_memfd(1u32).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut g = m.lock().unwrap();
                *g = 2;
                // The thread ends holding the lock, as if it had died.
                std::mem::forget(g);
            });
        });
        let mut g = m.lock().unwrap_err().into_guard().unwrap();
        assert_eq!(*g, 2);
        g.make_consistent().unwrap();
        drop(g);
        assert_eq!(*m.lock().unwrap(), 2);
    }

    #[test]
    fn not_recoverable_stays_not_recoverable_whatever_tries_it() {
        let m = ShmMutex::create_memfd(0u8).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| std::mem::forget(m.lock().unwrap()));
        });
        // Not made consistent:
        drop(m.lock().unwrap_err().into_guard().unwrap());
        for _ in 0..2 {
            assert!(matches!(m.try_lock(), Err(LockError::NotRecoverable)));
        }
        assert!(matches!(m.lock(), Err(LockError::NotRecoverable)));
        std::thread::scope(|s| {
            s.spawn(|| {
                let r = m.lock_timeout(Duration::from_secs(5));
                assert!(matches!(r, Err(LockError::NotRecoverable)), "{r:?}");
            });
        });
    }

    #[test]
    fn timed_waits_time_out() {
        let m = ShmMutex::create_memfd(0u64).unwrap();
        let cv = m.condvar();
        let (g, r) = cv
            .wait_timeout(m.lock().unwrap(), Duration::from_millis(20))
            .unwrap();
        assert!(r.timed_out());
        let (g, r) = cv
            .wait_timeout_while(g, Duration::from_millis(20), |v| *v == 0)
            .unwrap();
        assert!(r.timed_out());
        drop(g);
        let other = ShmMutex::create_memfd(0u64).unwrap();
        let g = other.lock().unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cv.wait(g)));
        assert!(caught.is_err(), "a guard of another mutex is refused");
        assert!(other.try_lock().is_ok(), "and unlocked on the way out");
    }
}
