//! Message queues: [`posix`] (`mq_open`, priorities, pollable descriptors) and [`sysv`]
//! (`msgget`, message types, receive by type).
//!
//! # A one-way sender and its receiver's end
//!
//! A queue has no connection: a sender blocked on a full queue whose receiver died, or left,
//! would wait for ever. The one-way senders ([`posix::PosixMqBuilder::open_sender`],
//! [`sysv::SysvMqBuilder::open_sender`]) therefore find the receiver's process and watch it with a
//! pidfd while they wait:
//! - POSIX: the process that holds the queue open for reading (`/proc/PID/fdinfo`; senders
//!   open it write-only, so they are not mistaken for one). Waiting is one `poll` on the
//!   queue (room) and the pidfd (exit) together, cut into 100 ms slices at whose ends the
//!   receiver is checked to still hold the queue, so a receiver that closes it and lives on
//!   is noticed too. When the watched receiver is gone another reader is looked for before
//!   the sender gives up.
//! - System V has no descriptor: the receiver is the queue's last reader (`msg_lrpid`,
//!   which a receiver sets with [`sysv::SysvMq::announce_receiver`]; the receivers of
//!   `connect` and `ipckit recv` do so as soon as they open the queue). Waiting retries
//!   `IPC_NOWAIT` between `poll`s of the pidfd that double as the naps (at most 2 ms), so an
//!   exit is seen at once and room within 2 ms. A queue removed by its creator (`EIDRM`) is
//!   a receiver that left.
//!
//! The sender then fails with [`crate::SendError::PeerGone`]. What it cannot see: a System V
//! receiver that stops reading and lives on without removing the queue.

pub mod posix;
pub mod sysv;

use crate::sys::{fd as sysfd, proc};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

/// A receiver process a one-way sender watches.
#[derive(Debug)]
pub(crate) struct Watched {
    pub(crate) pid: u32,
    pidfd: OwnedFd,
    /// POSIX: the receiver's descriptor number for the queue, checked at slice ends.
    pub(crate) fd: Option<i32>,
}

impl Watched {
    /// Starts watching `pid`; `None` if it is already gone (or pidfds are unavailable). A
    /// zombie (exited, not yet reaped) is gone: its pidfd opens but reports the exit.
    pub(crate) fn new(pid: u32, fd: Option<i32>) -> Option<Watched> {
        let pidfd = proc::pidfd_open(pid).ok()?;
        let w = Watched { pid, pidfd, fd };
        (!w.exited_within(Duration::ZERO)).then_some(w)
    }

    pub(crate) fn pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Waits up to `timeout` for the receiver to exit; true if it has.
    pub(crate) fn exited_within(&self, timeout: Duration) -> bool {
        matches!(
            sysfd::poll(&[(self.pidfd.as_fd(), libc::POLLIN)], Some(timeout)),
            Ok(sysfd::Ready::Fd(_))
        )
    }
}

/// Refuses a queue that was already there unless it is ours and closed to writers of other
/// users (they could inject messages, or read ours), or `allow_other_users` is set. `owner`
/// is `(uid, mode)` of the queue just opened (by descriptor or id: the queue itself, not a
/// name that could have changed since).
pub(crate) fn check_owner(
    name: &str,
    owner: (u32, u32),
    allow_other_users: bool,
) -> std::io::Result<()> {
    let (uid, mode) = owner;
    if allow_other_users || (uid == crate::sys::proc::euid() && mode & 0o022 == 0) {
        return Ok(());
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        format!(
            "queue {name} belongs to uid {uid} with mode {mode:03o}; refusing a queue other users \
             own or may write (the builder's `allow_other_users(true)` lifts this)"
        ),
    ))
}
