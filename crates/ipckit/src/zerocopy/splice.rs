//! `splice` and `tee`: moving a pipe's contents to or from another descriptor, and
//! duplicating them into another pipe, inside the kernel; [`splice_exact`] repeats `splice`
//! until a length has moved.

use super::{to_off, SpliceFlags};
use crate::sys::fd as sysfd;
use crate::sys::zerocopy as sys;
use std::io;
use std::os::fd::AsFd;

/// Moves up to `len` bytes from `from` to `to` inside the kernel; one of the two must be a
/// pipe. `off_in`/`off_out` are file offsets (for files; `None` uses and advances the file
/// position; must be `None` for pipes and sockets), advanced by the bytes moved. Returns the
/// bytes moved; 0 at end of input.
///
/// # Errors
///
/// `WouldBlock` with [`SpliceFlags::NONBLOCK`] (or a non-blocking descriptor);
/// `InvalidInput` (`EINVAL`) if neither is a pipe or an offset is given for a pipe; `ESPIPE`;
/// `EPIPE` if the reader of `to` is gone.
///
/// # References
///
/// `splice(2)`.
pub fn splice(
    from: impl AsFd,
    off_in: Option<&mut u64>,
    to: impl AsFd,
    off_out: Option<&mut u64>,
    len: usize,
    flags: SpliceFlags,
) -> io::Result<usize> {
    let mut oi = off_in.as_ref().map(|o| to_off(**o)).transpose()?;
    let mut oo = off_out.as_ref().map(|o| to_off(**o)).transpose()?;
    let n = sys::splice(
        from.as_fd(),
        oi.as_mut(),
        to.as_fd(),
        oo.as_mut(),
        len,
        flags.bits(),
    )?;
    if let (Some(o), Some(v)) = (off_in, oi) {
        *o = v as u64;
    }
    if let (Some(o), Some(v)) = (off_out, oo) {
        *o = v as u64;
    }
    Ok(n)
}

/// Copies up to `len` bytes of references from the pipe `from` to the pipe `to` without
/// consuming them from `from`. Returns the bytes duplicated; 0 if `from` is empty and has no
/// writers.
///
/// # Errors
///
/// `WouldBlock` with [`SpliceFlags::NONBLOCK`]; `InvalidInput` if either is not a pipe or
/// both are the same pipe.
///
/// # References
///
/// `tee(2)`.
pub fn tee(from: impl AsFd, to: impl AsFd, len: usize, flags: SpliceFlags) -> io::Result<usize> {
    sys::tee(from.as_fd(), to.as_fd(), len, flags.bits())
}

/// Like [`splice`], repeated until `len` bytes moved, waiting (poll) on whichever side is
/// not ready. Returns the bytes moved, fewer than `len` only at end of input.
///
/// # Errors
///
/// As [`splice`], `WouldBlock` excepted.
pub fn splice_exact(from: impl AsFd, to: impl AsFd, len: usize) -> io::Result<usize> {
    let (from, to) = (from.as_fd(), to.as_fd());
    let mut done = 0;
    while done < len {
        match sys::splice(
            from,
            None,
            to,
            None,
            len - done,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        ) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                sysfd::poll(&[(from, libc::POLLIN), (to, libc::POLLOUT)], None)?;
                // Either side may be the one that blocked; a short sleep-free retry loop is
                // fine since poll returned on readiness of one of them.
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
