//! Spawning a child with a ready duplex channel, and nothing else it should not have.

use super::PipeBuilder;
use crate::stream::{StreamEndpoint, DEFAULT_STREAM_MAX};
use crate::sys::proc::{self, Inherited};
use crate::sys::socket as syssock;
use crate::transport::Mechanism;
use crate::wait::Wait;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::process::{Child, Command};

/// The environment variable that tells a child spawned by [`ChildChannel::spawn`] where its
/// channel is: `fd:R,W` (two pipes) or `sock:N` (one end of a socketpair). The child reads it
/// with [`ChildChannel::open_from_env`].
pub const CHANNEL_ENV: &str = "IPCKIT_CHANNEL";

/// What carries the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Duplex {
    /// Two pipes, one each way (`fd:R,W`).
    #[default]
    Pipes,
    /// A Unix stream socketpair (`sock:N`): one descriptor both ways, and the peer's
    /// credentials available on either end.
    SocketPair,
}

/// Makes `cmd`'s child inherit `fds` and, beyond stdin, stdout and stderr, nothing else:
/// after the fork, in the child, every other descriptor is marked close-on-exec
/// (`close_range(CLOSE_RANGE_CLOEXEC)`), including ones that code outside Rust std and
/// ipckit opened without the flag. Pass the numbers to the child yourself (an argument or
/// an environment variable); it adopts them with
/// [`PipeReader::from_inherited`](crate::pipe::PipeReader::from_inherited) and the like.
///
/// Call it once per command, with every descriptor the child should get, and after any
/// other hook that hands descriptors down: it seals whatever was opened before it.
///
/// # Examples
///
/// ```
/// use std::io::Read;
/// use std::os::fd::{AsFd, AsRawFd};
/// use std::time::Duration;
/// # fn main() -> std::io::Result<()> {
/// let (mut r, w) = ipckit::pipe::raw_pipe()?;
/// // The worker, here a shell that writes one line to the descriptor it is told of.
/// let mut cmd = std::process::Command::new("sh"); // e.g. "my-worker"
/// cmd.args(["-c", r#"echo done >"/dev/fd/$RESULTS_FD""#]);
/// cmd.env("RESULTS_FD", w.as_raw_fd().to_string());
/// ipckit::pipe::inherit_only(&mut cmd, &[w.as_fd()]);
/// let mut child = cmd.spawn()?;
/// drop(w); // our copy: the reader sees end-of-file when the child's closes
/// let mut results = String::new();
/// r.set_read_timeout(Duration::from_secs(10));
/// r.read_to_string(&mut results)?;
/// assert_eq!(results, "done\n");
/// child.wait()?;
/// # Ok(()) }
/// ```
pub fn inherit_only(cmd: &mut Command, fds: &[BorrowedFd<'_>]) {
    proc::inherit_only_in_child(cmd, fds.iter().map(|fd| fd.as_raw_fd()).collect());
}

/// Builds both ends of a duplex channel between a parent and the child it spawns:
/// `ChildChannel::new().duplex(..).wait(..).max_msg_size(..)`, then
/// [`spawn`](ChildChannel::spawn) in the parent (spawns the child with its end, ready on both
/// sides, in one call) and [`open_from_env`](ChildChannel::open_from_env) in the child.
///
/// The parent's end comes back as a framed [`StreamEndpoint`]; the child finds its end
/// through [`CHANNEL_ENV`]. The child inherits its end of the channel, stdio, and whatever
/// [`ChildChannel::inherit`] names, nothing else (see [`inherit_only`]). The parent closes
/// the child's ends right after the spawn, so each side sees the other's exit as end-of-file
/// (`PeerGone`).
///
/// # Examples
///
/// ```standalone_crate
/// use ipckit::pipe::{ChildChannel, Duplex};
/// use ipckit::Transport;
/// use std::time::Duration;
/// # fn main() -> std::io::Result<()> {
/// # // This program is both processes: spawned with a channel, it is the worker.
/// # if std::env::var_os(ipckit::pipe::CHANNEL_ENV).is_some() {
/// #     return worker();
/// # }
/// // Process 1 (parent); the worker here is this same program.
/// let mut cmd = std::process::Command::new(std::env::current_exe()?); // e.g. my-worker
/// let (mut child, mut ch) = ChildChannel::new().duplex(Duplex::SocketPair).spawn(&mut cmd)?;
/// ch.send(b"job 1")?;
/// let mut buf = vec![0; ch.max_msg_size()];
/// let n = ch.recv_timeout(&mut buf, Duration::from_secs(10))?;
/// assert_eq!(&buf[..n], b"done: job 1");
/// drop(ch); // the worker reads end-of-file and exits
/// child.wait()?;
/// # Ok(()) }
///
/// // Process 2 (the worker): the kind comes with the address
/// fn worker() -> std::io::Result<()> {
///     let mut ch = ChildChannel::new().open_from_env()?;
///     let mut buf = vec![0; ch.max_msg_size()];
///     // Until end-of-file (PeerGone), or 10 s without a job.
///     while let Ok(n) = ch.recv_timeout(&mut buf, Duration::from_secs(10)) {
///         let reply = [&b"done: "[..], &buf[..n]].concat();
///         ch.send(&reply)?;
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until spawn() or open_from_env()"]
pub struct ChildChannel<'a> {
    kind: Duplex,
    wait: Wait,
    max: Option<usize>,
    capacity: Option<usize>,
    extra: Vec<BorrowedFd<'a>>,
}

impl Default for ChildChannel<'_> {
    fn default() -> Self {
        ChildChannel::new()
    }
}

impl<'a> ChildChannel<'a> {
    /// The defaults: two pipes ([`Duplex::Pipes`]), blocking waits, the default maximum
    /// message size.
    pub fn new() -> ChildChannel<'a> {
        ChildChannel {
            kind: Duplex::Pipes,
            wait: Wait::Block,
            max: None,
            capacity: None,
            extra: Vec::new(),
        }
    }

    /// What carries the channel ([`Duplex::Pipes`] by default). Used by
    /// [`spawn`](ChildChannel::spawn) only: the child's end is what the address says.
    pub fn duplex(mut self, kind: Duplex) -> Self {
        self.kind = kind;
        self
    }

    /// The endpoint's wait strategy ([`Wait::Block`] by default).
    pub fn wait(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// The largest message either side may send (default [`DEFAULT_STREAM_MAX`]). The
    /// parent and the child set the same.
    pub fn max_msg_size(mut self, max: usize) -> Self {
        self.max = Some(max);
        self
    }

    /// Pipes only: each pipe's capacity in bytes (`F_SETPIPE_SZ`). Used by
    /// [`spawn`](ChildChannel::spawn) only.
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = Some(bytes);
        self
    }

    /// Lets the child inherit `fd` too (its number is unchanged; tell the child yourself).
    /// Used by [`spawn`](ChildChannel::spawn) only.
    pub fn inherit(mut self, fd: BorrowedFd<'a>) -> Self {
        self.extra.push(fd);
        self
    }

    /// Spawns `cmd` with the channel and returns the child and the parent's endpoint.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a capacity over the system maximum or with [`Duplex::SocketPair`];
    /// the `pipe2`/`socketpair` error; the spawn error (nothing is left open then).
    pub fn spawn(self, cmd: &mut Command) -> io::Result<(Child, StreamEndpoint)> {
        let max = self.max.unwrap_or(DEFAULT_STREAM_MAX);
        let extra: Vec<RawFd> = self.extra.iter().map(|fd| fd.as_raw_fd()).collect();
        match self.kind {
            Duplex::Pipes => {
                let pair = PipeBuilder::new()
                    .wait(self.wait)
                    .max_msg_size(max)
                    .create_pair()?;
                if let Some(bytes) = self.capacity {
                    pair.set_capacity(bytes)?;
                }
                let (r, w) = pair.child_fds();
                cmd.env(CHANNEL_ENV, pair.address());
                proc::inherit_only_in_child(cmd, [r, w].into_iter().chain(extra).collect());
                let child = cmd.spawn()?;
                Ok((child, pair.into_parent()?))
            }
            Duplex::SocketPair => {
                if self.capacity.is_some() {
                    return Err(crate::error::invalid(
                        "a capacity applies to pipes; a socketpair's buffers are SO_SNDBUF/SO_RCVBUF",
                    ));
                }
                let (ours, theirs) = syssock::socketpair_stream()?;
                cmd.env(CHANNEL_ENV, format!("sock:{}", theirs.as_raw_fd()));
                proc::inherit_only_in_child(
                    cmd,
                    std::iter::once(theirs.as_raw_fd()).chain(extra).collect(),
                );
                let child = cmd.spawn()?;
                drop(theirs);
                Ok((child, socket_endpoint(ours, self.wait, max)?))
            }
        }
    }

    /// The child's side of [`ChildChannel::spawn`]: adopts the channel named by
    /// [`CHANNEL_ENV`], two pipes or a socketpair as the parent chose (the
    /// [`duplex`](ChildChannel::duplex) set here is not used). Set the wait strategy and the
    /// largest message the parent used.
    ///
    /// # Errors
    ///
    /// `NotFound` when the variable is not set (this process was not spawned with a
    /// channel); `InvalidInput` when it is malformed or names descriptors this process did
    /// not inherit (a grandchild that inherited the variable but not the descriptors gets
    /// this, not someone else's descriptor).
    pub fn open_from_env(self) -> io::Result<StreamEndpoint> {
        let (wait, max) = (self.wait, self.max.unwrap_or(DEFAULT_STREAM_MAX));
        let addr = std::env::var(CHANNEL_ENV).map_err(|_| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{CHANNEL_ENV} is not set: this process was not spawned with a channel"),
            )
        })?;
        match addr.strip_prefix("sock:") {
            Some(n) => {
                let n: RawFd = n.parse().map_err(|_| {
                    crate::error::invalid(format!("'{addr}' is not a channel address (sock:N)"))
                })?;
                let fd = proc::adopt_inherited(n, Inherited::UnixStream)?;
                socket_endpoint(fd, wait, max)
            }
            None => PipeBuilder::new().wait(wait).max_msg_size(max).open(&addr),
        }
    }
}

fn socket_endpoint(fd: OwnedFd, wait: Wait, max: usize) -> io::Result<StreamEndpoint> {
    StreamEndpoint::new(Mechanism::Uds, Some(fd), None, true, wait, max)
}
