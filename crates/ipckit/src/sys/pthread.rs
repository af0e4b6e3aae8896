//! Process-shared, robust pthread mutexes and process-shared condition variables, for a mutex
//! that lives in shared memory and survives its holder's death.
//!
//! The mutex is `PTHREAD_PROCESS_SHARED`, `PTHREAD_MUTEX_ROBUST` and
//! `PTHREAD_MUTEX_ERRORCHECK`: when a holder dies, the kernel walks its robust list, marks the
//! lock word `FUTEX_OWNER_DIED` and wakes a waiter, whose lock returns `EOWNERDEAD`; relocking
//! from the holding thread is `EDEADLK`, not a silent self-deadlock. The condition variable is
//! `PTHREAD_PROCESS_SHARED` and measures its timeouts on `CLOCK_MONOTONIC`. A mutex's timed lock
//! uses `pthread_mutex_clocklock(CLOCK_MONOTONIC)` where the C library has it (glibc 2.30+,
//! found at run time), else `pthread_mutex_timedlock` on `CLOCK_REALTIME`, retried while a
//! monotonic clock says time is left (so a wall-clock jump forward cannot cut a wait short).
//! A try-lock is a timed lock that ends now (see [`mutex_trylock`] for the glibc bug that
//! rules out `pthread_mutex_trylock`).
//!
//! # Safety
//!
//! Unlike the rest of `sys/`, the calls on a mutex or condition variable are `unsafe fn`: the
//! object lives in memory shared with other processes, and only the caller knows that it was
//! initialized (by [`mutex_init`] / [`cond_init`], here or in another process mapping the same
//! bytes) and has not been destroyed. Each function lists its obligations under `# Safety`. The
//! objects are reached through [`RawMutex`] / [`RawCond`], `UnsafeCell`s that the C library
//! mutates through a shared reference, exactly as std's own pthread wrappers do. Attribute
//! objects are local, initialized before use and destroyed on every path.
//!
//! Trust: a robust mutex links itself into the holding thread's robust list through pointers
//! stored in the mutex, and the C library follows them. Processes that share the memory are
//! trusted to touch these objects only through these calls; ipckit refuses segments that
//! another user could write (see `SegmentBuilder::allow_other_users`).

use std::cell::UnsafeCell;
use std::ffi::c_int;
use std::io;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A `pthread_mutex_t` in shared memory.
#[repr(transparent)]
pub(crate) struct RawMutex(UnsafeCell<libc::pthread_mutex_t>);

/// A `pthread_cond_t` in shared memory.
#[repr(transparent)]
pub(crate) struct RawCond(UnsafeCell<libc::pthread_cond_t>);

/// `size_of::<pthread_mutex_t>()` in this build: processes that share a mutex must agree on it.
pub(crate) const MUTEX_SIZE: usize = std::mem::size_of::<libc::pthread_mutex_t>();
/// `size_of::<pthread_cond_t>()` in this build.
pub(crate) const COND_SIZE: usize = std::mem::size_of::<libc::pthread_cond_t>();

/// Which C library's pthread objects these are: the sizes can agree while the insides differ
/// (glibc's and musl's mutexes are both 40 bytes on x86_64), so a shared header records this.
pub(crate) const LIBC: u32 = if cfg!(target_env = "gnu") {
    1
} else if cfg!(target_env = "musl") {
    2
} else {
    3
};

/// The name of a [`LIBC`] value, for error messages.
pub(crate) fn libc_name(id: u32) -> &'static str {
    match id {
        1 => "glibc",
        2 => "musl",
        3 => "another C library",
        _ => "an unknown C library",
    }
}

/// How an attempt to take the mutex ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquire {
    /// Held, state consistent.
    Locked,
    /// Held, but the previous holder died holding it (`EOWNERDEAD`): the state is
    /// inconsistent until [`mutex_consistent`]; unlocking before that makes the mutex
    /// unrecoverable.
    OwnerDied,
    /// `trylock`: another holder (`EBUSY`). Not held.
    Busy,
    /// `timedlock`: the time passed (`ETIMEDOUT`). Not held.
    TimedOut,
    /// A holder died and the next one unlocked without [`mutex_consistent`]
    /// (`ENOTRECOVERABLE`): nobody can ever hold it again. Not held.
    NotRecoverable,
}

/// How a wait on a condition variable ended. In every case but `NotRecoverable` the mutex is
/// held again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Signalled (or a spurious wake-up).
    Woken,
    /// The time passed.
    TimedOut,
    /// Reacquired, but its previous holder died holding it (see [`Acquire::OwnerDied`]).
    OwnerDied,
    /// The mutex is unrecoverable (see [`Acquire::NotRecoverable`]); not held.
    NotRecoverable,
}

/// A pthread return code (an error number, not `-1`/`errno`) as an `io::Result`.
fn check(rc: c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

fn acquired(rc: c_int) -> io::Result<Acquire> {
    match rc {
        0 => Ok(Acquire::Locked),
        libc::EOWNERDEAD => Ok(Acquire::OwnerDied),
        libc::EBUSY => Ok(Acquire::Busy),
        libc::ETIMEDOUT => Ok(Acquire::TimedOut),
        libc::ENOTRECOVERABLE => Ok(Acquire::NotRecoverable),
        libc::EDEADLK => Err(io::Error::new(
            io::ErrorKind::Deadlock,
            "this thread already holds the mutex (EDEADLK)",
        )),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

fn woken(rc: c_int) -> io::Result<Wake> {
    match rc {
        0 => Ok(Wake::Woken),
        libc::ETIMEDOUT => Ok(Wake::TimedOut),
        libc::EOWNERDEAD => Ok(Wake::OwnerDied),
        libc::ENOTRECOVERABLE => Ok(Wake::NotRecoverable),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

impl RawMutex {
    fn get(&self) -> *mut libc::pthread_mutex_t {
        self.0.get()
    }
}

impl RawCond {
    fn get(&self) -> *mut libc::pthread_cond_t {
        self.0.get()
    }
}

/// `pthread_mutex_init` with `PTHREAD_PROCESS_SHARED`, `PTHREAD_MUTEX_ROBUST` and
/// `PTHREAD_MUTEX_ERRORCHECK`.
///
/// # Safety
///
/// No thread of any process uses `m` during the call or has it initialized (a fresh segment
/// nobody else can see yet).
pub(crate) unsafe fn mutex_init(m: &RawMutex) -> io::Result<()> {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: `attr` is a local the call initializes.
    check(unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) })?;
    let a = attr.as_mut_ptr();
    let r = (|| {
        // SAFETY: `a` was initialized above and is destroyed below, after these calls.
        unsafe {
            check(libc::pthread_mutexattr_setpshared(
                a,
                libc::PTHREAD_PROCESS_SHARED,
            ))?;
            check(libc::pthread_mutexattr_setrobust(
                a,
                libc::PTHREAD_MUTEX_ROBUST,
            ))?;
            check(libc::pthread_mutexattr_settype(
                a,
                libc::PTHREAD_MUTEX_ERRORCHECK,
            ))?;
            // The caller guarantees nobody else uses `m` yet.
            check(libc::pthread_mutex_init(m.get(), a))
        }
    })();
    // SAFETY: `a` is initialized and no longer used; a mutex does not keep its attributes.
    unsafe { libc::pthread_mutexattr_destroy(a) };
    r
}

/// `pthread_mutex_destroy`. Only a set-up that failed halfway uses it: once other processes
/// can see a mutex, nothing destroys it (one of them may still be using it); its memory goes
/// with the segment's last mapping.
///
/// # Safety
///
/// `m` was initialized by [`mutex_init`], is not held, and no thread of any process uses it
/// again (only the creator's failed set-up, before anyone else could see it, destroys one).
pub(crate) unsafe fn mutex_destroy(m: &RawMutex) {
    // SAFETY: by the caller's contract, an initialized mutex nobody uses.
    unsafe { libc::pthread_mutex_destroy(m.get()) };
}

/// `pthread_mutex_lock`: waits as long as it takes.
///
/// # Safety
///
/// `m` was initialized by [`mutex_init`] (in any process) and stays mapped for the call.
pub(crate) unsafe fn mutex_lock(m: &RawMutex) -> io::Result<Acquire> {
    // SAFETY: an initialized mutex, mapped for the call (the caller's contract).
    acquired(unsafe { libc::pthread_mutex_lock(m.get()) })
}

/// Takes the mutex if it is free; never waits: `Busy` if another thread holds it.
///
/// Not `pthread_mutex_trylock`: glibc's (2.36, seen here) returns `ENOTRECOVERABLE` for a
/// not-recoverable robust mutex but leaves its lock word holding the caller's thread id,
/// outside the caller's robust list, so every later lock fails with `EDEADLK` in this thread
/// and hangs in every other, even after this one exits. A timed lock whose deadline is now
/// takes the same paths as [`mutex_lock`], which release that word, and times out where
/// trylock would be busy.
///
/// # Safety
///
/// As [`mutex_lock`].
pub(crate) unsafe fn mutex_trylock(m: &RawMutex) -> io::Result<Acquire> {
    // SAFETY: the caller's contract is `mutex_timedlock`'s.
    Ok(match unsafe { mutex_timedlock(m, Duration::ZERO) }? {
        Acquire::TimedOut => Acquire::Busy,
        a => a,
    })
}

/// The signature of glibc's `pthread_mutex_clocklock`.
type ClockLock = unsafe extern "C" fn(
    *mut libc::pthread_mutex_t,
    libc::clockid_t,
    *const libc::timespec,
) -> c_int;

/// `pthread_mutex_clocklock` if this process's C library has it. Looked up at run time so the
/// binary still loads on a C library without it. Only on 64-bit targets: on 32-bit glibc the
/// plain symbol takes a 32-bit `time_t`, which need not be the `timespec` the `libc` crate
/// was built with.
fn clocklock() -> Option<ClockLock> {
    static F: OnceLock<Option<ClockLock>> = OnceLock::new();
    *F.get_or_init(|| {
        if cfg!(not(target_pointer_width = "64")) {
            return None;
        }
        // SAFETY: a NUL-terminated symbol name; RTLD_DEFAULT searches the loaded objects.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"pthread_mutex_clocklock".as_ptr()) };
        if p.is_null() {
            return None;
        }
        // SAFETY: the symbol is the C library's `pthread_mutex_clocklock`, whose prototype
        // (POSIX 2024, glibc 2.30) is `ClockLock`; on 64-bit targets `time_t` is 64 bits in
        // both the library and the `libc` crate's `timespec`.
        Some(unsafe { std::mem::transmute::<*mut libc::c_void, ClockLock>(p) })
    })
}

/// `pthread_mutex_clocklock(CLOCK_MONOTONIC, now + timeout)`, or `pthread_mutex_timedlock` on
/// `CLOCK_REALTIME` where the C library has no `clocklock`.
///
/// # Safety
///
/// As [`mutex_lock`].
pub(crate) unsafe fn mutex_timedlock(m: &RawMutex, timeout: Duration) -> io::Result<Acquire> {
    if let Some(f) = clocklock() {
        let ts = deadline(libc::CLOCK_MONOTONIC, timeout)?;
        // SAFETY: as in `mutex_lock`; `ts` is a live timespec; `f` is `pthread_mutex_clocklock`.
        return acquired(unsafe { f(m.get(), libc::CLOCK_MONOTONIC, &ts) });
    }
    let end = Instant::now().checked_add(timeout);
    loop {
        let left = end.map_or(timeout, |e| e.saturating_duration_since(Instant::now()));
        let ts = deadline(libc::CLOCK_REALTIME, left)?;
        // SAFETY: as in `mutex_lock`; `ts` is a live timespec.
        let r = acquired(unsafe { libc::pthread_mutex_timedlock(m.get(), &ts) })?;
        // The wall clock may have jumped forward: wait out the rest of the monotonic time.
        if r != Acquire::TimedOut || end.is_some_and(|e| Instant::now() >= e) {
            return Ok(r);
        }
    }
}

/// `pthread_mutex_unlock`.
///
/// # Safety
///
/// `m` was initialized by [`mutex_init`], is mapped for the call, and the calling thread
/// holds it.
pub(crate) unsafe fn mutex_unlock(m: &RawMutex) -> io::Result<()> {
    // SAFETY: an initialized mutex held by this thread (the caller's contract).
    check(unsafe { libc::pthread_mutex_unlock(m.get()) })
}

/// `pthread_mutex_consistent`: the state a dead holder left has been repaired.
///
/// # Safety
///
/// As [`mutex_unlock`]; the lock that took it returned `OwnerDied`.
pub(crate) unsafe fn mutex_consistent(m: &RawMutex) -> io::Result<()> {
    // SAFETY: an initialized robust mutex held by this thread (the caller's contract).
    check(unsafe { libc::pthread_mutex_consistent(m.get()) })
}

/// `pthread_cond_init` with `PTHREAD_PROCESS_SHARED` and `CLOCK_MONOTONIC`.
///
/// # Safety
///
/// As [`mutex_init`], for `c`.
pub(crate) unsafe fn cond_init(c: &RawCond) -> io::Result<()> {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_condattr_t>::uninit();
    // SAFETY: `attr` is a local the call initializes.
    check(unsafe { libc::pthread_condattr_init(attr.as_mut_ptr()) })?;
    let a = attr.as_mut_ptr();
    let r = (|| {
        // SAFETY: `a` was initialized above and is destroyed below, after these calls.
        unsafe {
            check(libc::pthread_condattr_setpshared(
                a,
                libc::PTHREAD_PROCESS_SHARED,
            ))?;
            check(libc::pthread_condattr_setclock(a, libc::CLOCK_MONOTONIC))?;
            // The caller guarantees nobody else uses `c` yet.
            check(libc::pthread_cond_init(c.get(), a))
        }
    })();
    // SAFETY: `a` is initialized and no longer used.
    unsafe { libc::pthread_condattr_destroy(a) };
    r
}

/// `pthread_cond_wait`: releases `m`, sleeps until signalled, takes `m` again.
///
/// # Safety
///
/// `c` and `m` were initialized by [`cond_init`] / [`mutex_init`] and stay mapped for the
/// call; the calling thread holds `m`; every waiter on `c` uses this same mutex.
pub(crate) unsafe fn cond_wait(c: &RawCond, m: &RawMutex) -> io::Result<Wake> {
    // SAFETY: initialized objects, `m` held by this thread (the caller's contract).
    woken(unsafe { libc::pthread_cond_wait(c.get(), m.get()) })
}

/// `pthread_cond_timedwait` until `CLOCK_MONOTONIC` now + `timeout` (the clock `cond_init`
/// chose).
///
/// # Safety
///
/// As [`cond_wait`].
pub(crate) unsafe fn cond_timedwait(
    c: &RawCond,
    m: &RawMutex,
    timeout: Duration,
) -> io::Result<Wake> {
    let ts = deadline(libc::CLOCK_MONOTONIC, timeout)?;
    // SAFETY: as in `cond_wait`; `ts` is a live timespec.
    woken(unsafe { libc::pthread_cond_timedwait(c.get(), m.get(), &ts) })
}

/// `pthread_cond_signal`: wakes at least one waiter, if any.
///
/// # Safety
///
/// `c` was initialized by [`cond_init`] and stays mapped for the call.
pub(crate) unsafe fn cond_signal(c: &RawCond) -> io::Result<()> {
    // SAFETY: an initialized condition variable (the caller's contract).
    check(unsafe { libc::pthread_cond_signal(c.get()) })
}

/// `pthread_cond_broadcast`: wakes every waiter.
///
/// # Safety
///
/// As [`cond_signal`].
pub(crate) unsafe fn cond_broadcast(c: &RawCond) -> io::Result<()> {
    // SAFETY: an initialized condition variable (the caller's contract).
    check(unsafe { libc::pthread_cond_broadcast(c.get()) })
}

/// `clock` now + `timeout`, saturating far in the future rather than overflowing.
fn deadline(clock: libc::clockid_t, timeout: Duration) -> io::Result<libc::timespec> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a live, writable timespec.
    if unsafe { libc::clock_gettime(clock, &mut now) } == -1 {
        return Err(io::Error::last_os_error());
    }
    let nsec = now.tv_nsec as u64 + u64::from(timeout.subsec_nanos());
    let secs = libc::time_t::try_from(timeout.as_secs())
        .ok()
        .and_then(|s| now.tv_sec.checked_add(s))
        .and_then(|s| s.checked_add((nsec / 1_000_000_000) as libc::time_t));
    Ok(match secs {
        Some(s) => libc::timespec {
            tv_sec: s,
            tv_nsec: (nsec % 1_000_000_000) as libc::c_long,
        },
        None => libc::timespec {
            tv_sec: libc::time_t::MAX,
            tv_nsec: 999_999_999,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate() {
        let t = deadline(libc::CLOCK_MONOTONIC, Duration::MAX).unwrap();
        assert_eq!(t.tv_sec, libc::time_t::MAX);
        let a = deadline(libc::CLOCK_MONOTONIC, Duration::ZERO).unwrap();
        let b = deadline(libc::CLOCK_MONOTONIC, Duration::from_millis(1500)).unwrap();
        assert!((0..1_000_000_000).contains(&b.tv_nsec));
        let d = (b.tv_sec - a.tv_sec) as i128 * 1_000_000_000 + (b.tv_nsec - a.tv_nsec) as i128;
        assert!(d >= 1_500_000_000, "{d}");
    }

    #[test]
    #[cfg(all(target_env = "gnu", target_pointer_width = "64"))]
    fn clocklock_is_found_where_glibc_has_it() {
        // SAFETY: the C library returns a static NUL-terminated string.
        let v = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
        let v = v.to_str().unwrap_or("0.0");
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        assert_eq!(
            clocklock().is_some(),
            (major, minor) >= (2, 30),
            "glibc {v}"
        );
    }
}
