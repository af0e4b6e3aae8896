//! One worker process: an epoll loop serving HTTP/1.1 on the listening sockets it inherited.
//!
//! The master re-executes its binary with [`WorkerSpec::ENV`] holding a [`WorkerSpec`] as
//! JSON and the listening sockets and the status board's descriptor inherited
//! ([`ipckit::pipe::inherit_only`]); the worker adopts them with checks and calls [`run`].
//!
//! The loop:
//! - Connections are non-blocking and registered edge-triggered for input and output once
//!   (no `epoll_ctl` per request). On an event the connection is *driven*: unsent output is
//!   written (`write`, then `sendfile` for a file body) until done or `EAGAIN`; complete
//!   requests in the input buffer are answered in order (pipelining), their responses
//!   appended to one output buffer and sent with one `write`; then more input is read. A short
//!   read means the socket is drained (the kernel reports every later arrival as a new edge),
//!   which saves the `EAGAIN` read per request.
//! - `GET /` (and `HEAD /`) is a precomputed response whose `Date` is rewritten once per
//!   second: no allocation and no formatting per request. With a root directory, other paths
//!   are files opened with [`ipckit::fs::open_beneath`] (the kernel refuses `..`, absolute
//!   paths and symlinks leaving the root: 403) and sent with `sendfile`; missing: 404; a
//!   directory: 403 (no index files, no listings); anything else that is not a regular file
//!   (a FIFO, socket or device): 403, found with `O_PATH` and never opened for reading
//!   ([`ipckit::fs::open_regular_beneath`]). `/` stays the hello response even with a root.
//! - Listeners are edge-triggered too (with `EPOLLEXCLUSIVE` in [`AcceptMode::Exclusive`],
//!   where every worker shares one socket), and drained with `accept` until `EAGAIN`. When
//!   the process is out of descriptors (`EMFILE`/`ENFILE`), a spare descriptor kept open on
//!   `/dev/null` is closed, the connection accepted and closed at once (the client sees a
//!   clean close rather than waiting in the backlog), and the spare reopened.
//! - Timeouts are coarse: every connection has one deadline (a millisecond count), checked by
//!   a sweep every [`SWEEP_MS`]; `epoll_wait` wakes at least that often. A new request's
//!   header must complete within `header_timeout_ms` from its first byte (slowloris), idle
//!   keep-alive connections close after `keepalive_timeout_ms`, and a client that does not
//!   read its responses is closed after `keepalive_timeout_ms` without progress.
//! - Signals arrive on a signalfd in the same epoll set: QUIT is a graceful shutdown (the
//!   listeners leave the epoll set and are closed first — the sockets live on in the master,
//!   so nothing queued is reset; requests already read are answered, each connection closes
//!   once it is idle, and the worker exits 0 when none is left or after
//!   `graceful_timeout_ms`); TERM and INT exit at once with 128 + the signal number; USR1
//!   reopens the error log (and the access log); HUP is the master's business and ignored here.
//! - The access log (`access_log`, off by default) costs nothing when off; when on, each
//!   request appends a line to a buffer written once per loop iteration.
//! - Counters go to this worker's slot of the status board with `Relaxed` atomics, added
//!   once per batch.
//!
//! The parts: [`run`] and the loop here; `spec` (the [`WorkerSpec`]), `log` (the error and
//! access logs) and `conn` (a connection's state and its output).

mod conn;
mod log;
mod spec;

pub use spec::WorkerSpec;

use crate::config::{AcceptMode, Config};
use crate::http::{self, Input, Method, Next, Responses};
use crate::status::{Slot, StatusBoard};
use conn::{flush, linger, Conn, FileSend, Verdict, LINGER_MS};
use ipckit::epoll::{Epoll, Events, Interest};
use ipckit::signal::{Signal, Signals};
use log::{AccessLog, Log};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// How often the timeout sweep runs (and the longest `epoll_wait`).
pub const SWEEP_MS: u64 = 100;

const TOKEN_SIGNALS: u64 = u64::MAX;
const TOKEN_LISTENER: u64 = u64::MAX - 1 - 1024;

/// The signals a worker handles (blocked, read from a signalfd).
pub const SIGNALS: [Signal; 5] = [
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGUSR1,
    Signal::SIGHUP,
];

/// Runs a worker until it is told to stop; returns the process exit code (0 after a
/// graceful shutdown, 128 + n after TERM or INT, 1 if it cannot start).
pub fn run(spec: WorkerSpec) -> i32 {
    // First of all: a worker must not outlive its master (a `kill -9` of the master would
    // leave workers serving on a port nothing else can then take, unseen by `--status`).
    if let Some(master) = spec.master_pid {
        if let Err(e) = ipckit::process::die_with_parent(master) {
            eprintln!("ipckit serve worker slot {}: {e}; exiting", spec.slot);
            return 1;
        }
    }
    let mut log = Log::open(spec.config.error_log.clone());
    match start(&spec, &mut log) {
        Ok(code) => code,
        Err(e) => {
            log.line(&format!("worker slot {}: {e}", spec.slot));
            1
        }
    }
}

fn start(spec: &WorkerSpec, log: &mut Log) -> io::Result<i32> {
    ipckit::signal::block_for_process(&SIGNALS)?;
    let signals = Signals::new(&SIGNALS)?;
    let board = StatusBoard::from_fd(ipckit::inherit::regular_file(spec.status_fd)?)?;
    if spec.slot >= board.slots() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("slot {} of a board of {}", spec.slot, board.slots()),
        ));
    }
    let listeners = spec
        .listeners
        .iter()
        .map(|&fd| {
            let l = ipckit::inherit::tcp_listener(fd)?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let root = match &spec.config.root {
        Some(p) => Some(OwnedFd::from(File::open(p).map_err(|e| {
            io::Error::new(e.kind(), format!("root {}: {e}", p.display()))
        })?)),
        None => None,
    };
    let slot = board.slot(spec.slot);
    slot.claim(std::process::id(), spec.generation, unix_ns());
    let epoll = Epoll::new()?;
    epoll.add(&signals, TOKEN_SIGNALS, Interest::READABLE)?;
    let exclusive = spec.config.accept == AcceptMode::Exclusive;
    for (i, l) in listeners.iter().enumerate() {
        let mut int = Interest::INPUT | Interest::EDGE;
        if exclusive {
            int = int | Interest::EXCLUSIVE;
        }
        epoll.add(l, TOKEN_LISTENER + i as u64, int)?;
    }
    let mut w = Worker {
        epoll,
        listeners,
        signals,
        conns: Vec::new(),
        free: Vec::new(),
        live: 0,
        slot,
        responses: Responses::new(),
        root,
        cfg: spec.config.clone(),
        log,
        spare: File::open("/dev/null").ok(),
        start: Instant::now(),
        now: 0,
        next_sweep: SWEEP_MS,
        draining: None,
        last_emfile_log: None,
        access: match &spec.config.access_log {
            Some(p) => Some(AccessLog::open(p)?),
            None => None,
        },
        again: Vec::new(),
        again_spare: Vec::new(),
    };
    w.run(&mut Events::with_capacity(512))
}

fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

struct Worker<'b, 'l> {
    epoll: Epoll,
    listeners: Vec<TcpListener>,
    signals: Signals,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    live: usize,
    slot: Slot<'b>,
    responses: Responses,
    root: Option<OwnedFd>,
    cfg: Config,
    log: &'l mut Log,
    spare: Option<File>,
    start: Instant,
    now: u64,
    next_sweep: u64,
    /// The graceful-shutdown deadline, once QUIT came.
    draining: Option<u64>,
    last_emfile_log: Option<u64>,
    /// The access log (off when `None`: nothing is done per request then).
    access: Option<AccessLog>,
    /// Connections to drive again (their read budget ran out), and a spare list.
    again: Vec<(usize, bool)>,
    again_spare: Vec<(usize, bool)>,
}

/// Reads one connection may make per turn, so a client that pipelines without end cannot
/// starve the others.
const READ_BUDGET: usize = 16;

/// Counts of a drive not yet published (see `Worker::publish`).
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    s4xx: u64,
    s5xx: u64,
    errors: u64,
}

impl Worker<'_, '_> {
    fn run(&mut self, events: &mut Events) -> io::Result<i32> {
        loop {
            let timeout = if self.again.is_empty() {
                Duration::from_millis(SWEEP_MS)
            } else {
                Duration::ZERO
            };
            self.epoll.wait_timeout(events, timeout)?;
            self.tick();
            for ev in events.iter() {
                let token = ev.token();
                if token == TOKEN_SIGNALS {
                    if let Some(code) = self.on_signals()? {
                        return Ok(code);
                    }
                } else if (TOKEN_LISTENER..TOKEN_SIGNALS).contains(&token) {
                    self.accept((token - TOKEN_LISTENER) as usize);
                } else {
                    let idx = token as usize;
                    let rdhup = ev.is_hangup() || ev.bits() & libc::EPOLLRDHUP as u32 != 0;
                    self.drive(idx, rdhup || ev.is_error());
                }
            }
            if !self.again.is_empty() {
                let mut list = std::mem::take(&mut self.again_spare);
                std::mem::swap(&mut list, &mut self.again);
                for (idx, eof) in list.drain(..) {
                    self.drive(idx, eof);
                }
                self.again_spare = list;
            }
            if let Some(a) = &mut self.access {
                let _ = a.out.flush();
            }
            if self.now >= self.next_sweep {
                self.next_sweep = self.now + SWEEP_MS;
                self.sweep();
            }
            if let Some(deadline) = self.draining {
                if self.live == 0 {
                    return Ok(0);
                }
                if self.now >= deadline {
                    self.log.line(&format!(
                        "graceful shutdown: {} connections still open after {} ms, closing them",
                        self.live, self.cfg.graceful_timeout_ms
                    ));
                    return Ok(0);
                }
            }
        }
    }

    fn tick(&mut self) {
        self.now = self.start.elapsed().as_millis() as u64;
        let ns = unix_ns();
        self.responses.set_time(ns / 1_000_000_000);
        self.slot.heartbeat_ns.store(ns, Relaxed);
    }

    fn on_signals(&mut self) -> io::Result<Option<i32>> {
        while let Some(info) = self.signals.try_read()? {
            match info.signal {
                Signal::SIGTERM | Signal::SIGINT => {
                    return Ok(Some(128 + info.signal.number()));
                }
                Signal::SIGQUIT => self.begin_graceful(),
                Signal::SIGUSR1 => {
                    self.log.reopen();
                    if let Some(a) = &mut self.access {
                        let _ = a.out.flush();
                        match AccessLog::open(&a.path) {
                            Ok(n) => *a = n,
                            Err(e) => self.log.line(&e.to_string()),
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(None)
    }

    fn begin_graceful(&mut self) {
        if self.draining.is_some() {
            return;
        }
        self.draining = Some(self.now + self.cfg.graceful_timeout_ms);
        // Stop accepting first: out of the epoll set, then closed. The master keeps its copy
        // of every socket, so connections queued in the backlog stay for the other workers.
        for l in self.listeners.drain(..) {
            let _ = self.epoll.delete(&l);
        }
        // Answer what was read; close what is idle.
        for idx in 0..self.conns.len() {
            if self.conns[idx].is_some() {
                self.drive(idx, false);
            }
        }
    }

    fn accept(&mut self, which: usize) {
        loop {
            let Some(l) = self.listeners.get(which) else {
                return;
            };
            match ipckit::net::accept(l) {
                Ok(stream) => self.adopt(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    if self.last_emfile_log.is_none_or(|t| self.now >= t + 1000) {
                        self.last_emfile_log = Some(self.now);
                        self.log.line(&format!(
                            "accept: {e}; refusing connections until descriptors free up"
                        ));
                    }
                    // Free the spare, take the connection off the queue and close it, so the
                    // client is told now; then keep a spare again.
                    if self.spare.take().is_none() {
                        return;
                    }
                    // (EMFILE comes before the queue is looked at, so the queue may be
                    // empty: then stop, or this would loop for ever.)
                    let got = ipckit::net::accept(l);
                    let again = got.is_ok();
                    drop(got);
                    self.spare = File::open("/dev/null").ok();
                    if !again {
                        return;
                    }
                    // One connection refused.
                    self.slot.errors.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    self.slot.errors.fetch_add(1, Relaxed);
                    self.log.line(&format!("accept: {e}"));
                    return;
                }
            }
        }
    }

    /// Takes a connection `ipckit::net::accept` made (non-blocking, close-on-exec).
    fn adopt(&mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        if let Err(e) = self.epoll.add(
            &stream,
            idx as u64,
            Interest::READABLE | Interest::WRITABLE | Interest::EDGE,
        ) {
            self.free.push(idx);
            self.slot.errors.fetch_add(1, Relaxed);
            self.log.line(&format!("epoll add: {e}"));
            return;
        }
        self.conns[idx] = Some(Conn {
            stream,
            input: Input::new(self.cfg.max_header_bytes),
            out: Vec::new(),
            out_pos: 0,
            file: None,
            deadline: self.now + self.cfg.header_timeout_ms,
            header_clock: true,
            close_after: false,
            eof: false,
            lingering: false,
            served: 0,
        });
        self.live += 1;
        self.slot.connections.fetch_add(1, Relaxed);
        self.slot.active.fetch_add(1, Relaxed);
    }

    fn close(&mut self, idx: usize) {
        if let Some(c) = self.conns.get_mut(idx).and_then(Option::take) {
            // Closing the descriptor removes it from the epoll set.
            drop(c);
            self.free.push(idx);
            self.live -= 1;
            self.slot.active.fetch_sub(1, Relaxed);
        }
    }

    fn sweep(&mut self) {
        for idx in 0..self.conns.len() {
            if self.conns[idx]
                .as_ref()
                .is_some_and(|c| c.deadline <= self.now)
            {
                self.close(idx);
            }
        }
    }

    fn drive(&mut self, idx: usize, read_to_eof: bool) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let mut tally = Tally::default();
        let verdict = self.drive_conn(&mut conn, read_to_eof, &mut tally);
        self.publish(&mut conn, &mut tally);
        self.conns[idx] = Some(conn);
        match verdict {
            Verdict::Close => self.close(idx),
            Verdict::Again => self.again.push((idx, read_to_eof)),
            Verdict::Keep => {}
        }
    }

    /// Adds what was tallied to the connection and the status board, and clears the tally.
    /// Called before answers are written too, so that a client that has read an answer finds
    /// its request already counted.
    fn publish(&self, c: &mut Conn, t: &mut Tally) {
        c.served += t.requests;
        for (n, counter) in [
            (t.requests, &self.slot.requests),
            (t.s4xx, &self.slot.status_4xx),
            (t.s5xx, &self.slot.status_5xx),
            (t.errors, &self.slot.errors),
        ] {
            if n > 0 {
                counter.fetch_add(n, Relaxed);
            }
        }
        *t = Tally::default();
    }

    fn drive_conn(&mut self, c: &mut Conn, read_to_eof: bool, t: &mut Tally) -> Verdict {
        if c.lingering {
            return linger(c);
        }
        let mut drained = false;
        let mut reads = 0;
        loop {
            self.publish(c, t);
            match flush(c) {
                Ok(true) => {}
                Ok(false) => {
                    // Blocked on output: wait for EPOLLOUT (the client must make progress).
                    c.deadline = self.now + self.cfg.keepalive_timeout_ms;
                    c.header_clock = false;
                    return Verdict::Keep;
                }
                Err(_) => return Verdict::Close,
            }
            if c.close_after {
                if c.eof || c.input.is_empty() && !read_to_eof {
                    // Nothing unread that we know of: a plain close sends FIN.
                    return Verdict::Close;
                }
                let _ = c.stream.shutdown(std::net::Shutdown::Write);
                c.lingering = true;
                c.deadline = self.now + LINGER_MS;
                return linger(c);
            }
            self.answer(c, t);
            if !c.out.is_empty() || c.file.is_some() || c.close_after {
                continue;
            }
            if c.eof {
                return Verdict::Close;
            }
            if drained {
                break;
            }
            reads += 1;
            if reads > READ_BUDGET {
                return Verdict::Again;
            }
            let spare = c.input.spare();
            let room = spare.len();
            match c.stream.read(spare) {
                Ok(0) => c.eof = true,
                Ok(n) => {
                    c.input.filled(n);
                    drained = n < room && !read_to_eof;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Verdict::Close,
            }
        }
        // Waiting for input.
        if c.input.is_empty() {
            if self.draining.is_some() && c.served > 0 {
                return Verdict::Close;
            }
            c.header_clock = false;
            c.deadline = self.now + self.cfg.keepalive_timeout_ms;
        } else if !c.header_clock {
            c.header_clock = true;
            c.deadline = self.now + self.cfg.header_timeout_ms;
        }
        Verdict::Keep
    }

    /// Answers the complete requests in the input, until one needs a file sent or closes.
    fn answer(&mut self, c: &mut Conn, t: &mut Tally) {
        loop {
            match c.input.next_request() {
                Next::NeedMore => return,
                Next::Reject(status) => {
                    self.access_line(b"-", b"-", status);
                    t.requests += 1;
                    t.errors += 1;
                    if status >= 500 {
                        t.s5xx += 1;
                    } else {
                        t.s4xx += 1;
                    }
                    self.responses.error(&mut c.out, status, false, false);
                    c.close_after = true;
                    return;
                }
                Next::Request(r) => {
                    t.requests += 1;
                    c.header_clock = false;
                    let keep = r.keep_alive && !(self.draining.is_some() && c.input.is_empty());
                    let head = r.method == Method::Head;
                    let path = c.input.bytes(r.path.clone());
                    let status = if r.method == Method::Other {
                        t.s4xx += 1;
                        self.responses.error(&mut c.out, 405, keep, false);
                        405
                    } else if path == b"/" {
                        c.out.extend_from_slice(self.responses.hello(keep, head));
                        200
                    } else {
                        let status = self.file(c, r.path.clone(), keep, head);
                        if status >= 500 {
                            t.s5xx += 1;
                        } else if status >= 400 {
                            t.s4xx += 1;
                        }
                        status
                    };
                    if self.access.is_some() {
                        let m: &[u8] = match r.method {
                            Method::Get => b"GET",
                            Method::Head => b"HEAD",
                            Method::Other => b"OTHER",
                        };
                        let path = c.input.bytes(r.path);
                        self.access_line(m, path, status);
                    }
                    if !keep {
                        c.close_after = true;
                        return;
                    }
                    if c.file.is_some() {
                        return;
                    }
                }
            }
        }
    }

    /// Appends a line to the access log, if there is one (buffered; flushed once per loop).
    fn access_line(&mut self, method: &[u8], path: &[u8], status: u16) {
        let Some(a) = &mut self.access else {
            return;
        };
        let mut line = Vec::with_capacity(64 + path.len());
        line.extend_from_slice(self.responses.date());
        line.extend_from_slice(b" \"");
        line.extend_from_slice(method);
        line.push(b' ');
        // Control bytes and quotes cannot forge lines or fields.
        line.extend(path.iter().map(|&b| {
            if b.is_ascii_graphic() && b != b'"' {
                b
            } else {
                b'?'
            }
        }));
        line.extend_from_slice(format!("\" {status}\n").as_bytes());
        let _ = a.out.write_all(&line);
    }

    /// Starts the response for a file path; returns its status.
    fn file(&mut self, c: &mut Conn, path: std::ops::Range<usize>, keep: bool, head: bool) -> u16 {
        let mut buf = [0u8; 4096];
        let status = match (
            &self.root,
            http::percent_decode(c.input.bytes(path), &mut buf),
        ) {
            (None, _) => 404,
            (Some(_), None) => 400,
            (Some(root), Some(decoded)) => {
                let rel = trim_slashes(decoded);
                // Only a regular file is ever opened for reading: a FIFO would block this
                // worker in `open` for good, and opening a device may have side effects.
                match ipckit::fs::open_regular_beneath(root, rel) {
                    Ok(None) => 403,
                    Ok(Some(file)) => match file.metadata() {
                        Ok(m) if m.is_file() => {
                            let len = m.len();
                            self.responses.header(
                                &mut c.out,
                                200,
                                http::content_type(rel),
                                len,
                                keep,
                            );
                            if !head && len > 0 {
                                c.file = Some(FileSend { file, off: 0, len });
                            }
                            return 200;
                        }
                        Ok(_) => 403,
                        Err(_) => 500,
                    },
                    Err(e) => match e.raw_os_error() {
                        Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG) => 404,
                        Some(libc::EXDEV | libc::ELOOP | libc::EACCES | libc::EPERM) => 403,
                        _ => 500,
                    },
                }
            }
        };
        self.responses.error(&mut c.out, status, keep, head);
        status
    }
}

fn trim_slashes(p: &[u8]) -> &[u8] {
    let i = p.iter().position(|&b| b != b'/').unwrap_or(p.len());
    &p[i..]
}
