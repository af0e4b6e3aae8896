//! Unix domain sockets in depth: listeners that check who connects before reading a byte,
//! socket files made safely and reclaimed when stale ([`UnixListener`]); passing descriptors
//! between processes (`SCM_RIGHTS`), the sender's credentials on each message
//! (`SCM_CREDENTIALS`) and the peer's on a connection (`SO_PEERCRED`), over a hand-written,
//! property-tested control-message codec ([`ancillary`]).

pub mod ancillary;
mod fd_passing;
mod listener;
mod policy;

pub use ancillary::Credentials;
pub use fd_passing::{
    endpoint_socket, own_credentials, peer_credentials, recv_channel, recv_fd, recv_with_fds,
    recv_with_fds_timeout, send_channel, send_fd, send_with_credentials, send_with_fds,
    set_pass_credentials, set_pass_pidfd, Passable, Received,
};
pub(crate) use listener::bind_socket;
pub use listener::{ListenerBuilder, Rejection, UnixListener};
pub use policy::Policy;
