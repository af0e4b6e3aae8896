//! [`UnixListener`] and its [`ListenerBuilder`]; the socket file's making and reclaiming
//! (`bind_socket`), which the generic `connect` shares.

pub use super::policy::Policy;

use super::ancillary::Credentials;
use crate::dgram::DgramEndpoint;
use crate::error::invalid;
use crate::registry::{self, ObjectGuard, ObjectKind};
use crate::stream::{StreamEndpoint, DEFAULT_STREAM_MAX};
use crate::sys::{fd as sysfd, socket};
use crate::transport::{Mechanism, PeerInfo, Transport};
use crate::wait::Wait;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A peer the policy turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// Who it was.
    pub cred: Credentials,
    /// Bytes the peer had already sent, left unread when its connection was closed
    /// (`FIONREAD` just before the close): the listener never reads from a rejected peer.
    pub unread: usize,
}

/// Builds a [`UnixListener`]: `ListenerBuilder::new(addr).mode(..).policy(..).create()`.
#[derive(Debug, Clone)]
pub struct ListenerBuilder {
    addr: String,
    mode: u32,
    policy: Policy,
    backlog: i32,
    seqpacket: bool,
    wait: Wait,
    max_msg_size: Option<usize>,
}

impl ListenerBuilder {
    /// A listener at `addr`: a path, or `@name` for the abstract namespace. Defaults: a
    /// stream socket, mode 0600, [`Policy::same_uid`], backlog 128, [`Wait::Block`], 1 MiB
    /// messages.
    pub fn new(addr: impl Into<String>) -> ListenerBuilder {
        ListenerBuilder {
            addr: addr.into(),
            mode: 0o600,
            policy: Policy::same_uid(),
            backlog: 128,
            seqpacket: false,
            wait: Wait::Block,
            max_msg_size: None,
        }
    }

    /// Permission bits of the socket file (ignored for abstract names). Connecting needs
    /// write permission on the file.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Who may connect.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Length of the queue of connections not yet accepted (`listen`'s backlog).
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        self
    }

    /// A `SOCK_SEQPACKET` listener (message boundaries kept by the kernel) instead of a
    /// stream one.
    pub fn seqpacket(mut self, on: bool) -> Self {
        self.seqpacket = on;
        self
    }

    /// Wait strategy of the accepted endpoints.
    pub fn wait(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// Largest message of the accepted endpoints (1 MiB by default).
    pub fn max_msg_size(mut self, max: usize) -> Self {
        self.max_msg_size = Some(max);
        self
    }

    /// Creates the socket, binds it, sets the mode and listens: the listener is made
    /// exclusively (a live one at the address is `AddrInUse`) and its socket file is removed
    /// when it drops.
    ///
    /// If a socket file is already at the path, it is probed with a datagram `connect`,
    /// which queues nothing and sends nothing, so a live listener is not disturbed:
    /// `ECONNREFUSED` means no socket is bound to that file any more (its listener died), and
    /// the file is removed and bound anew; a connection, or `EPROTOTYPE` (a live socket of
    /// another type), means it is live, and it is left alone. The window: between the probe and
    /// the unlink, another process could unlink the stale file and bind its own; the file's
    /// device and inode are checked again just before the unlink, which narrows that window
    /// to the two calls but cannot close it (POSIX has no unlink-if-same).
    ///
    /// # Errors
    ///
    /// - `InvalidInput`: an empty address, a path or abstract name over 107 bytes (the
    ///   message names the limit), a NUL byte in it, or a path without a file name;
    /// - `PermissionDenied`: the directory is a symbolic link, not ours or root's, or
    ///   writable by others without the sticky bit;
    /// - `AddrInUse`: a live listener is at the path, or the abstract name is taken;
    /// - `AlreadyExists`: something that is not a socket is at the path (it is left alone);
    /// - the OS error of `socket`, `bind`, `chmod` or `listen`.
    #[doc(alias = "bind")]
    pub fn create(self) -> io::Result<UnixListener> {
        let ty = if self.seqpacket {
            libc::SOCK_SEQPACKET
        } else {
            libc::SOCK_STREAM
        };
        let ua = parse_addr(&self.addr)?;
        let (fd, guard) = bind_socket(ty, &ua, &self.addr, self.mode)?;
        socket::listen(fd.as_fd(), self.backlog)
            .map_err(|e| io::Error::new(e.kind(), format!("listen on {}: {e}", self.addr)))?;
        Ok(UnixListener {
            fd,
            seqpacket: self.seqpacket,
            addr: self.addr,
            policy: self.policy,
            wait: self.wait,
            max: self.max_msg_size.unwrap_or(DEFAULT_STREAM_MAX),
            rejected: AtomicU64::new(0),
            last: Mutex::new(None),
            _guard: guard,
        })
    }
}

/// A listening Unix stream or seqpacket socket that decides who may talk to it before
/// reading a byte. Shareable between threads: the accepts take `&self`.
///
/// - **Peer credentials.** Every accepted connection's `SO_PEERCRED` (pid, uid, gid, as they
///   were when the peer called `connect`) is checked against the listener's [`Policy`]; by
///   default only our own effective uid is let in. A peer outside the policy is closed at
///   once, unread, and counted ([`UnixListener::rejected`]); accept reports it as
///   `PermissionDenied`.
/// - **Safe socket files.** A socket file is only made in a directory we trust: not a
///   symbolic link, owned by us or root, and not writable by others unless sticky (like
///   `/tmp`). The file gets exactly the builder's mode (0600 by default), whatever the umask:
///   the socket is `fchmod`ed before `bind`, so the file is never wider than the mode, and
///   `chmod`ed after, so a narrowing umask is undone; both happen before `listen`, so no peer
///   can connect in between.
/// - **Stale files.** A socket file left by a dead listener is reclaimed; a live listener's is
///   never touched (see [`ListenerBuilder::create`]). Anything else at the path is refused and
///   left alone.
/// - **Abstract names** (`@name`) have no file, so no mode and no directory: anyone in the
///   network namespace can connect, and the policy is the only gate.
///
/// # Examples
///
/// ```
/// use ipckit::connect::ChannelBuilder;
/// use ipckit::unix::{ListenerBuilder, Policy};
/// use ipckit::{Mechanism, Transport};
/// use std::time::Duration;
/// # fn main() -> std::io::Result<()> {
/// # // A private directory of this example's own, so that examples running at once never meet.
/// # use std::os::unix::fs::DirBuilderExt;
/// # let dir = std::env::temp_dir().join(format!("doc-listener-{}", std::process::id()));
/// # std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
/// # let path = dir.join("app.sock").to_str().unwrap().to_owned();
/// // Process 1
/// let listener = ListenerBuilder::new(&path) // e.g. "/run/user/1000/app.sock"
///     .policy(Policy::same_uid())
///     .create()?;
///
/// // Process 2 (another process in real use; a thread here, so that the example runs)
/// let addr = path.clone();
/// let process_2 = std::thread::spawn(move || -> std::io::Result<()> {
///     let mut ep = ChannelBuilder::new(Mechanism::Uds).open(&addr)?;
///     ep.send(b"echo me")?;
///     let mut buf = [0; 64];
///     let n = ep.recv_timeout(&mut buf, Duration::from_secs(10))?;
///     assert_eq!(&buf[..n], b"echo me");
///     Ok(())
/// });
///
/// // Process 1: serve.
/// loop {
///     match listener.accept_timeout(Duration::from_secs(10)) {
///         Ok(mut ep) => {
///             let mut buf = vec![0; ep.max_msg_size()];
///             let n = ep.recv_timeout(&mut buf, Duration::from_secs(10))?;
///             ep.send(&buf[..n])?;
/// #           break; // one peer is enough for the example
///         }
///         // A peer of another uid: closed unread, counted; go on serving.
///         Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => eprintln!("{e}"),
///         Err(e) => return Err(e),
///     }
/// }
/// # process_2.join().unwrap()?;
/// # drop(listener); // removes the socket file
/// # std::fs::remove_dir(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct UnixListener {
    fd: OwnedFd,
    seqpacket: bool,
    addr: String,
    policy: Policy,
    wait: Wait,
    max: usize,
    rejected: AtomicU64,
    last: Mutex<Option<Rejection>>,
    _guard: Option<ObjectGuard>,
}

impl UnixListener {
    /// The address it listens at, as given (`@name` for abstract ones).
    pub fn address(&self) -> &str {
        &self.addr
    }

    /// [`Mechanism::Uds`] or [`Mechanism::UdsSeqpacket`].
    pub fn mechanism(&self) -> Mechanism {
        if self.seqpacket {
            Mechanism::UdsSeqpacket
        } else {
            Mechanism::Uds
        }
    }

    /// Who may connect.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// How many peers the policy turned away so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// The last peer the policy turned away.
    pub fn last_rejection(&self) -> Option<Rejection> {
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Accepts the next connection the policy lets in, waiting as long as it takes: the
    /// connected socket (non-blocking, close-on-exec) and its peer.
    ///
    /// # Errors
    ///
    /// `PermissionDenied` when the policy turned a peer away (closed unread and counted; call
    /// again to go on); the OS error.
    pub fn accept_raw(&self) -> io::Result<(OwnedFd, Credentials)> {
        self.accept_raw_within(None)
    }

    /// Accepts the next connection without waiting, and applies the policy.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when no connection is waiting; `PermissionDenied` when the policy turned
    /// the peer away (its connection is already closed, unread); the OS error.
    pub fn try_accept_raw(&self) -> io::Result<(OwnedFd, Credentials)> {
        let c = socket::accept(self.fd.as_fd())?;
        self.admit(c)
    }

    /// Like [`UnixListener::accept_raw`], waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// `TimedOut`; as [`UnixListener::accept_raw`].
    pub fn accept_raw_timeout(&self, timeout: Duration) -> io::Result<(OwnedFd, Credentials)> {
        self.accept_raw_within(Some(timeout))
    }

    /// `timeout`: `None` for no limit.
    fn accept_raw_within(&self, timeout: Option<Duration>) -> io::Result<(OwnedFd, Credentials)> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if let sysfd::Ready::TimedOut = sysfd::poll(&[(self.fd.as_fd(), libc::POLLIN)], left)? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no peer connected to {} within {:.1} s",
                        self.addr,
                        timeout.unwrap_or_default().as_secs_f64()
                    ),
                ));
            }
            match self.try_accept_raw() {
                // Another thread took it, or the peer gave up before we accepted.
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                other => return other,
            }
        }
    }

    /// Accepts the next peer the policy lets in as a framed endpoint, waiting as long as it
    /// takes: a [`StreamEndpoint`] for a stream listener, a [`DgramEndpoint`] for a
    /// seqpacket one.
    ///
    /// # Errors
    ///
    /// As [`UnixListener::accept_raw`].
    pub fn accept(&self) -> io::Result<Box<dyn Transport>> {
        let (fd, cred) = self.accept_raw()?;
        self.endpoint(fd, cred)
    }

    /// Like [`UnixListener::accept`], without waiting.
    ///
    /// # Errors
    ///
    /// As [`UnixListener::try_accept_raw`].
    pub fn try_accept(&self) -> io::Result<Box<dyn Transport>> {
        let (fd, cred) = self.try_accept_raw()?;
        self.endpoint(fd, cred)
    }

    /// Like [`UnixListener::accept`], waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`UnixListener::accept_raw_timeout`].
    pub fn accept_timeout(&self, timeout: Duration) -> io::Result<Box<dyn Transport>> {
        let (fd, cred) = self.accept_raw_timeout(timeout)?;
        self.endpoint(fd, cred)
    }

    /// Like [`UnixListener::accept`] on a stream listener, with the endpoint's type.
    ///
    /// # Errors
    ///
    /// `InvalidInput` on a seqpacket listener; as [`UnixListener::accept_raw`].
    pub fn accept_stream(&self) -> io::Result<StreamEndpoint> {
        self.check_stream()?;
        let (fd, cred) = self.accept_raw()?;
        self.stream_endpoint(fd, cred)
    }

    /// Like [`UnixListener::accept_stream`], without waiting.
    ///
    /// # Errors
    ///
    /// `InvalidInput` on a seqpacket listener; as [`UnixListener::try_accept_raw`].
    pub fn try_accept_stream(&self) -> io::Result<StreamEndpoint> {
        self.check_stream()?;
        let (fd, cred) = self.try_accept_raw()?;
        self.stream_endpoint(fd, cred)
    }

    /// Like [`UnixListener::accept_stream`], waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` on a seqpacket listener; as [`UnixListener::accept_raw_timeout`].
    pub fn accept_stream_timeout(&self, timeout: Duration) -> io::Result<StreamEndpoint> {
        self.check_stream()?;
        let (fd, cred) = self.accept_raw_timeout(timeout)?;
        self.stream_endpoint(fd, cred)
    }

    /// Like [`UnixListener::accept`] on a seqpacket listener, with the endpoint's type.
    ///
    /// # Errors
    ///
    /// `InvalidInput` on a stream listener; as [`UnixListener::accept_raw`].
    pub fn accept_seqpacket(&self) -> io::Result<DgramEndpoint> {
        self.check_seqpacket()?;
        let (fd, cred) = self.accept_raw()?;
        self.seqpacket_endpoint(fd, cred)
    }

    /// Like [`UnixListener::accept_seqpacket`], without waiting.
    ///
    /// # Errors
    ///
    /// `InvalidInput` on a stream listener; as [`UnixListener::try_accept_raw`].
    pub fn try_accept_seqpacket(&self) -> io::Result<DgramEndpoint> {
        self.check_seqpacket()?;
        let (fd, cred) = self.try_accept_raw()?;
        self.seqpacket_endpoint(fd, cred)
    }

    /// Like [`UnixListener::accept_seqpacket`], waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` on a stream listener; as [`UnixListener::accept_raw_timeout`].
    pub fn accept_seqpacket_timeout(&self, timeout: Duration) -> io::Result<DgramEndpoint> {
        self.check_seqpacket()?;
        let (fd, cred) = self.accept_raw_timeout(timeout)?;
        self.seqpacket_endpoint(fd, cred)
    }

    fn check_stream(&self) -> io::Result<()> {
        if self.seqpacket {
            return Err(invalid(format!(
                "{} is a seqpacket listener: use accept_seqpacket",
                self.addr
            )));
        }
        Ok(())
    }

    fn check_seqpacket(&self) -> io::Result<()> {
        if !self.seqpacket {
            return Err(invalid(format!(
                "{} is a stream listener: use accept_stream",
                self.addr
            )));
        }
        Ok(())
    }

    /// Wraps an accepted socket in the endpoint of the listener's type.
    pub(crate) fn endpoint(
        &self,
        fd: OwnedFd,
        cred: Credentials,
    ) -> io::Result<Box<dyn Transport>> {
        Ok(if self.seqpacket {
            Box::new(self.seqpacket_endpoint(fd, cred)?)
        } else {
            Box::new(self.stream_endpoint(fd, cred)?)
        })
    }

    pub(crate) fn stream_endpoint(
        &self,
        fd: OwnedFd,
        cred: Credentials,
    ) -> io::Result<StreamEndpoint> {
        Ok(
            StreamEndpoint::new(Mechanism::Uds, Some(fd), None, true, self.wait, self.max)?
                .with_peer(peer_info(&cred)),
        )
    }

    pub(crate) fn seqpacket_endpoint(
        &self,
        fd: OwnedFd,
        cred: Credentials,
    ) -> io::Result<DgramEndpoint> {
        let max = socket::grow_dgram_buffers(fd.as_fd(), self.max)?;
        Ok(
            DgramEndpoint::new(Mechanism::UdsSeqpacket, fd, self.wait, max)?
                .with_peer(peer_info(&cred), None),
        )
    }

    /// Applies the policy to a just-accepted connection. A refused peer's socket is closed
    /// without a single read: its bytes are only counted (`FIONREAD` does not consume).
    fn admit(&self, c: OwnedFd) -> io::Result<(OwnedFd, Credentials)> {
        let cred = super::peer_credentials(&c)?;
        if self.policy.allows(&cred, c.as_fd()) {
            return Ok((c, cred));
        }
        let unread = socket::bytes_queued(c.as_fd()).unwrap_or(0);
        drop(c);
        self.rejected.fetch_add(1, Ordering::Relaxed);
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Rejection { cred, unread });
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refused a peer of uid {} gid {} (pid {}) at {}: only {} may connect",
                cred.uid, cred.gid, cred.pid, self.addr, self.policy
            ),
        ))
    }

    /// Hands over the socket file's registry guard (the file lives as long as it does).
    pub(crate) fn into_guard(self) -> Option<ObjectGuard> {
        self._guard
    }
}

impl AsFd for UnixListener {
    /// The listening socket: readable when a connection waits to be accepted.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn peer_info(cred: &Credentials) -> Option<PeerInfo> {
    (cred.pid > 0).then_some(PeerInfo {
        pid: cred.pid as u32, // > 0, checked above
        watched: false,
    })
}

/// `@name` (abstract) or a path.
fn parse_addr(addr: &str) -> io::Result<socket::UnixAddr<'_>> {
    let ua = match addr.strip_prefix('@') {
        Some(name) => socket::UnixAddr::Abstract(name.as_bytes()),
        None => socket::UnixAddr::Path(Path::new(addr)),
    };
    socket::check_addr(&ua)?;
    Ok(ua)
}

/// What a probe found at a socket file.
enum Probe {
    Live,
    Stale,
}

/// Tells a live socket file from a stale one with a datagram `connect`: it sends nothing,
/// and a stream or seqpacket listener never sees it (a different type is `EPROTOTYPE`).
fn probe(path: &Path) -> io::Result<Probe> {
    let s = socket::unix_socket(libc::SOCK_DGRAM)?;
    match socket::connect(s.as_fd(), &socket::UnixAddr::Path(path)) {
        Ok(()) => Ok(Probe::Live),
        Err(e) => match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => Ok(Probe::Stale),
            Some(libc::EPROTOTYPE) => Ok(Probe::Live),
            _ => Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot tell whether the socket at {} is in use: {e}",
                    path.display()
                ),
            )),
        },
    }
}

/// Binds a Unix socket of type `ty` at `ua` (shown to the user as `shown`): for a path, in a
/// safe directory, reclaiming a stale file, with exactly `mode`, recorded in the registry.
/// The socket is not listening yet.
pub(crate) fn bind_socket(
    ty: i32,
    ua: &socket::UnixAddr<'_>,
    shown: &str,
    mode: u32,
) -> io::Result<(OwnedFd, Option<ObjectGuard>)> {
    use std::os::unix::ffi::OsStrExt as _;
    socket::check_addr(ua)?;
    let path = match ua {
        socket::UnixAddr::Abstract(_) => {
            let fd = socket::unix_socket(ty)?;
            socket::bind(fd.as_fd(), ua).map_err(|e| {
                if e.kind() == io::ErrorKind::AddrInUse {
                    io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("abstract address {shown} is in use"),
                    )
                } else {
                    io::Error::new(e.kind(), format!("bind {shown}: {e}"))
                }
            })?;
            return Ok((fd, None));
        }
        socket::UnixAddr::Path(p) => *p,
    };
    // The directory, checked and held: the socket file is identified, reclaimed and later
    // removed through this handle, never by its path again (see `crate::fs`).
    let parent = crate::fs::open_parent(path, "socket")?;
    let entry = std::os::unix::ffi::OsStrExt::as_bytes(parent.entry.as_os_str()).to_vec();
    let stale = match crate::fs::entry_id(parent.dir.as_fd(), &parent.entry) {
        Ok(id) if id.ftype == libc::S_IFSOCK => {
            if id.uid != registry::euid() {
                // Even where we could (root, or a directory of ours), another user's socket
                // file is theirs to remove.
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{shown} is a socket file of uid {}; another user's socket is left alone",
                        id.uid
                    ),
                ));
            }
            match probe(path)? {
                Probe::Live => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("a live listener is at {shown}"),
                    ))
                }
                Probe::Stale => Some(id),
            }
        }
        Ok(id) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{shown} exists and is {}, not a socket; it is left alone",
                    id.type_name()
                ),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io::Error::new(e.kind(), format!("{shown}: {e}"))),
    };
    let dir = parent.dir.try_clone()?;
    let mut guard = registry::register_file(ObjectKind::UnixSocket, parent)?;
    let made = (|| {
        if let Some(id) = stale {
            // Only the file we probed: if it changed since, someone else is at work here.
            match crate::fs::remove_if_same(
                dir.as_fd(),
                std::ffi::OsStr::from_bytes(&entry),
                &id,
                false,
            )
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot remove the stale socket at {shown}: {e}"),
                )
            })? {
                crate::fs::Removal::Removed | crate::fs::Removal::Gone => {}
                crate::fs::Removal::LeftAlone(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("{shown} changed while its stale socket was being reclaimed"),
                    ))
                }
            }
        }
        let fd = socket::unix_socket(ty)?;
        socket::fchmod(fd.as_fd(), mode & 0o777)?;
        socket::bind(fd.as_fd(), ua).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{shown} appeared while binding"),
                )
            } else {
                io::Error::new(e.kind(), format!("bind {shown}: {e}"))
            }
        })?;
        Ok(fd)
    })();
    let fd = match made {
        Ok(fd) => fd,
        Err(e) => {
            guard.forget_object();
            return Err(e);
        }
    };
    // `bind` looked the path up by name: the file it made must be the one in our directory.
    // If not (the path was redirected meanwhile), ours is elsewhere and is not ours to find.
    if let Err(e) = guard.identify_file(libc::S_IFSOCK) {
        guard.forget_object();
        return Err(io::Error::new(
            e.kind(),
            format!("{e} (the path {shown} no longer leads to the directory it did)"),
        ));
    }
    // The file now exists and is ours (the guard removes it on any error below). No peer can
    // connect before listen(), and a datagram peer needs write permission, which the fchmod
    // already narrowed to `mode`: this only undoes what a umask took away.
    crate::sys::fs::fchmodat(dir.as_fd(), &entry, mode & 0o7777)
        .map_err(|e| io::Error::new(e.kind(), format!("chmod {shown}: {e}")))?;
    Ok((fd, Some(guard)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_display_names_the_rule() {
        assert_eq!(Policy::any().to_string(), "any peer");
        assert_eq!(
            Policy::uids([1, 2]).or(Policy::gids([3])).to_string(),
            "peers of uid [1, 2] or gid [3]"
        );
    }

    #[test]
    fn addresses_are_checked_before_anything_is_made() {
        for bad in ["", "@", "@a\0b"] {
            let e = parse_addr(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {e}");
        }
        let long = format!("/{}", "x".repeat(107));
        let e = parse_addr(&long).unwrap_err();
        assert!(e.to_string().contains("107"), "{e}");
        assert!(parse_addr(&long[..107]).is_ok());
        let e = parse_addr(&format!("@{}", "x".repeat(108))).unwrap_err();
        assert!(e.to_string().contains("107"), "{e}");
        assert!(parse_addr(&format!("@{}", "x".repeat(107))).is_ok());
    }
}
