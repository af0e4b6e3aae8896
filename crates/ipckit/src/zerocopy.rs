//! Zero-copy paths: `vmsplice`, `splice`, `tee`, `sendfile`, and `MSG_ZEROCOPY` on TCP, with
//! the one rule each of them brings: **a page handed to the kernel by reference must not be
//! rewritten until the kernel is done with it.**
//!
//! - [`vmsplice`] puts references to your pages into a pipe; the reader copies from them
//!   when it reads. [`VmspliceSender`] owns a ring of page-aligned memory large enough that
//!   no page is rewritten before the reader has read it, whatever the message sizes (the
//!   proof, and the flaw of the usual per-message rule, are on [`vmsplice_ring_pages`]).
//! - [`splice`] moves data between a pipe and a file or socket (or two pipes) inside the
//!   kernel; [`tee`] duplicates a pipe's contents into another pipe without consuming them.
//! - [`sendfile`] sends a file's page-cache pages to a socket.
//! - [`ZeroCopySender`] sends from a pool of buffers with `MSG_ZEROCOPY`, reads the kernel's
//!   completions from the socket's error queue, and lends a buffer again only after the send
//!   that used it completed. It counts completions and those the kernel marks as copied
//!   (`SO_EE_CODE_ZEROCOPY_COPIED`): on loopback the kernel copies anyway, when it delivers
//!   the data to the receiving socket, and says so.
//!
//! # Examples
//!
//! ```
//! use ipckit::zerocopy::VmspliceSender;
//! use std::io::Read;
//! # fn main() -> std::io::Result<()> {
//! let (mut r, w) = ipckit::pipe::raw_pipe()?;
//! let mut tx = VmspliceSender::new(w, 4096)?; // 64 KiB pipe: a ring of 17 pages
//! tx.send_with(5, |buf| buf.copy_from_slice(b"hello"))?;
//! let mut got = [0u8; 5];
//! r.read_exact(&mut got)?; // the reader copies out of the sender's page
//! assert_eq!(&got, b"hello");
//! # Ok(()) }
//! ```
//!
//! # References
//!
//! `vmsplice(2)`, `splice(2)`, `tee(2)`, `sendfile(2)`, `pipe(7)`; the kernel's
//! `Documentation/networking/msg_zerocopy.rst`.

use crate::sys::fd as sysfd;
use crate::sys::pipe as syspipe;
use crate::sys::zerocopy as sys;
use crate::wait::Wait;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// Flags of [`splice`], [`tee`] and [`vmsplice`] (`SPLICE_F_*`). Combine with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpliceFlags(u32);

impl SpliceFlags {
    /// No flags: block as the descriptors do.
    pub const NONE: SpliceFlags = SpliceFlags(0);
    /// `SPLICE_F_MOVE`: a hint to move pages instead of copying (a no-op in current kernels).
    pub const MOVE: SpliceFlags = SpliceFlags(libc::SPLICE_F_MOVE);
    /// `SPLICE_F_NONBLOCK`: do not block on the pipe (the other descriptor's own mode still
    /// applies).
    pub const NONBLOCK: SpliceFlags = SpliceFlags(libc::SPLICE_F_NONBLOCK);
    /// `SPLICE_F_MORE`: more data follows (like `MSG_MORE` on a socket).
    pub const MORE: SpliceFlags = SpliceFlags(libc::SPLICE_F_MORE);

    /// The raw bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl std::ops::BitOr for SpliceFlags {
    type Output = SpliceFlags;
    fn bitor(self, rhs: SpliceFlags) -> SpliceFlags {
        SpliceFlags(self.0 | rhs.0)
    }
}

/// Puts references to the pages of `buf` into the pipe `pipe` (its write end); returns the
/// bytes taken, which may be fewer than `buf.len()` when the pipe fills.
///
/// No `SPLICE_F_GIFT`: the pages stay yours, and the kernel only reads them, **later**: the
/// pipe holds references to them until the reader has read the bytes, and a read copies
/// whatever the pages hold at that moment. Do not modify `buf` until the reader has consumed
/// it ([`VmspliceSender`] arranges that). If the reader moves the data on with [`splice`] or
/// [`tee`] instead of reading it, the references travel with it and the pipe's capacity no
/// longer bounds how long they live.
///
/// # Errors
///
/// `WouldBlock` with [`SpliceFlags::NONBLOCK`] (or a non-blocking pipe) when the pipe is
/// full; `EBADF` if `pipe` is not a pipe's write end; `BrokenPipe` if the read end is closed (the kernel also raises
/// `SIGPIPE`, which Rust programs ignore unless they changed that).
///
/// # References
///
/// `vmsplice(2)`.
pub fn vmsplice(pipe: impl AsFd, buf: &[u8], flags: SpliceFlags) -> io::Result<usize> {
    sys::vmsplice(pipe.as_fd(), buf, flags.bits() & !libc::SPLICE_F_GIFT)
}

/// Moves up to `len` bytes from `from` to `to` inside the kernel; one of the two must be a
/// pipe. `off_in`/`off_out` are file offsets (for files; `None` uses and advances the file
/// position; must be `None` for pipes and sockets), advanced by the bytes moved. Returns the
/// bytes moved; 0 at end of input.
///
/// # Errors
///
/// `WouldBlock` with [`SpliceFlags::NONBLOCK`] (or a non-blocking descriptor);
/// `InvalidInput` (`EINVAL`) if neither is a pipe or an offset is given for a pipe; `ESPIPE`;
/// `EPIPE` if the reader of `to` is gone.
///
/// # References
///
/// `splice(2)`.
pub fn splice(
    from: impl AsFd,
    off_in: Option<&mut u64>,
    to: impl AsFd,
    off_out: Option<&mut u64>,
    len: usize,
    flags: SpliceFlags,
) -> io::Result<usize> {
    let mut oi = off_in.as_ref().map(|o| to_off(**o)).transpose()?;
    let mut oo = off_out.as_ref().map(|o| to_off(**o)).transpose()?;
    let n = sys::splice(
        from.as_fd(),
        oi.as_mut(),
        to.as_fd(),
        oo.as_mut(),
        len,
        flags.bits(),
    )?;
    if let (Some(o), Some(v)) = (off_in, oi) {
        *o = v as u64;
    }
    if let (Some(o), Some(v)) = (off_out, oo) {
        *o = v as u64;
    }
    Ok(n)
}

fn to_off(o: u64) -> io::Result<i64> {
    i64::try_from(o).map_err(|_| crate::error::invalid(format!("file offset {o} is too large")))
}

/// Copies up to `len` bytes of references from the pipe `from` to the pipe `to` without
/// consuming them from `from`. Returns the bytes duplicated; 0 if `from` is empty and has no
/// writers.
///
/// # Errors
///
/// `WouldBlock` with [`SpliceFlags::NONBLOCK`]; `InvalidInput` if either is not a pipe or
/// both are the same pipe.
///
/// # References
///
/// `tee(2)`.
pub fn tee(from: impl AsFd, to: impl AsFd, len: usize, flags: SpliceFlags) -> io::Result<usize> {
    sys::tee(from.as_fd(), to.as_fd(), len, flags.bits())
}

/// Sends up to `count` bytes of `file`, from `offset` (advanced by the bytes sent; `None`
/// uses and advances the file position), to `socket`, without passing through user memory:
/// the socket references the file's page-cache pages. Returns the bytes sent.
///
/// # Errors
///
/// `WouldBlock` on a non-blocking socket whose buffer is full; `BrokenPipe` if the peer is
/// gone (with `SIGPIPE`, as for `write`); `InvalidInput` for a file that cannot be mapped for
/// sending.
///
/// # References
///
/// `sendfile(2)`.
pub fn sendfile(
    socket: impl AsFd,
    file: impl AsFd,
    offset: Option<&mut u64>,
    count: usize,
) -> io::Result<usize> {
    let mut o = offset.as_ref().map(|o| to_off(**o)).transpose()?;
    let n = sys::sendfile(socket.as_fd(), file.as_fd(), o.as_mut(), count)?;
    if let (Some(off), Some(v)) = (offset, o) {
        *off = v as u64;
    }
    Ok(n)
}

/// Waits (poll) until `fd` is ready for `events`, retrying `op` while it says `WouldBlock`.
fn retry_ready(
    fd: BorrowedFd<'_>,
    events: i16,
    mut op: impl FnMut() -> io::Result<usize>,
) -> io::Result<usize> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                sysfd::poll(&[(fd, events)], None)?;
            }
            other => return other,
        }
    }
}

/// The page size, in bytes.
pub fn page_size() -> usize {
    sys::page_size()
}

/// How many pages a [`VmspliceSender`]'s ring needs so that no page is rewritten before the
/// reader has read it: `S + 3K - 2`, for a pipe of `S = pipe_capacity / page` slots and
/// messages of at most `K = ceil(max_msg / page)` pages, each starting on a page boundary,
/// read by a reader that copies (`read`), never splices onward.
///
/// Why it suffices. A pipe holds at most `S` buffers (slots), and a slot references at most
/// one page, so a message spanning `k` pages fills `k` slots while it waits. Number the
/// sender's pages virtually, each message taking the next `k` of them (skipping, at the
/// ring's end, the fewer than `K` that would not fit: padding), the page in the ring being
/// the virtual number modulo `R`. Say message *m* used virtual page `v` and message *m'*
/// now wants `v + R`. The messages in between were entirely spliced; they cover at least
/// `R - 2K + 1` virtual pages between *m*'s end and *m'*'s start, minus at most `K - 1` of
/// padding (the stretch is shorter than `R`, so it wraps at most once): at least
/// `R - 3K + 2 = S` slots. Had any part of *m* still been in the pipe, all of theirs would
/// have been too (a pipe is FIFO): `1 + S` slots, more than it holds. So *m* was entirely
/// read, and a read releases a slot only after copying from it, under the pipe's lock,
/// which `vmsplice` takes too.
///
/// The usual rule, `pipe_capacity / msg_size + 1` buffers of `msg_size` bytes, rotated,
/// holds only if every message is that large: shorter ones fill fewer slots, so the pool
/// comes round before the pipe has been emptied of the first (this crate's tests saw
/// exactly that corruption with mixed sizes). The ring counts pages, whatever the sizes.
///
/// The bound needs the capacity not to grow while the ring is in use, and the reader to
/// copy: a reader that `splice`s or `tee`s the pages onward frees the slots while the pages
/// are still referenced elsewhere.
pub fn vmsplice_ring_pages(pipe_capacity: usize, max_msg: usize) -> usize {
    let page = sys::page_size();
    let slots = (pipe_capacity / page).max(1);
    let k = max_msg.max(1).div_ceil(page);
    slots + 3 * k - 2
}

/// What a [`VmspliceSender`] has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VmspliceStats {
    /// Messages sent.
    pub messages: u64,
    /// `vmsplice` calls made (more than messages when the pipe filled mid-message).
    pub calls: u64,
    /// Times a message found the pipe full and waited.
    pub waits: u64,
}

/// A pipe writer that sends with `vmsplice` from a ring of page-aligned memory, each message
/// starting on a fresh page; sized by [`vmsplice_ring_pages`] so that no page is rewritten
/// before the reader has read it, whatever the mix of message sizes.
///
/// The reader must read with `read` (copy), not `splice`/`tee` the data onward, and the
/// pipe's capacity must not grow while this writes (checked once per lap of the ring: a
/// larger capacity is refused with an error rather than risking a rewrite).
///
/// # References
///
/// `vmsplice(2)`, `pipe(7)` (capacity, `F_SETPIPE_SZ`).
#[derive(Debug)]
pub struct VmspliceSender {
    pipe: OwnedFd,
    ring: sys::PageBuf,
    page: usize,
    pages: usize,
    max_msg: usize,
    /// Next free page of the ring.
    next: usize,
    capacity: usize,
    stats: VmspliceStats,
    wait: Wait,
}

impl VmspliceSender {
    /// A sender for messages of at most `max_msg` bytes on the pipe whose write end is
    /// `pipe`, sized for the pipe's current capacity (set it first, e.g. with
    /// [`crate::pipe::set_capacity`]).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for `max_msg` 0; `EBADF` if `pipe` is not a pipe; the `mmap` error.
    pub fn new(pipe: impl Into<OwnedFd>, max_msg: usize) -> io::Result<VmspliceSender> {
        VmspliceSender::with_ring_pages(pipe, max_msg, 0)
    }

    /// As [`VmspliceSender::new`], with a ring of at least `pages` pages (never fewer than
    /// [`vmsplice_ring_pages`] asks for). A larger ring is never needed for correctness; it
    /// can be faster, because the sender then rewrites lines the reader copied longer ago
    /// (measure: on the 2-CPU VM of the README, twice the minimum moved 64 KiB messages
    /// faster).
    ///
    /// # Errors
    ///
    /// As [`VmspliceSender::new`].
    pub fn with_ring_pages(
        pipe: impl Into<OwnedFd>,
        max_msg: usize,
        pages: usize,
    ) -> io::Result<VmspliceSender> {
        let pipe = pipe.into();
        if max_msg == 0 {
            return Err(crate::error::invalid(
                "a vmsplice message needs at least 1 byte",
            ));
        }
        let capacity = syspipe::pipe_size(pipe.as_fd())?;
        let page = sys::page_size();
        let pages = vmsplice_ring_pages(capacity, max_msg).max(pages);
        let total = pages
            .checked_mul(page)
            .ok_or_else(|| crate::error::invalid("vmsplice ring too large"))?;
        let ring = sys::PageBuf::new(total)?;
        Ok(VmspliceSender {
            pipe,
            ring,
            page,
            pages,
            max_msg,
            next: 0,
            capacity,
            stats: VmspliceStats::default(),
            wait: Wait::Block,
        })
    }

    /// Pages in the ring.
    pub fn ring_pages(&self) -> usize {
        self.pages
    }

    /// The pipe capacity the ring was sized for.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// What it has done so far.
    pub fn stats(&self) -> VmspliceStats {
        self.stats
    }

    /// The pipe's write end.
    pub fn pipe(&self) -> BorrowedFd<'_> {
        self.pipe.as_fd()
    }

    /// How it waits while the pipe is full: [`Wait::Block`] (the default) sleeps in the
    /// kernel (in `vmsplice` on a blocking pipe, in `poll` on a non-blocking one);
    /// [`Wait::Spin`] retries `vmsplice(SPLICE_F_NONBLOCK)` at once, never sleeping, so the
    /// reader never has to wake it; [`Wait::Adaptive`] spins for its time, then sleeps.
    pub fn set_wait(&mut self, wait: Wait) {
        self.wait = wait;
    }

    /// Sends one message of `len` bytes that `fill` writes into the next pages of the ring,
    /// waiting while the pipe is full. An empty message sends nothing.
    ///
    /// # Errors
    ///
    /// `InvalidInput` over the maximum, or if the pipe's capacity grew since the ring was
    /// sized; `BrokenPipe` if the reader is gone; other `vmsplice`/`poll` errors. A message
    /// may then have been sent in part.
    pub fn send_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> io::Result<()> {
        if len > self.max_msg {
            return Err(crate::error::invalid(format!(
                "message of {len} bytes over this sender's maximum of {}",
                self.max_msg
            )));
        }
        if len == 0 {
            return Ok(());
        }
        let k = len.div_ceil(self.page);
        if self.next + k > self.pages {
            // Padding: a message never straddles the ring's end.
            self.next = 0;
        }
        if self.next == 0 && self.stats.messages > 0 {
            let now = syspipe::pipe_size(self.pipe.as_fd())?;
            if now > self.capacity {
                return Err(crate::error::invalid(format!(
                    "the pipe's capacity grew from {} to {now} bytes while vmsplicing; the \
                     ring of {} pages only protects {} bytes",
                    self.capacity, self.pages, self.capacity
                )));
            }
        }
        let at = self.next * self.page;
        fill(&mut self.ring.as_mut_slice()[at..at + len]);
        let buf = &self.ring.as_slice()[at..at + len];
        let (flags, spin_for) = match self.wait {
            Wait::Block => (0, Duration::ZERO),
            Wait::Spin => (libc::SPLICE_F_NONBLOCK, Duration::MAX),
            Wait::Adaptive { spin } => (libc::SPLICE_F_NONBLOCK, spin),
        };
        let mut off = 0;
        let mut waiting: Option<Instant> = None;
        while off < len {
            self.stats.calls += 1;
            match sys::vmsplice(self.pipe.as_fd(), &buf[off..], flags) {
                Ok(n) => {
                    off += n;
                    waiting = None;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let since = *waiting.get_or_insert_with(|| {
                        self.stats.waits += 1;
                        Instant::now()
                    });
                    if spin_for == Duration::MAX || since.elapsed() < spin_for {
                        std::hint::spin_loop();
                    } else {
                        sysfd::poll(&[(self.pipe.as_fd(), libc::POLLOUT)], None)?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.stats.messages += 1;
        self.next += k;
        Ok(())
    }

    /// Sends `data` (copied into the ring, then spliced).
    ///
    /// # Errors
    ///
    /// As [`VmspliceSender::send_with`].
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.send_with(data.len(), |b| b.copy_from_slice(data))
    }
}

/// Like [`splice`], repeated until `len` bytes moved, waiting (poll) on whichever side is
/// not ready. Returns the bytes moved, fewer than `len` only at end of input.
///
/// # Errors
///
/// As [`splice`], `WouldBlock` excepted.
pub fn splice_exact(from: impl AsFd, to: impl AsFd, len: usize) -> io::Result<usize> {
    let (from, to) = (from.as_fd(), to.as_fd());
    let mut done = 0;
    while done < len {
        match sys::splice(
            from,
            None,
            to,
            None,
            len - done,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        ) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                sysfd::poll(&[(from, libc::POLLIN), (to, libc::POLLOUT)], None)?;
                // Either side may be the one that blocked; a short sleep-free retry loop is
                // fine since poll returned on readiness of one of them.
            }
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Like [`sendfile`], repeated until `count` bytes from `offset` are sent, waiting (poll)
/// while the socket's buffer is full. Returns the bytes sent, fewer only at end of file.
///
/// # Errors
///
/// As [`sendfile`], `WouldBlock` excepted.
pub fn sendfile_exact(
    socket: impl AsFd,
    file: impl AsFd,
    offset: &mut u64,
    count: usize,
) -> io::Result<usize> {
    let (s, f) = (socket.as_fd(), file.as_fd());
    let mut done = 0;
    while done < count {
        let n = retry_ready(s, libc::POLLOUT, || {
            sendfile(s, f, Some(&mut *offset), count - done)
        })?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

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
/// ```no_run
/// use ipckit::zerocopy::ZeroCopySender;
/// # fn main() -> std::io::Result<()> {
/// let sock = std::net::TcpStream::connect("192.0.2.1:9000")?;
/// let mut tx = ZeroCopySender::new(sock, 8, 256 * 1024)?; // 8 buffers of 256 KiB
/// for i in 0..100u8 {
///     tx.send_with(256 * 1024, |buf| buf.fill(i))?; // waits for a buffer the kernel released
/// }
/// tx.flush(None)?;
/// let s = tx.stats();
/// println!("{} sends, {} completed, {} of them copied", s.sends, s.completions, s.copied);
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

    /// Waits until every send has completed, at most `timeout` (`None`: no limit).
    ///
    /// # Errors
    ///
    /// `TimedOut`, or the `recvmsg`/`poll` error.
    pub fn flush(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
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

    #[test]
    fn ring_sizes() {
        let page = page_size();
        let slots = (1 << 20) / page;
        assert_eq!(
            vmsplice_ring_pages(1 << 20, 64 << 10),
            slots + 3 * (65536 / page) - 2
        );
        assert_eq!(vmsplice_ring_pages(65536, 64), 65536 / page + 1);
        assert_eq!(vmsplice_ring_pages(65536, page + 1), 65536 / page + 4);
    }
}
