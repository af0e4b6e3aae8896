//! Directory-relative file calls: `openat2(2)` with resolution restrictions, `openat` of an
//! `O_PATH` directory handle, `fstatat`, `statx` (birth time), `unlinkat`, `mkfifoat`,
//! `fchmodat`, `readlinkat`.
//!
//! # Safety
//!
//! Each FFI call takes a NUL-terminated path (from a checked `&[u8]`) and plain integers;
//! `fstatat` and `statx` also a pointer to a live, writable local `stat` / `statx`;
//! `readlinkat` a live, writable buffer with its exact length. `openat2` takes a path built here from a checked `&[u8]`, a pointer
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

fn cstring(name: &[u8]) -> io::Result<CString> {
    CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `openat(dir, path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)` (`dir` `None`: the
/// current directory): a handle on a directory that stays that directory whatever is renamed
/// later, and that is not a symbolic link at `path`'s last component (`ENOTDIR` then).
pub(crate) fn open_dir_path(dir: Option<BorrowedFd<'_>>, path: &[u8]) -> io::Result<OwnedFd> {
    let c = cstring(path)?;
    let d = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let fd = cvt_r(|| {
        // SAFETY: a live C string; openat takes no other pointer.
        unsafe {
            libc::openat(
                d,
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        }
    })?;
    Ok(owned(fd))
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`; an empty `name` is the directory itself
/// (`AT_EMPTY_PATH`).
pub(crate) fn fstatat(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<libc::stat> {
    let c = cstring(name)?;
    let flags = libc::AT_SYMLINK_NOFOLLOW
        | if name.is_empty() {
            libc::AT_EMPTY_PATH
        } else {
            0
        };
    // SAFETY: an all-zero `stat` is a valid out-value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a live C string and a live, writable `stat`.
    cvt_r(|| unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

/// `readlinkat(dir, name)`: the target of the symbolic link `name` in `dir`.
pub(crate) fn readlinkat(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<u8>> {
    let c = cstring(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: a live C string and a live buffer of `buf.len()` writable bytes.
    let n = cvt_r(|| unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    })?;
    // A target as long as the buffer may have been cut short.
    let n = usize::try_from(n).map_err(|_| io::Error::other("readlinkat: negative length"))?;
    if n >= buf.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    buf.truncate(n);
    Ok(buf)
}

/// `fstat(fd)`.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    fstatat(fd, b"")
}

/// `unlinkat(dir, name, 0)`.
pub(crate) fn unlinkat(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let c = cstring(name)?;
    // SAFETY: a live C string.
    cvt_r(|| unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) })?;
    Ok(())
}

/// `mkfifoat(dir, name, mode)`.
pub(crate) fn mkfifoat(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    let c = cstring(name)?;
    // SAFETY: a live C string.
    cvt_r(|| unsafe { libc::mkfifoat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) })?;
    Ok(())
}

/// `fchmodat(dir, name, mode, 0)`: follows a symbolic link at `name`, so call it only on an
/// entry just checked with [`fstatat`] in a directory others cannot rename entries of.
pub(crate) fn fchmodat(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> io::Result<()> {
    let c = cstring(name)?;
    // SAFETY: a live C string.
    cvt_r(|| unsafe { libc::fchmodat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t, 0) })?;
    Ok(())
}

/// `openat(dir, name, flags | O_CLOEXEC, mode)`.
pub(crate) fn openat(
    dir: Option<BorrowedFd<'_>>,
    name: &[u8],
    flags: i32,
    mode: u32,
) -> io::Result<OwnedFd> {
    let c = cstring(name)?;
    let d = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let fd = cvt_r(|| {
        // SAFETY: a live C string; the mode is passed as the variadic `mode_t`.
        unsafe { libc::openat(d, c.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) }
    })?;
    Ok(owned(fd))
}

/// The birth time (seconds, nanoseconds) of `name` in `dir` (not following a symbolic link;
/// an empty `name` is `dir` itself), from `statx`; `None` where the file system keeps none.
pub(crate) fn birth_time(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<(i64, u32)>> {
    let c = cstring(name)?;
    let flags = libc::AT_SYMLINK_NOFOLLOW
        | if name.is_empty() {
            libc::AT_EMPTY_PATH
        } else {
            0
        };
    // SAFETY: an all-zero `statx` is a valid out-value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a live C string and a live, writable `statx`.
    cvt_r(|| unsafe {
        libc::statx(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags,
            libc::STATX_BTIME,
            &mut stx,
        )
    })?;
    Ok((stx.stx_mask & libc::STATX_BTIME != 0)
        .then_some((stx.stx_btime.tv_sec, stx.stx_btime.tv_nsec)))
}
