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

use crate::config::{AcceptMode, Config};
use crate::status::StatusBoard;
use crate::worker::WorkerSpec;
use ipckit::epoll::{Epoll, Events, Interest};
use ipckit::shutdown::{Action, SignalMap, REOPEN_LOGS};
use ipckit::signal::{self, Signal, Signals};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// What the state file holds (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// The master's pid.
    pub master_pid: u32,
    /// The master's start time (clock ticks since boot), so a reused pid is not taken for it.
    pub master_start: u64,
    /// The status board's shared memory name.
    pub status: String,
    /// The addresses served.
    pub listen: Vec<SocketAddr>,
    /// How accepting is shared.
    pub accept: AcceptMode,
    /// The current generation (1 at start, one more per reload).
    pub generation: u64,
    /// The live workers.
    pub workers: Vec<StateWorker>,
}

/// One worker in the state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateWorker {
    /// Its slot in the status board.
    pub slot: usize,
    /// Its pid.
    pub pid: u32,
    /// Its generation.
    pub generation: u64,
    /// True once it was told to retire (QUIT).
    pub retiring: bool,
}

/// Where state files live: `$XDG_RUNTIME_DIR` if it is a directory of ours closed to others,
/// else the first of `/tmp/ipckit-serve-<euid>` and its numbered alternatives (`.1` to `.8`)
/// that is, or can be made (0700), a directory of ours closed to others, then
/// `~/.cache/ipckit/ipckit-serve-<euid>` ([`ipckit::fs::private_dir_candidates`],
/// [`ipckit::fs::private_dir`]): a name another user planted in the shared `/tmp` is
/// reported on stderr and bypassed, and `serve --status` and `clean` walk the same list and
/// find the same directory. `$IPCKIT_STATE_BASE` replaces `/tmp` (tests use it). If every
/// candidate is taken, the first is returned and creating state there fails with the reason.
pub fn state_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
            if d.is_dir() && ipckit::fs::not_private(&d).is_none() {
                return d;
            }
        }
        let candidates = ipckit::fs::private_dir_candidates("ipckit-serve");
        ipckit::fs::private_dir(&candidates, true).unwrap_or_else(|_| candidates[0].clone())
    })
    .clone()
}

/// This process's effective uid (the owner of `/proc/self`).
fn euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

/// [`state_dir`], created 0700 if missing, and checked to be ours and closed to others.
fn ensure_state_dir() -> io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let d = state_dir();
    match std::fs::DirBuilder::new().mode(0o700).create(&d) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", d.display()))),
    }
    let md = std::fs::symlink_metadata(&d)?;
    if !md.is_dir() || md.uid() != euid() || md.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a directory of ours closed to others",
                d.display()
            ),
        ));
    }
    Ok(d)
}

/// The state file of a master whose first address has this port.
pub fn state_path(port: u16) -> PathBuf {
    state_dir().join(format!("ipckit-serve-{port}.json"))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The error log: a file (append) or stderr; reopened on USR1.
struct Log {
    path: Option<PathBuf>,
    file: Option<File>,
}

impl Log {
    fn open(path: Option<PathBuf>) -> io::Result<Log> {
        let file = match &path {
            Some(p) => Some(open_log(p)?),
            None => None,
        };
        Ok(Log { path, file })
    }

    fn line(&mut self, msg: &str) {
        let t = now_ns() / 1_000_000;
        let s = t / 1000;
        let (y, mo, d) = civil_date(s / 86400);
        let text = format!(
            "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}.{:03} ipckit serve master[{}]: {msg}\n",
            (s / 3600) % 24,
            (s / 60) % 60,
            s % 60,
            t % 1000,
            std::process::id()
        );
        match &mut self.file {
            Some(f) => {
                let _ = f.write_all(text.as_bytes());
            }
            None => {
                let _ = io::stderr().write_all(text.as_bytes());
            }
        }
    }

    fn reopen(&mut self) -> io::Result<()> {
        if let Some(p) = &self.path {
            self.file = Some(open_log(p)?);
        }
        Ok(())
    }
}

/// The UTC calendar date of a day number since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days after the epoch).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + u64::from(m <= 2), m, d)
}

fn open_log(p: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(p)
        .map_err(|e| io::Error::new(e.kind(), format!("error log {}: {e}", p.display())))
}

/// The listen backlog: `net.core.somaxconn` (the kernel's cap), else nginx's 511.
fn backlog() -> i32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|n: &i32| *n > 0)
        .unwrap_or(511)
}

/// The listening sockets of one configuration: per address, one socket (exclusive) or one
/// per worker index (reuseport).
#[derive(Debug)]
struct Listeners {
    mode: AcceptMode,
    by_addr: Vec<(SocketAddr, Vec<OwnedFd>)>,
}

impl Listeners {
    /// Sockets for `c`, reusing (duplicating) those of `old` for addresses it already has.
    fn build(c: &Config, old: Option<&Listeners>) -> io::Result<Listeners> {
        let per_addr = match c.accept {
            AcceptMode::Exclusive => 1,
            AcceptMode::ReusePort => c.workers,
        };
        let reuseport = c.accept == AcceptMode::ReusePort;
        let mut by_addr = Vec::new();
        for &a in &c.listen {
            let kept: &[OwnedFd] = old
                .and_then(|o| o.by_addr.iter().find(|(x, _)| *x == a))
                .map_or(&[], |(_, v)| v.as_slice());
            let mut fds = Vec::with_capacity(per_addr);
            for i in 0..per_addr {
                fds.push(match kept.get(i) {
                    Some(fd) => fd.try_clone()?,
                    None => ipckit::net::tcp_listener(a, reuseport, backlog())?,
                });
            }
            by_addr.push((a, fds));
        }
        Ok(Listeners {
            mode: c.accept,
            by_addr,
        })
    }

    /// The sockets worker `idx` accepts from.
    fn for_worker(&self, idx: usize) -> Vec<BorrowedFd<'_>> {
        self.by_addr
            .iter()
            .map(|(_, v)| match self.mode {
                AcceptMode::Exclusive => v[0].as_fd(),
                AcceptMode::ReusePort => v[idx % v.len()].as_fd(),
            })
            .collect()
    }

    /// The bound addresses (port 0 resolved).
    fn local_addrs(&self) -> Vec<SocketAddr> {
        self.by_addr
            .iter()
            .map(|(a, v)| {
                v.first()
                    .and_then(|fd| fd.try_clone().ok())
                    .and_then(|fd| std::net::TcpListener::from(fd).local_addr().ok())
                    .unwrap_or(*a)
            })
            .collect()
    }
}

struct Worker {
    child: Child,
    pidfd: OwnedFd,
    idx: usize,
    slot: usize,
    generation: u64,
    started: Instant,
    quit_at: Option<Instant>,
    killed: bool,
    /// For a replacement: when its predecessor's death was seen, until it publishes its pid.
    replacing: Option<Instant>,
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
    state_path: PathBuf,
    state_written: bool,
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
        let state_path = state_path(listeners.local_addrs().first().map_or(0, SocketAddr::port));
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
            state_path,
            state_written: false,
            generation: 1,
            last_generation: 1,
            workers: HashMap::new(),
            next_token: FIRST_WORKER_TOKEN,
            reload: None,
            respawns: Vec::new(),
            quick_deaths: HashMap::new(),
            phase: Phase::Running,
        };
        m.create_state()?;
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
            m.state_path.display()
        ));
        m.write_state();
        Ok(m)
    }

    /// Starts worker `idx` of generation `generation` in board slot `slot`.
    fn spawn(&mut self, idx: usize, slot: usize, generation: u64) -> io::Result<u32> {
        let mut fds = self.listeners.for_worker(idx);
        let spec = WorkerSpec {
            listeners: fds.iter().map(AsRawFd::as_raw_fd).collect(),
            status_fd: self.board.as_fd().as_raw_fd(),
            slot,
            generation,
            config: self.config.clone(),
            // Workers are started from this, the master's only thread: PR_SET_PDEATHSIG
            // fires when the forking thread ends, which is when the master does.
            master_pid: Some(std::process::id()),
        };
        fds.push(self.board.as_fd());
        let json = serde_json::to_string(&spec).map_err(io::Error::other)?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(["serve", "--worker"])
            .env(WorkerSpec::ENV, json)
            .stdin(Stdio::null());
        ipckit::pipe::inherit_only(&mut cmd, &fds);
        let mut child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("starting a worker ({}): {e}", self.exe.display()),
            )
        })?;
        let pid = child.id();
        let pidfd = match ipckit::process::pidfd(pid) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let token = self.next_token;
        self.next_token += 1;
        self.epoll.add(&pidfd, token, Interest::READABLE)?;
        self.workers.insert(
            token,
            Worker {
                child,
                pidfd,
                idx,
                slot,
                generation,
                started: Instant::now(),
                quit_at: None,
                killed: false,
                replacing: None,
            },
        );
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
            self.epoll.wait(&mut events, Some(timeout))?;
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

    /// HUP: a new config (or the same one), a new generation, the old one retired once the
    /// new one is up.
    fn start_reload(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        if self.reload.is_some() {
            self.log.line("reload already in progress: ignored");
            return;
        }
        let mut new = match &self.config_path {
            Some(p) => match Config::load(p) {
                Ok(c) => c,
                Err(e) => {
                    self.log
                        .line(&format!("reload failed, keeping the running config: {e}"));
                    return;
                }
            },
            None => self.config.clone(),
        };
        self.overrides.apply(&mut new);
        if let Err(e) = new.check() {
            self.log
                .line(&format!("reload failed, keeping the running config: {e}"));
            return;
        }
        if new.accept != self.config.accept {
            self.log.line(&format!(
                "reload failed, keeping the running config: changing accept from {} to {} needs a restart",
                self.config.accept, new.accept
            ));
            return;
        }
        let free = self.board.slots() - self.workers.len();
        if new.workers > free {
            self.log.line(&format!(
                "reload failed, keeping the running config: {} workers do not fit beside the {} running",
                new.workers,
                self.workers.len()
            ));
            return;
        }
        let listeners = match Listeners::build(&new, Some(&self.listeners)) {
            Ok(l) => l,
            Err(e) => {
                self.log
                    .line(&format!("reload failed, keeping the running config: {e}"));
                return;
            }
        };
        if new.error_log != self.config.error_log {
            match Log::open(new.error_log.clone()) {
                Ok(l) => {
                    self.log.line("switching to the new error log");
                    self.log = l;
                }
                Err(e) => self.log.line(&format!("keeping the error log: {e}")),
            }
        }
        // Replacements still waiting are moot: the new generation has every index.
        self.respawns.clear();
        let old_listeners = std::mem::replace(&mut self.listeners, listeners);
        let old_config = std::mem::replace(&mut self.config, new);
        let old_generation = self.generation;
        // Never reuse a number, even one a failed reload took.
        self.last_generation += 1;
        self.generation = self.last_generation;
        self.reload = Some(Reload {
            old_generation,
            old_config,
            old_listeners,
            deadline: Instant::now() + RELOAD_WAIT,
        });
        let generation = self.generation;
        for idx in 0..self.config.workers {
            let Some(slot) = self.free_slot() else {
                break;
            };
            if let Err(e) = self.spawn(idx, slot, generation) {
                self.log
                    .line(&format!("starting generation {generation}: {e}"));
                self.abort_reload();
                return;
            }
        }
        self.write_state();
    }

    fn free_slot(&self) -> Option<usize> {
        let used: Vec<usize> = self.workers.values().map(|w| w.slot).collect();
        let pending: Vec<usize> = self.respawns.iter().map(|r| r.slot).collect();
        (0..self.board.slots()).find(|s| !used.contains(s) && !pending.contains(s))
    }

    /// True when every worker of the current generation has published its pid.
    fn generation_up(&self) -> bool {
        let snap = self.board.snapshot();
        let current: Vec<&Worker> = self
            .workers
            .values()
            .filter(|w| w.generation == self.generation)
            .collect();
        current.len() == self.config.workers
            && current.iter().all(|w| {
                snap.get(w.slot).is_some_and(|s| {
                    s.pid == u64::from(w.child.id()) && s.generation == w.generation
                })
            })
    }

    fn abort_reload(&mut self) {
        let Some(r) = self.reload.take() else {
            return;
        };
        let failed = self.generation;
        self.log.line(&format!(
            "generation {failed} did not come up; keeping generation {}",
            r.old_generation
        ));
        self.signal_workers(Signal::SIGKILL, |w| w.generation == failed);
        for w in self.workers.values_mut() {
            if w.generation == failed {
                w.quit_at = Some(Instant::now());
                w.killed = true;
            }
        }
        self.respawns.clear();
        self.config = r.old_config;
        self.generation = r.old_generation;
        let failed_listeners = std::mem::replace(&mut self.listeners, r.old_listeners);
        self.retired_listeners.push((failed, failed_listeners));
        self.fill_generation();
        self.write_state();
    }

    /// Starts a worker for every index of the current generation that has none (one that
    /// died while a reload was pending, whose replacement was dropped with the reload).
    fn fill_generation(&mut self) {
        let generation = self.generation;
        for idx in 0..self.config.workers {
            let present = self
                .workers
                .values()
                .any(|w| w.generation == generation && w.idx == idx && w.quit_at.is_none());
            if present {
                continue;
            }
            let Some(slot) = self.free_slot() else {
                break;
            };
            match self.spawn(idx, slot, generation) {
                Ok(pid) => self.log.line(&format!(
                    "started worker {pid} (slot {slot}) for a missing one of generation {generation}"
                )),
                Err(e) => self.log.line(&format!("starting a worker: {e}")),
            }
        }
    }

    fn finish_reload(&mut self) {
        let Some(r) = self.reload.take() else {
            return;
        };
        let generation = self.generation;
        let now = Instant::now();
        let mut retired = Vec::new();
        for w in self.workers.values_mut() {
            if w.generation < generation && w.quit_at.is_none() {
                w.quit_at = Some(now);
                retired.push(w.child.id());
            }
        }
        // The respawns of older generations are moot now.
        self.respawns.retain(|_| false);
        self.signal_workers(Signal::SIGQUIT, |w| w.generation < generation);
        self.retired_listeners
            .push((r.old_generation, r.old_listeners));
        let addrs: Vec<String> = self
            .listeners
            .local_addrs()
            .iter()
            .map(ToString::to_string)
            .collect();
        self.log.line(&format!(
            "generation {generation} is up ({} workers on {}); retiring generation {} (pids {:?})",
            self.config.workers,
            addrs.join(", "),
            r.old_generation,
            retired
        ));
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
            master_start: ipckit::start_time(std::process::id()).unwrap_or(0),
            status: self.board_name.clone(),
            listen: self.listeners.local_addrs(),
            accept: self.config.accept,
            generation: self.generation,
            workers,
        }
    }

    /// Creates the state file exclusively; a stale one (its master is dead) is replaced.
    fn create_state(&mut self) -> io::Result<()> {
        let p = self.state_path.clone();
        for _ in 0..3 {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)
            {
                Ok(mut f) => {
                    self.state_written = true;
                    let text =
                        serde_json::to_string_pretty(&self.state()).map_err(io::Error::other)?;
                    f.write_all(text.as_bytes())?;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if let Some(s) = read_state(&p).ok().filter(master_alive) {
                        return Err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            format!(
                                "{} belongs to a running ipckit serve (pid {})",
                                p.display(),
                                s.master_pid
                            ),
                        ));
                    }
                    // Unreadable and fresh: another master is writing it right now.
                    let fresh = std::fs::metadata(&p)
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t.elapsed().is_ok_and(|a| a < Duration::from_secs(2)));
                    if read_state(&p).is_err() && fresh {
                        return Err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            format!("{} is being created by another ipckit serve", p.display()),
                        ));
                    }
                    // Its master is gone: a leftover of a kill -9.
                    std::fs::remove_file(&p)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // The directory went with the last master that used it: make it again.
                    ensure_state_dir()?;
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("state file {}: {e}", p.display()),
                    ))
                }
            }
        }
        Err(io::Error::other(format!(
            "state file {}: cannot create it",
            p.display()
        )))
    }

    /// Rewrites the state file (write a temporary file, rename over).
    fn write_state(&mut self) {
        if !self.state_written {
            return;
        }
        let tmp = self
            .state_path
            .with_extension(format!("json.{}.tmp", std::process::id()));
        let r = (|| -> io::Result<()> {
            let text = serde_json::to_string_pretty(&self.state()).map_err(io::Error::other)?;
            let _ = std::fs::remove_file(&tmp);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            std::fs::rename(&tmp, &self.state_path)
        })();
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            self.log
                .line(&format!("writing {}: {e}", self.state_path.display()));
        }
    }

    /// Leaves nothing behind: the state file goes (the board is unlinked when dropped).
    fn finish(&mut self) {
        if self.state_written {
            let _ = std::fs::remove_file(&self.state_path);
            self.state_written = false;
            let dir = state_dir();
            if dir.starts_with("/tmp") {
                // Our own directory in /tmp: gone with its last state file (fails while
                // another master's is there).
                let _ = std::fs::remove_dir(dir);
            }
        }
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

fn describe(s: &io::Result<ExitStatus>) -> String {
    match s {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(n)) => format!(
                "was killed by {}",
                Signal::new(n).map_or_else(|_| n.to_string(), |s| s.to_string())
            ),
            _ => format!("ended ({s})"),
        },
        Err(e) => format!("could not be reaped: {e}"),
    }
}

/// The largest state file read (a real one is a few KB even with 512 workers).
const MAX_STATE_BYTES: u64 = 1 << 20;

fn read_state(p: &Path) -> io::Result<State> {
    read_state_id(p).map(|(s, _)| s)
}

/// The state in `p` and the file's (device, inode), if `p` is a regular file of ours (not a
/// symlink), read with a bound.
fn read_state_id(p: &Path) -> io::Result<(State, (u64, u64))> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(p)?;
    if md.uid() != euid() || !md.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a file of ours", p.display()),
        ));
    }
    let bytes = ipckit::fs::read_regular(p, MAX_STATE_BYTES)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
    let state = serde_json::from_slice(&bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display())))?;
    Ok((state, (md.dev(), md.ino())))
}

/// What [`clean_stale`] did with one state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleAction {
    /// Its master (this pid) is dead: the file was removed (or would be, in a dry run).
    Removed(u32),
    /// Its master (this pid) runs.
    MasterAlive(u32),
    /// Left alone: why (not ours, not a state file, replaced while we looked, ...).
    Kept(String),
    /// Removing it failed.
    Failed(String),
}

/// `ipckit clean`'s part for `serve`: the state files a master killed with `-9` left behind.
/// A file is removed only when its master is verified dead (pid *and* start time, so a reused
/// pid does not keep it, and a live master's is never touched), when it is a regular file of
/// ours, and when the name still denotes the very file read (device and inode compared just
/// before the unlink; the directory is ours and closed to others, so nobody can swap it in
/// between). The status board is in ipckit's registry and cleaned with it.
///
/// # Errors
///
/// Reading the state directory (a missing one is no state file, not an error).
pub fn clean_stale(dry_run: bool) -> io::Result<Vec<(PathBuf, StaleAction)>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for p in state_files()? {
        let action = match read_state_id(&p) {
            Err(e) => StaleAction::Kept(e.to_string()),
            Ok((s, _)) if master_alive(&s) => StaleAction::MasterAlive(s.master_pid),
            Ok((s, _)) if dry_run => StaleAction::Removed(s.master_pid),
            Ok((s, id)) => {
                let same = std::fs::symlink_metadata(&p)
                    .is_ok_and(|m| m.is_file() && (m.dev(), m.ino()) == id);
                if !same {
                    StaleAction::Kept("replaced while it was read".into())
                } else {
                    match std::fs::remove_file(&p) {
                        Ok(()) => StaleAction::Removed(s.master_pid),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            StaleAction::Removed(s.master_pid)
                        }
                        Err(e) => StaleAction::Failed(e.to_string()),
                    }
                }
            }
        };
        out.push((p, action));
    }
    Ok(out)
}

/// The directories state files are read from: [`state_dir`], then every other candidate that
/// is a private directory of ours ([`ipckit::fs::private_dirs_existing`]): a master that
/// found a name taken wrote its state further down the list, and `--status` and `clean` must
/// still find it when the name is freed.
fn state_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![state_dir()];
    let more =
        ipckit::fs::private_dirs_existing(&ipckit::fs::private_dir_candidates("ipckit-serve"));
    for d in more {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs
}

/// Every state file in the state directories, sorted (none where a directory does not exist).
fn state_files() -> io::Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for d in state_dirs() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        v.extend(
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("ipckit-serve-") && n.ends_with(".json"))
                }),
        );
    }
    v.sort();
    Ok(v)
}

fn master_alive(s: &State) -> bool {
    ipckit::is_alive(s.master_pid, s.master_start)
}

/// The state of every running master (optionally only the one whose first port is `port`).
///
/// # Errors
///
/// Reading the state directory.
pub fn running(port: Option<u16>) -> io::Result<Vec<(PathBuf, State)>> {
    let paths: Vec<PathBuf> = match port {
        Some(p) => {
            let name = format!("ipckit-serve-{p}.json");
            state_dirs().into_iter().map(|d| d.join(&name)).collect()
        }
        None => state_files()?,
    };
    Ok(paths
        .into_iter()
        .filter_map(|p| read_state(&p).ok().filter(master_alive).map(|s| (p, s)))
        .collect())
}

/// `ipckit serve --status`: prints each running master's workers (pid, generation,
/// requests, connections, active, errors, 4xx, 5xx, age) and totals to `out`. Returns 0, or 1
/// with a message on stderr when no server runs.
pub fn status(port: Option<u16>, out: &mut dyn Write) -> i32 {
    let masters = match running(port) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ipckit serve --status: {e}");
            return 1;
        }
    };
    if masters.is_empty() {
        let which = port.map_or_else(String::new, |p| format!(" on port {p}"));
        eprintln!(
            "ipckit serve --status: no ipckit serve is running{which} (no live state file in {})",
            state_dir().display()
        );
        return 1;
    }
    for (path, s) in masters {
        if let Err(e) = print_status(&path, &s, out) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                return 0;
            }
            eprintln!("ipckit serve --status: {e}");
            return 1;
        }
    }
    0
}

/// Prints one master's status (what [`status`] prints for each): its board, opened by the
/// name in `s`, read against the workers `s` lists. Public only for the fuzz target
/// (`fuzz/fuzz_targets/status.rs`): the board's words are written by worker processes, the
/// state file by any process of the same user.
#[doc(hidden)]
pub fn print_status(path: &Path, s: &State, out: &mut dyn Write) -> io::Result<()> {
    let board = StatusBoard::open_named(&s.status)
        .map_err(|e| io::Error::new(e.kind(), format!("status board {}: {e}", s.status)))?;
    let snap = board.snapshot();
    let addrs: Vec<String> = s.listen.iter().map(ToString::to_string).collect();
    writeln!(
        out,
        "ipckit serve: master {}, listening on {} ({} accept), generation {}, {} workers ({})",
        s.master_pid,
        addrs.join(", "),
        s.accept,
        s.generation,
        s.workers.len(),
        path.display()
    )?;
    writeln!(
        out,
        "{:>4} {:>8} {:>4} {:>10} {:>8} {:>7} {:>7} {:>6} {:>6} {:>9}",
        "slot", "pid", "gen", "requests", "conns", "active", "errors", "4xx", "5xx", "age"
    )?;
    let now = now_ns();
    let boot_ns = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |s| (s * 1e9) as u64);
    let mut total = [0u64; 7];
    for w in &s.workers {
        // The slot's counters, if the worker the state file names has claimed it yet.
        let c = snap.get(w.slot).filter(|c| c.pid == u64::from(w.pid));
        let age = match c {
            Some(c) if c.started_ns > 0 => {
                // Times before 2001 are taken for a clock since boot (CLOCK_MONOTONIC).
                let clock = if c.started_ns < 1_000_000_000_000_000_000 {
                    boot_ns
                } else {
                    now
                };
                format!("{:.1}s", clock.saturating_sub(c.started_ns) as f64 / 1e9)
            }
            _ => "starting".into(),
        };
        let vals = c.map_or([0; 6], |c| {
            [
                c.requests,
                c.connections,
                c.active,
                c.errors,
                c.status_4xx,
                c.status_5xx,
            ]
        });
        // Saturating: the counters are whatever the board holds, and a worker (or anyone
        // who can write the board) may have left any value there.
        for (t, v) in total.iter_mut().zip(vals) {
            *t = t.saturating_add(v);
        }
        total[6] += 1;
        writeln!(
            out,
            "{:>4} {:>8} {:>4} {:>10} {:>8} {:>7} {:>7} {:>6} {:>6} {:>9}{}",
            w.slot,
            w.pid,
            w.generation,
            vals[0],
            vals[1],
            vals[2],
            vals[3],
            vals[4],
            vals[5],
            age,
            if w.retiring { "  retiring" } else { "" }
        )?;
    }
    writeln!(
        out,
        "{:>4} {:>8} {:>4} {:>10} {:>8} {:>7} {:>7} {:>6} {:>6}",
        "all", total[6], "", total[0], total[1], total[2], total[3], total[4], total[5]
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(20_417), (2025, 11, 25));
    }

    /// Found by the `status` fuzz target: counters near `u64::MAX` (a board another process
    /// wrote) overflowed the totals, a panic in a debug build.
    #[test]
    fn status_totals_of_huge_counters_saturate() {
        let name = format!("ipckit-test-status-{}", std::process::id());
        let board = StatusBoard::create_named(&name, 2).unwrap();
        for i in 0..2 {
            board.slot(i).claim(100 + i as u32, 1, 0);
            board.slot(i).requests.store(u64::MAX, Ordering::Relaxed);
        }
        let state = State {
            master_pid: 1,
            master_start: 0,
            status: name,
            listen: Vec::new(),
            accept: AcceptMode::Exclusive,
            generation: 1,
            workers: (0..2)
                .map(|i| StateWorker {
                    slot: i,
                    pid: 100 + i as u32,
                    generation: 1,
                    retiring: false,
                })
                .collect(),
        };
        let mut out = Vec::new();
        print_status(Path::new("test.json"), &state, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let all = text.lines().last().unwrap();
        assert!(all.contains(&u64::MAX.to_string()), "{text}");
    }
}
