//! Graceful shutdown: a [`Coordinator`] reads the signals of a [`SignalMap`] on a watcher
//! thread (through [`signal::Signals`], a signalfd) and turns them into the pattern large
//! services follow: stop taking new work, let in-flight work finish within a deadline, tell
//! child processes to stop and reap them, then exit with a conventional status.
//!
//! # What each signal does
//!
//! A [`SignalMap`] maps a signal to an [`Action`]. [`SignalMap::default`]: `SIGTERM` and
//! `SIGINT` are [`Action::Graceful`], `SIGHUP` is [`Action::Reload`]. [`SignalMap::nginx`]:
//! `SIGTERM`/`SIGINT` fast, `SIGQUIT` graceful, `SIGHUP` reload, `SIGUSR1` reopen logs
//! (`Custom(REOPEN_LOGS)`).
//!
//! - **Graceful**: [`Coordinator::accepting`] turns false and [`Coordinator::begin`] returns
//!   `None`; the same signal is sent to every adopted child; [`Coordinator::wait_drained`]
//!   returns once every [`WorkGuard`] is dropped and the children have exited.
//! - **Fast**: as graceful, but [`Coordinator::wait_drained`] returns at once, without waiting
//!   for in-flight work.
//! - **Reload** and **Custom(n)**: an [`Event`] for [`Coordinator::next_event`]; the service
//!   keeps running.
//! - **A second terminating signal** (graceful or fast) while stopping forces exit: adopted
//!   children are killed (`SIGKILL`) and reaped, and the process exits with `128 + signo` from
//!   the watcher thread, without running destructors ([`CoordinatorBuilder::force_exit`] turns this off,
//!   leaving [`Outcome::Forced`] for `wait_drained` to return).
//!
//! # Exit status convention
//!
//! [`Outcome::exit_status`]: `0` after a clean graceful drain; `128 + signo` (143 for
//! `SIGTERM`, 130 for `SIGINT`), as a shell reports a process killed by that signal, when the
//! stop was fast, forced, or the drain deadline passed with work still in flight.
//!
//! # Signal masks
//!
//! The signals must be blocked in every thread, or the kernel may run their default action
//! (terminate) in a thread that has them unblocked: call [`Coordinator::block`] (or
//! [`signal::block_for_process`]) first thing in `main`, before any thread starts.
//!
//! # Examples
//!
//! ```
//! use ipckit::shutdown::{Coordinator, SignalMap};
//! use std::time::Duration;
//! # fn main() -> std::io::Result<()> {
//! let map = SignalMap::default();
//! Coordinator::block(&map)?; // first thing in main
//! let c = Coordinator::new(map)?;
//! // A child inherits the blocked mask; `configure_child` starts it with nothing blocked,
//! // so `sleep` dies of the SIGTERM passed on at the stop instead of lasting to the deadline.
//! let mut cmd = std::process::Command::new("sleep");
//! c.configure_child(cmd.arg("1000"));
//! c.adopt(cmd.spawn()?);
//! while let Some(_work) = c.begin() {
//!     // ... serve one request; dropping `_work` marks it finished ...
//! #   // What `kill -TERM <pid>` would do from outside; a doctest is a process of its own,
//! #   // so its signals are its own. next_event returns once the stop has begun.
//! #   ipckit::signal::send(std::process::id(), ipckit::signal::Signal::SIGTERM)?;
//! #   assert_eq!(c.next_event_timeout(Duration::from_secs(10)), None);
//! }
//! // SIGTERM came: no work is in flight; `sleep` is reaped here.
//! let outcome = c.wait_drained(Duration::from_secs(10));
//! # assert_eq!(outcome.exit_status(), 0, "{outcome:?}");
//! std::process::exit(outcome.exit_status());
//! # }
//! ```
//!
//! # References
//!
//! `signal(7)`, `signalfd(2)`, `waitpid(2)`; nginx "Controlling nginx"; systemd.kill(5).

use crate::signal::{self, SigInfo, Signal, Signals};
use std::collections::VecDeque;
use std::io;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a signal asks the service to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Stop taking new work, finish in-flight work within a deadline, then exit 0.
    Graceful,
    /// Stop now: in-flight work is abandoned; exit `128 + signo`.
    Fast,
    /// Reload configuration; keep running.
    Reload,
    /// An application-defined action, reported as [`Event::Custom`]; keep running.
    Custom(u32),
}

/// The [`Action::Custom`] number [`SignalMap::nginx`] gives `SIGUSR1` (reopen log files).
pub const REOPEN_LOGS: u32 = 1;

/// Which [`Action`] each signal triggers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalMap {
    entries: Vec<(Signal, Action)>,
}

impl Default for SignalMap {
    /// `SIGTERM` and `SIGINT` graceful, `SIGHUP` reload.
    fn default() -> SignalMap {
        SignalMap::empty()
            .set(Signal::SIGTERM, Action::Graceful)
            .set(Signal::SIGINT, Action::Graceful)
            .set(Signal::SIGHUP, Action::Reload)
    }
}

impl SignalMap {
    /// No signals mapped.
    pub fn empty() -> SignalMap {
        SignalMap {
            entries: Vec::new(),
        }
    }

    /// nginx's map: `SIGTERM`/`SIGINT` fast, `SIGQUIT` graceful, `SIGHUP` reload, `SIGUSR1`
    /// `Custom(REOPEN_LOGS)`.
    pub fn nginx() -> SignalMap {
        SignalMap::empty()
            .set(Signal::SIGTERM, Action::Fast)
            .set(Signal::SIGINT, Action::Fast)
            .set(Signal::SIGQUIT, Action::Graceful)
            .set(Signal::SIGHUP, Action::Reload)
            .set(Signal::SIGUSR1, Action::Custom(REOPEN_LOGS))
    }

    /// Maps `sig` to `action`, replacing what it had.
    pub fn set(mut self, sig: Signal, action: Action) -> SignalMap {
        self.entries.retain(|(s, _)| *s != sig);
        self.entries.push((sig, action));
        self
    }

    /// The action for `sig`, if mapped.
    pub fn get(&self, sig: Signal) -> Option<Action> {
        self.entries
            .iter()
            .find(|(s, _)| *s == sig)
            .map(|(_, a)| *a)
    }

    /// The mapped signals.
    pub fn signals(&self) -> Vec<Signal> {
        self.entries.iter().map(|(s, _)| *s).collect()
    }
}

/// A non-terminating signal's report, from [`Coordinator::next_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An [`Action::Reload`] signal arrived.
    Reload(SigInfo),
    /// An [`Action::Custom`] signal arrived.
    Custom(u32, SigInfo),
}

/// Where the service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Taking work.
    Running,
    /// A graceful stop: no new work, in-flight work finishing.
    Draining(Signal),
    /// A fast stop: no new work, in-flight work abandoned.
    Stopping(Signal),
    /// A second terminating signal arrived while stopping.
    Forced(Signal),
}

/// How [`Coordinator::wait_drained`] ended; [`Outcome::exit_status`] gives the status to exit
/// with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A graceful stop completed: all work finished and all children exited.
    Drained(Signal),
    /// A fast stop (work abandoned).
    Fast(Signal),
    /// A second terminating signal forced the stop (only with [`CoordinatorBuilder::force_exit`] off).
    Forced(Signal),
    /// The deadline passed with this much work still in flight.
    DeadlineExpired {
        /// The signal that started the stop.
        signal: Signal,
        /// Work guards still held.
        in_flight: usize,
    },
}

impl Outcome {
    /// `0` for [`Outcome::Drained`], `128 + signo` otherwise (see the module docs).
    pub fn exit_status(self) -> i32 {
        match self {
            Outcome::Drained(_) => 0,
            Outcome::Fast(s) | Outcome::Forced(s) | Outcome::DeadlineExpired { signal: s, .. } => {
                128 + s.number()
            }
        }
    }
}

/// How a [`Coordinator`] behaves: what a [`CoordinatorBuilder`] holds.
#[derive(Debug, Clone)]
struct Options {
    /// See [`CoordinatorBuilder::force_exit`].
    force_exit: bool,
    /// See [`CoordinatorBuilder::child_grace`].
    child_grace: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            force_exit: true,
            child_grace: Duration::from_secs(5),
        }
    }
}

/// Makes a [`Coordinator`] that behaves otherwise than [`Coordinator::new`]'s:
/// `CoordinatorBuilder::new(map).force_exit(false).child_grace(d).create()`.
///
/// # Examples
///
/// ```
/// use ipckit::shutdown::{Coordinator, CoordinatorBuilder, SignalMap};
/// use std::time::Duration;
/// # fn main() -> std::io::Result<()> {
/// let map = SignalMap::default();
/// Coordinator::block(&map)?; // first thing in main
/// let c = CoordinatorBuilder::new(map)
///     .force_exit(false) // a second signal is reported as Outcome::Forced
///     .child_grace(Duration::from_secs(2))
///     .create()?;
/// # drop(c);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until create()"]
pub struct CoordinatorBuilder {
    map: SignalMap,
    opts: Options,
}

impl CoordinatorBuilder {
    /// A coordinator for `map`, with the defaults: forced exit on, 5 s of grace for children.
    pub fn new(map: SignalMap) -> CoordinatorBuilder {
        CoordinatorBuilder {
            map,
            opts: Options::default(),
        }
    }

    /// On a second terminating signal while stopping, kill and reap the children and exit the
    /// process with `128 + signo` from the watcher thread. On by default; off, the stop is
    /// reported as [`Outcome::Forced`] instead.
    pub fn force_exit(mut self, on: bool) -> Self {
        self.opts.force_exit = on;
        self
    }

    /// How long children get to exit after being signalled before they are sent `SIGKILL`,
    /// when the coordinator is dropped or forced (5 s by default).
    /// [`Coordinator::wait_drained`] uses what is left of its own deadline instead.
    pub fn child_grace(mut self, grace: Duration) -> Self {
        self.opts.child_grace = grace;
        self
    }

    /// Starts the coordinator's watcher thread.
    ///
    /// # Errors
    ///
    /// As [`Signals::new`]: `InvalidInput` for an empty map or a signal not blocked (call
    /// [`Coordinator::block`] first); the thread-spawn error.
    pub fn create(self) -> io::Result<Coordinator> {
        Coordinator::with_options(self.map, self.opts)
    }
}

struct State {
    phase: Phase,
    in_flight: usize,
    events: VecDeque<Event>,
    children: Vec<Child>,
    exited: Vec<(u32, ExitStatus)>,
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
    opts: Options,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Turns signals into a graceful (or fast) shutdown; see the module docs.
pub struct Coordinator {
    inner: Arc<Inner>,
    map: SignalMap,
    watcher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("map", &self.map)
            .field("phase", &self.phase())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// One unit of in-flight work; dropping it marks the work finished.
#[must_use = "the work counts as in flight only while the guard lives"]
pub struct WorkGuard {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WorkGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkGuard")
    }
}

impl Drop for WorkGuard {
    fn drop(&mut self) {
        let mut st = self.inner.lock();
        st.in_flight -= 1;
        drop(st);
        self.inner.changed.notify_all();
    }
}

impl Coordinator {
    /// Blocks `map`'s signals in the calling thread ([`signal::block_for_process`]): call it
    /// first thing in `main`, before any thread starts.
    ///
    /// # Errors
    ///
    /// As [`signal::block_for_process`].
    pub fn block(map: &SignalMap) -> io::Result<()> {
        signal::block_for_process(&map.signals())
    }

    /// A coordinator for `map` with the defaults, its watcher thread started; see
    /// [`CoordinatorBuilder`] for the others.
    ///
    /// # Errors
    ///
    /// As [`CoordinatorBuilder::create`].
    pub fn new(map: SignalMap) -> io::Result<Coordinator> {
        CoordinatorBuilder::new(map).create()
    }

    fn with_options(map: SignalMap, opts: Options) -> io::Result<Coordinator> {
        let signals = Signals::new(&map.signals())?;
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                phase: Phase::Running,
                in_flight: 0,
                events: VecDeque::new(),
                children: Vec::new(),
                exited: Vec::new(),
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            opts,
        });
        let (i, m) = (inner.clone(), map.clone());
        let watcher = std::thread::Builder::new()
            .name("ipckit-shutdown".into())
            .spawn(move || watch(&i, &m, &signals))?;
        Ok(Coordinator {
            inner,
            map,
            watcher: Some(watcher),
        })
    }

    /// The signal map.
    pub fn map(&self) -> &SignalMap {
        &self.map
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.inner.lock().phase
    }

    /// True until a terminating signal arrives.
    pub fn accepting(&self) -> bool {
        self.phase() == Phase::Running
    }

    /// Work guards held now.
    pub fn in_flight(&self) -> usize {
        self.inner.lock().in_flight
    }

    /// Starts one unit of work: a guard to hold while doing it, or `None` once stopping (the
    /// check and the count are one step, so no work slips in after the drain began).
    pub fn begin(&self) -> Option<WorkGuard> {
        let mut st = self.inner.lock();
        if st.phase != Phase::Running {
            return None;
        }
        st.in_flight += 1;
        Some(WorkGuard {
            inner: self.inner.clone(),
        })
    }

    /// Prepares `cmd` so that its child starts with no signal blocked. A program that
    /// blocked its stop signals first thing (as [`Coordinator::new`] does, and
    /// `signal::block_for_process`) has them blocked in every thread, and a child inherits
    /// that mask across `exec`: spawned as it is, it would not die of the signal a stop sends
    /// it, and would be killed only at the drain deadline. Call this on the command of every
    /// child you [`adopt`](Coordinator::adopt) that does not read signals itself.
    pub fn configure_child(&self, cmd: &mut std::process::Command) {
        crate::sys::proc::empty_signal_mask_in_child(cmd);
    }

    /// Hands a child process to the coordinator (spawn it with
    /// [`configure_child`](Coordinator::configure_child)): it is sent the terminating signal
    /// when the stop begins (`SIGKILL` if forced) and reaped by [`Coordinator::wait_drained`] or on
    /// drop (a child still running then is sent `SIGTERM`, given [`CoordinatorBuilder::child_grace`],
    /// then `SIGKILL`), so it never lingers as a zombie. A child adopted after the stop began
    /// is signalled at once.
    pub fn adopt(&self, child: Child) {
        let mut st = self.inner.lock();
        match st.phase {
            Phase::Running => {}
            Phase::Draining(s) | Phase::Stopping(s) => {
                let _ = signal::send(child.id(), s);
            }
            Phase::Forced(_) => {
                let _ = signal::send(child.id(), Signal::SIGKILL);
            }
        }
        st.children.push(child);
    }

    /// Pids of adopted children not yet reaped.
    pub fn children(&self) -> Vec<u32> {
        self.inner.lock().children.iter().map(Child::id).collect()
    }

    /// Adopted children reaped so far, with how they exited.
    pub fn reaped(&self) -> Vec<(u32, ExitStatus)> {
        self.inner.lock().exited.clone()
    }

    /// Starts a stop as if a signal mapped to `action` had arrived (`sig` is what children are
    /// sent and what [`Outcome::exit_status`] reports). Reload and custom actions queue an
    /// event whose [`SigInfo`] names this process as the sender (`SI_USER`).
    pub fn trigger(&self, sig: Signal, action: Action) {
        let info = SigInfo {
            signal: sig,
            pid: std::process::id(),
            uid: signal::current_uid(),
            code: signal::Code::User,
            value: None,
        };
        apply(&self.inner, action, info);
    }

    /// Waits for a reload or custom event, as long as it takes. `None` once a stop has begun
    /// and no event is left.
    pub fn next_event(&self) -> Option<Event> {
        self.next_event_until(None)
    }

    /// A reload or custom event if one is waiting, without waiting. `None` if none is.
    pub fn try_next_event(&self) -> Option<Event> {
        self.next_event_timeout(Duration::ZERO)
    }

    /// Waits at most `timeout` for a reload or custom event. `None` if none came, or once a
    /// stop has begun and no event is left.
    pub fn next_event_timeout(&self, timeout: Duration) -> Option<Event> {
        self.next_event_until(Instant::now().checked_add(timeout))
    }

    fn next_event_until(&self, until: Option<Instant>) -> Option<Event> {
        let mut st = self.inner.lock();
        loop {
            if let Some(e) = st.events.pop_front() {
                return Some(e);
            }
            if st.phase != Phase::Running {
                return None;
            }
            st = match until {
                None => self
                    .inner
                    .changed
                    .wait(st)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.inner
                        .changed
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Blocks until a terminating signal (or [`Coordinator::trigger`]) starts a stop; returns
    /// the phase it began.
    pub fn wait_stop(&self) -> Phase {
        let mut st = self.inner.lock();
        while st.phase == Phase::Running {
            st = self
                .inner
                .changed
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
        st.phase
    }

    /// The phase, if a stop has begun; `None` while running. Never waits.
    pub fn try_wait_stop(&self) -> Option<Phase> {
        self.wait_stop_timeout(Duration::ZERO)
    }

    /// Waits at most `timeout` for a stop to begin; the phase it began, or `None` if none did.
    pub fn wait_stop_timeout(&self, timeout: Duration) -> Option<Phase> {
        let until = Instant::now().checked_add(timeout);
        let mut st = self.inner.lock();
        while st.phase == Phase::Running {
            let left = match until {
                Some(u) => u.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return None;
            }
            st = self
                .inner
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Some(st.phase)
    }

    /// Waits for the stop to begin, then, within `deadline` from the call: for a graceful stop,
    /// for in-flight work to finish; in every case, for adopted children to exit (those still
    /// running at the deadline are sent `SIGKILL`), reaping them all.
    pub fn wait_drained(&self, deadline: Duration) -> Outcome {
        let until = Instant::now() + deadline;
        self.wait_stop();
        let mut st = self.inner.lock();
        loop {
            if let Phase::Draining(_) = st.phase {
                let left = until.saturating_duration_since(Instant::now());
                if st.in_flight > 0 && !left.is_zero() {
                    st = self
                        .inner
                        .changed
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    continue;
                }
            }
            break;
        }
        let (phase, in_flight) = (st.phase, st.in_flight);
        drop(st);
        reap(&self.inner, until);
        match phase {
            Phase::Draining(s) if in_flight == 0 => Outcome::Drained(s),
            Phase::Draining(s) => Outcome::DeadlineExpired {
                signal: s,
                in_flight,
            },
            Phase::Stopping(s) => Outcome::Fast(s),
            Phase::Forced(s) => Outcome::Forced(s),
            Phase::Running => unreachable!("wait_stop returned"),
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        // No zombies: whatever is left is told to stop, given its grace, then killed.
        let st = self.inner.lock();
        for c in &st.children {
            let _ = signal::send(c.id(), Signal::SIGTERM);
        }
        drop(st);
        reap(&self.inner, Instant::now() + self.inner.opts.child_grace);
    }
}

/// The watcher thread: reads signals until the coordinator is dropped.
fn watch(inner: &Inner, map: &SignalMap, signals: &Signals) {
    while !inner.stop.load(Ordering::SeqCst) {
        match signals.read_timeout(Duration::from_millis(50)) {
            Ok(info) => {
                if let Some(a) = map.get(info.signal) {
                    apply(inner, a, info);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Applies one action.
fn apply(inner: &Inner, action: Action, info: SigInfo) {
    let sig = info.signal;
    let mut st = inner.lock();
    match action {
        Action::Reload => st.events.push_back(Event::Reload(info)),
        Action::Custom(n) => st.events.push_back(Event::Custom(n, info)),
        Action::Graceful | Action::Fast => match st.phase {
            Phase::Running => {
                st.phase = if action == Action::Graceful {
                    Phase::Draining(sig)
                } else {
                    Phase::Stopping(sig)
                };
                for c in &st.children {
                    let _ = signal::send(c.id(), sig);
                }
            }
            Phase::Draining(_) | Phase::Stopping(_) | Phase::Forced(_) => {
                st.phase = Phase::Forced(sig);
                for c in &st.children {
                    let _ = signal::send(c.id(), Signal::SIGKILL);
                }
                if inner.opts.force_exit {
                    for c in &mut st.children {
                        let _ = c.wait();
                    }
                    std::process::exit(128 + sig.number());
                }
            }
        },
    }
    drop(st);
    inner.changed.notify_all();
}

/// Reaps adopted children until `until`, then kills and reaps what is left.
fn reap(inner: &Inner, until: Instant) {
    loop {
        let mut st = inner.lock();
        let State {
            children, exited, ..
        } = &mut *st;
        children.retain_mut(|c| match c.try_wait() {
            Ok(Some(status)) => {
                exited.push((c.id(), status));
                false
            }
            Ok(None) => true,
            Err(_) => false, // not ours to wait for any more
        });
        if children.is_empty() {
            return;
        }
        if Instant::now() >= until {
            for mut c in std::mem::take(children) {
                let _ = c.kill();
                if let Ok(status) = c.wait() {
                    exited.push((c.id(), status));
                }
            }
            return;
        }
        drop(st);
        std::thread::sleep(Duration::from_millis(5));
    }
}
