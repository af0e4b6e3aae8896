//! Scheduling: `sched_setaffinity`/`sched_getaffinity`, `sched_setscheduler`/
//! `sched_getscheduler`/`sched_getparam`, `getrlimit(RLIMIT_RTPRIO)`, `mlockall`/
//! `munlockall`, and `move_pages` (which NUMA node holds a page).
//!
//! # Safety
//!
//! Every `unsafe` block is one libc call whose pointer arguments are live locals (a
//! `cpu_set_t`, a `sched_param`, an `rlimit`) of the exact type the call takes, or, for
//! `move_pages`, two vectors of the length the kernel is told; with a null `nodes` argument
//! `move_pages` moves nothing and only reports where each page is, and addresses it cannot
//! resolve come back as a negative errno in that page's status, never a fault.

use super::fd::cvt;
use std::io;

/// The largest CPU number a `cpu_set_t` holds.
pub(crate) const CPU_SETSIZE: usize = libc::CPU_SETSIZE as usize;

/// Sets the CPUs thread `tid` may run on (0: the calling thread).
pub(crate) fn set_affinity(tid: i32, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: `cpu_set_t` is plain bits; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c >= CPU_SETSIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CPU {c} is beyond the {CPU_SETSIZE} a CPU set holds"),
            ));
        }
        // SAFETY: `c` is below CPU_SETSIZE (checked), the set's size.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: a live `cpu_set_t` and its exact size.
    cvt(unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) })?;
    Ok(())
}

/// The CPUs thread `tid` may run on (0: the calling thread).
pub(crate) fn affinity(tid: i32) -> io::Result<Vec<usize>> {
    // SAFETY: as in `set_affinity`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: a live `cpu_set_t` and its exact size, written by the kernel.
    cvt(unsafe { libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) })?;
    // SAFETY: every index is below CPU_SETSIZE.
    Ok((0..CPU_SETSIZE)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// `sched_setscheduler(tid, policy, priority)` (0: the calling thread).
pub(crate) fn set_scheduler(tid: i32, policy: i32, priority: i32) -> io::Result<()> {
    let p = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: a live `sched_param`.
    cvt(unsafe { libc::sched_setscheduler(tid, policy, &p) })?;
    Ok(())
}

/// `(policy, priority)` of thread `tid` (0: the calling thread).
pub(crate) fn scheduler(tid: i32) -> io::Result<(i32, i32)> {
    // SAFETY: no pointer arguments.
    let policy = cvt(unsafe { libc::sched_getscheduler(tid) })?;
    let mut p = libc::sched_param { sched_priority: 0 };
    // SAFETY: a live `sched_param`, written by the kernel.
    cvt(unsafe { libc::sched_getparam(tid, &mut p) })?;
    Ok((policy, p.sched_priority))
}

/// The soft `RLIMIT_RTPRIO`: the highest real-time priority this process may set without
/// `CAP_SYS_NICE` (`u64::MAX`: unlimited).
pub(crate) fn rtprio_limit() -> io::Result<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a live `rlimit`, written by the kernel.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_RTPRIO, &mut rl) })?;
    Ok(if rl.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        rl.rlim_cur
    })
}

/// `mlockall(MCL_CURRENT | MCL_FUTURE)`.
pub(crate) fn lock_all() -> io::Result<()> {
    // SAFETY: no pointer arguments.
    cvt(unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) })?;
    Ok(())
}

/// `munlockall()`.
pub(crate) fn unlock_all() -> io::Result<()> {
    // SAFETY: no pointer arguments.
    cvt(unsafe { libc::munlockall() })?;
    Ok(())
}

/// The NUMA node of each page address in `pages` (this process's), or a negative errno for a
/// page the kernel cannot place (`-ENOENT`: not yet touched).
pub(crate) fn page_nodes(pages: &[usize]) -> io::Result<Vec<i32>> {
    let ptrs: Vec<*mut libc::c_void> = pages.iter().map(|&p| p as *mut libc::c_void).collect();
    let mut status = vec![0i32; pages.len()];
    // SAFETY: `ptrs` and `status` live and hold `pages.len()` entries each, the count given;
    // `nodes` is null, so nothing moves and only `status` is written.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_pages,
            0,
            ptrs.len() as libc::c_ulong,
            ptrs.as_ptr(),
            std::ptr::null::<i32>(),
            status.as_mut_ptr(),
            0,
        )
    };
    cvt(r)?;
    Ok(status)
}
