//! `ipckit demo`: walks through a mechanism with two real processes, saying what each does,
//! and ends with one measured number.
//!
//! The second process is this same binary, re-executed as `ipckit demo TOPIC --child ROLE`
//! (or, in `cow-snapshot`, a fork of the first, which is the point of that demo).
//! Every demo cleans up after itself and stops cleanly on Ctrl-C (exit status 130).

/// `println!` for the demos' narration that returns the error instead of panicking when
/// stdout is closed (`ipckit demo X | head`): the demo then stops early, its children reaped
/// and its objects removed by their guards, and `main` treats `EPIPE` as a quiet success.
/// Every line is `[role pid] ...`, and the last one is `result: ...`.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?
    }};
}

#[path = "demo_cow.rs"]
mod cow;
#[path = "demo_fd_pass.rs"]
mod fd_pass;
#[path = "demo_fifo.rs"]
mod fifo;
#[path = "demo_low_latency.rs"]
mod low_latency;
#[path = "demo_mq_priority.rs"]
mod mq_priority;
#[path = "demo_pipe.rs"]
mod pipe;
#[path = "demo_pipeline.rs"]
mod pipeline_demo;
#[path = "demo_server.rs"]
mod server;
#[path = "demo_shm_ring.rs"]
mod shm_ring;
#[path = "demo_shutdown.rs"]
mod shutdown;
#[path = "demo_signals.rs"]
mod signals;
#[path = "demo_stream.rs"]
mod stream;
#[path = "demo_tcp_vs_udp.rs"]
mod tcp_vs_udp;
#[path = "demo_zero_copy.rs"]
mod zero_copy;

use crate::cli::DemoArgs;
use crate::UserError;
use std::io::{self, Write};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// One topic: its name, its level on the learning path, what it teaches, and its walk-through.
struct Topic {
    name: &'static str,
    level: &'static str,
    about: &'static str,
    run: fn(&DemoArgs) -> anyhow::Result<()>,
    child: Option<fn(&str) -> anyhow::Result<()>>,
}

/// The topics in the learning path's order: beginner (signals, then pipes), intermediate
/// (message queues, then shared memory), advanced (sockets, then an epoll server).
const TOPICS: &[Topic] = &[
    Topic {
        name: "signals",
        level: "beginner",
        about: "signals: sigaction vs signalfd, real-time signals queue, standard ones coalesce",
        run: signals::run,
        child: Some(signals::child),
    },
    Topic {
        name: "shutdown",
        level: "beginner",
        about: "graceful shutdown: drain in-flight work, reload on HUP, force on a second TERM",
        run: shutdown::run,
        child: Some(shutdown::child),
    },
    Topic {
        name: "pipe",
        level: "beginner",
        about: "anonymous pipes: a parent and the child it spawns, round trips",
        run: pipe::run,
        child: Some(pipe::child),
    },
    Topic {
        name: "fifo",
        level: "beginner",
        about: "named FIFOs: open rules, end-of-file after the last writer, reopening",
        run: fifo::run,
        child: Some(fifo::child),
    },
    Topic {
        name: "pipeline",
        level: "beginner",
        about: "shell pipelines without a shell: a | b | c, PIPESTATUS, SIGPIPE, pipefail",
        run: pipeline_demo::run,
        child: None,
    },
    Topic {
        name: "stream",
        level: "beginner",
        about: "streaming with backpressure: a fast downloader blocks on a slow player",
        run: stream::run,
        child: Some(stream::child),
    },
    Topic {
        name: "mq-priority",
        level: "intermediate",
        about: "POSIX message queues: the highest priority is received first",
        run: mq_priority::run,
        child: Some(mq_priority::child),
    },
    Topic {
        name: "shm-ring",
        level: "intermediate",
        about: "shared memory rings: zero-copy messages, spinning vs blocking waits",
        run: shm_ring::run,
        child: Some(shm_ring::child),
    },
    Topic {
        name: "cow-snapshot",
        level: "intermediate",
        about: "fork copy-on-write: snapshot a table while it takes writes (Redis BGSAVE)",
        run: cow::run,
        child: None,
    },
    Topic {
        name: "fd-pass",
        level: "advanced",
        about: "passing descriptors (SCM_RIGHTS): a file, a pipe and a memfd to a child",
        run: fd_pass::run,
        child: Some(fd_pass::child),
    },
    Topic {
        name: "tcp-vs-udp",
        level: "advanced",
        about: "TCP and UDP: byte stream vs datagrams, flow control vs loss, Nagle, 65,507 B",
        run: tcp_vs_udp::run,
        child: Some(tcp_vs_udp::child),
    },
    Topic {
        name: "zero-copy",
        level: "advanced",
        about:
            "zero-copy: read/write vs vmsplice, splice, sendfile, MSG_ZEROCOPY (copied on loopback)",
        run: zero_copy::run,
        child: None,
    },
    Topic {
        name: "server",
        level: "advanced",
        about: "ipckit serve: a master and 2 workers; kill -9, reload (HUP), graceful stop (QUIT)",
        run: server::run,
        child: None,
    },
    Topic {
        name: "low-latency",
        level: "advanced",
        about: "the low-latency recipe step by step: pinning, spinning, SCHED_FIFO, mlockall",
        run: low_latency::run,
        child: Some(low_latency::child),
    },
];

/// Runs `ipckit demo`.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let Some(name) = &args.topic else {
        return list_topics();
    };
    let Some(topic) = TOPICS.iter().find(|t| t.name == name) else {
        let names: Vec<_> = TOPICS.iter().map(|t| t.name).collect();
        return Err(UserError::new(format!(
            "unknown demo topic '{name}' (topics: {})",
            names.join(", ")
        ))
        .into());
    };
    let run = topic.run;
    if args.size.is_some() && name != "cow-snapshot" {
        return Err(UserError::new("--size applies to the cow-snapshot demo only").into());
    }
    for (set, opt) in [
        (args.rate.is_some(), "--rate"),
        (args.consume.is_some(), "--consume"),
        (args.pipe_size.is_some(), "--pipe-size"),
    ] {
        if set && name != "stream" {
            return Err(UserError::new(format!("{opt} applies to the stream demo only")).into());
        }
    }
    if let Some(role) = &args.child {
        // A demo whose second process is a fork, not this binary again, has no child role.
        let Some(child) = topic.child else {
            return Err(UserError::new(format!("the '{name}' demo has no --child role")).into());
        };
        return child(role);
    }
    interrupt::install();
    let r = run(args);
    // Whatever the demo made is dropped (children reaped, objects removed) by now.
    interrupt::exit_if_interrupted();
    match r {
        // The reader of stdout went away (`ipckit demo X | head`): a child that shares the
        // stdout may have stopped first, so the demo fails on the lost peer, not on EPIPE.
        // Either way the demo was cut short on purpose, which is a quiet success.
        Err(_) if stdout_closed() => Ok(()),
        r => r,
    }
}

/// True if stdout is a pipe or socket whose reader has gone: epoll reports an error on it.
fn stdout_closed() -> bool {
    use ipckit::epoll::{Epoll, Events, Interest};
    let Ok(ep) = Epoll::new() else {
        return false;
    };
    // A regular file or /dev/null cannot be watched (EPERM): never a closed pipe.
    if ep.add(io::stdout(), 0, Interest::WRITABLE).is_err() {
        return false;
    }
    let mut events = Events::with_capacity(1);
    matches!(ep.try_wait(&mut events), Ok(n) if n > 0) && events.iter().any(|e| e.is_error())
}

fn list_topics() -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "Demo topics, in learning order (run 'ipckit demo TOPIC [--short]'):"
    )?;
    let mut level = "";
    for (i, t) in TOPICS.iter().enumerate() {
        if t.level != level {
            level = t.level;
            writeln!(out, "{level}:")?;
        }
        writeln!(out, "  {:>2}. {:<12} {}", i + 1, t.name, t.about)?;
    }
    Ok(())
}

/// Starts `ipckit demo TOPIC --child ROLE` (this binary again), letting `prepare` adjust the
/// command (e.g. hand it descriptors) first.
fn spawn_child(
    topic: &str,
    role: &str,
    prepare: impl FnOnce(&mut Command),
) -> anyhow::Result<ChildGuard> {
    let mut cmd = child_command(topic, role)?;
    prepare(&mut cmd);
    Ok(ChildGuard(cmd.spawn()?))
}

/// The command `ipckit demo TOPIC --child ROLE` (this binary again), not started yet.
fn child_command(topic: &str, role: &str) -> anyhow::Result<Command> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["demo", topic, "--child", role]);
    Ok(cmd)
}

/// A child process that is killed and reaped if the demo stops early.
#[derive(Debug)]
struct ChildGuard(Child);

impl ChildGuard {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Waits for the child to exit (at most `limit`), watching for Ctrl-C.
    fn wait(&mut self, limit: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + limit;
        loop {
            if let Some(st) = self.0.try_wait()? {
                anyhow::ensure!(st.success(), "child {} failed: {st}", self.pid());
                return Ok(());
            }
            anyhow::ensure!(!interrupt::interrupted(), "interrupted");
            anyhow::ensure!(
                Instant::now() < until,
                "child {} did not finish",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// SIGINT/SIGTERM/SIGHUP/SIGQUIT as flags: long-running commands wait in short slices and
/// stop when one is set, so their endpoints are dropped and what they created is removed
/// (a closed terminal's SIGHUP and Ctrl-\\'s SIGQUIT included, which would otherwise end the
/// process where it stands and leave its FIFO, socket or queue behind).
pub(crate) mod interrupt {
    use std::sync::atomic::{AtomicBool, Ordering};

    /// SIGINT or SIGTERM (status 130), SIGHUP (129), SIGQUIT (131).
    static INTERRUPTED: AtomicBool = AtomicBool::new(false);
    static HUNG_UP: AtomicBool = AtomicBool::new(false);
    static QUIT: AtomicBool = AtomicBool::new(false);

    /// Installs the handlers (without `SA_RESTART`): the library's async-signal-safe flag
    /// action. A signal that already has a handler (recv's SIGTERM) keeps it. The handlers
    /// last for the rest of the process.
    pub(crate) fn install() {
        use ipckit::signal::{HandlerBuilder, Signal};
        for (sig, flag) in [
            (Signal::SIGINT, &INTERRUPTED),
            (Signal::SIGTERM, &INTERRUPTED),
            (Signal::SIGHUP, &HUNG_UP),
            (Signal::SIGQUIT, &QUIT),
        ] {
            if let Ok(h) = HandlerBuilder::new(sig).flag(flag).install() {
                std::mem::forget(h);
            }
        }
    }

    /// True once one of the signals has arrived.
    pub(crate) fn interrupted() -> bool {
        [&INTERRUPTED, &HUNG_UP, &QUIT]
            .iter()
            .any(|f| f.load(Ordering::SeqCst))
    }

    /// Exits with 128 + the signal's number (130 for SIGINT and SIGTERM) if one came (call
    /// after dropping every endpoint).
    pub(crate) fn exit_if_interrupted() {
        let code = if HUNG_UP.load(Ordering::SeqCst) {
            128 + libc::SIGHUP
        } else if QUIT.load(Ordering::SeqCst) {
            128 + libc::SIGQUIT
        } else if INTERRUPTED.load(Ordering::SeqCst) {
            130
        } else {
            return;
        };
        eprintln!("ipckit: interrupted; cleaned up");
        std::process::exit(code);
    }
}
