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

/// A new pipe: (read end, write end), close-on-exec, waiting without a limit until told
/// otherwise ([`PipeReader::set_read_timeout`], [`PipeWriter::set_nonblocking`]). For framed
/// messages instead of bytes, see [`pipe`](super::pipe()).
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
    let (r, w) = syspipe::pipe2(true)?;
    Ok((PipeReader::wrap(r), PipeWriter::wrap(w)))
}

/// What both ends share: the waiting rules, readiness, capacity, the fill level.
macro_rules! common {
    ($t:ident, $events:expr, $inherited:expr) => {
        impl $t {
            fn wrap(fd: OwnedFd) -> $t {
                $t {
                    fd,
                    nonblocking: false,
                    timeout: None,
                    blocked: Duration::ZERO,
                }
            }

            /// Makes calls return `WouldBlock` at once instead of waiting (or waits again).
            /// The descriptor underneath is always non-blocking and waits are `poll`, so this
            /// is this handle's behaviour, not the file's: a child given this end (through
            /// `Stdio` or [`OwnedFd`], which restore blocking mode) is not affected.
            pub fn set_nonblocking(&mut self, on: bool) {
                self.nonblocking = on;
            }

            /// Total time calls spent waiting for the pipe (for a writer: for room, because
            /// the reader was slower; for a reader: for data).
            pub fn blocked(&self) -> Duration {
                self.blocked
            }

            /// One read or write, waiting as this handle's mode says.
            fn io_wait(
                &mut self,
                mut op: impl FnMut(BorrowedFd<'_>) -> io::Result<usize>,
            ) -> io::Result<usize> {
                let deadline = self.timeout.and_then(|t| Instant::now().checked_add(t));
                loop {
                    match op(self.fd.as_fd()) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.nonblocking => {}
                        other => return other,
                    }
                    let t = Instant::now();
                    let left = deadline.map(|d| d.saturating_duration_since(t));
                    let r = sysfd::poll(&[(self.fd.as_fd(), $events)], left);
                    self.blocked += t.elapsed();
                    if r? == sysfd::Ready::TimedOut {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "the pipe was not ready within {:.3} s",
                                self.timeout.unwrap_or_default().as_secs_f64()
                            ),
                        ));
                    }
                }
            }

            /// Waits as long as it takes until this end is ready (`poll`). "Ready" includes
            /// the other side being gone: the next call then returns end-of-file or
            /// `BrokenPipe` at once.
            ///
            /// # Errors
            ///
            /// The `poll` error.
            #[doc(alias = "poll")]
            pub fn wait_ready(&self) -> io::Result<()> {
                self.poll_ready(None).map(drop)
            }

            /// Whether this end is ready now (a `poll` that does not wait); see
            /// [`wait_ready`](Self::wait_ready).
            ///
            /// # Errors
            ///
            /// The `poll` error.
            pub fn try_wait_ready(&self) -> io::Result<bool> {
                self.poll_ready(Some(Duration::ZERO))
            }

            /// Waits at most `timeout` until this end is ready: true when ready, false on
            /// timeout. See [`wait_ready`](Self::wait_ready).
            ///
            /// # Errors
            ///
            /// The `poll` error.
            pub fn wait_ready_timeout(&self, timeout: Duration) -> io::Result<bool> {
                self.poll_ready(Some(timeout))
            }

            /// One `poll` for readiness, at most `timeout` (`None`: no limit); false on
            /// timeout.
            fn poll_ready(&self, timeout: Option<Duration>) -> io::Result<bool> {
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
                super::queued(&self.fd)
            }

            /// The pipe's capacity in bytes (`F_GETPIPE_SZ`; 65536 by default).
            ///
            /// # Errors
            ///
            /// The `fcntl` error.
            #[doc(alias = "F_GETPIPE_SZ")]
            pub fn capacity(&self) -> io::Result<usize> {
                super::capacity(&self.fd)
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
                super::set_capacity(&self.fd, size)
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
                let fd = proc::adopt_inherited(fd, $inherited)?;
                sysfd::set_nonblocking(fd.as_fd(), true)?;
                Ok($t::wrap(fd))
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
            /// The descriptor, back in blocking mode, as programs expect of an inherited one.
            fn from(end: $t) -> OwnedFd {
                // Cannot fail on an open descriptor; if it did, the mode would stay as is.
                let _ = sysfd::set_nonblocking(end.fd.as_fd(), false);
                end.fd
            }
        }

        impl From<$t> for std::process::Stdio {
            /// Hands this end to a child as one of its stdio streams, in blocking mode.
            fn from(end: $t) -> std::process::Stdio {
                std::process::Stdio::from(OwnedFd::from(end))
            }
        }
    };
}

/// The read end of a pipe: bytes, unframed. `Read` waits for data (at most the
/// [timeout](PipeReader::set_read_timeout), or not at all after
/// [`set_nonblocking`](PipeReader::set_nonblocking)), then gives what is there up to the
/// buffer's size, and 0 once every write end is closed and the pipe is empty.
#[derive(Debug)]
pub struct PipeReader {
    fd: OwnedFd,
    nonblocking: bool,
    timeout: Option<Duration>,
    blocked: Duration,
}

/// The write end of a pipe or FIFO. `Write::write` waits for room (at most the
/// [timeout](PipeWriter::set_write_timeout), or not at all after
/// [`set_nonblocking`](PipeWriter::set_nonblocking): then `WouldBlock`), and may write only
/// part of a buffer longer than [`PIPE_BUF`]; `write_all` or
/// [`write_timeout`](PipeWriter::write_timeout) complete it. Writing after every reader closed
/// fails with `BrokenPipe` (`EPIPE`; ipckit never relies on `SIGPIPE`, which Rust programs
/// ignore). The time spent waiting for room is counted ([`PipeWriter::blocked`]).
#[derive(Debug)]
pub struct PipeWriter {
    fd: OwnedFd,
    nonblocking: bool,
    timeout: Option<Duration>,
    blocked: Duration,
}

common!(PipeReader, libc::POLLIN, Inherited::PipeRead);
common!(PipeWriter, libc::POLLOUT, Inherited::PipeWrite);

impl PipeReader {
    /// How long one read waits for data; then it fails with `TimedOut`. By default (and
    /// after [`PipeReader::clear_read_timeout`]) a read waits as long as it takes.
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.timeout = Some(timeout);
    }

    /// Makes reads wait as long as it takes again (the default).
    pub fn clear_read_timeout(&mut self) {
        self.timeout = None;
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.io_wait(|fd| sysfd::read(fd, buf))
    }
}

impl PipeWriter {
    /// How long one write waits for room; then it fails with `TimedOut` (having written
    /// nothing: a write that made progress returns its count first). By default (and after
    /// [`PipeWriter::clear_write_timeout`]) a write waits as long as it takes.
    pub fn set_write_timeout(&mut self, timeout: Duration) {
        self.timeout = Some(timeout);
    }

    /// Makes writes wait as long as it takes again (the default).
    pub fn clear_write_timeout(&mut self) {
        self.timeout = None;
    }

    /// Writes as much of `buf` as fits before `timeout`, handling partial writes and a full
    /// pipe (waiting for room with `poll`), whatever this handle's mode and timeout. Returns
    /// the bytes written: all of `buf`, or fewer if the time ran out. The bytes written are in
    /// the pipe; the rest is the caller's to retry, so nothing is lost or sent twice.
    /// `Duration::ZERO` writes what fits now; `Duration::MAX` (too large for the clock) waits
    /// without a limit, like `write_all` on a blocking handle but returning the count.
    ///
    /// # Errors
    ///
    /// `BrokenPipe` once every reader is gone (the bytes written before that are lost with
    /// the pipe); the `write` error.
    pub fn write_timeout(&mut self, buf: &[u8], timeout: Duration) -> io::Result<usize> {
        let deadline = Instant::now().checked_add(timeout);
        let mut done = 0;
        while done < buf.len() {
            match sysfd::write(self.fd.as_fd(), &buf[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let t = Instant::now();
                    let left = deadline.map(|d| d.saturating_duration_since(t));
                    let ready = left != Some(Duration::ZERO) && self.poll_ready(left)?;
                    self.blocked += t.elapsed();
                    if !ready {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Writes `buf` in one `write(2)` that the kernel keeps whole: no other writer's bytes
    /// land inside it, and it is written entirely or not at all (waiting for room as this
    /// handle's mode says, or `WouldBlock`), never in part. This is the pipe's only message
    /// boundary.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `buf` is longer than [`PIPE_BUF`]; `WouldBlock` on a full pipe in
    /// non-blocking mode; `TimedOut`; `BrokenPipe`; the `write` error.
    pub fn write_atomic(&mut self, buf: &[u8]) -> io::Result<()> {
        if buf.len() > PIPE_BUF {
            return Err(crate::error::invalid(format!(
                "{} bytes exceed PIPE_BUF ({PIPE_BUF}): the kernel may split such a write",
                buf.len()
            )));
        }
        let n = self.io_wait(|fd| sysfd::write(fd, buf))?;
        // pipe(7): a write of at most PIPE_BUF bytes is all or nothing.
        debug_assert_eq!(n, buf.len());
        Ok(())
    }
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.io_wait(|fd| sysfd::write(fd, buf))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PipeReader {
    /// Wraps an owned descriptor, which must be a pipe's or FIFO's read end (checked), and
    /// makes it non-blocking underneath.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if it is not one (`fd` is dropped with the error).
    pub fn try_from_fd(fd: OwnedFd) -> io::Result<PipeReader> {
        check_end(&fd, libc::O_RDONLY)?;
        sysfd::set_nonblocking(fd.as_fd(), true)?;
        Ok(PipeReader::wrap(fd))
    }
}

impl PipeWriter {
    /// Wraps an owned descriptor, which must be a pipe's or FIFO's write end (checked), and
    /// makes it non-blocking underneath.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if it is not one (`fd` is dropped with the error).
    pub fn try_from_fd(fd: OwnedFd) -> io::Result<PipeWriter> {
        check_end(&fd, libc::O_WRONLY)?;
        sysfd::set_nonblocking(fd.as_fd(), true)?;
        Ok(PipeWriter::wrap(fd))
    }
}

fn check_end(fd: &OwnedFd, access: i32) -> io::Result<()> {
    let st = sysfd::fstat(fd.as_fd())?;
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
