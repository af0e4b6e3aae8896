//! Unix-domain sockets beyond a connected pair: listeners that check who connects before
//! reading a byte, socket files made safely and reclaimed when stale.

pub mod listener;

pub use listener::{ListenerBuilder, PeerCred, Policy, Rejection, UnixListener};
