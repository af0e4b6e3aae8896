//! # ipckit
//!
//! Every way Linux processes talk, behind one trait.
//!
//! (Crate docs are completed in a later commit.)
#![deny(unsafe_code, missing_docs)]

mod error;
mod sys;
mod transport;
mod wait;

pub use error::{RecvError, SendError};
pub use transport::{Mechanism, Notify, PeerInfo, RawHandle, Transport};
pub use wait::{Deadline, Wait};
