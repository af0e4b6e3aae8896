//! What a shared-memory ring can reach, separated from what it does: cross-CPU ping-pong
//! between two forked processes (pinned to CPUs 0 and 1), timed per round trip with
//! `Instant` exactly as `ipckit bench` times its floor, in three shapes:
//!
//! - **one line**: both directions bounce one cache line (the bench's floor);
//! - **two lines**: each direction has its own fixed line (a duplex channel's best case);
//! - **two lines, advancing**: each direction moves to a fresh line every trip, as a ring
//!   does (its records follow one another through memory).
//!
//! `cargo run --release -p ipckit-bench --example line_pingpong`
//!
//! Pinning is the harness's own ([`ipckit_bench::os`]); the mapping and the reaping go
//! through rustix; `fork` and `_exit`, which rustix leaves out, through libc.
#![allow(unsafe_code)]

use ipckit_bench::os::pin_current_thread;
use rustix::mm::{MapFlags, ProtFlags};
use rustix::process::{Pid, WaitOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const LEN: usize = 1 << 20;
const TRIPS: u64 = 2_000_000;

fn pin(cpu: usize) {
    // A CPU this process may not use leaves it unpinned; the ping-pong still runs.
    let _ = pin_current_thread(cpu);
}

/// The two offsets a trip uses: where the request goes and where the reply comes back.
fn lines(shape: usize, i: u64) -> (usize, usize) {
    match shape {
        0 => (0, 0),
        1 => (0, 4096),
        _ => {
            let o = (i as usize * 64) % (LEN / 2);
            (o, LEN / 2 + o)
        }
    }
}

fn main() {
    // SAFETY: a fresh shared anonymous mapping chosen by the kernel (no address asked for);
    // no existing memory is affected.
    let p = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            LEN,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
        )
    }
    .expect("mmap failed");
    let base = p.cast::<u8>();
    // SAFETY: `off + 8 <= LEN` and 8-aligned for every offset `lines` returns; the mapping
    // lives until the process exits; both processes touch it only through atomics.
    let at = |off: usize| unsafe { &*base.add(off).cast::<AtomicU64>() };
    for (shape, name) in ["one line", "two lines", "two lines, advancing"]
        .iter()
        .enumerate()
    {
        for off in (0..LEN).step_by(8) {
            at(off).store(0, Ordering::Relaxed);
        }
        // SAFETY: the child only spins on the shared atomics and calls `_exit`; it allocates
        // nothing and takes no lock another thread could hold (this program has one thread).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            pin(1);
            for i in 1..=TRIPS {
                let (req, rep) = lines(shape, i);
                let (want, answer) = if shape == 0 {
                    (2 * i - 1, 2 * i)
                } else {
                    (i, i)
                };
                while at(req).load(Ordering::Acquire) != want {
                    std::hint::spin_loop();
                }
                at(rep).store(answer, Ordering::Release);
            }
            // SAFETY: ends the child at once, running nothing of the parent's.
            unsafe { libc::_exit(0) };
        }
        pin(0);
        let mut rtt: Vec<u64> = Vec::with_capacity(TRIPS as usize);
        for i in 1..=TRIPS {
            let (req, rep) = lines(shape, i);
            let (send, want) = if shape == 0 {
                (2 * i - 1, 2 * i)
            } else {
                (i, i)
            };
            let t = Instant::now();
            at(req).store(send, Ordering::Release);
            while at(rep).load(Ordering::Acquire) != want {
                std::hint::spin_loop();
            }
            rtt.push(t.elapsed().as_nanos() as u64);
        }
        let _ = rustix::process::waitpid(Pid::from_raw(pid), WaitOptions::empty());
        rtt.sort_unstable();
        println!(
            "{name:22} RTT p50 {:4} ns, p99 {:4} ns",
            rtt[rtt.len() / 2],
            rtt[rtt.len() * 99 / 100]
        );
    }
}
