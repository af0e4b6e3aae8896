//! [`Handler`]: a `sigaction` handler that does one async-signal-safe thing ([`OnSignal`]),
//! installed by a [`HandlerBuilder`]; see the [module docs](super), "What a signal handler may
//! call".

use super::Signal;
use crate::error::invalid;
use crate::eventfd::EventFd;
use crate::sys::{fd as sysfd, signal as sys};
use crate::{Notify, Wait};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// What an installed [`Handler`] does when its signal arrives ([`Handler::on_signal`]). Each
/// is async-signal-safe; there is deliberately no closure (see the module docs, "What a
/// signal handler may call").
#[derive(Debug, Clone, Copy)]
pub enum OnSignal {
    /// Add 1 to an eventfd the handler owns: wait with [`Handler::wait`] and friends, or poll
    /// [`Handler`]'s descriptor. Arrivals between two waits add up
    /// ([`HandlerBuilder::notify`]).
    Notify,
    /// Set this flag to `true`; your code checks (and clears) it ([`HandlerBuilder::flag`]).
    Flag(&'static AtomicBool),
}

/// Installs a [`Handler`]: `HandlerBuilder::new(sig)`, then what it does (`.notify()`, the
/// default, or `.flag(&FLAG)`) and how (`.restart(..)`, `.mask(..)`), then `.install()`.
///
/// # Examples
///
/// ```
/// use ipckit::signal::{HandlerBuilder, Signal};
/// use std::sync::atomic::{AtomicBool, Ordering};
/// # fn main() -> std::io::Result<()> {
/// static STOP: AtomicBool = AtomicBool::new(false);
/// let h = HandlerBuilder::new(Signal::SIGUSR1).flag(&STOP).install()?;
/// ipckit::signal::send(std::process::id(), Signal::SIGUSR1)?;
/// while !STOP.load(Ordering::SeqCst) {
///     std::thread::yield_now();
/// }
/// drop(h);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until install()"]
pub struct HandlerBuilder {
    signal: Signal,
    on_signal: OnSignal,
    restart: bool,
    mask: Vec<Signal>,
}

impl HandlerBuilder {
    /// A handler for `sig` that notifies ([`OnSignal::Notify`]), without `SA_RESTART`, and
    /// blocks no other signal while it runs.
    pub fn new(sig: Signal) -> HandlerBuilder {
        HandlerBuilder {
            signal: sig,
            on_signal: OnSignal::Notify,
            restart: false,
            mask: Vec::new(),
        }
    }

    /// The handler adds 1 to a counter of its own ([`OnSignal::Notify`], the default).
    pub fn notify(mut self) -> Self {
        self.on_signal = OnSignal::Notify;
        self
    }

    /// The handler sets `flag` to `true` ([`OnSignal::Flag`]).
    pub fn flag(mut self, flag: &'static AtomicBool) -> Self {
        self.on_signal = OnSignal::Flag(flag);
        self
    }

    /// `SA_RESTART`: restart system calls the signal interrupts instead of failing them with
    /// `EINTR`. Off by default, so a blocking call returns and your code sees the signal.
    pub fn restart(mut self, restart: bool) -> Self {
        self.restart = restart;
        self
    }

    /// Signals blocked while the handler runs (`sa_mask`), besides the signal itself.
    pub fn mask(mut self, mask: &[Signal]) -> Self {
        self.mask = mask.to_vec();
        self
    }

    /// Installs the handler.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for `SIGKILL` or `SIGSTOP` (never a silent no-op) or a number the C
    /// library reserves ([`Signal::is_reserved`]), in the signal or the mask;
    /// `AlreadyExists` if a `Handler` for the signal is already installed; the `eventfd` or
    /// `sigaction` error.
    #[doc(alias = "sigaction")]
    pub fn install(self) -> io::Result<Handler> {
        let sig = self.signal;
        sig.check_catchable("caught")?;
        for m in &self.mask {
            m.check_catchable("masked")?;
        }
        let (counter, target) = match self.on_signal {
            OnSignal::Notify => {
                let ev = EventFd::new(Wait::Block)?;
                let raw = std::os::fd::AsRawFd::as_raw_fd(&ev.as_fd());
                sysfd::set_nonblocking(ev.as_fd(), true)?;
                (Some(ev), sys::Target::EventFd(raw))
            }
            OnSignal::Flag(f) => (None, sys::Target::Flag(f)),
        };
        let mask: Vec<i32> = self.mask.iter().map(|s| s.0).collect();
        let old = sys::install(sig.0, target, self.restart, &mask)?;
        Ok(Handler {
            signal: sig,
            on_signal: self.on_signal,
            old,
            counter,
        })
    }
}

/// What a signal did before a [`Handler`] replaced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// `SIG_DFL`: the default action.
    Default,
    /// `SIG_IGN`: ignored.
    Ignore,
    /// Another handler, at this address.
    Handler(usize),
}

/// A `sigaction` handler, installed with `SA_SIGINFO` by a [`HandlerBuilder`], that does one
/// async-signal-safe thing ([`OnSignal`]). Dropping it restores the previous disposition.
///
/// One `Handler` per signal at a time in a process.
///
/// # Examples
///
/// ```
/// use ipckit::signal::{self, HandlerBuilder, Signal};
/// # fn main() -> std::io::Result<()> {
/// let h = HandlerBuilder::new(Signal::SIGUSR2).notify().install()?;
/// signal::send(std::process::id(), Signal::SIGUSR2)?;
/// assert!(h.wait_timeout(std::time::Duration::from_secs(5))? >= 1);
/// drop(h); // SIGUSR2 is back to its previous disposition
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Handler {
    signal: Signal,
    on_signal: OnSignal,
    old: sys::OldAction,
    // Declared after `old` but dropped explicitly after the restore, see `Drop`.
    counter: Option<EventFd>,
}

impl Handler {
    /// The signal this handler catches.
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// What it does when the signal arrives.
    pub fn on_signal(&self) -> OnSignal {
        self.on_signal
    }

    /// What the signal did before; restored on drop.
    pub fn previous(&self) -> Disposition {
        match self.old.handler() {
            libc::SIG_DFL => Disposition::Default,
            libc::SIG_IGN => Disposition::Ignore,
            h => Disposition::Handler(h),
        }
    }

    fn counter(&self) -> io::Result<&EventFd> {
        self.counter
            .as_ref()
            .ok_or_else(|| invalid("this handler sets a flag; it has no counter to wait on"))
    }

    /// Waits for the signal; returns how many arrivals were counted since the last wait.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an [`OnSignal::Flag`] handler; the `poll`/`read` error.
    pub fn wait(&self) -> io::Result<u64> {
        self.counter()?.wait()
    }

    /// Like [`Handler::wait`], for at most `timeout` (`TimedOut` then).
    ///
    /// # Errors
    ///
    /// As [`Handler::wait`], and `TimedOut`.
    pub fn wait_timeout(&self, timeout: Duration) -> io::Result<u64> {
        self.counter()?.wait_timeout(timeout)
    }

    /// The arrivals counted since the last wait, without waiting (`WouldBlock` if none).
    ///
    /// # Errors
    ///
    /// As [`Handler::wait`], and `WouldBlock`.
    pub fn try_wait(&self) -> io::Result<u64> {
        self.counter()?.try_wait()
    }
}

/// The counter's eventfd ([`OnSignal::Notify`]): readable once the signal has arrived, for
/// epoll, mio or tokio; then call [`Handler::try_wait`].
///
/// # Panics
///
/// For an [`OnSignal::Flag`] handler.
impl AsFd for Handler {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.counter
            .as_ref()
            .expect("an OnSignal::Flag handler has no descriptor")
            .as_fd()
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        // Restore first, then close the counter the handler wrote to.
        let _ = sys::restore(self.signal.0, &self.old);
        drop(self.counter.take());
    }
}
