//! Signals: `sigaction` with an async-signal-safe handler, `pthread_sigmask`, `signalfd`,
//! `kill`, `sigqueue`, and `RLIMIT_SIGPENDING`.
//!
//! # Safety
//!
//! Every `unsafe` block is one libc call whose pointer arguments are live locals (a `sigset_t`,
//! a `sigaction`, a `signalfd_siginfo`, an `rlimit`) of the exact type the call takes.
//!
//! The signal handler, [`on_signal`], is the one piece of code here that runs in signal
//! context. It calls only what POSIX lists as async-signal-safe (`write(2)`) or needs no
//! library at all (atomic loads and stores), takes no lock, allocates nothing, and saves and
//! restores `errno` around its `write`. What it acts on is published through [`SLOTS`] with
//! atomics before the handler is installed and withdrawn only after it is uninstalled.

use super::fd::{cvt, cvt_r, owned};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicUsize, Ordering};

/// `si_code` values the libc crate does not name on every target.
pub(crate) const SI_SIGIO: i32 = -5;
/// `si_code` of `tgkill`/`tkill`.
pub(crate) const SI_TKILL: i32 = -6;

/// Highest signal number Linux has (`_NSIG - 1`).
pub(crate) const NSIG_MAX: i32 = 64;

/// The lowest real-time signal number applications may use (glibc keeps the first two).
pub(crate) fn sigrtmin() -> i32 {
    libc::SIGRTMIN()
}

/// The highest real-time signal number.
pub(crate) fn sigrtmax() -> i32 {
    libc::SIGRTMAX()
}

/// A `sigset_t` holding `sigs`.
pub(crate) fn sigset(sigs: &[i32]) -> io::Result<libc::sigset_t> {
    // SAFETY: an all-zero sigset_t is a valid value; sigemptyset initialises it anyway.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live, writable sigset_t.
    cvt(unsafe { libc::sigemptyset(&mut set) })?;
    for &s in sigs {
        // SAFETY: as above; an invalid number yields EINVAL.
        cvt(unsafe { libc::sigaddset(&mut set, s) })?;
    }
    Ok(set)
}

/// True if `sig` is in `set`.
pub(crate) fn sigset_has(set: &libc::sigset_t, sig: i32) -> bool {
    // SAFETY: `set` is a live, initialised sigset_t.
    unsafe { libc::sigismember(set, sig) == 1 }
}

/// `pthread_sigmask(how, sigs)` on the calling thread; returns the previous mask.
pub(crate) fn thread_mask(how: i32, sigs: &[i32]) -> io::Result<libc::sigset_t> {
    let set = sigset(sigs)?;
    // SAFETY: an all-zero sigset_t is a valid value for the kernel to overwrite.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` and `old` are live sigset_t values.
    let r = unsafe { libc::pthread_sigmask(how, &set, &mut old) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(old)
}

/// The calling thread's signal mask.
pub(crate) fn current_mask() -> io::Result<libc::sigset_t> {
    thread_mask(libc::SIG_BLOCK, &[])
}

/// `signalfd(-1, sigs, SFD_CLOEXEC | SFD_NONBLOCK)`.
pub(crate) fn signalfd(sigs: &[i32]) -> io::Result<OwnedFd> {
    let set = sigset(sigs)?;
    // SAFETY: `set` is a live sigset_t; -1 asks for a new descriptor, which we own at once.
    let fd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })?;
    Ok(owned(fd))
}

/// One `signalfd_siginfo` from a (non-blocking) signalfd: `WouldBlock` when none is pending.
pub(crate) fn read_siginfo(fd: BorrowedFd<'_>) -> io::Result<libc::signalfd_siginfo> {
    // SAFETY: signalfd_siginfo is plain integers; all-zero is a valid value.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let len = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is a live, writable struct of exactly `len` bytes.
    let n = cvt_r(|| unsafe {
        libc::read(
            fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            len,
        )
    })?;
    if n as usize != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "short read from a signalfd",
        ));
    }
    Ok(info)
}

/// `kill(pid, sig)`.
pub(crate) fn kill(pid: u32, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes two integers.
    cvt(unsafe { libc::kill(pid as libc::pid_t, sig) })?;
    Ok(())
}

/// `sigqueue(pid, sig, value)` with an integer payload (`sival_int`).
pub(crate) fn sigqueue(pid: u32, sig: i32, value: i32) -> io::Result<()> {
    // `union sigval` is an int or a pointer; the libc crate declares only the pointer, so the
    // int goes in its low 32 bits, where the kernel's `sival_int` reads it on little-endian
    // targets.
    let val = libc::sigval {
        sival_ptr: value as u32 as usize as *mut libc::c_void,
    };
    // SAFETY: sigqueue takes integers and a sigval by value.
    cvt(unsafe { libc::sigqueue(pid as libc::pid_t, sig, val) })?;
    Ok(())
}

/// The soft `RLIMIT_SIGPENDING` of process `pid` (from `/proc/PID/limits`), or of this
/// process if that cannot be read. `None` means unlimited.
pub(crate) fn sigpending_limit(pid: u32) -> Option<u64> {
    if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/limits")) {
        if let Some(line) = text.lines().find(|l| l.starts_with("Max pending signals")) {
            let soft = line["Max pending signals".len()..]
                .split_whitespace()
                .next();
            return match soft {
                Some("unlimited") => None,
                Some(n) => n.parse().ok(),
                None => None,
            };
        }
    }
    // SAFETY: an all-zero rlimit is a valid value for the kernel to overwrite.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `rl` is a live, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_SIGPENDING, &mut rl) } != 0
        || rl.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(rl.rlim_cur)
}

/// The real user id of this process.
pub(crate) fn getuid() -> u32 {
    // SAFETY: getuid takes nothing and cannot fail.
    unsafe { libc::getuid() }
}

/// What the handler does for one signal number.
struct Slot {
    /// An eventfd the handler adds 1 to, or -1.
    fd: AtomicI32,
    /// A flag the handler sets, or null.
    flag: AtomicPtr<AtomicBool>,
    /// Claimed by an installed handler.
    busy: AtomicBool,
    /// Handlers running right now (on any thread): `restore` waits for zero before the
    /// caller may close the eventfd, so a late handler never writes to a reused number.
    active: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    fd: AtomicI32::new(-1),
    flag: AtomicPtr::new(std::ptr::null_mut()),
    busy: AtomicBool::new(false),
    active: AtomicUsize::new(0),
};

/// One slot per signal number (index 0 unused).
static SLOTS: [Slot; NSIG_MAX as usize + 1] = [EMPTY; NSIG_MAX as usize + 1];

/// The signal handler. Async-signal-safe: atomic loads and stores and `write(2)` only.
extern "C" fn on_signal(sig: libc::c_int, _info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    let Some(slot) = usize::try_from(sig).ok().and_then(|i| SLOTS.get(i)) else {
        return;
    };
    // SeqCst pairs with `restore`: a handler that read the descriptor had counted itself first.
    slot.active.fetch_add(1, Ordering::SeqCst);
    let flag = slot.flag.load(Ordering::SeqCst);
    if !flag.is_null() {
        // SAFETY: a non-null pointer here came from a `&'static AtomicBool` (see `Target`).
        unsafe { &*flag }.store(true, Ordering::SeqCst);
    }
    let fd = slot.fd.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: errno is thread-local; saving and restoring it keeps the interrupted code's
        // value intact across our write.
        let saved = unsafe { *libc::__errno_location() };
        let one = 1u64.to_ne_bytes();
        // SAFETY: write(2) is async-signal-safe; `one` is a live 8-byte buffer. The eventfd is
        // non-blocking, so a saturated counter gives EAGAIN rather than blocking here, and the
        // notification is not lost (the counter is already non-zero).
        unsafe { libc::write(fd, one.as_ptr().cast(), one.len()) };
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = saved };
    }
    slot.active.fetch_sub(1, Ordering::SeqCst);
}

/// What an installed handler acts on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// Add 1 to this eventfd (kept open by the caller for as long as it is installed).
    EventFd(RawFd),
    /// Set this flag.
    Flag(&'static AtomicBool),
}

/// The previous disposition, kept to restore it.
#[derive(Clone, Copy)]
pub(crate) struct OldAction(libc::sigaction);

impl std::fmt::Debug for OldAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OldAction")
            .field("handler", &self.0.sa_sigaction)
            .field("flags", &self.0.sa_flags)
            .finish()
    }
}

impl OldAction {
    /// `SIG_DFL`, `SIG_IGN`, or another handler's address.
    pub(crate) fn handler(&self) -> usize {
        self.0.sa_sigaction
    }
}

/// Installs [`on_signal`] for `sig` with `SA_SIGINFO` (and `SA_RESTART` if asked), blocking
/// `mask` while it runs; returns the previous disposition.
///
/// `AlreadyExists` if ipckit already has a handler installed for `sig`.
pub(crate) fn install(
    sig: i32,
    target: Target,
    restart: bool,
    mask: &[i32],
) -> io::Result<OldAction> {
    let slot = usize::try_from(sig)
        .ok()
        .and_then(|i| SLOTS.get(i))
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    if slot.busy.swap(true, Ordering::AcqRel) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("an ipckit handler for signal {sig} is already installed"),
        ));
    }
    match target {
        Target::EventFd(fd) => slot.fd.store(fd, Ordering::Release),
        Target::Flag(f) => slot
            .flag
            .store(f as *const AtomicBool as *mut AtomicBool, Ordering::Release),
    }
    let r = (|| {
        // SAFETY: an all-zero sigaction is a valid value; every field the kernel reads is set
        // below.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            on_signal;
        sa.sa_sigaction = handler as libc::sighandler_t;
        sa.sa_flags = libc::SA_SIGINFO | if restart { libc::SA_RESTART } else { 0 };
        sa.sa_mask = sigset(mask)?;
        // SAFETY: an all-zero sigaction is a valid value for the kernel to overwrite.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: `sa` and `old` are live sigaction structs; `on_signal` is async-signal-safe
        // and what it reads (the slot) was published above.
        cvt(unsafe { libc::sigaction(sig, &sa, &mut old) })?;
        Ok(OldAction(old))
    })();
    if r.is_err() {
        clear(slot);
    }
    r
}

/// Restores `old` for `sig`, then withdraws what the handler acted on and waits until no
/// handler that may still have read it is running; after this the caller may close the
/// eventfd.
pub(crate) fn restore(sig: i32, old: &OldAction) -> io::Result<()> {
    // SAFETY: `old.0` is a sigaction the kernel returned; the old-action pointer may be null.
    let r = cvt(unsafe { libc::sigaction(sig, &old.0, std::ptr::null_mut()) });
    if let Some(slot) = usize::try_from(sig).ok().and_then(|i| SLOTS.get(i)) {
        clear(slot);
    }
    r.map(|_| ())
}

fn clear(slot: &Slot) {
    slot.fd.store(-1, Ordering::SeqCst);
    slot.flag.store(std::ptr::null_mut(), Ordering::SeqCst);
    // A handler entered before the stores above may still use what they held. Handlers are
    // a few instructions and a `write`; one interrupted on this very thread has finished
    // before we run again, so this never waits on ourselves.
    while slot.active.load(Ordering::SeqCst) != 0 {
        std::thread::yield_now();
    }
    slot.busy.store(false, Ordering::Release);
}
