//! System V message queues.
//!
//! # Safety
//!
//! Each `unsafe` block is one libc call. Message buffers are `Vec<u8>`s laid out as the
//! kernel's `struct msgbuf` (a native `long` type followed by the text), allocated with room
//! for the type plus the length the kernel is told; `msqid_ds` out-values are zeroed locals.

use super::fd::{cvt, cvt_r};
use std::io;

/// `msgget(key, flags)`; `create` adds `IPC_CREAT | IPC_EXCL` with `mode`.
pub(crate) fn get(key: i32, create: Option<u32>) -> io::Result<i32> {
    let flags = match create {
        Some(mode) => libc::IPC_CREAT | libc::IPC_EXCL | (mode as i32 & 0o777),
        None => 0,
    };
    // SAFETY: msgget takes no pointers.
    cvt(unsafe { libc::msgget(key, flags) })
}

/// `msgctl(IPC_RMID)`.
pub(crate) fn remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID ignores the buffer argument.
    cvt(unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) })?;
    Ok(())
}

/// `msgctl(IPC_STAT)`.
pub(crate) fn stat(id: i32) -> io::Result<libc::msqid_ds> {
    // SAFETY: an all-zero msqid_ds is a valid out-value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a live local that IPC_STAT fills.
    cvt(unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) })?;
    Ok(ds)
}

/// Size of the `mtype` header in a `struct msgbuf`.
pub(crate) const TYPE_LEN: usize = std::mem::size_of::<libc::c_long>();

/// `msgsnd`: `buf` holds the type header then the text; `len` is the text length.
pub(crate) fn send(id: i32, buf: &[u8], len: usize, nowait: bool) -> io::Result<()> {
    assert!(buf.len() >= TYPE_LEN + len);
    let flags = if nowait { libc::IPC_NOWAIT } else { 0 };
    // SAFETY: `buf` is a live slice holding a c_long type followed by at least `len` bytes.
    cvt_r(|| unsafe { libc::msgsnd(id, buf.as_ptr().cast(), len, flags) })?;
    Ok(())
}

/// `msgrcv`: fills `buf` (type header then text), returns (text length, type). A message
/// longer than the room is left in the queue and `E2BIG` is returned.
pub(crate) fn recv(id: i32, buf: &mut [u8], typ: i64, nowait: bool) -> io::Result<(usize, i64)> {
    assert!(buf.len() >= TYPE_LEN);
    let room = buf.len() - TYPE_LEN;
    let flags = if nowait { libc::IPC_NOWAIT } else { 0 };
    // SAFETY: `buf` is a live, writable slice with room for the c_long type plus `room` bytes.
    let n = cvt_r(|| unsafe {
        libc::msgrcv(
            id,
            buf.as_mut_ptr().cast(),
            room,
            typ as libc::c_long,
            flags,
        )
    })?;
    let mut t = [0u8; TYPE_LEN];
    t.copy_from_slice(&buf[..TYPE_LEN]);
    Ok((n as usize, libc::c_long::from_ne_bytes(t)))
}

/// Writes the type header into a message buffer.
pub(crate) fn set_type(buf: &mut [u8], typ: i64) {
    buf[..TYPE_LEN].copy_from_slice(&(typ as libc::c_long).to_ne_bytes());
}

/// The system-wide limit on one message's text (`/proc/sys/kernel/msgmax`).
pub(crate) fn msgmax() -> usize {
    std::fs::read_to_string("/proc/sys/kernel/msgmax")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(8192)
}
