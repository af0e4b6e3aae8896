//! Error types for the transport operations.
//!
//! `send`, `try_send` and `send_timeout` share [`SendError`]; the variants a call can return
//! are listed on each method. Likewise [`RecvError`] for the receive side. Both convert into
//! `io::Error` for callers that only want `?`.

use std::fmt;
use std::io;

/// Why a message was not sent. In every case but [`SendError::Io`] nothing was sent.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// The message is longer than the endpoint's maximum; nothing was sent.
    TooLarge {
        /// Length of the rejected message.
        len: usize,
        /// The endpoint's maximum message size.
        max: usize,
    },
    /// `try_send`: no room now; nothing was sent.
    Full,
    /// `send_timeout`: the deadline passed before there was room; nothing was sent.
    Timeout,
    /// The peer closed its end, exited or was killed.
    PeerGone,
    /// Any other OS error.
    Io(io::Error),
}

/// Why no message was received.
#[derive(Debug)]
#[non_exhaustive]
pub enum RecvError {
    /// `try_recv`: nothing waiting.
    Empty,
    /// `recv_timeout`: nothing arrived before the deadline.
    Timeout,
    /// The peer closed its end, exited or was killed, and every message it sent has been read.
    PeerGone,
    /// The waiting message needs a larger buffer; it was left in place, unread.
    BufferTooSmall {
        /// Bytes needed to receive the waiting message.
        needed: usize,
    },
    /// Any other OS error, or a peer that broke the framing (`InvalidData`).
    Io(io::Error),
}

/// What the wait loop needs from an error type.
pub(crate) trait WaitError: From<io::Error> {
    fn would_block() -> Self;
    fn timed_out() -> Self;
    fn peer_gone() -> Self;
}

impl WaitError for SendError {
    fn would_block() -> Self {
        SendError::Full
    }
    fn timed_out() -> Self {
        SendError::Timeout
    }
    fn peer_gone() -> Self {
        SendError::PeerGone
    }
}

impl WaitError for RecvError {
    fn would_block() -> Self {
        RecvError::Empty
    }
    fn timed_out() -> Self {
        RecvError::Timeout
    }
    fn peer_gone() -> Self {
        RecvError::PeerGone
    }
}

fn is_peer_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPIPE | libc::ECONNRESET | libc::ECONNREFUSED | libc::ENOTCONN | libc::EIDRM)
    )
}

impl From<io::Error> for SendError {
    fn from(e: io::Error) -> Self {
        if is_peer_gone(&e) {
            SendError::PeerGone
        } else {
            SendError::Io(e)
        }
    }
}

impl From<io::Error> for RecvError {
    fn from(e: io::Error) -> Self {
        if is_peer_gone(&e) {
            RecvError::PeerGone
        } else {
            RecvError::Io(e)
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::TooLarge { len, max } => {
                write!(
                    f,
                    "message of {len} bytes exceeds the maximum of {max} bytes; nothing sent"
                )
            }
            SendError::Full => f.write_str("no room to send now"),
            SendError::Timeout => f.write_str("timed out waiting for room to send"),
            SendError::PeerGone => f.write_str("peer is gone (closed, exited or killed)"),
            SendError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Empty => f.write_str("no message waiting"),
            RecvError::Timeout => f.write_str("timed out waiting for a message"),
            RecvError::PeerGone => f.write_str("peer is gone (closed, exited or killed)"),
            RecvError::BufferTooSmall { needed } => {
                write!(
                    f,
                    "the waiting message needs a buffer of {needed} bytes; it was left unread"
                )
            }
            RecvError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SendError {}
impl std::error::Error for RecvError {}

impl From<SendError> for io::Error {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Io(e) => e,
            SendError::TooLarge { .. } => {
                io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
            }
            SendError::Full => io::Error::new(io::ErrorKind::WouldBlock, e.to_string()),
            SendError::Timeout => io::Error::new(io::ErrorKind::TimedOut, e.to_string()),
            SendError::PeerGone => io::Error::new(io::ErrorKind::BrokenPipe, e.to_string()),
        }
    }
}

impl From<RecvError> for io::Error {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Io(e) => e,
            RecvError::Empty => io::Error::new(io::ErrorKind::WouldBlock, e.to_string()),
            RecvError::Timeout => io::Error::new(io::ErrorKind::TimedOut, e.to_string()),
            RecvError::PeerGone => io::Error::new(io::ErrorKind::UnexpectedEof, e.to_string()),
            RecvError::BufferTooSmall { .. } => {
                io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
            }
        }
    }
}

/// Shorthand for an `InvalidInput` error with a message.
pub(crate) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}
