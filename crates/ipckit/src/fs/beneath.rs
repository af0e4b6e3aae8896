//! Opening a path that cannot escape a directory ([`open_beneath`], `openat2` with
//! `RESOLVE_BENEATH`), and opening only regular files ([`open_regular_beneath`],
//! [`read_regular`]): an `O_PATH` handle checked with `fstat`, reopened for reading through
//! `/proc/self/fd/N` only when it is a regular file.

use super::made::type_name;
use crate::sys;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// For servers (a static file server's requests): opens `path` (relative to `dir`; a leading
/// `/` is refused by the kernel, so strip it) with `flags` (`O_RDONLY`, ...; `O_CLOEXEC` is
/// always added) such that resolution never leaves `dir`.
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

/// For servers: as [`open_beneath`] for reading, but only a regular file: `Ok(None)` if
/// `path` names anything else (a directory, FIFO, socket or device), which is never opened
/// for reading.
///
/// # Errors
///
/// As [`open_beneath`]; `PermissionDenied` when the file may not be read.
///
/// # References
///
/// `openat2(2)` (`O_PATH`), `fstat(2)`, `proc(5)` (`/proc/self/fd`).
pub fn open_regular_beneath(dir: impl AsFd, path: &[u8]) -> io::Result<Option<File>> {
    let handle = File::from(sys::fs::openat2(
        dir.as_fd(),
        path,
        libc::O_PATH,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    )?);
    if !handle.metadata()?.is_file() {
        return Ok(None);
    }
    reopen_for_reading(&handle).map(Some)
}

/// Reads the whole of `path`, which must be a regular file of at most `limit` bytes: a
/// config file or a JSON input, safe to point at `/dev/zero`, a FIFO or `/dev/tty` (refused
/// before anything is opened for reading, so nothing blocks and nothing is read).
///
/// # Errors
///
/// `InvalidInput` naming the path and what it is when it is not a regular file,
/// `FileTooLarge` when it holds more than `limit` bytes, or the error opening or reading it
/// (`NotFound`, `PermissionDenied`, ...). Messages do not repeat the path: the caller names
/// it (`config {path}: a FIFO, not a regular file`).
///
/// # References
///
/// `open(2)` (`O_PATH`), `fstat(2)`, `proc(5)` (`/proc/self/fd`).
pub fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)?;
    let ftype = sys::fs::fstat(handle.as_fd())?.st_mode & libc::S_IFMT;
    if ftype != libc::S_IFREG {
        let what = type_name(ftype);
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what}, not a regular file"),
        ));
    }
    let file = reopen_for_reading(&handle)?;
    let mut buf = Vec::new();
    // One byte more than allowed tells a file that is too big (or grew) from one that fits.
    file.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(buf)
}

/// Opens the inode an `O_PATH` handle refers to, read-only, through `/proc/self/fd/N`.
fn reopen_for_reading(handle: &File) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
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
        assert!(open_regular_beneath(&dir, b"ok").unwrap().is_some());
        assert!(open_regular_beneath(&dir, b"d").unwrap().is_none());
        assert!(open_regular_beneath(&dir, b"rel").is_err());
        std::fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    fn only_regular_files_within_the_limit() {
        let top = std::env::temp_dir().join(format!("ipckit-fs-read-{}", std::process::id()));
        std::fs::create_dir_all(&top).unwrap();
        let f = top.join("f");
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(read_regular(&f, 5).unwrap(), b"12345");
        let e = read_regular(&f, 4).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        let e = read_regular(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("character device"), "{e}");
        let e = read_regular(&top, 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = read_regular(&top.join("missing"), 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&top).unwrap();
    }
}
