//! What the roles share: the default paths and address forms (Unix, FIFO pair, IP), opening
//! and binding with the options' mode, policy and timeout, checking a peer's uid, and the
//! limits of each mechanism.

use super::{Options, UDP_MAX_V4};
use crate::error::invalid;
use crate::fifo;
use crate::registry::{self, ObjectGuard};
use crate::stream::DEFAULT_STREAM_MAX;
use crate::sys::{fd as sysfd, socket};
use crate::transport::{Mechanism, PeerInfo};
use crate::unix::{ListenerBuilder, Policy, UnixListener};
use crate::wait::Deadline;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

pub(super) fn default_path(mech: Mechanism) -> PathBuf {
    std::env::temp_dir().join(registry::unique_name(mech.name()))
}

/// A Unix socket address parsed from `@name` or a path.
pub(super) fn unix_addr(addr: &str) -> io::Result<socket::UnixAddr<'_>> {
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

/// Opens a FIFO's read end, accepting FIFOs of other users (or open to them) only when the
/// options say so.
pub(super) fn fifo_read(path: &Path, opts: &Options) -> io::Result<OwnedFd> {
    if opts.allow_other_users || opts.mode & 0o022 != 0 {
        fifo::FifoBuilder::new(path)
            .allow_other_users(true)
            .open_read_fd()
    } else {
        fifo::FifoBuilder::new(path).open_read_fd()
    }
}

/// Opens a FIFO's write end; see [`fifo_read`].
pub(super) fn fifo_write(path: &Path, opts: &Options) -> io::Result<OwnedFd> {
    if opts.allow_other_users || opts.mode & 0o022 != 0 {
        fifo::FifoBuilder::new(path)
            .timeout(opts.timeout)
            .allow_other_users(true)
            .open_write_fd()
    } else {
        fifo::FifoBuilder::new(path)
            .timeout(opts.timeout)
            .open_write_fd()
    }
}

/// A UDP socket on an ephemeral port of the right family, connected to `address`.
pub(super) fn udp_connected(address: &str) -> io::Result<(UdpSocket, SocketAddr)> {
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
pub(crate) fn ip_addr(addr: &str) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()
        .map_err(|_| invalid(format!("'{addr}' is not a host:port address")))?
        .next()
        .ok_or_else(|| invalid(format!("'{addr}' resolves to no address")))
}

/// Binds a Unix socket of type `ty` at `addr`, owner-only, recorded in the registry: the
/// same code as [`crate::unix::ListenerBuilder::create`] (safe directory, exact mode, stale
/// files reclaimed), with a taken address reported as `AlreadyExists` as it always was here.
pub(super) fn bind_unix(
    ty: i32,
    addr: &str,
    mode: u32,
) -> io::Result<(OwnedFd, Option<ObjectGuard>)> {
    let ua = unix_addr(addr)?;
    crate::unix::bind_socket(ty, &ua, addr, mode).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(io::ErrorKind::AlreadyExists, e.to_string())
        } else {
            e
        }
    })
}

/// Connects a Unix socket of type `ty` to `addr`.
pub(super) fn connect_unix(ty: i32, addr: &str) -> io::Result<OwnedFd> {
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
pub(super) fn policy(opts: &Options) -> Policy {
    if opts.allow_other_users {
        Policy::any()
    } else {
        Policy::same_uid()
    }
}

/// A Unix stream or seqpacket listener at `addr` with the options' mode and policy.
pub(super) fn unix_listener(
    mech: Mechanism,
    addr: &str,
    opts: &Options,
) -> io::Result<UnixListener> {
    unix_addr(addr)?;
    let mut b = ListenerBuilder::new(addr)
        .mode(opts.mode)
        .policy(policy(opts))
        .seqpacket(mech == Mechanism::UdsSeqpacket)
        .wait(opts.wait);
    if let Some(m) = opts.max_msg_size {
        b = b.max_msg_size(m);
    }
    b.create().map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(io::ErrorKind::AlreadyExists, e.to_string())
        } else {
            e
        }
    })
}

/// The client's side of the policy check: the listener's uid, as the server checks ours.
pub(super) fn check_peer_uid(fd: &OwnedFd, allow_others: bool) -> io::Result<Option<PeerInfo>> {
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

pub(super) fn max_for(mech: Mechanism, opts: &Options) -> usize {
    opts.max_msg_size.unwrap_or(match mech {
        Mechanism::Udp => UDP_MAX_V4,
        _ => DEFAULT_STREAM_MAX,
    })
}

pub(super) fn deadline(opts: &Options) -> Deadline {
    Deadline::after(opts.timeout)
}

pub(super) fn timed_out(what: &str, opts: &Options) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} within {:.1} s", opts.timeout.as_secs_f64()),
    )
}

/// Waits for `fd` to become readable, at most the options' timeout.
pub(super) fn wait_readable(fd: impl AsFd, opts: &Options, what: &str) -> io::Result<()> {
    match sysfd::poll(&[(fd.as_fd(), libc::POLLIN)], Some(opts.timeout))? {
        sysfd::Ready::Fd(_) => Ok(()),
        sysfd::Ready::TimedOut => Err(timed_out(what, opts)),
    }
}

pub(super) fn with_ext(base: &Path, ext: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

pub(super) fn grow_ip_buffers(s: &UdpSocket) {
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
