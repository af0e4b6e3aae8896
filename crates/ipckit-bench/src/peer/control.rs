//! How the bench re-executes itself as its own peer, and the control pipe both sides talk over
//! (JSON lines, never the measured transport): the spec passed on the command line, the
//! messages, spawning, and the peer's side of the start-up ([`peer_main_with`]).
//!
//! Safety nets, so a run never hangs or leaves a process behind:
//! - the peer gets `PR_SET_PDEATHSIG(SIGKILL)` before `exec` and checks its parent is still
//!   the one that forked it;
//! - every control-pipe read has a timeout;
//! - a watchdog thread kills the peer if a session overruns its time limit (the parent's
//!   blocked transport call then sees the peer gone), and [`PeerGuard`] kills and reaps the
//!   peer on every early return.
#![allow(unsafe_code)]

use crate::libc_only;
use crate::rows::Impl;
use crate::scenario::RecvTotals;
use crate::sys;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The hidden first argument that makes `ipckit` run as a bench peer.
pub const PEER_ARG: &str = "__peer";

/// What the peer is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Role {
    /// Receive/echo over a transport (or counters, for eventfd).
    Transport,
    /// The cache-line ping-pong of the floor, on a shared page.
    Floor,
}

/// Everything the peer needs, passed as JSON on its command line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerSpec {
    /// What to do.
    pub role: Role,
    /// Mechanism name.
    pub mechanism: String,
    /// Wait strategy name.
    pub wait: String,
    /// ipckit or raw loops.
    pub imp: Impl,
    /// Where to connect (eventfd: the counter we wait on).
    pub address: String,
    /// eventfd: the counter we notify.
    pub address2: Option<String>,
    /// CPU to pin to.
    pub cpu: usize,
    /// Control pipe, parent to peer.
    pub ctl_in: RawFd,
    /// Control pipe, peer to parent.
    pub ctl_out: RawFd,
    /// Floor: the shared page's memfd.
    pub shm_fd: Option<RawFd>,
    /// Unrecorded echoes before the latency phase.
    pub warmup: u64,
    /// Verify payloads.
    pub touch: bool,
    /// Largest message to ask the transport for (`None`: its default).
    pub max_msg_size: Option<usize>,
    /// Shared memory: use the zero-copy API.
    #[serde(default)]
    pub zero_copy: bool,
    /// Shared memory: ring capacity (the reference ring's, for `Raw`).
    #[serde(default)]
    pub shm_capacity: Option<usize>,
    /// MPSC: this peer is producer number N.
    #[serde(default)]
    pub producer: Option<u32>,
    /// Length of the throughput phase, ms (MPSC producers time it themselves).
    #[serde(default)]
    pub duration_ms: u64,
}

/// Parent to peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToPeer {
    /// Start: the latency message size (`None`: no latency phase) and the throughput size.
    Go {
        /// Latency message size.
        lat_size: Option<usize>,
        /// Throughput message size.
        tput_size: usize,
    },
}

/// Peer to parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromPeer {
    /// Connected; its largest message.
    Ready {
        /// The peer endpoint's `max_msg_size`.
        max_msg_size: usize,
    },
    /// Latency phase over; the peer's CPU time for it.
    LatDone {
        /// ns.
        cpu_ns: u64,
    },
    /// Throughput phase over; the receiver's totals.
    TputDone(RecvTotals),
    /// An MPSC producer is done: what it sent and its CPU time.
    SendDone {
        /// Messages sent (the end marker excluded).
        sent: u64,
        /// ns.
        cpu_ns: u64,
    },
    /// Something failed in the peer.
    Error(String),
}

/// Both directions of the control pipe.
#[derive(Debug)]
pub struct Control {
    r: BufReader<File>,
    w: File,
}

impl Control {
    /// Sends one JSON line.
    pub fn send<T: Serialize>(&mut self, msg: &T) -> io::Result<()> {
        let mut line = serde_json::to_string(msg).map_err(io::Error::other)?;
        line.push('\n');
        self.w.write_all(line.as_bytes())
    }

    /// Reads one JSON line, waiting at most `timeout`.
    pub fn recv<T: for<'de> Deserialize<'de>>(&mut self, timeout: Duration) -> io::Result<T> {
        if self.r.buffer().is_empty() {
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            if !libc_only::poll_one(self.r.get_ref().as_fd(), libc_only::POLLIN, ms)? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "peer did not answer on the control pipe in time",
                ));
            }
        }
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "peer exited (control pipe closed)",
            ));
        }
        serde_json::from_str(&line)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("control pipe: {e}")))
    }

    /// True if a line (or EOF) is waiting.
    pub fn readable(&self, timeout_ms: i32) -> io::Result<bool> {
        if !self.r.buffer().is_empty() {
            return Ok(true);
        }
        libc_only::poll_one(self.r.get_ref().as_fd(), libc_only::POLLIN, timeout_ms)
    }
}

/// A running peer: killed and reaped when dropped, unless [`PeerGuard::finish`] reaped it.
#[derive(Debug)]
pub struct PeerGuard {
    child: Option<Child>,
    disarm: Option<mpsc::Sender<()>>,
    watchdog: Option<JoinHandle<()>>,
}

impl PeerGuard {
    fn stop_watchdog(&mut self) {
        drop(self.disarm.take());
        if let Some(h) = self.watchdog.take() {
            let _ = h.join();
        }
    }

    /// Waits up to `timeout` for the peer to exit by itself, then kills it. Err if it had to
    /// be killed or exited with a failure.
    pub fn finish(mut self, timeout: Duration) -> Result<(), String> {
        self.stop_watchdog();
        let mut child = self.child.take().expect("child present until finished");
        let end = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(st)) if st.success() => return Ok(()),
                Ok(Some(st)) => return Err(format!("peer exited with {st}")),
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(2)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("peer did not exit in time; killed".into());
                }
            }
        }
    }
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        self.stop_watchdog();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Spawns this executable as the peer. `setup` lets the transport arrange what the child
/// inherits; `keep` are further descriptors the child must inherit. The peer is killed if it
/// is still running after `limit`.
pub fn spawn(
    spec: &mut PeerSpec,
    setup: impl FnOnce(&mut Command),
    keep: &[RawFd],
    limit: Duration,
) -> io::Result<(PeerGuard, Control)> {
    let (to_peer_r, to_peer_w) = io::pipe()?;
    let (from_peer_r, from_peer_w) = io::pipe()?;
    let to_peer_r = OwnedFd::from(to_peer_r);
    let from_peer_w = OwnedFd::from(from_peer_w);
    spec.ctl_in = to_peer_r.as_raw_fd();
    spec.ctl_out = from_peer_w.as_raw_fd();
    let json = serde_json::to_string(spec).map_err(io::Error::other)?;
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg(PEER_ARG)
        .arg(json)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    setup(&mut cmd);
    let mut inherit: Vec<RawFd> = keep.to_vec();
    inherit.push(spec.ctl_in);
    inherit.push(spec.ctl_out);
    let parent = std::process::id();
    // SAFETY: 1. the closure runs between fork and exec and only makes async-signal-safe
    // calls (prctl, getppid, fcntl) on values captured before the fork; it allocates nothing:
    // its errors are errno values (rustix's `Errno` into `io::Error`), never boxed.
    // 2. It runs only in the forked child, where every descriptor in `inherit` is open: the
    // parent holds them (`keep` is the caller's, the control-pipe ends are ours) until `spawn`
    // returns, and fork copied them; so borrowing them for one fcntl pair is sound.
    unsafe {
        cmd.pre_exec(move || {
            sys::set_parent_death_signal()?;
            if sys::getppid() != parent {
                // The parent exited before the peer started (nobody is left to read this; std
                // only passes a hook's errno to the parent anyway, never a message).
                return Err(rustix::io::Errno::SRCH.into());
            }
            for &fd in &inherit {
                sys::clear_cloexec(BorrowedFd::borrow_raw(fd))?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(to_peer_r);
    drop(from_peer_w);
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            sys::kill_hard(pid);
        }
    });
    let guard = PeerGuard {
        child: Some(child),
        disarm: Some(tx),
        watchdog: Some(watchdog),
    };
    let ctl = Control {
        r: BufReader::new(File::from(OwnedFd::from(from_peer_r))),
        w: File::from(OwnedFd::from(to_peer_w)),
    };
    Ok((guard, ctl))
}

/// As [`peer_main`](super::peer_main), with the peer's work done by `run` instead of this crate's transports:
/// for a driver outside the harness (the `peers` comparison crate) that measures another
/// library through the same spawn, control pipe, watchdog and totals. `run` gets the spec
/// the parent passed to [`spawn`] and the peer's end of the control pipe; it should pin
/// itself to `spec.cpu` first. An error is sent to the parent as [`FromPeer::Error`].
pub fn peer_main_with(
    args: &[String],
    run: impl FnOnce(&PeerSpec, &mut Control) -> io::Result<()>,
) -> i32 {
    let Some(json) = args.first() else {
        eprintln!("ipckit: {PEER_ARG} needs a spec");
        return 2;
    };
    let spec: PeerSpec = match serde_json::from_str(json) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ipckit: bad peer spec: {e}");
            return 2;
        }
    };
    // SAFETY: the parent created these pipe ends for us, cleared close-on-exec on them and
    // named them in the spec; nothing else in this fresh process owns them.
    let (r, w) = unsafe {
        (
            sys::owned_from_inherited(spec.ctl_in),
            sys::owned_from_inherited(spec.ctl_out),
        )
    };
    let mut ctl = Control {
        r: BufReader::new(File::from(r)),
        w: File::from(w),
    };
    match run(&spec, &mut ctl) {
        Ok(()) => 0,
        Err(e) => {
            let _ = ctl.send(&FromPeer::Error(e.to_string()));
            1
        }
    }
}

pub(crate) const GO_TIMEOUT: Duration = Duration::from_secs(60);

const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Waits for the peer's [`FromPeer::Ready`] and returns its largest message size.
pub(crate) fn expect_ready(ctl: &mut Control) -> io::Result<usize> {
    match ctl.recv::<FromPeer>(READY_TIMEOUT)? {
        FromPeer::Ready { max_msg_size } => Ok(max_msg_size),
        FromPeer::Error(e) => Err(io::Error::other(format!("peer: {e}"))),
        other => Err(io::Error::other(format!(
            "peer sent {other:?} before ready"
        ))),
    }
}
