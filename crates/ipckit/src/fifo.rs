//! Named FIFOs: a pipe with a name in the file system, for processes that are not parent
//! and child. ipckit creates them owner-only (0600) and exclusively, records them in the
//! registry, and removes them when the creator drops its guard. Opening never hangs: a
//! writer waits for a reader at most a timeout, then fails with a clear error.
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
/// # Errors
///
/// `AlreadyExists`, or the OS error.
#[doc(alias = "mkfifo")]
pub fn create(path: &Path, mode: u32) -> io::Result<ObjectGuard> {
    let name = path
        .to_str()
        .ok_or_else(|| crate::error::invalid("FIFO path must be UTF-8"))?;
    let mut guard = registry::register(ObjectKind::Fifo, name)?;
    if let Err(e) = syspipe::mkfifo(path, mode) {
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

fn check_fifo(fd: &OwnedFd, path: &Path) -> io::Result<()> {
    let st = syspipe::fstat(fd.as_fd())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(crate::error::invalid(format!(
            "{} is not a FIFO",
            path.display()
        )));
    }
    Ok(())
}

/// Opens the read end (non-blocking; returns at once even with no writer).
///
/// # Errors
///
/// `NotFound`, `InvalidInput` if `path` is not a FIFO, or the OS error.
pub fn open_read(path: &Path) -> io::Result<OwnedFd> {
    let fd = syspipe::open(path, libc::O_RDONLY | libc::O_NONBLOCK).map_err(|e| named(e, path))?;
    check_fifo(&fd, path)?;
    Ok(fd)
}

/// Opens the write end, waiting at most `timeout` for a reader to open the FIFO.
///
/// # Errors
///
/// `TimedOut` ("no reader ... within ...") when none comes, `NotFound`, or the OS error.
pub fn open_write(path: &Path, timeout: Duration) -> io::Result<OwnedFd> {
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_micros(100);
    loop {
        match syspipe::open(path, libc::O_WRONLY | libc::O_NONBLOCK) {
            Ok(fd) => {
                check_fifo(&fd, path)?;
                return Ok(fd);
            }
            // ENXIO: no reader yet. ENOENT: the creator has not made it yet.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENOENT)) => {
                let now = Instant::now();
                if now >= deadline {
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
                std::thread::sleep(nap.min(deadline - now));
                nap = (nap * 2).min(Duration::from_millis(10));
            }
            Err(e) => return Err(named(e, path)),
        }
    }
}

fn named(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
