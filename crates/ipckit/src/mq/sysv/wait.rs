//! Waiting on a queue that has no descriptor to `poll`: [`run_wait`] runs an attempt under a
//! wait strategy (`IPC_NOWAIT` retries, the blocking call, or timed naps), and the peer-death
//! [`Watcher`] wakes a call blocked on a dead peer (a wake-up message of the type a receive
//! waits for, or room made in the queue a send waits on).

use crate::peer;
use crate::sys::{fd as sysfd, sysv};
use crate::wait::{Deadline, Wait};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a blocking call is waiting for, published to the watcher so it can wake it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Blocked {
    Send,
    Recv(i64),
}

/// State shared by an endpoint and its watcher thread.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) dead: AtomicBool,
    send_blocked: AtomicBool,
    recv_blocked: AtomicBool,
    recv_msgtyp: AtomicI64,
}

impl Shared {
    /// Marks a blocking call as about to start (or finished). The endpoint stores this flag
    /// and then loads `dead`; the watcher stores `dead` and then loads the flags (all SeqCst):
    /// so either the endpoint sees the death and does not block, or the watcher sees the
    /// blocked call and wakes it.
    fn set(&self, what: Blocked, on: bool) {
        match what {
            Blocked::Send => self.send_blocked.store(on, Ordering::SeqCst),
            Blocked::Recv(t) => {
                self.recv_msgtyp.store(t, Ordering::SeqCst);
                self.recv_blocked.store(on, Ordering::SeqCst);
            }
        }
    }
}

/// Runs a System V attempt under a wait strategy. `attempt(nowait)` returns `Ok(None)` when
/// `nowait` was set and nothing could be done.
pub(super) fn run_wait<T, E: crate::error::WaitError>(
    wait: Wait,
    deadline: Deadline,
    shared: Option<(&Shared, Blocked)>,
    mut attempt: impl FnMut(bool) -> Result<Option<T>, E>,
) -> Result<T, E> {
    let is_dead = || shared.is_some_and(|(s, _)| s.dead.load(Ordering::SeqCst));
    if let Some(v) = attempt(true)? {
        return Ok(v);
    }
    if deadline == Deadline::Now {
        return Err(if is_dead() {
            E::peer_gone()
        } else {
            E::would_block()
        });
    }
    let start = Instant::now();
    let spin_for = match wait {
        Wait::Block => Duration::ZERO,
        Wait::Spin => Duration::MAX,
        Wait::Adaptive { spin } => spin,
    };
    let mut n: u32 = 0;
    // Spin phase.
    if !spin_for.is_zero() {
        loop {
            if let Some(v) = attempt(true)? {
                return Ok(v);
            }
            if is_dead() {
                return Err(E::peer_gone());
            }
            n = n.wrapping_add(1);
            if n.is_multiple_of(64) {
                let now = Instant::now();
                if let Deadline::At(t) = deadline {
                    if now >= t {
                        return Err(E::timed_out());
                    }
                }
                if now.duration_since(start) >= spin_for {
                    break;
                }
            }
        }
    }
    match deadline {
        Deadline::Never => loop {
            // The blocking call: woken by a message, by our watcher (a wake-up message, or
            // room made in the dead peer's queue), or by the queue's removal (EIDRM).
            if let Some((s, what)) = shared {
                s.set(what, true);
            }
            let r = if is_dead() { Ok(None) } else { attempt(false) };
            if let Some((s, what)) = shared {
                s.set(what, false);
            }
            if let Some(v) = r? {
                return Ok(v);
            }
            if is_dead() {
                return Err(E::peer_gone());
            }
        },
        Deadline::At(t) => {
            let mut nap = Duration::from_micros(20);
            loop {
                if let Some(v) = attempt(true)? {
                    return Ok(v);
                }
                if is_dead() {
                    return Err(E::peer_gone());
                }
                let now = Instant::now();
                if now >= t {
                    return Err(E::timed_out());
                }
                std::thread::sleep(nap.min(t - now));
                nap = (nap * 2).min(Duration::from_millis(2));
            }
        }
        Deadline::Now => unreachable!("handled above"),
    }
}

/// The peer-death watcher of a System V endpoint: a [`peer::Watcher`] and the state it
/// shares with the endpoint.
#[derive(Debug)]
pub(super) struct Watcher {
    pub(super) shared: Arc<Shared>,
    _thread: peer::Watcher,
}

impl Watcher {
    pub(super) fn start(
        pidfd: OwnedFd,
        recv_id: i32,
        nonce: [u8; 16],
        steal_from: Option<i32>,
    ) -> io::Result<Watcher> {
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        let thread = peer::Watcher::start("ipckit-sysv-watch", pidfd, move |stop| {
            sh.dead.store(true, Ordering::SeqCst);
            let mut wake = vec![0u8; sysv::TYPE_LEN + 16];
            wake[sysv::TYPE_LEN..].copy_from_slice(&nonce);
            let mut sink = vec![0u8; sysv::TYPE_LEN + sysv::msgmax()];
            let mut wakes = 0u32;
            // Keep waking whatever is blocked until nothing is: a blocked receive gets a
            // wake-up of the type it waits for, queued behind everything the peer sent;
            // a blocked send gets room, by emptying the queue only the dead peer read.
            loop {
                let recv_blocked = sh.recv_blocked.load(Ordering::SeqCst);
                let send_blocked = sh.send_blocked.load(Ordering::SeqCst);
                if !recv_blocked && !send_blocked {
                    return;
                }
                if recv_blocked && wakes < 64 {
                    let t = sh.recv_msgtyp.load(Ordering::SeqCst);
                    sysv::set_type(&mut wake, if t > 0 { t } else { 1 });
                    if sysv::send(recv_id, &wake, 16, true).is_ok() {
                        wakes += 1;
                    }
                }
                if let (true, Some(sid)) = (send_blocked, steal_from) {
                    while sysv::recv(sid, &mut sink, 0, true).is_ok() {}
                }
                let again = sysfd::poll(&[(stop, libc::POLLIN)], Some(Duration::from_millis(5)));
                if matches!(again, Ok(sysfd::Ready::Fd(_))) {
                    return;
                }
            }
        })?;
        Ok(Watcher {
            shared,
            _thread: thread,
        })
    }
}
