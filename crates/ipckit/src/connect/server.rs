//! [`Server`]: the side of a pair that creates the kernel objects for a mechanism, names them
//! in an address for the peer, and accepts the peer (checking its uid and hello).

use super::open::{
    bind_unix, deadline, default_path, fifo_read, fifo_write, grow_ip_buffers, ip_addr, max_for,
    timed_out, unix_listener, wait_readable, with_ext,
};
use super::{Options, UDP_MAX_V4, UDP_MAX_V6};
use crate::dgram::DgramEndpoint;
use crate::error::invalid;
use crate::fifo;
use crate::mq::posix::{MqOptions, PosixMq};
use crate::mq::sysv::{self as sysvmod, SysvMq, SysvOptions};
use crate::peer::{self, Hello, HELLO_LEN};
use crate::pipe::PipePair;
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

/// The server side of a pair, between creating the objects and the peer's arrival.
#[derive(Debug)]
pub struct Server {
    mech: Mechanism,
    address: String,
    opts: Options,
    inner: Inner,
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

impl Server {
    /// Creates the server side at a fresh address of the mechanism (a new `ipckit-` name in
    /// the temp dir or queue namespace; loopback with a kernel-chosen port for TCP and UDP).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for eventfd (not a message transport), or the OS error.
    pub fn create(mech: Mechanism, opts: &Options) -> io::Result<Server> {
        let addr = match mech {
            Mechanism::Pipe => String::new(),
            Mechanism::Fifo | Mechanism::Uds | Mechanism::UdsDgram | Mechanism::UdsSeqpacket => {
                default_path(mech).to_string_lossy().into_owned()
            }
            Mechanism::Tcp | Mechanism::Udp => "127.0.0.1:0".to_owned(),
            Mechanism::MqPosix => format!("/{}", registry::unique_name("mq")),
            Mechanism::MqSysv => String::new(),
            Mechanism::Shm => format!("/{}", registry::unique_name("shm")),
            Mechanism::Eventfd => {
                return Err(invalid("eventfd carries no messages: use ipckit::eventfd"))
            }
        };
        Self::create_at(mech, &addr, opts)
    }

    /// Creates the server side at a given address (ignored for pipes and System V pairs,
    /// which choose their own).
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if the address is taken, `InvalidInput` for an address of the wrong
    /// form, or the OS error.
    pub fn create_at(mech: Mechanism, addr: &str, opts: &Options) -> io::Result<Server> {
        let max = max_for(mech, opts);
        let (inner, address) = match mech {
            Mechanism::Pipe => {
                let p = PipePair::new(opts.wait, Some(max))?;
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
                let g1 = fifo::create(&c2s, opts.mode)?;
                let g2 = fifo::create(&s2c, opts.mode)?;
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
                let mo = MqOptions {
                    msg_size: opts.max_msg_size,
                    mode: opts.mode,
                    wait: opts.wait,
                    max_msgs: None,
                };
                (
                    Inner::MqPosix(PosixMq::create_pair(addr, &mo)?),
                    addr.to_owned(),
                )
            }
            Mechanism::MqSysv => {
                let (q, key) = SysvMq::create_pair(&SysvOptions {
                    mode: opts.mode,
                    wait: opts.wait,
                })?;
                (Inner::MqSysv(q), sysvmod::key_name(key))
            }
            Mechanism::Shm => {
                let l = ShmListener::create(addr, &opts.pair())?;
                let a = l.name().to_owned();
                (Inner::Shm(l), a)
            }
            Mechanism::Eventfd => {
                return Err(invalid("eventfd carries no messages: use ipckit::eventfd"))
            }
        };
        Ok(Server {
            mech,
            address,
            opts: *opts,
            inner,
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
        if let Inner::Pipe(p) = &self.inner {
            p.configure_child(cmd);
        }
    }

    /// Waits (at most the options' timeout) for the peer and returns the connected endpoint.
    ///
    /// # Errors
    ///
    /// `TimedOut` when no peer came, `PermissionDenied` for a peer of another uid, or the OS
    /// error.
    pub fn accept(self) -> io::Result<Box<dyn Transport>> {
        let Server {
            mech, opts, inner, ..
        } = self;
        let max = max_for(mech, &opts);
        Ok(match inner {
            Inner::Pipe(p) => Box::new(p.into_parent()?),
            Inner::Fifo {
                base,
                guards,
                c2s_r,
            } => {
                // The client opens c2s for writing first, then s2c for reading; once our
                // write open of s2c succeeds, both directions are connected.
                let w = fifo_write(&with_ext(&base, "s2c"), &opts).map_err(|_| {
                    timed_out(
                        &format!("no peer opened the FIFO pair {}", base.display()),
                        &opts,
                    )
                })?;
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
            Inner::UnixListener(l) => {
                let (c, cred) = l
                    .accept_raw_timeout(opts.timeout)
                    .map_err(|e| match e.kind() {
                        io::ErrorKind::TimedOut => timed_out("no peer connected", &opts),
                        _ => e,
                    })?;
                // The socket file lives as long as the endpoint, as a FIFO pair's files do.
                if mech == Mechanism::Uds {
                    let ep = l.stream_endpoint(c, cred)?;
                    Box::new(ep.with_guards(l.into_guard().into_iter().collect()))
                } else {
                    let ep = l.seqpacket_endpoint(c, cred)?;
                    Box::new(ep.with_guards(l.into_guard().into_iter().collect()))
                }
            }
            Inner::UnixDgram { fd, guard } => {
                let max = socket::grow_dgram_buffers(fd.as_fd(), max)?;
                wait_readable(&fd, &opts, "no peer said hello")?;
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
            Inner::Tcp(l) => {
                let fd: OwnedFd = l.into();
                wait_readable(&fd, &opts, "no peer connected")?;
                let l: TcpListener = fd.into();
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
            Inner::Udp(s) => {
                grow_ip_buffers(&s);
                let fd: OwnedFd = s.into();
                wait_readable(&fd, &opts, "no peer said hello")?;
                let s: UdpSocket = fd.into();
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
            Inner::MqPosix(q) => Box::new(q.accept(deadline(&opts))?),
            Inner::MqSysv(q) => Box::new(q.accept(deadline(&opts))?),
            Inner::Shm(l) => Box::new(l.accept()?),
        })
    }
}
