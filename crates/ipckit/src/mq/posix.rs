//! POSIX message queues (`mq_overview(7)`), with priorities: the highest priority waiting is
//! received first, in send order within a priority.
//!
//! On Linux a queue descriptor is a file descriptor, so waiting uses `poll` like every other
//! descriptor, and a queue endpoint whose peer said hello watches it with a pidfd.
//!
//! # Examples
//!
//! ```
//! use ipckit::mq::posix::PosixMqBuilder;
//! use ipckit::Transport;
//! # fn main() -> std::io::Result<()> {
//! let name = format!("/doc-mq-{}", std::process::id()); // removed when `q` drops
//! let mut q = PosixMqBuilder::new(name).create()?;
//! q.send_priority(b"low", 1)?;
//! q.send_priority(b"high", 9)?;
//! let mut buf = vec![0; q.max_msg_size()];
//! let (n, prio) = q.recv_priority(&mut buf)?;
//! assert_eq!((&buf[..n], prio), (&b"high"[..], 9));
//! # Ok(()) }
//! ```
//!
//! # References
//!
//! `mq_overview(7)`, `mq_open(3)`, `mq_send(3)`, `mq_receive(3)`.

use super::Watched;
use crate::error::{invalid, RecvError, SendError};
use crate::peer;
use crate::registry::{self, ObjectGuard, ObjectKind};
use crate::sys::{fd as sysfd, mq};
use crate::transport::{Mechanism, PeerInfo, RawHandle, Transport};
use crate::wait::{drive, Deadline, Wait};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

/// Builds a [`PosixMq`]: `PosixMqBuilder::new(name).max_msgs(..).max_msg_size(..).wait(..)
/// .mode(..)`, then [`create`](PosixMqBuilder::create) (a new queue, removed when the endpoint
/// drops), [`open`](PosixMqBuilder::open) (an existing queue, read and written) or
/// [`open_sender`](PosixMqBuilder::open_sender) (an existing queue, sent to only, watching its
/// receiver). Also reachable as [`PosixMq::builder`].
///
/// The terminal methods take `&self`, as [`std::fs::OpenOptions::open`] does, so one builder
/// can try [`open`](PosixMqBuilder::open) and then [`create`](PosixMqBuilder::create).
///
/// # Examples
///
/// ```
/// use ipckit::mq::posix::PosixMqBuilder;
/// use ipckit::{Transport, Wait};
/// use std::time::Duration;
/// # fn main() -> std::io::Result<()> {
/// // Process 1: the queue, 4 messages of up to 64 bytes, removed when `rx` drops.
/// let name = format!("/doc-mq-builder-{}", std::process::id());
/// let mut rx = PosixMqBuilder::new(&name).max_msgs(4).max_msg_size(64).create()?;
/// // Process 2 (here the same process): a sender that learns of the receiver's end.
/// let mut tx = PosixMqBuilder::new(&name).wait(Wait::Spin).open_sender()?;
/// tx.send_timeout(b"hello", Duration::from_secs(10))?;
/// let mut buf = [0; 64];
/// let n = rx.recv_timeout(&mut buf, Duration::from_secs(10))?;
/// assert_eq!(&buf[..n], b"hello");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until create(), open() or open_sender()"]
pub struct PosixMqBuilder {
    name: String,
    /// `None`: `/proc/sys/fs/mqueue/msg_default`.
    max_msgs: Option<usize>,
    /// `None`: `/proc/sys/fs/mqueue/msgsize_max`.
    max_msg_size: Option<usize>,
    mode: u32,
    wait: Wait,
    allow_other_users: bool,
}

impl PosixMqBuilder {
    /// A queue named `name` (`/` then up to 255 bytes, no other `/`; checked by the terminal
    /// methods). Defaults: the system's queue depth (`msg_default`) and largest message
    /// (`msgsize_max`), mode 0600, [`Wait::Block`].
    pub fn new(name: impl Into<String>) -> PosixMqBuilder {
        PosixMqBuilder {
            name: name.into(),
            max_msgs: None,
            max_msg_size: None,
            mode: 0o600,
            wait: Wait::Block,
            allow_other_users: false,
        }
    }

    /// Messages the queue holds (`mq_maxmsg`); by default `/proc/sys/fs/mqueue/msg_default`.
    /// Used by [`create`](PosixMqBuilder::create) only: an existing queue keeps its own.
    pub fn max_msgs(mut self, n: usize) -> Self {
        self.max_msgs = Some(n);
        self
    }

    /// Largest message (`mq_msgsize`); by default `/proc/sys/fs/mqueue/msgsize_max`. Used by
    /// [`create`](PosixMqBuilder::create) only: an existing queue keeps its own.
    pub fn max_msg_size(mut self, bytes: usize) -> Self {
        self.max_msg_size = Some(bytes);
        self
    }

    /// Permission bits of a new queue (0600 by default). Used by
    /// [`create`](PosixMqBuilder::create) only.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// The endpoint's wait strategy ([`Wait::Block`] by default).
    pub fn wait(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// Whether [`open`](PosixMqBuilder::open) and
    /// [`open_sender`](PosixMqBuilder::open_sender) accept a queue another user owns, or
    /// one other users may write (`false` by default: such a queue is `PermissionDenied`,
    /// as its owner could read what we send or inject what we receive).
    pub fn allow_other_users(mut self, on: bool) -> Self {
        self.allow_other_users = on;
        self
    }

    /// Creates the queue, exclusively (it must not exist), owner-only unless
    /// [`mode`](PosixMqBuilder::mode) says otherwise, recorded in the registry. The queue is
    /// removed when the endpoint is dropped.
    ///
    /// # Errors
    ///
    /// `AlreadyExists`, `InvalidInput` for a bad name or sizes over the system limits, or the
    /// OS error (`EMFILE` when `RLIMIT_MSGQUEUE` is used up).
    #[doc(alias = "mq_open")]
    pub fn create(&self) -> io::Result<PosixMq> {
        let (fd, guard) = create_queue(&self.name, self)?;
        let dup = sysfd::dup(fd.as_fd())?;
        PosixMq::from_parts(Some(fd), Some(dup), self.wait, vec![guard])
    }

    /// Opens an existing queue, created by ipckit or by any other program, to receive from
    /// and send to it; never creates one. No handshake: a queue another program filled is
    /// read as it is. The sizes and the mode are ignored (the queue has its own).
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such queue, `InvalidInput` for a bad name,
    /// `PermissionDenied` (also for another user's queue, see
    /// [`allow_other_users`](PosixMqBuilder::allow_other_users)), or the OS error.
    pub fn open(&self) -> io::Result<PosixMq> {
        let name = self.name.as_str();
        check_name(name)?;
        let fd = mq::open(name, None).map_err(|e| not_found(e, name))?;
        let dup = sysfd::dup(fd.as_fd())?;
        let q = PosixMq::from_parts(Some(fd), Some(dup), self.wait, Vec::new())?;
        super::check_owner(name, q.owner()?, self.allow_other_users)?;
        Ok(q)
    }

    /// Opens an existing queue to send to it only, as a one-way sender that learns of its
    /// receiver's end: the process holding the queue open for reading is watched with a
    /// pidfd while a send waits for room, and a send fails with [`SendError::PeerGone`]
    /// within about 100 ms once no process has the queue open for reading (the receiver
    /// was killed, exited, or closed it). See [`crate::mq`] for how. The sizes and the mode
    /// are ignored.
    ///
    /// A send that finds room never waits, so messages can be queued before a receiver
    /// opens the queue; a send that must wait with no receiver there fails at once.
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such queue, `InvalidInput` for a bad name,
    /// `PermissionDenied` (also for another user's queue, see
    /// [`allow_other_users`](PosixMqBuilder::allow_other_users)), or the OS error.
    pub fn open_sender(&self) -> io::Result<PosixMq> {
        let name = self.name.as_str();
        check_name(name)?;
        let fd = mq::open_write_only(name).map_err(|e| not_found(e, name))?;
        let st = crate::sys::fd::fstat(fd.as_fd())?;
        super::check_owner(
            name,
            (st.st_uid, st.st_mode & 0o777),
            self.allow_other_users,
        )?;
        let mut me = PosixMq::from_parts(None, Some(fd), self.wait, Vec::new())?;
        let id = (st.st_dev, st.st_ino);
        let watch = find_reader(name, id)
            .0
            .and_then(|(pid, fd)| Watched::new(pid, Some(fd)));
        me.peer = watch.as_ref().map(|w| PeerInfo {
            pid: w.pid,
            watched: true,
        });
        me.one_way = Some(OneWay {
            name: name.to_owned(),
            id,
            others_may_read: st.st_mode & 0o044 != 0,
            watch,
        });
        Ok(me)
    }

    /// Creates the two queues of a duplex pair (`NAME.c2s`, `NAME.s2c`) with this builder's
    /// sizes, mode and wait; the server receives on the first and sends on the second.
    /// [`PosixMq::accept`] completes it.
    pub(crate) fn create_pair(&self) -> io::Result<PosixMq> {
        let name = &self.name;
        let (c2s, g1) = create_queue(&format!("{name}.c2s"), self)?;
        let (s2c, g2) = create_queue(&format!("{name}.s2c"), self)?;
        PosixMq::from_parts(Some(c2s), Some(s2c), self.wait, vec![g1, g2])
    }
}

fn proc_limit(name: &str, dflt: usize) -> usize {
    std::fs::read_to_string(format!("/proc/sys/fs/mqueue/{name}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(dflt)
}

/// The system's largest POSIX message for unprivileged processes (`msgsize_max`).
pub fn system_max_msg_size() -> usize {
    proc_limit("msgsize_max", 8192)
}

/// Validates a queue name: `/` then 1..=255 bytes with no further `/`, not `/.` or `/..`.
pub(crate) fn check_name(name: &str) -> io::Result<()> {
    let ok = name.len() >= 2
        && name.len() <= 255
        && name.starts_with('/')
        && !name[1..].contains('/')
        && !name.contains('\0')
        // The queue file system's own `.` and `..`, not queues (mq_open says EACCES).
        && name != "/."
        && name != "/..";
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "'{name}' is not a POSIX queue name (expected /name, no other '/')"
        )))
    }
}

/// A POSIX message-queue endpoint: receives from one queue and sends to one queue (the same
/// queue when made by [`PosixMqBuilder::create`] or [`PosixMqBuilder::open`]).
#[derive(Debug)]
pub struct PosixMq {
    rq: Option<OwnedFd>,
    sq: Option<OwnedFd>,
    wait: Wait,
    max: usize,
    priority: u32,
    /// A message taken from the kernel that did not fit the caller's buffer.
    stash: Option<(Vec<u8>, u32)>,
    scratch: Vec<u8>,
    peer: Option<PeerInfo>,
    pidfd: Option<OwnedFd>,
    gone: bool,
    blocking: bool,
    /// A one-way sender ([`PosixMqBuilder::open_sender`]) and the receiver it watches.
    one_way: Option<OneWay>,
    _guards: Vec<ObjectGuard>,
}

/// What a one-way sender knows of its queue and receiver.
#[derive(Debug)]
struct OneWay {
    name: String,
    /// Device and inode of the queue, to recognise it in other processes' descriptors.
    id: (u64, u64),
    /// The queue's mode lets other users read it: a receiver may then hide in a process
    /// whose descriptors we cannot see.
    others_may_read: bool,
    watch: Option<Watched>,
}

/// How long a one-way sender waits in one `poll` before checking that its receiver still
/// holds the queue.
const SLICE: Duration = Duration::from_millis(100);

/// The access mode of descriptor `fd` of `pid`, from `/proc/PID/fdinfo/FD` (`flags:` octal).
fn access_mode(pid: u32, fd: &str) -> Option<i32> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(str::trim)?;
    i32::from_str_radix(flags, 8)
        .ok()
        .map(|f| f & libc::O_ACCMODE)
}

/// True if `pid`'s descriptor `fd` is the queue `id`, open for reading.
fn holds_for_reading(pid: u32, fd: &str, id: (u64, u64)) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).is_ok_and(|m| (m.dev(), m.ino()) == id)
        && access_mode(pid, fd).is_some_and(|a| a != libc::O_WRONLY)
}

/// `ENOENT` from opening queue `name`, in words.
fn not_found(e: io::Error, name: &str) -> io::Error {
    if e.raw_os_error() == Some(libc::ENOENT) {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no POSIX queue named {name}"),
        )
    } else {
        e
    }
}

/// Another process that has queue `name` (`id`) open for reading: (pid, descriptor), and
/// whether some process's descriptors could not be read. Only processes whose
/// `/proc/PID/fd` we may read are seen (our own uid's, or all for root).
fn find_reader(name: &str, id: (u64, u64)) -> (Option<(u32, i32)>, bool) {
    let me = std::process::id();
    let mut hidden = false;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return (None, true);
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let fds = match std::fs::read_dir(p.path().join("fd")) {
            Ok(fds) => fds,
            Err(e) => {
                hidden |= e.kind() == io::ErrorKind::PermissionDenied;
                continue;
            }
        };
        for fd in fds.flatten() {
            // An mq descriptor reads back as the queue's name under the mqueue mount.
            let named = std::fs::read_link(fd.path())
                .is_ok_and(|l| l.to_str().is_some_and(|l| l.ends_with(name)));
            let num = fd.file_name();
            let Some(num) = num.to_str() else { continue };
            if named && holds_for_reading(pid, num, id) {
                return (num.parse().ok().map(|n| (pid, n)), hidden);
            }
        }
    }
    (None, hidden)
}

fn create_queue(name: &str, opts: &PosixMqBuilder) -> io::Result<(OwnedFd, ObjectGuard)> {
    check_name(name)?;
    let msg_size = opts.max_msg_size.unwrap_or_else(system_max_msg_size);
    let max_msgs = opts
        .max_msgs
        .unwrap_or_else(|| proc_limit("msg_default", 10));
    let guard = registry::register(ObjectKind::MqPosix, name)?;
    let fd = mq::open(
        name,
        Some(mq::Create {
            mode: opts.mode,
            max_msgs: max_msgs as i64,
            msg_size: msg_size as i64,
        }),
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::EINVAL) => invalid(format!(
            "cannot create queue {name} with {max_msgs} messages of {msg_size} bytes: over the \
                 system limits (msg_max {}, msgsize_max {})",
            proc_limit("msg_max", 10),
            system_max_msg_size()
        )),
        Some(libc::EMFILE) => io::Error::new(
            e.kind(),
            format!(
                "cannot create queue {name}: RLIMIT_MSGQUEUE (bytes of queues per user) is used up"
            ),
        ),
        _ => e,
    });
    let mut guard = guard;
    match fd {
        Ok(fd) => {
            // What it is, so that only this queue is ever unlinked by that name.
            guard.identify_mq(fd.as_fd())?;
            Ok((fd, guard))
        }
        Err(e) => {
            // The queue was not created: drop the record but do not unlink someone else's
            // queue of the same name.
            guard.forget_object();
            Err(e)
        }
    }
}

impl PosixMq {
    fn from_parts(
        rq: Option<OwnedFd>,
        sq: Option<OwnedFd>,
        wait: Wait,
        guards: Vec<ObjectGuard>,
    ) -> io::Result<Self> {
        let q = rq.as_ref().or(sq.as_ref()).expect("at least one queue");
        let (_, msgsize, _) = mq::getattr(q.as_fd())?;
        Ok(PosixMq {
            rq,
            sq,
            wait,
            max: msgsize as usize,
            priority: 0,
            stash: None,
            scratch: Vec::new(),
            peer: None,
            pidfd: None,
            gone: false,
            blocking: false,
            one_way: None,
            _guards: guards,
        })
    }

    /// A builder for a queue named `name`: [`PosixMqBuilder::new`].
    pub fn builder(name: impl Into<String>) -> PosixMqBuilder {
        PosixMqBuilder::new(name)
    }

    /// A one-way sender's send: try, and while the queue is full wait in `poll` on the queue
    /// and the receiver's pidfd, in slices, checking at each slice's end that the receiver
    /// still holds the queue.
    fn send_one_way(&mut self, msg: &[u8], prio: u32, deadline: Deadline) -> Result<(), SendError> {
        let Some(fd) = self.sq.as_ref().map(|f| f.as_fd()) else {
            return Err(SendError::Io(invalid("receive-only endpoint")));
        };
        let ow = self.one_way.as_mut().expect("checked by caller");
        loop {
            match mq::send(fd, msg, prio) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(SendError::from(e)),
            }
            if deadline == Deadline::Now {
                return Err(SendError::Full);
            }
            let slice = match deadline.remaining() {
                Some(left) if left.is_zero() => return Err(SendError::Timeout),
                Some(left) => left.min(SLICE),
                None => SLICE,
            };
            if ow.watch.is_none() {
                let (found, hidden) = find_reader(&ow.name, ow.id);
                ow.watch = found.and_then(|(pid, fd)| Watched::new(pid, Some(fd)));
                self.peer = ow.watch.as_ref().map(|w| PeerInfo {
                    pid: w.pid,
                    watched: true,
                });
                if ow.watch.is_none() {
                    if !(hidden && ow.others_may_read) {
                        return Err(SendError::PeerGone);
                    }
                    // Another user's process may read it, unseen: wait for room, as a plain
                    // queue does, and look again after the slice.
                    sysfd::poll(&[(fd, libc::POLLOUT)], Some(slice))?;
                    continue;
                }
            }
            let w = ow.watch.as_ref().expect("set above");
            let lost = match sysfd::poll(
                &[(fd, libc::POLLOUT), (w.pidfd(), libc::POLLIN)],
                Some(slice),
            )? {
                sysfd::Ready::Fd(0) => false,
                sysfd::Ready::Fd(_) => true,
                sysfd::Ready::TimedOut => {
                    let num = w.fd.map(|n| n.to_string()).unwrap_or_default();
                    !holds_for_reading(w.pid, &num, ow.id)
                }
            };
            if lost {
                // Look for another reader before the next try; none means gone.
                ow.watch = None;
            }
        }
    }

    /// A blocking wait with no deadline is one blocking `mq_send`/`mq_receive` when no peer is
    /// watched. With a watched peer the queue stays non-blocking and waits in `poll` on the
    /// queue and the pidfd together: a timed call would do too, but arming its timer for
    /// every sleep costs more than the extra `poll` on a VM (measured: 8 KiB throughput 0.93
    /// of the raw loop with timed calls).
    fn mode_for(&mut self, deadline: Deadline) -> io::Result<bool> {
        let want = self.wait == Wait::Block && deadline == Deadline::Never && self.pidfd.is_none();
        if want != self.blocking {
            for q in self.rq.iter().chain(self.sq.iter()) {
                mq::set_nonblocking(q.as_fd(), !want)?;
            }
            self.blocking = want;
        }
        Ok(want)
    }

    /// The queue's owner uid and permission bits, to decide whether to trust a queue that
    /// was already there.
    ///
    /// # Errors
    ///
    /// The `fstat` error.
    pub fn owner(&self) -> io::Result<(u32, u32)> {
        let q = self
            .rq
            .as_ref()
            .or(self.sq.as_ref())
            .expect("at least one queue");
        let st = crate::sys::fd::fstat(q.as_fd())?;
        Ok((st.st_uid, st.st_mode & 0o777))
    }

    /// The priority plain `send` uses (0 by default).
    pub fn set_priority(&mut self, prio: u32) {
        self.priority = prio;
    }

    /// Sends with an explicit priority (higher is received first), waiting for room as long
    /// as it takes.
    ///
    /// # Errors
    ///
    /// As [`Transport::send`].
    pub fn send_priority(&mut self, msg: &[u8], prio: u32) -> Result<(), SendError> {
        self.send_prio_deadline(msg, prio, Deadline::Never)
    }

    /// [`PosixMq::send_priority`] without waiting: [`SendError::Full`] when there is no room.
    ///
    /// # Errors
    ///
    /// As [`Transport::try_send`].
    pub fn try_send_priority(&mut self, msg: &[u8], prio: u32) -> Result<(), SendError> {
        self.send_prio_deadline(msg, prio, Deadline::Now)
    }

    /// [`PosixMq::send_priority`], waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As [`Transport::send_timeout`].
    pub fn send_priority_timeout(
        &mut self,
        msg: &[u8],
        prio: u32,
        timeout: Duration,
    ) -> Result<(), SendError> {
        self.send_prio_deadline(msg, prio, Deadline::after(timeout))
    }

    /// Receives the oldest message of the highest priority, returning (length, priority),
    /// waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// As [`Transport::recv`].
    pub fn recv_priority(&mut self, buf: &mut [u8]) -> Result<(usize, u32), RecvError> {
        self.recv_prio_deadline(buf, Deadline::Never)
    }

    /// [`PosixMq::recv_priority`] without waiting: [`RecvError::Empty`] when nothing is there.
    ///
    /// # Errors
    ///
    /// As [`Transport::try_recv`].
    pub fn try_recv_priority(&mut self, buf: &mut [u8]) -> Result<(usize, u32), RecvError> {
        self.recv_prio_deadline(buf, Deadline::Now)
    }

    /// [`PosixMq::recv_priority`], waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Transport::recv_timeout`].
    pub fn recv_priority_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<(usize, u32), RecvError> {
        self.recv_prio_deadline(buf, Deadline::after(timeout))
    }

    fn recv_prio_deadline(
        &mut self,
        buf: &mut [u8],
        deadline: Deadline,
    ) -> Result<(usize, u32), RecvError> {
        if let Some((m, p)) = self.stash.take() {
            if m.len() > buf.len() {
                let needed = m.len();
                self.stash = Some((m, p));
                return Err(RecvError::BufferTooSmall { needed });
            }
            buf[..m.len()].copy_from_slice(&m);
            return Ok((m.len(), p));
        }
        if self.gone {
            return Err(RecvError::PeerGone);
        }
        self.mode_for(deadline)?;
        let fd = self
            .rq
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "send-only endpoint"))?
            .as_fd();
        let pidfd = self.pidfd.as_ref().map(|p| p.as_fd());
        // mq_receive insists on a buffer of at least mq_msgsize.
        let direct = buf.len() >= self.max;
        if !direct && self.scratch.len() < self.max {
            self.scratch.resize(self.max, 0);
        }
        let dst: &mut [u8] = if direct { buf } else { &mut self.scratch };
        let receive = |dst: &mut [u8]| mq::receive(fd, dst);
        let (n, prio) = drive(
            self.wait,
            deadline,
            fd,
            libc::POLLIN,
            pidfd,
            || match receive(dst) {
                Ok(v) => Ok(Some(v)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(RecvError::from(e)),
            },
        )?;
        let got: &[u8] = if direct {
            &buf[..n]
        } else {
            &self.scratch[..n]
        };
        if self.pidfd.is_some() && peer::is_bye(got, self.peer.map(|p| p.pid)) {
            self.gone = true;
            return Err(RecvError::PeerGone);
        }
        if !direct {
            if n > buf.len() {
                self.stash = Some((self.scratch[..n].to_vec(), prio));
                return Err(RecvError::BufferTooSmall { needed: n });
            }
            buf[..n].copy_from_slice(&self.scratch[..n]);
        }
        Ok((n, prio))
    }

    fn send_prio_deadline(
        &mut self,
        msg: &[u8],
        prio: u32,
        deadline: Deadline,
    ) -> Result<(), SendError> {
        if msg.len() > self.max {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max: self.max,
            });
        }
        if self.one_way.is_some() {
            return self.send_one_way(msg, prio, deadline);
        }
        self.mode_for(deadline)?;
        let fd = self
            .sq
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "receive-only endpoint"))?
            .as_fd();
        let pidfd = self.pidfd.as_ref().map(|p| p.as_fd());
        drive(
            self.wait,
            deadline,
            fd,
            libc::POLLOUT,
            pidfd,
            || match mq::send(fd, msg, prio) {
                Ok(()) => Ok(Some(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(SendError::from(e)),
            },
        )
    }

    /// Server side of the hello: waits for the client's, answers with ours, then watches the
    /// client with a pidfd. A timeout leaves the queue pair as it was, for another try.
    pub(crate) fn accept(&mut self, deadline: Deadline) -> io::Result<()> {
        let hello = peer::exchange_hello(self, false, deadline)?;
        (self.peer, self.pidfd) = peer::watch(&hello);
        Ok(())
    }

    /// Client side of a duplex pair made by [`PosixMqBuilder::create_pair`].
    pub(crate) fn connect_pair(name: &str, wait: Wait, deadline: Deadline) -> io::Result<PosixMq> {
        check_name(name)?;
        let open = |n: String| {
            mq::open(&n, None).map_err(|e| {
                if e.raw_os_error() == Some(libc::ENOENT) {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("no POSIX queue named {n}: is the peer running?"),
                    )
                } else {
                    e
                }
            })
        };
        let sq = open(format!("{name}.c2s"))?;
        let rq = open(format!("{name}.s2c"))?;
        let mut me = Self::from_parts(Some(rq), Some(sq), wait, Vec::new())?;
        let hello = peer::exchange_hello(&mut me, true, deadline)?;
        (me.peer, me.pidfd) = peer::watch(&hello);
        Ok(me)
    }
}

impl Drop for PosixMq {
    fn drop(&mut self) {
        if self.pidfd.is_some() && !self.gone {
            if let Some(sq) = &self.sq {
                // Never block in drop: a full queue (a peer that stopped reading) just misses
                // the goodbye and learns of the end from its pidfd.
                let _ = mq::timed_send(sq.as_fd(), &peer::bye(), 0, 0);
            }
        }
    }
}

impl Transport for PosixMq {
    crate::transport::endpoint_accessors!(fixed Mechanism::MqPosix);

    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<(), SendError> {
        self.send_prio_deadline(msg, self.priority, deadline)
    }

    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize, RecvError> {
        self.recv_prio_deadline(buf, deadline).map(|(n, _)| n)
    }

    fn peer(&self) -> Option<PeerInfo> {
        self.peer
    }

    fn raw(&self) -> RawHandle<'_> {
        RawHandle::Fds {
            read: self.rq.as_ref().map(|f| f.as_fd()),
            write: self.sq.as_ref().map(|f| f.as_fd()),
        }
    }
}
