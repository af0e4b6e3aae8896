//! Copy-on-write snapshots by `fork`: the Redis `BGSAVE` pattern.
//!
//! A process holds a table in memory, keeps taking writes, and must save the table as it was
//! at one instant. It forks: the child starts with the same memory, the kernel shares every
//! page between the two, write-protected, and copies a page only when one side writes to it.
//! The child writes its unchanging view to a file and exits; the parent never stops. The
//! parent pays instead: `fork` copies its page tables (a pause that grows with the memory it
//! maps), each first write to a page after the fork takes a fault and a 4 KiB copy, and
//! memory grows by every page written while the child lives.
//!
//! [`snapshot_to`] forks that child, and [`SnapshotChild`] waits for it. [`usage`] reads
//! minor faults (`getrusage`), and [`MemoryRollup`] how much memory a process still shares
//! (`/proc/PID/smaps_rollup`), to see the copying.
//!
//! ```
//! use ipckit::shm::cow;
//! use std::os::unix::fs::FileExt;
//! # fn main() -> std::io::Result<()> {
//! let mut table: Vec<u64> = (0..65_536).collect();
//! let path = std::env::temp_dir().join(format!("cow-doc-{}", std::process::id()));
//! let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
//!
//! let mut child = cow::snapshot_to(&file, &table)?; // the table as of this instant
//! table[0] = 42; // the kernel copies this page for the parent; the child keeps the original
//! let report = child.wait()?;
//! assert_eq!(report.bytes, 8 * 65_536);
//!
//! let mut first = [0u8; 8];
//! file.read_exact_at(&mut first, 0)?;
//! assert_eq!(u64::from_ne_bytes(first), 0); // not 42
//! std::fs::remove_file(&path)?;
//! # Ok(()) }
//! ```
//!
//! ## What the child may do, and why it matters to you
//!
//! A child forked from a multi-threaded process has one thread and a copy of every lock the
//! other threads held, so it may only make async-signal-safe calls (signal-safety(7)). The
//! child here does just that: `pwrite`, `ftruncate`, `fdatasync`, one `write` of a report
//! to a pipe, `_exit`. It allocates nothing and runs none of your code, so it is safe to
//! call [`snapshot_to`] from any thread of any program. Three consequences of `fork` remain:
//!
//! - The child holds a copy of every descriptor the parent has open until it exits; a peer
//!   waiting for end-of-file on one of them waits for the snapshot too.
//! - Only private memory (the heap, the stack, private mappings) is copied on write. Memory
//!   in a `MAP_SHARED` mapping is shared with the child, so a snapshot of it is not
//!   consistent; memory marked `MADV_DONTFORK` is missing in the child (it dies of `SIGSEGV`,
//!   reported as an error), and `MADV_WIPEONFORK` memory is zeros.
//! - The child inherits the parent's signal dispositions and mask: a Ctrl-C reaches it as it
//!   reaches the parent, and does to it what the parent's disposition says.
//!
//! # References
//!
//! fork(2), wait4(2), getrusage(2), proc_pid_smaps_rollup(5), signal-safety(7); Redis'
//! `rdbSaveBackground` and its "Copy-on-write" log line.

use crate::sys::fd::{poll, read, Ready};
use crate::sys::fork::{self, ChildReport, Exit, Rusage, Step, Who, REPORT_LEN};
use crate::sys::proc::pidfd_open;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// Element types whose in-memory bytes are the value, and nothing else: integers, floats and
/// arrays of them. A snapshot file holds these bytes in native byte order.
///
/// Sealed: a struct may have padding, whose bytes are not a value, and pointers, whose
/// values mean nothing in a file. Store records as arrays of these types, or as bytes.
pub trait Plain: sealed::Sealed + Copy {}

mod sealed {
    pub trait Sealed {}
}

macro_rules! plain {
    ($($t:ty)*) => ($(impl sealed::Sealed for $t {} impl Plain for $t {})*)
}
plain! { u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize f32 f64 }
impl<T: Plain, const N: usize> sealed::Sealed for [T; N] {}
impl<T: Plain, const N: usize> Plain for [T; N] {}

/// Forks a child that writes `data`, as it is at this instant, to `file`, and exits.
///
/// The child writes the bytes of `data` at offset 0 with `pwrite` (the file offset, which it
/// shares with the parent, is not moved), truncates the file to exactly that length,
/// `fdatasync`s it and exits with status 0; the parent may change `data` as soon as this
/// returns. [`SnapshotChild::wait`] (or `try_wait`, `wait_timeout`) says how it went.
///
/// # Errors
///
/// - `InvalidInput` if `file` is not a regular file, not open for writing, or open with
///   `O_APPEND`: checked before forking, so no child exists.
/// - `fork`'s errors (`EAGAIN` at the process limit, `ENOMEM`).
/// - `pidfd_open`'s (Linux before 5.3): the child is then killed and reaped.
///
/// A failure in the child (a full disk, the file size limit, a signal) is not an error here
/// but of [`SnapshotChild::wait`].
///
/// # Examples
///
/// See the [module docs](self).
#[doc(alias = "fork")]
#[doc(alias = "BGSAVE")]
pub fn snapshot_to<T: Plain>(file: impl AsFd, data: &[T]) -> io::Result<SnapshotChild> {
    let file = file.as_fd();
    fork::check_pwritable(file)?;
    // The report pipe: the child writes one fixed record before `_exit`; the parent reads it
    // (without blocking) only after reaping the child, so no read can wait on it.
    let (report_rx, report_tx) = crate::sys::pipe::pipe2(true)?;
    let started_ns = fork::monotonic_ns();
    let pid = fork::fork_writer(file, data, report_tx.as_fd())?;
    let fork_time = Duration::from_nanos(fork::monotonic_ns().saturating_sub(started_ns));
    drop(report_tx);
    // The pid cannot be reused before we reap it, so this pidfd names our child.
    let pidfd = match pidfd_open(pid as u32) {
        Ok(fd) => fd,
        Err(e) => {
            // The pid is our unreaped child, so kill(2) by pid reaches it and no other.
            let _ = fork::kill(pid, libc::SIGKILL);
            let _ = fork::wait4(pid, true);
            return Err(e);
        }
    };
    Ok(SnapshotChild {
        pid,
        pidfd,
        report: report_rx,
        bytes: std::mem::size_of_val(data) as u64,
        started_ns,
        fork_time,
        killed: false,
        done: None,
    })
}

/// The snapshot child of [`snapshot_to`].
///
/// Dropping it before it has been waited for kills the child (`SIGKILL`) and reaps it: a
/// snapshot nobody waits for is abandoned, the file holds part of it, and no zombie is left.
/// The drop waits for the kernel to end the child, which is quick unless the child is inside
/// a write to storage that does not respond.
///
/// It is `AsFd`: its descriptor (a pidfd) becomes readable when the child exits, for an
/// event loop that polls it beside other work, then calls [`try_wait`](Self::try_wait).
#[derive(Debug)]
pub struct SnapshotChild {
    pid: libc::pid_t,
    pidfd: OwnedFd,
    report: OwnedFd,
    bytes: u64,
    started_ns: u64,
    fork_time: Duration,
    killed: bool,
    done: Option<Result<SnapshotReport, Failure>>,
}

/// A failure, kept so that every later `wait` reports it again.
#[derive(Debug, Clone)]
struct Failure {
    kind: io::ErrorKind,
    msg: String,
}

impl Failure {
    fn to_error(&self) -> io::Error {
        io::Error::new(self.kind, self.msg.clone())
    }
}

/// A snapshot the child finished: written, truncated to length and synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotReport {
    /// The child's pid (gone now).
    pub pid: u32,
    /// Bytes written: the size of the data.
    pub bytes: u64,
    /// How long the parent was inside `fork` (copying its page tables).
    pub fork_time: Duration,
    /// From just before `fork` to the child's last step (its `fdatasync` returning).
    pub elapsed: Duration,
    /// The child's own resource usage (`wait4`): its minor faults are few, since reading
    /// shared pages copies nothing.
    pub usage: Usage,
}

impl SnapshotChild {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Bytes the child writes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// How long the parent was inside `fork`: copying the page tables, during which the
    /// forking thread could do nothing else.
    pub fn fork_time(&self) -> Duration {
        self.fork_time
    }

    /// The snapshot's outcome if the child has exited, `None` if it is still running.
    ///
    /// # Errors
    ///
    /// If the child failed: a step that failed (`pwrite`, `ftruncate`, `fdatasync`, with the
    /// error's kind and how many bytes it had written), a signal that killed it (named, with
    /// the usual cause for `SIGXFSZ`), or an unexpected exit status. Also `wait4`'s error if
    /// the child was reaped by someone else (`ECHILD`, e.g. with `SIGCHLD` ignored). The
    /// same outcome is returned by every later call.
    #[doc(alias = "wait4")]
    pub fn try_wait(&mut self) -> io::Result<Option<SnapshotReport>> {
        self.reap(false)
    }

    /// Waits for the child to exit and returns the snapshot's outcome. It waits as long as
    /// the child runs; [`wait_timeout`](Self::wait_timeout) bounds the wait.
    ///
    /// # Errors
    ///
    /// As [`try_wait`](Self::try_wait).
    pub fn wait(&mut self) -> io::Result<SnapshotReport> {
        match self.reap(true)? {
            Some(r) => Ok(r),
            None => Err(io::Error::other("wait4 returned without a status")),
        }
    }

    /// Waits at most `timeout` for the child to exit; `None` if it is still running.
    ///
    /// # Errors
    ///
    /// As [`try_wait`](Self::try_wait), and `poll`'s.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<SnapshotReport>> {
        if self.done.is_none() {
            let ready = poll(&[(self.pidfd.as_fd(), libc::POLLIN)], Some(timeout))?;
            if ready == Ready::TimedOut {
                return Ok(None);
            }
        }
        // Readable pidfd: the child has exited, so this reaps it.
        self.reap(false)
    }

    /// Kills the child (`SIGKILL`); `wait` then reports that it was killed. Does nothing if
    /// it has already been waited for.
    ///
    /// # Errors
    ///
    /// `pidfd_send_signal`'s, other than the child having exited already.
    pub fn kill(&mut self) -> io::Result<()> {
        if self.done.is_some() {
            return Ok(());
        }
        self.killed = true;
        match fork::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            other => other,
        }
    }

    fn reap(&mut self, block: bool) -> io::Result<Option<SnapshotReport>> {
        if self.done.is_none() {
            let outcome = match fork::wait4(self.pid, block) {
                Ok(None) => return Ok(None),
                Ok(Some((exit, usage))) => self.outcome(exit, usage),
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Err(Failure {
                    kind: e.kind(),
                    msg: format!(
                        "snapshot child {} was reaped by someone else (is SIGCHLD ignored?): {e}",
                        self.pid
                    ),
                }),
                Err(e) => return Err(e),
            };
            self.done = Some(outcome);
        }
        match &self.done {
            Some(Ok(r)) => Ok(Some(*r)),
            Some(Err(f)) => Err(f.to_error()),
            None => Ok(None),
        }
    }

    fn outcome(&self, exit: Exit, usage: Rusage) -> Result<SnapshotReport, Failure> {
        let pid = self.pid;
        let mut buf = [0u8; REPORT_LEN];
        let report = match read(self.report.as_fd(), &mut buf) {
            Ok(n) => ChildReport::decode(&buf[..n]),
            Err(_) => None,
        };
        let other = |msg: String| Failure {
            kind: io::ErrorKind::Other,
            msg,
        };
        match (exit, report) {
            (Exit::Code(0), Some(r)) if r.step == Step::Done => Ok(SnapshotReport {
                pid: pid as u32,
                bytes: r.written,
                fork_time: self.fork_time,
                elapsed: Duration::from_nanos(r.finished_ns.saturating_sub(self.started_ns)),
                usage: usage.into(),
            }),
            (Exit::Code(_), Some(r)) if r.step != Step::Done => {
                let os = io::Error::from_raw_os_error(r.errno);
                Err(Failure {
                    kind: os.kind(),
                    msg: format!(
                        "snapshot child {pid}: {} failed after {} of {} bytes: {os}",
                        r.step.call(),
                        r.written,
                        self.bytes
                    ),
                })
            }
            (Exit::Code(code), _) => Err(other(format!(
                "snapshot child {pid} exited with status {code} without a complete report"
            ))),
            (Exit::Signal { signal, core }, _) => {
                let mut msg = format!(
                    "snapshot child {pid} was killed by {}",
                    fork::signal_name(signal)
                );
                if core {
                    msg.push_str(" (core dumped)");
                }
                if signal == libc::SIGKILL && self.killed {
                    msg.push_str(", sent by SnapshotChild::kill");
                } else if signal == libc::SIGXFSZ {
                    msg.push_str(": the file would pass the file size limit (RLIMIT_FSIZE)");
                }
                Err(other(msg))
            }
        }
    }
}

impl AsFd for SnapshotChild {
    /// The child's pidfd: readable once the child has exited.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }
}

impl Drop for SnapshotChild {
    fn drop(&mut self) {
        if self.done.is_none() {
            let _ = fork::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
            let _ = fork::wait4(self.pid, true);
        }
    }
}

/// Resource usage from getrusage(2) or wait4(2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Page faults served without I/O: among them, every copy-on-write copy.
    pub minor_faults: u64,
    /// Page faults that read from storage.
    pub major_faults: u64,
    /// CPU time in user mode.
    pub user_time: Duration,
    /// CPU time in the kernel.
    pub system_time: Duration,
    /// Largest resident set, in bytes (for `Children`, of the largest child).
    pub max_rss_bytes: u64,
}

impl From<Rusage> for Usage {
    fn from(r: Rusage) -> Usage {
        Usage {
            minor_faults: r.minor_faults,
            major_faults: r.major_faults,
            user_time: r.user,
            system_time: r.system,
            max_rss_bytes: r.max_rss_kib.saturating_mul(1024),
        }
    }
}

/// Whose usage [`usage`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageOf {
    /// This process, all threads (`RUSAGE_SELF`).
    Process,
    /// The calling thread (`RUSAGE_THREAD`).
    Thread,
    /// The children this process has reaped (`RUSAGE_CHILDREN`).
    Children,
}

/// Resource usage so far; take two readings and subtract to see what happened between them
/// (in the parent, minor faults during a snapshot are mostly its copy-on-write copies).
///
/// # Errors
///
/// `getrusage`'s (none in practice).
#[doc(alias = "getrusage")]
pub fn usage(of: UsageOf) -> io::Result<Usage> {
    let who = match of {
        UsageOf::Process => Who::Process,
        UsageOf::Thread => Who::Thread,
        UsageOf::Children => Who::Children,
    };
    fork::getrusage(who).map(Usage::from)
}

/// A process's memory totals from `/proc/PID/smaps_rollup`, in bytes.
///
/// After a fork, a page the parent has not written since is shared (`shared_*`) in both
/// processes; a page the parent has copied is private to each: the parent's new copy, and
/// the child's original, which only the child maps now. So the child's `private_dirty`
/// grows with the parent's copies: this is the "copy-on-write" figure Redis logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryRollup {
    /// Resident memory.
    pub rss: u64,
    /// Proportional share: each shared page divided among its sharers.
    pub pss: u64,
    /// Shared with another process, unmodified since mapped.
    pub shared_clean: u64,
    /// Shared with another process, modified (before the fork).
    pub shared_dirty: u64,
    /// Mapped by this process alone, unmodified.
    pub private_clean: u64,
    /// Mapped by this process alone, modified.
    pub private_dirty: u64,
    /// Anonymous memory (heap, stack, private copies).
    pub anonymous: u64,
    /// Anonymous memory in transparent huge pages.
    pub anon_huge_pages: u64,
}

impl MemoryRollup {
    /// Reads `/proc/PID/smaps_rollup` (Linux 4.14 or later).
    ///
    /// # Errors
    ///
    /// `NotFound` if the process is gone, `PermissionDenied` if it is not ours to inspect;
    /// `InvalidData` if the file lacks the `Rss` line (a zombie's is empty).
    pub fn of(pid: u32) -> io::Result<MemoryRollup> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
        MemoryRollup::parse(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{pid}/smaps_rollup has no Rss line (has the process exited?)"),
            )
        })
    }

    /// Memory shared with another process (clean and dirty).
    pub fn shared(&self) -> u64 {
        self.shared_clean + self.shared_dirty
    }

    fn parse(text: &str) -> Option<MemoryRollup> {
        let mut m = MemoryRollup::default();
        let mut saw_rss = false;
        for line in text.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            let mut words = rest.split_whitespace();
            let (Some(n), Some("kB")) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(kib) = n.parse::<u64>() else {
                continue;
            };
            let bytes = kib.saturating_mul(1024);
            let slot = match key.trim() {
                "Rss" => {
                    saw_rss = true;
                    &mut m.rss
                }
                "Pss" => &mut m.pss,
                "Shared_Clean" => &mut m.shared_clean,
                "Shared_Dirty" => &mut m.shared_dirty,
                "Private_Clean" => &mut m.private_clean,
                "Private_Dirty" => &mut m.private_dirty,
                "Anonymous" => &mut m.anonymous,
                "AnonHugePages" => &mut m.anon_huge_pages,
                _ => continue,
            };
            *slot = bytes;
        }
        saw_rss.then_some(m)
    }
}

impl fmt::Display for MemoryRollup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        write!(
            f,
            "Rss {:.1} MiB, shared {:.1} MiB, Private_Dirty {:.1} MiB",
            mib(self.rss),
            mib(self.shared()),
            mib(self.private_dirty)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_smaps_rollup() {
        let text =
            "55d0c0a00000-7ffd3c5fe000 ---p 00000000 00:00 0                          [rollup]\n\
                    Rss:              263412 kB\n\
                    Pss:              131730 kB\n\
                    Pss_Anon:         131000 kB\n\
                    Shared_Clean:       1024 kB\n\
                    Shared_Dirty:     200000 kB\n\
                    Private_Clean:         4 kB\n\
                    Private_Dirty:     62384 kB\n\
                    Anonymous:        262144 kB\n\
                    AnonHugePages:         0 kB\n";
        let m = MemoryRollup::parse(text).unwrap();
        assert_eq!(m.rss, 263_412 * 1024);
        assert_eq!(m.shared(), 201_024 * 1024);
        assert_eq!(m.private_dirty, 62_384 * 1024);
        assert_eq!(m.anonymous, 262_144 * 1024);
        assert_eq!(MemoryRollup::parse(""), None);
    }

    #[test]
    fn report_round_trips_and_rejects_junk() {
        let mut b = [0u8; REPORT_LEN];
        b[0..4].copy_from_slice(&1u32.to_ne_bytes());
        b[4..8].copy_from_slice(&libc::ENOSPC.to_ne_bytes());
        b[8..16].copy_from_slice(&4096u64.to_ne_bytes());
        let r = ChildReport::decode(&b).unwrap();
        assert_eq!(r.step, Step::Write);
        assert_eq!((r.errno, r.written), (libc::ENOSPC, 4096));
        assert!(ChildReport::decode(&b[..10]).is_none());
        b[0..4].copy_from_slice(&9u32.to_ne_bytes());
        assert!(ChildReport::decode(&b).is_none());
    }

    #[test]
    fn signal_names() {
        assert_eq!(fork::signal_name(libc::SIGKILL), "SIGKILL");
        assert_eq!(fork::signal_name(libc::SIGXFSZ), "SIGXFSZ");
        assert_eq!(fork::signal_name(64), "signal 64");
    }
}
