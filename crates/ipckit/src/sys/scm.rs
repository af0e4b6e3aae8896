//! `sendmsg`/`recvmsg` with control data: descriptors (`SCM_RIGHTS`) and credentials
//! (`SCM_CREDENTIALS`) over `AF_UNIX` sockets, and `SO_PASSCRED`.
//!
//! The control bytes are built and read by the pure codec in `cmsg` (public as
//! `crate::unix::ancillary`); this file only moves them through the kernel, and turns every
//! descriptor the kernel installed into an `OwnedFd` before anything else can fail.
//!
//! # Safety
//!
//! Each `unsafe` block is one libc call whose `msghdr` points at live locals and slices with
//! their true lengths, or the adoption of descriptors the kernel has just installed for this
//! process in the control data of a successful `recvmsg` (argued where it happens).

use super::cmsg::{self, Credentials, DecodeError};
use super::fd::{cvt_r, owned};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// `sendmsg(fd, {data}, control, flags | MSG_NOSIGNAL)`: returns the data bytes sent. The
/// control bytes come from [`cmsg::encode`]; an empty slice sends none.
pub(crate) fn sendmsg(
    fd: BorrowedFd<'_>,
    data: &[u8],
    control: &[u8],
    flags: i32,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no data, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !control.is_empty() {
        // The kernel copies msg_control into its own buffer before reading it, so the
        // user buffer needs no particular alignment on Linux.
        msg.msg_control = control.as_ptr() as *mut libc::c_void;
        msg.msg_controllen = control.len() as _;
    }
    // SAFETY: `msg` points at `iov` (into `data`) and at `control`, live for the call, with
    // their true lengths; the kernel only reads through them.
    cvt_r(|| unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags | libc::MSG_NOSIGNAL) })
        .map(|n| n as usize)
}

/// What one `recvmsg` brought, with the descriptors already owned.
#[derive(Debug)]
pub(crate) struct RecvMsg {
    /// Data bytes received (for a truncated datagram, the bytes that fit).
    pub(crate) len: usize,
    /// `msg_flags`: `MSG_TRUNC`, `MSG_CTRUNC`, ...
    pub(crate) flags: i32,
    /// Every `SCM_RIGHTS` descriptor the kernel installed, close-on-exec, in arrival order.
    pub(crate) fds: Vec<OwnedFd>,
    /// The sender's pidfd (`SO_PASSPIDFD`), installed close-on-exec.
    pub(crate) pidfd: Option<OwnedFd>,
    /// The sender's credentials, if an `SCM_CREDENTIALS` message came.
    pub(crate) creds: Option<Credentials>,
    /// A malformed control buffer (never seen from a correct kernel).
    pub(crate) malformed: Option<DecodeError>,
}

/// `recvmsg(fd, {buf}, control of control_cap bytes, flags | MSG_CMSG_CLOEXEC)`.
///
/// Every descriptor the kernel installed becomes an `OwnedFd` before this returns, whatever
/// the flags say: with `MSG_CTRUNC` the ones that fit are in `fds` (and are closed when the
/// caller drops them), the rest were never installed.
pub(crate) fn recvmsg(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    control_cap: usize,
    flags: i32,
) -> io::Result<RecvMsg> {
    // u64 words: aligned for cmsghdr whatever the allocator gives for bytes.
    let mut control = vec![0u64; control_cap.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid; we point it at live locals below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if control_cap > 0 {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control_cap as _;
    }
    let n = loop {
        // SAFETY: every pointer in `msg` refers to `iov` (into `buf`) or `control`, live for
        // the call and at least as long as the lengths the kernel is told.
        let r = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags | libc::MSG_CMSG_CLOEXEC) };
        if r != -1 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            // A failed recvmsg installs no descriptor.
            return Err(e);
        }
        // An interrupted one neither; the kernel resets nothing we rely on but the length.
        msg.msg_controllen = if control_cap > 0 { control_cap as _ } else { 0 };
    };
    let used = (msg.msg_controllen as usize).min(control_cap);
    let bytes: Vec<u8> = control
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .take(used)
        .collect();
    let decoded = cmsg::decode(&bytes);
    // The kernel wrote `bytes` (msg_controllen of them, no more) in this successful recvmsg,
    // and each number in an SCM_RIGHTS or SCM_PIDFD message there is a descriptor it just
    // installed for us, owned by nobody yet; the decoder reports each number once, as
    // written. Adopting them all here, before anything can fail, is what makes sure none
    // leaks.
    let mut fds: Vec<OwnedFd> = decoded
        .all_fds()
        .filter(|&raw| raw >= 0)
        .map(owned)
        .collect();
    let pidfd = decoded
        .pidfd()
        .filter(|&raw| raw >= 0)
        .and_then(|raw| fds.iter().rposition(|f| f.as_raw_fd() == raw))
        .map(|i| fds.remove(i));
    Ok(RecvMsg {
        len: n,
        flags: msg.msg_flags,
        fds,
        pidfd,
        creds: decoded.credentials(),
        malformed: decoded.error,
    })
}

/// Sets `SO_PASSCRED`: every message received on this socket then carries the sender's
/// `SCM_CREDENTIALS`, as the kernel vouches for them.
pub(crate) fn set_passcred(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    super::socket::set_int_opt(fd, libc::SOL_SOCKET, libc::SO_PASSCRED, i32::from(on))
}

/// Whether `SO_PASSCRED` is set.
pub(crate) fn passcred(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(super::socket::int_opt(fd, libc::SOL_SOCKET, libc::SO_PASSCRED)? != 0)
}

/// Sets `SO_PASSPIDFD` (Linux 6.5+): every message received then brings a pidfd of its
/// sender.
pub(crate) fn set_passpidfd(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    super::socket::set_int_opt(fd, libc::SOL_SOCKET, cmsg::SO_PASSPIDFD, i32::from(on))
}

/// Whether `SO_PASSPIDFD` is set (false on kernels without it).
pub(crate) fn passpidfd(fd: BorrowedFd<'_>) -> io::Result<bool> {
    match super::socket::int_opt(fd, libc::SOL_SOCKET, cmsg::SO_PASSPIDFD) {
        Ok(v) => Ok(v != 0),
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// This process's credentials (`getpid`, `geteuid`, `getegid`), as a sender may claim them.
pub(crate) fn own_credentials() -> Credentials {
    // SAFETY: getpid, geteuid and getegid take no arguments and cannot fail.
    let (pid, uid, gid) = unsafe { (libc::getpid(), libc::geteuid(), libc::getegid()) };
    Credentials { pid, uid, gid }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::cmsg::{
        cmsg_len, cmsg_space, credentials_space, rights_space, CMSG_HEADER_LEN,
    };

    /// The codec's arithmetic agrees with libc's macros, for every length a message can have.
    #[test]
    fn cmsg_arithmetic_matches_libc() {
        for n in 0..=4096u32 {
            // SAFETY: CMSG_SPACE and CMSG_LEN are pure arithmetic on their argument.
            let (space, len) = unsafe { (libc::CMSG_SPACE(n), libc::CMSG_LEN(n)) };
            assert_eq!(cmsg_space(n as usize), space as usize, "CMSG_SPACE({n})");
            assert_eq!(cmsg_len(n as usize), len as usize, "CMSG_LEN({n})");
        }
        // SAFETY: as above.
        let (r, c, h) = unsafe {
            (
                libc::CMSG_SPACE(3 * 4),
                libc::CMSG_SPACE(std::mem::size_of::<libc::ucred>() as u32),
                libc::CMSG_LEN(0),
            )
        };
        assert_eq!(rights_space(3), r as usize);
        assert_eq!(credentials_space(), c as usize);
        assert_eq!(CMSG_HEADER_LEN, h as usize);
    }

    /// What the codec encodes, libc's CMSG_FIRSTHDR/CMSG_NXTHDR/CMSG_DATA read back.
    #[test]
    fn libc_walks_what_the_codec_encodes() {
        let creds = Credentials {
            pid: 7,
            uid: 8,
            gid: 9,
        };
        let bytes = cmsg::encode(&[11, 12, 13], Some(creds));
        let mut words: Vec<u64> = bytes
            .chunks(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                u64::from_ne_bytes(w)
            })
            .collect();
        // SAFETY: an all-zero msghdr is valid; it points at `words`, live below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_control = words.as_mut_ptr().cast();
        msg.msg_controllen = bytes.len() as _;
        let mut seen = Vec::new();
        // SAFETY: the macros walk `words` within msg_controllen; the data reads are of the
        // lengths the headers give, inside the buffer, unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let data = libc::CMSG_DATA(c);
                let n = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let d = std::slice::from_raw_parts(data, n).to_vec();
                seen.push(((*c).cmsg_level, (*c).cmsg_type, d));
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        assert_eq!(seen.len(), 2);
        assert_eq!(
            (seen[0].0, seen[0].1),
            (libc::SOL_SOCKET, libc::SCM_CREDENTIALS)
        );
        assert_eq!(&seen[0].2[..4], &7i32.to_ne_bytes());
        assert_eq!((seen[1].0, seen[1].1), (libc::SOL_SOCKET, libc::SCM_RIGHTS));
        let fds: Vec<i32> = seen[1]
            .2
            .chunks(4)
            .map(|c| i32::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(fds, vec![11, 12, 13]);
    }
}
