//! One-way channels, as `ipckit recv` and `ipckit send` use them:
//! [`ChannelBuilder::create_receiver`](super::ChannelBuilder::create_receiver) makes or opens
//! the receiving object (an endpoint, or a [`Listener`] that accepts senders one after
//! another) and [`ChannelBuilder::open_sender`](super::ChannelBuilder::open_sender) the
//! sending side; no hello, any program may send.

use super::client::connect;
use super::open::{
    bind_unix, connect_unix, fifo_read, fifo_write, grow_ip_buffers, ip_addr, max_for, policy,
    udp_connected, unix_listener,
};
use super::{Options, UDP_MAX_V4, UDP_MAX_V6};
use crate::dgram::DgramEndpoint;
use crate::error::invalid;
use crate::fifo;
use crate::mq::posix::PosixMqBuilder;
use crate::mq::sysv::{self as sysvmod, SysvMqBuilder};
use crate::shm::ShmListener;
use crate::stream::StreamEndpoint;
use crate::sys::{fd as sysfd, socket};
use crate::transport::{Mechanism, Transport};
use crate::unix::UnixListener;
use std::io;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// A listening stream or seqpacket socket (Unix or TCP) that accepts peers one after
/// another; used by `ipckit recv`.
#[derive(Debug)]
pub struct Listener {
    mech: Mechanism,
    fd: Option<OwnedFd>,
    unix: Option<Box<UnixListener>>,
    shm: Option<Box<std::sync::Mutex<ShmListener>>>,
    opts: Options,
}

impl Listener {
    /// The listening socket, to wait for peers with others' descriptors (`epoll`, `poll`):
    /// readable when a peer is waiting to be accepted. `None` for `shm`, whose peers
    /// arrive through its own handshake ([`Listener::accept`] only).
    pub fn pollable(&self) -> Option<BorrowedFd<'_>> {
        if self.shm.is_some() {
            return None;
        }
        if let Some(l) = &self.unix {
            return Some(l.as_fd());
        }
        self.fd.as_ref().map(AsFd::as_fd)
    }

    /// Accepts the next peer, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// `PermissionDenied` for a Unix peer of another uid, or the OS error.
    pub fn accept(&self) -> io::Result<Box<dyn Transport>> {
        self.accept_within(None)
    }

    /// Accepts a peer already waiting, without waiting for one.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when no peer is waiting; as [`Listener::accept`].
    pub fn try_accept(&self) -> io::Result<Box<dyn Transport>> {
        self.accept_within(Some(Duration::ZERO)).map_err(|e| {
            if e.kind() == io::ErrorKind::TimedOut {
                io::Error::new(io::ErrorKind::WouldBlock, "no peer is waiting")
            } else {
                e
            }
        })
    }

    /// Accepts the next peer, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// `TimedOut`; as [`Listener::accept`].
    pub fn accept_timeout(&self, timeout: Duration) -> io::Result<Box<dyn Transport>> {
        self.accept_within(Some(timeout))
    }

    /// `timeout`: `None` for no limit.
    fn accept_within(&self, timeout: Option<Duration>) -> io::Result<Box<dyn Transport>> {
        if let Some(l) = &self.shm {
            let mut l = l.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            return Ok(Box::new(match timeout {
                Some(t) => l.accept_timeout(t)?,
                None => l.accept()?,
            }));
        }
        if let Some(l) = &self.unix {
            return match timeout {
                None => l.accept(),
                Some(t) => l.accept_timeout(t),
            };
        }
        let Some(fd) = &self.fd else {
            return Err(invalid("listener without a socket"));
        };
        if let sysfd::Ready::TimedOut = sysfd::poll(&[(fd.as_fd(), libc::POLLIN)], timeout)? {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no peer connected in time",
            ));
        }
        // Only TCP is left here: Unix listeners are `self.unix`.
        let c = socket::accept(fd.as_fd())?;
        socket::set_int_opt(c.as_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
        Ok(Box::new(StreamEndpoint::new(
            self.mech,
            Some(c),
            None,
            true,
            self.opts.wait,
            max_for(self.mech, &self.opts),
        )?))
    }
}

/// What [`ChannelBuilder::create_receiver`](super::ChannelBuilder::create_receiver) made.
#[derive(Debug)]
pub enum Receiver {
    /// Messages arrive on this endpoint directly (FIFO, datagram sockets, queues).
    Endpoint(Box<dyn Transport>),
    /// Peers connect here, each with its own stream (Unix stream/seqpacket, TCP).
    Listener(Listener),
}

/// The receiving side of a one-way channel at `addr`; see
/// [`ChannelBuilder::create_receiver`](super::ChannelBuilder::create_receiver).
pub(super) fn open_receiver(mech: Mechanism, addr: &str, opts: &Options) -> io::Result<Receiver> {
    let max = max_for(mech, opts);
    Ok(match mech {
        Mechanism::Fifo => {
            let path = Path::new(addr);
            let guard = match fifo::FifoBuilder::new(path).mode(opts.mode).create() {
                Ok(g) => Some(g),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => None,
                Err(e) => return Err(e),
            };
            let r = fifo_read(path, opts)?;
            Receiver::Endpoint(Box::new(
                StreamEndpoint::new(mech, Some(r), None, false, opts.wait, max)?
                    .with_guards(guard.into_iter().collect())
                    .fifo_sessions(),
            ))
        }
        Mechanism::Uds | Mechanism::UdsSeqpacket => Receiver::Listener(Listener {
            mech,
            fd: None,
            unix: Some(Box::new(unix_listener(mech, addr, opts)?)),
            shm: None,
            opts: *opts,
        }),
        Mechanism::Tcp => {
            let l = TcpListener::bind(ip_addr(addr)?)?;
            Receiver::Listener(Listener {
                mech,
                fd: Some(l.into()),
                unix: None,
                shm: None,
                opts: *opts,
            })
        }
        Mechanism::Shm => Receiver::Listener(Listener {
            mech,
            fd: None,
            unix: None,
            shm: Some(Box::new(std::sync::Mutex::new(
                opts.pair(addr).keep_listening(true).create()?,
            ))),
            opts: *opts,
        }),
        Mechanism::UdsDgram => {
            let (fd, guard) = bind_unix(libc::SOCK_DGRAM, addr, opts.mode)?;
            let max = socket::grow_dgram_buffers(fd.as_fd(), max)?;
            // Every datagram's sender is checked (`crate::dgram`): an abstract address has
            // no file mode to keep other users out.
            Receiver::Endpoint(Box::new(
                DgramEndpoint::new(mech, fd, opts.wait, max)?
                    .with_guards(guard.into_iter().collect())
                    .with_policy(policy(opts))?,
            ))
        }
        Mechanism::Udp => {
            let a = ip_addr(addr)?;
            let s = UdpSocket::bind(a)?;
            grow_ip_buffers(&s);
            let max = max.min(if a.is_ipv4() { UDP_MAX_V4 } else { UDP_MAX_V6 });
            Receiver::Endpoint(Box::new(DgramEndpoint::new(
                mech,
                s.into(),
                opts.wait,
                max,
            )?))
        }
        Mechanism::MqPosix => {
            let mut b = PosixMqBuilder::new(addr)
                .mode(opts.mode)
                .wait(opts.wait)
                .allow_other_users(opts.allow_other_users);
            if let Some(m) = opts.max_msg_size {
                b = b.max_msg_size(m);
            }
            let q = match b.open() {
                Ok(q) => q,
                Err(e) if e.kind() == io::ErrorKind::NotFound => b.create()?,
                Err(e) => return Err(e),
            };
            Receiver::Endpoint(Box::new(q))
        }
        Mechanism::MqSysv => {
            let key = sysvmod::parse_key(addr)?;
            let b = SysvMqBuilder::new(key)
                .mode(opts.mode)
                .wait(opts.wait)
                .allow_other_users(opts.allow_other_users);
            let q = match b.open() {
                Ok(q) => q,
                Err(e) if e.kind() == io::ErrorKind::NotFound => b.create()?,
                Err(e) => return Err(e),
            };
            let mut q = q;
            // So one-way senders know whom to watch (`msg_lrpid`).
            q.announce_receiver()?;
            Receiver::Endpoint(Box::new(q))
        }
        Mechanism::Pipe | Mechanism::Eventfd => {
            return Err(invalid(format!("{mech} has no address to receive at")))
        }
    })
}

/// The sending side of a one-way channel to an existing receiver at `addr`; see
/// [`ChannelBuilder::open_sender`](super::ChannelBuilder::open_sender).
pub(super) fn open_sender(
    mech: Mechanism,
    addr: &str,
    opts: &Options,
) -> io::Result<Box<dyn Transport>> {
    let max = max_for(mech, opts);
    Ok(match mech {
        Mechanism::Fifo => {
            let path = Path::new(addr);
            // Not `exists()`: that says "no" for a FIFO we may not reach as well.
            if let Err(e) = std::fs::metadata(path) {
                let why = match e.kind() {
                    io::ErrorKind::NotFound => format!("no FIFO at {addr}"),
                    _ => format!("cannot reach the FIFO at {addr}: {e}"),
                };
                return Err(io::Error::new(e.kind(), why));
            }
            let w = fifo_write(path, opts)?;
            Box::new(StreamEndpoint::new(
                mech,
                None,
                Some(w),
                false,
                opts.wait,
                max,
            )?)
        }
        Mechanism::Uds | Mechanism::UdsSeqpacket | Mechanism::Tcp | Mechanism::Shm => {
            connect(mech, addr, opts)?
        }
        Mechanism::UdsDgram => {
            let fd = connect_unix(libc::SOCK_DGRAM, addr)?;
            let max = socket::grow_dgram_buffers(fd.as_fd(), max)?;
            // The receiver proves it is an ipckit receiver of an accepted uid first.
            let peer = crate::dgram::verify_receiver(&fd, &policy(opts), opts.timeout, addr)?;
            Box::new(DgramEndpoint::new(mech, fd, opts.wait, max)?.with_peer(Some(peer), None))
        }
        Mechanism::Udp => {
            let (s, a) = udp_connected(addr)?;
            let max = max.min(if a.is_ipv4() { UDP_MAX_V4 } else { UDP_MAX_V6 });
            Box::new(DgramEndpoint::new(mech, s.into(), opts.wait, max)?)
        }
        Mechanism::MqPosix => {
            let q = PosixMqBuilder::new(addr)
                .wait(opts.wait)
                .allow_other_users(opts.allow_other_users)
                .open_sender()?;
            Box::new(q)
        }
        Mechanism::MqSysv => {
            let q = SysvMqBuilder::new(sysvmod::parse_key(addr)?)
                .wait(opts.wait)
                .allow_other_users(opts.allow_other_users)
                .open_sender()?;
            Box::new(q)
        }
        Mechanism::Pipe | Mechanism::Eventfd => {
            return Err(invalid(format!("{mech} has no address to send to")))
        }
    })
}
