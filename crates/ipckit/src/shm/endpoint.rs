//! A duplex shared-memory endpoint: two SPSC rings in one segment, one per direction.
//!
//! The server creates the segment (0600, exclusive, recorded in the registry) and waits for
//! one client to attach: the client claims the segment, writes its hello (pid, start time,
//! boot id, pid namespace) and wakes the server. The server then unlinks the name, so nothing
//! is left behind whatever happens next; both sides keep their mapping.
//!
//! Each side watches the other with a pidfd in a small thread that sleeps in `poll` until the
//! peer dies (or the endpoint is dropped). On death it raises a flag and wakes whatever this
//! side sleeps on, so a survivor blocked on the ring gets [`RecvError::PeerGone`] or
//! [`SendError::PeerGone`], never a hang. A clean close sets the ring's `closed` flag instead.

use super::region::Region;
use super::ring::{self, Consumer, Found, Producer, RingCtl, RingMem, WaitLine};
use super::segment::{Layout, Segment, SegmentBuilder};
use super::sync::{futex_wait, futex_wake, AtomicU32, AtomicU64, Ordering};
use super::wait::wait_on;
use crate::error::invalid;
use crate::peer::{self, Hello, HELLO_LEN};
use crate::transport::{PeerInfo, RawHandle, Transport};
use crate::wait::{Deadline, Wait};
use crate::{RecvError, SendError};
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The layout of a ring-pair segment.
pub const PAIR_LAYOUT: Layout = Layout {
    kind: 1,
    version: 1,
};

/// The data area of each ring unless asked otherwise: 4 MiB, the size that measured fastest
/// for 64 KiB messages on the machine ipckit is developed on (README, "Shared memory").
/// Below the L2 size the receiver reads lines still held in the sender's cache (8 GB/s at
/// 256 KiB here); from 4 MiB it reads them from the shared L3 (55 GB/s zero-copy, 26 GB/s
/// copying). A pair maps two of them; choose less with [`PairOptions::capacity`].
pub const DEFAULT_CAPACITY: usize = 4 << 20;

/// Bytes before the first ring's data: the pair header and both control blocks.
const CTL_LEN: usize = 4096;
const RING_A: usize = 512; // server -> client
const RING_B: usize = 1024; // client -> server

/// Attach states.
const WAITING: u32 = 0;
const CLAIMED: u32 = 1;
const ATTACHED: u32 = 2;

/// The pair's header, at the start of the segment's data.
#[repr(C, align(128))]
struct PairHeader {
    state: AtomicU32,
    /// Futex word the server sleeps on until a client attaches.
    attach_seq: AtomicU32,
    cap: AtomicU64,
    max: AtomicU64,
    server_hello: [AtomicU64; 6],
    client_hello: [AtomicU64; 6],
}

// SAFETY: atomics only; any bit pattern is a valid value.
#[allow(unsafe_code)]
unsafe impl super::region::Shared for PairHeader {}

/// Writes a hello into six words of shared memory (`Relaxed`: the caller publishes them with
/// a `Release` store after, and readers load them after an `Acquire`).
pub(super) fn put_hello(dst: &[AtomicU64; 6], h: &Hello) {
    let mut b = [0u8; 48];
    b[..HELLO_LEN].copy_from_slice(&h.encode());
    for (i, w) in dst.iter().enumerate() {
        let v = u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        w.store(v, Ordering::Relaxed);
    }
}

/// Reads a hello written by [`put_hello`]; `None` if it is not one.
pub(super) fn get_hello(src: &[AtomicU64; 6]) -> Option<Hello> {
    let mut b = [0u8; 48];
    for (i, w) in src.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    Hello::decode(&b[..HELLO_LEN])
}

/// One ring as seen from a mapping.
#[derive(Clone, Copy)]
struct ShmRing {
    ctl: &'static RingCtl,
    data: Region<'static>,
}

impl RingMem for ShmRing {
    #[inline]
    fn ctl(&self) -> &RingCtl {
        self.ctl
    }
    #[inline]
    fn word(&self, off: usize) -> &AtomicU64 {
        self.data.at(off)
    }
    #[inline]
    fn write(&self, off: usize, src: &[u8]) {
        self.data.copy_in(off, src);
    }
    #[inline]
    fn read(&self, off: usize, dst: &mut [u8]) {
        self.data.copy_out(off, dst);
    }
    fn cap(&self) -> usize {
        self.data.len()
    }
}

/// The views of a pair segment. `'static` stands for "as long as the segment": every
/// holder keeps the `Segment` alive longer (it is the last field of [`ShmEndpoint`], and the
/// watcher thread is joined before it drops).
struct Views {
    hdr: &'static PairHeader,
    a: ShmRing,
    b: ShmRing,
}

fn views(seg: &Segment, cap: usize) -> io::Result<Views> {
    // `cap` may come from the peer-written header: every sum is checked.
    let need = cap.checked_mul(2).and_then(|c| c.checked_add(CTL_LEN));
    if need.is_none_or(|n| seg.len() < n) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "segment of {} bytes is too small for two {cap}-byte rings",
                seg.len()
            ),
        ));
    }
    let r: Region<'static> = unsafe_region(seg);
    Ok(Views {
        hdr: r.at(0),
        a: ShmRing {
            ctl: r.at(RING_A),
            data: r.sub(CTL_LEN, cap),
        },
        b: ShmRing {
            ctl: r.at(RING_B),
            data: r.sub(CTL_LEN + cap, cap),
        },
    })
}

#[allow(unsafe_code)]
fn unsafe_region(seg: &Segment) -> Region<'static> {
    // SAFETY: callers keep the segment alive longer than every use of the region (see
    // `Views`).
    unsafe { seg.region().detach() }
}

/// Polls of the tight receive loop before the general wait loop takes over.
const FAST_POLLS: u32 = 256;

/// How to make a ring pair.
#[derive(Debug, Clone, Copy)]
pub struct PairOptions {
    /// Wait strategy.
    pub wait: Wait,
    /// Largest message: at most half the ring; `None` for half the ring.
    pub max_msg_size: Option<usize>,
    /// Data area of each ring (a power of two, at least 4 KiB); `None` for
    /// [`DEFAULT_CAPACITY`], or larger if `max_msg_size` needs it.
    pub capacity: Option<usize>,
    /// How long the server waits for a client, and the client for the segment.
    pub timeout: Duration,
    /// Permission bits (0600).
    pub mode: u32,
    /// Fault the pages in at creation (`MAP_POPULATE`).
    pub populate: bool,
}

impl Default for PairOptions {
    fn default() -> Self {
        PairOptions {
            wait: Wait::Block,
            max_msg_size: None,
            capacity: None,
            timeout: Duration::from_secs(5),
            mode: 0o600,
            populate: true,
        }
    }
}

impl PairOptions {
    /// The data area of each ring and the largest message these options give: the asked
    /// capacity, or the default grown to fit the asked maximum (a message takes at most half
    /// a ring).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a capacity that is not a power of two of at least 4 KiB, or one too
    /// small for the asked maximum.
    pub fn ring_size(&self) -> io::Result<(usize, usize)> {
        capacity_for(self)
    }
}

fn capacity_for(o: &PairOptions) -> io::Result<(usize, usize)> {
    let mut cap = match o.capacity {
        Some(c) if c < ring::MIN_CAPACITY || !c.is_power_of_two() => {
            return Err(invalid(format!(
                "a ring capacity of {c} bytes is not a power of two of at least {} bytes",
                ring::MIN_CAPACITY
            )))
        }
        Some(c) => c,
        None => DEFAULT_CAPACITY,
    };
    if let Some(m) = o.max_msg_size {
        if m >= u32::MAX as usize / 2 {
            return Err(invalid(format!(
                "a maximum message of {m} bytes is too large"
            )));
        }
        if m > ring::max_payload(cap) {
            if o.capacity.is_some() {
                return Err(invalid(format!(
                    "a {m}-byte maximum needs a ring of at least {} bytes, not {cap}",
                    ((m + ring::RECORD_ALIGN) * 2).next_power_of_two()
                )));
            }
            cap = ((m + ring::RECORD_ALIGN) * 2).next_power_of_two();
        }
    }
    let max = o.max_msg_size.unwrap_or(ring::max_payload(cap));
    Ok((cap, max))
}

/// The server side of a pair: the segment exists; no client yet.
#[derive(Debug)]
pub struct ShmListener {
    seg: Segment,
    opts: PairOptions,
    cap: usize,
    max: usize,
}

impl ShmListener {
    /// Creates the pair segment `name` (`/name`), exclusively, owner-only.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad name, capacity or maximum, `AlreadyExists`, or the OS error.
    pub fn create(name: &str, opts: &PairOptions) -> io::Result<ShmListener> {
        let (cap, max) = capacity_for(opts)?;
        let mut seg = SegmentBuilder::new(CTL_LEN + 2 * cap)
            .mode(opts.mode)
            .layout(PAIR_LAYOUT)
            .populate(opts.populate)
            .create(name)?;
        {
            let v = views(&seg, cap)?;
            v.hdr.cap.store(cap as u64, Ordering::Relaxed);
            v.hdr.max.store(max as u64, Ordering::Relaxed);
            put_hello(&v.hdr.server_hello, &Hello::mine());
            v.hdr.state.store(WAITING, Ordering::Relaxed);
        }
        seg.publish();
        Ok(ShmListener {
            seg,
            opts: *opts,
            cap,
            max,
        })
    }

    /// The segment's name, for the client.
    pub fn name(&self) -> &str {
        self.seg.name().unwrap_or("")
    }

    /// Waits (at most the options' timeout) for a client, then unlinks the name.
    ///
    /// # Errors
    ///
    /// `TimedOut` if no client attached.
    pub fn accept(self) -> io::Result<ShmEndpoint> {
        let hello = self.wait_attached(Deadline::after(self.opts.timeout))?;
        let ShmListener {
            mut seg,
            opts,
            cap,
            max,
        } = self;
        // Unlink now: both sides have it mapped; nothing is left if either dies.
        seg.unlink()?;
        let v = views(&seg, cap)?;
        ShmEndpoint::new(seg, v.a, v.b, cap, max, opts.wait, &hello)
    }

    /// Waits at most `timeout` (`None`: forever) for a client, then makes a fresh segment at
    /// the same name for the next one: a listener serving clients one after another.
    ///
    /// # Errors
    ///
    /// `TimedOut` if no client attached (the listener stays ready), or the error of making
    /// the next segment.
    pub fn accept_next(&mut self, timeout: Option<Duration>) -> io::Result<ShmEndpoint> {
        let deadline = timeout.map_or(Deadline::Never, Deadline::after);
        let hello = self.wait_attached(deadline)?;
        let name = self.name().to_owned();
        self.seg.unlink()?;
        let next = ShmListener::create(&name, &self.opts)?;
        let ShmListener { seg, cap, max, .. } = std::mem::replace(self, next);
        let v = views(&seg, cap)?;
        ShmEndpoint::new(seg, v.a, v.b, cap, max, self.opts.wait, &hello)
    }

    fn wait_attached(&self, deadline: Deadline) -> io::Result<Hello> {
        let v = views(&self.seg, self.cap)?;
        loop {
            let s = v.hdr.attach_seq.load(Ordering::SeqCst);
            if v.hdr.state.load(Ordering::Acquire) == ATTACHED {
                break;
            }
            let left = match deadline {
                Deadline::At(t) => t.saturating_duration_since(Instant::now()),
                Deadline::Now => Duration::ZERO,
                Deadline::Never => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no client attached to {} in time", self.name()),
                ));
            }
            futex_wait(
                &v.hdr.attach_seq,
                s,
                Some(left.min(Duration::from_millis(100))),
            )?;
        }
        get_hello(&v.hdr.client_hello)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "client hello is corrupt"))
    }
}

/// Attaches to the pair segment `name` made by [`ShmListener::create`].
///
/// # Errors
///
/// `NotFound`, `InvalidData` for a segment of another layout or version, `AddrInUse` if it
/// has a client already, `ConnectionRefused` if its creator is gone, or the OS error.
pub fn connect(name: &str, opts: &PairOptions) -> io::Result<ShmEndpoint> {
    let seg = SegmentBuilder::new(1)
        .layout(PAIR_LAYOUT)
        .open_existing(name)?;
    // The header is published (open_existing saw the magic), but written by another process:
    // every value is checked before it sizes anything.
    let (hdr_cap, hdr_max) = {
        let r = seg.region();
        let hdr: &PairHeader = r.at(0);
        (
            hdr.cap.load(Ordering::Relaxed),
            hdr.max.load(Ordering::Relaxed),
        )
    };
    let hdr_cap = match usize::try_from(hdr_cap) {
        Ok(c) if c.is_power_of_two() && c >= ring::MIN_CAPACITY => c,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{name}: ring capacity {hdr_cap} in the header is not valid"),
            ))
        }
    };
    let v = views(&seg, hdr_cap)?;
    let max = match usize::try_from(hdr_max) {
        Ok(m) if m <= ring::max_payload(hdr_cap) => m,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{name}: maximum message {hdr_max} in the header exceeds what a {hdr_cap}-byte ring carries"
                ),
            ))
        }
    };
    let server = get_hello(&v.hdr.server_hello)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "server hello is corrupt"))?;
    if !crate::is_alive(server.pid, server.start) {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("{name}: its creator (pid {}) is gone", server.pid),
        ));
    }
    if v.hdr
        .state
        .compare_exchange(WAITING, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{name} has a client already"),
        ));
    }
    put_hello(&v.hdr.client_hello, &Hello::mine());
    v.hdr.state.store(ATTACHED, Ordering::Release);
    v.hdr.attach_seq.fetch_add(1, Ordering::SeqCst);
    futex_wake(&v.hdr.attach_seq);
    let wait = opts.wait;
    ShmEndpoint::new(seg, v.b, v.a, hdr_cap, max, wait, &server)
}

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
    fn new(
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
        ep.set_wait(wait);
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
    /// ```no_run
    /// # fn f(ep: &mut ipckit::shm::ShmEndpoint) -> Result<(), ipckit::SendError> {
    /// use ipckit::Deadline;
    /// let mut loan = ep.loan(5, Deadline::Never)?;
    /// loan.copy_from_slice(b"hello"); // written straight into shared memory
    /// loan.commit();
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Transport::send_deadline`].
    #[inline]
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
    pub fn recv_ref(&mut self, deadline: Deadline) -> Result<Msg<'_>, RecvError> {
        let f = self.next(deadline)?;
        Ok(Msg { ep: self, f })
    }

    #[inline]
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

    fn wait(&self) -> Wait {
        self.wait
    }

    fn set_wait(&mut self, wait: Wait) {
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
