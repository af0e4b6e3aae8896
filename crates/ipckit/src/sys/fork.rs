//! Processes made by `fork(2)`: a child that writes a buffer to a file and `_exit`s, and the
//! parent's side (`wait4` with the child's resource usage, `getrusage`, `pidfd_send_signal`).
//!
//! # Safety
//!
//! `fork` in a multi-threaded process copies the whole address space but only the calling
//! thread. Whatever another thread held at that instant (the allocator's locks, the stdout
//! lock, a `Mutex`) stays held forever in the child, so until it exits the child may call
//! only async-signal-safe functions (signal-safety(7)): no allocation, no `println!`, no
//! lock, nothing that might panic (the panic machinery allocates and takes the stderr lock).
//! It must also never return into the Rust code that called `fork`: that code would run a
//! second time in the child, and so would the destructors of everything on its stack (a
//! guard that removes a file, a buffered writer that flushes).
//!
//! So this file exposes no general `fork`. [`fork_writer`] forks a child that runs
//! [`child_write`] and nothing else: a loop of `pwrite`, then `ftruncate`, `fdatasync`,
//! `clock_gettime`, one `write` to a pipe and `_exit`, every one on the async-signal-safe
//! list; it reads `errno` through `__errno_location`, allocates nothing, takes no lock, uses
//! only arithmetic that cannot overflow, and never indexes. In case unwinding ever started
//! anyway, a guard on its stack calls `_exit(127)` from its destructor. `_exit` (not `exit`)
//! skips `atexit` handlers and the flushing of stdio buffers the child shares with the parent.
//!
//! The child reads the parent's data through the pointer it had at fork time; in the child
//! that pointer addresses the child's own copy-on-write copy of private memory. Only the
//! kernel reads those bytes (in `pwrite`), never Rust code, so even memory another process
//! may write (a `MAP_SHARED` mapping, which fork shares rather than copies) is no data race
//! in the child: the snapshot of such memory is just not consistent, as the caller's docs
//! say.
//!
//! The parent's calls (`wait4`, `getrusage`, `clock_gettime`, `pidfd_send_signal`, `fcntl`,
//! `sysconf`) take plain integers or pointers to local structs of the type the kernel writes.

use super::fd::{cvt, cvt_r, fstat};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Where the child stopped, as it reports it (`Done` when everything succeeded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Written, truncated to length and synced.
    Done,
    /// A `pwrite` failed.
    Write,
    /// `ftruncate` to the data's length failed.
    Truncate,
    /// `fdatasync` failed.
    Sync,
}

impl Step {
    fn code(self) -> u32 {
        match self {
            Step::Done => 0,
            Step::Write => 1,
            Step::Truncate => 2,
            Step::Sync => 3,
        }
    }

    fn from_code(c: u32) -> Option<Step> {
        [Step::Done, Step::Write, Step::Truncate, Step::Sync]
            .into_iter()
            .find(|s| s.code() == c)
    }

    /// The system call that failed at this step.
    pub(crate) fn call(self) -> &'static str {
        match self {
            Step::Done => "nothing",
            Step::Write => "pwrite",
            Step::Truncate => "ftruncate",
            Step::Sync => "fdatasync",
        }
    }
}

/// What the child writes to the report pipe, once, just before `_exit`. `#[repr(C)]` with
/// no padding (4 + 4 + 8 + 8 bytes), so its bytes are all initialised; 24 bytes is far
/// below `PIPE_BUF`, so the one `write` is atomic and never blocks on an empty pipe.
#[repr(C)]
struct Wire {
    step: u32,
    errno: i32,
    written: u64,
    finished_ns: u64,
}

/// Size of [`Wire`] on the pipe.
pub(crate) const REPORT_LEN: usize = std::mem::size_of::<Wire>();

/// The child's report, decoded by the parent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildReport {
    /// Where it stopped.
    pub(crate) step: Step,
    /// `errno` of the failed call, 0 on success.
    pub(crate) errno: i32,
    /// Bytes written before it stopped.
    pub(crate) written: u64,
    /// `CLOCK_MONOTONIC` when it finished, in ns (compare with [`monotonic_ns`]).
    pub(crate) finished_ns: u64,
}

impl ChildReport {
    /// Decodes the bytes the child wrote; `None` if they are not a whole, known report.
    pub(crate) fn decode(b: &[u8]) -> Option<ChildReport> {
        if b.len() != REPORT_LEN {
            return None;
        }
        let u32_at = |i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        Some(ChildReport {
            step: Step::from_code(u32_at(0))?,
            errno: u32_at(4) as i32,
            written: u64_at(8),
            finished_ns: u64_at(16),
        })
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// `_exit(code)`.
    Code(i32),
    /// Killed by a signal.
    Signal {
        /// The signal number.
        signal: i32,
        /// Whether it dumped core.
        core: bool,
    },
}

/// The part of `struct rusage` ipckit reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rusage {
    pub(crate) minor_faults: u64,
    pub(crate) major_faults: u64,
    pub(crate) user: Duration,
    pub(crate) system: Duration,
    pub(crate) max_rss_kib: u64,
}

impl From<&libc::rusage> for Rusage {
    fn from(r: &libc::rusage) -> Rusage {
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64)
                + Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        Rusage {
            minor_faults: r.ru_minflt.max(0) as u64,
            major_faults: r.ru_majflt.max(0) as u64,
            user: tv(r.ru_utime),
            system: tv(r.ru_stime),
            max_rss_kib: r.ru_maxrss.max(0) as u64,
        }
    }
}

/// Whose usage `getrusage` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    /// `RUSAGE_SELF`: every thread of this process.
    Process,
    /// `RUSAGE_THREAD`: the calling thread.
    Thread,
    /// `RUSAGE_CHILDREN`: every child this process has reaped (and their reaped children).
    Children,
}

/// `getrusage(2)`.
pub(crate) fn getrusage(who: Who) -> io::Result<Rusage> {
    let who = match who {
        Who::Process => libc::RUSAGE_SELF,
        Who::Thread => libc::RUSAGE_THREAD,
        Who::Children => libc::RUSAGE_CHILDREN,
    };
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a live, writable rusage, which is what getrusage fills.
    cvt(unsafe { libc::getrusage(who, &mut ru) })?;
    Ok(Rusage::from(&ru))
}

/// `clock_gettime(CLOCK_MONOTONIC)` in ns: the clock `Instant` uses, readable in the child.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    // Wrapping: this also runs in the forked child, which must not panic on overflow (it
    // cannot overflow for 584 years of uptime).
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The page size (`sysconf(_SC_PAGESIZE)`), 4096 if it cannot be read.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf takes an integer name and reads no memory of ours.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// Checks that `fd` can take a snapshot by `pwrite` at offset 0: a regular file, open for
/// writing, without `O_APPEND` (with it, Linux's `pwrite` appends whatever the offset).
///
/// # Errors
///
/// `InvalidInput` saying which of the three it is not; `fstat`/`fcntl`'s own errors.
pub(crate) fn check_pwritable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let st = fstat(fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a snapshot is written to a regular file (pwrite at offset 0), and this is not one",
        ));
    }
    // SAFETY: F_GETFL takes no pointer; the descriptor is borrowed, so open.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let mode = flags & libc::O_ACCMODE;
    if mode != libc::O_WRONLY && mode != libc::O_RDWR {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the snapshot file is not open for writing",
        ));
    }
    if flags & libc::O_APPEND != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the snapshot file is open with O_APPEND, where pwrite ignores the offset",
        ));
    }
    Ok(())
}

/// Forks a child that writes the bytes of `data` at offset 0 of `file`, sets the file's
/// length to exactly those bytes (`ftruncate`), `fdatasync`s it, writes one report to
/// `report` (the write end of a pipe) and `_exit`s, with status 0 if every step succeeded
/// and 1 otherwise. Returns the child's pid, in the parent only: the child never returns.
///
/// What the child writes is `data` as it was when `fork` ran: the parent may change it as
/// soon as this returns, and the kernel copies each page the parent writes, leaving the
/// child the original.
///
/// # Errors
///
/// `fork`'s (`EAGAIN` at the process limit, `ENOMEM`); no child exists then.
pub(crate) fn fork_writer<T>(
    file: BorrowedFd<'_>,
    data: &[T],
    report: BorrowedFd<'_>,
) -> io::Result<libc::pid_t> {
    let fd = file.as_raw_fd();
    let rep = report.as_raw_fd();
    let ptr = data.as_ptr().cast::<u8>();
    let len = std::mem::size_of_val(data);
    // SAFETY: (1) in the child, `fork` returns 0 and we call `child_write` at once, which
    // only makes async-signal-safe calls and ends in `_exit` without ever returning (its
    // type is `!`), so no Rust code of the caller, and no destructor, runs in the child (see
    // the module docs); (2) `ptr`/`len` describe `data`, a live slice at the instant of the
    // fork, so they describe the child's copy of it; (3) in the parent `fork` has no effect
    // on Rust's view of memory.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        child_write(fd, ptr, len, rep);
    }
    Ok(pid)
}

/// Largest single `pwrite` (Linux writes at most about 2 GiB per call anyway).
const CHUNK: usize = 1 << 30;

/// The child's whole life: see [`fork_writer`] and the module docs for what it may call.
fn child_write(fd: libc::c_int, data: *const u8, len: usize, report: libc::c_int) -> ! {
    let _exit_on_unwind = ExitOnUnwind;
    let mut step = Step::Done;
    let mut errno = 0;
    let mut off = 0usize;
    while off < len {
        // `off < len`, so no underflow; `n <= chunk` below, so `off` never passes `len`.
        let chunk = if len - off < CHUNK { len - off } else { CHUNK };
        // SAFETY: `data..data + len` is the parent's slice as of the fork, mapped in this
        // copy of its address space, and `off + chunk <= len`; only the kernel reads it.
        // `len` fits in `off_t` because a slice is at most `isize::MAX` bytes.
        let n =
            unsafe { libc::pwrite(fd, data.wrapping_add(off).cast(), chunk, off as libc::off_t) };
        if n < 0 {
            let e = last_errno();
            if e == libc::EINTR {
                continue;
            }
            (step, errno) = (Step::Write, e);
            break;
        }
        if n == 0 {
            // A regular file never takes 0 of a non-empty write without an error; do not loop.
            (step, errno) = (Step::Write, libc::EIO);
            break;
        }
        off += n as usize;
    }
    if step == Step::Done {
        // SAFETY: ftruncate takes integers only.
        while unsafe { libc::ftruncate(fd, len as libc::off_t) } == -1 {
            let e = last_errno();
            if e != libc::EINTR {
                (step, errno) = (Step::Truncate, e);
                break;
            }
        }
    }
    if step == Step::Done {
        // SAFETY: fdatasync takes an integer only.
        while unsafe { libc::fdatasync(fd) } == -1 {
            let e = last_errno();
            if e != libc::EINTR {
                (step, errno) = (Step::Sync, e);
                break;
            }
        }
    }
    let wire = Wire {
        step: step.code(),
        errno,
        written: off as u64,
        finished_ns: monotonic_ns(),
    };
    // SAFETY: `wire` is a live `#[repr(C)]` struct of `REPORT_LEN` initialised bytes. The
    // result is ignored: with no report, the parent still has the exit status.
    unsafe { libc::write(report, (&raw const wire).cast(), REPORT_LEN) };
    let status = if step == Step::Done { 0 } else { 1 };
    // SAFETY: `_exit` ends the process without running any Rust or C cleanup.
    unsafe { libc::_exit(status) }
}

/// `errno`, read without anything that could allocate.
fn last_errno() -> i32 {
    // SAFETY: `__errno_location` returns the calling thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

/// Ends the forked child if unwinding ever reaches [`child_write`]'s frame.
struct ExitOnUnwind;

impl Drop for ExitOnUnwind {
    fn drop(&mut self) {
        // SAFETY: only ever dropped in the forked child (the normal path ends in `_exit`
        // first), where ending the process at once is the point.
        unsafe { libc::_exit(127) }
    }
}

/// `wait4(pid)`: `None` if `block` is false and the child is still running; otherwise how it
/// ended and its own resource usage. `EINTR` is retried.
///
/// # Errors
///
/// `ECHILD` if `pid` is not an unreaped child of this process (someone else reaped it, or
/// `SIGCHLD` is ignored and the kernel reaped it).
pub(crate) fn wait4(pid: libc::pid_t, block: bool) -> io::Result<Option<(Exit, Rusage)>> {
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if block { 0 } else { libc::WNOHANG };
    // SAFETY: `status` and `ru` are live locals of the types wait4 writes.
    let r = cvt_r(|| unsafe { libc::wait4(pid, &mut status, flags, &mut ru) })?;
    if r == 0 {
        return Ok(None);
    }
    let exit = if libc::WIFSIGNALED(status) {
        Exit::Signal {
            signal: libc::WTERMSIG(status),
            core: libc::WCOREDUMP(status),
        }
    } else {
        Exit::Code(libc::WEXITSTATUS(status))
    };
    Ok(Some((exit, Rusage::from(&ru))))
}

/// `pidfd_send_signal(pidfd, sig)`: signals the process the pidfd names, never a later
/// process that reused its pid.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: the syscall takes a descriptor, a signal number, a null siginfo (allowed: the
    // kernel fills in a default one) and flags.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    })?;
    Ok(())
}

/// `kill(pid, sig)`. Only for a child not yet reaped, whose pid cannot have been reused;
/// otherwise use [`pidfd_send_signal`].
pub(crate) fn kill(pid: libc::pid_t, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes two integers.
    cvt(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}

/// A signal's name (`SIGKILL`), or `signal N` for one without a common name.
pub(crate) fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {sig}"),
    };
    name.to_owned()
}
