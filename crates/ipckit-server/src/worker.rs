//! STAND-IN, to be replaced by the worker branch's `worker.rs`.
//!
//! A minimal worker with the interface's [`WorkerSpec`] and [`run`]: a level-triggered epoll
//! loop that answers every request with `Hello, World!` (keep-alive and pipelining, no real
//! parsing), QUIT graceful (listeners out of epoll first, then closed; idle connections closed,
//! busy ones after their response), TERM/INT fast (128 + n). Enough to test the master.

use crate::config::Config;
use crate::status::{SlotSnapshot, StatusBoard};
use ipckit::epoll::{Epoll, Events, Interest};
use ipckit::signal::{Signal, Signals};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the master tells a worker it starts (JSON in [`WorkerSpec::ENV`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// Inherited listening sockets (descriptor numbers).
    pub listeners: Vec<i32>,
    /// The inherited status board (descriptor number).
    pub status_fd: i32,
    /// This worker's slot in the board.
    pub slot: usize,
    /// The generation it belongs to.
    pub generation: u64,
    /// The configuration.
    pub config: Config,
}

impl WorkerSpec {
    /// The environment variable holding the spec.
    pub const ENV: &'static str = "IPCKIT_SERVE_WORKER";

    /// Reads the spec from the environment and checks the descriptors.
    ///
    /// # Errors
    ///
    /// `NotFound` without the variable, `InvalidData` for bad JSON.
    pub fn from_env() -> io::Result<WorkerSpec> {
        let s = std::env::var(Self::ENV).map_err(|_| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is not set: --worker is started by the master",
                    Self::ENV
                ),
            )
        })?;
        serde_json::from_str(&s)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", Self::ENV)))
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

struct Conn {
    s: TcpStream,
    inb: Vec<u8>,
    out: Vec<u8>,
    close_after: bool,
    served: u64,
    last: Instant,
}

/// Runs the worker; returns its exit status.
pub fn run(spec: WorkerSpec) -> i32 {
    match serve(spec) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ipckit serve worker {}: {e}", std::process::id());
            1
        }
    }
}

fn serve(spec: WorkerSpec) -> io::Result<i32> {
    let sigs = Signals::new(&[
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ])?;
    let mut listeners: Vec<Option<TcpListener>> = Vec::new();
    for &fd in &spec.listeners {
        listeners.push(Some(TcpListener::from(ipckit::net::adopt_listener(fd)?)));
    }
    // Stand-in shortcut: reopen the inherited board through /proc (the real worker adopts it).
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{}", spec.status_fd))?;
    let board = StatusBoard::from_fd(OwnedFd::from(f))?;
    let ep = Epoll::new()?;
    ep.add(&sigs, 0, Interest::READABLE)?;
    for (i, l) in listeners.iter().enumerate() {
        if let Some(l) = l {
            ep.add(l.as_fd(), 1 + i as u64, Interest::READABLE)?;
        }
    }
    let mut st = SlotSnapshot {
        pid: u64::from(std::process::id()),
        generation: spec.generation,
        started_ns: now_ns(),
        heartbeat_ns: now_ns(),
        ..SlotSnapshot::default()
    };
    board.write_slot(spec.slot, st);
    let mut conns: HashMap<u64, Conn> = HashMap::new();
    let mut next = 1000u64;
    let mut draining: Option<Instant> = None;
    let mut events = Events::with_capacity(256);
    let keepalive = Duration::from_millis(spec.config.keepalive_timeout_ms);
    loop {
        if let Some(d) = draining {
            // Idle keep-alive connections go; a fresh one gets its first request answered.
            conns.retain(|_, c| !(c.served > 0 && c.inb.is_empty() && c.out.is_empty()));
            if conns.is_empty() {
                st.active = 0;
                board.write_slot(spec.slot, st);
                return Ok(0);
            }
            if d.elapsed() > Duration::from_millis(spec.config.graceful_timeout_ms) {
                return Ok(0);
            }
        }
        ep.wait(&mut events, Some(Duration::from_millis(500)))?;
        for ev in events.iter() {
            let t = ev.token();
            if t == 0 {
                while let Some(si) = sigs.try_read()? {
                    match si.signal {
                        Signal::SIGQUIT => {
                            for l in listeners.iter_mut() {
                                if let Some(l) = l.take() {
                                    let _ = ep.delete(l.as_fd());
                                }
                            }
                            draining.get_or_insert_with(Instant::now);
                        }
                        Signal::SIGTERM | Signal::SIGINT => return Ok(128 + si.signal.number()),
                        _ => {}
                    }
                }
            } else if t < 1000 {
                let Some(Some(l)) = listeners.get((t - 1) as usize) else {
                    continue;
                };
                loop {
                    match l.accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(true)?;
                            let _ = s.set_nodelay(true);
                            ep.add(s.as_fd(), next, Interest::READABLE)?;
                            conns.insert(
                                next,
                                Conn {
                                    s,
                                    inb: Vec::new(),
                                    out: Vec::new(),
                                    close_after: false,
                                    served: 0,
                                    last: Instant::now(),
                                },
                            );
                            next += 1;
                            st.connections += 1;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            st.errors += 1;
                            break;
                        }
                    }
                }
            } else if let Some(c) = conns.get_mut(&t) {
                let alive = step(c, &mut st, ev.is_readable());
                let was_out = !c.out.is_empty();
                if !alive || (c.close_after && c.out.is_empty()) {
                    conns.remove(&t);
                } else if was_out {
                    ep.modify(c.s.as_fd(), t, Interest::READABLE | Interest::WRITABLE)?;
                } else {
                    ep.modify(c.s.as_fd(), t, Interest::READABLE)?;
                }
            }
        }
        conns.retain(|_, c| c.last.elapsed() < keepalive);
        st.active = conns.len() as u64;
        st.heartbeat_ns = now_ns();
        board.write_slot(spec.slot, st);
    }
}

/// Reads what is there, answers every complete request, writes what it can. False: close.
fn step(c: &mut Conn, st: &mut SlotSnapshot, readable: bool) -> bool {
    if readable {
        let mut buf = [0u8; 16384];
        loop {
            match c.s.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => c.inb.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        c.last = Instant::now();
    }
    while let Some(end) = c.inb.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&c.inb[..end]).to_ascii_lowercase();
        c.inb.drain(..end + 4);
        st.requests += 1;
        c.served += 1;
        c.out.extend_from_slice(RESPONSE);
        if head.contains("connection: close") {
            c.close_after = true;
            c.inb.clear();
            break;
        }
    }
    while !c.out.is_empty() {
        match c.s.write(&c.out) {
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}
