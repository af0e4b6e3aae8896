//! The consumer's watch of the producers: the look at the producer table (a "scan") that
//! marks the dead, frees entries left half-registered, skips the claims of the dead and
//! reuses their entries, and the pidfd watcher threads that make a death seen at once.

use super::layout::{Entry, ShmQueue, ENTRY_CLAIMING, ENTRY_DEAD, ENTRY_FREE, ENTRY_LIVE};
use super::queue::{wake_space, Consumer, Head, MAX_PRODUCERS, TAG_MASK};
use crate::peer::{self, Watcher};
use crate::shm::hello::get_hello;
use crate::shm::sync::{futex_wake, Ordering};
use crate::sys::fd as sysfd;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A blocked or spinning consumer looks for producers that died without a word (SIGKILL)
/// this often. A scan is one `poll` per attached producer.
pub(super) const SCAN: Duration = Duration::from_millis(20);
/// A producer entry left half-registered this long (its process was killed while opening)
/// is freed.
const REGISTER_GRACE: Duration = Duration::from_secs(1);

/// A producer the consumer has seen registered, and how it watches it.
struct Watched {
    /// The entry's state word when seen.
    state: u64,
    /// Its pidfd (or a descriptor readable from the start, if it was already gone); `None`
    /// if it cannot be watched.
    fd: Option<OwnedFd>,
    /// pid and start time, for kernels without pidfds; `None` for a producer in another
    /// pid namespace or on another kernel, which cannot be watched at all.
    local: Option<(u32, u64)>,
    /// A thread waiting on a copy of the pidfd, which wakes the consumer when the producer
    /// dies (so a stuck claim is skipped, or `PeerGone` comes, within about a millisecond
    /// rather than at the next timed look). Dropped (stopped and joined) with the entry.
    _watcher: Option<Watcher>,
}

impl Watched {
    fn alive(&self) -> bool {
        match (&self.fd, self.local) {
            (Some(fd), _) => !matches!(sysfd::revents(fd.as_fd(), libc::POLLIN), Ok(r) if r != 0),
            (None, Some((pid, start))) => crate::process::is_alive(pid, start),
            (None, None) => true,
        }
    }
}

/// The consumer's knowledge of the producer table.
pub(super) struct Watch {
    seen: Vec<Option<Watched>>,
    /// Entries half-registered when first seen: their state word and when.
    claiming: Vec<Option<(u64, Instant)>>,
    /// Entries this consumer marked dead, and `tail` when it did: the dead producer's claim,
    /// if any, is at or before it.
    dead: Vec<(usize, u64)>,
    last_scan: Instant,
    seen_left: u64,
    seen_opened: u64,
    /// True if the last scan found producers had registered and none is attached now.
    pub(super) gone: bool,
    /// Set by a producer's watcher thread when it dies: look at the table now.
    died: Arc<AtomicBool>,
    pub(super) present: usize,
    pub(super) received: u32,
}

impl Watch {
    pub(super) fn new() -> Watch {
        Watch {
            seen: (0..MAX_PRODUCERS).map(|_| None).collect(),
            claiming: vec![None; MAX_PRODUCERS],
            dead: Vec::new(),
            last_scan: Instant::now(),
            seen_left: 0,
            seen_opened: 0,
            gone: false,
            died: Arc::new(AtomicBool::new(false)),
            present: 0,
            received: 0,
        }
    }

    /// Time for a look at the table: a producer died (its watcher said so), left, or
    /// registered (it wakes the consumer, which starts to watch it), or [`SCAN`] has passed.
    pub(super) fn due(&self, q: &ShmQueue) -> bool {
        self.died.load(Ordering::Acquire)
            || q.hdr.left.load(Ordering::Relaxed) != self.seen_left
            || q.hdr.opened.load(Ordering::Relaxed) != self.seen_opened
            || self.last_scan.elapsed() >= SCAN
    }

    /// Still "all gone": no producer registered since the scan that found them gone.
    pub(super) fn still_gone(&self, q: &ShmQueue) -> bool {
        self.gone && q.hdr.opened.load(Ordering::Acquire) == self.seen_opened
    }

    fn alive(&mut self, q: &ShmQueue, e: &Entry, idx: usize, state: u64) -> bool {
        if let Some(w) = &self.seen[idx] {
            if w.state == state {
                return w.alive();
            }
        }
        let Some(hello) = get_hello(&e.hello) else {
            // Not a hello: nothing to watch. Counted as attached, never declared dead.
            return true;
        };
        let (info, fd) = peer::watch(&hello);
        let mut w = Watched {
            state,
            fd,
            local: info.map(|_| (hello.pid, hello.start)),
            _watcher: None,
        };
        let alive = w.alive();
        if alive {
            w._watcher = w.fd.as_ref().and_then(|fd| self.watcher(q, fd.as_fd()));
        }
        self.seen[idx] = Some(w);
        alive
    }

    /// Starts a thread that wakes the consumer when the process behind `pidfd` ends; `None`
    /// if it cannot (then the timed looks find the death).
    fn watcher(&self, q: &ShmQueue, pidfd: std::os::fd::BorrowedFd<'_>) -> Option<Watcher> {
        let fd = sysfd::dup(pidfd).ok()?;
        let died = self.died.clone();
        // 'static: the watcher is joined when dropped, with this `Watch`, before the segment
        // (see `ShmQueue`).
        let rx = &q.ctl.rx;
        Watcher::start("ipckit-mpsc-rx-watch", fd, move |_| {
            died.store(true, Ordering::SeqCst);
            rx.seq.fetch_add(1, Ordering::SeqCst);
            futex_wake(&rx.seq);
        })
        .ok()
    }

    /// Looks at every producer entry: marks the dead, frees entries left half-registered,
    /// skips the claims of the dead at the consumer's position, and reuses the entries of the
    /// dead the consumer has passed. Returns the number of slots skipped.
    pub(super) fn scan(&mut self, q: &ShmQueue, cons: &mut Consumer) -> u64 {
        let now = Instant::now();
        self.last_scan = now;
        self.died.store(false, Ordering::SeqCst);
        self.seen_left = q.hdr.left.load(Ordering::Acquire);
        self.seen_opened = q.hdr.opened.load(Ordering::Acquire);
        let mut present = 0;
        for idx in 0..MAX_PRODUCERS {
            let e = q.entry(idx);
            let st = e.state.load(Ordering::Acquire);
            match st & TAG_MASK {
                ENTRY_FREE => {
                    self.seen[idx] = None;
                    self.claiming[idx] = None;
                }
                ENTRY_CLAIMING => match self.claiming[idx] {
                    Some((w, t)) if w == st && now.duration_since(t) >= REGISTER_GRACE => {
                        // A producer died while opening (it cannot have claimed a slot yet).
                        let _ = e.state.compare_exchange(
                            st,
                            ENTRY_FREE,
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        );
                        self.claiming[idx] = None;
                    }
                    Some((w, _)) if w == st => present += 1,
                    _ => {
                        self.claiming[idx] = Some((st, now));
                        present += 1;
                    }
                },
                ENTRY_LIVE => {
                    if self.alive(q, e, idx, st) {
                        present += 1;
                    } else if e
                        .state
                        .compare_exchange(
                            st,
                            (st & !TAG_MASK) | ENTRY_DEAD,
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        self.seen[idx] = None;
                        let bit = !(1u64 << idx);
                        q.ctl.tx.may_sleep.fetch_and(bit, Ordering::SeqCst);
                        q.ctl.tx.sleeping.fetch_and(bit, Ordering::SeqCst);
                        self.dead
                            .push((idx, q.ctl.tail.tail.load(Ordering::Acquire)));
                    }
                    // else: the state changed under us; the next scan looks again.
                }
                _ => {} // ENTRY_DEAD: ours, retired below.
            }
        }
        self.present = present;
        self.gone = self.seen_opened > 0 && present == 0;
        let mut skipped = 0;
        while let Head::Claimed(idx) = cons.peek(q) {
            let st = q.entry(idx).state.load(Ordering::Acquire);
            if st & TAG_MASK != ENTRY_DEAD {
                break;
            }
            // Claimed by a producer that died before publishing: nobody will.
            cons.skip(q);
            skipped += 1;
        }
        if skipped > 0 {
            wake_space(&q.ctl.tx);
        }
        let head = cons.head();
        self.dead.retain(|&(idx, tail)| {
            if head >= tail {
                // Every position the dead producer could have claimed is behind us.
                q.entry(idx).state.store(ENTRY_FREE, Ordering::Release);
                false
            } else {
                true
            }
        });
        skipped
    }
}
