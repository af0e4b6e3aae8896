//! Shared memory objects and mappings: `shm_open`, `memfd_create`, `ftruncate`,
//! file seals (`F_ADD_SEALS`/`F_GET_SEALS`), `mmap`/`munmap`, `madvise`, `mlock`, and the
//! futex calls the rings sleep in.
//!
//! # Safety
//!
//! `shm_open` and `memfd_create` take a NUL-terminated name built here from a
//! checked `&str`; their new descriptor becomes an `OwnedFd` at once. [`Mapping`] owns one
//! `mmap` region: it is created from a successful `mmap` of exactly `len` bytes and unmapped
//! once, on drop; `madvise`/`mlock` are given that same region. The futex calls take the
//! address of an `AtomicU32` the caller keeps alive for the call's duration; the kernel only
//! compares and sleeps on it, and a dangling address would make it fail with `EFAULT`, never
//! write.

use super::fd::{cvt, cvt_r, owned};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// An `InvalidInput` error with a message (the platform layer's own, plain `io::Error`).
fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| invalid(format!("{name:?} contains a NUL byte")))
}

/// `shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)` when `create`,
/// else `shm_open(name, O_RDWR | O_CLOEXEC | O_NOFOLLOW)`.
pub(crate) fn shm_open(name: &str, create: Option<u32>) -> io::Result<OwnedFd> {
    let c = c_name(name)?;
    let mut flags = libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    let mode = match create {
        Some(m) => {
            flags |= libc::O_CREAT | libc::O_EXCL;
            m
        }
        None => 0,
    };
    // SAFETY: `c` is a live NUL-terminated string; the result is checked and owned below.
    let fd = cvt_r(|| unsafe { libc::shm_open(c.as_ptr(), flags, mode as libc::mode_t) })?;
    Ok(owned(fd))
}

/// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING [| MFD_HUGETLB])` (hugetlbfs takes
/// seals since Linux 4.16).
pub(crate) fn memfd_create(name: &str, huge: bool) -> io::Result<OwnedFd> {
    let c = c_name(name)?;
    let mut flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    if huge {
        flags |= libc::MFD_HUGETLB;
    }
    // SAFETY: `c` is a live NUL-terminated string; the result is checked and owned below.
    let fd = cvt(unsafe { libc::memfd_create(c.as_ptr(), flags) })?;
    Ok(owned(fd))
}

/// `fchmod(fd, mode)`: the exact mode, whatever the umask did to the one given at creation.
pub(crate) fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })?;
    Ok(())
}

/// `ftruncate(fd, len)`.
pub(crate) fn ftruncate(fd: BorrowedFd<'_>, len: usize) -> io::Result<()> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| invalid(format!("a size of {len} bytes is too large")))?;
    // SAFETY: plain integer arguments.
    cvt_r(|| unsafe { libc::ftruncate(fd.as_raw_fd(), len) })?;
    Ok(())
}

/// `fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)`: from now on nobody,
/// whatever descriptor or permission they hold, can change the object's size (`ftruncate`
/// and growing writes fail with `EPERM`) or its seals. Only a memfd made with
/// `MFD_ALLOW_SEALING` takes seals; anything else fails with `EINVAL`/`EPERM`.
pub(crate) fn seal_size(fd: BorrowedFd<'_>) -> io::Result<()> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: plain integer arguments.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(())
}

/// `fcntl(fd, F_GET_SEALS)`: the object's seals (`F_SEAL_*` bits); 0 for an object that
/// cannot be sealed (a POSIX shared memory object fails with `EINVAL`, reported as 0).
pub(crate) fn seals(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: plain integer arguments.
    match cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) }) {
        Ok(s) => Ok(s as u32),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Size, owner uid and mode of the object behind `fd`.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<(u64, u32, u32)> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live, writable `stat`.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok((st.st_size as u64, st.st_uid, st.st_mode))
}

/// A shared mapping of a whole object, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; every access to it goes through atomics or through the
// ring protocols that decide which process may touch which bytes.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED [| MAP_POPULATE], fd, 0)`.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize, populate: bool) -> io::Result<Mapping> {
        if len == 0 {
            return Err(invalid("cannot map 0 bytes".into()));
        }
        let mut flags = libc::MAP_SHARED;
        if populate {
            flags |= libc::MAP_POPULATE;
        }
        // SAFETY: a fresh mapping chosen by the kernel (NULL hint); nothing else is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))?,
            len,
        })
    }

    /// Start of the mapping.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// `madvise(MADV_HUGEPAGE)` on the whole mapping.
    pub(crate) fn advise_huge(&self) -> io::Result<()> {
        // SAFETY: the region is exactly our mapping.
        cvt(unsafe { libc::madvise(self.ptr().cast(), self.len, libc::MADV_HUGEPAGE) })?;
        Ok(())
    }

    /// `mlock` on the whole mapping.
    pub(crate) fn lock(&self) -> io::Result<()> {
        // SAFETY: the region is exactly our mapping.
        cvt(unsafe { libc::mlock(self.ptr().cast(), self.len) })?;
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the region came from one successful mmap and is unmapped only here; no
        // reference into it outlives the owner of this `Mapping` (see the shm module).
        unsafe {
            libc::munmap(self.ptr().cast(), self.len);
        }
    }
}

/// `FUTEX_WAIT` on a shared (not process-private) word: sleeps while `*word == expected`, at
/// most `timeout`. Returns `Ok(false)` on timeout, `Ok(true)` when woken, when the value
/// differed, or on a signal.
#[cfg_attr(ipckit_loom, allow(dead_code))]
pub(crate) fn futex_wait(
    word: &AtomicU32,
    expected: u32,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live AtomicU32 (the kernel reads it atomically); `tsp` is NULL or a
    // live timespec.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            tsp,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if r == -1 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ETIMEDOUT) => Ok(false),
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(true),
            _ => Err(e),
        };
    }
    Ok(true)
}

/// `FUTEX_WAKE` of every waiter on a shared word.
#[cfg_attr(ipckit_loom, allow(dead_code))]
pub(crate) fn futex_wake(word: &AtomicU32) {
    futex_wake_n(word, i32::MAX);
}

/// `FUTEX_WAKE` of at most `n` waiters on a shared word.
#[cfg_attr(ipckit_loom, allow(dead_code))]
pub(crate) fn futex_wake_n(word: &AtomicU32, n: i32) {
    // SAFETY: as in `futex_wait`; waking has no effect on memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}
