//! A duplex shared-memory endpoint: two SPSC rings in one segment, one per direction, made
//! by a [`ShmListener`](super::ShmListener) and [`PairBuilder::open`](super::PairBuilder::open).
//!
//! Each side watches the other with a pidfd in a small thread that sleeps in `poll` until the
//! peer dies (or the endpoint is dropped). On death it raises a flag and wakes whatever this
//! side sleeps on, so a survivor blocked on the ring gets [`RecvError::PeerGone`] or
//! [`SendError::PeerGone`], never a hang. A clean close sets the ring's `closed` flag instead.

use super::pair::ShmRing;
use super::ring::{self, Consumer, Found, Producer, RingMem, WaitLine};
use super::segment::Segment;
use super::sync::{futex_wake, Ordering};
use super::wait::wait_on;
use crate::peer::{self, Hello};
use crate::transport::{PeerInfo, RawHandle, Transport};
use crate::wait::{Deadline, Wait};
use crate::{RecvError, SendError};
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

/// Polls of the tight receive loop before the general wait loop takes over.
const FAST_POLLS: u32 = 256;

/// One end of a shared-memory ring pair. Implements [`Transport`] (the copy API) and offers
/// the zero-copy API: [`ShmEndpoint::loan`] and [`ShmEndpoint::recv_ref`].
pub struct ShmEndpoint {
    tx: ShmRing,
    rx: ShmRing,
    prod: Producer,
    cons: Consumer,
    max: usize,
    wait: Wait,
    /// When this side last started to sleep after spinning only (see `shm::wait`).
    woke_up_at: Option<Instant>,
    peer: Option<PeerInfo>,
    dead: Arc<AtomicBool>,
    watcher: Option<peer::Watcher>,
    seg: Segment,
}

impl fmt::Debug for ShmEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmEndpoint")
            .field("segment", &self.seg)
            .field("max", &self.max)
            .field("wait", &self.wait)
            .field("peer", &self.peer)
            .finish()
    }
}

impl ShmEndpoint {
    pub(super) fn new(
        seg: Segment,
        tx: ShmRing,
        rx: ShmRing,
        cap: usize,
        max: usize,
        wait: Wait,
        hello: &Hello,
    ) -> io::Result<ShmEndpoint> {
        let (peer, pidfd) = peer::watch(hello);
        let dead = Arc::new(AtomicBool::new(false));
        let watcher = match pidfd {
            Some(fd) => Some(watch(fd, dead.clone(), [&rx.ctl.rx, &tx.ctl.tx])?),
            None => None,
        };
        let mut ep = ShmEndpoint {
            tx,
            rx,
            prod: Producer::new(cap),
            cons: Consumer::new(cap, max),
            max,
            wait: Wait::Spin,
            woke_up_at: None,
            peer,
            dead,
            watcher,
            seg,
        };
        ep.set_wait_strategy(wait);
        Ok(ep)
    }

    /// The capacity of each ring's data area.
    pub fn capacity(&self) -> usize {
        self.rx.data.len()
    }

    /// The segment behind the pair.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    #[inline]
    fn peer_closed_tx(&self) -> bool {
        self.tx.ctl.rx.closed.load(Ordering::Acquire) != 0 || self.dead.load(Ordering::Acquire)
    }

    /// Loans `len` bytes of the outgoing ring to write a message in place; publish it with
    /// [`Loan::commit`]. Waits for room under the wait strategy until `deadline`.
    ///
    /// ```
    /// # use ipckit::{shm::PairBuilder, Transport};
    /// # use std::time::Duration;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # // A connected pair: `ep` the client, `peer` the server (a thread opens the client
    /// # // while the server accepts), on a name no other example uses.
    /// # let name = format!("/doc-loan-{}", std::process::id());
    /// # let mut l = PairBuilder::new(&name).create()?;
    /// # let client = std::thread::spawn(move || PairBuilder::new(&name).open());
    /// # let mut peer = l.accept_timeout(Duration::from_secs(10))?;
    /// # let ep = &mut client.join().unwrap()?;
    /// use ipckit::Deadline;
    /// let mut loan = ep.loan(5, Deadline::Never)?;
    /// loan.copy_from_slice(b"hello"); // written straight into shared memory
    /// loan.commit();
    /// # let mut buf = [0; 5];
    /// # assert_eq!(peer.recv_timeout(&mut buf, Duration::from_secs(10))?, 5);
    /// # assert_eq!(&buf, b"hello");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Transport::send_deadline`].
    #[inline(always)]
    pub fn loan(&mut self, len: usize, deadline: Deadline) -> Result<Loan<'_>, SendError> {
        if len > self.max {
            return Err(SendError::TooLarge { len, max: self.max });
        }
        if self.peer_closed_tx() {
            return Err(SendError::PeerGone);
        }
        let start = match self.prod.reserve(&self.tx, len) {
            Ok(Some(s)) => s,
            Ok(None) => self.wait_for_space(len, deadline)?,
            Err(c) => return Err(send_corrupt(self.tx, c)),
        };
        let off = self.prod.payload_offset(start, len);
        Ok(Loan {
            ep: self,
            start,
            off,
            len,
        })
    }

    /// The ring is full: waits for room under the wait strategy. Out of line, so that the
    /// path of a message that fits keeps few registers to save (callgrind counted 15
    /// instructions a message of saves and restores when this was inlined into `loan`).
    #[inline(never)]
    fn wait_for_space(&mut self, len: usize, deadline: Deadline) -> Result<u64, SendError> {
        let (tx, wait, dead) = (self.tx, self.wait, &*self.dead);
        let prod = &mut self.prod;
        let woke = &mut self.woke_up_at;
        wait_on(wait, deadline, &tx.ctl.tx, woke, None, |_| {
            if let Some(s) = prod.reserve(&tx, len).map_err(|c| send_corrupt(tx, c))? {
                return Ok(Some(s));
            }
            if tx.ctl.rx.closed.load(Ordering::Acquire) != 0 || dead.load(Ordering::Acquire) {
                return Err(SendError::PeerGone);
            }
            Ok(None)
        })
    }

    /// Borrows the next incoming message in place; it is released (its space given back to
    /// the sender) when the returned [`Msg`] drops. Waits under the wait strategy.
    ///
    /// The bytes stay in memory the peer can still write: copy them out before you validate
    /// them, and use the copy ([what a peer can do](crate::shm#what-a-peer-can-do)).
    ///
    /// # Errors
    ///
    /// As [`Transport::recv_deadline`] (never `BufferTooSmall`).
    #[inline]
    pub fn recv_ref(&mut self, deadline: Deadline) -> Result<Msg<'_>, RecvError> {
        let f = self.next(deadline)?;
        Ok(Msg { ep: self, f })
    }

    #[inline(always)]
    fn next(&mut self, deadline: Deadline) -> Result<Found, RecvError> {
        match self.cons.peek(&self.rx) {
            Ok(Some(f)) => Ok(f),
            Ok(None) => self.wait_for_message(deadline),
            Err(c) => Err(recv_corrupt(self.rx, c)),
        }
    }

    /// Nothing published yet: waits under the wait strategy. Out of line, as
    /// [`ShmEndpoint::wait_for_space`].
    #[inline(never)]
    fn wait_for_message(&mut self, deadline: Deadline) -> Result<Found, RecvError> {
        let rx = self.rx;
        let corrupt = |c| recv_corrupt(rx, c);
        // The hot wait of a spinning receiver: a tight loop on the one header word, before
        // the general loop with its clock, deadline and liveness checks (a few µs at most).
        if self.wait != Wait::Block && deadline != Deadline::Now {
            for _ in 0..FAST_POLLS {
                super::sync::spin();
                if let Some(f) = self.cons.peek(&self.rx).map_err(corrupt)? {
                    return Ok(f);
                }
            }
        }
        let (wait, dead) = (self.wait, &*self.dead);
        let cons = &mut self.cons;
        wait_on(
            wait,
            deadline,
            &rx.ctl.rx,
            &mut self.woke_up_at,
            None,
            |_| {
                if let Some(f) = cons.peek(&rx).map_err(corrupt)? {
                    return Ok(Some(f));
                }
                if rx.ctl.tx.closed.load(Ordering::Acquire) != 0 || dead.load(Ordering::Acquire) {
                    // Whatever the peer published before closing or dying is delivered first.
                    return match cons.peek(&rx).map_err(corrupt)? {
                        Some(f) => Ok(Some(f)),
                        None => Err(RecvError::PeerGone),
                    };
                }
                Ok(None)
            },
        )
    }
}

/// A corrupt ring cannot be trusted again: the side that found it closes its end (so the
/// peer, if it is only buggy, gets `PeerGone` instead of waiting for ever) and reports
/// `InvalidData`.
fn abandon(own: &WaitLine, peer: &WaitLine) {
    own.closed.store(1, Ordering::Release);
    peer.seq.fetch_add(1, Ordering::SeqCst);
    futex_wake(&peer.seq);
}

fn corrupt_error(c: ring::Corrupt) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, c.to_string())
}

#[cold]
fn send_corrupt(tx: ShmRing, c: ring::Corrupt) -> SendError {
    abandon(&tx.ctl.tx, &tx.ctl.rx);
    SendError::Io(corrupt_error(c))
}

#[cold]
fn recv_corrupt(rx: ShmRing, c: ring::Corrupt) -> RecvError {
    abandon(&rx.ctl.rx, &rx.ctl.tx);
    RecvError::Io(corrupt_error(c))
}

/// Space loaned for one outgoing message. Derefs to the bytes; [`Loan::commit`] publishes
/// them; dropping it without committing sends nothing.
///
/// The bytes are shared memory the peer can write too: do not trust what you read back from
/// a loan ([what a peer can do](crate::shm#what-a-peer-can-do)).
pub struct Loan<'a> {
    ep: &'a mut ShmEndpoint,
    start: u64,
    off: usize,
    len: usize,
}

impl fmt::Debug for Loan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loan").field("len", &self.len).finish()
    }
}

impl Loan<'_> {
    /// Publishes the message.
    #[inline]
    pub fn commit(self) {
        self.ep.prod.commit(&self.ep.tx, self.start, self.len);
    }

    /// Publishes only the first `len` bytes (at most the loaned length).
    #[inline]
    pub fn commit_len(self, len: usize) {
        let len = len.min(self.len);
        let to = self.ep.prod.payload_offset(self.start, len);
        if to != self.off {
            move_payload(self.ep.tx, self.off, to, len);
        }
        self.ep.prod.commit(&self.ep.tx, self.start, len);
    }
}

/// A loan of over `ring::ALIGN_ABOVE` bytes cut to at most that: the consumer looks for the
/// shorter payload right after the header, so move it there. Out of line, and never on
/// [`Loan::commit`]'s path: with it there (even out of line) a 64-byte round trip went from
/// 130 to 190-200 ns here.
#[cold]
#[inline(never)]
fn move_payload(tx: ShmRing, from: usize, to: usize, len: usize) {
    let mut moved = [0u8; ring::ALIGN_ABOVE];
    tx.read(from, &mut moved[..len]);
    tx.write(to, &moved[..len]);
}

impl std::ops::Deref for Loan<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        #[allow(unsafe_code)]
        // SAFETY: reserved, uncommitted space: the consumer reads no further than the last
        // committed record, and this loan holds the only producer (`&mut`).
        unsafe {
            self.ep.tx.data.slice(self.off, self.len)
        }
    }
}

impl std::ops::DerefMut for Loan<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        #[allow(unsafe_code)]
        // SAFETY: as `deref`; the `&mut self` borrow makes this the only slice.
        unsafe {
            self.ep.tx.data.slice_mut(self.off, self.len)
        }
    }
}

/// A received message, borrowed in place. Released when dropped.
///
/// The bytes stay in memory the peer can still write: copy them out before you validate
/// them, and use the copy ([what a peer can do](crate::shm#what-a-peer-can-do)).
pub struct Msg<'a> {
    ep: &'a mut ShmEndpoint,
    f: Found,
}

impl fmt::Debug for Msg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Msg").field("len", &self.f.len).finish()
    }
}

impl std::ops::Deref for Msg<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        #[allow(unsafe_code)]
        // SAFETY: a published, unreleased record: the producer does not write it until
        // `head` passes it, which only our release (on drop) does.
        unsafe {
            self.ep.rx.data.slice(self.f.off, self.f.len)
        }
    }
}

impl Drop for Msg<'_> {
    #[inline]
    fn drop(&mut self) {
        self.ep.cons.release(&self.ep.rx, self.f.len);
    }
}

impl Transport for ShmEndpoint {
    fn mechanism(&self) -> crate::Mechanism {
        crate::Mechanism::Shm
    }

    fn max_msg_size(&self) -> usize {
        self.max
    }

    fn wait_strategy(&self) -> Wait {
        self.wait
    }

    fn set_wait_strategy(&mut self, wait: Wait) {
        self.apply_wait(wait);
    }

    #[inline]
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<(), SendError> {
        let mut loan = self.loan(msg.len(), deadline)?;
        loan.copy_from_slice(msg);
        loan.commit();
        Ok(())
    }

    #[inline]
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize, RecvError> {
        let f = self.next(deadline)?;
        if f.len > buf.len() {
            return Err(RecvError::BufferTooSmall { needed: f.len });
        }
        self.rx.read(f.off, &mut buf[..f.len]);
        self.cons.release(&self.rx, f.len);
        Ok(f.len)
    }

    fn peer(&self) -> Option<PeerInfo> {
        self.peer
    }

    fn raw(&self) -> RawHandle<'_> {
        RawHandle::Fds {
            read: None,
            write: None,
        }
    }
}

impl ShmEndpoint {
    /// Changes the wait strategy; publishes whether this side may now sleep.
    fn apply_wait(&mut self, wait: Wait) {
        let sleeps = u32::from(wait != Wait::Spin);
        for line in [&self.rx.ctl.rx, &self.tx.ctl.tx] {
            if line.may_sleep.swap(sleeps, Ordering::SeqCst) == 0 && sleeps == 1 {
                self.woke_up_at = Some(Instant::now());
            }
        }
        self.wait = wait;
    }
}

impl Drop for ShmEndpoint {
    fn drop(&mut self) {
        // Tell the peer: it drains what we sent, then sees PeerGone.
        for (closed, wake) in [
            (&self.tx.ctl.tx, &self.tx.ctl.rx),
            (&self.rx.ctl.rx, &self.rx.ctl.tx),
        ] {
            closed.closed.store(1, Ordering::Release);
            wake.seq.fetch_add(1, Ordering::SeqCst);
            futex_wake(&wake.seq);
        }
        // Join the watcher before the segment (and the lines it wakes) is unmapped.
        self.watcher.take();
    }
}

/// The peer-death watcher: raises `dead` and wakes whatever this side sleeps on.
fn watch(
    pidfd: OwnedFd,
    dead: Arc<AtomicBool>,
    lines: [&'static WaitLine; 2],
) -> io::Result<peer::Watcher> {
    peer::Watcher::start("ipckit-shm-watch", pidfd, move |_| {
        dead.store(true, Ordering::SeqCst);
        for l in lines {
            l.seq.fetch_add(1, Ordering::SeqCst);
            futex_wake(&l.seq);
        }
    })
}
