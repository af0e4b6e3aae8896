//! Watching processes by descriptor.
//!
//! A pidfd names one process for its whole life (a reused pid is another process) and becomes
//! readable when it exits, so a parent can wait for its children in the same `epoll` as its
//! sockets and signals, with no `SIGCHLD` handler.

use crate::sys::proc;
use std::io;
use std::os::fd::OwnedFd;

/// A pidfd for `pid` (`pidfd_open(pid, 0)`): readable once the process has exited. It does
/// not reap: a child still has to be waited for.
///
/// # Errors
///
/// `NotFound` (`ESRCH`) if no such process exists, or another OS error (e.g. `ENOSYS` on
/// kernels before 5.3).
///
/// # References
///
/// pidfd_open(2).
#[doc(alias = "pidfd_open")]
pub fn pidfd(pid: u32) -> io::Result<OwnedFd> {
    proc::pidfd_open(pid).map_err(|e| io::Error::new(e.kind(), format!("pidfd_open({pid}): {e}")))
}
