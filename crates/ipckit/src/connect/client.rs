//! The peer's side of a pair ([`ChannelBuilder::open`](super::ChannelBuilder::open) and its
//! typed variants): opening what a [`PairListener`](super::PairListener) created from its
//! address, as a boxed [`Transport`], a [`StreamEndpoint`] or a [`DgramEndpoint`].

use super::open::{
    check_peer_uid, connect_unix, deadline, fifo_read, fifo_write, grow_ip_buffers, ip_addr,
    max_for, timed_out, udp_connected, wait_readable, with_ext,
};
use super::{Options, UDP_MAX_V4, UDP_MAX_V6};
use crate::dgram::DgramEndpoint;
use crate::error::invalid;
use crate::mq::posix::PosixMq;
use crate::mq::sysv::{self as sysvmod, SysvMq};
use crate::peer::{self, Hello, HELLO_LEN};
use crate::pipe;
use crate::stream::StreamEndpoint;
use crate::sys::{fd as sysfd, socket};
use crate::transport::{Mechanism, Transport};
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// Connects to a [`PairListener`](super::PairListener)'s address as its peer.
pub(super) fn connect(
    mech: Mechanism,
    address: &str,
    opts: &Options,
) -> io::Result<Box<dyn Transport>> {
    Ok(match connect_any(mech, address, opts)? {
        Connected::Stream(s) => Box::new(s),
        Connected::Dgram(d) => Box::new(d),
        Connected::Other(o) => o,
    })
}

/// [`connect`] for the byte-stream mechanisms, with the endpoint's own type.
pub(super) fn connect_stream(
    mech: Mechanism,
    address: &str,
    opts: &Options,
) -> io::Result<StreamEndpoint> {
    if !mech.is_stream() {
        return Err(invalid(format!(
            "{mech} is not a byte stream: use open_dgram or open"
        )));
    }
    match connect_any(mech, address, opts)? {
        Connected::Stream(s) => Ok(s),
        _ => unreachable!("byte streams connect as StreamEndpoint"),
    }
}

/// [`connect`] for the message-socket mechanisms, with the endpoint's own type.
pub(super) fn connect_dgram(
    mech: Mechanism,
    address: &str,
    opts: &Options,
) -> io::Result<DgramEndpoint> {
    if !matches!(
        mech,
        Mechanism::UdsDgram | Mechanism::UdsSeqpacket | Mechanism::Udp
    ) {
        return Err(invalid(format!(
            "{mech} is not a message socket: use open_stream or open"
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
        Mechanism::Pipe => Connected::from(
            pipe::PipeBuilder::new()
                .wait(opts.wait)
                .max_msg_size(max)
                .open(address)?,
        ),
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
        Mechanism::Shm => Connected::from(opts.pair(address).open()?),
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
