//! For servers: adopting descriptors a parent passed across `exec` (with
//! [`inherit_only`](crate::pipe::inherit_only)) by number, with checks; `ipckit serve`'s
//! workers adopt their listening sockets and status board this way.
//!
//! A number from an environment variable is only a claim. Each function here checks that the
//! descriptor is open, not stdio, was inherited (its `FD_CLOEXEC` is clear, which nothing
//! this process opened has) and is of the expected kind, then takes ownership and makes it
//! close-on-exec again, so the same number cannot be adopted twice.

use crate::sys::proc::{adopt_inherited, Inherited};
use std::io;
use std::net::TcpListener;
use std::os::fd::{OwnedFd, RawFd};

/// Adopts an inherited listening TCP socket (IPv4 or IPv6). Its blocking mode is left as
/// the parent set it.
///
/// # Errors
///
/// `InvalidInput` naming the descriptor and what is wrong with it (stdio, not open, not
/// inherited, not a listening TCP socket); nothing is closed then.
pub fn tcp_listener(fd: RawFd) -> io::Result<TcpListener> {
    adopt_inherited(fd, Inherited::TcpListener).map(TcpListener::from)
}

/// Adopts an inherited regular file: a memfd or a POSIX shared memory object (for
/// [`SegmentBuilder::open_fd`](crate::shm::SegmentBuilder::open_fd), hence an `OwnedFd`
/// rather than a `File`).
///
/// # Errors
///
/// `InvalidInput` naming the descriptor and what is wrong with it; nothing is closed then.
pub fn regular_file(fd: RawFd) -> io::Result<OwnedFd> {
    adopt_inherited(fd, Inherited::RegularFile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn refuses_what_was_not_inherited() {
        assert!(tcp_listener(0).is_err(), "stdio");
        assert!(regular_file(2).is_err(), "stdio");
        // Opened here, so close-on-exec: not inherited, someone owns it.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = tcp_listener(l.as_raw_fd()).unwrap_err();
        assert!(e.to_string().contains("close-on-exec"), "{e}");
        assert!(l.local_addr().is_ok(), "still open");
    }
}
