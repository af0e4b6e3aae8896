//! Async send, receive and accept over tokio's reactor (feature `tokio`).
//!
//! [`AsyncEndpoint`] wraps a socket endpoint, a [`StreamEndpoint`] (Unix stream, TCP) or a
//! [`DgramEndpoint`] (Unix datagram and seqpacket, UDP), as made by
//! [`ChannelBuilder::open_stream`](crate::connect::ChannelBuilder::open_stream),
//! [`ChannelBuilder::open_dgram`](crate::connect::ChannelBuilder::open_dgram) or a
//! [`UnixListener`]; [`AsyncUnixListener`] accepts into them. Each operation is the endpoint's
//! own non-blocking `try_send`/`try_recv`, retried when tokio reports the socket ready, so
//! the framing, the size limits and the peer checks are exactly those of the blocking API.
//!
//! - Both methods take `&self`: one task may send while another receives on the same
//!   endpoint (share it in an `Arc`), which is what keeps two peers that both send a lot
//!   from filling each other's buffers and stopping.
//! - A stream message that only partly fit is finished before `send` returns (the rest is
//!   written as the socket drains), so the peer always gets whole frames. A `send` future
//!   dropped half-way leaves the rest pending; the next `send`, or a `recv`, writes it first.
//! - A peer that exits is `PeerGone`, not a hang: streams see EOF or EPIPE; for datagram
//!   sockets, which cannot tell, the peer's pidfd (from the connection's hello) is watched
//!   beside the socket.
//!
//! The socket is registered with tokio through a duplicate descriptor that the
//! [`AsyncEndpoint`] owns (tokio requires a registered descriptor to stay open for as long
//! as the registration; owning it is how that is kept): one more descriptor per endpoint.
//!
//! # Examples
//!
//! ```
//! use ipckit::connect::ChannelBuilder;
//! use ipckit::tokio::AsyncEndpoint;
//! use ipckit::Mechanism;
//! # use ipckit::Transport;
//! # use std::time::Duration;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // A server to talk to, on a thread: an echo at a socket in a private directory of this
//! # // example's own, so that examples running at once never meet.
//! # use std::os::unix::fs::DirBuilderExt;
//! # let dir = std::env::temp_dir().join(format!("doc-tokio-{}", std::process::id()));
//! # std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
//! # let path = dir.join("app.sock").to_str().unwrap().to_owned();
//! # let listener = ipckit::unix::ListenerBuilder::new(&path).create()?;
//! # let server = std::thread::spawn(move || -> std::io::Result<()> {
//! #     let mut ep = listener.accept_timeout(Duration::from_secs(10))?;
//! #     let mut buf = vec![0; ep.max_msg_size()];
//! #     let n = ep.recv_timeout(&mut buf, Duration::from_secs(10))?;
//! #     Ok(ep.send(&buf[..n])?)
//! # }); // the listener drops with the thread, removing the socket file
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
//! # rt.block_on(run(&path))?;
//! # server.join().unwrap()?;
//! # std::fs::remove_dir(&dir)?;
//! # Ok(()) }
//! # async fn run(path: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let ep = ChannelBuilder::new(Mechanism::Uds).open_stream(path)?; // e.g. /run/user/1000/app.sock
//! let ep = AsyncEndpoint::new(ep)?; // inside a tokio runtime
//! ep.send(b"ping").await?;
//! let mut buf = vec![0; ep.max_msg_size()];
//! let n = ep.recv(&mut buf).await?;
//! # assert_eq!(&buf[..n], b"ping");
//! # Ok(()) }
//! ```

use crate::dgram::DgramEndpoint;
use crate::error::{invalid, RecvError, SendError};
use crate::stream::StreamEndpoint;
use crate::sys::{async_fd, fd as sysfd, proc};
use crate::transport::{PeerInfo, RawHandle, Transport};
use crate::unix::{Credentials, UnixListener};
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::StreamEndpoint {}
    impl Sealed for crate::DgramEndpoint {}
}

/// The endpoints [`AsyncEndpoint`] can drive: ipckit's socket endpoints.
pub trait AsyncSocket: Transport + AsFd + sealed::Sealed {}
impl AsyncSocket for StreamEndpoint {}
impl AsyncSocket for DgramEndpoint {}

/// An endpoint driven by tokio: see the [module docs](self).
#[derive(Debug)]
pub struct AsyncEndpoint<T: AsyncSocket> {
    /// A duplicate of the endpoint's socket, registered with tokio.
    io: AsyncFd<OwnedFd>,
    /// The peer's pidfd, where only it can tell that the peer is gone (datagram sockets).
    peer: Option<AsyncFd<OwnedFd>>,
    ep: Mutex<T>,
}

/// What a wait for readiness ended with.
enum Woke<'a> {
    Ready(AsyncFdReadyGuard<'a, OwnedFd>),
    PeerExited,
}

async fn ready<'a>(
    io: &'a AsyncFd<OwnedFd>,
    peer: &Option<AsyncFd<OwnedFd>>,
    write: bool,
) -> io::Result<Woke<'a>> {
    poll_fn(|cx| {
        if let Some(p) = peer {
            // A pidfd stays readable once its process has exited: never cleared.
            if let Poll::Ready(r) = p.poll_read_ready(cx) {
                // Dropped without clearing: it stays ready.
                let _kept = r?;
                return Poll::Ready(Ok(Woke::PeerExited));
            }
        }
        let r = if write {
            io.poll_write_ready(cx)
        } else {
            io.poll_read_ready(cx)
        };
        r.map(|r| r.map(Woke::Ready))
    })
    .await
}

impl<T: AsyncSocket> AsyncEndpoint<T> {
    /// Registers `ep` with the current tokio runtime.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a pipe or FIFO endpoint (two descriptors; only sockets are
    /// supported), an error outside a tokio runtime, or the error of duplicating or
    /// registering the descriptor.
    pub fn new(ep: T) -> io::Result<Self> {
        if let RawHandle::Fds {
            read: Some(r),
            write: Some(w),
        } = ep.raw()
        {
            if r.as_raw_fd() != w.as_raw_fd() {
                return Err(invalid(format!(
                    "{} has separate read and write descriptors: AsyncEndpoint drives sockets",
                    ep.mechanism()
                )));
            }
        }
        let io = async_fd::register(
            sysfd::dup(ep.as_fd())?,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let peer = match ep.peer() {
            Some(PeerInfo { pid, watched: true }) => match proc::pidfd_open(pid) {
                Ok(p) => Some(async_fd::register(p, Interest::READABLE)?),
                // Gone already: the endpoint's own check reports it on the first call.
                Err(_) => None,
            },
            _ => None,
        };
        Ok(AsyncEndpoint {
            io,
            peer,
            ep: Mutex::new(ep),
        })
    }

    fn lock(&self) -> MutexGuard<'_, T> {
        self.ep.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends one message, waiting (asynchronously) for room, and for the whole of a stream
    /// message to be written.
    ///
    /// # Errors
    ///
    /// `TooLarge` (nothing sent), `PeerGone`, or `Io`.
    pub async fn send(&self, msg: &[u8]) -> Result<(), SendError> {
        self.flush().await?;
        loop {
            let mut g = match ready(&self.io, &self.peer, true).await? {
                Woke::Ready(g) => g,
                Woke::PeerExited => return Err(SendError::PeerGone),
            };
            match self.lock().try_send(msg) {
                Err(SendError::Full) => g.clear_ready(),
                Ok(()) => break,
                Err(e) => return Err(e),
            }
        }
        self.flush().await
    }

    /// Writes out the rest of a stream message that did not fit at once (a no-op for
    /// datagram sockets); [`AsyncEndpoint::send`] does it itself.
    ///
    /// # Errors
    ///
    /// `PeerGone`, or `Io`.
    pub async fn flush(&self) -> Result<(), SendError> {
        loop {
            match self.lock().try_flush() {
                Err(SendError::Full) => {}
                r => return r,
            }
            let mut g = match ready(&self.io, &self.peer, true).await? {
                Woke::Ready(g) => g,
                Woke::PeerExited => return Err(SendError::PeerGone),
            };
            match self.lock().try_flush() {
                Err(SendError::Full) => g.clear_ready(),
                r => return r,
            }
        }
    }

    /// Receives one message into `buf`, waiting (asynchronously) for it.
    ///
    /// # Errors
    ///
    /// `PeerGone` once the peer is gone and its messages are read, `BufferTooSmall` (the
    /// message stays), or `Io`.
    pub async fn recv(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        loop {
            let woke = ready(&self.io, &self.peer, false).await?;
            // Readiness is cleared only when the endpoint saw the socket empty (EAGAIN):
            // messages one read brought wait inside the endpoint, unseen by the reactor.
            match (self.lock().try_recv(buf), woke) {
                (Err(RecvError::Empty), Woke::Ready(mut g)) => g.clear_ready(),
                (Err(RecvError::Empty), Woke::PeerExited) => return Err(RecvError::PeerGone),
                (r, _) => return r,
            }
        }
    }

    /// Largest message this endpoint sends or accepts.
    pub fn max_msg_size(&self) -> usize {
        self.lock().max_msg_size()
    }

    /// The process at the other end, where known.
    pub fn peer(&self) -> Option<PeerInfo> {
        self.lock().peer()
    }

    /// The endpoint, for the blocking API (which works as before; the endpoint switches its
    /// socket back to non-blocking on the next async call).
    pub fn get_mut(&mut self) -> &mut T {
        self.ep.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    /// Deregisters from tokio and gives the endpoint back.
    pub fn into_inner(self) -> T {
        let AsyncEndpoint { io, peer, ep } = self;
        drop((io, peer));
        ep.into_inner().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A [`UnixListener`] whose accept waits asynchronously.
#[derive(Debug)]
pub struct AsyncUnixListener {
    io: AsyncFd<OwnedFd>,
    listener: UnixListener,
}

impl AsyncUnixListener {
    /// Registers `listener` with the current tokio runtime.
    ///
    /// # Errors
    ///
    /// An error outside a tokio runtime, or the error of duplicating or registering its
    /// descriptor.
    pub fn new(listener: UnixListener) -> io::Result<Self> {
        let io = async_fd::register(sysfd::dup(listener.as_fd())?, Interest::READABLE)?;
        Ok(AsyncUnixListener { io, listener })
    }

    /// The listener (its policy, its count of refused peers).
    pub fn get_ref(&self) -> &UnixListener {
        &self.listener
    }

    /// Accepts the next connection and applies the policy: the connected socket and its
    /// peer.
    ///
    /// # Errors
    ///
    /// `PermissionDenied` when the policy refused a peer (closed unread and counted; call
    /// again to go on), or the OS error.
    pub async fn accept_raw(&self) -> io::Result<(OwnedFd, Credentials)> {
        loop {
            let mut g = self.io.readable().await?;
            match self.listener.try_accept_raw() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => g.clear_ready(),
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                r => return r,
            }
        }
    }

    /// Accepts the next peer of a stream listener as an [`AsyncEndpoint`].
    ///
    /// # Errors
    ///
    /// `InvalidInput` on a seqpacket listener; as [`AsyncUnixListener::accept_raw`].
    pub async fn accept_stream(&self) -> io::Result<AsyncEndpoint<StreamEndpoint>> {
        if self.listener.mechanism() != crate::Mechanism::Uds {
            return Err(invalid("a seqpacket listener: use accept_seqpacket"));
        }
        let (fd, cred) = self.accept_raw().await?;
        AsyncEndpoint::new(self.listener.stream_endpoint(fd, cred)?)
    }

    /// Accepts the next peer of a seqpacket listener as an [`AsyncEndpoint`].
    ///
    /// # Errors
    ///
    /// `InvalidInput` on a stream listener; as [`AsyncUnixListener::accept_raw`].
    pub async fn accept_seqpacket(&self) -> io::Result<AsyncEndpoint<DgramEndpoint>> {
        if self.listener.mechanism() != crate::Mechanism::UdsSeqpacket {
            return Err(invalid("a stream listener: use accept_stream"));
        }
        let (fd, cred) = self.accept_raw().await?;
        AsyncEndpoint::new(self.listener.seqpacket_endpoint(fd, cred)?)
    }
}
