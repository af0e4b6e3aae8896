//! Signals: a [`Signal`] type that names every Linux signal (real-time ones as `SIGRTMIN+n`),
//! handlers that are async-signal-safe by construction ([`Handler`]), a signalfd-backed source
//! that reads each signal with its siginfo ([`Signals`]), and [`send`] / [`queue`].
//!
//! # Two ways to receive
//!
//! - **[`Signals`]** (preferred): block the signals for the whole process with
//!   [`block_for_process`] at the top of `main`, before any thread starts, then read them from a
//!   signalfd in normal context, blocking, with a timeout, or from epoll/mio/tokio through
//!   [`AsFd`]. Each read gives a [`SigInfo`]: number, sender pid and uid, [`Code`] and the
//!   [`queue`] payload.
//! - **[`Handler`]**: a `sigaction` handler, for a signal that must interrupt the process
//!   even where it is not reading a descriptor. You choose what the handler does from a fixed
//!   set ([`OnSignal`]), each async-signal-safe; your code then runs in normal context.
//!
//! # What a signal handler may call
//!
//! A handler runs between any two instructions of the thread it interrupts, perhaps while that
//! thread holds the allocator's lock, stdout's lock, or is halfway through updating `errno`.
//! It may only call the functions `signal-safety(7)` lists as async-signal-safe: among them
//! `write`, `read`, `kill`, `sigqueue`, `_exit`, `sem_post`, `clock_gettime`, `poll`, and it may
//! load and store lock-free atomics. `printf` (and Rust's `println!`, `format!`, `Box::new`,
//! `Mutex::lock`) is not on the list: it locks the stream and may allocate, so a signal that
//! lands while the interrupted thread holds that lock deadlocks, and one that lands inside
//! `malloc` corrupts the heap. That is why [`Handler`] takes no closure: its handler only
//! sets an atomic flag or adds 1 to an eventfd (one `write`), saving and restoring `errno`.
//!
//! # Standard signals coalesce, real-time signals queue
//!
//! A standard signal (`SIGUSR1`, `SIGTERM`, ...) is one pending bit: sent five times before
//! the receiver reads, it is received once. A real-time signal (`SIGRTMIN` to `SIGRTMAX`) is
//! queued: every [`queue`] call is one delivery, in the order sent, carrying its payload, up to
//! the receiver's `RLIMIT_SIGPENDING` (counted per user); past that, [`queue`] fails with
//! `WouldBlock` and says the queue is full. Among pending signals the kernel delivers the
//! lowest number first.
//!
//! # Examples
//!
//! ```
//! use ipckit::signal::{self, Signal, Signals};
//! use std::time::Duration;
//! # fn main() -> std::io::Result<()> {
//! // Process 1, first thing in main (a doctest is a process of its own, so blocking
//! // signals here touches nothing else):
//! let rt3: Signal = "SIGRTMIN+3".parse()?;
//! signal::block_for_process(&[rt3, Signal::SIGTERM])?;
//! let signals = Signals::new(&[rt3, Signal::SIGTERM])?;
//!
//! // Process 2 (another process in real use; here process 1 signals itself):
//! let pid = std::process::id(); // process 1's pid
//! signal::queue(pid, rt3, 42)?; // carries 42; queued, never coalesced
//!
//! // Process 1
//! let info = signals.read_timeout(Duration::from_secs(10))?;
//! println!("{} from pid {} value {:?}", info.signal, info.pid, info.value);
//! assert_eq!((info.signal, info.value), (rt3, Some(42)));
//! # Ok(()) }
//! ```
//!
//! # References
//!
//! `signal(7)`, `signal-safety(7)`, `sigaction(2)`, `signalfd(2)`, `sigqueue(3)`,
//! `pthread_sigmask(3)`, `getrlimit(2)` (`RLIMIT_SIGPENDING`).

mod handler;

pub use handler::{Disposition, Handler, HandlerBuilder, OnSignal};

use crate::error::invalid;
use crate::sys::{fd as sysfd, signal as sys};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::str::FromStr;
use std::time::Duration;

/// A signal number, checked to be one Linux has (1 to 64).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

/// Standard signal names without the `SIG` prefix, with their numbers on this target.
const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

impl Signal {
    /// `SIGHUP`.
    pub const SIGHUP: Signal = Signal(libc::SIGHUP);
    /// `SIGINT`.
    pub const SIGINT: Signal = Signal(libc::SIGINT);
    /// `SIGQUIT`.
    pub const SIGQUIT: Signal = Signal(libc::SIGQUIT);
    /// `SIGKILL` (cannot be caught, blocked or ignored).
    pub const SIGKILL: Signal = Signal(libc::SIGKILL);
    /// `SIGUSR1`.
    pub const SIGUSR1: Signal = Signal(libc::SIGUSR1);
    /// `SIGUSR2`.
    pub const SIGUSR2: Signal = Signal(libc::SIGUSR2);
    /// `SIGPIPE`.
    pub const SIGPIPE: Signal = Signal(libc::SIGPIPE);
    /// `SIGALRM`.
    pub const SIGALRM: Signal = Signal(libc::SIGALRM);
    /// `SIGTERM`.
    pub const SIGTERM: Signal = Signal(libc::SIGTERM);
    /// `SIGCHLD`.
    pub const SIGCHLD: Signal = Signal(libc::SIGCHLD);
    /// `SIGSTOP` (cannot be caught, blocked or ignored).
    pub const SIGSTOP: Signal = Signal(libc::SIGSTOP);
    /// `SIGWINCH`.
    pub const SIGWINCH: Signal = Signal(libc::SIGWINCH);

    /// The signal with this number.
    ///
    /// # Errors
    ///
    /// `InvalidInput` unless `1 <= n <= 64`.
    pub fn new(n: i32) -> io::Result<Signal> {
        if (1..=sys::NSIG_MAX).contains(&n) {
            Ok(Signal(n))
        } else {
            Err(invalid(format!(
                "{n} is not a signal number (Linux has 1 to {})",
                sys::NSIG_MAX
            )))
        }
    }

    /// `SIGRTMIN+n`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `SIGRTMIN+n` is past `SIGRTMAX`.
    pub fn rt(n: u32) -> io::Result<Signal> {
        let max = (sys::sigrtmax() - sys::sigrtmin()) as u32;
        if n > max {
            return Err(invalid(format!(
                "SIGRTMIN+{n} is past SIGRTMAX (SIGRTMIN+{max})"
            )));
        }
        Ok(Signal(sys::sigrtmin() + n as i32))
    }

    /// `SIGRTMIN` (34 with glibc: the kernel's 32 and 33 are kept by the C library).
    pub fn rtmin() -> Signal {
        Signal(sys::sigrtmin())
    }

    /// `SIGRTMAX` (64).
    pub fn rtmax() -> Signal {
        Signal(sys::sigrtmax())
    }

    /// The signal number.
    pub fn number(self) -> i32 {
        self.0
    }

    /// True for `SIGRTMIN..=SIGRTMAX`: queued, not coalesced.
    pub fn is_realtime(self) -> bool {
        (sys::sigrtmin()..=sys::sigrtmax()).contains(&self.0)
    }

    /// True unless this is `SIGKILL` or `SIGSTOP`, which no process can catch or block.
    pub fn is_catchable(self) -> bool {
        self.0 != libc::SIGKILL && self.0 != libc::SIGSTOP
    }

    /// The name: `SIGTERM`, `SIGRTMIN+3`, `SIGRTMAX`; `SIG32` for a number glibc reserves.
    pub fn name(self) -> String {
        self.to_string()
    }

    /// True for the numbers between the standard signals and `SIGRTMIN` (32 and 33 with
    /// glibc), which the C library uses itself (thread cancellation, `setxid` across threads).
    pub fn is_reserved(self) -> bool {
        self.0 > 31 && self.0 < sys::sigrtmin()
    }

    /// Refuses `SIGKILL`, `SIGSTOP` and the C library's reserved numbers for an operation that
    /// catches or blocks.
    fn check_catchable(self, what: &str) -> io::Result<()> {
        if self.is_reserved() {
            return Err(invalid(format!(
                "{self} cannot be {what}: signals {} to {} are reserved by the C library \
                 (use SIGRTMIN+n)",
                32,
                sys::sigrtmin() - 1
            )));
        }
        if self.is_catchable() {
            Ok(())
        } else {
            Err(invalid(format!(
                "{self} cannot be {what}: the kernel never lets a process catch, block or \
                 ignore SIGKILL or SIGSTOP"
            )))
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((name, _)) = NAMES.iter().find(|(_, n)| *n == self.0) {
            return write!(f, "SIG{name}");
        }
        let (min, max) = (sys::sigrtmin(), sys::sigrtmax());
        if self.0 == max {
            f.write_str("SIGRTMAX")
        } else if self.0 == min {
            f.write_str("SIGRTMIN")
        } else if self.0 > min && self.0 < max {
            write!(f, "SIGRTMIN+{}", self.0 - min)
        } else {
            write!(f, "SIG{}", self.0)
        }
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}({})", self.0)
    }
}

impl FromStr for Signal {
    type Err = io::Error;

    /// Parses `SIGTERM`, `TERM`, `term`, `15`, `SIGRTMIN+3`, `RTMIN+3`, `RTMIN`, `SIGRTMAX-1`.
    fn from_str(s: &str) -> io::Result<Signal> {
        let t = s.trim();
        if let Ok(n) = t.parse::<i32>() {
            return Signal::new(n);
        }
        let up = t.to_ascii_uppercase();
        let bare = up.strip_prefix("SIG").unwrap_or(&up);
        if let Some((_, n)) = NAMES.iter().find(|(name, _)| *name == bare) {
            return Ok(Signal(*n));
        }
        if bare.len() < up.len() {
            if let Ok(n) = bare.parse::<i32>() {
                return Signal::new(n); // SIG32, as Display names the glibc-reserved numbers
            }
        }
        let bad = || {
            invalid(format!(
                "unknown signal '{s}' (expected a name like SIGUSR1 or USR1, SIGRTMIN+n, or a \
                 number from 1 to {})",
                sys::NSIG_MAX
            ))
        };
        let (min, max) = (sys::sigrtmin(), sys::sigrtmax());
        let (base, rest) = if let Some(r) = bare.strip_prefix("RTMIN") {
            (min, r)
        } else if let Some(r) = bare.strip_prefix("RTMAX") {
            (max, r)
        } else {
            return Err(bad());
        };
        let n = if rest.is_empty() {
            base
        } else if let Some(k) = rest.strip_prefix('+') {
            base + k.parse::<i32>().map_err(|_| bad())?
        } else if let Some(k) = rest.strip_prefix('-') {
            base - k.parse::<i32>().map_err(|_| bad())?
        } else {
            return Err(bad());
        };
        if n < min || n > max {
            return Err(invalid(format!(
                "'{s}' is outside SIGRTMIN..SIGRTMAX ({min} to {max})"
            )));
        }
        Ok(Signal(n))
    }
}

/// Why a signal was sent (`si_code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `SI_USER`: `kill(2)`.
    User,
    /// `SI_QUEUE`: `sigqueue(3)`, with a payload.
    Queue,
    /// `SI_KERNEL`: sent by the kernel.
    Kernel,
    /// `SI_TIMER`: a POSIX timer expired.
    Timer,
    /// `SI_MESGQ`: a message arrived on an empty POSIX queue.
    Mesgq,
    /// `SI_ASYNCIO`: asynchronous I/O completed.
    Asyncio,
    /// `SI_SIGIO`: queued SIGIO.
    Sigio,
    /// `SI_TKILL`: `tgkill(2)` / `tkill(2)`.
    Tkill,
    /// Another, signal-specific code (e.g. `CLD_EXITED` for `SIGCHLD`).
    Other(i32),
}

impl Code {
    fn from_raw(c: i32) -> Code {
        match c {
            libc::SI_USER => Code::User,
            libc::SI_QUEUE => Code::Queue,
            libc::SI_KERNEL => Code::Kernel,
            libc::SI_TIMER => Code::Timer,
            libc::SI_MESGQ => Code::Mesgq,
            libc::SI_ASYNCIO => Code::Asyncio,
            sys::SI_SIGIO => Code::Sigio,
            sys::SI_TKILL => Code::Tkill,
            other => Code::Other(other),
        }
    }

    /// The C name: `SI_USER`, `SI_QUEUE`, ...; `OTHER(n)` for a signal-specific code.
    pub fn name(self) -> String {
        match self {
            Code::User => "SI_USER".into(),
            Code::Queue => "SI_QUEUE".into(),
            Code::Kernel => "SI_KERNEL".into(),
            Code::Timer => "SI_TIMER".into(),
            Code::Mesgq => "SI_MESGQ".into(),
            Code::Asyncio => "SI_ASYNCIO".into(),
            Code::Sigio => "SI_SIGIO".into(),
            Code::Tkill => "SI_TKILL".into(),
            Code::Other(n) => format!("OTHER({n})"),
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// One received signal and what the kernel says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigInfo {
    /// The signal.
    pub signal: Signal,
    /// The sender's pid (0 from the kernel).
    pub pid: u32,
    /// The sender's real uid.
    pub uid: u32,
    /// Why it was sent.
    pub code: Code,
    /// The payload (`sival_int`) when the code carries one (`SI_QUEUE`, `SI_TIMER`,
    /// `SI_MESGQ`), else `None`.
    pub value: Option<i32>,
}

impl SigInfo {
    fn from_raw(i: &libc::signalfd_siginfo) -> SigInfo {
        let code = Code::from_raw(i.ssi_code);
        SigInfo {
            signal: Signal(i.ssi_signo as i32),
            pid: i.ssi_pid,
            uid: i.ssi_uid,
            code,
            value: matches!(code, Code::Queue | Code::Timer | Code::Mesgq).then_some(i.ssi_int),
        }
    }
}

/// Blocks `sigs` in the calling thread, so that they wait for a [`Signals`] reader instead of
/// running their default action. Call it first thing in `main`, before any thread starts:
/// threads inherit their creator's mask, so every thread then has them blocked, and the kernel
/// can hand a process-directed signal to no thread but the signalfd.
///
/// # Errors
///
/// `InvalidInput` for `SIGKILL`, `SIGSTOP` or a reserved number ([`Signal::is_reserved`]);
/// the `pthread_sigmask` error.
#[doc(alias = "pthread_sigmask")]
#[doc(alias = "sigprocmask")]
pub fn block_for_process(sigs: &[Signal]) -> io::Result<()> {
    for s in sigs {
        s.check_catchable("blocked")?;
    }
    let nums: Vec<i32> = sigs.iter().map(|s| s.0).collect();
    sys::thread_mask(libc::SIG_BLOCK, &nums).map(|_| ())
}

/// A signalfd: the signals it was made for, read in normal context with their [`SigInfo`].
///
/// The signals must be blocked (see [`block_for_process`]); a signal some thread leaves
/// unblocked is delivered there, by its default action or handler, and never reaches the
/// descriptor.
#[derive(Debug)]
pub struct Signals {
    fd: OwnedFd,
    set: Vec<Signal>,
}

impl Signals {
    /// A signalfd for `sigs`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an empty list, `SIGKILL` or `SIGSTOP`, or a signal the calling thread
    /// has not blocked (call [`block_for_process`] first); the `signalfd` error.
    #[doc(alias = "signalfd")]
    pub fn new(sigs: &[Signal]) -> io::Result<Signals> {
        if sigs.is_empty() {
            return Err(invalid("Signals::new needs at least one signal"));
        }
        let mask = sys::current_mask()?;
        for s in sigs {
            s.check_catchable("read from a signalfd")?;
            if !sys::sigset_has(&mask, s.0) {
                return Err(invalid(format!(
                    "{s} is not blocked in this thread, so it would never reach the signalfd: \
                     call signal::block_for_process at the top of main, before any thread starts"
                )));
            }
        }
        let nums: Vec<i32> = sigs.iter().map(|s| s.0).collect();
        Ok(Signals {
            fd: sys::signalfd(&nums)?,
            set: sigs.to_vec(),
        })
    }

    /// The signals this source reads.
    pub fn signals(&self) -> &[Signal] {
        &self.set
    }

    /// Waits for the next signal.
    ///
    /// # Errors
    ///
    /// The `poll` or `read` error.
    pub fn read(&self) -> io::Result<SigInfo> {
        loop {
            if let Some(i) = self.try_read()? {
                return Ok(i);
            }
            sysfd::poll(&[(self.fd.as_fd(), libc::POLLIN)], None)?;
        }
    }

    /// Waits at most `timeout` for the next signal.
    ///
    /// # Errors
    ///
    /// `TimedOut` if none came; the `poll` or `read` error.
    pub fn read_timeout(&self, timeout: Duration) -> io::Result<SigInfo> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(i) = self.try_read()? {
                return Ok(i);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if sysfd::poll(&[(self.fd.as_fd(), libc::POLLIN)], Some(left))?
                == sysfd::Ready::TimedOut
            {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "timed out waiting for a signal",
                ));
            }
        }
    }

    /// The next pending signal, or `None` without waiting.
    ///
    /// # Errors
    ///
    /// The `read` error.
    pub fn try_read(&self) -> io::Result<Option<SigInfo>> {
        match sys::read_siginfo(self.fd.as_fd()) {
            Ok(i) => Ok(Some(SigInfo::from_raw(&i))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Readable (`POLLIN`) while a signal is pending; the descriptor is non-blocking, so register
/// it with epoll, mio or tokio's `AsyncFd` and call [`Signals::try_read`] when it is ready.
impl AsFd for Signals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Sends `sig` to process `pid` with `kill(2)` (`SI_USER`, no payload). A standard signal sent
/// again before the first is received is merged with it.
///
/// # Errors
///
/// `NotFound` (`ESRCH`) for no such process, `PermissionDenied` (`EPERM`).
#[doc(alias = "kill")]
pub fn send(pid: u32, sig: Signal) -> io::Result<()> {
    check_pid(pid)?;
    sys::kill(pid, sig.0)
}

/// Sends `sig` to process `pid` with `sigqueue(3)` (`SI_QUEUE`), carrying `value`. A
/// real-time signal is queued: each call is one delivery, in order.
///
/// # Errors
///
/// `WouldBlock` with "signal queue full (RLIMIT_SIGPENDING = N)" when the receiver's user
/// already has its limit of queued signals pending; `NotFound` (`ESRCH`), `PermissionDenied`.
#[doc(alias = "sigqueue")]
pub fn queue(pid: u32, sig: Signal, value: i32) -> io::Result<()> {
    check_pid(pid)?;
    sys::sigqueue(pid, sig.0, value).map_err(|e| {
        if e.raw_os_error() == Some(libc::EAGAIN) {
            let limit = match sys::sigpending_limit(pid) {
                Some(n) => n.to_string(),
                None => "unlimited".into(),
            };
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "signal queue full (RLIMIT_SIGPENDING = {limit}): {sig} to pid {pid} was not \
                     sent; the receiver must read some first"
                ),
            )
        } else {
            e
        }
    })
}

/// Refuses pid 0 and pids that `kill` would read as a process group or "everyone".
fn check_pid(pid: u32) -> io::Result<()> {
    if pid == 0 || pid > i32::MAX as u32 {
        return Err(invalid(format!(
            "{pid} is not a process id (process groups and broadcast are not sent to)"
        )));
    }
    Ok(())
}

/// The calling process's real uid, as a [`SigInfo`] from it reports it.
pub fn current_uid() -> u32 {
    sys::getuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in 1..=64 {
            let s = Signal::new(n).unwrap();
            let back: Signal = s.name().parse().unwrap();
            assert_eq!(back, s, "{}", s.name());
        }
        assert_eq!("TERM".parse::<Signal>().unwrap(), Signal::SIGTERM);
        assert_eq!("sigusr1".parse::<Signal>().unwrap(), Signal::SIGUSR1);
        assert_eq!("15".parse::<Signal>().unwrap(), Signal::SIGTERM);
        let rt3: Signal = "RTMIN+3".parse().unwrap();
        assert_eq!(rt3, Signal::rt(3).unwrap());
        assert_eq!(rt3.to_string(), "SIGRTMIN+3");
        assert!(rt3.is_realtime() && !Signal::SIGUSR1.is_realtime());
        assert_eq!(
            "SIGRTMAX-1".parse::<Signal>().unwrap().number(),
            Signal::rtmax().number() - 1
        );
        for bad in [
            "", "SIGFOO", "0", "65", "-1", "RTMIN+99", "RTMAX+1", "RTMIN-1", "RTMIN+x",
        ] {
            assert!(bad.parse::<Signal>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn codes_have_c_names() {
        assert_eq!(Code::from_raw(libc::SI_QUEUE).name(), "SI_QUEUE");
        assert_eq!(Code::from_raw(libc::SI_USER).name(), "SI_USER");
        assert_eq!(Code::from_raw(libc::SI_KERNEL).name(), "SI_KERNEL");
    }
}
