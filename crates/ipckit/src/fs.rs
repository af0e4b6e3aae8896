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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_beneath() {
        let top = std::env::temp_dir().join(format!("ipckit-fs-test-{}", std::process::id()));
        let root = top.join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(top.join("out"), b"x").unwrap();
        std::fs::write(root.join("in"), b"y").unwrap();
        std::os::unix::fs::symlink("../out", root.join("rel")).unwrap();
        std::os::unix::fs::symlink(top.join("out"), root.join("abs")).unwrap();
        std::os::unix::fs::symlink("in", root.join("ok")).unwrap();
        let dir = std::fs::File::open(&root).unwrap();
        for p in ["in", "ok", "d/../in"] {
            assert!(
                open_beneath(&dir, p.as_bytes(), libc::O_RDONLY).is_ok(),
                "{p}"
            );
        }
        for p in ["../out", "rel", "abs", "/etc/passwd", "d/../../out"] {
            assert!(
                open_beneath(&dir, p.as_bytes(), libc::O_RDONLY).is_err(),
                "{p}"
            );
        }
        assert!(open_beneath(&dir, b"a\0b", libc::O_RDONLY).is_err());
        std::fs::remove_dir_all(&top).unwrap();
    }
}
