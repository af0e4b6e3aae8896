//! Knowing the process at the other end: the hello that ipckit endpoints exchange on
//! mechanisms with no connection of their own (datagram sockets, message queues), and the
//! pidfd that watches the peer afterwards.

use crate::sys::proc;
use crate::transport::PeerInfo;
use std::os::fd::OwnedFd;

/// Magic that opens a hello message.
pub(crate) const HELLO_MAGIC: &[u8; 8] = b"IPCKIT\x01H";
/// Length of a hello message.
pub(crate) const HELLO_LEN: usize = 8 + 4 + 8 + 16;

/// Magic of the goodbye an endpoint sends when it is dropped, so that a peer on a mechanism
/// without a connection learns the end at once instead of at process exit.
pub(crate) const BYE_MAGIC: &[u8; 8] = b"IPCKIT\x01B";

/// The goodbye message.
pub(crate) fn bye() -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(BYE_MAGIC);
    b[8..].copy_from_slice(&proc::getpid().to_le_bytes());
    b
}

/// True if `m` is a goodbye from `peer` (or from anyone, when the pid is unknown).
pub(crate) fn is_bye(m: &[u8], peer: Option<u32>) -> bool {
    m.len() == 12 && &m[..8] == BYE_MAGIC && peer.is_none_or(|p| m[8..12] == p.to_le_bytes())
}

/// Who a process is: pid, start time, and which boot (kernel) it runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) pid: u32,
    pub(crate) start: u64,
    pub(crate) boot: [u8; 16],
}

impl Hello {
    pub(crate) fn mine() -> Hello {
        let pid = proc::getpid();
        Hello {
            pid,
            start: proc::start_time(pid).unwrap_or(0),
            boot: proc::boot_id(),
        }
    }

    pub(crate) fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[..8].copy_from_slice(HELLO_MAGIC);
        b[8..12].copy_from_slice(&self.pid.to_le_bytes());
        b[12..20].copy_from_slice(&self.start.to_le_bytes());
        b[20..36].copy_from_slice(&self.boot);
        b
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Hello> {
        if b.len() != HELLO_LEN || &b[..8] != HELLO_MAGIC {
            return None;
        }
        let mut boot = [0u8; 16];
        boot.copy_from_slice(&b[20..36]);
        Some(Hello {
            pid: u32::from_le_bytes(b[8..12].try_into().ok()?),
            start: u64::from_le_bytes(b[12..20].try_into().ok()?),
            boot,
        })
    }
}

/// Opens a pidfd on the peer named by `hello`, if it runs on this kernel and is the same
/// process (pid and start time) that said hello.
pub(crate) fn watch(hello: &Hello) -> (Option<PeerInfo>, Option<OwnedFd>) {
    if hello.boot != proc::boot_id() {
        // Another machine: its pid means nothing here; only the protocol can tell.
        return (None, None);
    }
    match proc::pidfd_open(hello.pid) {
        Ok(fd) if proc::is_alive(hello.pid, hello.start) => (
            Some(PeerInfo {
                pid: hello.pid,
                watched: true,
            }),
            Some(fd),
        ),
        // It already exited (or pidfd is unavailable): report it watched-but-gone by keeping
        // the pid; the first wait will find it gone through `is_alive`.
        Ok(fd) => (
            Some(PeerInfo {
                pid: hello.pid,
                watched: true,
            }),
            Some(fd),
        ),
        Err(_) => (
            Some(PeerInfo {
                pid: hello.pid,
                watched: false,
            }),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_roundtrip() {
        let h = Hello::mine();
        assert_eq!(Hello::decode(&h.encode()), Some(h));
        assert_eq!(Hello::decode(b"short"), None);
    }
}
