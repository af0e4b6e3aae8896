//! Processes: pidfds, start times, the boot id and our effective uid; threads' ids and start
//! times.
//!
//! # Safety
//!
//! `gettid` and `kill(tid, 0)` take integers only; `pthread_atfork` registers a handler that
//! touches a thread-local integer only.
//! `pidfd_open` is a raw syscall taking two integers; its result becomes an `OwnedFd` at once.
//! `prctl(PR_SET_PDEATHSIG)` takes integers only.
//! `access` takes a NUL-terminated `CString` that outlives the call. The `pre_exec` closures
//! run in the forked child and call only async-signal-safe functions (`fcntl`, `sigemptyset`,
//! `sigprocmask`) on data built before the fork.
//! `adopt_inherited` is the one place a descriptor number from outside (an `fd:N` address)
//! becomes an `OwnedFd`; its comment lists what is checked first and why that makes the
//! ownership ours. The `fcntl`/`fstat` calls it makes on the raw number take no pointer other
//! than a local `stat`, and an unknown number only yields `EBADF`.

use super::fd::{cvt, owned};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// `pidfd_open(pid, 0)`: a descriptor that becomes readable when `pid` exits.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: the syscall takes a pid and flags, no pointers.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) })?;
    Ok(owned(fd as i32))
}

/// `prctl(PR_SET_PDEATHSIG, SIGKILL)`: this process is killed when the thread that forked
/// it exits.
pub(crate) fn set_parent_death_kill() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    cvt(unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    })?;
    Ok(())
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat`, field 22). Together
/// with the pid it names one process for the whole uptime, so a reused pid is not mistaken for
/// the original owner.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: parse after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')' come field 3 (state) onwards; field 22 is index 19 here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// True if a process with this pid and start time exists (and is not a zombie).
pub fn is_alive(pid: u32, start: u64) -> bool {
    matches!(state_and_start(pid), Ok(Some((state, s))) if s == start && !exited(state))
}

/// The state letter (field 3) and start time (field 22) of `/proc/PID/stat`, which a thread
/// id names as well as a process id. `Ok(None)` if there is no such file; `Err` if it could
/// not be read otherwise.
fn state_and_start(pid: u32) -> io::Result<Option<(u8, u64)>> {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/PID/stat");
    let close = stat.rfind(')').ok_or_else(bad)?;
    let mut fields = stat[close + 1..].split_whitespace();
    let state = fields
        .next()
        .and_then(|s| s.bytes().next())
        .ok_or_else(bad)?;
    let start = fields
        .nth(18)
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(bad)?;
    Ok(Some((state, start)))
}

/// A zombie, or dead: it holds nothing any more.
fn exited(state: u8) -> bool {
    state == b'Z' || state == b'X'
}

/// The calling thread's id and the low 32 bits of its start time (clock ticks since boot),
/// which together name it for about 497 days of uptime at 100 Hz: what a lock records of its
/// holder. Cached per thread; a fork's child, whose one thread is new, looks again.
pub(crate) fn this_thread() -> (u32, u32) {
    use std::cell::Cell;
    thread_local! {
        /// `tid << 32 | start`, 0 until first asked (and again in a fork's child).
        static ME: Cell<u64> = const { Cell::new(0) };
    }
    extern "C" fn forget_in_child() {
        // In the child, on its only thread: the thread-local exists (it is this thread's).
        let _ = ME.try_with(|c| c.set(0));
    }
    static AT_FORK: std::sync::Once = std::sync::Once::new();
    AT_FORK.call_once(|| {
        // SAFETY: registers a handler with no arguments that touches only a thread-local
        // integer, which is what a fork's child may do.
        unsafe { libc::pthread_atfork(None, None, Some(forget_in_child)) };
    });
    ME.with(|c| {
        let v = c.get();
        if v != 0 {
            return ((v >> 32) as u32, v as u32);
        }
        // SAFETY: gettid takes no arguments and cannot fail.
        let tid = unsafe { libc::gettid() } as u32;
        let start = match state_and_start(tid) {
            Ok(Some((_, s))) => s as u32,
            _ => 0,
        };
        c.set(u64::from(tid) << 32 | u64::from(start));
        (tid, start)
    })
}

/// False only if the thread `tid` is certainly gone: no such thread, or an exited one (a
/// zombie), or, with `start` given, one that started at another time (the id was reused).
/// A thread `/proc` hides from us (`hidepid`) counts as alive if `kill(tid, 0)` finds it.
pub(crate) fn thread_alive(tid: u32, start: Option<u32>) -> bool {
    match state_and_start(tid) {
        Ok(Some((state, s))) => !exited(state) && start.is_none_or(|want| s as u32 == want),
        Ok(None) | Err(_) => {
            let Ok(pid) = libc::pid_t::try_from(tid) else {
                return false;
            };
            if pid <= 0 {
                return false;
            }
            // SAFETY: kill with signal 0 only checks that the target exists.
            let r = unsafe { libc::kill(pid, 0) };
            r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        }
    }
}

/// This boot's id, so two processes can tell whether they share a kernel (and so whether a
/// pid from the other is meaningful here).
pub(crate) fn boot_id() -> [u8; 16] {
    let s = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let hex: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).take(16).enumerate() {
        let txt = std::str::from_utf8(pair).unwrap_or("0");
        out[i] = u8::from_str_radix(txt, 16).unwrap_or(0);
    }
    out
}

/// Effective uid of this process.
pub(crate) fn euid() -> u32 {
    static UID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UID.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
            })
            .unwrap_or(0)
    })
}

/// Pid of the calling process.
pub(crate) fn getpid() -> u32 {
    std::process::id()
}

/// Arranges for `fds` (close-on-exec in this process) to stay open across the exec of
/// `cmd`'s child, and only that child: the flag is cleared after the fork, in the child.
pub(crate) fn inherit_in_child(cmd: &mut std::process::Command, fds: Vec<std::os::fd::RawFd>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and calls only fcntl, which is
    // async-signal-safe; it allocates nothing (the Vec was built before the fork).
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags == -1 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Makes `cmd`'s child inherit exactly `fds` beyond stdio: after the fork, in the child, every
/// descriptor from 3 up is marked close-on-exec, then the flag is cleared on `fds` alone.
///
/// Rust std and ipckit open everything close-on-exec already; this also covers descriptors
/// that code outside them (a C library, an inherited descriptor) left open without the flag.
/// Hooks run in the order they were added, so this must be the last inheritance hook on
/// `cmd`: it seals whatever an earlier [`inherit_in_child`] opened up.
pub(crate) fn inherit_only_in_child(cmd: &mut std::process::Command, fds: Vec<RawFd>) {
    use std::os::unix::process::CommandExt;
    // For a kernel without close_range(2) (before 5.11): the loop's bound, read before the fork.
    // SAFETY: sysconf takes no pointers.
    let open_max = match unsafe { libc::sysconf(libc::_SC_OPEN_MAX) } {
        n if n > 0 => n.min(1 << 20) as RawFd,
        _ => 1 << 16,
    };
    // SAFETY: the closure runs in the forked child before exec and makes only raw syscalls
    // (close_range, fcntl), which are async-signal-safe; it allocates nothing (the Vec was
    // built before the fork). Marking std's own exec-error pipe close-on-exec changes
    // nothing: it already is.
    unsafe {
        cmd.pre_exec(move || {
            if libc::close_range(3, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) == -1 {
                for fd in 3..open_max {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags != -1 && flags & libc::FD_CLOEXEC == 0 {
                        libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                    }
                }
            }
            for &fd in &fds {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags == -1 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// What an inherited descriptor must be for [`adopt_inherited`] to take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inherited {
    /// The read end of a pipe (a FIFO opened for reading only).
    PipeRead,
    /// The write end of a pipe.
    PipeWrite,
    /// An eventfd counter.
    EventFd,
    /// A connected `AF_UNIX` stream socket (one end of a socketpair).
    UnixStream,
    /// A listening TCP socket (IPv4 or IPv6).
    TcpListener,
    /// A regular file such as a memfd or a POSIX shared memory object.
    RegularFile,
}

impl Inherited {
    fn name(self) -> &'static str {
        match self {
            Inherited::PipeRead => "the read end of a pipe",
            Inherited::PipeWrite => "the write end of a pipe",
            Inherited::EventFd => "an eventfd",
            Inherited::UnixStream => "a Unix stream socket",
            Inherited::TcpListener => "a listening TCP socket",
            Inherited::RegularFile => "a regular file (memfd or shared memory object)",
        }
    }
}

/// Adopts an inherited descriptor named by number (from an `fd:N` address).
///
/// A number is only a claim, so before taking ownership this checks that the descriptor is
/// one this process inherited and nothing in it owns yet:
/// - it is not stdio (0, 1, 2) and it is open;
/// - `FD_CLOEXEC` is clear. A descriptor survives `exec` only with the flag clear (the parent
///   clears it in the child alone, see [`inherit_in_child`]), while everything Rust std and
///   ipckit open has it set. Adoption sets it, so the same number cannot be adopted twice;
/// - it is of the `expected` kind (`fstat` for pipes, the `/proc/self/fd` link for eventfd).
///
/// The check and the setting of `FD_CLOEXEC` happen under one lock, so two threads adopting
/// the same number cannot both succeed.
///
/// # Errors
///
/// `InvalidInput` naming the descriptor and what is wrong with it; nothing is closed then.
pub(crate) fn adopt_inherited(fd: RawFd, expected: Inherited) -> io::Result<OwnedFd> {
    static ADOPTING: Mutex<()> = Mutex::new(());
    let refuse = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "descriptor {fd} cannot be adopted as {}: {why}",
                expected.name()
            ),
        )
    };
    if fd < 3 {
        return Err(refuse(
            "0, 1 and 2 are stdio, never an inherited channel".into(),
        ));
    }
    let _serial = ADOPTING.lock().unwrap_or_else(|e| e.into_inner());
    if !super::fd::is_open(fd) {
        return Err(refuse(
            "it is not open (is this process the peer it was made for?)".into(),
        ));
    }
    // SAFETY: F_GETFD takes no pointer and only reads the descriptor table; a number that is
    // not open yields EBADF.
    let fd_flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if fd_flags == -1 {
        return Err(refuse(io::Error::last_os_error().to_string()));
    }
    if fd_flags & libc::FD_CLOEXEC != 0 {
        return Err(refuse(
            "it is close-on-exec, so it was not inherited; something in this process already \
             owns it"
                .into(),
        ));
    }
    // SAFETY: F_GETFL takes no pointer; a number that is not open yields EBADF.
    let fl_flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if fl_flags == -1 {
        return Err(refuse(io::Error::last_os_error().to_string()));
    }
    match expected {
        Inherited::PipeRead | Inherited::PipeWrite => {
            // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: `st` is a live, writable stat struct; fstat takes no other pointer.
            if unsafe { libc::fstat(fd, &mut st) } == -1 {
                return Err(refuse(io::Error::last_os_error().to_string()));
            }
            if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
                return Err(refuse("it is not a pipe".into()));
            }
            let want = if expected == Inherited::PipeRead {
                libc::O_RDONLY
            } else {
                libc::O_WRONLY
            };
            if fl_flags & libc::O_ACCMODE != want {
                return Err(refuse("it is open in the other direction".into()));
            }
        }
        Inherited::UnixStream => {
            // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: `st` is a live, writable stat struct; fstat takes no other pointer.
            if unsafe { libc::fstat(fd, &mut st) } == -1 {
                return Err(refuse(io::Error::last_os_error().to_string()));
            }
            if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
                return Err(refuse("it is not a socket".into()));
            }
            // SAFETY: `fd` is open (checked above) and stays open for the call; the borrow
            // ends with it.
            let b = unsafe { BorrowedFd::borrow_raw(fd) };
            let kind = |name| super::socket::int_opt(b, libc::SOL_SOCKET, name);
            if kind(libc::SO_DOMAIN).ok() != Some(libc::AF_UNIX)
                || kind(libc::SO_TYPE).ok() != Some(libc::SOCK_STREAM)
            {
                return Err(refuse("it is not an AF_UNIX stream socket".into()));
            }
        }
        Inherited::TcpListener | Inherited::RegularFile => {
            // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: `st` is a live, writable stat struct; fstat takes no other pointer.
            if unsafe { libc::fstat(fd, &mut st) } == -1 {
                return Err(refuse(io::Error::last_os_error().to_string()));
            }
            let want = if expected == Inherited::TcpListener {
                libc::S_IFSOCK
            } else {
                libc::S_IFREG
            };
            if st.st_mode & libc::S_IFMT != want {
                return Err(refuse("it is of another file type".into()));
            }
            if expected == Inherited::TcpListener {
                // SAFETY: `fd` is open (checked above) and stays open for the call; the
                // borrow ends with it.
                let b = unsafe { BorrowedFd::borrow_raw(fd) };
                let opt = |name| super::socket::int_opt(b, libc::SOL_SOCKET, name);
                let domain = opt(libc::SO_DOMAIN).ok();
                if !matches!(domain, Some(libc::AF_INET | libc::AF_INET6))
                    || opt(libc::SO_TYPE).ok() != Some(libc::SOCK_STREAM)
                    || opt(libc::SO_ACCEPTCONN).ok() != Some(1)
                {
                    return Err(refuse("it is not a listening TCP socket".into()));
                }
            }
        }
        Inherited::EventFd => {
            let link = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .map_err(|e| refuse(format!("cannot read /proc/self/fd/{fd}: {e}")))?;
            if link.as_os_str() != "anon_inode:[eventfd]" {
                return Err(refuse(format!("it is {}", link.display())));
            }
        }
    }
    // SAFETY: ownership of `fd` is ours to take: it is open, it is not stdio, and its
    // FD_CLOEXEC flag is clear, which no descriptor opened by Rust std or ipckit in this
    // process has (they are all opened close-on-exec), so it can only be one this process
    // inherited across exec and has not wrapped yet. We set the flag below before releasing
    // the `ADOPTING` lock, so no other adoption can wrap it a second time. Code outside ipckit
    // that clears FD_CLOEXEC on a descriptor it still owns and then names that number in an
    // address would break this, as would any `from_raw_fd` on a number it does not own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Keep it from leaking into our own children, and mark it owned: a second adoption of
    // this number now fails the FD_CLOEXEC check above.
    if let Err(e) = super::fd::set_cloexec(owned.as_fd(), true) {
        // Leave the descriptor as we found it rather than close it.
        let _ = owned.into_raw_fd();
        return Err(refuse(e.to_string()));
    }
    Ok(owned)
}

/// `access(path, X_OK)`: whether this process may execute `path` (what `execvp` tries).
pub(crate) fn may_execute(path: &std::path::Path) -> bool {
    let Ok(c) = super::pipe::cstr(path) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated string that outlives the call; access takes no other
    // pointer.
    unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
}

/// Waits up to `timeout` for the process behind `pidfd` to exit (`poll` for `POLLIN`);
/// true if it has.
pub(crate) fn pidfd_wait(
    pidfd: std::os::fd::BorrowedFd<'_>,
    timeout: std::time::Duration,
) -> io::Result<bool> {
    let r = super::fd::poll(&[(pidfd, libc::POLLIN)], Some(timeout))?;
    Ok(r != super::fd::Ready::TimedOut)
}

/// Makes `cmd`'s child start with an empty signal mask, whatever the spawning thread has
/// blocked (the standard library resets `SIGPIPE`'s disposition but leaves the mask).
pub(crate) fn empty_signal_mask_in_child(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec; `sigemptyset` and
    // `sigprocmask` are async-signal-safe, it allocates nothing, and `set` is a local the
    // calls initialise and read.
    unsafe {
        cmd.pre_exec(|| {
            let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            if libc::sigemptyset(set.as_mut_ptr()) == -1
                || libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut()) == -1
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
