//! Making a connected pair of endpoints across two processes, for any mechanism, from a
//! string address: the server creates the kernel objects ([`Server::create`]), hands
//! [`Server::address`] to the peer (on its command line), and [`Server::accept`]s; the peer
//! calls [`connect`]. The bench and the conformance suite drive every mechanism this way.
//!
//! Addresses: a path or `@name` (abstract) for Unix sockets, `host:port` for TCP and UDP, a
//! path for FIFOs (the pair uses `PATH.c2s` and `PATH.s2c`), `/name` for POSIX queues (the
//! pair uses `/name.c2s` and `/name.s2c`), a key for System V queues (the pair uses `KEY`
//! and `KEY + 1`), `fd:R,W` for pipes.
//!
//! # Examples
//!
//! ```no_run
//! use ipckit::connect::{connect, Options, Server};
//! use ipckit::{Mechanism, Transport};
//! # fn main() -> std::io::Result<()> {
//! // Process 1
//! let server = Server::create(Mechanism::Uds, &Options::default())?;
//! let addr = server.address(); // pass to process 2
//! let mut ep = server.accept()?;
//! let mut buf = vec![0; ep.max_msg_size()];
//! let n = ep.recv(&mut buf)?;
//! // Process 2
//! let mut ep2 = connect(Mechanism::Uds, &addr, &Options::default())?;
//! ep2.send(b"hello")?;
//! # Ok(()) }
//! ```

use crate::dgram::DgramEndpoint;
use crate::error::invalid;
use crate::fifo;
use crate::mq::posix::{MqOptions, PosixMq};
use crate::mq::sysv::{self as sysvmod, SysvMq, SysvOptions};
use crate::peer::{self, Hello, HELLO_LEN};
use crate::pipe::{self, PipePair};
use crate::registry::{self, ObjectGuard};
use crate::shm::{self, PairOptions, ShmListener};
use crate::stream::{StreamEndpoint, DEFAULT_STREAM_MAX};
use crate::sys::{fd as sysfd, socket};
use crate::transport::{Mechanism, PeerInfo, Transport};
use crate::unix::{ListenerBuilder, Policy, UnixListener};
use crate::wait::{Deadline, Wait};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to make an endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Wait strategy of the endpoint.
    pub wait: Wait,
    /// Largest message; `None` takes the mechanism's default (1 MiB for streams and Unix
    /// datagrams, the system limit for queues and UDP).
    pub max_msg_size: Option<usize>,
    /// How long opening, connecting and accepting may wait for the peer.
    pub timeout: Duration,
    /// Permission bits of created objects (0600).
    pub mode: u32,
    /// Pipe capacity to set (pipes and FIFOs), within `/proc/sys/fs/pipe-max-size`.
    pub pipe_capacity: Option<usize>,
    /// Accept peers of any uid on Unix sockets (by default a peer of another uid is refused).
    pub allow_other_users: bool,
    /// Shared memory: the data area of each ring (a power of two; `None` for
    /// [`crate::shm::DEFAULT_CAPACITY`], or more if `max_msg_size` needs it).
    pub shm_capacity: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            wait: Wait::Block,
            max_msg_size: None,
            timeout: Duration::from_secs(5),
            mode: 0o600,
            pipe_capacity: None,
            allow_other_users: false,
            shm_capacity: None,
        }
    }
}

impl Options {
    /// The shared-memory pair options these options mean.
    fn pair(&self) -> PairOptions {
        PairOptions {
            wait: self.wait,
            max_msg_size: self.max_msg_size,
            capacity: self.shm_capacity,
            timeout: self.timeout,
            mode: self.mode,
            populate: true,
        }
    }
}

/// The largest UDP payload over IPv4 (65,535 - 8 - 20).
pub const UDP_MAX_V4: usize = 65_507;
/// The largest UDP payload over IPv6 (65,535 - 8).
pub const UDP_MAX_V6: usize = 65_527;

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

fn default_path(mech: Mechanism) -> PathBuf {
    std::env::temp_dir().join(registry::unique_name(mech.name()))
}

/// A Unix socket address parsed from `@name` or a path.
fn unix_addr(addr: &str) -> io::Result<socket::UnixAddr<'_>> {
    if let Some(name) = addr.strip_prefix('@') {
        if name.is_empty() {
            return Err(invalid("an abstract address needs a name after '@'"));
        }
        Ok(socket::UnixAddr::Abstract(name.as_bytes()))
    } else if addr.is_empty() || addr.contains(':') && !addr.contains('/') {
        Err(invalid(format!(
            "'{addr}' is not a Unix socket address (a path or @name)"
        )))
    } else {
        Ok(socket::UnixAddr::Path(Path::new(addr)))
    }
}

/// Refuses a queue that was already there unless it is ours and closed to writers of other
/// users (they could inject messages, or read ours), or the options allow other users.
/// `owner` comes from [`PosixMq::owner`] or [`SysvMq::owner`].
///
/// # Errors
///
/// `PermissionDenied`, naming the owner and mode.
pub fn check_existing_queue(name: &str, owner: (u32, u32), opts: &Options) -> io::Result<()> {
    let (uid, mode) = owner;
    if opts.allow_other_users || (uid == registry::euid() && mode & 0o022 == 0) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "queue {name} belongs to uid {uid} with mode {mode:03o}; refusing a queue other users \
             own or may write (the library's `Options::allow_other_users` lifts this)"
        ),
    ))
}

/// Opens a FIFO's read end, accepting FIFOs of other users (or open to them) only when the
/// options say so.
fn fifo_read(path: &Path, opts: &Options) -> io::Result<OwnedFd> {
    if opts.allow_other_users || opts.mode & 0o022 != 0 {
        fifo::open_read_any(path)
    } else {
        fifo::open_read(path)
    }
}

/// Opens a FIFO's write end; see [`fifo_read`].
fn fifo_write(path: &Path, opts: &Options) -> io::Result<OwnedFd> {
    if opts.allow_other_users || opts.mode & 0o022 != 0 {
        fifo::open_write_any(path, opts.timeout)
    } else {
        fifo::open_write(path, opts.timeout)
    }
}

/// A UDP socket on an ephemeral port of the right family, connected to `address`.
fn udp_connected(address: &str) -> io::Result<(UdpSocket, SocketAddr)> {
    let a = ip_addr(address)?;
    let local = if a.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let s = UdpSocket::bind(local)?;
    s.connect(a)?;
    Ok((s, a))
}

/// Resolves `host:port`.
pub fn ip_addr(addr: &str) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()
        .map_err(|_| invalid(format!("'{addr}' is not a host:port address")))?
        .next()
        .ok_or_else(|| invalid(format!("'{addr}' resolves to no address")))
}

/// Binds a Unix socket of type `ty` at `addr`, owner-only, recorded in the registry: the
/// same code as [`crate::unix::ListenerBuilder::bind`] (safe directory, exact mode, stale
/// files reclaimed), with a taken address reported as `AlreadyExists` as it always was here.
pub(crate) fn bind_unix(
    ty: i32,
    addr: &str,
    mode: u32,
) -> io::Result<(OwnedFd, Option<ObjectGuard>)> {
    let ua = unix_addr(addr)?;
    crate::unix::listener::bind_socket(ty, &ua, addr, mode).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(io::ErrorKind::AlreadyExists, e.to_string())
        } else {
            e
        }
    })
}

/// Connects a Unix socket of type `ty` to `addr`.
pub(crate) fn connect_unix(ty: i32, addr: &str) -> io::Result<OwnedFd> {
    let ua = unix_addr(addr)?;
    let fd = socket::unix_socket(ty)?;
    if ty == libc::SOCK_DGRAM {
        socket::autobind(fd.as_fd())?;
    }
    socket::connect(fd.as_fd(), &ua).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => {
            io::Error::new(io::ErrorKind::NotFound, format!("no socket at {addr}"))
        }
        Some(libc::ECONNREFUSED) => io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("nothing is listening at {addr}"),
        ),
        _ => io::Error::new(e.kind(), format!("{addr}: {e}")),
    })?;
    Ok(fd)
}

/// The policy the options mean: our own uid, or anyone.
fn policy(opts: &Options) -> Policy {
    if opts.allow_other_users {
        Policy::any()
    } else {
        Policy::same_uid()
    }
}

/// A Unix stream or seqpacket listener at `addr` with the options' mode and policy.
fn unix_listener(mech: Mechanism, addr: &str, opts: &Options) -> io::Result<UnixListener> {
    unix_addr(addr)?;
    let mut b = ListenerBuilder::new(addr)
        .mode(opts.mode)
        .policy(policy(opts))
        .seqpacket(mech == Mechanism::UdsSeqpacket)
        .wait(opts.wait);
    if let Some(m) = opts.max_msg_size {
        b = b.max_msg_size(m);
    }
    b.bind().map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(io::ErrorKind::AlreadyExists, e.to_string())
        } else {
            e
        }
    })
}

/// The client's side of the policy check: the listener's uid, as the server checks ours.
fn check_peer_uid(fd: &OwnedFd, allow_others: bool) -> io::Result<Option<PeerInfo>> {
    let cred = crate::unix::peer_credentials(fd)?;
    let p = if allow_others {
        Policy::any()
    } else {
        Policy::same_uid()
    };
    if !p.allows(&cred, fd.as_fd()) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refused a peer of uid {} (pid {}); only our own uid is accepted",
                cred.uid, cred.pid
            ),
        ));
    }
    Ok((cred.pid > 0).then_some(PeerInfo {
        pid: cred.pid as u32, // > 0, checked above
        watched: false,
    }))
}

fn max_for(mech: Mechanism, opts: &Options) -> usize {
    opts.max_msg_size.unwrap_or(match mech {
        Mechanism::Udp => UDP_MAX_V4,
        _ => DEFAULT_STREAM_MAX,
    })
}

fn deadline(opts: &Options) -> Deadline {
    Deadline::after(opts.timeout)
}

fn timed_out(what: &str, opts: &Options) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} within {:.1} s", opts.timeout.as_secs_f64()),
    )
}

/// Waits for `fd` to become readable, at most the options' timeout.
fn wait_readable(fd: &OwnedFd, opts: &Options, what: &str) -> io::Result<()> {
    match sysfd::poll(&[(fd.as_fd(), libc::POLLIN)], Some(opts.timeout))? {
        sysfd::Ready::Fd(_) => Ok(()),
        sysfd::Ready::TimedOut => Err(timed_out(what, opts)),
    }
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
                    .accept_raw(Some(opts.timeout))
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

fn with_ext(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn grow_ip_buffers(s: &UdpSocket) {
    let fd = s.as_fd();
    for (force, plain) in [
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
    ] {
        if socket::set_int_opt(fd, libc::SOL_SOCKET, force, 4 << 20).is_err() {
            let _ = socket::set_int_opt(fd, libc::SOL_SOCKET, plain, 4 << 20);
        }
    }
}

/// Connects to a [`Server`]'s address as its peer.
///
/// # Errors
///
/// `NotFound`/`ConnectionRefused` when nothing is there, `TimedOut` when the peer does not
/// answer, `InvalidInput` for an address of the wrong form, or the OS error.
pub fn connect(mech: Mechanism, address: &str, opts: &Options) -> io::Result<Box<dyn Transport>> {
    Ok(match connect_any(mech, address, opts)? {
        Connected::Stream(s) => Box::new(s),
        Connected::Dgram(d) => Box::new(d),
        Connected::Other(o) => o,
    })
}

/// [`connect`] for the byte-stream mechanisms (Unix stream sockets, TCP, FIFOs, pipes), with
/// the endpoint's own type: it implements `AsFd`, for epoll or an async runtime.
///
/// # Errors
///
/// `InvalidInput` for a mechanism that is not a byte stream; as [`connect`].
pub fn connect_stream(
    mech: Mechanism,
    address: &str,
    opts: &Options,
) -> io::Result<StreamEndpoint> {
    if !mech.is_stream() {
        return Err(invalid(format!(
            "{mech} is not a byte stream: use connect_dgram or connect"
        )));
    }
    match connect_any(mech, address, opts)? {
        Connected::Stream(s) => Ok(s),
        _ => unreachable!("byte streams connect as StreamEndpoint"),
    }
}

/// [`connect`] for the message-socket mechanisms (Unix datagram and seqpacket sockets, UDP),
/// with the endpoint's own type: it implements `AsFd`, for epoll or an async runtime.
///
/// # Errors
///
/// `InvalidInput` for another mechanism; as [`connect`].
pub fn connect_dgram(mech: Mechanism, address: &str, opts: &Options) -> io::Result<DgramEndpoint> {
    if !matches!(
        mech,
        Mechanism::UdsDgram | Mechanism::UdsSeqpacket | Mechanism::Udp
    ) {
        return Err(invalid(format!(
            "{mech} is not a message socket: use connect_stream or connect"
        )));
    }
    match connect_any(mech, address, opts)? {
        Connected::Dgram(d) => Ok(d),
        _ => unreachable!("message sockets connect as DgramEndpoint"),
    }
}

/// What [`connect_any`] made, keeping the socket endpoints' types.
enum Connected {
    Stream(StreamEndpoint),
    Dgram(DgramEndpoint),
    Other(Box<dyn Transport>),
}

impl From<StreamEndpoint> for Connected {
    fn from(s: StreamEndpoint) -> Self {
        Connected::Stream(s)
    }
}

impl From<DgramEndpoint> for Connected {
    fn from(d: DgramEndpoint) -> Self {
        Connected::Dgram(d)
    }
}

impl From<PosixMq> for Connected {
    fn from(q: PosixMq) -> Self {
        Connected::Other(Box::new(q))
    }
}

impl From<SysvMq> for Connected {
    fn from(q: SysvMq) -> Self {
        Connected::Other(Box::new(q))
    }
}

impl From<crate::shm::ShmEndpoint> for Connected {
    fn from(e: crate::shm::ShmEndpoint) -> Self {
        Connected::Other(Box::new(e))
    }
}

fn connect_any(mech: Mechanism, address: &str, opts: &Options) -> io::Result<Connected> {
    let max = max_for(mech, opts);
    Ok(match mech {
        Mechanism::Pipe => Connected::from(pipe::from_address(address, opts.wait, Some(max))?),
        Mechanism::Fifo => {
            let base = Path::new(address);
            let w = fifo_write(&with_ext(base, "c2s"), opts)?;
            let r = fifo_read(&with_ext(base, "s2c"), opts)?;
            // The server opens its write end only after seeing our read end: until then a
            // read of 0 means "not yet", not the end.
            Connected::from(
                StreamEndpoint::new(mech, Some(r), Some(w), false, opts.wait, max)?
                    .waiting_for_writer(),
            )
        }
        Mechanism::Uds => {
            let fd = connect_unix(libc::SOCK_STREAM, address)?;
            let peer = check_peer_uid(&fd, opts.allow_other_users)?;
            Connected::from(
                StreamEndpoint::new(mech, Some(fd), None, true, opts.wait, max)?.with_peer(peer),
            )
        }
        Mechanism::UdsSeqpacket => {
            let fd = connect_unix(libc::SOCK_SEQPACKET, address)?;
            let peer = check_peer_uid(&fd, opts.allow_other_users)?;
            let max = socket::grow_dgram_buffers(fd.as_fd(), max)?;
            Connected::from(DgramEndpoint::new(mech, fd, opts.wait, max)?.with_peer(peer, None))
        }
        Mechanism::UdsDgram => {
            let fd = connect_unix(libc::SOCK_DGRAM, address)?;
            let max = socket::grow_dgram_buffers(fd.as_fd(), max)?;
            socket::send(fd.as_fd(), &Hello::mine().encode(), 0)?;
            wait_readable(&fd, opts, "the peer did not answer the hello")?;
            let mut b = [0u8; HELLO_LEN + 1];
            let n = socket::recv(fd.as_fd(), &mut b, 0)?;
            let hello = Hello::decode(&b[..n]).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the peer's first datagram was not an ipckit hello",
                )
            })?;
            let (info, pidfd) = peer::watch(&hello);
            Connected::from(DgramEndpoint::new(mech, fd, opts.wait, max)?.with_peer(info, pidfd))
        }
        Mechanism::Tcp => {
            let a = ip_addr(address)?;
            let s = TcpStream::connect_timeout(&a, opts.timeout)
                .map_err(|e| io::Error::new(e.kind(), format!("{address}: {e}")))?;
            s.set_nodelay(true)?;
            Connected::from(StreamEndpoint::new(
                mech,
                Some(s.into()),
                None,
                true,
                opts.wait,
                max,
            )?)
        }
        Mechanism::Udp => {
            let (s, a) = udp_connected(address)?;
            grow_ip_buffers(&s);
            let fd: OwnedFd = s.into();
            // The hello may be lost: repeat it until the answer comes.
            let until = std::time::Instant::now().checked_add(opts.timeout);
            let hello = loop {
                socket::send(fd.as_fd(), &Hello::mine().encode(), 0)
                    .map_err(|e| io::Error::new(e.kind(), format!("{address}: {e}")))?;
                if let sysfd::Ready::Fd(_) = sysfd::poll(
                    &[(fd.as_fd(), libc::POLLIN)],
                    Some(Duration::from_millis(100)),
                )? {
                    let mut b = [0u8; HELLO_LEN + 1];
                    match socket::recv(fd.as_fd(), &mut b, 0) {
                        Ok(n) => {
                            if let Some(h) = Hello::decode(&b[..n]) {
                                break h;
                            }
                        }
                        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                            return Err(io::Error::new(
                                io::ErrorKind::ConnectionRefused,
                                format!("nothing is listening at {address}"),
                            ));
                        }
                        Err(e) => return Err(e),
                    }
                }
                if until.is_some_and(|u| std::time::Instant::now() >= u) {
                    return Err(timed_out(&format!("no answer from {address}"), opts));
                }
            };
            let (info, pidfd) = peer::watch(&hello);
            let max = max.min(if a.is_ipv4() { UDP_MAX_V4 } else { UDP_MAX_V6 });
            Connected::from(
                DgramEndpoint::new(mech, fd, opts.wait, max)?
                    .with_peer(info, pidfd)
                    .filter_hello(true),
            )
        }
        Mechanism::MqPosix => {
            Connected::from(PosixMq::connect_pair(address, opts.wait, deadline(opts))?)
        }
        Mechanism::Shm => Connected::from(shm::connect(address, &opts.pair())?),
        Mechanism::MqSysv => Connected::from(SysvMq::connect_pair(
            sysvmod::parse_key(address)?,
            opts.wait,
            deadline(opts),
        )?),
        Mechanism::Eventfd => {
            return Err(invalid("eventfd carries no messages: use ipckit::eventfd"))
        }
    })
}

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

    /// Accepts the next peer, waiting at most `timeout` (`None`: forever).
    ///
    /// # Errors
    ///
    /// `TimedOut`, `PermissionDenied` for a Unix peer of another uid, or the OS error.
    pub fn accept(&self, timeout: Option<Duration>) -> io::Result<Box<dyn Transport>> {
        if let Some(l) = &self.shm {
            let mut l = l.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            return Ok(Box::new(l.accept_next(timeout)?));
        }
        if let Some(l) = &self.unix {
            return l.accept(timeout);
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

/// What [`open_receiver`] made.
#[derive(Debug)]
pub enum Receiver {
    /// Messages arrive on this endpoint directly (FIFO, datagram sockets, queues).
    Endpoint(Box<dyn Transport>),
    /// Peers connect here, each with its own stream (Unix stream/seqpacket, TCP).
    Listener(Listener),
}

/// Opens the receiving side of a one-way channel at `addr`, creating the object (owner-only,
/// recorded, removed on drop) when it does not exist and using it when it does (FIFOs and
/// queues). No hello is expected: any program may send.
///
/// A FIFO receiver outlives its writers: when the last one closes it waits for the next,
/// and a message left unfinished when the last writer closed is dropped and counted
/// ([`Transport::dropped`]), never joined to the next writer's bytes. Writers that overlap
/// share one byte stream: a fragment one of them leaves while another is connected cannot
/// be told apart (ipckit's own senders write each message whole, in one `write` of at most
/// [`crate::fifo::ATOMIC_WRITE`] bytes).
///
/// TCP and UDP bind `addr` as given (`0.0.0.0:PORT` or `[::]:PORT` for every interface). An IP
/// peer has no credentials to check, so [`Options::allow_other_users`] does not apply: any
/// host that can reach the address may send.
///
/// # Errors
///
/// `InvalidInput` for an address of the wrong form, `AlreadyExists` for a socket address in
/// use, or the OS error.
pub fn open_receiver(mech: Mechanism, addr: &str, opts: &Options) -> io::Result<Receiver> {
    let max = max_for(mech, opts);
    Ok(match mech {
        Mechanism::Fifo => {
            let path = Path::new(addr);
            let guard = match fifo::create(path, opts.mode) {
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
            shm: Some(Box::new(std::sync::Mutex::new(ShmListener::create(
                addr,
                &opts.pair(),
            )?))),
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
            let q = match PosixMq::open(addr, opts.wait) {
                Ok(q) => {
                    check_existing_queue(addr, q.owner()?, opts)?;
                    q
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => PosixMq::create(
                    addr,
                    MqOptions {
                        msg_size: opts.max_msg_size,
                        mode: opts.mode,
                        wait: opts.wait,
                        max_msgs: None,
                    },
                )?,
                Err(e) => return Err(e),
            };
            Receiver::Endpoint(Box::new(q))
        }
        Mechanism::MqSysv => {
            let key = sysvmod::parse_key(addr)?;
            let q = match SysvMq::open(key, opts.wait) {
                Ok(q) => {
                    check_existing_queue(addr, q.owner()?, opts)?;
                    q
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => SysvMq::create(
                    key,
                    SysvOptions {
                        mode: opts.mode,
                        wait: opts.wait,
                    },
                )?,
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

/// Opens the sending side of a one-way channel to an existing receiver at `addr`.
///
/// A Unix datagram sender first has the receiver answer a hello whose credentials are
/// checked against the options' policy ([`DgramEndpoint`]): the receiver must be receiving
/// meanwhile. Queue senders are one-way senders that learn of their receiver's end while
/// they wait for room ([`crate::mq`]).
///
/// # Errors
///
/// `NotFound`/`ConnectionRefused`/`TimedOut` when no receiver is there (for a Unix datagram
/// socket, also one that does not answer the hello: not an ipckit receiver),
/// `PermissionDenied` for a datagram receiver of a refused uid, `InvalidInput` for an
/// address of the wrong form, or the OS error.
pub fn open_sender(mech: Mechanism, addr: &str, opts: &Options) -> io::Result<Box<dyn Transport>> {
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
            let q = PosixMq::open_sender(addr, opts.wait)?;
            check_existing_queue(addr, q.owner()?, opts)?;
            Box::new(q)
        }
        Mechanism::MqSysv => {
            let q = SysvMq::open_sender(sysvmod::parse_key(addr)?, opts.wait)?;
            check_existing_queue(addr, q.owner()?, opts)?;
            Box::new(q)
        }
        Mechanism::Pipe | Mechanism::Eventfd => {
            return Err(invalid(format!("{mech} has no address to send to")))
        }
    })
}
