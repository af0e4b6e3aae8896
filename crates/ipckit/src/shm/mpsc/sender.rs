//! A producer's handle: [`MpscSender`] registers in the producer table, watches the
//! receiver, and sends.

use super::layout::{
    geometry, views, MpscHeader, ShmQueue, ENTRY_CLAIMING, ENTRY_FREE, ENTRY_LIVE, HDR_OFF,
    MPSC_LAYOUT,
};
use super::queue::{
    advance, claim_slot, corrupt_tail, publish, try_claim, ProducerSleep, QueueMem, MAX_PRODUCERS,
    TAG_BITS, TAG_MASK,
};
use crate::error::invalid;
use crate::peer::{self, Hello, Watcher};
use crate::shm::hello::{get_hello, put_hello};
use crate::shm::ring;
use crate::shm::segment::{Segment, SegmentBuilder};
use crate::shm::sync::{futex_wake, AtomicU64, Ordering};
use crate::shm::wait::wait_on;
use crate::sys::fd as sysfd;
use crate::transport::PeerInfo;
use crate::wait::{Deadline, Wait};
use crate::SendError;
use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One producer of an MPSC queue. Any number of processes (up to [`MAX_PRODUCERS`] at once)
/// may each open their own with [`MpscBuilder::open`](super::MpscBuilder::open); see
/// [`MpscReceiver`](super::MpscReceiver) for an example.
///
/// A send claims a slot with one compare-and-swap on the slot, moves the shared enqueue
/// position on with another, copies the message and publishes it: it never waits for
/// another producer.
///
/// # The receiver dies
///
/// Each sender watches the receiver with a pidfd, in a small thread. When the receiver exits
/// or is killed, a `send` blocked on a full queue returns [`SendError::PeerGone`] (measured
/// here: 0.3-0.7 ms after a SIGKILL, under every wait strategy) and every later call returns
/// it at once. A dropped receiver marks the queue closed, with the same effect. Messages still
/// queued then are lost with the receiver. A receiver in another pid namespace cannot be
/// watched: only its clean drop is seen.
pub struct MpscSender {
    q: ShmQueue,
    idx: usize,
    mask: usize,
    max: usize,
    wait: Wait,
    woke_up_at: Option<Instant>,
    receiver: Option<PeerInfo>,
    dead: Arc<AtomicBool>,
    watcher: Option<Watcher>,
    /// A claim of ours will never be published (see `abandon_claim`).
    abandoned: bool,
    seg: Segment,
}

impl fmt::Debug for MpscSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpscSender")
            .field("segment", &self.seg)
            .field("entry", &self.idx)
            .field("max", &self.max)
            .field("wait", &self.wait)
            .field("receiver", &self.receiver)
            .finish()
    }
}

/// A token unique to one registration of this process: its pid and a counter.
fn token() -> u64 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xff_ffff;
    (u64::from(crate::sys::proc::getpid()) << 24) | u64::from(n)
}

fn refused(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, msg)
}

impl MpscSender {
    /// Opens the queue `name` and registers as a producer (see
    /// [`MpscBuilder::open`](super::MpscBuilder::open)).
    pub(super) fn open(name: &str, wait: Wait) -> io::Result<MpscSender> {
        let seg = SegmentBuilder::new(name).layout(MPSC_LAYOUT).open()?;
        let bad = |what: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{name}: {what} in the header is not valid"),
            )
        };
        let (slots, slot_size, stride, maxp) = {
            // The header is published: open saw the magic.
            let hdr: &MpscHeader = seg.region().at(HDR_OFF);
            let l = |a: &AtomicU64| a.load(Ordering::Relaxed) as usize;
            (
                l(&hdr.slots),
                l(&hdr.slot_size),
                l(&hdr.stride),
                l(&hdr.max_producers),
            )
        };
        let (want_stride, _) = geometry(slots, slot_size).map_err(|e| {
            bad(format!(
                "the geometry ({slots} slots of {slot_size} bytes: {e})"
            ))
        })?;
        if stride != want_stride {
            return Err(bad(format!("slot stride {stride}")));
        }
        if maxp != MAX_PRODUCERS {
            return Err(bad(format!("a producer table of {maxp}")));
        }
        let q = views(&seg, slots, stride)?;
        let server =
            get_hello(&q.hdr.receiver).ok_or_else(|| bad("the receiver's hello".into()))?;
        if q.ctl.rx.closed.load(Ordering::Acquire) != 0 {
            return Err(refused(format!("{name}: its receiver has closed it")));
        }
        let (receiver, pidfd) = peer::watch(&server);
        if let Some(fd) = &pidfd {
            if sysfd::revents(fd.as_fd(), libc::POLLIN)? != 0 {
                return Err(refused(format!(
                    "{name}: its receiver (pid {}) is gone",
                    server.pid
                )));
            }
        }
        let idx = register(&q).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{name}: all {MAX_PRODUCERS} producer entries are in use"),
            )
        })?;
        // Wake a waiting consumer: it looks at the table and starts to watch this process at
        // once, so a death even before the first publish is noticed within a millisecond.
        q.ctl.rx.seq.fetch_add(1, Ordering::SeqCst);
        futex_wake(&q.ctl.rx.seq);
        let dead = Arc::new(AtomicBool::new(false));
        let mut tx = MpscSender {
            q,
            idx,
            mask: slots - 1,
            max: slot_size,
            wait: Wait::Spin,
            woke_up_at: None,
            receiver,
            dead: dead.clone(),
            watcher: None,
            abandoned: false,
            seg,
        };
        // From here, dropping `tx` deregisters.
        if let Some(fd) = pidfd {
            // Wakes this process's producers asleep on a full queue (others have their own).
            let seq = &q.ctl.tx.seq;
            tx.watcher = Some(Watcher::start("ipckit-mpsc-watch", fd, move |_| {
                dead.store(true, Ordering::SeqCst);
                seq.fetch_add(1, Ordering::SeqCst);
                futex_wake(seq);
            })?);
        }
        tx.set_wait_strategy(wait);
        Ok(tx)
    }

    /// The largest message: the queue's slot size.
    pub fn max_msg_size(&self) -> usize {
        self.max
    }

    /// The wait strategy.
    pub fn wait_strategy(&self) -> Wait {
        self.wait
    }

    /// Changes the wait strategy; publishes whether this producer may now sleep.
    pub fn set_wait_strategy(&mut self, wait: Wait) {
        let bit = 1u64 << self.idx;
        let line = &self.q.ctl.tx.may_sleep;
        if wait == Wait::Spin {
            line.fetch_and(!bit, Ordering::SeqCst);
        } else if line.fetch_or(bit, Ordering::SeqCst) & bit == 0 {
            self.woke_up_at = Some(Instant::now());
        }
        self.wait = wait;
    }

    /// The receiver's pid, as far as it can be known here.
    pub fn peer(&self) -> Option<PeerInfo> {
        self.receiver
    }

    /// The segment behind the queue.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    fn receiver_gone(q: &ShmQueue, dead: &AtomicBool) -> bool {
        q.ctl.rx.closed.load(Ordering::Acquire) != 0 || dead.load(Ordering::Acquire)
    }

    /// Sends `msg`, waiting for a free slot under the wait strategy.
    ///
    /// # Errors
    ///
    /// [`SendError::TooLarge`] for a message over the slot size; [`SendError::PeerGone`] if
    /// the receiver was dropped, exited or was killed; `Io(InvalidData)` if the queue's
    /// enqueue position was written outside the protocol. Nothing is sent in these cases.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_deadline(msg, Deadline::Never)
    }

    /// Sends `msg` if a slot is free now.
    ///
    /// # Errors
    ///
    /// [`SendError::Full`], or as [`MpscSender::send`].
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_deadline(msg, Deadline::Now)
    }

    /// Sends `msg`, waiting at most `timeout` for a free slot.
    ///
    /// # Errors
    ///
    /// [`SendError::Timeout`], or as [`MpscSender::send`].
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.send_deadline(msg, Deadline::after(timeout))
    }

    /// Sends `msg`, waiting until `deadline` for a free slot.
    ///
    /// # Errors
    ///
    /// As [`MpscSender::send`], [`MpscSender::try_send`] and [`MpscSender::send_timeout`].
    #[inline]
    pub fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<(), SendError> {
        if msg.len() > self.max {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max: self.max,
            });
        }
        let (q, mask, idx) = (self.q, self.mask, self.idx);
        if Self::receiver_gone(&q, &self.dead) {
            return Err(SendError::PeerGone);
        }
        let pos = match try_claim(&q, mask, idx) {
            Some(p) => p,
            None => {
                let dead = &*self.dead;
                let sleeper = ProducerSleep {
                    line: &q.ctl.tx,
                    bit: 1 << idx,
                };
                wait_on(
                    self.wait,
                    deadline,
                    &sleeper,
                    &mut self.woke_up_at,
                    None,
                    |_| {
                        if let Some(p) = try_claim(&q, mask, idx) {
                            return Ok(Some(p));
                        }
                        if Self::receiver_gone(&q, dead) {
                            return Err(SendError::PeerGone);
                        }
                        if let Some(e) = corrupt_tail(&q, mask) {
                            return Err(SendError::Io(e));
                        }
                        Ok(None)
                    },
                )?
            }
        };
        publish(&q, mask, pos, msg);
        ring::wake(&q.ctl.rx);
        Ok(())
    }
}

/// Claims a slot and never publishes it: what a producer killed in the middle of a send
/// leaves behind, for tests of that case. The entry stays registered after `tx` is dropped,
/// so the consumer skips the claim only once this process is gone.
///
/// # Errors
///
/// [`SendError::Full`] if no slot is free, [`SendError::PeerGone`] if the receiver is.
pub fn abandon_claim(tx: &mut MpscSender) -> Result<(), SendError> {
    abandon_claim_at(tx, "advance", &[])
}

/// Like [`abandon_claim`], stopping the send of `msg` at `step`: `"claim"` (the slot is
/// claimed, `tail` not moved on), `"advance"` (`tail` moved on too), `"mid-write"` (the
/// length and half of `msg` written) or `"written"` (all of it written, not published):
/// every point at which a producer can be killed.
///
/// # Errors
///
/// As [`abandon_claim`]; [`SendError::TooLarge`]; `Io(InvalidInput)` for another `step`.
pub fn abandon_claim_at(tx: &mut MpscSender, step: &str, msg: &[u8]) -> Result<(), SendError> {
    const STEPS: [&str; 4] = ["claim", "advance", "mid-write", "written"];
    let Some(n) = STEPS.iter().position(|s| *s == step) else {
        return Err(SendError::Io(invalid(format!(
            "no step {step:?} in a send (one of {STEPS:?})"
        ))));
    };
    if msg.len() > tx.max {
        return Err(SendError::TooLarge {
            len: msg.len(),
            max: tx.max,
        });
    }
    if MpscSender::receiver_gone(&tx.q, &tx.dead) {
        return Err(SendError::PeerGone);
    }
    let pos = claim_slot(&tx.q, tx.mask, tx.idx).ok_or(SendError::Full)?;
    tx.abandoned = true;
    if n >= 1 {
        advance(&tx.q, pos);
    }
    if n >= 2 {
        let slot = pos as usize & tx.mask;
        tx.q.len(slot).store(msg.len() as u32, Ordering::Relaxed);
        let part = if n == 2 { msg.len() / 2 } else { msg.len() };
        tx.q.write(slot, &msg[..part]);
    }
    Ok(())
}

/// Takes a free producer entry and writes our hello in it; `None` if all are taken.
fn register(q: &ShmQueue) -> Option<usize> {
    let hello = Hello::mine();
    'again: loop {
        for idx in 0..MAX_PRODUCERS {
            let e = q.entry(idx);
            let claiming = (token() << TAG_BITS) | ENTRY_CLAIMING;
            if e.state
                .compare_exchange(ENTRY_FREE, claiming, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            put_hello(&e.hello, &hello);
            // A CAS, not a store: the consumer frees an entry left claiming too long (its
            // process presumed killed while opening), and another may have taken it since.
            if e.state
                .compare_exchange(
                    claiming,
                    (claiming & !TAG_MASK) | ENTRY_LIVE,
                    Ordering::Release,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue 'again;
            }
            q.hdr.opened.fetch_add(1, Ordering::SeqCst);
            return Some(idx);
        }
        return None;
    }
}

impl Drop for MpscSender {
    fn drop(&mut self) {
        let bit = !(1u64 << self.idx);
        let tx = &self.q.ctl.tx;
        tx.may_sleep.fetch_and(bit, Ordering::SeqCst);
        tx.sleeping.fetch_and(bit, Ordering::SeqCst);
        // Every claim of ours is published (send claims and publishes in one call), so the
        // entry can be reused at once; unless one was abandoned: then it stays ours until
        // this process is gone, and the consumer skips the claim and retires the entry.
        if !self.abandoned {
            self.q
                .entry(self.idx)
                .state
                .store(ENTRY_FREE, Ordering::Release);
        }
        self.q.hdr.left.fetch_add(1, Ordering::SeqCst);
        let rx = &self.q.ctl.rx;
        rx.seq.fetch_add(1, Ordering::SeqCst);
        futex_wake(&rx.seq);
        // Join the watcher before the segment (and the word it wakes) is unmapped.
        self.watcher.take();
    }
}
