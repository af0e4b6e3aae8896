//! # ipckit
//!
//! Every way Linux processes talk, behind one trait.
//!
//! (Crate docs are completed in a later commit.)
#![deny(unsafe_code, missing_docs)]

pub mod connect;
mod dgram;
mod error;
pub mod eventfd;
pub mod fifo;
pub mod framing;
pub mod mq;
mod peer;
pub mod pipe;
pub mod registry;
mod stream;
mod sys;
mod transport;
mod wait;

pub use dgram::DgramEndpoint;
pub use error::{RecvError, SendError};
pub use stream::{Framing, StreamEndpoint, DEFAULT_STREAM_MAX, STREAM_MAX_LIMIT};
pub use sys::fd::count_open_fds;
pub use sys::proc::{is_alive, start_time};
pub use transport::{Mechanism, Notify, PeerInfo, RawHandle, Transport};
pub use wait::{Deadline, Wait};
