//! A worker process as the master sees it: how one is started (this binary re-executed as
//! `serve --worker`, with a [`WorkerSpec`] and only its listening sockets and the status
//! board inherited), what the master keeps of it, and how its end reads in the log.

use super::listeners::Listeners;
use crate::config::Config;
use crate::status::StatusBoard;
use crate::worker::WorkerSpec;
use ipckit::signal::Signal;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Instant;

/// A worker process the master started and watches (its pidfd is in the master's epoll).
pub(super) struct Worker {
    pub(super) child: Child,
    pub(super) pidfd: OwnedFd,
    pub(super) idx: usize,
    pub(super) slot: usize,
    pub(super) generation: u64,
    pub(super) started: Instant,
    pub(super) quit_at: Option<Instant>,
    pub(super) killed: bool,
    /// For a replacement: when its predecessor's death was seen, until it publishes its pid.
    pub(super) replacing: Option<Instant>,
}

impl Worker {
    /// Starts worker `idx` of generation `generation` in board slot `slot`: `exe` re-executed
    /// as `serve --worker` with `config`, the sockets of `listeners` for `idx`, and `board`.
    pub(super) fn spawn(
        exe: &Path,
        listeners: &Listeners,
        board: &StatusBoard,
        config: &Config,
        idx: usize,
        slot: usize,
        generation: u64,
    ) -> io::Result<Worker> {
        let mut fds = listeners.for_worker(idx);
        let spec = WorkerSpec {
            listeners: fds.iter().map(AsRawFd::as_raw_fd).collect(),
            status_fd: board.as_fd().as_raw_fd(),
            slot,
            generation,
            config: config.clone(),
            // Workers are started from this, the master's only thread: PR_SET_PDEATHSIG
            // fires when the forking thread ends, which is when the master does.
            master_pid: Some(std::process::id()),
        };
        fds.push(board.as_fd());
        let json = serde_json::to_string(&spec).map_err(io::Error::other)?;
        let mut cmd = Command::new(exe);
        cmd.args(["serve", "--worker"])
            .env(WorkerSpec::ENV, json)
            .stdin(Stdio::null());
        ipckit::pipe::inherit_only(&mut cmd, &fds);
        let mut child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("starting a worker ({}): {e}", exe.display()),
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
        Ok(Worker {
            child,
            pidfd,
            idx,
            slot,
            generation,
            started: Instant::now(),
            quit_at: None,
            killed: false,
            replacing: None,
        })
    }
}

/// How a worker's end reads in the log.
pub(super) fn describe(s: &io::Result<ExitStatus>) -> String {
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
