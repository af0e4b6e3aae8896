//! Pipes, FIFOs and eventfd.
//!
//! # Safety
//!
//! Each `unsafe` block is one libc call. Out-pointers point at local arrays of the size the
//! call writes; paths are NUL-terminated `CString`s that outlive the call; every returned
//! descriptor is wrapped in `OwnedFd` at once.

use super::fd::{cvt, cvt_r, owned};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `pipe2(O_CLOEXEC | flags)`: returns (read end, write end).
pub(crate) fn pipe2(nonblocking: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    let flags = libc::O_CLOEXEC | if nonblocking { libc::O_NONBLOCK } else { 0 };
    // SAFETY: `fds` is a local array of two ints, which is what pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), flags) })?;
    Ok((owned(fds[0]), owned(fds[1])))
}

/// `fcntl(F_GETPIPE_SZ)`.
pub(crate) fn pipe_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: fcntl on a borrowed, open descriptor.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) }).map(|n| n as usize)
}

/// `fcntl(F_SETPIPE_SZ)`; the kernel rounds up to a power-of-two number of pages and returns
/// the size it set.
pub(crate) fn set_pipe_size(fd: BorrowedFd<'_>, size: usize) -> io::Result<usize> {
    let size = i32::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pipe size too large"))?;
    // SAFETY: fcntl on a borrowed, open descriptor.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size) }).map(|n| n as usize)
}

/// Largest pipe size an unprivileged process may set (`/proc/sys/fs/pipe-max-size`).
pub(crate) fn pipe_max_size() -> io::Result<usize> {
    let s = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")?;
    s.trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad pipe-max-size"))
}

pub(crate) fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `open(path, flags | O_CLOEXEC)`.
pub(crate) fn open(path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    // SAFETY: `c` is NUL-terminated and outlives the call.
    let fd = cvt_r(|| unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) })?;
    Ok(owned(fd))
}

/// `eventfd(initval, EFD_CLOEXEC | EFD_NONBLOCK [| EFD_SEMAPHORE])`.
pub(crate) fn eventfd(semaphore: bool) -> io::Result<OwnedFd> {
    let flags =
        libc::EFD_CLOEXEC | libc::EFD_NONBLOCK | if semaphore { libc::EFD_SEMAPHORE } else { 0 };
    // SAFETY: eventfd takes no pointers.
    let fd = cvt(unsafe { libc::eventfd(0, flags) })?;
    Ok(owned(fd))
}
