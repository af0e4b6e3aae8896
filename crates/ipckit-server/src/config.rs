//! What to serve and how. (Minimal copy for the worker branch: the master engineer's
//! `config.rs`, with the same field names, replaces it at merge.)

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// How workers share accepting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcceptMode {
    /// One listening socket shared by all workers, registered with `EPOLLEXCLUSIVE`.
    Exclusive,
    /// One `SO_REUSEPORT` socket per worker.
    ReusePort,
}

/// The server's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Number of workers.
    pub workers: usize,
    /// Directory of static files, if any.
    pub root: Option<PathBuf>,
    /// How workers share accepting.
    pub accept: AcceptMode,
    /// Idle keep-alive connections are closed after this long.
    pub keepalive_timeout_ms: u64,
    /// A request header must be complete within this long.
    pub header_timeout_ms: u64,
    /// Largest request header accepted (431 beyond).
    pub max_header_bytes: usize,
    /// Graceful shutdown deadline.
    pub graceful_timeout_ms: u64,
    /// Error log file (stderr if none).
    pub error_log: Option<PathBuf>,
    /// Access log file (off if none).
    pub access_log: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            workers: 1,
            root: None,
            accept: AcceptMode::Exclusive,
            keepalive_timeout_ms: 65_000,
            header_timeout_ms: 10_000,
            max_header_bytes: 8192,
            graceful_timeout_ms: 10_000,
            error_log: None,
            access_log: None,
        }
    }
}
