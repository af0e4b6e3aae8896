//! [`PairListener`]: the side of a pair that creates the kernel objects for a mechanism, names
//! them in an address for the peer, and accepts the peer (checking its uid and hello).

use super::open::{
    bind_unix, deadline, fifo_read, fifo_write, grow_ip_buffers, ip_addr, max_for, timed_out,
    unix_listener, wait_readable, with_ext,
};
use super::{Options, UDP_MAX_V4, UDP_MAX_V6};
use crate::dgram::DgramEndpoint;
use crate::error::invalid;
use crate::fifo;
use crate::mq::posix::{PosixMq, PosixMqBuilder};
use crate::mq::sysv::{self as sysvmod, SysvMq};
use crate::peer::{self, Hello, HELLO_LEN};
use crate::pipe::{PipeBuilder, PipePair};
use crate::registry::{self, ObjectGuard};
use crate::shm::ShmListener;
use crate::stream::StreamEndpoint;
use crate::sys::socket;
use crate::transport::{Mechanism, Transport};
use crate::unix::UnixListener;
use std::io;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

/// The server side of a pair, between creating the objects
/// ([`ChannelBuilder::create`](super::ChannelBuilder::create)) and the peer's arrival: it
/// accepts one peer, then is dropped.
///
/// An accept that times out (or, for [`try_accept`](PairListener::try_accept), finds no
/// peer yet) leaves the listener ready for another try, whatever the mechanism.
#[derive(Debug)]
pub struct PairListener {
    mech: Mechanism,
    address: String,
    opts: Options,
    inner: Option<Inner>,
}

#[derive(Debug)]
enum Inner {
    Pipe(PipePair),
    Fifo {
        base: PathBuf,
        guards: Vec<ObjectGuard>,
        c2s_r: OwnedFd,
    },
    UnixListener(UnixListener),
    UnixDgram {
        fd: OwnedFd,
        guard: Option<ObjectGuard>,
    },
    Tcp(TcpListener),
    Udp(UdpSocket),
    MqPosix(PosixMq),
    MqSysv(SysvMq),
    Shm(ShmListener),
}

impl PairListener {
    /// Creates the server side at a given address (ignored for pipes and System V pairs,
    /// which choose their own); see
    /// [`ChannelBuilder::create_at`](super::ChannelBuilder::create_at).
    pub(super) fn create_at(
        mech: Mechanism,
        addr: &str,
        opts: &Options,
    ) -> io::Result<PairListener> {
        let max = max_for(mech, opts);
        let (inner, address) = match mech {
            Mechanism::Pipe => {
                let p = PipeBuilder::new()
                    .wait(opts.wait)
                    .max_msg_size(max)
                    .create_pair()?;
                if let Some(c) = opts.pipe_capacity {
                    p.set_capacity(c)?;
                }
                let a = p.address();
                (Inner::Pipe(p), a)
            }
            Mechanism::Fifo => {
                let base = PathBuf::from(addr);
                let c2s = with_ext(&base, "c2s");
                let s2c = with_ext(&base, "s2c");
                let g1 = fifo::FifoBuilder::new(&c2s).mode(opts.mode).create()?;
                let g2 = fifo::FifoBuilder::new(&s2c).mode(opts.mode).create()?;
                let c2s_r = fifo_read(&c2s, opts)?;
                crate::stream::fit_pipe(c2s_r.as_fd(), max);
                (
                    Inner::Fifo {
                        base,
                        guards: vec![g1, g2],
                        c2s_r,
                    },
                    addr.to_owned(),
                )
            }
            Mechanism::Uds | Mechanism::UdsSeqpacket => (
                Inner::UnixListener(unix_listener(mech, addr, opts)?),
                addr.to_owned(),
            ),
            Mechanism::UdsDgram => {
                let (fd, guard) = bind_unix(libc::SOCK_DGRAM, addr, opts.mode)?;
                // The hello's sender credentials are checked in accept.
                socket::set_int_opt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED, 1)?;
                (Inner::UnixDgram { fd, guard }, addr.to_owned())
            }
            Mechanism::Tcp => {
                let l = TcpListener::bind(ip_addr(addr)?)?;
                l.set_nonblocking(true)?;
                let a = l.local_addr()?.to_string();
                (Inner::Tcp(l), a)
            }
            Mechanism::Udp => {
                let s = UdpSocket::bind(ip_addr(addr)?)?;
                let a = s.local_addr()?.to_string();
                (Inner::Udp(s), a)
            }
            Mechanism::MqPosix => {
                let mut mo = PosixMqBuilder::new(addr).mode(opts.mode).wait(opts.wait);
                if let Some(m) = opts.max_msg_size {
                    mo = mo.max_msg_size(m);
                }
                (Inner::MqPosix(mo.create_pair()?), addr.to_owned())
            }
            Mechanism::MqSysv => {
                let (q, key) = SysvMq::create_pair(opts.mode, opts.wait)?;
                (Inner::MqSysv(q), sysvmod::key_name(key))
            }
            Mechanism::Shm => {
                let l = opts.pair(addr).create()?;
                let a = l.name().to_owned();
                (Inner::Shm(l), a)
            }
            Mechanism::Eventfd => {
                return Err(invalid("eventfd carries no messages: use ipckit::eventfd"))
            }
        };
        Ok(PairListener {
            mech,
            address,
            opts: *opts,
            inner: Some(inner),
        })
    }

    /// The address to give the peer.
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// Prepares `cmd` to be the peer: for pipes, its child inherits the child's ends.
    /// Harmless for other mechanisms.
    pub fn configure_child(&self, cmd: &mut std::process::Command) {
        if let Some(Inner::Pipe(p)) = &self.inner {
            p.configure_child(cmd);
        }
    }

    /// Waits for the peer as long as it takes, and returns the connected endpoint. Use
    /// [`accept_timeout`](PairListener::accept_timeout) when the peer may never come (a
    /// child that failed to start).
    ///
    /// # Errors
    ///
    /// `PermissionDenied` for a peer of another uid, `InvalidInput` once the listener has
    /// accepted its peer, or the OS error.
    pub fn accept(&mut self) -> io::Result<Box<dyn Transport>> {
        self.accept_within(Duration::MAX)
    }

    /// Takes the peer if it has arrived, without waiting.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when no peer has arrived yet; as [`PairListener::accept`].
    pub fn try_accept(&mut self) -> io::Result<Box<dyn Transport>> {
        self.accept_within(Duration::ZERO).map_err(|e| {
            if e.kind() == io::ErrorKind::TimedOut {
                io::Error::new(io::ErrorKind::WouldBlock, "no peer has arrived yet")
            } else {
                e
            }
        })
    }

    /// Waits for the peer at most `timeout`. A peer that has not come leaves the listener
    /// as it was, for another try.
    ///
    /// # Errors
    ///
    /// `TimedOut` when no peer came; as [`PairListener::accept`].
    pub fn accept_timeout(&mut self, timeout: Duration) -> io::Result<Box<dyn Transport>> {
        self.accept_within(timeout)
    }

    fn accept_within(&mut self, timeout: Duration) -> io::Result<Box<dyn Transport>> {
        let mech = self.mech;
        let opts = Options {
            timeout,
            ..self.opts
        };
        let max = max_for(mech, &opts);
        // First wait for the peer without giving anything up, so that one that has not come
        // yet leaves the listener as it was. Pipes never wait; queues and shared memory wait
        // inside their own accept, which takes the object.
        let arrived = match &mut self.inner {
            None => {
                return Err(invalid(
                    "this pair listener has already accepted (or failed to accept) its peer",
                ))
            }
            Some(Inner::Fifo { base, .. }) => {
                // The client opens c2s for writing first, then s2c for reading; once our
                // write open of s2c succeeds, both directions are connected.
                let w = fifo_write(&with_ext(base, "s2c"), &opts).map_err(|_| {
                    timed_out(
                        &format!("no peer opened the FIFO pair {}", base.display()),
                        &opts,
                    )
                })?;
                Arrived::Writer(w)
            }
            Some(Inner::UnixListener(l)) => Arrived::Conn(
                l.accept_raw_timeout(opts.timeout)
                    .map_err(|e| match e.kind() {
                        io::ErrorKind::TimedOut => timed_out("no peer connected", &opts),
                        _ => e,
                    })?,
            ),
            Some(Inner::UnixDgram { fd, .. }) => {
                let max = socket::grow_dgram_buffers(fd.as_fd(), max)?;
                wait_readable(fd, &opts, "no peer said hello")?;
                Arrived::Max(max)
            }
            Some(Inner::Tcp(l)) => {
                wait_readable(l, &opts, "no peer connected")?;
                Arrived::Now
            }
            Some(Inner::Udp(s)) => {
                grow_ip_buffers(s);
                wait_readable(s, &opts, "no peer said hello")?;
                Arrived::Now
            }
            Some(Inner::MqPosix(q)) => {
                q.accept(deadline(&opts))?;
                Arrived::Now
            }
            Some(Inner::MqSysv(q)) => {
                q.accept(deadline(&opts))?;
                Arrived::Now
            }
            Some(Inner::Shm(l)) => Arrived::Shm(Box::new(l.accept_timeout(opts.timeout)?)),
            Some(_) => Arrived::Now,
        };
        let Some(inner) = self.inner.take() else {
            unreachable!("checked above")
        };
        Ok(match (inner, arrived) {
            (Inner::Pipe(p), _) => Box::new(p.into_parent()?),
            (Inner::Fifo { guards, c2s_r, .. }, Arrived::Writer(w)) => {
                crate::stream::fit_pipe(w.as_fd(), max);
                Box::new(
                    StreamEndpoint::new(
                        Mechanism::Fifo,
                        Some(c2s_r),
                        Some(w),
                        false,
                        opts.wait,
                        max,
                    )?
                    .with_guards(guards),
                )
            }
            (Inner::UnixListener(l), Arrived::Conn((c, cred))) => {
                // The socket file lives as long as the endpoint, as a FIFO pair's files do.
                if mech == Mechanism::Uds {
                    let ep = l.stream_endpoint(c, cred)?;
                    Box::new(ep.with_guards(l.into_guard().into_iter().collect()))
                } else {
                    let ep = l.seqpacket_endpoint(c, cred)?;
                    Box::new(ep.with_guards(l.into_guard().into_iter().collect()))
                }
            }
            (Inner::UnixDgram { fd, guard }, Arrived::Max(max)) => {
                let mut b = [0u8; HELLO_LEN + 1];
                let (n, from, cred) = socket::recv_from_unix_cred(fd.as_fd(), &mut b)?;
                let hello = Hello::decode(&b[..n]).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "first datagram was not an ipckit hello",
                    )
                })?;
                // The kernel vouches for the sender (SO_PASSCRED): same checks as SO_PEERCRED
                // on a connection, and the hello must name the process that sent it.
                let cred = cred.ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "hello carried no credentials",
                    )
                })?;
                if !opts.allow_other_users && cred.uid != registry::euid() {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "refused a peer of uid {} (pid {}); only our own uid is accepted",
                            cred.uid, cred.pid
                        ),
                    ));
                }
                if hello.pidns == peer::pid_namespace() && hello.pid != cred.pid as u32 {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "the hello names another process than the one that sent it",
                    ));
                }
                socket::set_int_opt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_PASSCRED, 0)?;
                socket::connect_raw(fd.as_fd(), &from)?;
                socket::send(fd.as_fd(), &Hello::mine().encode(), 0)?;
                let (info, pidfd) = peer::watch(&hello);
                Box::new(
                    DgramEndpoint::new(mech, fd, opts.wait, max)?
                        .with_peer(info, pidfd)
                        .with_guards(guard.into_iter().collect()),
                )
            }
            (Inner::Tcp(l), _) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                Box::new(StreamEndpoint::new(
                    mech,
                    Some(s.into()),
                    None,
                    true,
                    opts.wait,
                    max,
                )?)
            }
            (Inner::Udp(s), _) => {
                let mut b = [0u8; HELLO_LEN + 1];
                let (n, from) = s.recv_from(&mut b)?;
                let hello = Hello::decode(&b[..n]).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        "first datagram was not an ipckit hello",
                    )
                })?;
                s.connect(from)?;
                s.send(&Hello::mine().encode())?;
                let (info, pidfd) = peer::watch(&hello);
                let max = max.min(if from.is_ipv4() {
                    UDP_MAX_V4
                } else {
                    UDP_MAX_V6
                });
                Box::new(
                    DgramEndpoint::new(mech, s.into(), opts.wait, max)?
                        .with_peer(info, pidfd)
                        .filter_hello(true),
                )
            }
            (Inner::MqPosix(q), _) => Box::new(q),
            (Inner::MqSysv(q), _) => Box::new(q),
            (Inner::Shm(_), Arrived::Shm(ep)) => ep,
            (_, _) => unreachable!("each kind of listener arrives its own way"),
        })
    }
}

/// What waiting for the peer gave, before the listener's objects are taken.
enum Arrived {
    /// The shared-memory pair's endpoint, attached.
    Shm(Box<crate::shm::ShmEndpoint>),
    /// Nothing to carry over (or nothing waited for).
    Now,
    /// A FIFO pair's write end, open: the peer is there.
    Writer(OwnedFd),
    /// A Unix listener's accepted connection.
    Conn((OwnedFd, crate::unix::Credentials)),
    /// A Unix datagram socket's message size, its buffers grown.
    Max(usize),
}
