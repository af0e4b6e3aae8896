//! The second process: the bench re-executes its own binary as its peer. `control` spawns
//! it and carries the control pipe both sides talk over; `serve` is the peer's main, which runs
//! the peer's side of whatever session the parent asked for.

mod control;
mod serve;

pub use control::peer_main_with;
pub(crate) use control::{expect_ready, GO_TIMEOUT};
pub use control::{spawn, Control, FromPeer, PeerGuard, PeerSpec, Role, ToPeer, PEER_ARG};
pub use serve::peer_main;
