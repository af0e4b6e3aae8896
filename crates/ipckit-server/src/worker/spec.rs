//! What the master tells a worker: the [`WorkerSpec`], passed as JSON in
//! [`WorkerSpec::ENV`] when the master re-executes its binary as a worker.

use crate::config::Config;
use serde::{Deserialize, Serialize};
use std::io;

/// What the master tells a worker (as JSON in [`WorkerSpec::ENV`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// Inherited listening sockets (descriptor numbers).
    pub listeners: Vec<i32>,
    /// The inherited status board (descriptor number).
    pub status_fd: i32,
    /// This worker's slot in the board.
    pub slot: usize,
    /// The master's generation (reload count) this worker belongs to.
    pub generation: u64,
    /// The configuration.
    pub config: Config,
    /// The master's pid: the worker dies (`SIGKILL`) with it, and exits at once if its
    /// parent is not that process any more ([`ipckit::process::die_with_parent`]). `None`
    /// for a worker run on its own (tests, benchmarks).
    #[serde(default)]
    pub master_pid: Option<u32>,
}

impl WorkerSpec {
    /// The environment variable holding the spec as JSON.
    pub const ENV: &'static str = "IPCKIT_SERVE_WORKER";

    /// The spec from [`WorkerSpec::ENV`]. The descriptors are adopted (with checks) by
    /// [`run`](super::run).
    ///
    /// # Errors
    ///
    /// `NotFound` if the variable is unset, `InvalidData` if it is not a spec, or
    /// `InvalidInput` for a spec with no listener. (The descriptors themselves are checked
    /// when [`run`](super::run) adopts them: not stdio, inherited, a listening TCP socket / a shared
    /// memory file; a failure there is logged and `run` returns 1.)
    pub fn from_env() -> io::Result<WorkerSpec> {
        let v = std::env::var(Self::ENV).map_err(|_| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is not set: a worker is started by the master",
                    Self::ENV
                ),
            )
        })?;
        let spec = Self::from_json(&v)?;
        if spec.listeners.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "worker spec: no listening socket",
            ));
        }
        Ok(spec)
    }

    /// Parses a spec.
    ///
    /// # Errors
    ///
    /// `InvalidData` naming what is wrong.
    pub fn from_json(s: &str) -> io::Result<WorkerSpec> {
        serde_json::from_str(s)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("worker spec: {e}")))
    }

    /// The spec as JSON, for [`WorkerSpec::ENV`].
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a worker spec serializes")
    }
}
