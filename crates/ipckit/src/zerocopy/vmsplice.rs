//! `vmsplice`: references to the caller's pages put into a pipe, and [`VmspliceSender`], the
//! ring of pages sized ([`vmsplice_ring_pages`]) so that none is rewritten before the reader
//! has copied it.

use super::SpliceFlags;
use crate::sys::fd as sysfd;
use crate::sys::pipe as syspipe;
use crate::sys::zerocopy as sys;
use crate::wait::Wait;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// Puts references to the pages of `buf` into the pipe `pipe` (its write end); returns the
/// bytes taken, which may be fewer than `buf.len()` when the pipe fills.
///
/// No `SPLICE_F_GIFT`: the pages stay yours, and the kernel only reads them, **later**: the
/// pipe holds references to them until the reader has read the bytes, and a read copies
/// whatever the pages hold at that moment. Do not modify `buf` until the reader has consumed
/// it ([`VmspliceSender`] arranges that). If the reader moves the data on with
/// [`splice`](super::splice()) or [`tee`](super::tee) instead of reading it, the references
/// travel with it and the pipe's capacity no longer bounds how long they live.
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

    /// The wait strategy: how it waits while the pipe is full.
    pub fn wait_strategy(&self) -> Wait {
        self.wait
    }

    /// How it waits while the pipe is full: [`Wait::Block`] (the default) sleeps in the
    /// kernel (in `vmsplice` on a blocking pipe, in `poll` on a non-blocking one);
    /// [`Wait::Spin`] retries `vmsplice(SPLICE_F_NONBLOCK)` at once, never sleeping, so the
    /// reader never has to wake it; [`Wait::Adaptive`] spins for its time, then sleeps.
    pub fn set_wait_strategy(&mut self, wait: Wait) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::page_size;

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
