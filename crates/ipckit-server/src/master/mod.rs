//! The master process: it owns the listening sockets and the status board, starts the
//! workers, replaces those that die, and turns signals into actions with nginx's meanings.
//!
//! One thread, one epoll: a signalfd (TERM, INT, QUIT, HUP, USR1, blocked in `main` before
//! any thread starts) and one pidfd per worker, so a worker's death is an epoll event like any
//! other (no `SIGCHLD` handler) and is answered at once by a replacement in the same slot.
//!
//! | signal | action |
//! |---|---|
//! | TERM, INT | fast: TERM to every worker, reap them (KILL after 3 s), exit 0 |
//! | QUIT | graceful: QUIT to every worker, wait up to `graceful_timeout_ms`, KILL stragglers, exit 0 |
//! | HUP | reload: re-read the config file, start a new generation, QUIT the old once it is up |
//! | USR1 | reopen the error log, and have the workers reopen theirs |
//!
//! The master exits 0 after a shutdown it was asked for, as nginx's does (a process manager
//! treats that as a clean stop), and 1 when it cannot start or fails.
//!
//! Listening sockets: in [`AcceptMode::Exclusive`] one socket per address that every worker
//! watches with `EPOLLEXCLUSIVE`; in [`AcceptMode::ReusePort`] one `SO_REUSEPORT` socket per
//! address and worker index. Either way the master keeps every socket open for as long as it
//! is in use, so a worker that retires (and closes its copies) never drops a queued
//! connection: the socket and its queue live on in the master, and the next worker with that
//! index accepts from it.
//!
//! Others find a running master through a state file, `$XDG_RUNTIME_DIR` (or
//! `/tmp/ipckit-serve-<euid>`)`/ipckit-serve-<first port>.json`, 0600, created exclusively and removed on exit; it names
//! the master's pid, its status board (`/ipckit-serve-<pid>`, a POSIX shared memory object
//! recorded in ipckit's registry, so `ipckit clean` removes it after a `kill -9` of the
//! master) and the live workers. [`status`] reads both.
//!
//! The parts: [`run`] and the loop here; `reload` (HUP), `child` (starting and tracking a
//! worker process), `listeners`, `log` (the error log), `state` (the state file) and
//! `report` (`serve --status`).

mod child;
mod listeners;
mod log;
mod reload;
mod report;
mod state;

pub use report::{print_status, status};
pub use state::{clean_stale, running, state_dir, state_path, StaleAction, State, StateWorker};

use crate::config::{AcceptMode, Config};
use crate::status::StatusBoard;
use child::{describe, Worker};
use ipckit::epoll::{Epoll, Events, Interest};
use ipckit::shutdown::{Action, SignalMap, REOPEN_LOGS};
use ipckit::signal::{self, Signal, Signals};
use listeners::Listeners;
use log::Log;
use state::{ensure_state_dir, StateFile};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Command-line values that override the config file, kept so a reload re-applies them to
/// the file it re-reads.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen` (replaces the file's addresses when not empty).
    pub listen: Vec<SocketAddr>,
    /// `--workers`.
    pub workers: Option<usize>,
    /// `--root`.
    pub root: Option<PathBuf>,
    /// `--accept`.
    pub accept: Option<AcceptMode>,
}

impl Overrides {
    /// Writes the overrides over `c`.
    pub fn apply(&self, c: &mut Config) {
        if !self.listen.is_empty() {
            c.listen = self.listen.clone();
        }
        if let Some(w) = self.workers {
            c.workers = w;
        }
        if let Some(r) = &self.root {
            c.root = Some(r.clone());
        }
        if let Some(a) = self.accept {
            c.accept = a;
        }
    }
}

/// A reload waiting for its new generation to come up.
struct Reload {
    old_generation: u64,
    old_config: Config,
    old_listeners: Listeners,
    deadline: Instant,
}

/// A replacement to start later (a worker that died right after starting: do not spin).
struct Respawn {
    due: Instant,
    idx: usize,
    slot: usize,
    died: Instant,
    what: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Stopping { fast: bool, deadline: Instant },
}

const SIGNALS_TOKEN: u64 = 0;
const FIRST_WORKER_TOKEN: u64 = 16;
/// How long a fast shutdown waits for workers before KILL.
const FAST_GRACE: Duration = Duration::from_secs(3);
/// How long a reload waits for its new generation before giving up on it.
const RELOAD_WAIT: Duration = Duration::from_secs(5);
/// A worker that dies sooner than this after starting, twice in a row in one slot, is
/// replaced after [`RESPAWN_BACKOFF`] (a crash loop must not spin the master).
const MIN_LIFE: Duration = Duration::from_millis(200);
const RESPAWN_BACKOFF: Duration = Duration::from_millis(500);

struct Master {
    config: Config,
    config_path: Option<PathBuf>,
    overrides: Overrides,
    exe: PathBuf,
    log: Log,
    epoll: Epoll,
    signals: Signals,
    map: SignalMap,
    listeners: Listeners,
    /// Listeners of older generations, dropped once no worker of theirs is left.
    retired_listeners: Vec<(u64, Listeners)>,
    board: StatusBoard,
    board_name: String,
    state_file: StateFile,
    generation: u64,
    last_generation: u64,
    workers: HashMap<u64, Worker>,
    next_token: u64,
    reload: Option<Reload>,
    respawns: Vec<Respawn>,
    /// When a worker of each slot last died soon after starting.
    quick_deaths: HashMap<usize, Instant>,
    phase: Phase,
}

/// Runs the master with `config` until it is told to stop; returns the exit status.
/// `config_path` is re-read on HUP.
pub fn run(config: Config, config_path: Option<PathBuf>) -> i32 {
    run_with(config, config_path, Overrides::default())
}

/// As [`run`], re-applying `overrides` (the command line) to the config file on every reload.
pub fn run_with(config: Config, config_path: Option<PathBuf>, overrides: Overrides) -> i32 {
    let mut m = match Master::start(config, config_path, overrides) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ipckit serve: {e}");
            return 1;
        }
    };
    let code = match m.serve() {
        Ok(c) => c,
        Err(e) => {
            m.log.line(&format!("fatal: {e}; stopping the workers"));
            m.kill_all();
            1
        }
    };
    m.finish();
    code
}

impl Master {
    fn start(
        config: Config,
        config_path: Option<PathBuf>,
        overrides: Overrides,
    ) -> io::Result<Master> {
        config.check()?;
        let map = SignalMap::nginx();
        let signals = Signals::new(&map.signals())?;
        let log = Log::open(config.error_log.clone())?;
        let exe = std::env::current_exe()
            .map_err(|e| io::Error::new(e.kind(), format!("finding this program: {e}")))?;
        let listeners = Listeners::build(&config, None)?;
        ensure_state_dir()?;
        let state_file = StateFile::new(state_path(
            listeners.local_addrs().first().map_or(0, SocketAddr::port),
        ));
        let pid = std::process::id();
        let board_name = format!("/ipckit-serve-{pid}");
        let board = StatusBoard::create_named(&board_name, 2 * crate::config::MAX_WORKERS)?;
        let epoll = Epoll::new()?;
        epoll.add(&signals, SIGNALS_TOKEN, Interest::READABLE)?;
        let mut m = Master {
            config,
            config_path,
            overrides,
            exe,
            log,
            epoll,
            signals,
            map,
            listeners,
            retired_listeners: Vec::new(),
            board,
            board_name,
            state_file,
            generation: 1,
            last_generation: 1,
            workers: HashMap::new(),
            next_token: FIRST_WORKER_TOKEN,
            reload: None,
            respawns: Vec::new(),
            quick_deaths: HashMap::new(),
            phase: Phase::Running,
        };
        let state = m.state();
        m.state_file.create(&state)?;
        for idx in 0..m.config.workers {
            if let Err(e) = m.spawn(idx, idx, 1) {
                m.kill_all();
                m.finish();
                return Err(e);
            }
        }
        let addrs: Vec<String> = m
            .listeners
            .local_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
        m.log.line(&format!(
            "listening on {} ({} accept), {} workers, status {}, state {}",
            addrs.join(", "),
            m.config.accept,
            m.config.workers,
            m.board_name,
            m.state_file.path().display()
        ));
        m.write_state();
        Ok(m)
    }

    /// Starts worker `idx` of generation `generation` in board slot `slot`.
    fn spawn(&mut self, idx: usize, slot: usize, generation: u64) -> io::Result<u32> {
        let w = Worker::spawn(
            &self.exe,
            &self.listeners,
            &self.board,
            &self.config,
            idx,
            slot,
            generation,
        )?;
        let pid = w.child.id();
        let token = self.next_token;
        self.next_token += 1;
        self.epoll.add(&w.pidfd, token, Interest::READABLE)?;
        self.workers.insert(token, w);
        Ok(pid)
    }

    fn serve(&mut self) -> io::Result<i32> {
        let mut events = Events::with_capacity(64);
        loop {
            if let Phase::Stopping { .. } = self.phase {
                if self.workers.is_empty() {
                    return Ok(0);
                }
            }
            let timeout = self.next_timeout();
            self.epoll.wait_timeout(&mut events, timeout)?;
            let tokens: Vec<u64> = events.iter().map(|e| e.token()).collect();
            for t in tokens {
                if t == SIGNALS_TOKEN {
                    self.on_signals()?;
                } else if self.workers.contains_key(&t) {
                    self.on_exit(t);
                }
            }
            self.on_timers();
        }
    }

    fn next_timeout(&self) -> Duration {
        let now = Instant::now();
        let mut t = Duration::from_secs(1);
        if self.reload.is_some() || self.workers.values().any(|w| w.replacing.is_some()) {
            t = t.min(Duration::from_millis(1));
        }
        for r in &self.respawns {
            t = t.min(r.due.saturating_duration_since(now));
        }
        if let Phase::Stopping { deadline, .. } = self.phase {
            t = t.min(deadline.saturating_duration_since(now));
        }
        for w in self.workers.values() {
            if let (Some(q), false) = (w.quit_at, w.killed) {
                let d = q + Duration::from_millis(self.config.graceful_timeout_ms);
                t = t.min(d.saturating_duration_since(now));
            }
        }
        t
    }

    fn on_signals(&mut self) -> io::Result<()> {
        while let Some(si) = self.signals.try_read()? {
            let from = if si.pid == 0 {
                String::new()
            } else {
                format!(" from pid {}", si.pid)
            };
            match self.map.get(si.signal) {
                Some(Action::Fast) => {
                    self.log
                        .line(&format!("{}{from}: fast shutdown", si.signal));
                    self.stop(true);
                }
                Some(Action::Graceful) => {
                    self.log
                        .line(&format!("{}{from}: graceful shutdown", si.signal));
                    self.stop(false);
                }
                Some(Action::Reload) => {
                    self.log.line(&format!("{}{from}: reload", si.signal));
                    self.start_reload();
                }
                Some(Action::Custom(REOPEN_LOGS)) => {
                    if let Err(e) = self.log.reopen() {
                        self.log.line(&format!("reopening the log: {e}"));
                    }
                    self.log
                        .line(&format!("{}{from}: logs reopened", si.signal));
                    self.signal_workers(Signal::SIGUSR1, |_| true);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn signal_workers(&mut self, sig: Signal, which: impl Fn(&Worker) -> bool) {
        for w in self.workers.values() {
            if which(w) {
                let _ = signal::send(w.child.id(), sig);
            }
        }
    }

    fn stop(&mut self, fast: bool) {
        if let Phase::Stopping { fast: true, .. } = self.phase {
            return;
        }
        let (sig, wait) = if fast {
            (Signal::SIGTERM, FAST_GRACE)
        } else {
            (
                Signal::SIGQUIT,
                Duration::from_millis(self.config.graceful_timeout_ms),
            )
        };
        let deadline = match self.phase {
            Phase::Stopping { deadline, .. } if !fast => deadline,
            _ => Instant::now() + wait,
        };
        self.phase = Phase::Stopping { fast, deadline };
        self.respawns.clear();
        if let Some(r) = self.reload.take() {
            // Both generations stop now; the old one's sockets go when its workers have.
            self.retired_listeners
                .push((r.old_generation, r.old_listeners));
        }
        self.signal_workers(sig, |_| true);
        let now = Instant::now();
        for w in self.workers.values_mut() {
            w.quit_at.get_or_insert(now);
        }
        self.write_state();
    }

    fn on_exit(&mut self, token: u64) {
        let died = Instant::now();
        let Some(mut w) = self.workers.remove(&token) else {
            return;
        };
        let _ = self.epoll.delete(&w.pidfd);
        let pid = w.child.id();
        let status = w.child.wait();
        let what = format!(
            "worker {pid} (slot {}, generation {}) {}",
            w.slot,
            w.generation,
            describe(&status)
        );
        let unexpected = self.phase == Phase::Running
            && w.quit_at.is_none()
            && (w.generation == self.generation
                || self
                    .reload
                    .as_ref()
                    .is_some_and(|r| r.old_generation == w.generation));
        if !unexpected {
            self.log.line(&what);
        } else if w.started.elapsed() < MIN_LIFE
            && self
                .quick_deaths
                .insert(w.slot, died)
                .is_some_and(|prev| died - prev < 2 * RESPAWN_BACKOFF)
        {
            // The second quick death in this slot in a row: a crash loop, not a kill.
            self.log.line(&format!(
                "{what} {} ms after starting; replacing it in {} ms",
                w.started.elapsed().as_millis(),
                RESPAWN_BACKOFF.as_millis()
            ));
            self.respawns.push(Respawn {
                due: died + RESPAWN_BACKOFF,
                idx: w.idx,
                slot: w.slot,
                died,
                what,
            });
        } else {
            let g = w.generation;
            self.replace(w.idx, w.slot, g, died, &what);
        }
        self.drop_unused_listeners();
        self.write_state();
    }

    fn replace(&mut self, idx: usize, slot: usize, generation: u64, died: Instant, what: &str) {
        // An old-generation worker dying during a reload is replaced from the old listeners.
        let old = self
            .reload
            .as_ref()
            .is_some_and(|r| r.old_generation == generation);
        if old {
            if let Some(r) = self.reload.as_mut() {
                std::mem::swap(&mut self.listeners, &mut r.old_listeners);
                std::mem::swap(&mut self.config, &mut r.old_config);
            }
        }
        let r = self.spawn(idx, slot, generation);
        if let Ok(pid) = r {
            if let Some(w) = self.workers.values_mut().find(|w| w.child.id() == pid) {
                w.replacing = Some(died);
            }
        }
        if old {
            if let Some(r) = self.reload.as_mut() {
                std::mem::swap(&mut self.listeners, &mut r.old_listeners);
                std::mem::swap(&mut self.config, &mut r.old_config);
            }
        }
        match r {
            Ok(pid) => self.log.line(&format!(
                "{what}; replaced by worker {pid} in {:.2} ms",
                died.elapsed().as_secs_f64() * 1e3
            )),
            Err(e) => {
                self.log
                    .line(&format!("{what}; replacing it failed: {e}; retrying"));
                self.respawns.push(Respawn {
                    due: Instant::now() + RESPAWN_BACKOFF,
                    idx,
                    slot,
                    died,
                    what: what.to_owned(),
                });
            }
        }
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        if self.workers.values().any(|w| w.replacing.is_some()) {
            let snap = self.board.snapshot();
            let mut up = Vec::new();
            for w in self.workers.values_mut() {
                let published = snap
                    .get(w.slot)
                    .is_some_and(|s| s.pid == u64::from(w.child.id()));
                if let (Some(died), true) = (w.replacing, published) {
                    w.replacing = None;
                    up.push((w.child.id(), w.slot, died.elapsed()));
                } else if w.replacing.is_some_and(|d| d.elapsed() > RELOAD_WAIT) {
                    // It never published its pid: stop polling for it (it is still watched).
                    w.replacing = None;
                }
            }
            for (pid, slot, d) in up {
                self.log.line(&format!(
                    "worker {pid} (slot {slot}) is serving, {:.2} ms after its predecessor's death",
                    d.as_secs_f64() * 1e3
                ));
            }
        }
        if let Some(r) = &self.reload {
            if self.generation_up() {
                self.finish_reload();
            } else if now >= r.deadline {
                self.abort_reload();
            }
        }
        if self.phase == Phase::Running {
            let due: Vec<Respawn> = {
                let (due, later) = std::mem::take(&mut self.respawns)
                    .into_iter()
                    .partition(|r| r.due <= now);
                self.respawns = later;
                due
            };
            let generation = self.generation;
            let any = !due.is_empty();
            for r in due {
                self.replace(r.idx, r.slot, generation, r.died, &r.what);
            }
            if any {
                self.write_state();
            }
        }
        let grace = Duration::from_millis(self.config.graceful_timeout_ms);
        let stop_deadline = match self.phase {
            Phase::Stopping { deadline, .. } => Some(deadline),
            Phase::Running => None,
        };
        let mut killed = Vec::new();
        for w in self.workers.values_mut() {
            let Some(q) = w.quit_at else {
                continue;
            };
            let late = stop_deadline.map_or(now >= q + grace, |d| now >= d);
            if late && !w.killed {
                let _ = w.child.kill();
                w.killed = true;
                killed.push(w.child.id());
            }
        }
        if !killed.is_empty() {
            self.log
                .line(&format!("deadline passed: killed workers {killed:?}"));
        }
    }

    /// Drops the listeners of generations that have no worker left.
    fn drop_unused_listeners(&mut self) {
        let live: Vec<u64> = self.workers.values().map(|w| w.generation).collect();
        self.retired_listeners.retain(|(g, _)| live.contains(g));
    }

    fn kill_all(&mut self) {
        for w in self.workers.values_mut() {
            let _ = w.child.kill();
        }
        for (_, mut w) in self.workers.drain() {
            let _ = w.child.wait();
        }
    }

    fn state(&self) -> State {
        let mut workers: Vec<StateWorker> = self
            .workers
            .values()
            .map(|w| StateWorker {
                slot: w.slot,
                pid: w.child.id(),
                generation: w.generation,
                retiring: w.quit_at.is_some(),
            })
            .collect();
        workers.sort_by_key(|w| w.slot);
        State {
            master_pid: std::process::id(),
            master_start: ipckit::process::start_time(std::process::id()).unwrap_or(0),
            status: self.board_name.clone(),
            listen: self.listeners.local_addrs(),
            accept: self.config.accept,
            generation: self.generation,
            workers,
        }
    }

    /// Rewrites the state file; a failure is logged.
    fn write_state(&mut self) {
        if !self.state_file.is_written() {
            return;
        }
        if let Err(e) = self.state_file.write(&self.state()) {
            self.log.line(&format!(
                "writing {}: {e}",
                self.state_file.path().display()
            ));
        }
    }

    /// Leaves nothing behind: the state file goes (the board is unlinked when dropped).
    fn finish(&mut self) {
        self.state_file.remove();
        // Every worker is gone: the board's totals are final (a slot reused by a replacement
        // counts from zero again, so a replaced worker's requests are not in them).
        let requests = self
            .board
            .snapshot()
            .iter()
            .fold(0u64, |t, s| t.saturating_add(s.requests));
        self.log.line(&format!(
            "exiting; the board counts {requests} requests served"
        ));
    }
}
