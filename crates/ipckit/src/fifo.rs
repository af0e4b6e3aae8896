//! Named FIFOs: a pipe with a name in the file system, for processes that are not parent
//! and child. ipckit creates them owner-only (0600) and exclusively, records them in the
//! registry, and removes them when the creator drops its guard. Opening never hangs: a
//! writer waits for a reader at most a timeout, then fails with a clear error. Opening does
//! not follow a symbolic link and, unless the caller opts in with [`open_read_any`] /
//! [`open_write_any`], accepts only a FIFO of our own uid that others cannot open.
//!
//! # References
//!
//! `fifo(7)`, `mkfifo(3)`.

use crate::registry::{self, ObjectGuard, ObjectKind};
use crate::sys::pipe as syspipe;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// Creates a FIFO at `path` with `mode` (use 0o600), failing if anything exists there.
/// The returned guard removes it (and its registry record) when dropped.
///
/// A relative `path` is taken from the current directory now; the FIFO is made, recorded and
/// later removed at its absolute form ([`ObjectGuard::name`]), so neither a later change of
/// directory nor `ipckit clean` run elsewhere touches another file.
///
/// # Errors
///
/// `AlreadyExists`, `InvalidInput` for a path that is not UTF-8 or holds a control character,
/// or the OS error.
#[doc(alias = "mkfifo")]
pub fn create(path: &Path, mode: u32) -> io::Result<ObjectGuard> {
    let abs = registry::absolute_path(path)?;
    let name = abs
        .to_str()
        .ok_or_else(|| crate::error::invalid("FIFO path must be UTF-8"))?;
    let mut guard = registry::register(ObjectKind::Fifo, name)?;
    // Make exactly the file the guard will remove.
    let abs = Path::new(guard.name()).to_path_buf();
    if let Err(e) = syspipe::mkfifo(&abs, mode) {
        guard.forget_object();
        return Err(if e.kind() == io::ErrorKind::AlreadyExists {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already exists", path.display()),
            )
        } else {
            e
        });
    }
    Ok(guard)
}

/// Whose FIFOs an open accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Only ours (owner = our euid) and not writable by others: nobody else can have made it
    /// or inject messages into it. (A FIFO made by `mkfifo` under the usual umask, 0644, is
    /// accepted: its owner chose to let others read it; the ones ipckit creates are 0600.)
    Us,
    /// Any user's.
    Anyone,
}

fn check_fifo(fd: &OwnedFd, path: &Path, owner: Owner) -> io::Result<()> {
    let st = syspipe::fstat(fd.as_fd())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(crate::error::invalid(format!(
            "{} is not a FIFO",
            path.display()
        )));
    }
    if owner == Owner::Us && (st.st_uid != registry::euid() || st.st_mode & 0o022 != 0) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is owned by uid {} with mode {:03o}; only a FIFO of our uid {} that others \
                 cannot write is used, unless other users are allowed",
                path.display(),
                st.st_uid,
                st.st_mode & 0o7777,
                registry::euid()
            ),
        ));
    }
    Ok(())
}

/// `open` without following a symbolic link at `path` (and never taking a terminal). The
/// OS error is returned as is (callers look at the errno), but for a link.
fn open_fifo(path: &Path, access: i32) -> io::Result<OwnedFd> {
    syspipe::open(
        path,
        access | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY,
    )
    .map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            crate::error::invalid(format!(
                "{} is a symbolic link (or has too many levels of links); FIFOs are opened \
                 without following links",
                path.display()
            ))
        } else {
            e
        }
    })
}

/// Opens the read end (non-blocking; returns at once even with no writer). Only a FIFO
/// owned by our effective uid and not writable by others is accepted, and a symbolic link at
/// `path` is not followed; see [`open_read_any`] to accept other users' FIFOs.
///
/// # Errors
///
/// `NotFound`, `InvalidInput` if `path` is a symbolic link or not a FIFO, `PermissionDenied`
/// if another user owns it or others may write it, or the OS error.
pub fn open_read(path: &Path) -> io::Result<OwnedFd> {
    open_read_as(path, Owner::Us)
}

/// Like [`open_read`], but accepts a FIFO of any owner and mode, for callers that share
/// FIFOs between users on purpose. Symbolic links are still not followed.
///
/// # Errors
///
/// `NotFound`, `InvalidInput` if `path` is a symbolic link or not a FIFO, or the OS error.
pub fn open_read_any(path: &Path) -> io::Result<OwnedFd> {
    open_read_as(path, Owner::Anyone)
}

fn open_read_as(path: &Path, owner: Owner) -> io::Result<OwnedFd> {
    let fd = open_fifo(path, libc::O_RDONLY).map_err(|e| named(e, path))?;
    check_fifo(&fd, path, owner)?;
    Ok(fd)
}

/// Opens the write end, waiting at most `timeout` for a reader to open the FIFO. Only a
/// FIFO owned by our effective uid and not writable by others is accepted, and a symbolic link at
/// `path` is not followed; see [`open_write_any`] to accept other users' FIFOs. A timeout
/// too large to add to the clock (`Duration::MAX`) waits without a deadline.
///
/// # Errors
///
/// `TimedOut` ("no reader ... within ...") when none comes, `NotFound`, `InvalidInput` if
/// `path` is a symbolic link or not a FIFO, `PermissionDenied` if another user owns it or its
/// mode lets others in, or the OS error.
pub fn open_write(path: &Path, timeout: Duration) -> io::Result<OwnedFd> {
    open_write_as(path, timeout, Owner::Us)
}

/// Like [`open_write`], but accepts a FIFO of any owner and mode, for callers that share
/// FIFOs between users on purpose. Symbolic links are still not followed.
///
/// # Errors
///
/// `TimedOut` when no reader comes, `NotFound`, `InvalidInput` if `path` is a symbolic link
/// or not a FIFO, or the OS error.
pub fn open_write_any(path: &Path, timeout: Duration) -> io::Result<OwnedFd> {
    open_write_as(path, timeout, Owner::Anyone)
}

fn open_write_as(path: &Path, timeout: Duration, owner: Owner) -> io::Result<OwnedFd> {
    // `None`: the timeout overflows the clock, so there is no deadline.
    let deadline = Instant::now().checked_add(timeout);
    let mut nap = Duration::from_micros(100);
    loop {
        match open_fifo(path, libc::O_WRONLY) {
            Ok(fd) => {
                check_fifo(&fd, path, owner)?;
                return Ok(fd);
            }
            // ENXIO: no reader yet. ENOENT: the creator has not made it yet.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENOENT)) => {
                let now = Instant::now();
                let left = match deadline {
                    None => Duration::MAX,
                    Some(d) if now >= d => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "no reader opened {} within {:.1} s{}",
                                path.display(),
                                timeout.as_secs_f64(),
                                if e.raw_os_error() == Some(libc::ENOENT) {
                                    " (it does not exist)"
                                } else {
                                    ""
                                }
                            ),
                        ));
                    }
                    Some(d) => d - now,
                };
                std::thread::sleep(nap.min(left));
                nap = (nap * 2).min(Duration::from_millis(10));
            }
            Err(e) => return Err(named(e, path)),
        }
    }
}

fn named(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
