//! `epoll(7)`: create, control, wait.
//!
//! # Safety
//!
//! Each `unsafe` block is one libc call. `epoll_ctl` reads one live `epoll_event` for the
//! call's duration; `epoll_wait` writes at most the capacity it is told into a live slice.
//! The epoll descriptor is an `OwnedFd` from the moment `epoll_create1` returns.

use super::fd::{cvt, owned};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// `epoll_create1(EPOLL_CLOEXEC)`.
pub(crate) fn create() -> io::Result<OwnedFd> {
    // SAFETY: takes no pointers.
    let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    Ok(owned(fd))
}

/// `epoll_ctl(ep, op, fd, {events, token})`; `EPOLL_CTL_DEL` ignores the event.
pub(crate) fn ctl(
    ep: BorrowedFd<'_>,
    op: i32,
    fd: BorrowedFd<'_>,
    events: u32,
    token: u64,
) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: `ev` is a live epoll_event the kernel reads during the call; both descriptors
    // are borrowed, so open.
    cvt(unsafe { libc::epoll_ctl(ep.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) })?;
    Ok(())
}

/// `epoll_wait` into `out` (timeout in ms, -1 forever); returns how many entries it filled.
/// `EINTR` is retried by the caller, which knows the deadline.
pub(crate) fn wait(
    ep: BorrowedFd<'_>,
    out: &mut [libc::epoll_event],
    timeout_ms: i32,
) -> io::Result<usize> {
    let cap = i32::try_from(out.len()).unwrap_or(i32::MAX);
    // SAFETY: `out` is a live, writable slice of at least `cap` events.
    cvt(unsafe { libc::epoll_wait(ep.as_raw_fd(), out.as_mut_ptr(), cap, timeout_ms) })
        .map(|n| n as usize)
}
