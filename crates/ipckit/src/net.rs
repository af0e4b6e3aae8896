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
