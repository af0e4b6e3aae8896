//! The reference loops: the same kernel objects ipckit set up, driven by the plain syscalls
//! with no framing and no abstraction, so a row can show what ipckit adds.
//!
//! How each wait strategy is reproduced, choosing the cheapest honest equivalent:
//! - `block`: the descriptor is switched to blocking mode and each operation is one plain
//!   syscall (`read`, `write`, `send`, `recv`, `mq_send`, `mq_receive`; `msgsnd`/`msgrcv`
//!   without `IPC_NOWAIT`). ipckit instead keeps descriptors non-blocking and sleeps in
//!   `poll`, so the gap is the price of that design.
//! - `spin`: non-blocking descriptors (`IPC_NOWAIT` for System V), retried at once on
//!   `EAGAIN`/`ENOMSG`.
//! - `adaptive`: spin as above for the same time ipckit spins, then `poll` + retry (System V,
//!   which has no descriptor to poll, falls back to the blocking call).
//!
//! Byte streams carry no length prefix here: both ends know the message size, the receiver
//! reads exactly that many bytes. System V messages are sent in place: every buffer reserves
//! 8 bytes before the payload for `mtype`.

use crate::libc_only::{self, POLLIN, POLLOUT};
use crate::scenario::{Channel, Counter};
use crate::sys;
use ipckit::{Mechanism, RawHandle, Transport, Wait};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Stream,
    Datagram,
    MqPosix,
    SysV {
        recv_id: i32,
        recv_type: i64,
        send_id: i32,
        send_type: i64,
    },
}

/// Raw-syscall [`Channel`] on a transport's kernel objects, through its own duplicates of
/// the transport's descriptors (the same open files: one `dup` at setup, nothing per message).
#[derive(Debug)]
pub struct RawChannel {
    kind: Kind,
    rfd: Option<OwnedFd>,
    wfd: Option<OwnedFd>,
    wait: Wait,
}

/// One direction's descriptor, or an error if the transport gave none (System V queues have
/// no descriptor; their arms never ask).
#[inline]
fn need(fd: &Option<OwnedFd>) -> io::Result<BorrowedFd<'_>> {
    fd.as_ref().map(AsFd::as_fd).ok_or_else(|| {
        io::Error::other("reference loop: transport has no descriptor for this direction")
    })
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
        || e.raw_os_error() == Some(rustix::io::Errno::NOMSG.raw_os_error())
}

/// Runs one operation under `wait`. `f(nowait)` makes one attempt; `fd`/`events` is what to
/// poll in the blocking part of `adaptive` (`None`: call `f(false)`, which blocks).
#[inline]
fn drive(
    wait: Wait,
    fd: Option<BorrowedFd<'_>>,
    events: i16,
    mut f: impl FnMut(bool) -> io::Result<usize>,
) -> io::Result<usize> {
    match wait {
        Wait::Block => loop {
            match f(false) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        },
        Wait::Spin => loop {
            match f(true) {
                Err(e) if would_block(&e) || e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        },
        Wait::Adaptive { spin } => {
            let end = Instant::now() + spin;
            let mut n: u32 = 0;
            loop {
                match f(true) {
                    Err(e) if would_block(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                    r => return r,
                }
                n = n.wrapping_add(1);
                if n.is_multiple_of(64) && Instant::now() >= end {
                    break;
                }
            }
            loop {
                match fd {
                    Some(fd) => {
                        libc_only::poll_one(fd, events, -1)?;
                        match f(true) {
                            Err(e) if would_block(&e) || e.kind() == io::ErrorKind::Interrupted => {
                            }
                            r => return r,
                        }
                    }
                    None => match f(false) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        r => return r,
                    },
                }
            }
        }
    }
}

impl RawChannel {
    /// Takes the transport's descriptors (or queue ids) and sets their blocking mode for
    /// `wait`.
    pub fn new(t: &dyn Transport, wait: Wait) -> io::Result<RawChannel> {
        let mech = t.mechanism();
        let (kind, rfd, wfd) = match t.raw() {
            RawHandle::Fds { read, write } => {
                let rfd = read.map(|f| f.try_clone_to_owned()).transpose()?;
                let wfd = write.map(|f| f.try_clone_to_owned()).transpose()?;
                let kind = match mech {
                    m if m.is_stream() => Kind::Stream,
                    Mechanism::MqPosix => Kind::MqPosix,
                    _ => Kind::Datagram,
                };
                (kind, rfd, wfd)
            }
            RawHandle::SysV {
                recv_id,
                recv_type,
                send_id,
                send_type,
            } => (
                Kind::SysV {
                    recv_id,
                    recv_type,
                    send_id,
                    send_type,
                },
                None,
                None,
            ),
        };
        for fd in rfd.iter().chain(&wfd) {
            sys::set_nonblocking(fd.as_fd(), wait.spins())?;
        }
        Ok(RawChannel {
            kind,
            rfd,
            wfd,
            wait,
        })
    }
}

impl Channel for RawChannel {
    fn prefix(&self) -> usize {
        match self.kind {
            Kind::SysV { .. } => 8,
            _ => 0,
        }
    }

    #[inline]
    fn send(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let w = self.wait;
        match self.kind {
            Kind::Stream => {
                let fd = need(&self.wfd)?;
                let mut off = 0;
                while off < buf.len() {
                    let rest = &buf[off..];
                    off += drive(w, Some(fd), POLLOUT, |_| sys::write(fd, rest))?;
                }
                Ok(())
            }
            Kind::Datagram => {
                let fd = need(&self.wfd)?;
                let n = drive(w, Some(fd), POLLOUT, |_| sys::send(fd, buf))?;
                if n != buf.len() {
                    return Err(io::Error::other(format!(
                        "short datagram send: {n} of {}",
                        buf.len()
                    )));
                }
                Ok(())
            }
            Kind::MqPosix => {
                let fd = need(&self.wfd)?;
                drive(w, Some(fd), POLLOUT, |_| {
                    libc_only::mq_send(fd, buf).map(|()| 0)
                })
                .map(drop)
            }
            Kind::SysV {
                send_id, send_type, ..
            } => {
                buf[..8].copy_from_slice(&(send_type as std::ffi::c_long).to_ne_bytes());
                let len = buf.len() - 8;
                drive(w, None, 0, |nowait| {
                    libc_only::msgsnd(send_id, buf, len, nowait).map(|()| 0)
                })
                .map(drop)
            }
        }
    }

    #[inline]
    fn recv(&mut self, buf: &mut [u8], expect: usize) -> io::Result<usize> {
        let w = self.wait;
        match self.kind {
            Kind::Stream => {
                let fd = need(&self.rfd)?;
                let mut got = 0;
                while got < expect {
                    let dst = &mut buf[got..expect];
                    let n = drive(w, Some(fd), POLLIN, |_| sys::read(fd, dst))?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "peer closed the stream",
                        ));
                    }
                    got += n;
                }
                Ok(expect)
            }
            Kind::Datagram => {
                let fd = need(&self.rfd)?;
                drive(w, Some(fd), POLLIN, |_| sys::recv(fd, buf))
            }
            Kind::MqPosix => {
                let fd = need(&self.rfd)?;
                drive(w, Some(fd), POLLIN, |_| libc_only::mq_receive(fd, buf))
            }
            Kind::SysV {
                recv_id, recv_type, ..
            } => drive(w, None, 0, |nowait| {
                libc_only::msgrcv(recv_id, buf, recv_type, nowait)
            }),
        }
    }

    fn recv_timeout(
        &mut self,
        buf: &mut [u8],
        expect: usize,
        timeout: Duration,
    ) -> io::Result<Option<usize>> {
        // Only lossy (datagram) transports use this. Spin like the wait strategy says, then
        // poll for what is left of the timeout, then one receive.
        let fd = need(&self.rfd)?;
        let start = Instant::now();
        let spin_for = match self.wait {
            Wait::Block => Duration::ZERO,
            Wait::Spin => timeout,
            Wait::Adaptive { spin } => spin.min(timeout),
        };
        if !spin_for.is_zero() {
            let mut n: u32 = 0;
            loop {
                match sys::recv(fd, buf) {
                    Ok(n) => return Ok(Some(n)),
                    Err(e) if would_block(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                n = n.wrapping_add(1);
                if n.is_multiple_of(64) && start.elapsed() >= spin_for {
                    break;
                }
            }
        }
        let left = timeout.saturating_sub(start.elapsed());
        if !libc_only::poll_one(fd, POLLIN, left.as_millis() as i32)? {
            return Ok(None);
        }
        self.recv(buf, expect).map(Some)
    }
}

/// Raw-syscall [`Counter`]: 8-byte `write`/`read` on two eventfds, through its own
/// duplicates of their descriptors.
#[derive(Debug)]
pub struct RawCounter {
    tx: OwnedFd,
    rx: OwnedFd,
    wait: Wait,
}

impl RawCounter {
    /// From the two eventfd descriptors (duplicated: the same counters).
    pub fn new(tx: BorrowedFd<'_>, rx: BorrowedFd<'_>, wait: Wait) -> io::Result<RawCounter> {
        sys::set_nonblocking(tx, wait.spins())?;
        sys::set_nonblocking(rx, wait.spins())?;
        Ok(RawCounter {
            tx: tx.try_clone_to_owned()?,
            rx: rx.try_clone_to_owned()?,
            wait,
        })
    }
}

impl Counter for RawCounter {
    #[inline]
    fn add(&mut self, n: u64) -> io::Result<()> {
        let b = n.to_ne_bytes();
        let fd = self.tx.as_fd();
        drive(self.wait, Some(fd), POLLOUT, |_| sys::write(fd, &b)).map(drop)
    }
    #[inline]
    fn take(&mut self) -> io::Result<u64> {
        let mut b = [0u8; 8];
        let fd = self.rx.as_fd();
        drive(self.wait, Some(fd), POLLIN, |_| sys::read(fd, &mut b))?;
        Ok(u64::from_ne_bytes(b))
    }
}
