//! Wait strategies and the one loop that applies them.
//!
//! Every endpoint keeps its descriptors non-blocking. An operation is an *attempt* (one
//! non-blocking syscall) repeated under a [`Wait`] strategy until it succeeds, the
//! [`Deadline`] passes, or the peer is known to be gone:
//!
//! - [`Wait::Block`]: after a failed attempt, sleep in `poll(2)` on the endpoint's descriptor
//!   (and the peer's pidfd, where the mechanism has no connection of its own).
//! - [`Wait::Spin`]: retry the attempt at once, burning the CPU. Lowest latency when each
//!   process has a CPU of its own; with more spinners than CPUs it measures the scheduler.
//! - [`Wait::Adaptive`]: spin for a bounded time, then block.

use crate::error::WaitError;
use crate::sys::fd::{self, Ready};
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

/// How an endpoint waits when it cannot make progress at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wait {
    /// Sleep in the kernel until the descriptor is ready.
    #[default]
    Block,
    /// Busy-poll with non-blocking syscalls; never sleeps.
    Spin,
    /// Busy-poll for up to `spin`, then block.
    Adaptive {
        /// How long to spin before blocking.
        spin: Duration,
    },
}

impl Wait {
    /// The default adaptive strategy: spin for 100 µs, then block. 100 µs covers a spinning
    /// round trip on any machine we know of (1-5 µs) with a wide margin, and bounds the CPU a
    /// waiting endpoint burns when no message comes.
    pub const ADAPTIVE: Wait = Wait::Adaptive {
        spin: Duration::from_micros(100),
    };

    /// The name used by the CLI and the bench: `block`, `spin` or `adaptive`.
    pub fn name(&self) -> &'static str {
        match self {
            Wait::Block => "block",
            Wait::Spin => "spin",
            Wait::Adaptive { .. } => "adaptive",
        }
    }

    /// Parses `block`, `spin` or `adaptive` (with the default spin time).
    pub fn parse(s: &str) -> Option<Wait> {
        match s {
            "block" => Some(Wait::Block),
            "spin" => Some(Wait::Spin),
            "adaptive" => Some(Wait::ADAPTIVE),
            _ => None,
        }
    }

    /// True if this strategy busy-polls at all (and so needs a CPU of its own).
    pub fn spins(&self) -> bool {
        !matches!(self, Wait::Block)
    }
}

/// How long one operation may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Do not wait at all (`try_` operations).
    Now,
    /// Wait until this instant (`_timeout` operations).
    At(Instant),
    /// Wait as long as it takes.
    Never,
}

impl Deadline {
    /// A deadline `d` from now.
    pub fn after(d: Duration) -> Deadline {
        match Instant::now().checked_add(d) {
            Some(t) => Deadline::At(t),
            None => Deadline::Never,
        }
    }

    pub(crate) fn remaining(&self) -> Option<Duration> {
        match self {
            Deadline::Now => Some(Duration::ZERO),
            Deadline::At(t) => Some(t.saturating_duration_since(Instant::now())),
            Deadline::Never => None,
        }
    }

    fn passed(&self, now: Instant) -> bool {
        match self {
            Deadline::Now => true,
            Deadline::At(t) => now >= *t,
            Deadline::Never => false,
        }
    }
}

/// Spins between clock reads: reading the clock on every attempt would add to the latency of
/// the very loop we are trying to keep lean.
const CLOCK_EVERY: u32 = 64;
/// Spins between checks of the peer's pidfd while spinning.
const PEER_EVERY: u32 = 4096;

/// Runs `attempt` under `wait` until it returns `Some`, the deadline passes, or the peer is
/// gone. `fd`/`events` is what to `poll` when blocking; `peer` is the peer's pidfd, for
/// mechanisms with no connection of their own.
pub(crate) fn drive<T, E: WaitError>(
    wait: Wait,
    deadline: Deadline,
    fd: BorrowedFd<'_>,
    events: i16,
    peer: Option<BorrowedFd<'_>>,
    mut attempt: impl FnMut() -> Result<Option<T>, E>,
) -> Result<T, E> {
    if let Some(v) = attempt()? {
        return Ok(v);
    }
    if deadline == Deadline::Now {
        return Err(check_peer_now(peer).map_or_else(|| E::would_block(), |()| E::peer_gone()));
    }
    let spin_end = match wait {
        Wait::Block => None,
        Wait::Spin => Some(None),
        Wait::Adaptive { spin } => Some(Instant::now().checked_add(spin)),
    };
    let mut spinning = spin_end.is_some();
    let mut n: u32 = 0;
    loop {
        if spinning {
            n = n.wrapping_add(1);
            if let Some(v) = attempt()? {
                return Ok(v);
            }
            if n.is_multiple_of(CLOCK_EVERY) {
                let now = Instant::now();
                if deadline.passed(now) {
                    return Err(E::timed_out());
                }
                if let Some(Some(end)) = spin_end {
                    if now >= end {
                        spinning = false;
                    }
                }
            }
            if n.is_multiple_of(PEER_EVERY) && check_peer_now(peer).is_some() {
                return match attempt()? {
                    Some(v) => Ok(v),
                    None => Err(E::peer_gone()),
                };
            }
            continue;
        }
        // Block in poll on the endpoint and, if any, the peer's pidfd.
        let timeout = deadline.remaining();
        if timeout == Some(Duration::ZERO) {
            return Err(E::timed_out());
        }
        let ready = match peer {
            Some(p) => fd::poll(&[(fd, events), (p, libc::POLLIN)], timeout)?,
            None => fd::poll(&[(fd, events)], timeout)?,
        };
        match ready {
            Ready::TimedOut => {
                // One last try: the poll may have raced with the event.
                return match attempt()? {
                    Some(v) => Ok(v),
                    None => Err(E::timed_out()),
                };
            }
            Ready::Fd(1) => {
                // The peer exited: deliver whatever it left, then report it gone.
                return match attempt()? {
                    Some(v) => Ok(v),
                    None => Err(E::peer_gone()),
                };
            }
            Ready::Fd(_) => {
                if let Some(v) = attempt()? {
                    return Ok(v);
                }
            }
        }
    }
}

/// `Some(())` if the pidfd says the peer has exited.
pub(crate) fn check_peer_now(peer: Option<BorrowedFd<'_>>) -> Option<()> {
    let p = peer?;
    match fd::poll(&[(p, libc::POLLIN)], Some(Duration::ZERO)) {
        Ok(Ready::Fd(_)) => Some(()),
        _ => None,
    }
}
