//! POSIX message queues. On Linux an `mqd_t` is a file descriptor (pollable, closed by
//! `close`, always close-on-exec), so queues are held as `OwnedFd`.
//!
//! # Safety
//!
//! Each `unsafe` block is one libc call; names are NUL-terminated `CString`s, attribute
//! structs are live locals, buffers are live slices passed with their exact lengths.

use super::fd::{cvt, cvt_r, owned};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

fn cname(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "queue name contains a NUL byte",
        )
    })
}

/// Creation parameters: `None` opens an existing queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Create {
    pub(crate) mode: u32,
    pub(crate) max_msgs: i64,
    pub(crate) msg_size: i64,
}

/// `mq_open(name, O_RDWR | O_NONBLOCK [| O_CREAT | O_EXCL], mode, attr)`.
pub(crate) fn open(name: &str, create: Option<Create>) -> io::Result<OwnedFd> {
    let c = cname(name)?;
    let fd = match create {
        Some(cr) => {
            // SAFETY: an all-zero mq_attr is valid; we set the two fields mq_open reads.
            let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
            attr.mq_maxmsg = cr.max_msgs;
            attr.mq_msgsize = cr.msg_size;
            // SAFETY: `c` and `attr` outlive the call; the variadic mode and attr are what
            // mq_open expects with O_CREAT.
            cvt_r(|| unsafe {
                libc::mq_open(
                    c.as_ptr(),
                    libc::O_RDWR
                        | libc::O_NONBLOCK
                        | libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_CLOEXEC,
                    cr.mode as libc::mode_t,
                    &mut attr as *mut libc::mq_attr,
                )
            })?
        }
        // SAFETY: `c` outlives the call; without O_CREAT no further arguments are read.
        None => cvt_r(|| unsafe {
            libc::mq_open(
                c.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        })?,
    };
    Ok(owned(fd))
}

/// `mq_open(name, O_WRONLY | O_NONBLOCK)`: a sender's descriptor, which a scan of
/// `/proc/PID/fdinfo` tells apart from a receiver's.
pub(crate) fn open_write_only(name: &str) -> io::Result<OwnedFd> {
    let c = cname(name)?;
    // SAFETY: `c` outlives the call; without O_CREAT no further arguments are read.
    let fd = cvt_r(|| unsafe {
        libc::mq_open(
            c.as_ptr(),
            libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })?;
    Ok(owned(fd))
}

/// `mq_unlink(name)`.
pub(crate) fn unlink(name: &str) -> io::Result<()> {
    let c = cname(name)?;
    // SAFETY: `c` is NUL-terminated and outlives the call.
    cvt(unsafe { libc::mq_unlink(c.as_ptr()) })?;
    Ok(())
}

/// `(mq_maxmsg, mq_msgsize, mq_curmsgs)`.
pub(crate) fn getattr(fd: BorrowedFd<'_>) -> io::Result<(i64, i64, i64)> {
    // SAFETY: an all-zero mq_attr is valid as an out-value.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: `attr` is a live local mq_getattr fills.
    cvt(unsafe { libc::mq_getattr(fd.as_raw_fd(), &mut attr) })?;
    Ok((attr.mq_maxmsg, attr.mq_msgsize, attr.mq_curmsgs))
}

/// `mq_send` with priority; `EAGAIN` when full (the descriptor is non-blocking).
pub(crate) fn send(fd: BorrowedFd<'_>, msg: &[u8], prio: u32) -> io::Result<()> {
    // SAFETY: `msg` is a live slice of `msg.len()` bytes.
    cvt_r(|| unsafe { libc::mq_send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), prio) })?;
    Ok(())
}

/// `mq_receive`: (length, priority). `buf` must be at least the queue's `mq_msgsize`.
pub(crate) fn receive(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, u32)> {
    let mut prio = 0u32;
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes and `prio` a live u32.
    let n = cvt_r(|| unsafe {
        libc::mq_receive(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut prio,
        )
    })?;
    Ok((n as usize, prio))
}

/// Sets or clears `O_NONBLOCK` on a queue descriptor (`mq_setattr`).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: an all-zero mq_attr is valid; mq_setattr reads only mq_flags.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_flags = if on { libc::O_NONBLOCK as i64 } else { 0 };
    // SAFETY: `attr` is a live local; the old-attributes pointer may be null.
    cvt(unsafe { libc::mq_setattr(fd.as_raw_fd(), &attr, std::ptr::null_mut()) })?;
    Ok(())
}

/// An absolute `CLOCK_REALTIME` time `us` microseconds from now, for the timed calls.
fn realtime_after(us: i64) -> libc::timespec {
    // SAFETY: an all-zero timespec is a valid out-value.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a live local clock_gettime fills.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    let ns = ts.tv_nsec as i64 + us * 1000;
    ts.tv_sec += (ns / 1_000_000_000) as libc::time_t;
    ts.tv_nsec = (ns % 1_000_000_000) as _;
    ts
}

/// `mq_timedsend` waiting at most `us` microseconds; `ETIMEDOUT` comes back as `WouldBlock`.
pub(crate) fn timed_send(fd: BorrowedFd<'_>, msg: &[u8], prio: u32, us: i64) -> io::Result<()> {
    let ts = realtime_after(us);
    // SAFETY: `msg` is a live slice of `msg.len()` bytes and `ts` a live timespec.
    match cvt_r(|| unsafe {
        libc::mq_timedsend(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), prio, &ts)
    }) {
        Err(e) if e.raw_os_error() == Some(libc::ETIMEDOUT) => {
            Err(io::ErrorKind::WouldBlock.into())
        }
        r => r.map(|_| ()),
    }
}
