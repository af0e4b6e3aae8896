//! Anonymous pipes: a parent and the child it spawns, connected by descriptors the child
//! inherits.
//!
//! - [`raw_pipe`] gives the two ends as bytes ([`PipeReader`], [`PipeWriter`]): blocking or
//!   non-blocking, readiness through `poll` ([`PipeWriter::wait_ready`]) or
//!   [`epoll`](crate::epoll) (both ends are `AsFd`), partial writes handled
//!   ([`PipeWriter::write_timeout`]), and the one boundary a pipe keeps: a write of at most
//!   [`PIPE_BUF`] bytes is never interleaved with another writer's ([`PipeWriter::write_atomic`]).
//! - [`pipe()`] gives framed message endpoints within a process, with the defaults;
//!   [`PipeBuilder`] sets the wait strategy and the largest message, and gives a parent and
//!   a child their endpoints too ([`PipeBuilder::create_pair`] makes a [`PipePair`],
//!   [`PipeBuilder::open`] takes the child's end).
//! - [`ChildChannel`] spawns a `std::process::Command` with a ready duplex channel (two
//!   pipes or a socketpair) in one call, and the child takes its end with
//!   [`ChildChannel::open_from_env`]; [`inherit_only`] makes sure a child inherits the
//!   descriptors it was meant to have and nothing else.
//!
//! # Examples
//!
//! ```standalone_crate
//! use ipckit::pipe::PipeBuilder;
//! use ipckit::{Transport, Wait};
//! use std::time::Duration;
//! # fn main() -> std::io::Result<()> {
//! # // This program is both processes: given an address, it is the child.
//! # if let Some(arg) = std::env::args().nth(1) {
//! #     return child(&arg);
//! # }
//! // Process 1 (parent)
//! let pair = PipeBuilder::new().wait(Wait::ADAPTIVE).create_pair()?;
//! let mut cmd = std::process::Command::new("/proc/self/exe");
//! cmd.arg(pair.address()); // e.g. "fd:5,8"
//! pair.configure_child(&mut cmd);
//! let mut child = cmd.spawn()?;
//! let mut ep = pair.into_parent()?; // closes the child's ends here
//! ep.send(b"ping")?;
//! let mut buf = [0; 64];
//! let n = ep.recv_timeout(&mut buf, Duration::from_secs(10))?;
//! assert_eq!(&buf[..n], b"pong");
//! child.wait()?;
//! # Ok(()) }
//!
//! // Process 2 (child)
//! fn child(arg: &str) -> std::io::Result<()> {
//!     let mut ep = PipeBuilder::new().wait(Wait::ADAPTIVE).open(arg)?;
//!     let mut buf = [0; 64];
//!     let n = ep.recv_timeout(&mut buf, Duration::from_secs(10))?;
//!     assert_eq!(&buf[..n], b"ping");
//!     Ok(ep.send(b"pong")?)
//! }
//! ```
//!
//! # References
//!
//! `pipe(7)`, `pipe2(2)`, `fcntl(2)` (`F_GETPIPE_SZ`, `F_SETPIPE_SZ`).

mod raw;
mod spawn;

pub use raw::{raw_pipe, PipeReader, PipeWriter, PIPE_BUF};
pub use spawn::{inherit_only, ChildChannel, Duplex, CHANNEL_ENV};

use crate::error::invalid;
use crate::stream::{StreamEndpoint, DEFAULT_STREAM_MAX};
use crate::sys::pipe as syspipe;
use crate::sys::proc::{self, Inherited};
use crate::transport::Mechanism;
use crate::wait::Wait;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// The system's largest pipe capacity (`/proc/sys/fs/pipe-max-size`).
///
/// # Errors
///
/// If `/proc` cannot be read.
pub fn max_capacity() -> io::Result<usize> {
    syspipe::pipe_max_size()
}

/// A one-way pipe within this process: (receiving end, sending end), framed, with the
/// defaults ([`Wait::Block`], [`DEFAULT_STREAM_MAX`]); [`PipeBuilder`] sets them.
///
/// # Errors
///
/// The `pipe2` error.
///
/// # Examples
///
/// ```
/// use ipckit::{pipe, Transport};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (mut rx, mut tx) = pipe::pipe()?;
/// tx.send(b"hello")?;
/// let mut buf = vec![0; rx.max_msg_size()];
/// let n = rx.recv(&mut buf)?;
/// assert_eq!(&buf[..n], b"hello");
/// # Ok(()) }
/// ```
#[doc(alias = "pipe2")]
pub fn pipe() -> io::Result<(StreamEndpoint, StreamEndpoint)> {
    PipeBuilder::new().create()
}

/// Builds framed pipe endpoints: `PipeBuilder::new().wait(..).max_msg_size(..)`, then
/// [`create`](PipeBuilder::create) (a one-way pipe within this process),
/// [`create_pair`](PipeBuilder::create_pair) (two pipes for a child, before spawning it) or
/// [`open`](PipeBuilder::open) (the child's end, from the address its parent passed). The
/// parent and the child pass the same settings.
///
/// # Examples
///
/// ```
/// use ipckit::pipe::PipeBuilder;
/// use ipckit::{Transport, Wait};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (mut rx, mut tx) = PipeBuilder::new().wait(Wait::Spin).max_msg_size(64).create()?;
/// assert!(tx.send(&[0; 65]).is_err()); // over the maximum: refused
/// tx.send(b"fits")?;
/// let mut buf = [0; 64];
/// assert_eq!(rx.recv(&mut buf)?, 4);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
#[must_use = "a builder does nothing until create(), create_pair() or open()"]
pub struct PipeBuilder {
    wait: Wait,
    max_msg_size: usize,
}

impl Default for PipeBuilder {
    fn default() -> Self {
        PipeBuilder::new()
    }
}

impl PipeBuilder {
    /// The defaults: [`Wait::Block`], messages up to [`DEFAULT_STREAM_MAX`].
    pub fn new() -> PipeBuilder {
        PipeBuilder {
            wait: Wait::Block,
            max_msg_size: DEFAULT_STREAM_MAX,
        }
    }

    /// The endpoints' wait strategy ([`Wait::Block`] by default).
    pub fn wait(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// The largest message either side may send ([`DEFAULT_STREAM_MAX`] by default).
    pub fn max_msg_size(mut self, bytes: usize) -> Self {
        self.max_msg_size = bytes;
        self
    }

    /// A one-way pipe within this process: (receiving end, sending end), framed.
    ///
    /// # Errors
    ///
    /// The `pipe2` error; `InvalidInput` for a largest message over the stream limit.
    #[doc(alias = "pipe2")]
    pub fn create(&self) -> io::Result<(StreamEndpoint, StreamEndpoint)> {
        let (r, w) = syspipe::pipe2(true)?;
        let (wait, max) = (self.wait, self.max_msg_size);
        Ok((
            StreamEndpoint::new(Mechanism::Pipe, Some(r), None, false, wait, max)?,
            StreamEndpoint::new(Mechanism::Pipe, None, Some(w), false, wait, max)?,
        ))
    }

    /// Creates both pipes of a duplex parent/child channel (close-on-exec until
    /// [`PipePair::configure_child`] says otherwise for one child).
    ///
    /// # Errors
    ///
    /// The `pipe2` error.
    pub fn create_pair(&self) -> io::Result<PipePair> {
        let (child_r, parent_w) = syspipe::pipe2(true)?;
        let (parent_r, child_w) = syspipe::pipe2(true)?;
        let max = self.max_msg_size;
        crate::stream::fit_pipe(parent_w.as_fd(), max);
        crate::stream::fit_pipe(child_w.as_fd(), max);
        Ok(PipePair {
            parent_r,
            parent_w,
            child_r,
            child_w,
            wait: self.wait,
            max,
        })
    }

    /// The child's endpoint, from the address its parent passed ([`PipePair::address`]).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a malformed address, the same descriptor named twice, or
    /// descriptors that are not a pipe's read and write ends inherited by this process
    /// (stdio, descriptors not open, and descriptors something in this process already owns
    /// are refused; nothing is closed then), or for a largest message over the stream limit.
    pub fn open(&self, addr: &str) -> io::Result<StreamEndpoint> {
        let bad = || invalid(format!("'{addr}' is not a pipe address (fd:R,W)"));
        let (r, w) = addr
            .strip_prefix("fd:")
            .and_then(|s| s.split_once(','))
            .ok_or_else(bad)?;
        let r: i32 = r.parse().map_err(|_| bad())?;
        let w: i32 = w.parse().map_err(|_| bad())?;
        if r == w {
            // One descriptor cannot be both ends, and adopting it twice would close it twice.
            return Err(invalid(format!(
                "'{addr}' names descriptor {r} as both ends; a pipe address is fd:R,W with R != W"
            )));
        }
        let r = proc::adopt_inherited(r, Inherited::PipeRead)?;
        let w = proc::adopt_inherited(w, Inherited::PipeWrite)?;
        StreamEndpoint::new(
            Mechanism::Pipe,
            Some(r),
            Some(w),
            false,
            self.wait,
            self.max_msg_size,
        )
    }
}

/// Two pipes for a duplex parent/child channel, before the child is spawned: made by
/// [`PipeBuilder::create_pair`].
#[derive(Debug)]
pub struct PipePair {
    parent_r: OwnedFd,
    parent_w: OwnedFd,
    child_r: OwnedFd,
    child_w: OwnedFd,
    wait: Wait,
    max: usize,
}

impl PipePair {
    /// Sets both pipes' capacity; returns what the kernel set.
    ///
    /// # Errors
    ///
    /// `InvalidInput` over the system maximum (named in the message).
    pub fn set_capacity(&self, size: usize) -> io::Result<usize> {
        crate::stream::set_pipe_capacity_checked(
            [self.parent_w.as_fd(), self.child_w.as_fd()].into_iter(),
            size,
        )
    }

    /// The child's address: `fd:R,W`.
    pub fn address(&self) -> String {
        format!(
            "fd:{},{}",
            self.child_r.as_raw_fd(),
            self.child_w.as_raw_fd()
        )
    }

    /// The child's ends (read, write), as numbers.
    fn child_fds(&self) -> (std::os::fd::RawFd, std::os::fd::RawFd) {
        (self.child_r.as_raw_fd(), self.child_w.as_raw_fd())
    }

    /// Makes `cmd`'s child, and only it, inherit the child's ends. Unlike
    /// [`ChildChannel::spawn`], this does not close the child's other descriptors, so
    /// several channels can be handed to one child; see [`inherit_only`] for that.
    pub fn configure_child(&self, cmd: &mut std::process::Command) {
        proc::inherit_in_child(
            cmd,
            vec![self.child_r.as_raw_fd(), self.child_w.as_raw_fd()],
        );
    }

    /// The parent's endpoint. Call after spawning the child: it closes the child's ends in
    /// this process, so the parent sees EOF/EPIPE when the child dies.
    ///
    /// # Errors
    ///
    /// If the descriptors cannot be made non-blocking.
    pub fn into_parent(self) -> io::Result<StreamEndpoint> {
        let PipePair {
            parent_r,
            parent_w,
            child_r,
            child_w,
            wait,
            max,
        } = self;
        drop((child_r, child_w));
        StreamEndpoint::new(
            Mechanism::Pipe,
            Some(parent_r),
            Some(parent_w),
            false,
            wait,
            max,
        )
    }
}

/// Bytes waiting in a pipe or FIFO right now, asked through either end: how full it is.
///
/// # Errors
///
/// The `ioctl` error (`ENOTTY` for a descriptor that is not a pipe, socket or tty).
///
/// # References
///
/// `pipe(7)` (`FIONREAD`), `ioctl(2)`.
#[doc(alias = "FIONREAD")]
pub fn queued(fd: impl AsFd) -> io::Result<usize> {
    crate::sys::fd::fionread(fd.as_fd())
}

/// The capacity of the pipe or FIFO `fd` is an end of (`F_GETPIPE_SZ`).
///
/// # Errors
///
/// `EBADF` if `fd` is not a pipe, or the `fcntl` error.
#[doc(alias = "F_GETPIPE_SZ")]
pub fn capacity(fd: impl AsFd) -> io::Result<usize> {
    syspipe::pipe_size(fd.as_fd())
}

/// Sets the capacity of the pipe or FIFO `fd` is an end of (`F_SETPIPE_SZ`); returns the size
/// the kernel chose (a power-of-two number of pages, at least `size`).
///
/// # Errors
///
/// `InvalidInput` above `/proc/sys/fs/pipe-max-size` (the limit is in the message), `EBUSY`
/// below the bytes already in the pipe, `EPERM` over the user's pipe page quota, or the
/// `fcntl` error.
#[doc(alias = "F_SETPIPE_SZ")]
pub fn set_capacity(fd: impl AsFd, size: usize) -> io::Result<usize> {
    crate::stream::set_pipe_capacity_checked(std::iter::once(fd.as_fd()), size)
}
