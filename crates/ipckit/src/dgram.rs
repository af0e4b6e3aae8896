//! The message-socket endpoint shared by Unix datagram, Unix seqpacket and UDP sockets. The
//! kernel keeps message boundaries, so there is no framing: one `send` is one message.
//!
//! # Unix datagram receivers check every sender
//!
//! A datagram socket has no connection whose peer could be checked once, and Linux gives
//! `SO_PEERCRED` on datagram sockets only for socketpairs; and an abstract address has no file mode
//! to keep other users out. So a one-way Unix datagram receiver
//! ([`ChannelBuilder::create_receiver`](crate::connect::ChannelBuilder::create_receiver)) sets
//! `SO_PASSCRED`, reads every datagram's `SCM_CREDENTIALS` (the kernel's word: an unprivileged
//! sender cannot claim another uid), and drops and counts ([`Transport::dropped`]) those its
//! [`Policy`] refuses (another uid, by default) unread. Path-bound receivers do the same, whatever
//! the file's mode.
//!
//! A sender checks its receiver the other way round with a hello before its first message
//! ([`ChannelBuilder::open_sender`](crate::connect::ChannelBuilder::open_sender)): it sets
//! `SO_PASSCRED` on its own socket, which is autobound and connected to the receiver, sends a probe
//! (a fixed text and a random nonce), and waits for the receiver's answer carrying the same nonce.
//! The answer's `SCM_CREDENTIALS` are checked against the sender's policy. It cannot be forged: a
//! connected datagram socket accepts datagrams only from the address it is connected to (the kernel
//! refuses anyone else's with `EPERM`), and the credentials are the kernel's. A receiver that is
//! not ipckit gets the probe (a readable line, `ipckit-dgram-hello`) and never answers, so the
//! sender fails with a clear error after its timeout instead of sending into a socket it cannot
//! vouch for.

use crate::error::{RecvError, SendError};
use crate::peer::{self, Hello, HELLO_LEN};
use crate::registry::ObjectGuard;
use crate::sys::{fd as sysfd, scm, socket};
use crate::transport::{Mechanism, PeerInfo, RawHandle, Transport};
use crate::unix::ancillary::Credentials;
use crate::unix::Policy;
use crate::wait::{drive, Deadline, Wait};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

/// A message-socket endpoint.
///
/// A one-way Unix datagram receiver
/// ([`ChannelBuilder::create_receiver`](crate::connect::ChannelBuilder::create_receiver)) checks
/// every datagram's `SCM_CREDENTIALS` against its [`Policy`] (our own uid by default) and drops and
/// counts ([`Transport::dropped`]) the refused ones unread: Linux gives `SO_PEERCRED` on datagram
/// sockets only for socketpairs, and an abstract address has no file mode. A sender
/// ([`ChannelBuilder::open_sender`](crate::connect::ChannelBuilder::open_sender)) first sends a
/// probe with a random nonce and waits for the receiver's answer, whose kernel-vouched credentials
/// it checks in turn; only the receiver can send to the sender's connected socket, so the answer
/// cannot be forged, and a socket that is not an ipckit receiver never answers (the sender fails
/// after its timeout).
#[derive(Debug)]
pub struct DgramEndpoint {
    mech: Mechanism,
    fd: OwnedFd,
    wait: Wait,
    max: usize,
    peer: Option<PeerInfo>,
    /// Watches the peer where the socket cannot tell us it is gone (datagram, UDP).
    pidfd: Option<OwnedFd>,
    /// Drop stray hello datagrams (UDP retransmits them during the handshake).
    filter_hello: bool,
    /// Paired by a hello: goodbyes are sent on drop and recognised on receipt.
    paired: bool,
    gone: bool,
    blocking: bool,
    /// A one-way Unix datagram receiver: the senders it accepts (see the module docs).
    policy: Option<Policy>,
    /// Datagrams dropped because the policy refused their sender.
    dropped: u64,
    _guards: Vec<ObjectGuard>,
}

/// The probe a Unix datagram sender opens with: this text, then a 16-byte nonce.
const PROBE: &[u8; 16] = b"ipckit-dgram-hel";
/// The receiver's answer: this text, then the probe's nonce.
const ANSWER: &[u8; 16] = b"ipckit-dgram-ack";
/// Length of a probe and of an answer.
const PROBE_LEN: usize = 32;

/// 16 bytes nobody can predict well enough to answer a probe they did not see.
fn nonce() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 16];
    for half in out.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

fn cred_of(c: &libc::ucred) -> Credentials {
    Credentials {
        pid: c.pid,
        uid: c.uid,
        gid: c.gid,
    }
}

/// The sender's side of the hello (see the module docs): probes the receiver that `fd` is
/// connected to and checks the credentials its answer carries against `policy`.
///
/// # Errors
///
/// `TimedOut` when no answer comes within `timeout` (not an ipckit receiver, or one that
/// does not accept us), `PermissionDenied` when the receiver's credentials are refused,
/// `ConnectionRefused` when nothing reads the socket, or the OS error.
pub(crate) fn verify_receiver(
    fd: &OwnedFd,
    policy: &Policy,
    timeout: Duration,
    addr: &str,
) -> io::Result<PeerInfo> {
    let fd = fd.as_fd();
    scm::set_passcred(fd, true)?;
    let deadline = std::time::Instant::now().checked_add(timeout);
    let left = || deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
    let no_answer = || {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the datagram socket at {addr} did not answer ipckit's hello within {:.1} s: \
                 it is not an ipckit receiver, or one that refuses our uid; nothing was sent",
                timeout.as_secs_f64()
            ),
        )
    };
    let n = nonce();
    let mut probe = [0u8; PROBE_LEN];
    probe[..16].copy_from_slice(PROBE);
    probe[16..].copy_from_slice(&n);
    loop {
        match socket::send(fd, &probe, libc::MSG_DONTWAIT) {
            Ok(_) => break,
            Err(e) if would_block(&e) => {
                if let sysfd::Ready::TimedOut = sysfd::poll(&[(fd, libc::POLLOUT)], left())? {
                    return Err(no_answer());
                }
            }
            Err(e) => return Err(e),
        }
    }
    let mut b = [0u8; 64];
    loop {
        if let sysfd::Ready::TimedOut = sysfd::poll(&[(fd, libc::POLLIN)], left())? {
            return Err(no_answer());
        }
        let (got, _, cred) = match socket::recv_from_unix_cred_flags(fd, &mut b, libc::MSG_DONTWAIT)
        {
            Ok(v) => v,
            Err(e) if would_block(&e) => continue,
            Err(e) => return Err(e),
        };
        // Only the receiver can send to this connected socket; anything but the answer is
        // ignored.
        if got != PROBE_LEN || b[..16] != ANSWER[..] || b[16..PROBE_LEN] != n {
            continue;
        }
        let Some(c) = cred.as_ref().map(cred_of) else {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the receiver at {addr} answered without credentials"),
            ));
        };
        if !policy.allows(&c, fd) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "refused the receiver at {addr}: it runs as uid {} (pid {}), and {policy} \
                     are accepted; nothing was sent",
                    c.uid, c.pid
                ),
            ));
        }
        return Ok(PeerInfo {
            pid: u32::try_from(c.pid).unwrap_or(0),
            watched: false,
        });
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl DgramEndpoint {
    pub(crate) fn new(mech: Mechanism, fd: OwnedFd, wait: Wait, max: usize) -> io::Result<Self> {
        sysfd::set_nonblocking(fd.as_fd(), true)?;
        Ok(DgramEndpoint {
            mech,
            fd,
            wait,
            max,
            peer: None,
            pidfd: None,
            filter_hello: false,
            paired: false,
            gone: false,
            blocking: false,
            policy: None,
            dropped: 0,
            _guards: Vec::new(),
        })
    }

    /// Makes this a checked Unix datagram receiver: `SO_PASSCRED` on, every datagram's
    /// sender checked against `policy`, refused ones dropped and counted, probes answered
    /// (see the module docs).
    pub(crate) fn with_policy(mut self, policy: Policy) -> io::Result<Self> {
        scm::set_passcred(self.fd.as_fd(), true)?;
        self.policy = Some(policy);
        Ok(self)
    }

    /// A checked receive: peek at the next datagram's length and sender, drop it unread if
    /// the policy refuses the sender, answer it if it is a probe, else take it.
    fn recv_checked(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize, RecvError> {
        if self.blocking {
            sysfd::set_nonblocking(self.fd.as_fd(), true)?;
            self.blocking = false;
        }
        let fd = self.fd.as_fd();
        let policy = self.policy.as_ref().expect("checked by caller");
        loop {
            let (len, _, cred) = drive(self.wait, deadline, fd, libc::POLLIN, None, || {
                match socket::recv_from_unix_cred_flags(
                    fd,
                    &mut [],
                    libc::MSG_PEEK | libc::MSG_TRUNC,
                ) {
                    Ok(v) => Ok(Some(v)),
                    Err(e) if would_block(&e) => Ok(None),
                    Err(e) => Err(RecvError::from(e)),
                }
            })?;
            let allowed = cred
                .as_ref()
                .is_some_and(|c| policy.allows(&cred_of(c), fd));
            if !allowed {
                // Dropped unread (descriptors a sender attached are closed by the kernel: no
                // control buffer is given).
                let _ = socket::recv(fd, &mut [], libc::MSG_DONTWAIT);
                self.dropped += 1;
                continue;
            }
            if len > buf.len() {
                return Err(RecvError::BufferTooSmall { needed: len });
            }
            let (n, from, _) = socket::recv_from_unix_cred_flags(fd, buf, libc::MSG_DONTWAIT)?;
            if n == PROBE_LEN && buf[..16] == PROBE[..] {
                let mut answer = [0u8; PROBE_LEN];
                answer[..16].copy_from_slice(ANSWER);
                answer[16..].copy_from_slice(&buf[16..PROBE_LEN]);
                // Best effort: a sender that went away needs no answer.
                let _ = socket::send_to_raw(fd, &answer, &from, libc::MSG_DONTWAIT);
                continue;
            }
            return Ok(n);
        }
    }

    pub(crate) fn with_peer(mut self, peer: Option<PeerInfo>, pidfd: Option<OwnedFd>) -> Self {
        // A pidfd means a hello was exchanged: say goodbye on drop, and honour the peer's.
        self.paired = pidfd.is_some() || self.paired;
        self.peer = peer;
        self.pidfd = pidfd;
        self
    }

    pub(crate) fn with_guards(mut self, guards: Vec<ObjectGuard>) -> Self {
        self._guards = guards;
        self
    }

    pub(crate) fn filter_hello(mut self, on: bool) -> Self {
        self.filter_hello = on;
        self
    }

    /// A blocking wait with no deadline is one blocking syscall, where the socket itself
    /// reports the peer's end (seqpacket, or endpoints with no peer to watch). Where a pidfd
    /// watches the peer (datagram pairs, UDP), the socket stays non-blocking and waits in
    /// `poll` on the socket and the pidfd together: a kernel receive timeout would do too, but
    /// arming its timer for every sleep cost ~10 us a round trip on a VM (measured on UDP:
    /// paired ratio to the raw loop 1.14 with it, 1.01 without), the extra `poll` ~0.5 us.
    fn mode_for(&mut self, deadline: Deadline) -> io::Result<()> {
        let want = self.wait == Wait::Block && deadline == Deadline::Never && self.pidfd.is_none();
        if want != self.blocking {
            sysfd::set_nonblocking(self.fd.as_fd(), !want)?;
            self.blocking = want;
        }
        Ok(())
    }

    /// A seqpacket `recv` of 0 bytes is either an empty message or the end: the peer has
    /// shut down if the socket reports `POLLRDHUP`.
    ///
    /// With the peer shut down, bytes still queued mean this 0 was an empty record with more
    /// behind it. Left ambiguous: empty records that are the very last before the close, which
    /// are reported as the end.
    fn seqpacket_eof(&self) -> bool {
        rdhup(&self.fd) && socket::bytes_queued(self.fd.as_fd()).map_or(true, |n| n == 0)
    }
}

/// True if the peer of a connected socket has shut down its sending side.
fn rdhup(fd: &OwnedFd) -> bool {
    // POLLHUP and POLLERR are always reported as well; any of them means no more messages.
    matches!(
        sysfd::poll(&[(fd.as_fd(), libc::POLLRDHUP)], Some(Duration::ZERO)),
        Ok(sysfd::Ready::Fd(_))
    )
}

impl Transport for DgramEndpoint {
    crate::transport::endpoint_accessors!(field mech);

    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<(), SendError> {
        if msg.len() > self.max {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max: self.max,
            });
        }
        self.mode_for(deadline)?;
        let fd = self.fd.as_fd();
        let pidfd = self.pidfd.as_ref().map(|p| p.as_fd());
        drive(
            self.wait,
            deadline,
            fd,
            libc::POLLOUT,
            pidfd,
            || match socket::send(fd, msg, 0) {
                Ok(_) => Ok(Some(())),
                Err(e) if would_block(&e) => Ok(None),
                // A UDP peer's port closing shows up as ECONNREFUSED on the next call.
                Err(e) => Err(e.into()),
            },
        )
    }

    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize, RecvError> {
        if self.gone {
            return Err(RecvError::PeerGone);
        }
        if self.policy.is_some() {
            return self.recv_checked(buf, deadline);
        }
        self.mode_for(deadline)?;
        let fd = self.fd.as_fd();
        let pidfd = self.pidfd.as_ref().map(|p| p.as_fd());
        let small = buf.len() < self.max;
        loop {
            let n = drive(self.wait, deadline, fd, libc::POLLIN, pidfd, || {
                // With a buffer smaller than the maximum, look at the length first so a message
                // that does not fit stays queued.
                let r = if small {
                    socket::recv(fd, &mut [], libc::MSG_PEEK | libc::MSG_TRUNC)
                } else {
                    socket::recv(fd, buf, libc::MSG_TRUNC)
                };
                match r {
                    Ok(n) => Ok(Some(n)),
                    Err(e) if would_block(&e) => Ok(None),
                    Err(e) => Err(RecvError::from(e)),
                }
            })?;
            let n = if small {
                if n > buf.len() {
                    return Err(RecvError::BufferTooSmall { needed: n });
                }
                socket::recv(fd, buf, libc::MSG_TRUNC)?
            } else {
                n
            };
            if n > buf.len() {
                return Err(RecvError::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a {n}-byte datagram exceeded the {}-byte buffer and was truncated",
                        buf.len()
                    ),
                )));
            }
            if n == 0 && self.mech == Mechanism::UdsSeqpacket && self.seqpacket_eof() {
                return Err(RecvError::PeerGone);
            }
            if self.filter_hello && n == HELLO_LEN && Hello::decode(&buf[..n]).is_some() {
                continue;
            }
            if self.paired && peer::is_bye(&buf[..n], self.peer.map(|p| p.pid)) {
                self.gone = true;
                return Err(RecvError::PeerGone);
            }
            return Ok(n);
        }
    }

    fn peer(&self) -> Option<PeerInfo> {
        self.peer
    }

    fn dropped(&self) -> u64 {
        self.dropped
    }

    fn raw(&self) -> RawHandle<'_> {
        RawHandle::Fds {
            read: Some(self.fd.as_fd()),
            write: Some(self.fd.as_fd()),
        }
    }
}

impl Drop for DgramEndpoint {
    fn drop(&mut self) {
        if self.paired && !self.gone {
            let _ = socket::send(self.fd.as_fd(), &peer::bye(), libc::MSG_DONTWAIT);
        }
    }
}

/// The socket, readable and writable: register it with epoll (or anything else) directly.
impl AsFd for DgramEndpoint {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
