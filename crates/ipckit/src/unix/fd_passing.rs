//! Passing descriptors between processes over Unix sockets (`SCM_RIGHTS`), and the sender's
//! credentials on each message (`SCM_CREDENTIALS`).

use super::ancillary::{self, Credentials, MAX_FDS};
use crate::error::invalid;
use crate::shm::{Segment, SegmentBuilder};
use crate::stream::{StreamEndpoint, DEFAULT_STREAM_MAX};
use crate::sys::{fd as sysfd, scm, socket};
use crate::transport::{Mechanism, RawHandle, Transport};
use crate::wait::Wait;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::{Duration, Instant};

/// What [`recv_with_fds`] received.
#[derive(Debug)]
pub struct Received {
    /// Data bytes placed in the buffer (0 on a stream socket whose peer has closed, with no
    /// descriptors).
    pub len: usize,
    /// The descriptors that came with the data, in the order they were sent; each is a new
    /// descriptor of this process, close-on-exec, sharing its open file description (offset,
    /// status flags) with the sender's.
    pub fds: Vec<OwnedFd>,
    /// The sender's credentials, when the socket has [`set_pass_credentials`] on (or the
    /// sender attached them with [`send_with_credentials`]).
    pub creds: Option<Credentials>,
    /// A pidfd of the sender, when the socket has [`set_pass_pidfd`] on: it names the
    /// sending process itself, not a pid that could be reused.
    pub pidfd: Option<OwnedFd>,
    /// A datagram longer than the buffer: the rest of it was discarded (`MSG_TRUNC`).
    pub truncated: bool,
}

/// Sends `msg` with the descriptors `fds` attached (`sendmsg` with an `SCM_RIGHTS` message):
/// the receiver gets new descriptors for the same open files. Our descriptors stay ours;
/// close them when the receiver has its copies (right away is fine: the message holds a
/// reference until it is received).
///
/// Waits for room if the socket is non-blocking. On a stream socket the whole message is
/// sent: if the kernel takes only part of it, the rest follows without descriptors (they
/// travel with the first part). Returns `msg.len()`.
///
/// # Errors
///
/// `InvalidInput` for descriptors with an empty message (on a stream socket the kernel would
/// drop them), or more than [`MAX_FDS`] descriptors; `BrokenPipe` when the peer is gone;
/// `ETOOMANYREFS` when descriptors in flight nest too deep or exceed `RLIMIT_NOFILE`; the
/// `sendmsg` error.
///
/// # Examples
///
/// ```
/// use ipckit::unix::{recv_with_fds, send_with_fds};
/// use std::io::{Read, Write};
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
/// # fn main() -> std::io::Result<()> {
/// let (a, b) = UnixStream::pair()?;
/// let (r, mut w) = ipckit::pipe::raw_pipe()?;
/// send_with_fds(&a, b"here is a pipe", &[r.as_fd()])?;
/// drop(r);
/// let mut buf = [0u8; 64];
/// let got = recv_with_fds(&b, &mut buf, 4)?;
/// assert_eq!(&buf[..got.len], b"here is a pipe");
/// let mut r2 = std::fs::File::from(got.fds.into_iter().next().unwrap());
/// w.write_all(b"hi")?;
/// drop(w);
/// let mut s = String::new();
/// r2.read_to_string(&mut s)?;
/// assert_eq!(s, "hi");
/// # Ok(()) }
/// ```
///
/// # References
///
/// `unix(7)` (`SCM_RIGHTS`), `sendmsg(2)`, `cmsg(3)`.
#[doc(alias = "SCM_RIGHTS")]
#[doc(alias = "sendmsg")]
pub fn send_with_fds(sock: impl AsFd, msg: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    send_inner(sock.as_fd(), msg, fds, None)
}

/// Like [`send_with_fds`], attaching the credentials `creds` as an `SCM_CREDENTIALS` message.
/// The kernel checks them: a process may claim its own pid, uid and gid (see
/// [`own_credentials`]); claiming others needs `CAP_SYS_ADMIN` (pid) or
/// `CAP_SETUID`/`CAP_SETGID`. A receiver with [`set_pass_credentials`] on gets the sender's
/// credentials whether or not they are attached.
///
/// # Errors
///
/// `EPERM` for credentials the sender may not claim; otherwise as [`send_with_fds`].
#[doc(alias = "SCM_CREDENTIALS")]
pub fn send_with_credentials(
    sock: impl AsFd,
    msg: &[u8],
    fds: &[BorrowedFd<'_>],
    creds: Credentials,
) -> io::Result<usize> {
    send_inner(sock.as_fd(), msg, fds, Some(creds))
}

/// This process's pid, effective uid and effective gid: the credentials it may attach.
pub fn own_credentials() -> Credentials {
    scm::own_credentials()
}

fn send_inner(
    sock: BorrowedFd<'_>,
    msg: &[u8],
    fds: &[BorrowedFd<'_>],
    creds: Option<Credentials>,
) -> io::Result<usize> {
    if !fds.is_empty() && msg.is_empty() {
        return Err(invalid(
            "descriptors travel with data: send at least one byte with them (on a stream \
             socket the kernel drops descriptors sent with none)",
        ));
    }
    if fds.len() > MAX_FDS {
        return Err(invalid(format!(
            "{} descriptors in one message; the kernel allows at most {MAX_FDS} (SCM_MAX_FD)",
            fds.len()
        )));
    }
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let control = ancillary::encode(&raw, creds);
    let mut sent = 0;
    // The first sendmsg carries the control data; anything after it is plain data.
    let mut control: &[u8] = &control;
    loop {
        match scm::sendmsg(sock, &msg[sent..], control, 0) {
            Ok(n) => {
                sent += n;
                control = &[];
                if sent >= msg.len() {
                    return Ok(sent);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                sysfd::poll(&[(sock, libc::POLLOUT)], None)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Receives one message into `buf` with at most `max_fds` descriptors (`recvmsg` with
/// `MSG_CMSG_CLOEXEC`), waiting for it if the socket is non-blocking. The descriptors arrive
/// close-on-exec and owned: dropping [`Received::fds`] closes them.
///
/// A message carrying more than `max_fds` descriptors is an error, and nothing leaks: the
/// kernel installs only those that fit the control buffer sized for `max_fds` (`MSG_CTRUNC`
/// for the rest, which it closes), and this function closes the ones that did arrive. The
/// message's data is consumed either way.
///
/// On a stream socket, bytes have no boundaries: a read may return part of what one
/// [`send_with_fds`] sent, or end of a previous send's bytes with it; the descriptors come
/// with the bytes they were sent with, and the kernel never joins two sends that each carry
/// descriptors into one read. Do not read the same socket with a framed endpoint while
/// descriptors may be queued: a read without room for control data discards them (the
/// kernel closes them).
///
/// # Errors
///
/// `InvalidData` when the sender passed more descriptors than `max_fds` ("the sender passed
/// more descriptors than the N this receiver allows; the ones that arrived were closed") or
/// the control data is malformed; the `recvmsg` error.
///
/// # References
///
/// `unix(7)` (`SCM_RIGHTS`, `SCM_CREDENTIALS`), `recvmsg(2)` (`MSG_CMSG_CLOEXEC`,
/// `MSG_CTRUNC`).
#[doc(alias = "recvmsg")]
pub fn recv_with_fds(sock: impl AsFd, buf: &mut [u8], max_fds: usize) -> io::Result<Received> {
    recv_inner(sock.as_fd(), buf, max_fds, None)
}

/// [`recv_with_fds`] waiting at most `timeout` for a message.
///
/// # Errors
///
/// `TimedOut` when nothing arrived in time; otherwise as [`recv_with_fds`].
pub fn recv_with_fds_timeout(
    sock: impl AsFd,
    buf: &mut [u8],
    max_fds: usize,
    timeout: Duration,
) -> io::Result<Received> {
    recv_inner(sock.as_fd(), buf, max_fds, Some(timeout))
}

fn recv_inner(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
    timeout: Option<Duration>,
) -> io::Result<Received> {
    let max_fds = max_fds.min(MAX_FDS);
    // Room for exactly `max_fds` descriptors (the kernel truncates the rest), after the
    // credentials the kernel puts first when SO_PASSCRED is on.
    let mut cap = if max_fds > 0 {
        ancillary::rights_space(max_fds)
    } else {
        0
    };
    if scm::passcred(sock)? {
        cap += ancillary::credentials_space();
    }
    if scm::passpidfd(sock)? {
        cap += ancillary::pidfd_space();
    }
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    // With a deadline, never block in recvmsg (the socket may be in blocking mode): wait in
    // poll instead.
    let flags = if timeout.is_some() {
        libc::MSG_DONTWAIT
    } else {
        0
    };
    let got = loop {
        match scm::recvmsg(sock, buf, cap, flags) {
            Ok(m) => break m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                if left == Some(Duration::ZERO) {
                    return Err(timed_out(timeout));
                }
                if sysfd::poll(&[(sock, libc::POLLIN)], left)? == sysfd::Ready::TimedOut {
                    return Err(timed_out(timeout));
                }
            }
            Err(e) => return Err(e),
        }
    };
    // From here every descriptor that arrived is owned by `got.fds`: each error path below
    // drops them, which closes them.
    let arrived = got.fds.len();
    if arrived > max_fds || (got.flags & libc::MSG_CTRUNC != 0 && arrived == max_fds) {
        drop((got.fds, got.pidfd));
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the sender passed more descriptors than the {max_fds} this receiver allows; \
                 the ones that arrived were closed ({arrived} arrived; the message's {} bytes \
                 were consumed)",
                got.len
            ),
        ));
    }
    if got.flags & libc::MSG_CTRUNC != 0 {
        drop((got.fds, got.pidfd));
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "control data truncated (MSG_CTRUNC) with {arrived} of the {max_fds} descriptors \
                 allowed: a control message this receiver did not make room for (SO_PASSSEC?) \
                 did not fit; the descriptors that arrived were closed"
            ),
        ));
    }
    if let Some(e) = got.malformed {
        drop((got.fds, got.pidfd));
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "malformed control data ({e}); the {arrived} descriptors that arrived were closed"
            ),
        ));
    }
    Ok(Received {
        len: got.len,
        fds: got.fds,
        creds: got.creds,
        pidfd: got.pidfd,
        truncated: got.flags & libc::MSG_TRUNC != 0,
    })
}

fn timed_out(timeout: Option<Duration>) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "no message with descriptors within {:.1} s",
            timeout.unwrap_or_default().as_secs_f64()
        ),
    )
}

/// Turns `SO_PASSCRED` on or off: with it on, every message received on `sock` carries the
/// sender's pid, uid and gid as the kernel knows them, returned in [`Received::creds`]. On
/// datagram sockets this is how a receiver learns who sent each datagram.
///
/// # Errors
///
/// The `setsockopt` error (`ENOTSOCK` for a descriptor that is not a socket).
#[doc(alias = "SO_PASSCRED")]
pub fn set_pass_credentials(sock: impl AsFd, on: bool) -> io::Result<()> {
    scm::set_passcred(sock.as_fd(), on)
}

/// Turns `SO_PASSPIDFD` on or off (Linux 6.5+): with it on, every message received on
/// `sock` brings a pidfd of its sender ([`Received::pidfd`]), which stays valid for that
/// process even after its pid is reused.
///
/// # Errors
///
/// `ENOPROTOOPT` on kernels before 6.5; the `setsockopt` error.
#[doc(alias = "SO_PASSPIDFD")]
#[doc(alias = "SCM_PIDFD")]
pub fn set_pass_pidfd(sock: impl AsFd, on: bool) -> io::Result<()> {
    scm::set_passpidfd(sock.as_fd(), on)
}

/// The credentials of the process at the other end of a connected Unix socket
/// (`SO_PEERCRED`): the peer as it was when it called `connect` (or `socketpair`, whose
/// creator both ends report), not necessarily the process holding the other end now.
///
/// # Errors
///
/// The `getsockopt` error (`ENOTCONN` for an unconnected socket).
#[doc(alias = "SO_PEERCRED")]
pub fn peer_credentials(sock: impl AsFd) -> io::Result<Credentials> {
    let c = socket::peer_cred(sock.as_fd())?;
    Ok(Credentials {
        pid: c.pid,
        uid: c.uid,
        gid: c.gid,
    })
}

/// The socket under a stream endpoint over a Unix socket (for example the parent's end of a
/// [`ChildChannel`](crate::pipe::ChildChannel) made with
/// [`Duplex::SocketPair`](crate::pipe::Duplex::SocketPair), or the child's from
/// [`ChildChannel::open_from_env`](crate::pipe::ChildChannel::open_from_env)), to pass
/// descriptors over it.
///
/// Use such a socket for descriptors only, or read framed messages on it only when no
/// descriptor can be queued: the endpoint reads ahead, and a read without room for control
/// data makes the kernel discard the descriptors that came with the bytes.
///
/// # Errors
///
/// `InvalidInput` for an endpoint that is not a Unix stream socket (pipes, FIFOs, TCP).
pub fn endpoint_socket(ep: &StreamEndpoint) -> io::Result<BorrowedFd<'_>> {
    match ep.raw() {
        RawHandle::Fds {
            read: Some(r),
            write: Some(w),
        } if ep.mechanism() == Mechanism::Uds && r.as_raw_fd() == w.as_raw_fd() => Ok(r),
        _ => Err(invalid(format!(
            "a {} endpoint is not a Unix stream socket; descriptors pass over Unix sockets only",
            ep.mechanism().name()
        ))),
    }
}

/// A kind of descriptor that can be passed with [`send_fd`] and taken back, checked, with
/// [`recv_fd`].
///
/// The sender's side is [`AsFd`]; the receiver's side checks that what arrived is really of
/// this kind before wrapping it, so a peer cannot hand a socket to code that expects a pipe.
pub trait Passable: AsFd + Sized {
    /// What this kind is called in messages and on the wire (for example "pipe write end").
    const KIND: &'static str;

    /// Wraps a received descriptor after checking it is of this kind.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming what was expected and what the descriptor is; the descriptor
    /// is closed then.
    fn from_received(fd: OwnedFd) -> io::Result<Self>;
}

/// What a descriptor is, for messages: the `/proc/self/fd` link ("pipe:[1234]",
/// "socket:[99]", "/memfd:ipckit-shm (deleted)", a path).
fn describe(fd: BorrowedFd<'_>) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| format!("descriptor {}", fd.as_raw_fd()))
}

fn wrong_kind(fd: OwnedFd, want: &str) -> io::Error {
    let what = describe(fd.as_fd());
    drop(fd);
    invalid(format!(
        "expected {want} but received {what}; it was closed"
    ))
}

fn file_type(fd: BorrowedFd<'_>) -> io::Result<libc::mode_t> {
    Ok(sysfd::fstat(fd)?.st_mode & libc::S_IFMT)
}

fn unix_socket_of_type(fd: &OwnedFd, ty: i32) -> bool {
    let opt = |name| socket::int_opt(fd.as_fd(), libc::SOL_SOCKET, name).ok();
    opt(libc::SO_DOMAIN) == Some(libc::AF_UNIX) && opt(libc::SO_TYPE) == Some(ty)
}

impl Passable for OwnedFd {
    const KIND: &'static str = "descriptor";

    /// Any descriptor: no check.
    fn from_received(fd: OwnedFd) -> io::Result<Self> {
        Ok(fd)
    }
}

impl Passable for File {
    const KIND: &'static str = "file";

    /// A regular file (a memfd is one), directory or device; not a pipe, socket or
    /// anonymous inode (eventfd, epoll, pidfd).
    fn from_received(fd: OwnedFd) -> io::Result<Self> {
        match file_type(fd.as_fd())? {
            libc::S_IFREG | libc::S_IFDIR | libc::S_IFCHR | libc::S_IFBLK => Ok(File::from(fd)),
            _ => Err(wrong_kind(fd, "a file")),
        }
    }
}

impl Passable for crate::pipe::PipeReader {
    const KIND: &'static str = "pipe read end";

    /// The read end of a pipe or FIFO (checked with `fstat` and the access mode). The end is
    /// made non-blocking underneath, which the sender's copy, sharing the open file
    /// description, sees too.
    fn from_received(fd: OwnedFd) -> io::Result<Self> {
        if file_type(fd.as_fd())? != libc::S_IFIFO {
            return Err(wrong_kind(fd, "the read end of a pipe"));
        }
        crate::pipe::PipeReader::try_from_fd(fd)
    }
}

impl Passable for crate::pipe::PipeWriter {
    const KIND: &'static str = "pipe write end";

    /// The write end of a pipe or FIFO; see [`PipeReader`](crate::pipe::PipeReader)'s.
    fn from_received(fd: OwnedFd) -> io::Result<Self> {
        if file_type(fd.as_fd())? != libc::S_IFIFO {
            return Err(wrong_kind(fd, "the write end of a pipe"));
        }
        crate::pipe::PipeWriter::try_from_fd(fd)
    }
}

impl Passable for UnixStream {
    const KIND: &'static str = "unix stream socket";

    /// An `AF_UNIX` `SOCK_STREAM` socket.
    fn from_received(fd: OwnedFd) -> io::Result<Self> {
        if !unix_socket_of_type(&fd, libc::SOCK_STREAM) {
            return Err(wrong_kind(fd, "a Unix stream socket"));
        }
        Ok(UnixStream::from(fd))
    }
}

impl Passable for UnixDatagram {
    const KIND: &'static str = "unix datagram socket";

    /// An `AF_UNIX` `SOCK_DGRAM` socket.
    fn from_received(fd: OwnedFd) -> io::Result<Self> {
        if !unix_socket_of_type(&fd, libc::SOCK_DGRAM) {
            return Err(wrong_kind(fd, "a Unix datagram socket"));
        }
        Ok(UnixDatagram::from(fd))
    }
}

impl Passable for Segment {
    const KIND: &'static str = "shared memory segment";

    /// An ipckit segment of [`Layout::RAW`](crate::shm::Layout::RAW) data (a memfd or shm
    /// object), header checked as [`SegmentBuilder::open_fd`] does, and mapped. For another
    /// layout, receive an `OwnedFd` and call `open_fd` on a builder that names it.
    fn from_received(fd: OwnedFd) -> io::Result<Self> {
        if file_type(fd.as_fd())? != libc::S_IFREG {
            return Err(wrong_kind(
                fd,
                "a shared memory segment (a memfd or shm object)",
            ));
        }
        SegmentBuilder::anonymous().open_fd(fd)
    }
}

/// The data of a typed message: this prefix, then the sender's [`Passable::KIND`].
const TYPED_PREFIX: &[u8] = b"ipckit-fd:";
/// Room for a typed message's data.
const TYPED_MAX: usize = 96;

/// Sends one descriptor of a known kind, for [`recv_fd`] at the other end: one message whose
/// data names the kind.
///
/// # Errors
///
/// As [`send_with_fds`].
pub fn send_fd<T: Passable>(sock: impl AsFd, item: &T) -> io::Result<()> {
    let mut msg = TYPED_PREFIX.to_vec();
    msg.extend_from_slice(T::KIND.as_bytes());
    send_with_fds(sock, &msg, &[item.as_fd()])?;
    Ok(())
}

/// Receives one descriptor sent with [`send_fd`] and checks it is a `T`
/// ([`Passable::from_received`]). Waits for it if the socket is non-blocking.
///
/// # Errors
///
/// `UnexpectedEof` if the peer closed the socket first; `InvalidData` for a message that is
/// not one [`send_fd`] sent, or that carries no descriptor or more than one (all closed);
/// `InvalidInput` for a descriptor of another kind (closed, the error names what it is and
/// what the sender called it); the `recvmsg` error.
pub fn recv_fd<T: Passable>(sock: impl AsFd) -> io::Result<T> {
    let sock = sock.as_fd();
    let mut buf = [0u8; TYPED_MAX];
    let got = recv_with_fds(sock, &mut buf, 1)?;
    let data = &buf[..got.len];
    let Some(kind) = data.strip_prefix(TYPED_PREFIX) else {
        drop(got.fds);
        return Err(if got.len == 0 {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the peer closed the socket before passing a {}", T::KIND),
            )
        } else {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "expected a {} from send_fd, received {} bytes of something else",
                    T::KIND,
                    got.len
                ),
            )
        });
    };
    let kind = String::from_utf8_lossy(kind).into_owned();
    let mut fds = got.fds.into_iter();
    let Some(fd) = fds.next() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "expected a {} but the message (a \"{kind}\") carried no descriptor",
                T::KIND
            ),
        ));
    };
    T::from_received(fd).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{e} (the sender passed it as a \"{kind}\")"),
        )
    })
}

/// Hands the process at the other end of `sock` a new, private channel: makes a Unix stream
/// socketpair, passes one end over `sock` (with [`send_fd`]) and returns the other as a
/// framed endpoint (blocking waits, [`DEFAULT_STREAM_MAX`]). The peer takes its end with
/// [`recv_channel`].
///
/// This is how a parent gives a child it spawned with a
/// [`ChildChannel`](crate::pipe::ChildChannel) (see [`endpoint_socket`]) as many further
/// channels as it likes, each with its own ordering and backpressure.
///
/// # Errors
///
/// The `socketpair` error; as [`send_with_fds`].
///
/// # Examples
///
/// ```
/// use ipckit::unix::{recv_channel, send_channel};
/// use ipckit::Transport;
/// # fn main() -> std::io::Result<()> {
/// let (a, b) = std::os::unix::net::UnixStream::pair()?;
/// let mut mine = send_channel(&a)?;
/// let mut theirs = recv_channel(&b)?; // in the other process
/// mine.send(b"over the new channel")?;
/// let mut buf = vec![0; theirs.max_msg_size()];
/// let n = theirs.recv(&mut buf)?;
/// assert_eq!(&buf[..n], b"over the new channel");
/// # Ok(()) }
/// ```
pub fn send_channel(sock: impl AsFd) -> io::Result<StreamEndpoint> {
    let (ours, theirs) = socket::socketpair_stream()?;
    send_fd(sock, &UnixStream::from(theirs))?;
    StreamEndpoint::new(
        Mechanism::Uds,
        Some(ours),
        None,
        true,
        Wait::Block,
        DEFAULT_STREAM_MAX,
    )
}

/// Takes a channel [`send_channel`] passed over `sock`, as a framed endpoint (blocking waits,
/// [`DEFAULT_STREAM_MAX`]).
///
/// # Errors
///
/// As [`recv_fd`] (a descriptor that is not a Unix stream socket is refused and closed).
pub fn recv_channel(sock: impl AsFd) -> io::Result<StreamEndpoint> {
    let s: UnixStream = recv_fd(sock)?;
    StreamEndpoint::new(
        Mechanism::Uds,
        Some(OwnedFd::from(s)),
        None,
        true,
        Wait::Block,
        DEFAULT_STREAM_MAX,
    )
}
