//! The zero-copy calls: `vmsplice`, `splice`, `tee`, `sendfile`, `send(MSG_ZEROCOPY)`, the
//! socket error queue (`recvmsg(MSG_ERRQUEUE)`), and page-aligned anonymous memory to send
//! from.
//!
//! # Safety
//!
//! Each `unsafe` block is one libc call on borrowed descriptors. Buffers are live Rust slices
//! passed with their exact lengths; offsets are live locals. `vmsplice` is given
//! `SPLICE_F_GIFT` never, so the kernel only takes references to the pages and never writes
//! to them or unmaps them; what it reads later is whatever the pages then hold, a question of
//! data, not of memory safety (the pages stay alive while the pipe references them, even if
//! this process unmaps them). [`PageBuf`] owns one anonymous `mmap` region, created from a
//! successful `mmap` of exactly `len` bytes and unmapped once, on drop; its slices borrow it.
//! The error-queue control message is parsed by hand in `zerocopy/msg_zerocopy.rs` from a
//! byte buffer, not through pointers.

use super::fd::cvt_r;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

/// `vmsplice(pipe, [buf], 1, flags)`: references the pages of `buf` in the pipe.
pub(crate) fn vmsplice(pipe: BorrowedFd<'_>, buf: &[u8], flags: u32) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    debug_assert_eq!(flags & libc::SPLICE_F_GIFT, 0);
    // SAFETY: one iovec over a live slice; without SPLICE_F_GIFT the kernel only reads it.
    cvt_r(|| unsafe { libc::vmsplice(pipe.as_raw_fd(), &iov, 1, flags) }).map(|n| n as usize)
}

/// `splice(fd_in, off_in, fd_out, off_out, len, flags)`.
pub(crate) fn splice(
    fd_in: BorrowedFd<'_>,
    off_in: Option<&mut i64>,
    fd_out: BorrowedFd<'_>,
    off_out: Option<&mut i64>,
    len: usize,
    flags: u32,
) -> io::Result<usize> {
    let pi: *mut libc::loff_t = off_in.map_or(std::ptr::null_mut(), |o| o as *mut i64);
    let po: *mut libc::loff_t = off_out.map_or(std::ptr::null_mut(), |o| o as *mut i64);
    // SAFETY: the offsets are null or point at live locals the caller lent for the call.
    cvt_r(|| unsafe { libc::splice(fd_in.as_raw_fd(), pi, fd_out.as_raw_fd(), po, len, flags) })
        .map(|n| n as usize)
}

/// `tee(fd_in, fd_out, len, flags)`.
pub(crate) fn tee(
    fd_in: BorrowedFd<'_>,
    fd_out: BorrowedFd<'_>,
    len: usize,
    flags: u32,
) -> io::Result<usize> {
    // SAFETY: tee takes no pointers.
    cvt_r(|| unsafe { libc::tee(fd_in.as_raw_fd(), fd_out.as_raw_fd(), len, flags) })
        .map(|n| n as usize)
}

/// `sendfile(out, in, offset, count)`.
pub(crate) fn sendfile(
    out: BorrowedFd<'_>,
    file: BorrowedFd<'_>,
    offset: Option<&mut i64>,
    count: usize,
) -> io::Result<usize> {
    let p: *mut libc::off_t = offset.map_or(std::ptr::null_mut(), |o| o as *mut i64);
    // SAFETY: `p` is null or points at a live local the caller lent for the call.
    cvt_r(|| unsafe { libc::sendfile(out.as_raw_fd(), file.as_raw_fd(), p, count) })
        .map(|n| n as usize)
}

/// `SO_ZEROCOPY` (`asm/socket.h`, per architecture).
pub(crate) const SO_ZEROCOPY: i32 = libc::SO_ZEROCOPY;
/// `SO_EE_ORIGIN_ZEROCOPY` (`linux/errqueue.h`).
pub(crate) const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// `SO_EE_CODE_ZEROCOPY_COPIED` (`linux/errqueue.h`).
pub(crate) const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

/// `send(fd, buf, MSG_ZEROCOPY | MSG_NOSIGNAL | flags)`.
pub(crate) fn send_zerocopy(fd: BorrowedFd<'_>, buf: &[u8], flags: i32) -> io::Result<usize> {
    // SAFETY: `buf` is a live slice of `buf.len()` bytes. The kernel pins its pages and reads
    // them until it reports completion on the error queue; it never writes them.
    cvt_r(|| unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            flags | libc::MSG_ZEROCOPY | libc::MSG_NOSIGNAL,
        )
    })
    .map(|n| n as usize)
}

/// `recvmsg(fd, MSG_ERRQUEUE | MSG_DONTWAIT)` with no data buffer: fills `control` with the
/// control messages of one error-queue entry; returns (bytes of control data, msg_flags).
/// `WouldBlock` when the queue is empty.
pub(crate) fn recv_errqueue(fd: BorrowedFd<'_>, control: &mut [u8]) -> io::Result<(usize, i32)> {
    // SAFETY: an all-zero msghdr is valid (no name, no data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len();
    // SAFETY: `msg` points at `control`, a live writable slice of the length given.
    cvt_r(|| unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    })?;
    Ok((msg.msg_controllen.min(control.len()), msg.msg_flags))
}

/// Page size (`sysconf(_SC_PAGESIZE)`).
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// Page-aligned private anonymous memory, zeroed, owned.
#[derive(Debug)]
pub(crate) struct PageBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: PageBuf owns its region exclusively (like a Box<[u8]>); access goes through & and
// &mut borrows of it.
unsafe impl Send for PageBuf {}
// SAFETY: as above: shared access is read-only through `&self`.
unsafe impl Sync for PageBuf {}

impl PageBuf {
    /// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS)`, `len` rounded up to
    /// whole pages (at least one).
    pub(crate) fn new(len: usize) -> io::Result<PageBuf> {
        let page = page_size();
        let len = len
            .max(1)
            .checked_next_multiple_of(page)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "buffer too large"))?;
        // SAFETY: an anonymous mapping at an address the kernel picks; no file, no pointers in.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(PageBuf { ptr, len })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is the start of a live mapping of `len` readable bytes that this value
        // owns; the borrow of `self` keeps it mapped.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, writable, and `&mut self` makes this the only borrow.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        // SAFETY: the region mmap returned, unmapped exactly once. Pages a pipe or socket
        // still references stay alive in the kernel until it drops them.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Sets `SO_ZEROCOPY` on a socket.
pub(crate) fn enable_zerocopy(fd: BorrowedFd<'_>) -> io::Result<()> {
    super::socket::set_int_opt(fd, libc::SOL_SOCKET, SO_ZEROCOPY, 1)
}
