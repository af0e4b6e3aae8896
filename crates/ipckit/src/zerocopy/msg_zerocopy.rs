//! `MSG_ZEROCOPY` on sockets: the completions the kernel reports on the socket's error queue
//! ([`Completion`], [`ZeroCopyEvent`]) and [`ZeroCopySender`], which sends from a pool of
//! buffers and lends one again only after every send that used it completed.

use crate::sys::fd as sysfd;
use crate::sys::zerocopy as sys;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// One `MSG_ZEROCOPY` completion read from a socket's error queue: the sends numbered
/// `first..=last` (the kernel numbers a socket's zero-copy sends 0, 1, 2, ... wrapping at
/// 2^32) are done with their buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// First send of the range.
    pub first: u32,
    /// Last send of the range (inclusive; may be below `first` after wrapping).
    pub last: u32,
    /// The kernel copied the data instead of sending the pages (`SO_EE_CODE_ZEROCOPY_COPIED`):
    /// on loopback, and wherever the device cannot send from user pages.
    pub copied: bool,
}

impl Completion {
    /// Sends covered by this range.
    pub fn len(&self) -> u64 {
        u64::from(self.last.wrapping_sub(self.first)) + 1
    }

    /// Never true: a range covers at least one send (for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Finds the zero-copy completion in the control data of one `recvmsg(MSG_ERRQUEUE)`:
    /// a `cmsghdr` at level `SOL_IP`/`IP_RECVERR` or `SOL_IPV6`/`IPV6_RECVERR` carrying a
    /// `sock_extended_err` with `ee_errno == 0` and `ee_origin == SO_EE_ORIGIN_ZEROCOPY`.
    /// Parsed by hand with every length checked: truncated, misaligned or foreign input
    /// gives `None`, never a panic.
    pub fn parse(control: &[u8]) -> Option<Completion> {
        const HDR: usize = std::mem::size_of::<libc::cmsghdr>();
        const ALIGN: usize = std::mem::size_of::<usize>();
        let len_size = std::mem::size_of::<usize>();
        let mut off = 0usize;
        while off.checked_add(HDR)? <= control.len() {
            let h = &control[off..off + HDR];
            let cmsg_len = usize::from_ne_bytes(h[..len_size].try_into().ok()?);
            let level = i32::from_ne_bytes(h[len_size..len_size + 4].try_into().ok()?);
            let ty = i32::from_ne_bytes(h[len_size + 4..len_size + 8].try_into().ok()?);
            if cmsg_len < HDR {
                return None;
            }
            let end = off.checked_add(cmsg_len)?.min(control.len());
            let data = &control[off + HDR..end];
            let ours = (level == libc::SOL_IP && ty == libc::IP_RECVERR)
                || (level == libc::SOL_IPV6 && ty == libc::IPV6_RECVERR);
            if ours && data.len() >= 16 {
                let errno = u32::from_ne_bytes(data[0..4].try_into().ok()?);
                let origin = data[4];
                let code = data[6];
                let info = u32::from_ne_bytes(data[8..12].try_into().ok()?);
                let last = u32::from_ne_bytes(data[12..16].try_into().ok()?);
                if errno == 0 && origin == sys::SO_EE_ORIGIN_ZEROCOPY {
                    return Some(Completion {
                        first: info,
                        last,
                        copied: code & sys::SO_EE_CODE_ZEROCOPY_COPIED != 0,
                    });
                }
            }
            off = off.checked_add(cmsg_len.checked_next_multiple_of(ALIGN)?)?;
        }
        None
    }
}

/// Counts of a [`ZeroCopySender`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZeroCopyStats {
    /// Messages sent.
    pub messages: u64,
    /// `send(MSG_ZEROCOPY)` calls that sent something: each is one numbered zero-copy send
    /// the kernel will complete.
    pub sends: u64,
    /// Sends completed (summed over the completion ranges).
    pub completions: u64,
    /// Of those, sends in ranges the kernel marked `SO_EE_CODE_ZEROCOPY_COPIED`.
    pub copied: u64,
    /// Error-queue entries read (one entry may complete a range of sends).
    pub notifications: u64,
    /// Error-queue entries that were not zero-copy completions (or were truncated).
    pub other: u64,
    /// Times a buffer was wanted while its send was still in flight, and the sender waited.
    pub waits: u64,
}

/// What a [`ZeroCopySender`] did, in order, when asked to record it
/// ([`ZeroCopySender::record_events`]): enough for a test to check, from the kernel's own
/// completions, that no buffer was lent while its send was in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroCopyEvent {
    /// Buffer `slot` was handed to the caller to fill.
    Lent {
        /// Buffer index.
        slot: usize,
    },
    /// Send number `id` went out from buffer `slot`.
    Sent {
        /// Buffer index.
        slot: usize,
        /// The kernel's number for this send.
        id: u32,
    },
    /// The kernel completed a range of sends.
    Completed(Completion),
}

/// Which sends are in flight from which buffer.
#[derive(Debug)]
struct Ledger {
    next_id: u32,
    /// Outstanding sends in id order: (id, slot, done).
    outstanding: VecDeque<(u32, usize, bool)>,
    /// Sends in flight per buffer.
    pending: Vec<u32>,
}

impl Ledger {
    fn new(slots: usize) -> Ledger {
        Ledger {
            next_id: 0,
            outstanding: VecDeque::new(),
            pending: vec![0; slots],
        }
    }

    fn issue(&mut self, slot: usize) -> u32 {
        let id = self.next_id;
        self.outstanding.push_back((id, slot, false));
        self.pending[slot] += 1;
        self.next_id = id.wrapping_add(1);
        id
    }

    /// Marks the sends in `first..=last` done; returns how many were outstanding.
    fn complete(&mut self, first: u32, last: u32) -> u64 {
        let span = last.wrapping_sub(first);
        let mut n = 0;
        for e in self.outstanding.iter_mut() {
            if !e.2 && e.0.wrapping_sub(first) <= span {
                e.2 = true;
                self.pending[e.1] -= 1;
                n += 1;
            }
        }
        while self.outstanding.front().is_some_and(|e| e.2) {
            self.outstanding.pop_front();
        }
        n
    }

    fn in_flight(&self) -> usize {
        self.outstanding.iter().filter(|e| !e.2).count()
    }
}

/// A TCP sender that sends with `MSG_ZEROCOPY` from a pool of page-aligned buffers and lends
/// a buffer again only after the kernel completed the send that used it.
///
/// The kernel pins the buffer's pages and sends from them after `send` returns, so the
/// buffer must not change until the completion arrives on the socket's error queue. The
/// buffers are lent round-robin; when the next one is still in flight the sender reads
/// completions (and waits for them with `poll`) first. Completions are counted, and those
/// the kernel marks as copied: on loopback every one (the receiving socket cannot keep
/// references to the sender's pages, so they are copied on delivery), so `MSG_ZEROCOPY`
/// pays there only its own bookkeeping.
///
/// # Examples
///
/// ```
/// use ipckit::zerocopy::ZeroCopySender;
/// use std::time::Duration;
/// # fn main() -> std::io::Result<()> {
/// # // A peer to send to: a loopback listener whose thread reads everything and counts it.
/// # let server = std::net::TcpListener::bind("127.0.0.1:0")?;
/// # let addr = server.local_addr()?;
/// # let sink = std::thread::spawn(move || -> std::io::Result<u64> {
/// #     let (mut peer, _) = server.accept()?;
/// #     std::io::copy(&mut peer, &mut std::io::sink())
/// # });
/// let sock = std::net::TcpStream::connect(addr)?; // e.g. "192.0.2.1:9000"
/// let mut tx = ZeroCopySender::new(sock, 8, 256 * 1024)?; // 8 buffers of 256 KiB
/// for i in 0..100u8 {
///     tx.send_with(256 * 1024, |buf| buf.fill(i))?; // waits for a buffer the kernel released
/// }
/// tx.flush_timeout(Duration::from_secs(10))?;
/// let s = tx.stats();
/// println!("{} sends, {} completed, {} of them copied", s.sends, s.completions, s.copied);
/// # drop(tx); // closes the connection: the sink sees end-of-file
/// # assert_eq!(sink.join().unwrap()?, 100 * 256 * 1024);
/// # Ok(()) }
/// ```
///
/// # References
///
/// `Documentation/networking/msg_zerocopy.rst`, `socket(7)` (`SO_ZEROCOPY`), `ip(7)`
/// (`IP_RECVERR`, `sock_extended_err`), `recvmsg(2)` (`MSG_ERRQUEUE`).
#[derive(Debug)]
pub struct ZeroCopySender {
    sock: OwnedFd,
    pool: sys::PageBuf,
    stride: usize,
    slot_size: usize,
    slots: usize,
    next: usize,
    ledger: Ledger,
    stats: ZeroCopyStats,
    events: Option<Vec<ZeroCopyEvent>>,
}

impl ZeroCopySender {
    /// Takes a connected TCP socket, enables `SO_ZEROCOPY` on it, makes it non-blocking (the
    /// sender waits with `poll`), and allocates `slots` buffers of `slot_size` bytes.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for 0 slots or size; the `setsockopt` error (`ENOPROTOOPT` on kernels
    /// before 4.14 or non-TCP/UDP sockets); the `mmap` error.
    pub fn new(
        sock: impl Into<OwnedFd>,
        slots: usize,
        slot_size: usize,
    ) -> io::Result<ZeroCopySender> {
        let sock = sock.into();
        if slots == 0 || slot_size == 0 {
            return Err(crate::error::invalid(
                "a zero-copy sender needs at least one buffer of at least one byte",
            ));
        }
        sys::enable_zerocopy(sock.as_fd())?;
        sysfd::set_nonblocking(sock.as_fd(), true)?;
        let stride = slot_size.next_multiple_of(sys::page_size());
        let total = slots
            .checked_mul(stride)
            .ok_or_else(|| crate::error::invalid("zero-copy pool too large"))?;
        Ok(ZeroCopySender {
            sock,
            pool: sys::PageBuf::new(total)?,
            stride,
            slot_size,
            slots,
            next: 0,
            ledger: Ledger::new(slots),
            stats: ZeroCopyStats::default(),
            events: None,
        })
    }

    /// The counts so far (call [`ZeroCopySender::flush`] first for final ones).
    pub fn stats(&self) -> ZeroCopyStats {
        self.stats
    }

    /// Buffers in the pool.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Sends whose completion has not arrived yet.
    pub fn in_flight(&self) -> usize {
        self.ledger.in_flight()
    }

    /// True if buffer `slot` has a send in flight (so it will not be lent).
    pub fn is_in_flight(&self, slot: usize) -> bool {
        self.ledger.pending.get(slot).is_some_and(|&n| n > 0)
    }

    /// The socket.
    pub fn socket(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Starts (or stops) recording [`ZeroCopyEvent`]s; [`ZeroCopySender::take_events`] returns
    /// them. For tests: the record grows with every send.
    pub fn record_events(&mut self, on: bool) {
        self.events = on.then(Vec::new);
    }

    /// The events recorded since the last call.
    pub fn take_events(&mut self) -> Vec<ZeroCopyEvent> {
        self.events.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn event(&mut self, e: ZeroCopyEvent) {
        if let Some(v) = &mut self.events {
            v.push(e);
        }
    }

    /// Reads every completion waiting on the error queue, without blocking; returns the sends
    /// they completed.
    ///
    /// # Errors
    ///
    /// The `recvmsg` error (not `WouldBlock`, which ends the loop).
    pub fn reap(&mut self) -> io::Result<u64> {
        // Room for a few control messages. No alignment is needed: the kernel copies the
        // control data byte-wise and `Completion::parse` reads it byte-wise.
        let mut bytes = [0u8; 128];
        let mut done = 0;
        loop {
            let (n, flags) = match sys::recv_errqueue(self.sock.as_fd(), &mut bytes) {
                Ok(v) => v,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(done),
                Err(e) => return Err(e),
            };
            self.stats.notifications += 1;
            let parsed = if flags & libc::MSG_CTRUNC != 0 {
                None
            } else {
                Completion::parse(&bytes[..n])
            };
            match parsed {
                Some(c) => {
                    let k = self.ledger.complete(c.first, c.last);
                    self.stats.completions += k;
                    if c.copied {
                        self.stats.copied += k;
                    }
                    done += k;
                    self.event(ZeroCopyEvent::Completed(c));
                }
                None => self.stats.other += 1,
            }
        }
    }

    /// Waits until buffer `slot` has no send in flight.
    fn wait_free(&mut self, slot: usize, deadline: Option<Instant>) -> io::Result<()> {
        let mut waited = false;
        let mut hung_up = 0u32;
        loop {
            self.reap()?;
            if self.ledger.pending[slot] == 0 {
                break;
            }
            waited = true;
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the kernel did not complete the zero-copy sends in time",
                ));
            }
            // An error-queue entry makes the socket report POLLERR, which poll always
            // watches for; so is POLLHUP, which would make this loop spin if the connection
            // were gone with sends that never complete: give up after a while then.
            sysfd::poll(&[(self.sock.as_fd(), 0)], left)?;
            if sysfd::revents(self.sock.as_fd(), 0)? & libc::POLLHUP != 0 {
                hung_up += 1;
                if hung_up > 10_000 {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the connection is gone and its zero-copy sends were never completed",
                    ));
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        if waited {
            self.stats.waits += 1;
        }
        Ok(())
    }

    /// Sends one message of `len` bytes (at most the slot size) that `fill` writes into the
    /// next free buffer; waits for that buffer's previous send to complete, and for room in
    /// the socket's buffer.
    ///
    /// # Errors
    ///
    /// `InvalidInput` over the slot size; `BrokenPipe`/`ConnectionReset` if the peer is gone;
    /// `ENOBUFS` persisting (the socket's `optmem` budget for pinned pages exhausted even
    /// after reading completions); other `send`/`poll` errors. A message may then have been
    /// sent in part.
    pub fn send_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> io::Result<()> {
        if len > self.slot_size {
            return Err(crate::error::invalid(format!(
                "message of {len} bytes over the zero-copy buffer size of {}",
                self.slot_size
            )));
        }
        let slot = self.next;
        self.wait_free(slot, None)?;
        self.event(ZeroCopyEvent::Lent { slot });
        let at = slot * self.stride;
        fill(&mut self.pool.as_mut_slice()[at..at + len]);
        let mut off = 0;
        let mut nobufs = 0u32;
        while off < len {
            let r = sys::send_zerocopy(
                self.sock.as_fd(),
                &self.pool.as_slice()[at + off..at + len],
                0,
            );
            match r {
                Ok(n) => {
                    let id = self.ledger.issue(slot);
                    self.stats.sends += 1;
                    self.event(ZeroCopyEvent::Sent { slot, id });
                    off += n;
                    nobufs = 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.reap()?;
                    sysfd::poll(&[(self.sock.as_fd(), libc::POLLOUT)], None)?;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) && nobufs < 1000 => {
                    // Pinned-page accounting is full: completions free it.
                    nobufs += 1;
                    if self.reap()? == 0 {
                        sysfd::poll(&[(self.sock.as_fd(), 0)], Some(Duration::from_millis(1)))?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.stats.messages += 1;
        self.next = (slot + 1) % self.slots;
        Ok(())
    }

    /// Sends `data` (copied into the next free buffer first).
    ///
    /// # Errors
    ///
    /// As [`ZeroCopySender::send_with`].
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.send_with(data.len(), |b| b.copy_from_slice(data))
    }

    /// Waits until every send has completed, as long as it takes.
    ///
    /// # Errors
    ///
    /// The `recvmsg`/`poll` error; `BrokenPipe` if the connection is gone with sends the
    /// kernel never completes.
    pub fn flush(&mut self) -> io::Result<()> {
        self.flush_until(None)
    }

    /// Waits until every send has completed, at most `timeout`.
    ///
    /// # Errors
    ///
    /// `TimedOut`, or as [`ZeroCopySender::flush`].
    pub fn flush_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.flush_until(Instant::now().checked_add(timeout))
    }

    /// Reaps the completions already reported and succeeds only if no send is still in
    /// flight; never waits.
    ///
    /// # Errors
    ///
    /// `WouldBlock` while a send is in flight, or as [`ZeroCopySender::flush`].
    pub fn try_flush(&mut self) -> io::Result<()> {
        self.reap()?;
        if self.ledger.pending.iter().any(|&p| p != 0) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "zero-copy sends are still in flight",
            ));
        }
        Ok(())
    }

    fn flush_until(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        for slot in 0..self.slots {
            self.wait_free(slot, deadline)?;
        }
        self.reap()?;
        Ok(())
    }

    /// Gives the socket back, after [`ZeroCopySender::flush`] (in-flight sends would
    /// otherwise still reference the pool, which is freed here: the kernel keeps the pages
    /// alive, but their contents are no longer guaranteed).
    pub fn into_socket(self) -> OwnedFd {
        self.sock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmsg(level: i32, ty: i32, data: &[u8]) -> Vec<u8> {
        let hdr = std::mem::size_of::<libc::cmsghdr>();
        let mut v = Vec::new();
        v.extend_from_slice(&(hdr + data.len()).to_ne_bytes());
        v.extend_from_slice(&level.to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(data);
        while v.len() % 8 != 0 {
            v.push(0);
        }
        v
    }

    fn ee(errno: u32, origin: u8, code: u8, info: u32, data: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&errno.to_ne_bytes());
        v.extend_from_slice(&[origin, 0, code, 0]);
        v.extend_from_slice(&info.to_ne_bytes());
        v.extend_from_slice(&data.to_ne_bytes());
        v.extend_from_slice(&[0u8; 16]); // the offender address that follows
        v
    }

    #[test]
    fn parses_a_completion() {
        let c = cmsg(
            libc::SOL_IP,
            libc::IP_RECVERR,
            &ee(0, sys::SO_EE_ORIGIN_ZEROCOPY, 1, 5, 9),
        );
        assert_eq!(
            Completion::parse(&c),
            Some(Completion {
                first: 5,
                last: 9,
                copied: true
            })
        );
        assert_eq!(Completion::parse(&c).unwrap().len(), 5);
        let c6 = cmsg(
            libc::SOL_IPV6,
            libc::IPV6_RECVERR,
            &ee(0, sys::SO_EE_ORIGIN_ZEROCOPY, 0, u32::MAX, 1),
        );
        let p = Completion::parse(&c6).unwrap();
        assert!(!p.copied);
        assert_eq!(p.len(), 3, "wrapping range");
    }

    #[test]
    fn refuses_odd_input_without_panicking() {
        let good = cmsg(
            libc::SOL_IP,
            libc::IP_RECVERR,
            &ee(0, sys::SO_EE_ORIGIN_ZEROCOPY, 0, 0, 0),
        );
        for cut in 0..good.len() {
            let _ = Completion::parse(&good[..cut]);
        }
        // A foreign origin, an error, a foreign level, a zero length.
        for bad in [
            cmsg(libc::SOL_IP, libc::IP_RECVERR, &ee(0, 2, 0, 0, 0)),
            cmsg(
                libc::SOL_IP,
                libc::IP_RECVERR,
                &ee(5, sys::SO_EE_ORIGIN_ZEROCOPY, 0, 0, 0),
            ),
            cmsg(
                libc::SOL_SOCKET,
                1,
                &ee(0, sys::SO_EE_ORIGIN_ZEROCOPY, 0, 0, 0),
            ),
        ] {
            assert_eq!(Completion::parse(&bad), None);
        }
        let mut zero = good.clone();
        zero[..8].copy_from_slice(&0usize.to_ne_bytes());
        assert_eq!(Completion::parse(&zero), None);
        let mut huge = good.clone();
        huge[..8].copy_from_slice(&usize::MAX.to_ne_bytes());
        let _ = Completion::parse(&huge);
        // Garbage of every length.
        let mut x = 0x1234_5678u32;
        for len in 0..200 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = Completion::parse(&v);
        }
        // A foreign message first, then ours.
        let mut two = cmsg(libc::SOL_SOCKET, 1, &[1, 2, 3]);
        two.extend_from_slice(&good);
        assert!(Completion::parse(&two).is_some());
    }

    #[test]
    fn ledger_frees_a_slot_only_when_all_its_sends_completed() {
        let mut l = Ledger::new(2);
        let a = l.issue(0);
        let b = l.issue(0); // a partial send: two ids for slot 0
        let c = l.issue(1);
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(l.complete(0, 0), 1);
        assert_eq!(l.pending[0], 1);
        assert_eq!(l.complete(2, 2), 1, "out of order");
        assert_eq!(l.pending[1], 0);
        assert_eq!(l.complete(2, 2), 0, "a duplicate completes nothing");
        assert_eq!(l.complete(1, 1), 1);
        assert_eq!(l.pending, vec![0, 0]);
        assert_eq!(l.in_flight(), 0);
        assert!(l.outstanding.is_empty());
    }

    #[test]
    fn ledger_wraps() {
        let mut l = Ledger::new(1);
        l.next_id = u32::MAX - 1;
        for _ in 0..4 {
            l.issue(0);
        }
        assert_eq!(l.complete(u32::MAX - 1, 1), 4);
        assert_eq!(l.pending[0], 0);
    }
}
