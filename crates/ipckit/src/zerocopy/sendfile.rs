//! `sendfile`: a file's page-cache pages sent to a socket without passing through user
//! memory; [`sendfile_exact`] repeats it until a length is sent.

use super::to_off;
use crate::sys::fd as sysfd;
use crate::sys::zerocopy as sys;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

/// Sends up to `count` bytes of `file`, from `offset` (advanced by the bytes sent; `None`
/// uses and advances the file position), to `socket`, without passing through user memory:
/// the socket references the file's page-cache pages. Returns the bytes sent.
///
/// # Errors
///
/// `WouldBlock` on a non-blocking socket whose buffer is full; `BrokenPipe` if the peer is
/// gone (with `SIGPIPE`, as for `write`); `InvalidInput` for a file that cannot be mapped for
/// sending.
///
/// # References
///
/// `sendfile(2)`.
pub fn sendfile(
    socket: impl AsFd,
    file: impl AsFd,
    offset: Option<&mut u64>,
    count: usize,
) -> io::Result<usize> {
    let mut o = offset.as_ref().map(|o| to_off(**o)).transpose()?;
    let n = sys::sendfile(socket.as_fd(), file.as_fd(), o.as_mut(), count)?;
    if let (Some(off), Some(v)) = (offset, o) {
        *off = v as u64;
    }
    Ok(n)
}

/// Like [`sendfile`], repeated until `count` bytes from `offset` are sent, waiting (poll)
/// while the socket's buffer is full. Returns the bytes sent, fewer only at end of file.
///
/// # Errors
///
/// As [`sendfile`], `WouldBlock` excepted.
pub fn sendfile_exact(
    socket: impl AsFd,
    file: impl AsFd,
    offset: &mut u64,
    count: usize,
) -> io::Result<usize> {
    let (s, f) = (socket.as_fd(), file.as_fd());
    let mut done = 0;
    while done < count {
        let n = retry_ready(s, libc::POLLOUT, || {
            sendfile(s, f, Some(&mut *offset), count - done)
        })?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// Waits (poll) until `fd` is ready for `events`, retrying `op` while it says `WouldBlock`.
fn retry_ready(
    fd: BorrowedFd<'_>,
    events: i16,
    mut op: impl FnMut() -> io::Result<usize>,
) -> io::Result<usize> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                sysfd::poll(&[(fd, events)], None)?;
            }
            other => return other,
        }
    }
}
