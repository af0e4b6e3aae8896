//! `openat2(2)`: opening a path relative to a directory with resolution restrictions.
//!
//! # Safety
//!
//! The one FFI call takes a NUL-terminated path built here from a checked `&[u8]`, a pointer
//! to a live `OpenHow` (the kernel's `struct open_how`, `#[repr(C)]`, three `u64`s) with its
//! exact size, and a borrowed directory descriptor; the new descriptor becomes an `OwnedFd`
//! at once.

use super::fd::{cvt_r, owned};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// The kernel's `struct open_how` (linux/openat2.h); libc's is `#[non_exhaustive]`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(dir, path, {flags | O_CLOEXEC, 0, resolve})`, EINTR retried.
pub(crate) fn openat2(
    dir: BorrowedFd<'_>,
    path: &[u8],
    flags: i32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let c = CString::new(path)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    let fd = cvt_r(|| {
        // SAFETY: see the module's Safety: a live C string, a live `OpenHow` and its size.
        unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        }
    })?;
    Ok(owned(fd as i32))
}
