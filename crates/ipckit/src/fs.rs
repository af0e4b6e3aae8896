//! Files opened so that a path cannot escape a directory.
//!
//! [`open_beneath`] is what a static file server needs: the request's path is resolved by
//! the kernel (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`), so `..` components,
//! absolute paths and symlinks (absolute, or relative ones climbing out) that would leave the
//! directory fail instead of opening something outside it; symlinks that stay inside work.

use crate::sys;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

/// Opens `path` (relative to `dir`; a leading `/` is refused by the kernel, so strip it)
/// with `flags` (`O_RDONLY`, ...; `O_CLOEXEC` is always added) such that resolution never
/// leaves `dir`.
///
/// # Errors
///
/// `EXDEV` (`CrossesDevices`) for a path that would escape `dir`, `ELOOP` for a magic link,
/// `NotFound`, `PermissionDenied`, `InvalidInput` for a path with a NUL byte, `ENOSYS`
/// (`Unsupported`) on kernels before 5.6, or another OS error of `openat2`.
///
/// # References
///
/// `openat2(2)`.
pub fn open_beneath(dir: impl AsFd, path: &[u8], flags: i32) -> io::Result<OwnedFd> {
    sys::fs::openat2(
        dir.as_fd(),
        path,
        flags,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    )
}
