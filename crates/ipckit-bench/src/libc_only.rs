//! The harness's only raw libc calls: what rustix does not provide, or provides through a
//! different system call than the one a measurement must make.
//!
//! - `getrusage(RUSAGE_THREAD)`: rustix has no `getrusage`.
//! - `poll(2)`: rustix's `poll` issues `ppoll`; the reference loops sleep in the same `poll`
//!   ipckit uses, so the two differ only in what ipckit adds.
//! - POSIX message queues (`mq_send`, `mq_receive`) and System V ones (`msgsnd`, `msgrcv`):
//!   rustix has neither.
//!
//! Everything else goes through rustix ([`crate::sys`]).
//!
//! # Safety
//!
//! Every function here is safe to call. Each `unsafe` block is one FFI call whose pointer
//! arguments come from live Rust references with the lengths the kernel is told; descriptors
//! are borrowed ([`BorrowedFd`]), so they are open for the call.
#![allow(unsafe_code)]

pub use libc::{POLLIN, POLLOUT};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn cvt_size(rc: libc::ssize_t) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// User + system CPU time of the calling thread (`getrusage(RUSAGE_THREAD)`), in ns.
pub fn thread_cpu_ns() -> u64 {
    // SAFETY: `rusage` is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a live, writable rusage the kernel fills.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    if rc != 0 {
        return 0;
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// `poll` on one descriptor; `timeout_ms < 0` waits forever. True if ready. `events` are
/// libc's `POLLIN`/`POLLOUT`.
pub fn poll_one(fd: BorrowedFd<'_>, events: i16, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    loop {
        // SAFETY: one live pollfd, count 1.
        let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(rc > 0);
    }
}

/// `mq_send(3)` at priority 0 (on Linux a message queue descriptor is a file descriptor).
pub fn mq_send(mqd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<()> {
    // SAFETY: `buf` is live and readable for `buf.len()` bytes; mqd is open.
    cvt(unsafe { libc::mq_send(mqd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) })?;
    Ok(())
}

/// `mq_receive(3)`; `buf` must be at least the queue's `mq_msgsize`.
pub fn mq_receive(mqd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is live and writable for `buf.len()` bytes; priority pointer may be null.
    cvt_size(unsafe {
        libc::mq_receive(
            mqd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            std::ptr::null_mut(),
        )
    })
}

/// `msgsnd(2)`: `buf` holds the 8-byte `mtype` then `len` payload bytes.
pub fn msgsnd(id: i32, buf: &[u8], len: usize, nowait: bool) -> io::Result<()> {
    assert!(buf.len() >= 8 + len);
    let flags = if nowait { libc::IPC_NOWAIT } else { 0 };
    // SAFETY: `buf` is live for 8 + len bytes (asserted): a `long` mtype and the payload.
    cvt(unsafe { libc::msgsnd(id, buf.as_ptr().cast(), len, flags) })?;
    Ok(())
}

/// `msgrcv(2)` into `buf` (8-byte `mtype`, then the payload); returns the payload length.
pub fn msgrcv(id: i32, buf: &mut [u8], mtype: i64, nowait: bool) -> io::Result<usize> {
    assert!(buf.len() >= 8);
    let flags = if nowait { libc::IPC_NOWAIT } else { 0 };
    // SAFETY: `buf` is live and writable for 8 + (len - 8) bytes, as told to the kernel.
    cvt_size(unsafe {
        libc::msgrcv(
            id,
            buf.as_mut_ptr().cast(),
            buf.len() - 8,
            mtype as libc::c_long,
            flags,
        )
    })
}
