//! System V message queues (`sysvipc(7)`), with message types. Receiving follows
//! `msgrcv(2)`'s rules for `msgtyp`: `0` takes the first message, a positive type the first
//! message of that type, a negative type the first message of the lowest type up to its
//! absolute value.
//!
//! System V queues have no descriptor to `poll`, so waiting works differently here:
//! `Spin` retries `IPC_NOWAIT` calls; `Block` makes the blocking call; `Adaptive` spins and
//! then blocks. Timed waits poll with `IPC_NOWAIT` and short sleeps. An endpoint whose peer
//! said hello runs a small watcher thread on the peer's pidfd: when the peer dies it posts a
//! wake-up message (tagged with a per-endpoint nonce, never delivered to the caller, and of
//! the type the blocked receive is waiting for) behind everything the peer sent, so a blocked
//! receiver drains the queue and then sees [`RecvError::PeerGone`]; and it empties the queue
//! only the dead peer read, so a sender blocked on it wakes too. It repeats both every 5 ms
//! while a call is still blocked. One case is beyond it: a receive blocked on a type that is
//! absent from a queue that is full of other types cannot be sent a wake-up. The waiting and
//! the watcher are in `wait.rs`, the keys in `key.rs`; this file holds the endpoint and its
//! builder.
//!
//! # References
//!
//! `sysvipc(7)`, `msgget(2)`, `msgsnd(2)`, `msgrcv(2)`, `msgctl(2)`.

mod key;
mod wait;

pub use self::key::{key_name, parse_key};

use self::wait::{run_wait, Blocked, Watcher};
use super::Watched;
use crate::error::{invalid, RecvError, SendError};
use crate::peer::{self, Hello};
use crate::registry::{self, ObjectGuard, ObjectKind};
use crate::sys::sysv;
use crate::transport::{Mechanism, PeerInfo, RawHandle, Transport};
use crate::wait::{Deadline, Wait};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Builds a [`SysvMq`]: `SysvMqBuilder::new(key).wait(..).mode(..)`, then
/// [`create`](SysvMqBuilder::create) (a new queue, removed when the endpoint drops),
/// [`open`](SysvMqBuilder::open) (an existing queue) or
/// [`open_sender`](SysvMqBuilder::open_sender) (an existing queue, sent to only, watching its
/// last reader). Also reachable as [`SysvMq::builder`].
///
/// The terminal methods take `&self`, as [`std::fs::OpenOptions::open`] does, so one builder
/// can try [`open`](SysvMqBuilder::open) and then [`create`](SysvMqBuilder::create).
///
/// # Examples
///
/// ```
/// use ipckit::mq::sysv::{parse_key, SysvMqBuilder};
/// # fn main() -> std::io::Result<()> {
/// # // A key of our own, so that examples running at once never meet (pids are < 2^22).
/// # let key = format!("{:#x}", 0x1c00_0000 + std::process::id());
/// let key = parse_key(&key)?; // e.g. "0x1c0ffee0"
/// // Process 1: the queue, removed when `rx` drops.
/// let mut rx = SysvMqBuilder::new(key).create()?;
/// // Process 2 (here the same process): a sender of type-5 messages.
/// let mut tx = SysvMqBuilder::new(key).open_sender()?;
/// tx.send_type(b"job", 5)?;
/// let mut buf = [0; 64];
/// let (n, mtype) = rx.recv_type(&mut buf, 5)?;
/// assert_eq!((&buf[..n], mtype), (&b"job"[..], 5));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until create(), open() or open_sender()"]
pub struct SysvMqBuilder {
    key: i32,
    mode: u32,
    wait: Wait,
    allow_other_users: bool,
}

impl SysvMqBuilder {
    /// A queue with `key` (see [`parse_key`]). Defaults: mode 0600, [`Wait::Block`].
    pub fn new(key: i32) -> SysvMqBuilder {
        SysvMqBuilder {
            key,
            mode: 0o600,
            wait: Wait::Block,
            allow_other_users: false,
        }
    }

    /// Permission bits of a new queue (0600 by default). Used by
    /// [`create`](SysvMqBuilder::create) only.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// The endpoint's wait strategy ([`Wait::Block`] by default).
    pub fn wait(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// Whether [`open`](SysvMqBuilder::open) and
    /// [`open_sender`](SysvMqBuilder::open_sender) accept a queue another user owns, or
    /// one other users may write (`false` by default: such a queue is `PermissionDenied`).
    pub fn allow_other_users(mut self, on: bool) -> Self {
        self.allow_other_users = on;
        self
    }

    /// Creates the queue, exclusively, owner-only unless [`mode`](SysvMqBuilder::mode) says
    /// otherwise, recorded in the registry; removed when the endpoint is dropped. Sends use
    /// type 1 and receives take any type until changed.
    ///
    /// # Errors
    ///
    /// `AlreadyExists`, or the OS error.
    #[doc(alias = "msgget")]
    pub fn create(&self) -> io::Result<SysvMq> {
        let (id, guard) = create_queue(self.key, self.mode)?;
        SysvMq::from_parts(id, id, self.wait, vec![guard])
    }

    /// Opens an existing queue (made by anyone; no handshake); never creates one. The mode
    /// is ignored.
    ///
    /// # Errors
    ///
    /// `NotFound`, `PermissionDenied`, or the OS error.
    pub fn open(&self) -> io::Result<SysvMq> {
        let key = self.key;
        let id = sysv::get(key, None).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOENT) {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no System V queue with key {}", key_name(key)),
                )
            } else {
                e
            }
        })?;
        let q = SysvMq::from_parts(id, id, self.wait, Vec::new())?;
        super::check_owner(&key_name(key), q.owner()?, self.allow_other_users)?;
        Ok(q)
    }

    /// Opens an existing queue to send to it, as a one-way sender that learns of its
    /// receiver's end: the queue's last reader (`msg_lrpid`, set by
    /// [`SysvMq::announce_receiver`] as a receiver opens it) is watched with a pidfd while a
    /// send waits for room, and the send fails with [`SendError::PeerGone`] as soon as that
    /// process has exited (or the queue was removed). See [`crate::mq`]. The mode is ignored.
    ///
    /// A send that finds room never waits, so messages can be queued before a receiver
    /// comes; a send that must wait with no live reader known fails at once.
    ///
    /// # Errors
    ///
    /// As [`SysvMqBuilder::open`].
    pub fn open_sender(&self) -> io::Result<SysvMq> {
        let mut me = self.open()?;
        me.one_way = Some(me.live_reader(None).ok().flatten());
        Ok(me)
    }
}

/// The system's largest System V message (`/proc/sys/kernel/msgmax`).
pub fn system_max_msg_size() -> usize {
    sysv::msgmax()
}

/// A System V message-queue endpoint.
#[derive(Debug)]
pub struct SysvMq {
    recv_id: i32,
    recv_type: i64,
    send_id: i32,
    send_type: i64,
    wait: Wait,
    max: usize,
    rbuf: Vec<u8>,
    sbuf: Vec<u8>,
    stash: Option<(Vec<u8>, i64)>,
    nonce: [u8; 16],
    watcher: Option<Watcher>,
    peer: Option<PeerInfo>,
    gone: bool,
    /// A one-way sender ([`SysvMqBuilder::open_sender`]): the receiver it watches, if known.
    one_way: Option<Option<Watched>>,
    _guards: Vec<ObjectGuard>,
}

/// The type of a receiver's announcement ([`SysvMq::announce_receiver`]): the largest, which
/// no sender's type (`--priority`, a `u32`) reaches and no receive by type takes by mistake.
const ANNOUNCE_TYPE: i64 = i64::MAX;
/// The announcement's text.
const ANNOUNCE: &[u8; 16] = b"ipckit-receiver\0";

/// Longest nap of a one-way sender waiting for room.
const MAX_NAP: Duration = Duration::from_millis(2);
/// How often a waiting one-way sender rereads `msg_lrpid` (another receiver may have come).
const RESTAT: Duration = Duration::from_millis(50);

fn random_nonce() -> [u8; 16] {
    let s = std::collections::hash_map::RandomState::new();
    let mut a = s.build_hasher();
    a.write_u64(std::process::id() as u64);
    let mut b = s.build_hasher();
    b.write_u128(Instant::now().elapsed().as_nanos() ^ 0x5bd1e995);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.finish().to_le_bytes());
    out[8..].copy_from_slice(&b.finish().to_le_bytes());
    out
}

fn create_queue(key: i32, mode: u32) -> io::Result<(i32, ObjectGuard)> {
    let mut guard = registry::register(ObjectKind::MqSysv, &key_name(key))?;
    match sysv::get(key, Some(mode)) {
        Ok(id) => {
            // What it is, so that only this queue is ever removed for that key.
            guard.identify_sysv(id)?;
            Ok((id, guard))
        }
        Err(e) => {
            guard.forget_object();
            Err(if e.raw_os_error() == Some(libc::EEXIST) {
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("System V queue {} exists", key_name(key)),
                )
            } else {
                e
            })
        }
    }
}

fn queue_max(id: i32) -> io::Result<usize> {
    let ds = sysv::stat(id)?;
    Ok(sysv::msgmax().min(ds.msg_qbytes as usize))
}

impl SysvMq {
    fn from_parts(
        recv_id: i32,
        send_id: i32,
        wait: Wait,
        guards: Vec<ObjectGuard>,
    ) -> io::Result<Self> {
        let max = queue_max(recv_id)?.min(queue_max(send_id)?);
        Ok(SysvMq {
            recv_id,
            recv_type: 0,
            send_id,
            send_type: 1,
            wait,
            max,
            rbuf: vec![0; sysv::TYPE_LEN + max],
            sbuf: vec![0; sysv::TYPE_LEN + max],
            stash: None,
            nonce: random_nonce(),
            watcher: None,
            peer: None,
            gone: false,
            one_way: None,
            _guards: guards,
        })
    }

    /// A builder for the queue with `key`: [`SysvMqBuilder::new`].
    pub fn builder(key: i32) -> SysvMqBuilder {
        SysvMqBuilder::new(key)
    }

    /// Makes this process the queue's last reader (`msg_lrpid`) now, before any message
    /// comes, so a one-way sender ([`SysvMqBuilder::open_sender`]) knows whom to watch: one small
    /// message of a type no sender uses, sent and taken back at once. Skipped when the queue
    /// is full (the first real receive sets `msg_lrpid` anyway).
    ///
    /// # Errors
    ///
    /// The `msgsnd`/`msgrcv` error, other than a full queue.
    pub fn announce_receiver(&mut self) -> io::Result<()> {
        let mut m = vec![0u8; sysv::TYPE_LEN + ANNOUNCE.len()];
        sysv::set_type(&mut m, ANNOUNCE_TYPE);
        m[sysv::TYPE_LEN..].copy_from_slice(ANNOUNCE);
        match sysv::send(self.recv_id, &m, ANNOUNCE.len(), true) {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(()),
            r => r?,
        }
        match sysv::recv(self.recv_id, &mut m, ANNOUNCE_TYPE, true) {
            // Another receiver may have taken ours and we theirs: either way, it is gone.
            Err(e) if e.raw_os_error() == Some(libc::ENOMSG) => Ok(()),
            r => r.map(drop),
        }
    }
    /// The live process that last read the send queue, watched; `current` is kept if it is
    /// still the one. `Err` when the queue cannot be looked at (no read permission).
    fn live_reader(&self, current: Option<Watched>) -> Result<Option<Watched>, ()> {
        let pid = sysv::stat(self.send_id).map_err(drop)?.msg_lrpid;
        Ok(Self::reader_pid(pid, current))
    }

    fn reader_pid(pid: libc::pid_t, current: Option<Watched>) -> Option<Watched> {
        let pid = u32::try_from(pid).ok().filter(|&p| p != 0)?;
        if pid == std::process::id() {
            return None;
        }
        match current {
            Some(w) if w.pid == pid => Some(w),
            _ => Watched::new(pid, None),
        }
    }

    /// A one-way sender's wait for room: `IPC_NOWAIT` tries between naps that are `poll`s of
    /// the receiver's pidfd, so its exit ends the wait at once.
    fn send_one_way(&mut self, len: usize, deadline: Deadline) -> Result<(), SendError> {
        let id = self.send_id;
        let mut nap = Duration::from_micros(50);
        let mut restat = Instant::now() + RESTAT;
        loop {
            match sysv::send(id, &self.sbuf, len, true) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
                Err(e) => return Err(SendError::from(removed_is_gone(e))),
            }
            if deadline == Deadline::Now {
                return Err(SendError::Full);
            }
            let left = deadline.remaining();
            if left.is_some_and(|l| l.is_zero()) {
                return Err(SendError::Timeout);
            }
            let mut watch = self.one_way.take().flatten();
            if watch.is_none() || Instant::now() >= restat {
                restat = Instant::now() + RESTAT;
                watch = match self.live_reader(watch) {
                    Ok(w) => w,
                    Err(()) => {
                        // Write-only access: the reader cannot be known. Wait as a plain
                        // queue does.
                        self.one_way = Some(None);
                        std::thread::sleep(left.map_or(nap, |l| l.min(nap)));
                        nap = (nap * 2).min(MAX_NAP);
                        continue;
                    }
                };
            }
            let Some(w) = watch else {
                self.one_way = Some(None);
                self.peer = None;
                return Err(SendError::PeerGone);
            };
            self.peer = Some(PeerInfo {
                pid: w.pid,
                watched: true,
            });
            let exited = w.exited_within(left.map_or(nap, |l| l.min(nap)));
            // A reader that exited is looked for again at the next turn: gone, unless
            // another process has read the queue since.
            self.one_way = Some((!exited).then_some(w));
            if exited {
                restat = Instant::now();
            }
            nap = (nap * 2).min(MAX_NAP);
        }
    }

    /// The type plain `send` gives messages (default 1; must be positive).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a type below 1.
    pub fn set_send_type(&mut self, mtype: i64) -> io::Result<()> {
        if mtype < 1 {
            return Err(invalid("a System V message type must be 1 or more"));
        }
        self.send_type = mtype;
        Ok(())
    }

    /// The `msgtyp` plain `recv` passes to `msgrcv` (default 0: any).
    pub fn set_recv_type(&mut self, msgtyp: i64) {
        self.recv_type = msgtyp;
    }

    /// The queue's owner uid and permission bits (`msg_perm`), to decide whether to trust a
    /// queue that was already there.
    ///
    /// # Errors
    ///
    /// The `msgctl` error.
    pub fn owner(&self) -> io::Result<(u32, u32)> {
        let ds = sysv::stat(self.recv_id)?;
        Ok((ds.msg_perm.uid, u32::from(ds.msg_perm.mode) & 0o777))
    }

    /// Pid of the last process that sent to the receive queue (`msg_lspid`), if any.
    ///
    /// # Errors
    ///
    /// The `msgctl` error.
    pub fn last_sender(&self) -> io::Result<Option<u32>> {
        let ds = sysv::stat(self.recv_id)?;
        Ok((ds.msg_lspid > 0).then_some(ds.msg_lspid as u32))
    }

    /// Sends a message of type `mtype`, waiting for room as long as it takes.
    ///
    /// # Errors
    ///
    /// As [`Transport::send`], and `InvalidInput` for a type below 1.
    pub fn send_type(&mut self, msg: &[u8], mtype: i64) -> Result<(), SendError> {
        self.send_type_deadline(msg, mtype, Deadline::Never)
    }

    /// [`SysvMq::send_type`] without waiting: [`SendError::Full`] when there is no room.
    ///
    /// # Errors
    ///
    /// As [`Transport::try_send`], and `InvalidInput` for a type below 1.
    pub fn try_send_type(&mut self, msg: &[u8], mtype: i64) -> Result<(), SendError> {
        self.send_type_deadline(msg, mtype, Deadline::Now)
    }

    /// [`SysvMq::send_type`], waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As [`Transport::send_timeout`], and `InvalidInput` for a type below 1.
    pub fn send_type_timeout(
        &mut self,
        msg: &[u8],
        mtype: i64,
        timeout: Duration,
    ) -> Result<(), SendError> {
        self.send_type_deadline(msg, mtype, Deadline::after(timeout))
    }

    fn send_type_deadline(
        &mut self,
        msg: &[u8],
        mtype: i64,
        deadline: Deadline,
    ) -> Result<(), SendError> {
        if mtype < 1 {
            return Err(SendError::Io(invalid(
                "a System V message type must be 1 or more",
            )));
        }
        if msg.len() > self.max {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max: self.max,
            });
        }
        sysv::set_type(&mut self.sbuf, mtype);
        self.sbuf[sysv::TYPE_LEN..sysv::TYPE_LEN + msg.len()].copy_from_slice(msg);
        if self.one_way.is_some() {
            return self.send_one_way(msg.len(), deadline);
        }
        let (id, len) = (self.send_id, msg.len());
        let shared = self.watcher.as_ref().map(|w| w.shared.clone());
        let sbuf = &self.sbuf;
        let r = run_wait(
            self.wait,
            deadline,
            shared.as_deref().map(|s| (s, Blocked::Send)),
            |nowait| match sysv::send(id, sbuf, len, nowait) {
                Ok(()) => Ok(Some(())),
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
                Err(e) => Err(SendError::from(removed_is_gone(e))),
            },
        );
        if shared.is_some_and(|s| s.dead.load(Ordering::SeqCst)) {
            // Sent or not, nobody will read it.
            return Err(SendError::PeerGone);
        }
        r
    }

    /// Receives following `msgrcv`'s rules for `msgtyp`; returns (length, type). Waits as
    /// long as it takes.
    ///
    /// # Errors
    ///
    /// As [`Transport::recv`].
    pub fn recv_type(&mut self, buf: &mut [u8], msgtyp: i64) -> Result<(usize, i64), RecvError> {
        self.recv_type_deadline(buf, msgtyp, Deadline::Never)
    }

    /// [`SysvMq::recv_type`] without waiting: [`RecvError::Empty`] when no message of that
    /// type is there.
    ///
    /// # Errors
    ///
    /// As [`Transport::try_recv`].
    pub fn try_recv_type(
        &mut self,
        buf: &mut [u8],
        msgtyp: i64,
    ) -> Result<(usize, i64), RecvError> {
        self.recv_type_deadline(buf, msgtyp, Deadline::Now)
    }

    /// [`SysvMq::recv_type`], waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Transport::recv_timeout`].
    pub fn recv_type_timeout(
        &mut self,
        buf: &mut [u8],
        msgtyp: i64,
        timeout: Duration,
    ) -> Result<(usize, i64), RecvError> {
        self.recv_type_deadline(buf, msgtyp, Deadline::after(timeout))
    }

    fn recv_type_deadline(
        &mut self,
        buf: &mut [u8],
        msgtyp: i64,
        deadline: Deadline,
    ) -> Result<(usize, i64), RecvError> {
        if self.gone {
            return Err(RecvError::PeerGone);
        }
        if let Some((m, t)) = self.stash.take() {
            if m.len() > buf.len() {
                let needed = m.len();
                self.stash = Some((m, t));
                return Err(RecvError::BufferTooSmall { needed });
            }
            buf[..m.len()].copy_from_slice(&m);
            return Ok((m.len(), t));
        }
        let id = self.recv_id;
        let shared = self.watcher.as_ref().map(|w| w.shared.clone());
        let is_dead = || {
            shared
                .as_ref()
                .is_some_and(|s| s.dead.load(Ordering::SeqCst))
        };
        loop {
            let rbuf = &mut self.rbuf;
            let got = run_wait(
                self.wait,
                deadline,
                shared.as_deref().map(|s| (s, Blocked::Recv(msgtyp))),
                |nowait| match sysv::recv(id, rbuf, msgtyp, nowait) {
                    Ok(v) => Ok(Some(v)),
                    Err(e)
                        if e.raw_os_error() == Some(libc::ENOMSG)
                            || e.raw_os_error() == Some(libc::EAGAIN) =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(RecvError::from(removed_is_gone(e))),
                },
            );
            let (n, t) = match got {
                Ok(v) => v,
                Err(RecvError::PeerGone) if shared.is_some() => return self.drain(buf, msgtyp),
                Err(e) => return Err(e),
            };
            if t == ANNOUNCE_TYPE && self.rbuf[sysv::TYPE_LEN..sysv::TYPE_LEN + n] == ANNOUNCE[..] {
                // Another receiver's announcement, taken in the instant it was queued.
                continue;
            }
            if n == 16 && self.rbuf[sysv::TYPE_LEN..sysv::TYPE_LEN + 16] == self.nonce {
                // Our watcher's wake-up: the peer is gone (or it is a stale one: go on).
                if is_dead() {
                    return self.drain(buf, msgtyp);
                }
                continue;
            }
            return self.deliver(buf, n, t);
        }
    }

    /// After the peer died: deliver what it sent before dying, then `PeerGone`.
    fn drain(&mut self, buf: &mut [u8], msgtyp: i64) -> Result<(usize, i64), RecvError> {
        loop {
            match sysv::recv(self.recv_id, &mut self.rbuf, msgtyp, true) {
                Ok((16, _)) if self.rbuf[sysv::TYPE_LEN..sysv::TYPE_LEN + 16] == self.nonce => {}
                Ok((n, t)) => return self.deliver(buf, n, t),
                Err(_) => return Err(RecvError::PeerGone),
            }
        }
    }

    fn deliver(&mut self, buf: &mut [u8], n: usize, t: i64) -> Result<(usize, i64), RecvError> {
        let payload = &self.rbuf[sysv::TYPE_LEN..sysv::TYPE_LEN + n];
        if self.watcher.is_some() && peer::is_bye(payload, self.peer.map(|p| p.pid)) {
            self.gone = true;
            return Err(RecvError::PeerGone);
        }
        if n > buf.len() {
            self.stash = Some((payload.to_vec(), t));
            return Err(RecvError::BufferTooSmall { needed: n });
        }
        buf[..n].copy_from_slice(payload);
        Ok((n, t))
    }

    /// Creates the two queues of a duplex pair with keys `k` (client to server) and `k + 1`,
    /// with permission bits `mode`; the key is chosen here, so there is no builder for it.
    pub(crate) fn create_pair(mode: u32, wait: Wait) -> io::Result<(SysvMq, i32)> {
        let mut last = None;
        for attempt in 0..64u32 {
            let h = random_nonce();
            let base = 0x1c00_0000 | (i32::from_le_bytes([h[0], h[1], h[2], 0]) & 0x00ff_fffe);
            let _ = attempt;
            let (c2s, g1) = match create_queue(base, mode) {
                Ok(v) => v,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (s2c, g2) = match create_queue(base + 1, mode) {
                Ok(v) => v,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    drop(g1);
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut me = Self::from_parts(c2s, s2c, wait, vec![g1, g2])?;
            me.recv_type = 1;
            return Ok((me, base));
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free System V key")))
    }

    /// Server side of the hello. A timeout leaves the queue pair as it was, for another try.
    pub(crate) fn accept(&mut self, deadline: Deadline) -> io::Result<()> {
        let hello = peer::exchange_hello(self, false, deadline)?;
        self.watch(&hello);
        Ok(())
    }

    /// Client side of a pair made by [`SysvMq::create_pair`].
    pub(crate) fn connect_pair(key: i32, wait: Wait, deadline: Deadline) -> io::Result<SysvMq> {
        let open = |k: i32| {
            sysv::get(k, None).map_err(|e| {
                if e.raw_os_error() == Some(libc::ENOENT) {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "no System V queue with key {}: is the peer running?",
                            key_name(k)
                        ),
                    )
                } else {
                    e
                }
            })
        };
        let c2s = open(key)?;
        let s2c = open(key + 1)?;
        let mut me = Self::from_parts(s2c, c2s, wait, Vec::new())?;
        me.recv_type = 1;
        let hello = peer::exchange_hello(&mut me, true, deadline)?;
        me.watch(&hello);
        Ok(me)
    }

    fn watch(&mut self, hello: &Hello) {
        let (info, pidfd) = peer::watch(hello);
        self.peer = info;
        if let Some(pidfd) = pidfd {
            self.watcher = Watcher::start(
                pidfd,
                self.recv_id,
                self.nonce,
                (self.send_id != self.recv_id).then_some(self.send_id),
            )
            .ok();
        }
    }
}

/// A queue removed under us (`EIDRM` while blocked, `EINVAL` for the stale id afterwards)
/// means its owner is done with it: the peer is gone.
fn removed_is_gone(e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::EINVAL) {
        io::Error::from_raw_os_error(libc::EIDRM)
    } else {
        e
    }
}

impl Drop for SysvMq {
    fn drop(&mut self) {
        if self.watcher.is_some() && !self.gone {
            let b = peer::bye();
            let mut m = vec![0u8; sysv::TYPE_LEN + b.len()];
            sysv::set_type(&mut m, self.send_type);
            m[sysv::TYPE_LEN..].copy_from_slice(&b);
            let _ = sysv::send(self.send_id, &m, b.len(), true);
        }
    }
}

impl Transport for SysvMq {
    crate::transport::endpoint_accessors!(fixed Mechanism::MqSysv);

    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<(), SendError> {
        self.send_type_deadline(msg, self.send_type, deadline)
    }

    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize, RecvError> {
        self.recv_type_deadline(buf, self.recv_type, deadline)
            .map(|(n, _)| n)
    }

    fn peer(&self) -> Option<PeerInfo> {
        self.peer.or_else(|| {
            // Without a hello, the last sender is the best we know.
            self.last_sender().ok().flatten().map(|pid| PeerInfo {
                pid,
                watched: false,
            })
        })
    }

    fn raw(&self) -> RawHandle<'_> {
        RawHandle::SysV {
            recv_id: self.recv_id,
            recv_type: self.recv_type,
            send_id: self.send_id,
            send_type: self.send_type,
        }
    }
}
