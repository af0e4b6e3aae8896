//! Making a ring pair: a [`PairBuilder`] names it and says how to make it. Its `create` is
//! the server's side: it makes the segment (0600, exclusive, recorded in the registry) and
//! returns a [`ShmListener`], which waits for one client to attach. Its `open` is the
//! client's side: it claims the segment, writes its hello (pid, start time, boot id, pid
//! namespace) and wakes the server. The server then unlinks the name, so nothing is left
//! behind whatever happens next; both sides keep their mapping.

use super::endpoint::ShmEndpoint;
use super::hello::{get_hello, put_hello};
use super::pair::{
    capacity_for, views, PairHeader, ATTACHED, CLAIMED, CTL_LEN, PAIR_LAYOUT, WAITING,
};
use super::ring;
use super::segment::{Segment, SegmentBuilder};
use super::sync::{futex_wait, futex_wake, Ordering};
use crate::error::invalid;
use crate::peer::Hello;
use crate::wait::{Deadline, Wait};
use std::io;
use std::time::{Duration, Instant};

/// How to make a ring pair, or attach to one: the segment's name, then setters, then
/// [`create`](PairBuilder::create) (the server: a [`ShmListener`]) or
/// [`open`](PairBuilder::open) (the client: a [`ShmEndpoint`]).
///
/// # Examples
///
/// ```
/// use ipckit::shm::PairBuilder;
/// use ipckit::{Transport, Wait};
/// use std::time::Duration;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let jobs = format!("/doc-jobs-{}", std::process::id()); // unique: examples run at once
/// # let name = jobs.clone();
/// // Process 1: the server.
/// let mut l = PairBuilder::new(&jobs).wait(Wait::ADAPTIVE).create()?; // e.g. "/jobs"
///
/// // Process 2: the client (another process in real use; a thread here, so that the
/// // example runs).
/// let process_2 = std::thread::spawn(move || -> Result<(), ipckit::SendError> {
///     let mut ep = PairBuilder::new(&name).wait(Wait::ADAPTIVE).open()?;
///     ep.send(b"hi")
/// });
///
/// // Process 1
/// let mut ep = l.accept_timeout(Duration::from_secs(10))?; // the name is unlinked now
/// let mut buf = vec![0; ep.max_msg_size()];
/// let n = ep.recv_timeout(&mut buf, Duration::from_secs(10))?;
/// assert_eq!(&buf[..n], b"hi");
/// # process_2.join().unwrap()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PairBuilder {
    name: String,
    wait: Wait,
    max_msg_size: Option<usize>,
    capacity: Option<usize>,
    mode: u32,
    populate: bool,
    keep_listening: bool,
}

impl PairBuilder {
    /// A builder for the pair segment `name` (`/name` or `name`), with the defaults: wait
    /// [`Wait::Block`], rings of [`DEFAULT_CAPACITY`](super::DEFAULT_CAPACITY), the largest
    /// message half a ring, mode 0600, pages faulted in at creation, one client.
    pub fn new(name: &str) -> PairBuilder {
        PairBuilder {
            name: name.to_owned(),
            wait: Wait::Block,
            max_msg_size: None,
            capacity: None,
            mode: 0o600,
            populate: true,
            keep_listening: false,
        }
    }

    /// The wait strategy of the endpoint made (default [`Wait::Block`]).
    pub fn wait(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// The largest message: at most half a ring (default: half a ring). Without a
    /// [`capacity`](PairBuilder::capacity), the rings grow to fit it. Ignored by
    /// [`PairBuilder::open`]: the creator's header says it.
    pub fn max_msg_size(mut self, max_msg_size: usize) -> Self {
        self.max_msg_size = Some(max_msg_size);
        self
    }

    /// The data area of each ring: a power of two, at least 4 KiB (default
    /// [`DEFAULT_CAPACITY`](super::DEFAULT_CAPACITY), or larger if
    /// [`max_msg_size`](PairBuilder::max_msg_size) needs it). Ignored by
    /// [`PairBuilder::open`]: the creator's header says it.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Permission bits of the segment (default 0600). Ignored by [`PairBuilder::open`].
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Fault the pages in at creation (`MAP_POPULATE`; default on). Ignored by
    /// [`PairBuilder::open`].
    pub fn populate(mut self, on: bool) -> Self {
        self.populate = on;
        self
    }

    /// Serve clients one after another (default: one client). By default the listener's
    /// first accept unlinks the name and the listener is spent: nothing is left behind,
    /// and a second accept is an error. With `keep_listening`, each accept makes a fresh
    /// segment at the same name for the next client before it returns (a client that comes
    /// while the one before is served finds it and waits), until the listener drops.
    /// Ignored by [`PairBuilder::open`].
    pub fn keep_listening(mut self, on: bool) -> Self {
        self.keep_listening = on;
        self
    }

    /// The data area of each ring and the largest message these settings give: the asked
    /// capacity, or the default grown to fit the asked maximum (a message takes at most half
    /// a ring).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a capacity that is not a power of two of at least 4 KiB, or one too
    /// small for the asked maximum.
    pub fn ring_size(&self) -> io::Result<(usize, usize)> {
        capacity_for(self.capacity, self.max_msg_size)
    }

    /// Creates the pair segment, exclusively, owner-only unless [`mode`](PairBuilder::mode)
    /// says otherwise, recorded in the [`crate::registry`]; it is unlinked when a client is
    /// accepted or the listener drops.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad name, capacity or maximum, `AlreadyExists`, or the OS error.
    pub fn create(self) -> io::Result<ShmListener> {
        let (seg, cap, max) = self.make()?;
        Ok(ShmListener {
            name: seg.name().unwrap_or("").to_owned(),
            seg: Some(seg),
            builder: self,
            cap,
            max,
        })
    }

    fn make(&self) -> io::Result<(Segment, usize, usize)> {
        let (cap, max) = self.ring_size()?;
        let mut seg = SegmentBuilder::new(&self.name)
            .size(CTL_LEN + 2 * cap)
            .mode(self.mode)
            .layout(PAIR_LAYOUT)
            .populate(self.populate)
            .create()?;
        {
            let v = views(&seg, cap)?;
            v.hdr.cap.store(cap as u64, Ordering::Relaxed);
            v.hdr.max.store(max as u64, Ordering::Relaxed);
            put_hello(&v.hdr.server_hello, &Hello::mine());
            v.hdr.state.store(WAITING, Ordering::Relaxed);
        }
        seg.publish();
        Ok((seg, cap, max))
    }

    /// Attaches to the pair segment made by [`PairBuilder::create`] as its client, with this
    /// builder's wait strategy; the ring size and the largest message are the creator's.
    /// It never creates the segment.
    ///
    /// # Errors
    ///
    /// `NotFound`, `InvalidData` for a segment of another layout or version, `AddrInUse` if
    /// it has a client already, `ConnectionRefused` if its creator is gone, or the OS error.
    pub fn open(self) -> io::Result<ShmEndpoint> {
        let name = self.name.as_str();
        let seg = SegmentBuilder::new(name).layout(PAIR_LAYOUT).open()?;
        // The header is published (open saw the magic), but written by another process:
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
        if !crate::process::is_alive(server.pid, server.start) {
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
        ShmEndpoint::new(seg, v.b, v.a, hdr_cap, max, self.wait, &server)
    }
}

/// The server side of a pair, from [`PairBuilder::create`]: the segment exists; it waits
/// for a client with [`accept`](ShmListener::accept),
/// [`try_accept`](ShmListener::try_accept) or
/// [`accept_timeout`](ShmListener::accept_timeout). A listener serves one client, unless
/// made with [`PairBuilder::keep_listening`].
#[derive(Debug)]
pub struct ShmListener {
    /// The segment's name (`/name`), kept once a one-client listener has accepted.
    name: String,
    /// `None` once a one-client listener has accepted.
    seg: Option<Segment>,
    builder: PairBuilder,
    cap: usize,
    max: usize,
}

impl ShmListener {
    /// The segment's name (`/name`), for the client.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits as long as it takes for a client, then unlinks the name (and, with
    /// [`PairBuilder::keep_listening`], makes a fresh segment there for the next client).
    ///
    /// # Errors
    ///
    /// `InvalidData` for a client whose hello is corrupt; `InvalidInput` if this one-client
    /// listener has accepted its client already; or the error of making the next segment.
    pub fn accept(&mut self) -> io::Result<ShmEndpoint> {
        self.accept_until(Deadline::Never)
    }

    /// Accepts a client that has attached already; never waits.
    ///
    /// # Errors
    ///
    /// `WouldBlock` if no client has attached (the listener stays ready), or as
    /// [`ShmListener::accept`].
    pub fn try_accept(&mut self) -> io::Result<ShmEndpoint> {
        self.accept_until(Deadline::Now)
    }

    /// Waits at most `timeout` for a client, then does as [`ShmListener::accept`].
    ///
    /// # Errors
    ///
    /// `TimedOut` if no client attached (the listener stays ready), or as
    /// [`ShmListener::accept`].
    pub fn accept_timeout(&mut self, timeout: Duration) -> io::Result<ShmEndpoint> {
        self.accept_until(Deadline::after(timeout))
    }

    fn accept_until(&mut self, deadline: Deadline) -> io::Result<ShmEndpoint> {
        let Some(seg) = &mut self.seg else {
            return Err(invalid(format!(
                "the listener at {} has accepted its one client (PairBuilder::keep_listening \
                 makes one that serves more)",
                self.name
            )));
        };
        let hello = wait_attached(seg, self.cap, &self.name, deadline)?;
        // Unlink now: both sides have it mapped; nothing is left if either dies.
        seg.unlink()?;
        let seg = if self.builder.keep_listening {
            // A fresh segment at the same name, for the next client.
            let (next, _, _) = self.builder.make()?;
            self.seg.replace(next)
        } else {
            self.seg.take()
        };
        let seg = seg.ok_or_else(|| invalid("the listener has no segment"))?;
        let v = views(&seg, self.cap)?;
        ShmEndpoint::new(seg, v.a, v.b, self.cap, self.max, self.builder.wait, &hello)
    }
}

/// Waits until `deadline` for a client to attach to the pair segment `seg`; its hello.
fn wait_attached(seg: &Segment, cap: usize, name: &str, deadline: Deadline) -> io::Result<Hello> {
    let v = views(seg, cap)?;
    loop {
        let s = v.hdr.attach_seq.load(Ordering::SeqCst);
        if v.hdr.state.load(Ordering::Acquire) == ATTACHED {
            break;
        }
        let left = match deadline {
            Deadline::At(t) => t.saturating_duration_since(Instant::now()),
            Deadline::Now => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("no client has attached to {name}"),
                ))
            }
            Deadline::Never => Duration::from_secs(3600),
        };
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no client attached to {name} in time"),
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
