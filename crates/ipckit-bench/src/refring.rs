//! The minimal reference ring every `shm` row is compared with (ipckit's ring pair as a
//! [`Channel`] is [`ShmChannel`], in its own file and re-exported here).
//!
//! The reference is the textbook ring a C programmer writes in a hundred lines, with no API
//! around it: per direction a `tail` and a `head` index on their own 128-byte lines, each side
//! caching the other's index, records of an 8-byte length and the payload rounded up to 8
//! bytes, a wrap marker where a record would not fit, `memcpy` in and out. Spin waits poll the
//! index; blocking waits use the same flag-and-futex handshake ipckit uses (with no timeout,
//! so a dead peer would hang it: a reference loop, not a library).

use crate::scenario::Channel;
pub use crate::shm_channel::ShmChannel;
use crate::sys::{futex_wait, futex_wake, SharedPage};
use ipckit::Wait;
use std::io;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

const TAIL: usize = 0;
const HEAD: usize = 128;
const RX_WAIT: usize = 256;
const TX_WAIT: usize = 384;
const DATA: usize = 512;
const WRAP: u64 = u64::MAX;

/// Bytes of shared memory a reference ring pair of `cap` bytes per direction needs.
pub fn pair_len(cap: usize) -> usize {
    2 * (DATA + cap)
}

/// One side of the reference ring pair.
#[derive(Debug)]
pub struct RefRing {
    mem: SharedPage,
    cap: usize,
    tx_base: usize,
    rx_base: usize,
    tx_pos: u64,
    tx_head: u64,
    rx_pos: u64,
    rx_tail: u64,
    wait: Wait,
}

impl RefRing {
    /// Side `a` (the parent) sends on the first ring; the other side on the second.
    pub fn new(mem: SharedPage, cap: usize, a: bool, wait: Wait) -> RefRing {
        let (tx_base, rx_base) = if a { (0, DATA + cap) } else { (DATA + cap, 0) };
        RefRing {
            mem,
            cap,
            tx_base,
            rx_base,
            tx_pos: 0,
            tx_head: 0,
            rx_pos: 0,
            rx_tail: 0,
            wait,
        }
    }

    /// Waits until `ready` holds: spins, or sleeps on the wait line at `line`.
    #[inline]
    fn wait_until(&self, line: usize, mut ready: impl FnMut() -> bool) -> io::Result<()> {
        let start = Instant::now();
        let spin_for = match self.wait {
            Wait::Spin => Duration::MAX,
            Wait::Block => Duration::ZERO,
            Wait::Adaptive { spin } => spin,
        };
        let mut n = 0u32;
        loop {
            if ready() {
                return Ok(());
            }
            std::hint::spin_loop();
            n = n.wrapping_add(1);
            if n.is_multiple_of(64) && start.elapsed() >= spin_for {
                break;
            }
            if spin_for == Duration::ZERO {
                break;
            }
        }
        let seq = self.mem.atomic32_at(line);
        let sleeping = self.mem.atomic32_at(line + 4);
        loop {
            let s = seq.load(Ordering::SeqCst);
            sleeping.store(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if ready() {
                sleeping.store(0, Ordering::Relaxed);
                return Ok(());
            }
            futex_wait(seq, s, 0);
            sleeping.store(0, Ordering::Relaxed);
        }
    }

    #[inline]
    fn wake(&self, line: usize) {
        if self.wait == Wait::Spin {
            return;
        }
        fence(Ordering::SeqCst);
        if self.mem.atomic32_at(line + 4).load(Ordering::Relaxed) != 0 {
            self.mem.atomic32_at(line).fetch_add(1, Ordering::SeqCst);
            futex_wake(self.mem.atomic32_at(line));
        }
    }
}

impl Channel for RefRing {
    #[inline]
    fn send(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let len = buf.len();
        let rec = 8 + len.next_multiple_of(8);
        if rec > self.cap / 2 {
            return Err(io::Error::other("message too large for the reference ring"));
        }
        let off = (self.tx_pos as usize) % self.cap;
        let need = if off + rec > self.cap {
            self.cap - off + rec
        } else {
            rec
        } as u64;
        let b = self.tx_base;
        if self.tx_pos + need - self.tx_head > self.cap as u64 {
            let head = self.mem.atomic_at(b + HEAD);
            let (cap, pos) = (self.cap as u64, self.tx_pos);
            let mut h = self.tx_head;
            self.wait_until(b + TX_WAIT, || {
                h = head.load(Ordering::Acquire);
                pos + need - h <= cap
            })?;
            self.tx_head = h;
        }
        let mut off = off;
        if off + rec > self.cap {
            self.mem
                .atomic_at(b + DATA + off)
                .store(WRAP, Ordering::Relaxed);
            self.tx_pos += (self.cap - off) as u64;
            off = 0;
        }
        self.mem
            .atomic_at(b + DATA + off)
            .store(len as u64, Ordering::Relaxed);
        self.mem.copy_in(b + DATA + off + 8, buf);
        self.tx_pos += rec as u64;
        self.mem
            .atomic_at(b + TAIL)
            .store(self.tx_pos, Ordering::Release);
        self.wake(b + RX_WAIT);
        Ok(())
    }

    #[inline]
    fn recv(&mut self, buf: &mut [u8], _expect: usize) -> io::Result<usize> {
        let b = self.rx_base;
        loop {
            if self.rx_pos == self.rx_tail {
                let tail = self.mem.atomic_at(b + TAIL);
                let pos = self.rx_pos;
                let mut t = self.rx_tail;
                self.wait_until(b + RX_WAIT, || {
                    t = tail.load(Ordering::Acquire);
                    t != pos
                })?;
                self.rx_tail = t;
            }
            let off = (self.rx_pos as usize) % self.cap;
            let len = self.mem.atomic_at(b + DATA + off).load(Ordering::Relaxed);
            if len == WRAP {
                self.rx_pos += (self.cap - off) as u64;
                continue;
            }
            let len = len as usize;
            if len > buf.len() {
                return Err(io::Error::other("reference ring: buffer too small"));
            }
            self.mem.copy_out(b + DATA + off + 8, &mut buf[..len]);
            self.rx_pos += (8 + len.next_multiple_of(8)) as u64;
            self.mem
                .atomic_at(b + HEAD)
                .store(self.rx_pos, Ordering::Release);
            self.wake(b + TX_WAIT);
            return Ok(len);
        }
    }

    fn recv_timeout(
        &mut self,
        buf: &mut [u8],
        expect: usize,
        _timeout: Duration,
    ) -> io::Result<Option<usize>> {
        self.recv(buf, expect).map(Some)
    }
}
