//! The low-latency recipe's scheduling half: pin threads and processes to CPUs, run a thread
//! under a real-time policy, lock memory, and see which NUMA node a CPU or a segment's pages
//! belong to.
//!
//! Shared memory and a lock-free ring decide how little a message costs; where the two
//! processes run decides how often that cost is all there is. A process that migrates pays
//! cold caches; one that shares its CPU waits for the other's time slice; one that takes a
//! page fault waits for the kernel. `ipckit demo low-latency` measures each step of the
//! recipe on this machine.
//!
//! ```
//! use ipckit::sched;
//! # fn main() -> std::io::Result<()> {
//! let allowed = sched::affinity()?;
//! sched::pin_thread(&allowed[..1])?; // this thread now runs on one CPU only
//! assert_eq!(sched::affinity()?, allowed[..1]);
//! sched::pin_thread(&allowed)?; // and may run anywhere again
//! # Ok(()) }
//! ```
//!
//! # Real-time policies, safely
//!
//! A thread under `SCHED_FIFO` that spins never gives its CPU away: on a machine with few
//! CPUs it can starve everything else, the shell that would stop it included. Linux's
//! real-time throttling (`/proc/sys/kernel/sched_rt_runtime_us`, 950,000 of every 1,000,000 µs
//! by default) keeps 5% of each CPU for other work. [`set_policy`] refuses a real-time policy
//! when throttling is off (`-1`) with [`SchedError::ThrottlingOff`], and says which limit
//! refused it when the kernel does ([`SchedError::NotPermitted`]: `RLIMIT_RTPRIO` without
//! `CAP_SYS_NICE`).
//!
//! # References
//!
//! `sched_setaffinity(2)`, `sched(7)`, `sched_setscheduler(2)`, `mlockall(2)`,
//! `move_pages(2)`.

use crate::shm::Segment;
use crate::sys::sched as sys;
use std::collections::BTreeMap;
use std::fmt;
use std::io;

/// Pins the calling thread to `cpus` (it runs on those only).
///
/// # Errors
///
/// `InvalidInput` for an empty list or a CPU beyond what a CPU set holds; `EINVAL` from the
/// kernel if none of `cpus` is online and allowed (cgroup `cpuset`).
#[doc(alias = "sched_setaffinity")]
pub fn pin_thread(cpus: &[usize]) -> io::Result<()> {
    check_cpus(cpus)?;
    sys::set_affinity(0, cpus)
}

/// Pins every thread of process `pid` to `cpus` (threads it starts later inherit the mask
/// of the thread that starts them).
///
/// # Errors
///
/// As [`pin_thread`]; `NotFound` if the process is gone; `PermissionDenied` for another
/// user's process without `CAP_SYS_NICE`.
pub fn pin_process(pid: u32, cpus: &[usize]) -> io::Result<()> {
    check_cpus(cpus)?;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))?;
    let mut pinned = 0;
    for t in tasks {
        let Some(tid) = t?.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        match sys::set_affinity(tid, cpus) {
            Ok(()) => pinned += 1,
            // A thread that exited between the listing and the call.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => return Err(e),
        }
    }
    if pinned == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("process {pid} has no thread left to pin"),
        ));
    }
    Ok(())
}

/// The CPUs the calling thread may run on.
///
/// # Errors
///
/// The OS error of `sched_getaffinity`.
#[doc(alias = "sched_getaffinity")]
pub fn affinity() -> io::Result<Vec<usize>> {
    sys::affinity(0)
}

/// The CPUs process `pid`'s main thread may run on.
///
/// # Errors
///
/// `NotFound` if there is no such process, or the OS error.
pub fn affinity_of(pid: u32) -> io::Result<Vec<usize>> {
    let tid = i32::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    sys::affinity(tid)
}

fn check_cpus(cpus: &[usize]) -> io::Result<()> {
    if cpus.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an empty CPU list: a thread must be allowed at least one CPU",
        ));
    }
    Ok(())
}

/// A scheduling policy, with its priority for the real-time ones (1 to 99, higher first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedPolicy {
    /// `SCHED_OTHER`: the default time-sharing policy.
    Normal,
    /// `SCHED_FIFO`: runs until it blocks or a higher priority comes.
    Fifo(u8),
    /// `SCHED_RR`: as `Fifo`, with a time slice among threads of the same priority.
    RoundRobin(u8),
}

impl fmt::Display for SchedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchedPolicy::Normal => f.write_str("SCHED_OTHER"),
            SchedPolicy::Fifo(p) => write!(f, "SCHED_FIFO priority {p}"),
            SchedPolicy::RoundRobin(p) => write!(f, "SCHED_RR priority {p}"),
        }
    }
}

/// Why [`set_policy`] did not set a policy.
#[derive(Debug)]
pub enum SchedError {
    /// A real-time priority outside 1..=99.
    InvalidPriority(u8),
    /// Real-time throttling is off (`sched_rt_runtime_us` is -1): a spinning real-time thread
    /// could take a CPU for good, so ipckit does not start one.
    ThrottlingOff,
    /// The kernel refused: the priority is above `RLIMIT_RTPRIO` (`rtprio_limit`) and the
    /// process lacks `CAP_SYS_NICE`.
    NotPermitted {
        /// The policy asked for.
        wanted: SchedPolicy,
        /// The soft `RLIMIT_RTPRIO` (`u64::MAX`: unlimited).
        rtprio_limit: u64,
    },
    /// Any other OS error.
    Os(io::Error),
}

impl fmt::Display for SchedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchedError::InvalidPriority(p) => {
                write!(f, "real-time priority {p} is outside 1..=99")
            }
            SchedError::ThrottlingOff => f.write_str(
                "refusing a real-time policy: real-time throttling is off \
                 (/proc/sys/kernel/sched_rt_runtime_us is -1), so a spinning real-time \
                 thread could starve this machine; set it back (950000 is the default)",
            ),
            SchedError::NotPermitted {
                wanted,
                rtprio_limit,
            } => {
                let limit = match *rtprio_limit {
                    u64::MAX => "unlimited".to_string(),
                    l => l.to_string(),
                };
                write!(
                    f,
                    "{wanted} not permitted: RLIMIT_RTPRIO is {limit} for this process and it \
                     lacks CAP_SYS_NICE (raise the limit with `ulimit -r` or limits.conf's \
                     rtprio, or grant the capability)"
                )
            }
            SchedError::Os(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SchedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SchedError::Os(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SchedError> for io::Error {
    fn from(e: SchedError) -> io::Error {
        match e {
            SchedError::Os(e) => e,
            SchedError::NotPermitted { .. } => io::Error::new(io::ErrorKind::PermissionDenied, e),
            e => io::Error::new(io::ErrorKind::InvalidInput, e),
        }
    }
}

/// Real-time throttling: `Some((runtime, period))` in µs (real-time threads may run
/// `runtime` of every `period`), `None` when it is off.
///
/// # Errors
///
/// The files cannot be read or parsed (`InvalidData`).
pub fn rt_throttling() -> io::Result<Option<(u64, u64)>> {
    let read = |name: &str| -> io::Result<i64> {
        let path = format!("/proc/sys/kernel/{name}");
        let text = crate::fs::read_regular(std::path::Path::new(&path), 64)?;
        String::from_utf8_lossy(&text)
            .trim()
            .parse::<i64>()
            .map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{path}: not a number"))
            })
    };
    let runtime = read("sched_rt_runtime_us")?;
    if runtime < 0 {
        return Ok(None);
    }
    let period = read("sched_rt_period_us")?;
    Ok(Some((runtime as u64, period.max(0) as u64)))
}

/// Sets the calling thread's scheduling policy.
///
/// # Errors
///
/// [`SchedError::InvalidPriority`], [`SchedError::ThrottlingOff`] (real-time policies only),
/// [`SchedError::NotPermitted`], or [`SchedError::Os`].
#[doc(alias = "sched_setscheduler")]
pub fn set_policy(policy: SchedPolicy) -> Result<(), SchedError> {
    let (raw, prio) = match policy {
        SchedPolicy::Normal => (libc::SCHED_OTHER, 0),
        SchedPolicy::Fifo(p) => (libc::SCHED_FIFO, p),
        SchedPolicy::RoundRobin(p) => (libc::SCHED_RR, p),
    };
    if policy != SchedPolicy::Normal {
        if !(1..=99).contains(&prio) {
            return Err(SchedError::InvalidPriority(prio));
        }
        if rt_throttling().map_err(SchedError::Os)?.is_none() {
            return Err(SchedError::ThrottlingOff);
        }
    }
    match sys::set_scheduler(0, raw, i32::from(prio)) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Err(SchedError::NotPermitted {
            wanted: policy,
            rtprio_limit: sys::rtprio_limit().map_err(SchedError::Os)?,
        }),
        Err(e) => Err(SchedError::Os(e)),
    }
}

/// The calling thread's scheduling policy (`SCHED_BATCH` and `SCHED_IDLE` read as
/// [`SchedPolicy::Normal`], the time-sharing class they belong to).
///
/// # Errors
///
/// The OS error.
#[doc(alias = "sched_getscheduler")]
pub fn policy() -> io::Result<SchedPolicy> {
    let (raw, prio) = sys::scheduler(0)?;
    let prio = u8::try_from(prio).unwrap_or(0);
    Ok(match raw {
        libc::SCHED_FIFO => SchedPolicy::Fifo(prio),
        libc::SCHED_RR => SchedPolicy::RoundRobin(prio),
        _ => SchedPolicy::Normal,
    })
}

/// Locks every page of the process in memory, now and as it grows (`mlockall`), so no
/// message waits for a page fault or for swap.
///
/// # Errors
///
/// `ENOMEM`/`EPERM` when the memory is over `RLIMIT_MEMLOCK` (8 MiB by default for users;
/// unlimited with `CAP_IPC_LOCK`), said in the message.
#[doc(alias = "mlockall")]
pub fn lock_memory() -> io::Result<()> {
    sys::lock_all().map_err(|e| match e.raw_os_error() {
        Some(libc::ENOMEM) | Some(libc::EPERM) => io::Error::new(
            e.kind(),
            format!(
                "mlockall: {e}: the process is larger than RLIMIT_MEMLOCK allows (`ulimit -l`; \
                 CAP_IPC_LOCK lifts it)"
            ),
        ),
        _ => e,
    })
}

/// Undoes [`lock_memory`].
///
/// # Errors
///
/// The OS error.
#[doc(alias = "munlockall")]
pub fn unlock_memory() -> io::Result<()> {
    sys::unlock_all()
}

/// The machine's online NUMA nodes (one, `[0]`, on most machines).
///
/// # Errors
///
/// `/sys/devices/system/node/online` cannot be read; a machine without NUMA support reads as
/// one node.
pub fn numa_nodes() -> io::Result<Vec<usize>> {
    let path = std::path::Path::new("/sys/devices/system/node/online");
    match crate::fs::read_regular(path, 4096) {
        Ok(text) => Ok(parse_list(&String::from_utf8_lossy(&text))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(vec![0]),
        Err(e) => Err(e),
    }
}

/// The NUMA node CPU `cpu` belongs to (`None` on a machine without NUMA support).
///
/// # Errors
///
/// `NotFound` if there is no such CPU.
pub fn cpu_node(cpu: usize) -> io::Result<Option<usize>> {
    let dir = format!("/sys/devices/system/cpu/cpu{cpu}");
    let entries = std::fs::read_dir(&dir)?;
    for e in entries {
        let name = e?.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_prefix("node"))
            .and_then(|n| n.parse::<usize>().ok())
        {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// Where `seg`'s pages are: NUMA node -> number of pages; pages not yet touched are counted
/// under `None`.
///
/// # Errors
///
/// The OS error of `move_pages`.
pub fn segment_nodes(seg: &Segment) -> io::Result<BTreeMap<Option<usize>, usize>> {
    let page = crate::process::page_size();
    let base = seg.as_ptr() as usize;
    let mut out = BTreeMap::new();
    // In chunks: one status word per page, without a vector the size of a huge segment.
    let pages = seg.len().div_ceil(page);
    let mut i = 0;
    while i < pages {
        let n = (pages - i).min(4096);
        let addrs: Vec<usize> = (i..i + n).map(|p| base + p * page).collect();
        for s in sys::page_nodes(&addrs)? {
            let node = usize::try_from(s).ok();
            *out.entry(node).or_insert(0) += 1;
        }
        i += n;
    }
    Ok(out)
}

/// `0-3,8,10-11` as `[0, 1, 2, 3, 8, 10, 11]`; malformed parts are skipped, ranges bounded.
fn parse_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<usize>(), b.parse::<usize>()),
            None => (part.parse::<usize>(), part.parse::<usize>()),
        };
        if let (Ok(a), Ok(b)) = (a, b) {
            if a <= b && b < sys::CPU_SETSIZE.max(1 << 16) {
                out.extend(a..=b);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(parse_list("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_list("0"), vec![0]);
        assert_eq!(parse_list(""), Vec::<usize>::new());
        assert_eq!(parse_list("3-1,x,5"), vec![5]);
        assert_eq!(parse_list("0-18446744073709551615"), Vec::<usize>::new());
    }

    #[test]
    fn an_invalid_priority_is_refused_before_the_kernel() {
        assert!(matches!(
            set_policy(SchedPolicy::Fifo(0)),
            Err(SchedError::InvalidPriority(0))
        ));
        assert!(matches!(
            set_policy(SchedPolicy::RoundRobin(100)),
            Err(SchedError::InvalidPriority(100))
        ));
    }

    #[test]
    fn an_empty_cpu_list_is_refused() {
        assert_eq!(
            pin_thread(&[]).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
