//! `ipckit demo`: walks through a mechanism with two real processes, saying what each does,
//! and ends with one measured number.
//!
//! The second process is this same binary, re-executed as `ipckit demo TOPIC --child ROLE`
//! (or, in `cow-snapshot`, a fork of the first, which is the point of that demo).
//! Every demo cleans up after itself and stops cleanly on Ctrl-C (exit status 130).

#[path = "demo_cow.rs"]
mod cow;
#[path = "demo_fd_pass.rs"]
mod fd_pass;
#[path = "demo_fifo.rs"]
mod fifo;
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

/// One topic: its name, what it teaches, and its walk-through if written.
struct Topic {
    name: &'static str,
    about: &'static str,
    run: Option<fn(&DemoArgs) -> anyhow::Result<()>>,
    child: Option<fn(&str) -> anyhow::Result<()>>,
}

/// The topics in learning order.
const TOPICS: &[Topic] = &[
    Topic {
        name: "pipe",
        about: "anonymous pipes: a parent and the child it spawns, round trips",
        run: Some(pipe::run),
        child: Some(pipe::child),
    },
    Topic {
        name: "fifo",
        about: "named FIFOs: open rules, end-of-file after the last writer, reopening",
        run: Some(fifo::run),
        child: Some(fifo::child),
    },
    Topic {
        name: "pipeline",
        about: "shell pipelines without a shell: a | b | c, PIPESTATUS, SIGPIPE, pipefail",
        run: Some(pipeline_demo::run),
        child: None,
    },
    Topic {
        name: "stream",
        about: "streaming with backpressure: a fast downloader blocks on a slow player",
        run: Some(stream::run),
        child: Some(stream::child),
    },
    Topic {
        name: "uds",
        about: "Unix stream sockets: connections and peer credentials",
        run: None,
        child: None,
    },
    Topic {
        name: "uds-dgram",
        about: "Unix datagram and seqpacket sockets: message boundaries",
        run: None,
        child: None,
    },
    Topic {
        name: "tcp-vs-udp",
        about: "TCP and UDP: byte stream vs datagrams, flow control vs loss, Nagle, 65,507 B",
        run: Some(tcp_vs_udp::run),
        child: Some(tcp_vs_udp::child),
    },
    Topic {
        name: "mq-priority",
        about: "POSIX message queues: the highest priority is received first",
        run: Some(mq_priority::run),
        child: Some(mq_priority::child),
    },
    Topic {
        name: "mq-sysv",
        about: "System V queues: receiving by message type",
        run: None,
        child: None,
    },
    Topic {
        name: "eventfd",
        about: "eventfd: a counter, not a message carrier",
        run: None,
        child: None,
    },
    Topic {
        name: "signals",
        about: "signals: sigaction vs signalfd, real-time signals queue, standard ones coalesce",
        run: Some(signals::run),
        child: Some(signals::child),
    },
    Topic {
        name: "shutdown",
        about: "graceful shutdown: drain in-flight work, reload on HUP, force on a second TERM",
        run: Some(shutdown::run),
        child: Some(shutdown::child),
    },
    Topic {
        name: "shm-ring",
        about: "shared memory rings: zero-copy messages, spinning vs blocking waits",
        run: Some(shm_ring::run),
        child: Some(shm_ring::child),
    },
    Topic {
        name: "cow-snapshot",
        about: "fork copy-on-write: snapshot a table while it takes writes (Redis BGSAVE)",
        run: Some(cow::run),
        child: None,
    },
    Topic {
        name: "fd-pass",
        about: "passing descriptors (SCM_RIGHTS): a file, a pipe and a memfd to a child",
        run: Some(fd_pass::run),
        child: Some(fd_pass::child),
    },
    Topic {
        name: "zero-copy",
        about:
            "zero-copy: read/write vs vmsplice, splice, sendfile, MSG_ZEROCOPY (copied on loopback)",
        run: Some(zero_copy::run),
        child: None,
    },
    Topic {
        name: "server",
        about: "ipckit serve: a master and 2 workers; kill -9, reload (HUP), graceful stop (QUIT)",
        run: Some(server::run),
        child: None,
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
    let Some(run) = topic.run else {
        return Err(UserError::new(format!("the '{name}' demo is not written yet")).into());
    };
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
    r
}

fn list_topics() -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "Demo topics, in learning order (run 'ipckit demo TOPIC [--short]'):"
    )?;
    for (i, t) in TOPICS.iter().enumerate() {
        let note = if t.run.is_some() {
            ""
        } else {
            " (not written yet)"
        };
        writeln!(out, "  {:>2}. {:<12} {}{note}", i + 1, t.name, t.about)?;
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

/// SIGINT/SIGTERM as a flag: long-running commands wait in short slices and stop when it is
/// set, so their endpoints are dropped and what they created is removed.
pub(crate) mod interrupt {
    use std::sync::atomic::{AtomicBool, Ordering};

    static INTERRUPTED: AtomicBool = AtomicBool::new(false);

    /// Installs the handler for SIGINT and SIGTERM (without `SA_RESTART`): the library's
    /// async-signal-safe flag action. The handlers last for the rest of the process.
    pub(crate) fn install() {
        use ipckit::signal::{Action, Handler, HandlerOptions, Signal};
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            if let Ok(h) =
                Handler::install(sig, Action::Flag(&INTERRUPTED), HandlerOptions::default())
            {
                std::mem::forget(h);
            }
        }
    }

    /// True once SIGINT or SIGTERM has arrived.
    pub(crate) fn interrupted() -> bool {
        INTERRUPTED.load(Ordering::SeqCst)
    }

    /// Exits with status 130 if a signal came (call after dropping every endpoint).
    pub(crate) fn exit_if_interrupted() {
        if interrupted() {
            eprintln!("ipckit: interrupted; cleaned up");
            std::process::exit(130);
        }
    }
}
