//! File-descriptor plumbing shared by every fd-based mechanism.
//!
//! # Safety
//!
//! Each `unsafe` block is one libc call on a descriptor borrowed for the call's duration, with
//! buffers that are live Rust slices whose exact lengths are passed to the kernel.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Turns a libc return value into `io::Result`, reading `errno` on `-1`.
pub(crate) fn cvt<T: IsMinusOne>(ret: T) -> io::Result<T> {
    if ret.is_minus_one() {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`], retrying the call while it fails with `EINTR` (std's `cvt_r`).
pub(crate) fn cvt_r<T: IsMinusOne>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Return types of libc calls that signal failure with `-1`.
pub(crate) trait IsMinusOne {
    fn is_minus_one(&self) -> bool;
}
macro_rules! impl_is_minus_one {
    ($($t:ty)*) => ($(impl IsMinusOne for $t {
        fn is_minus_one(&self) -> bool { *self == -1 }
    })*)
}
impl_is_minus_one! { i32 isize i64 }

/// Wraps a freshly returned descriptor.
///
/// Only called with a value a successful syscall just returned, which nothing else owns.
pub(crate) fn owned(fd: RawFd) -> OwnedFd {
    debug_assert!(fd >= 0);
    // SAFETY: `fd` was just returned by a successful syscall that created it; no other owner
    // exists, so `OwnedFd` may close it exactly once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Sets or clears `O_NONBLOCK` on the open file description.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a borrowed, open descriptor.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let new = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    if new != flags {
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, new) })?;
    }
    Ok(())
}

/// Sets or clears `FD_CLOEXEC`, for handing a descriptor to a child by inheritance.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a borrowed, open descriptor.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) })?;
    let new = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, new) })?;
    Ok(())
}

/// Checks that `fd` is an open descriptor (used when adopting inherited descriptors).
pub(crate) fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor table; an invalid fd yields EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Duplicates a descriptor with `FD_CLOEXEC` set.
pub(crate) fn dup(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a borrowed, open descriptor returns a new one we own.
    let new = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    Ok(owned(new))
}

/// Result of waiting on a set of descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ready {
    /// `fds[i]` is ready (or in error/hang-up, which the next I/O call will report).
    Fd(usize),
    /// The timeout passed first.
    TimedOut,
}

/// `poll(2)` on up to four descriptors; `None` waits forever. Retries `EINTR` with the
/// remaining time.
pub(crate) fn poll(fds: &[(BorrowedFd<'_>, i16)], timeout: Option<Duration>) -> io::Result<Ready> {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 4];
    assert!(fds.len() <= pfds.len());
    for (slot, (fd, ev)) in pfds.iter_mut().zip(fds) {
        slot.fd = fd.as_raw_fd();
        slot.events = *ev;
    }
    let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
    loop {
        let ms: i32 = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                // Round up so a 0.3 ms timeout does not spin with 0 ms polls.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        };
        // SAFETY: `pfds` is a live array; we pass the number of initialised entries.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            if ms == 0 || deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(Ready::TimedOut);
            }
            continue;
        }
        for (i, p) in pfds[..fds.len()].iter().enumerate() {
            if p.revents != 0 {
                return Ok(Ready::Fd(i));
            }
        }
    }
}

/// `read(2)`; `EINTR` retried.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes.
    cvt_r(|| unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
        .map(|n| n as usize)
}

/// `write(2)`; `EINTR` retried.
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live slice of `buf.len()` bytes.
    cvt_r(|| unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })
        .map(|n| n as usize)
}

/// `readv(2)` into up to three buffers; `EINTR` retried.
pub(crate) fn readv(fd: BorrowedFd<'_>, bufs: &mut [&mut [u8]]) -> io::Result<usize> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 3];
    assert!(bufs.len() <= iov.len());
    for (v, b) in iov.iter_mut().zip(bufs.iter_mut()) {
        v.iov_base = b.as_mut_ptr().cast();
        v.iov_len = b.len();
    }
    // SAFETY: each iovec points into a live, writable slice borrowed for this call.
    cvt_r(|| unsafe { libc::readv(fd.as_raw_fd(), iov.as_ptr(), bufs.len() as i32) })
        .map(|n| n as usize)
}

/// `writev(2)` from up to three buffers; `EINTR` retried.
pub(crate) fn writev(fd: BorrowedFd<'_>, bufs: &[&[u8]]) -> io::Result<usize> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 3];
    assert!(bufs.len() <= iov.len());
    for (v, b) in iov.iter_mut().zip(bufs) {
        v.iov_base = b.as_ptr() as *mut libc::c_void;
        v.iov_len = b.len();
    }
    // SAFETY: each iovec points into a live slice; the kernel only reads from them.
    cvt_r(|| unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), bufs.len() as i32) })
        .map(|n| n as usize)
}

/// Number of open descriptors of this process (from `/proc/self/fd`).
pub fn count_open_fds() -> io::Result<usize> {
    // The directory handle itself is one entry while we read it.
    Ok(std::fs::read_dir("/proc/self/fd")?
        .count()
        .saturating_sub(1))
}

/// The events `poll` reports for one descriptor right now (zero timeout).
pub(crate) fn revents(fd: BorrowedFd<'_>, events: i16) -> io::Result<i16> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: `p` is one live pollfd.
    cvt_r(|| unsafe { libc::poll(&mut p, 1, 0) })?;
    Ok(p.revents)
}

/// `ioctl(FIONREAD)`: bytes waiting to be read. On a pipe or FIFO either end answers with
/// the bytes in the pipe's buffer.
pub(crate) fn fionread(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at a live local.
    cvt_r(|| unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) })?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// `fcntl(F_GETFL)`: the open file description's status flags (access mode, `O_NONBLOCK`).
pub(crate) fn status_flags(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: fcntl on a borrowed, open descriptor; F_GETFL takes no pointer.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })
}

/// `fstat` file type and inode, used to check that a path really is a FIFO we opened.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: zeroed `stat` is a valid out-value; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live, writable stat struct.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// Opens the FIFO behind `fd` again for reading (non-blocking), through `/proc/self/fd`:
/// the same object, whatever its path names now. The new open file description starts a new
/// "has a writer been seen" state, so it does not report the old one's sticky `POLLHUP`.
///
/// # Errors
///
/// The open's error, or `InvalidData` if what opened is not the same FIFO (no `/proc`).
pub(crate) fn reopen_fifo_read(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(link)?;
    let (a, b) = (fstat(fd)?, fstat(std::os::fd::AsFd::as_fd(&f))?);
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) || b.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "reopening the FIFO through /proc/self/fd gave another file",
        ));
    }
    Ok(f.into())
}
