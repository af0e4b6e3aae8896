//! Who may talk to a Unix socket: the [`Policy`] a listener checks every connection's peer
//! credentials against, and a datagram receiver every datagram's `SCM_CREDENTIALS`.

use super::ancillary::Credentials;
use crate::registry;
use crate::sys::socket;
use std::fmt;
use std::os::fd::BorrowedFd;

/// Who may connect to a [`UnixListener`](super::UnixListener): a peer is let in if any rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    any: bool,
    uids: Vec<u32>,
    gids: Vec<u32>,
}

impl Default for Policy {
    /// [`Policy::same_uid`].
    fn default() -> Self {
        Policy::same_uid()
    }
}

impl Policy {
    /// Only peers running as our own effective uid (the default).
    pub fn same_uid() -> Policy {
        Policy::uids([registry::euid()])
    }

    /// Peers whose effective uid is one of `uids`.
    pub fn uids(uids: impl IntoIterator<Item = u32>) -> Policy {
        Policy {
            any: false,
            uids: uids.into_iter().collect(),
            gids: Vec::new(),
        }
    }

    /// Peers whose effective gid, or one of whose supplementary groups (`SO_PEERGROUPS`), is
    /// one of `gids`.
    pub fn gids(gids: impl IntoIterator<Item = u32>) -> Policy {
        Policy {
            any: false,
            uids: Vec::new(),
            gids: gids.into_iter().collect(),
        }
    }

    /// Anyone who can reach the socket (for a socket file: whom its mode lets connect).
    pub fn any() -> Policy {
        Policy {
            any: true,
            uids: Vec::new(),
            gids: Vec::new(),
        }
    }

    /// Peers that either policy lets in.
    #[must_use]
    pub fn or(mut self, other: Policy) -> Policy {
        self.any |= other.any;
        self.uids.extend(other.uids);
        self.gids.extend(other.gids);
        self
    }

    /// True if the peer `cred` of the connected `socket` is let in. The supplementary groups
    /// are only asked for when a gid rule exists and the primary gid does not match.
    pub fn allows(&self, cred: &Credentials, socket: BorrowedFd<'_>) -> bool {
        if self.any || self.uids.contains(&cred.uid) || self.gids.contains(&cred.gid) {
            return true;
        }
        !self.gids.is_empty()
            && socket::peer_groups(socket)
                .is_ok_and(|groups| groups.iter().any(|g| self.gids.contains(g)))
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.any {
            return f.write_str("any peer");
        }
        let mut parts = Vec::new();
        if !self.uids.is_empty() {
            parts.push(format!("uid {:?}", self.uids));
        }
        if !self.gids.is_empty() {
            parts.push(format!("gid {:?}", self.gids));
        }
        if parts.is_empty() {
            return f.write_str("no peer");
        }
        write!(f, "peers of {}", parts.join(" or "))
    }
}
