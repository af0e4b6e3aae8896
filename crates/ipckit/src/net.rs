//! For servers: TCP listening sockets with the options a multi-process server needs
//! (`ipckit serve` uses them), and an accept that saves an event loop two `fcntl` calls.
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
//! let l = ipckit::net::tcp_listener("127.0.0.1:0".parse().unwrap(), false, 128)?;
//! assert!(l.local_addr()?.port() != 0);
//! # Ok(()) }
//! ```

use crate::sys::tcp;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};

/// For servers: a listening TCP socket on `addr`: non-blocking, close-on-exec,
/// `SO_REUSEADDR`, plus `SO_REUSEPORT` if `reuseport`; IPv6 addresses are `IPV6_V6ONLY`.
/// `backlog` is passed to `listen` (the kernel caps it at `net.core.somaxconn`).
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
pub fn tcp_listener(addr: SocketAddr, reuseport: bool, backlog: i32) -> io::Result<TcpListener> {
    tcp::tcp_listener(addr, reuseport, backlog)
        .map(TcpListener::from)
        .map_err(|e| io::Error::new(e.kind(), format!("listening on {addr}: {e}")))
}

/// For servers: accepts one connection from a listening socket, already non-blocking and
/// close-on-exec (`accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`): an event loop saves the `fcntl`
/// calls std's `accept` followed by `set_nonblocking` would cost per connection. `EINTR` is
/// retried.
///
/// # Errors
///
/// `WouldBlock` when none is queued on a non-blocking listener; `EMFILE`/`ENFILE` at the
/// descriptor limits; `ECONNABORTED`; the `accept4` error.
#[doc(alias = "accept4")]
pub fn accept(listener: &TcpListener) -> io::Result<TcpStream> {
    use std::os::fd::AsFd as _;
    crate::sys::socket::accept(listener.as_fd()).map(TcpStream::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuseport_lets_sockets_share_a_port_and_plain_does_not() {
        let a = tcp_listener("127.0.0.1:0".parse().unwrap(), true, 16).unwrap();
        let addr = a.local_addr().unwrap();
        let b = tcp_listener(addr, true, 16).unwrap();
        let e = tcp_listener(addr, false, 16).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
        // Both accept connections to the one address.
        let _c = std::net::TcpStream::connect(addr).unwrap();
        drop((a, b));
    }
}
