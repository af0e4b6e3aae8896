//! Making a ring pair: the server's [`ShmListener`] creates the segment (0600, exclusive,
//! recorded in the registry) and waits for one client to attach; [`connect`] is the client's
//! side: it claims the segment, writes its hello (pid, start time, boot id, pid namespace)
//! and wakes the server. The server then unlinks the name, so nothing is left behind
//! whatever happens next; both sides keep their mapping.

use super::endpoint::ShmEndpoint;
use super::hello::{get_hello, put_hello};
use super::pair::{
    capacity_for, views, PairHeader, PairOptions, ATTACHED, CLAIMED, CTL_LEN, PAIR_LAYOUT, WAITING,
};
use super::ring;
use super::segment::{Segment, SegmentBuilder};
use super::sync::{futex_wait, futex_wake, Ordering};
use crate::peer::Hello;
use crate::wait::Deadline;
use std::io;
use std::time::{Duration, Instant};

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
    let wait = opts.wait;
    ShmEndpoint::new(seg, v.b, v.a, hdr_cap, max, wait, &server)
}
