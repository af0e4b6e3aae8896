//! `ipckit serve`: an nginx-style HTTP server. A master process owns the listening sockets
//! and runs N worker processes that inherit them; each worker serves HTTP/1.1 from an
//! edge-triggered epoll loop; signals control it with nginx's meanings.
//!
//! - [`config`]: what to serve and how (command-line flags and a config file).
//! - [`master`]: the master process: listeners, workers, signals, reload, status.
//! - [`worker`]: one worker process: the epoll loop, HTTP, static files.
//! - [`http`]: the request parser and precomputed responses (no I/O; property-tested).
//! - [`status`]: the counters workers publish in a shared-memory segment.
#![deny(unsafe_code, missing_docs)]

pub mod config;
pub mod http;
pub mod master;
pub mod status;
pub mod worker;
