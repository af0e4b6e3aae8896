//! Readiness with `epoll(7)`: one descriptor watches many, so one thread can serve every pipe,
//! FIFO, socket, eventfd or signalfd it holds without blocking on any of them.
//!
//! Anything that implements [`AsFd`] can be registered: the raw pipe ends of
//! [`pipe`](crate::pipe), FIFOs, sockets, [`EventFd`](crate::eventfd::EventFd),
//! [`Signals`](crate::signal::Signals). Each registration carries a `u64` token that comes
//! back with its events.
//!
//! Level-triggered (the default) reports a descriptor as long as it is ready.
//! [`Interest::EDGE`] reports only a change, so a reader must then drain it until
//! `WouldBlock`, on a non-blocking descriptor, or it will not hear of that data again.
//!
//! # Examples
//!
//! ```
//! use ipckit::epoll::{Epoll, Events, Interest};
//! use ipckit::pipe;
//! use std::io::Write;
//! # fn main() -> std::io::Result<()> {
//! let (r, mut w) = pipe::raw_pipe()?;
//! let ep = Epoll::new()?;
//! ep.add(&r, 7, Interest::READABLE)?;
//! let mut events = Events::with_capacity(16);
//! assert_eq!(ep.try_wait(&mut events)?, 0); // nothing to read yet
//! w.write_all(b"x")?;
//! ep.wait(&mut events)?;
//! let ev = events.iter().next().unwrap();
//! assert!(ev.token() == 7 && ev.is_readable());
//! # Ok(()) }
//! ```
//!
//! # References
//!
//! `epoll(7)`, `epoll_ctl(2)`, `epoll_wait(2)`.

use crate::sys::epoll as sys;
use std::io;
use std::ops::BitOr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// What to be told about a descriptor. Combine with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest(u32);

impl Interest {
    /// Data to read, or the peer closed its end (`EPOLLIN | EPOLLRDHUP`).
    pub const READABLE: Interest = Interest((libc::EPOLLIN | libc::EPOLLRDHUP) as u32);
    /// Room to write (`EPOLLOUT`).
    pub const WRITABLE: Interest = Interest(libc::EPOLLOUT as u32);
    /// Edge-triggered (`EPOLLET`): report changes, not states.
    pub const EDGE: Interest = Interest(libc::EPOLLET as u32);
    /// Report once, then disarm until [`Epoll::modify`] re-arms (`EPOLLONESHOT`).
    pub const ONESHOT: Interest = Interest(libc::EPOLLONESHOT as u32);
    /// Wake only one of several epoll instances waiting on the same descriptor
    /// (`EPOLLEXCLUSIVE`, for a listening socket shared by workers). Only with
    /// [`Epoll::add`].
    pub const EXCLUSIVE: Interest = Interest(libc::EPOLLEXCLUSIVE as u32);
    /// Data to read only (`EPOLLIN`, without `EPOLLRDHUP`): what a listening socket needs,
    /// and the only input bit the kernel accepts with [`Interest::EXCLUSIVE`].
    pub const INPUT: Interest = Interest(libc::EPOLLIN as u32);

    /// The `epoll_event.events` bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl BitOr for Interest {
    type Output = Interest;
    fn bitor(self, rhs: Interest) -> Interest {
        Interest(self.0 | rhs.0)
    }
}

/// One readiness report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    token: u64,
    bits: u32,
}

impl Event {
    /// The token given when the descriptor was registered.
    pub fn token(&self) -> u64 {
        self.token
    }
    /// There is data to read (or, for a listening socket, a connection to accept).
    pub fn is_readable(&self) -> bool {
        self.bits & libc::EPOLLIN as u32 != 0
    }
    /// There is room to write.
    pub fn is_writable(&self) -> bool {
        self.bits & libc::EPOLLOUT as u32 != 0
    }
    /// The other side is gone: every writer of a pipe closed (`EPOLLHUP`), or a socket's
    /// peer shut down its sending side (`EPOLLRDHUP`). Data may still be buffered: read
    /// until end-of-file.
    pub fn is_hangup(&self) -> bool {
        self.bits & (libc::EPOLLHUP | libc::EPOLLRDHUP) as u32 != 0
    }
    /// An error is pending (`EPOLLERR`): a write end whose readers are all gone, or a
    /// socket error; the next call on the descriptor returns it.
    pub fn is_error(&self) -> bool {
        self.bits & libc::EPOLLERR as u32 != 0
    }
    /// The raw `epoll_event.events` bits.
    pub fn bits(&self) -> u32 {
        self.bits
    }
}

/// A buffer that [`Epoll::wait`] fills.
pub struct Events {
    buf: Vec<libc::epoll_event>,
    len: usize,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Events {
    /// Room for `n` events per wait (at least 1).
    pub fn with_capacity(n: usize) -> Events {
        Events {
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; n.max(1)],
            len: 0,
        }
    }
    /// The events of the last wait.
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.buf[..self.len].iter().map(|e| Event {
            // `epoll_event` is packed on x86-64: copy the fields out, never reference them.
            token: { e.u64 },
            bits: { e.events },
        })
    }
    /// How many events the last wait returned.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True if the last wait returned none (it timed out).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// An epoll instance (close-on-exec).
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// Creates one.
    ///
    /// # Errors
    ///
    /// The `epoll_create1` error (`EMFILE` at the descriptor limit).
    #[doc(alias = "epoll_create1")]
    pub fn new() -> io::Result<Epoll> {
        Ok(Epoll { fd: sys::create()? })
    }

    /// Starts watching `fd` for `interest`, reporting `token`.
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if `fd` is already registered; `EPERM` (as `PermissionDenied`) for a
    /// regular file, which is always ready and cannot be watched; the `epoll_ctl` error.
    #[doc(alias = "epoll_ctl")]
    pub fn add(&self, fd: impl AsFd, token: u64, interest: Interest) -> io::Result<()> {
        sys::ctl(
            self.fd.as_fd(),
            libc::EPOLL_CTL_ADD,
            fd.as_fd(),
            interest.0,
            token,
        )
    }

    /// Changes what `fd` is watched for (and re-arms an [`Interest::ONESHOT`] one).
    ///
    /// # Errors
    ///
    /// `NotFound` if `fd` is not registered; `InvalidInput` with [`Interest::EXCLUSIVE`];
    /// the `epoll_ctl` error.
    pub fn modify(&self, fd: impl AsFd, token: u64, interest: Interest) -> io::Result<()> {
        sys::ctl(
            self.fd.as_fd(),
            libc::EPOLL_CTL_MOD,
            fd.as_fd(),
            interest.0,
            token,
        )
    }

    /// Stops watching `fd`. (Closing a descriptor removes it too, once no duplicate of it
    /// is left open.)
    ///
    /// # Errors
    ///
    /// `NotFound` if `fd` is not registered; the `epoll_ctl` error.
    pub fn delete(&self, fd: impl AsFd) -> io::Result<()> {
        sys::ctl(self.fd.as_fd(), libc::EPOLL_CTL_DEL, fd.as_fd(), 0, 0)
    }

    /// Waits until at least one registered descriptor is ready, as long as it takes. Fills
    /// `events` and returns how many. A signal that interrupts the wait is absorbed and the
    /// wait goes on; to react to signals, register a [`Signals`](crate::signal::Signals).
    ///
    /// # Errors
    ///
    /// The `epoll_wait` error.
    #[doc(alias = "epoll_wait")]
    pub fn wait(&self, events: &mut Events) -> io::Result<usize> {
        self.wait_until(events, None)
    }

    /// Fills `events` with the descriptors ready now and returns how many (0 if none),
    /// without waiting.
    ///
    /// # Errors
    ///
    /// The `epoll_wait` error.
    pub fn try_wait(&self, events: &mut Events) -> io::Result<usize> {
        self.wait_timeout(events, Duration::ZERO)
    }

    /// Waits until at least one registered descriptor is ready or `timeout` passes; returns
    /// how many are ready (0 when the time is up). An interrupting signal is absorbed and the
    /// wait goes on with the time left, as in [`Epoll::wait`].
    ///
    /// # Errors
    ///
    /// The `epoll_wait` error.
    pub fn wait_timeout(&self, events: &mut Events, timeout: Duration) -> io::Result<usize> {
        self.wait_until(events, Instant::now().checked_add(timeout))
    }

    /// `deadline`: `None` for no limit.
    fn wait_until(&self, events: &mut Events, deadline: Option<Instant>) -> io::Result<usize> {
        loop {
            let ms = match deadline {
                None => -1,
                // Round up, so a sub-millisecond timeout waits rather than spins.
                Some(d) => d
                    .saturating_duration_since(Instant::now())
                    .as_micros()
                    .div_ceil(1000)
                    .min(i32::MAX as u128) as i32,
            };
            match sys::wait(self.fd.as_fd(), &mut events.buf, ms) {
                Ok(n) => {
                    events.len = n;
                    if n > 0 || ms == 0 || deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(n);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    events.len = 0;
                }
                Err(e) => {
                    events.len = 0;
                    return Err(e);
                }
            }
        }
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
