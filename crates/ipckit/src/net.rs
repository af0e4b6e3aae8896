//! TCP listening sockets with the options a multi-process server needs.
//!
//! [`tcp_listener`] sets `SO_REUSEADDR` and, on request, `SO_REUSEPORT` before `bind`, which
//! `std::net::TcpListener::bind` cannot. With `SO_REUSEPORT` several sockets of the same user
//! bind one address and the kernel spreads incoming connections over them (one socket per
//! worker process, no shared accept queue).
//!
//! # Examples
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! let fd = ipckit::net::tcp_listener("127.0.0.1:0".parse().unwrap(), false, 128)?;
//! let l = std::net::TcpListener::from(fd);
//! assert!(l.local_addr()?.port() != 0);
//! # Ok(()) }
//! ```

use crate::sys::tcp;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

/// A listening TCP socket on `addr`: non-blocking, close-on-exec, `SO_REUSEADDR`, plus
/// `SO_REUSEPORT` if `reuseport`; IPv6 addresses are `IPV6_V6ONLY`. `backlog` is passed to
/// `listen` (the kernel caps it at `net.core.somaxconn`).
///
/// # Errors
///
/// The OS error of `socket`, `setsockopt`, `bind` (e.g. `AddrInUse`) or `listen`, with the
/// address in the message.
///
/// # References
///
/// socket(7) `SO_REUSEPORT`, tcp(7), listen(2).
#[doc(alias = "SO_REUSEPORT")]
pub fn tcp_listener(addr: SocketAddr, reuseport: bool, backlog: i32) -> io::Result<OwnedFd> {
    tcp::tcp_listener(addr, reuseport, backlog)
        .map_err(|e| io::Error::new(e.kind(), format!("listening on {addr}: {e}")))
}

/// Adopts a listening TCP socket this process inherited by number (a parent passed it with
/// [`crate::pipe::inherit_only`] and told the number). The same checks as for the other
/// inherited descriptors apply: not stdio, open, close-on-exec clear (so nothing here owns
/// it yet), and it must be a listening TCP socket; adoption sets close-on-exec, so the
/// number cannot be adopted twice.
///
/// # Errors
///
/// `InvalidInput` naming the descriptor and what is wrong with it.
pub fn adopt_listener(fd: std::os::fd::RawFd) -> io::Result<OwnedFd> {
    crate::sys::proc::adopt_inherited(fd, crate::sys::proc::Inherited::TcpListener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    #[test]
    fn reuseport_lets_sockets_share_a_port_and_plain_does_not() {
        let a = tcp_listener("127.0.0.1:0".parse().unwrap(), true, 16).unwrap();
        let addr = std::net::TcpListener::from(a.try_clone().unwrap())
            .local_addr()
            .unwrap();
        let b = tcp_listener(addr, true, 16).unwrap();
        let e = tcp_listener(addr, false, 16).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
        // Both accept connections to the one address.
        let _c = std::net::TcpStream::connect(addr).unwrap();
        drop((a, b));
    }

    #[test]
    fn adopt_refuses_what_was_not_inherited() {
        let l = tcp_listener("127.0.0.1:0".parse().unwrap(), false, 16).unwrap();
        // Close-on-exec is set: something here owns it.
        let e = adopt_listener(l.as_raw_fd()).unwrap_err();
        assert!(e.to_string().contains("close-on-exec"), "{e}");
        assert!(adopt_listener(1).is_err());
        // A connected (not listening) socket is refused even with the flag clear.
        let s = std::net::TcpStream::connect(std::net::TcpListener::from(l).local_addr().unwrap())
            .unwrap();
        let fd = OwnedFd::from(s);
        crate::sys::fd::set_cloexec(std::os::fd::AsFd::as_fd(&fd), false).unwrap();
        let raw = fd.into_raw_fd();
        let e = adopt_listener(raw).unwrap_err();
        assert!(e.to_string().contains("not a listening TCP socket"), "{e}");
        // Not adopted: it is still ours (the number came from `into_raw_fd`), close it.
        drop(crate::sys::fd::owned(raw));
    }
}
