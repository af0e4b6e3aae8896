//! The master's listening sockets: per address, one socket every worker shares
//! ([`AcceptMode::Exclusive`]) or one `SO_REUSEPORT` socket per worker index
//! ([`AcceptMode::ReusePort`]). The master keeps them open for as long as a worker of their
//! generation lives, so a retiring worker never drops a queued connection.

use crate::config::{AcceptMode, Config};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The listen backlog: `net.core.somaxconn` (the kernel's cap), else nginx's 511.
fn backlog() -> i32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|n: &i32| *n > 0)
        .unwrap_or(511)
}

/// The listening sockets of one configuration: per address, one socket (exclusive) or one
/// per worker index (reuseport).
#[derive(Debug)]
pub(super) struct Listeners {
    mode: AcceptMode,
    by_addr: Vec<(SocketAddr, Vec<OwnedFd>)>,
}

impl Listeners {
    /// Sockets for `c`, reusing (duplicating) those of `old` for addresses it already has.
    pub(super) fn build(c: &Config, old: Option<&Listeners>) -> io::Result<Listeners> {
        let per_addr = match c.accept {
            AcceptMode::Exclusive => 1,
            AcceptMode::ReusePort => c.workers,
        };
        let reuseport = c.accept == AcceptMode::ReusePort;
        let mut by_addr = Vec::new();
        for &a in &c.listen {
            let kept: &[OwnedFd] = old
                .and_then(|o| o.by_addr.iter().find(|(x, _)| *x == a))
                .map_or(&[], |(_, v)| v.as_slice());
            let mut fds = Vec::with_capacity(per_addr);
            for i in 0..per_addr {
                fds.push(match kept.get(i) {
                    Some(fd) => fd.try_clone()?,
                    None => ipckit::net::tcp_listener(a, reuseport, backlog())?.into(),
                });
            }
            by_addr.push((a, fds));
        }
        Ok(Listeners {
            mode: c.accept,
            by_addr,
        })
    }

    /// The sockets worker `idx` accepts from.
    pub(super) fn for_worker(&self, idx: usize) -> Vec<BorrowedFd<'_>> {
        self.by_addr
            .iter()
            .map(|(_, v)| match self.mode {
                AcceptMode::Exclusive => v[0].as_fd(),
                AcceptMode::ReusePort => v[idx % v.len()].as_fd(),
            })
            .collect()
    }

    /// The bound addresses (port 0 resolved).
    pub(super) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.by_addr
            .iter()
            .map(|(a, v)| {
                v.first()
                    .and_then(|fd| fd.try_clone().ok())
                    .and_then(|fd| std::net::TcpListener::from(fd).local_addr().ok())
                    .unwrap_or(*a)
            })
            .collect()
    }
}
