//! eventfd: a kernel counter. Writes add up; a read takes the sum and resets it to zero. It
//! is a doorbell, not a carrier of messages, so it implements [`Notify`], not `Transport`.
//!
//! # Examples
//!
//! ```
//! use ipckit::eventfd::EventFd;
//! use ipckit::{Notify, Wait};
//! # fn main() -> std::io::Result<()> {
//! let ev = EventFd::new(Wait::Block)?;
//! ev.notify(2)?;
//! ev.notify(3)?;
//! assert_eq!(ev.wait()?, 5); // coalesced
//! # Ok(()) }
//! ```
//!
//! # References
//!
//! `eventfd(2)`.

use crate::error::invalid;
use crate::sys::{fd as sysfd, pipe as syspipe, proc};
use crate::transport::Notify;
use crate::wait::{drive, Deadline, Wait};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// An eventfd counter, shareable with a child process by inheritance.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
    wait: Wait,
}

impl EventFd {
    /// A new counter at zero.
    ///
    /// # Errors
    ///
    /// The `eventfd` error.
    #[doc(alias = "eventfd")]
    pub fn new(wait: Wait) -> io::Result<EventFd> {
        Ok(EventFd {
            fd: syspipe::eventfd(false)?,
            wait,
        })
    }

    /// The address a child passes to [`EventFd::open`]: `fd:N`.
    pub fn address(&self) -> String {
        format!("fd:{}", self.fd.as_raw_fd())
    }

    /// Makes `cmd`'s child inherit this counter (and only that child).
    pub fn configure_child(&self, cmd: &mut std::process::Command) {
        proc::inherit_in_child(cmd, vec![self.fd.as_raw_fd()]);
    }

    /// Opens the counter inherited from the parent at `addr` ([`EventFd::address`]), as
    /// [`PipeBuilder::open`](crate::pipe::PipeBuilder::open) does a pipe's ends: the
    /// descriptor is checked and adopted.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a malformed address or a descriptor that is not an eventfd this
    /// process inherited (stdio, a descriptor not open, or one something in this process
    /// already owns); nothing is closed then.
    pub fn open(addr: &str, wait: Wait) -> io::Result<EventFd> {
        let n: i32 = addr
            .strip_prefix("fd:")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("'{addr}' is not an eventfd address (fd:N)")))?;
        let fd = proc::adopt_inherited(n, proc::Inherited::EventFd)?;
        sysfd::set_nonblocking(fd.as_fd(), true)?;
        Ok(EventFd { fd, wait })
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Notify for EventFd {
    fn wait_strategy(&self) -> Wait {
        self.wait
    }

    fn set_wait_strategy(&mut self, wait: Wait) {
        self.wait = wait;
    }

    fn notify_deadline(&self, n: u64, deadline: Deadline) -> io::Result<()> {
        if n == 0 || n == u64::MAX {
            return Err(invalid(
                "an eventfd increment must be between 1 and 2^64 - 2",
            ));
        }
        let fd = self.fd.as_fd();
        drive(
            self.wait,
            deadline,
            fd,
            libc::POLLOUT,
            None,
            || match sysfd::write(fd, &n.to_ne_bytes()) {
                Ok(_) => Ok(Some(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(NotifyErr(e)),
            },
        )
        .map_err(|e| e.0)
    }

    fn wait_deadline(&self, deadline: Deadline) -> io::Result<u64> {
        let fd = self.fd.as_fd();
        let mut b = [0u8; 8];
        drive(
            self.wait,
            deadline,
            fd,
            libc::POLLIN,
            None,
            || match sysfd::read(fd, &mut b) {
                Ok(_) => Ok(Some(u64::from_ne_bytes(b))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(NotifyErr(e)),
            },
        )
        .map_err(|e| e.0)
    }
}

/// `io::Error` adapted to the wait loop's error trait.
struct NotifyErr(io::Error);

impl From<io::Error> for NotifyErr {
    fn from(e: io::Error) -> Self {
        NotifyErr(e)
    }
}

impl crate::error::WaitError for NotifyErr {
    fn would_block() -> Self {
        NotifyErr(io::Error::new(io::ErrorKind::WouldBlock, "counter is zero"))
    }
    fn timed_out() -> Self {
        NotifyErr(io::Error::new(
            io::ErrorKind::TimedOut,
            "timed out waiting for a notification",
        ))
    }
    fn peer_gone() -> Self {
        NotifyErr(io::Error::new(io::ErrorKind::BrokenPipe, "peer is gone"))
    }
}
