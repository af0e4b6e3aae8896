//! Unframed pipe ends: bytes in, bytes out, blocking or non-blocking, with readiness and the
//! `PIPE_BUF` atomicity rule.

use crate::sys::fd as sysfd;
use crate::sys::pipe as syspipe;
use crate::sys::proc::{self, Inherited};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// The largest write the kernel keeps whole: a `write` of at most this many bytes to a pipe
/// or FIFO is never interleaved with another writer's bytes (POSIX, `pipe(7)`; 4096 on
/// Linux). Longer writes may be split into pieces with other writers' data in between, and
/// on a non-blocking end may be written only in part.
pub const PIPE_BUF: usize = libc::PIPE_BUF;

/// A new pipe: (read end, write end), both blocking and close-on-exec.
///
/// # Errors
///
/// The `pipe2` error (`EMFILE`/`ENFILE` at the descriptor limits).
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// # fn main() -> std::io::Result<()> {
/// let (mut r, mut w) = ipckit::pipe::raw_pipe()?;
/// w.write_all(b"bytes, not messages")?;
/// drop(w); // the last writer closes: the reader sees end-of-file after the data
/// let mut s = String::new();
/// r.read_to_string(&mut s)?;
/// assert_eq!(s, "bytes, not messages");
/// # Ok(()) }
/// ```
#[doc(alias = "pipe2")]
pub fn raw_pipe() -> io::Result<(PipeReader, PipeWriter)> {
    let (r, w) = syspipe::pipe2(false)?;
    Ok((PipeReader { fd: r }, PipeWriter { fd: w }))
}

/// What both ends share: non-blocking mode, readiness, capacity, the fill level.
macro_rules! common {
    ($t:ident, $events:expr, $inherited:expr) => {
        impl $t {
            /// Sets or clears `O_NONBLOCK`. It belongs to the open file description, so a
            /// duplicate of this end (in this process or a child) sees the change too.
            ///
            /// # Errors
            ///
            /// The `fcntl` error.
            pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
                sysfd::set_nonblocking(self.fd.as_fd(), on)
            }

            /// Waits until this end is ready (`poll`), at most `timeout` (`None`: no
            /// limit). True when ready, false on timeout. "Ready" includes the other side
            /// being gone: the next call then returns end-of-file or `BrokenPipe` at once.
            ///
            /// # Errors
            ///
            /// The `poll` error.
            #[doc(alias = "poll")]
            pub fn wait_ready(&self, timeout: Option<Duration>) -> io::Result<bool> {
                let r = sysfd::poll(&[(self.fd.as_fd(), $events)], timeout)?;
                Ok(r != sysfd::Ready::TimedOut)
            }

            /// Bytes in the pipe now, not yet read (`FIONREAD`).
            ///
            /// # Errors
            ///
            /// The `ioctl` error.
            #[doc(alias = "FIONREAD")]
            pub fn queued(&self) -> io::Result<usize> {
                sysfd::fionread(self.fd.as_fd())
            }

            /// The pipe's capacity in bytes (`F_GETPIPE_SZ`; 65536 by default).
            ///
            /// # Errors
            ///
            /// The `fcntl` error.
            #[doc(alias = "F_GETPIPE_SZ")]
            pub fn capacity(&self) -> io::Result<usize> {
                syspipe::pipe_size(self.fd.as_fd())
            }

            /// Sets the pipe's capacity (`F_SETPIPE_SZ`); returns what the kernel set (a
            /// power-of-two number of pages, at least `size`).
            ///
            /// # Errors
            ///
            /// `InvalidInput` over `/proc/sys/fs/pipe-max-size` (named in the message),
            /// `EBUSY` below what the pipe holds now, `EPERM` over the per-user page quota.
            #[doc(alias = "F_SETPIPE_SZ")]
            pub fn set_capacity(&self, size: usize) -> io::Result<usize> {
                crate::stream::set_pipe_capacity_checked(std::iter::once(&self.fd), size)
            }

            /// Adopts a descriptor this process inherited (its number came from the parent,
            /// e.g. through an environment variable), after checking that it is this end of
            /// a pipe, open, not stdio, and not owned by anything in this process yet (see
            /// [`inherit_only`](crate::pipe::inherit_only)). It is made close-on-exec again.
            ///
            /// # Errors
            ///
            /// `InvalidInput` naming the descriptor and what is wrong with it; nothing is
            /// closed then.
            pub fn from_inherited(fd: RawFd) -> io::Result<$t> {
                Ok($t {
                    fd: proc::adopt_inherited(fd, $inherited)?,
                })
            }
        }

        impl AsFd for $t {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.fd.as_fd()
            }
        }

        impl AsRawFd for $t {
            fn as_raw_fd(&self) -> RawFd {
                self.fd.as_raw_fd()
            }
        }

        impl From<$t> for OwnedFd {
            fn from(end: $t) -> OwnedFd {
                end.fd
            }
        }

        impl From<$t> for std::process::Stdio {
            /// Hands this end to a child as one of its stdio streams.
            fn from(end: $t) -> std::process::Stdio {
                std::process::Stdio::from(end.fd)
            }
        }
    };
}

/// The read end of a pipe (or FIFO): bytes, unframed. `Read` gives what is there, up to the
/// buffer's size, and 0 once every write end is closed and the pipe is empty.
#[derive(Debug)]
pub struct PipeReader {
    fd: OwnedFd,
}

/// The write end of a pipe (or FIFO). `Write::write` is one `write(2)`: on a non-blocking
/// end it may write only part of the buffer, or fail with `WouldBlock` when the pipe is full.
/// Writing after every reader closed fails with `BrokenPipe` (`EPIPE`; ipckit never relies on
/// `SIGPIPE`, which Rust programs ignore).
#[derive(Debug)]
pub struct PipeWriter {
    fd: OwnedFd,
}

common!(PipeReader, libc::POLLIN, Inherited::PipeRead);
common!(PipeWriter, libc::POLLOUT, Inherited::PipeWrite);

impl PipeReader {
    /// Reads what is there into `buf`, waiting at most `timeout` for something to arrive,
    /// whether this end is blocking or not. `Ok(0)`: end-of-file (every writer closed).
    ///
    /// # Errors
    ///
    /// `TimedOut` if nothing came in time; the `read` error.
    pub fn read_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            match sysfd::read(self.fd.as_fd(), buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) || !self.wait_ready(left)? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "nothing to read from the pipe within {:.3} s",
                        timeout.as_secs_f64()
                    ),
                ));
            }
        }
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sysfd::read(self.fd.as_fd(), buf)
    }
}

impl Read for &PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sysfd::read(self.fd.as_fd(), buf)
    }
}

impl PipeWriter {
    /// Writes as much of `buf` as fits before `timeout` (`None`: no limit), handling partial
    /// writes and a full pipe (waiting for room with `poll`), whether this end is blocking or
    /// not. Returns the bytes written: all of `buf`, or fewer if the time ran out. The bytes
    /// written are in the pipe; the rest is the caller's to retry, so nothing is lost or sent
    /// twice.
    ///
    /// # Errors
    ///
    /// `BrokenPipe` once every reader is gone (the bytes written before that are lost with
    /// the pipe); the `write` error.
    pub fn write_timeout(&mut self, buf: &[u8], timeout: Option<Duration>) -> io::Result<usize> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut done = 0;
        while done < buf.len() {
            match sysfd::write(self.fd.as_fd(), &buf[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if left == Some(Duration::ZERO) || !self.wait_ready(left)? {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Writes `buf` in one `write(2)` that the kernel keeps whole: no other writer's bytes
    /// land inside it, and on a non-blocking end it is written entirely or not at all
    /// (`WouldBlock`), never in part. This is the pipe's only message boundary.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `buf` is longer than [`PIPE_BUF`]; `WouldBlock` on a full
    /// non-blocking pipe; `BrokenPipe`; the `write` error.
    pub fn write_atomic(&mut self, buf: &[u8]) -> io::Result<()> {
        if buf.len() > PIPE_BUF {
            return Err(crate::error::invalid(format!(
                "{} bytes exceed PIPE_BUF ({PIPE_BUF}): the kernel may split such a write",
                buf.len()
            )));
        }
        let n = sysfd::write(self.fd.as_fd(), buf)?;
        // pipe(7): a write of at most PIPE_BUF bytes is all or nothing.
        debug_assert_eq!(n, buf.len());
        Ok(())
    }
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sysfd::write(self.fd.as_fd(), buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sysfd::write(self.fd.as_fd(), buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PipeReader {
    /// Wraps an owned descriptor, which must be a pipe's or FIFO's read end (checked).
    ///
    /// # Errors
    ///
    /// `InvalidInput` if it is not one (`fd` is dropped with the error).
    pub fn try_from_fd(fd: OwnedFd) -> io::Result<PipeReader> {
        check_end(&fd, libc::O_RDONLY)?;
        Ok(PipeReader { fd })
    }
}

impl PipeWriter {
    /// Wraps an owned descriptor, which must be a pipe's or FIFO's write end (checked).
    ///
    /// # Errors
    ///
    /// `InvalidInput` if it is not one (`fd` is dropped with the error).
    pub fn try_from_fd(fd: OwnedFd) -> io::Result<PipeWriter> {
        check_end(&fd, libc::O_WRONLY)?;
        Ok(PipeWriter { fd })
    }
}

fn check_end(fd: &OwnedFd, access: i32) -> io::Result<()> {
    let st = syspipe::fstat(fd.as_fd())?;
    let fl = sysfd::status_flags(fd.as_fd())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO || fl & libc::O_ACCMODE != access {
        return Err(crate::error::invalid(format!(
            "descriptor {} is not a pipe's {} end",
            fd.as_raw_fd(),
            if access == libc::O_RDONLY {
                "read"
            } else {
                "write"
            }
        )));
    }
    Ok(())
}
