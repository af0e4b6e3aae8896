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
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const LEN: usize = 1 << 20;
const TRIPS: u64 = 2_000_000;

fn pin(cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is an empty set; CPU_SET and sched_setaffinity get a
    // live set and its exact size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
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
    // SAFETY: a fresh shared anonymous mapping chosen by the kernel; checked below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap failed");
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
        // SAFETY: reaps our own child; a null status pointer is allowed.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        rtt.sort_unstable();
        println!(
            "{name:22} RTT p50 {:4} ns, p99 {:4} ns",
            rtt[rtt.len() / 2],
            rtt[rtt.len() * 99 / 100]
        );
    }
}
