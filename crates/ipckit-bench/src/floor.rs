//! The machine's own limits, measured before any mechanism: a cache line bounced between the
//! two chosen CPUs by two processes, single-thread memcpy bandwidth, the cost of a syscall and
//! of a clock read.

use crate::peer::{self, Control, FromPeer, PeerSpec, Role};
use crate::rows::Impl;
use crate::stats::{new_histogram, Percentiles};
use crate::sys::{self, SharedPage};
use serde::Serialize;
use std::hint::black_box;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The floor every row is compared with.
#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    /// The two CPUs the cache line bounced between.
    pub cpus: [usize; 2],
    /// Cache-line round trip, ns (`None` if it could not be measured).
    pub cacheline_rtt_ns: Option<Percentiles>,
    /// Mean of a batch of cache-line round trips timed together, ns.
    pub cacheline_rtt_batched_ns: Option<f64>,
    /// Why the cache-line ping-pong is missing, if it is.
    pub cacheline_note: Option<String>,
    /// Single-thread memcpy of a 16 MiB buffer, MB/s (10^6 B/s).
    pub memcpy_mbps: f64,
    /// One `getppid` through `syscall(2)`, ns.
    pub syscall_ns: f64,
    /// One `Instant::now()`, ns.
    pub clock_read_ns: f64,
    /// The clocksource.
    pub clock_source: String,
    /// A blocking round trip (eventfd, both processes sleeping in the kernel) across the two
    /// CPUs, p50 ns: what waking an idle CPU costs here.
    pub blocking_rtt_cross_ns: Option<f64>,
    /// The same with both processes on one CPU, p50 ns.
    pub blocking_rtt_same_ns: Option<f64>,
}

/// Measures the floor with the parent on `cpus[0]` and the peer on `cpus[1]`.
pub fn measure(cpus: [usize; 2], duration: Duration, quick: bool) -> Floor {
    let _ = sys::pin_current_thread(cpus[0]);
    let (rtt, batched, note) = if cpus[0] == cpus[1] {
        (
            None,
            None,
            Some(
                "only one CPU: a spinning cache-line ping-pong would measure the scheduler"
                    .to_string(),
            ),
        )
    } else {
        match cacheline(cpus, duration, if quick { 2_000 } else { 20_000 }) {
            Ok((p, b)) => (Some(p), Some(b), None),
            Err(e) => (
                None,
                None,
                Some(format!("cache-line ping-pong failed: {e}")),
            ),
        }
    };
    Floor {
        cpus,
        cacheline_rtt_ns: rtt,
        cacheline_rtt_batched_ns: batched,
        cacheline_note: note,
        memcpy_mbps: memcpy_mbps(if quick {
            Duration::from_millis(60)
        } else {
            Duration::from_millis(200)
        }),
        syscall_ns: syscall_ns(),
        clock_read_ns: crate::machine::clock_read_ns(),
        clock_source: crate::machine::clock_source(),
        blocking_rtt_cross_ns: None,
        blocking_rtt_same_ns: None,
    }
}

/// Gives up on a round trip that takes this long (the peer is gone).
const SPIN_LIMIT: Duration = Duration::from_secs(2);

fn bounce(line: &std::sync::atomic::AtomicU64, v: u64) -> io::Result<()> {
    line.store(v, Ordering::Release);
    let mut n: u32 = 0;
    let mut start: Option<Instant> = None;
    while line.load(Ordering::Acquire) != v + 1 {
        std::hint::spin_loop();
        n = n.wrapping_add(1);
        if n.is_multiple_of(1 << 20) {
            let s = *start.get_or_insert_with(Instant::now);
            if s.elapsed() > SPIN_LIMIT {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "floor peer stopped answering",
                ));
            }
        }
    }
    Ok(())
}

/// Cache-line ping-pong between `cpus` for `duration` (after `batch` unrecorded and `batch`
/// batched round trips): the percentiles and the batched mean, ns.
pub(crate) fn cacheline(
    cpus: [usize; 2],
    duration: Duration,
    batch: u64,
) -> io::Result<(Percentiles, f64)> {
    let fd: OwnedFd = SharedPage::create_fd()?;
    let page = SharedPage::map(fd.as_fd())?;
    let mut spec = PeerSpec {
        role: Role::Floor,
        mechanism: String::new(),
        wait: "spin".into(),
        imp: Impl::Raw,
        address: String::new(),
        address2: None,
        cpu: cpus[1],
        ctl_in: -1,
        ctl_out: -1,
        shm_fd: Some(fd.as_raw_fd()),
        warmup: 0,
        touch: false,
        max_msg_size: None,
        zero_copy: false,
        shm_capacity: None,
        producer: None,
        duration_ms: 0,
    };
    let (guard, mut ctl) = peer::spawn(
        &mut spec,
        |_| {},
        &[fd.as_raw_fd()],
        Duration::from_secs(30) + 2 * duration,
    )?;
    match ctl.recv::<FromPeer>(Duration::from_secs(10))? {
        FromPeer::Ready { .. } => {}
        FromPeer::Error(e) => return Err(io::Error::other(e)),
        other => return Err(io::Error::other(format!("unexpected {other:?}"))),
    }
    let line = page.atomic(0);
    let mut v: u64 = 1;
    for _ in 0..batch {
        bounce(line, v)?;
        v += 2;
    }
    let mut hist = new_histogram();
    let start = Instant::now();
    loop {
        let t0 = Instant::now();
        bounce(line, v)?;
        let t1 = Instant::now();
        v += 2;
        hist.saturating_record(t1.duration_since(t0).as_nanos() as u64);
        if t1.duration_since(start) >= duration {
            break;
        }
    }
    let t0 = Instant::now();
    for _ in 0..batch {
        bounce(line, v)?;
        v += 2;
    }
    let batched = t0.elapsed().as_nanos() as f64 / batch as f64;
    line.store(u64::MAX, Ordering::Release);
    guard
        .finish(Duration::from_secs(5))
        .map_err(io::Error::other)?;
    Ok((Percentiles::of(&hist), batched))
}

/// The peer side: answers every odd value with the next even one until `u64::MAX`.
pub fn peer(fd: &OwnedFd, ctl: &mut Control) -> io::Result<()> {
    let page = SharedPage::map(fd.as_fd())?;
    let line = page.atomic(0);
    let parent = sys::getppid();
    ctl.send(&FromPeer::Ready { max_msg_size: 0 })?;
    let mut n: u32 = 0;
    loop {
        let v = line.load(Ordering::Acquire);
        if v == u64::MAX {
            return Ok(());
        }
        if v & 1 == 1 {
            line.store(v + 1, Ordering::Release);
            continue;
        }
        std::hint::spin_loop();
        n = n.wrapping_add(1);
        if n.is_multiple_of(1 << 24) && sys::getppid() != parent {
            return Err(io::Error::other("parent gone"));
        }
    }
}

fn memcpy_mbps(duration: Duration) -> f64 {
    const LEN: usize = 16 << 20;
    let src = vec![0x5au8; LEN];
    let mut dst = vec![0u8; LEN];
    dst.copy_from_slice(&src); // fault the pages in before timing
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed() < duration {
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
        bytes += LEN as u64;
    }
    bytes as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn syscall_ns() -> f64 {
    const N: u32 = 200_000;
    let t0 = Instant::now();
    for _ in 0..N {
        black_box(sys::getppid());
    }
    t0.elapsed().as_nanos() as f64 / f64::from(N)
}
