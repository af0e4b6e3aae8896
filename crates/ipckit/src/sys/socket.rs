//! `AF_UNIX` sockets of every type (stream, datagram, seqpacket), by path or in the abstract
//! namespace, and the message calls the datagram transports share with IP sockets.
//!
//! # Safety
//!
//! Each `unsafe` block is one libc call. Socket addresses are built in a local, zeroed
//! `sockaddr_un` whose length is computed from what was written; buffers are live slices
//! passed with their exact lengths; new descriptors become `OwnedFd` at once.

use super::fd::{cvt, cvt_r, owned};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Where a Unix socket lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnixAddr<'a> {
    Path(&'a Path),
    /// Abstract namespace: no file, gone when the last socket closes.
    Abstract(&'a [u8]),
}

fn sockaddr(addr: &UnixAddr<'_>) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let base = std::mem::offset_of!(libc::sockaddr_un, sun_path);
    let (bytes, lead): (&[u8], usize) = match addr {
        UnixAddr::Path(p) => (p.as_os_str().as_bytes(), 0),
        UnixAddr::Abstract(n) => (n, 1),
    };
    // A path needs room for its NUL terminator; an abstract name starts with a NUL instead.
    // Either way 107 bytes of the 108 in sun_path are ours.
    let limit = sa.sun_path.len() - 1;
    let what = if lead == 0 {
        "a Unix socket path"
    } else {
        "an abstract Unix socket name"
    };
    if bytes.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} cannot be empty"),
        ));
    }
    if bytes.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{what} may be at most {limit} bytes (sun_path holds {}); this one is {}: {}",
                sa.sun_path.len(),
                bytes.len(),
                String::from_utf8_lossy(bytes)
            ),
        ));
    }
    // The kernel would take a NUL inside an abstract name, but then the name cannot be
    // written as `@name` or told apart from a shorter one in logs: refuse it.
    if bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} cannot contain a NUL byte"),
        ));
    }
    for (i, b) in bytes.iter().enumerate() {
        sa.sun_path[lead + i] = *b as libc::c_char;
    }
    let len = base + lead + bytes.len() + usize::from(lead == 0);
    Ok((sa, len as libc::socklen_t))
}

/// `socket(AF_UNIX, ty | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)`.
pub(crate) fn unix_socket(ty: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_UNIX,
            ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    })?;
    Ok(owned(fd))
}

pub(crate) fn bind(fd: BorrowedFd<'_>, addr: &UnixAddr<'_>) -> io::Result<()> {
    let (sa, len) = sockaddr(addr)?;
    // SAFETY: `sa` is a live sockaddr_un and `len` is the number of bytes that are meaningful.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_un).cast(),
            len,
        )
    })?;
    Ok(())
}

pub(crate) fn connect(fd: BorrowedFd<'_>, addr: &UnixAddr<'_>) -> io::Result<()> {
    let (sa, len) = sockaddr(addr)?;
    // SAFETY: as in `bind`.
    cvt_r(|| unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_un).cast(),
            len,
        )
    })?;
    Ok(())
}

pub(crate) fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: listen takes no pointers.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(())
}

/// `accept4` with `SOCK_CLOEXEC | SOCK_NONBLOCK`.
pub(crate) fn accept(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: null address pointers are allowed: we do not want the peer address.
    let new = cvt_r(|| unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    })?;
    Ok(owned(new))
}

/// `send(fd, buf, MSG_NOSIGNAL | flags)`: a closed peer is `EPIPE`, never a SIGPIPE.
pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8], flags: i32) -> io::Result<usize> {
    // SAFETY: `buf` is a live slice of `buf.len()` bytes.
    cvt_r(|| unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            flags | libc::MSG_NOSIGNAL,
        )
    })
    .map(|n| n as usize)
}

/// `sendmsg` of up to three buffers as one message (or one stream write).
pub(crate) fn sendv(fd: BorrowedFd<'_>, bufs: &[&[u8]], flags: i32) -> io::Result<usize> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 3];
    assert!(bufs.len() <= iov.len());
    for (v, b) in iov.iter_mut().zip(bufs) {
        v.iov_base = b.as_ptr() as *mut libc::c_void;
        v.iov_len = b.len();
    }
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = bufs.len();
    // SAFETY: `msg` points at `iov`, whose entries point into live slices; all outlive the call.
    cvt_r(|| unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags | libc::MSG_NOSIGNAL) })
        .map(|n| n as usize)
}

/// `recv(fd, buf, flags)`. With `MSG_TRUNC` the return value is the datagram's real length.
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8], flags: i32) -> io::Result<usize> {
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes.
    cvt_r(|| unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) })
        .map(|n| n as usize)
}

/// Credentials of the peer of a connected Unix socket (`SO_PEERCRED`).
pub(crate) fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are live locals of the sizes getsockopt is told.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok(cred)
}

/// Sets an integer socket option.
pub(crate) fn set_int_opt(fd: BorrowedFd<'_>, level: i32, name: i32, val: i32) -> io::Result<()> {
    // SAFETY: `val` is a live i32 and we pass its size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&val as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// A raw `AF_UNIX` peer address, as `recvfrom` filled it.
#[derive(Clone, Copy)]
pub(crate) struct RawUnixAddr {
    sa: libc::sockaddr_un,
    len: libc::socklen_t,
}

impl std::fmt::Debug for RawUnixAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawUnixAddr")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// `connect` to an address `recvfrom` returned.
pub(crate) fn connect_raw(fd: BorrowedFd<'_>, addr: &RawUnixAddr) -> io::Result<()> {
    // SAFETY: `addr.sa` is a sockaddr_un the kernel filled, `addr.len` its meaningful length.
    cvt_r(|| unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr.sa as *const libc::sockaddr_un).cast(),
            addr.len,
        )
    })?;
    Ok(())
}

/// `sendto` an address `recvfrom` returned; `MSG_NOSIGNAL` is added.
pub(crate) fn send_to_raw(
    fd: BorrowedFd<'_>,
    data: &[u8],
    addr: &RawUnixAddr,
    flags: i32,
) -> io::Result<usize> {
    // SAFETY: `data` is a live slice of its true length; `addr.sa` is a sockaddr_un the kernel
    // filled, `addr.len` its meaningful length.
    let n = cvt_r(|| unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            flags | libc::MSG_NOSIGNAL,
            (&addr.sa as *const libc::sockaddr_un).cast(),
            addr.len,
        )
    })?;
    Ok(n as usize)
}

/// Binds an `AF_UNIX` socket to a kernel-chosen abstract address (autobind).
pub(crate) fn autobind(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_un is valid; only the family is set.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let len = std::mem::size_of::<libc::sa_family_t>() as libc::socklen_t;
    // SAFETY: binding with just the family asks the kernel to autobind; `sa` outlives the call.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_un).cast(),
            len,
        )
    })?;
    Ok(())
}

/// Send-buffer size the kernel granted (`SO_SNDBUF`).
pub(crate) fn sndbuf(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live locals sized as told.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&mut v as *mut i32).cast(),
            &mut len,
        )
    })?;
    Ok(v as usize)
}

/// Largest Unix datagram this socket can send: the send buffer, grown toward `want`.
pub(crate) fn grow_dgram_buffers(fd: BorrowedFd<'_>, want: usize) -> io::Result<usize> {
    let target =
        i32::try_from(want.saturating_mul(2).saturating_add(64 * 1024)).unwrap_or(i32::MAX);
    for (force, plain) in [
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
    ] {
        if set_int_opt(fd, libc::SOL_SOCKET, force, target).is_err() {
            let _ = set_int_opt(fd, libc::SOL_SOCKET, plain, target);
        }
    }
    // The kernel doubles the value for its bookkeeping; a datagram must fit the half, less
    // the skb overhead.
    let sb = sndbuf(fd)?;
    Ok((sb / 2).saturating_sub(4096).min(want))
}

/// Bytes queued for reading (`FIONREAD`); for seqpacket sockets, the sum over all records.
pub(crate) fn bytes_queued(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the live local `n`.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) })?;
    Ok(n.max(0) as usize)
}

/// `recvmsg` on an `AF_UNIX` datagram socket with `SO_PASSCRED` set: (length, sender address,
/// sender credentials as the kernel vouches for them).
pub(crate) fn recv_from_unix_cred(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, RawUnixAddr, Option<libc::ucred>)> {
    recv_from_unix_cred_flags(fd, buf, 0)
}

/// [`recv_from_unix_cred`] with `recvmsg` flags (`MSG_PEEK`, `MSG_TRUNC`, `MSG_DONTWAIT`).
/// With `MSG_TRUNC` the length is the datagram's full length, even past `buf`.
pub(crate) fn recv_from_unix_cred_flags(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: i32,
) -> io::Result<(usize, RawUnixAddr, Option<libc::ucred>)> {
    // SAFETY: an all-zero sockaddr_un is a valid out-value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one SCM_CREDENTIALS message, 8-aligned.
    let mut control = [0u64; 8];
    // SAFETY: an all-zero msghdr is valid; we point it at live locals below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut sa as *mut libc::sockaddr_un).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: every pointer in `msg` refers to a live local or to `buf`, with its true size.
    // MSG_CMSG_CLOEXEC: descriptors a sender attaches (SCM_RIGHTS) must not reach a child.
    let n = cvt_r(|| unsafe {
        libc::recvmsg(fd.as_raw_fd(), &mut msg, flags | libc::MSG_CMSG_CLOEXEC)
    })?;
    let mut cred = None;
    // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR walk the control buffer the kernel filled, within
    // msg_controllen; CMSG_DATA of an SCM_CREDENTIALS message holds one ucred, which we copy
    // out unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_CREDENTIALS {
                cred = Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(c).cast::<libc::ucred>(),
                ));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    // Nobody asked for descriptors here, but a sender may attach some: the kernel installed
    // them in this process, so close them rather than leak them.
    let used = (msg.msg_controllen as usize).min(std::mem::size_of_val(&control));
    let bytes: Vec<u8> = control
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .take(used)
        .collect();
    for raw in super::cmsg::decode(&bytes).all_fds() {
        if raw >= 0 {
            // The kernel just installed `raw` for us in this recvmsg; nothing owns it yet.
            drop(owned(raw));
        }
    }
    Ok((
        n as usize,
        RawUnixAddr {
            sa,
            len: msg.msg_namelen,
        },
        cred,
    ))
}

/// `socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)`: two connected stream sockets.
pub(crate) fn socketpair_stream() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` is a local array of two ints, which is what socketpair writes.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    Ok((owned(fds[0]), owned(fds[1])))
}

/// An integer socket option (`SO_TYPE`, `SO_DOMAIN`, ...).
pub(crate) fn int_opt(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut val: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `val` and `len` are live locals of the sizes getsockopt is told.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut val as *mut i32).cast(),
            &mut len,
        )
    })?;
    Ok(val)
}

/// Checks that `addr` fits a `sockaddr_un` (1..=107 bytes, no NUL), without making a socket.
pub(crate) fn check_addr(addr: &UnixAddr<'_>) -> io::Result<()> {
    sockaddr(addr).map(drop)
}

/// `fchmod` on a socket before `bind`: the socket file `bind` creates takes these bits (less
/// the umask), so it is never wider than `mode`, even for an instant.
pub(crate) fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: fchmod takes no pointers; `fd` is borrowed for the call.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })?;
    Ok(())
}

/// `SO_PEERGROUPS` (Linux 4.13): not in the libc crate; 59 on the architectures that use the
/// generic socket option numbers, unknown (`None`) elsewhere.
const SO_PEERGROUPS: Option<i32> = if cfg!(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64",
    target_arch = "powerpc64",
    target_arch = "loongarch64",
    target_arch = "s390x"
)) {
    Some(59)
} else {
    None
};

/// The supplementary groups of the peer of a connected Unix socket, as they were when it
/// connected (`SO_PEERGROUPS`).
pub(crate) fn peer_groups(fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let Some(opt) = SO_PEERGROUPS else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_PEERGROUPS is not known on this architecture",
        ));
    };
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` is a live buffer of `len` bytes; the kernel writes at most that
        // and sets `len` to what it wrote (or, on ERANGE, to what it needs).
        let r = cvt(unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        });
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        match r {
            Ok(_) => {
                groups.truncate(n);
                return Ok(groups);
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) && n > groups.len() => {
                groups.resize(n, 0);
            }
            Err(e) => return Err(e),
        }
    }
}
