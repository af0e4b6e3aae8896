//! Knowing the process at the other end: the hello that ipckit endpoints exchange on
//! mechanisms with no connection of their own (datagram sockets, message queues), and the
//! pidfd that watches the peer afterwards.

use crate::sys::proc;
use crate::transport::PeerInfo;
use std::os::fd::OwnedFd;

/// Magic that opens a hello message.
pub(crate) const HELLO_MAGIC: &[u8; 8] = b"IPCKIT\x01H";
/// Length of a hello message.
pub(crate) const HELLO_LEN: usize = 8 + 4 + 8 + 16 + 8;

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

/// Who a process is: pid, start time, which boot (kernel) it runs under, and which pid
/// namespace its pid is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) pid: u32,
    pub(crate) start: u64,
    pub(crate) boot: [u8; 16],
    pub(crate) pidns: u64,
}

/// Inode of this process's pid namespace: two processes with the same boot id and the same
/// namespace inode see the same pids.
pub(crate) fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid")
        .map(|m| m.ino())
        .unwrap_or(0)
}

impl Hello {
    pub(crate) fn mine() -> Hello {
        let pid = proc::getpid();
        Hello {
            pid,
            start: proc::start_time(pid).unwrap_or(0),
            boot: proc::boot_id(),
            pidns: pid_namespace(),
        }
    }

    pub(crate) fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[..8].copy_from_slice(HELLO_MAGIC);
        b[8..12].copy_from_slice(&self.pid.to_le_bytes());
        b[12..20].copy_from_slice(&self.start.to_le_bytes());
        b[20..36].copy_from_slice(&self.boot);
        b[36..44].copy_from_slice(&self.pidns.to_le_bytes());
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
            pidns: u64::from_le_bytes(b[36..44].try_into().ok()?),
        })
    }
}

/// The hello exchange of a queue pair, over the pair itself: the client speaks first, the
/// server answers. Waits by blocking until `deadline` whatever the endpoint's strategy.
pub(crate) fn exchange_hello(
    ep: &mut dyn crate::Transport,
    client: bool,
    deadline: crate::Deadline,
) -> std::io::Result<Hello> {
    let wait = ep.wait_strategy();
    ep.set_wait_strategy(crate::Wait::Block);
    // The strategy comes back on every path: a server whose accept timed out keeps its
    // endpoint for the next try.
    let r = exchange_hello_blocking(ep, client, deadline);
    ep.set_wait_strategy(wait);
    r
}

fn exchange_hello_blocking(
    ep: &mut dyn crate::Transport,
    client: bool,
    deadline: crate::Deadline,
) -> std::io::Result<Hello> {
    use std::io::{Error, ErrorKind};
    let mine = Hello::mine().encode();
    if client {
        ep.send_deadline(&mine, deadline)?;
    }
    let mut buf = vec![0u8; ep.max_msg_size().max(HELLO_LEN)];
    let n = ep.recv_deadline(&mut buf, deadline).map_err(|e| match e {
        crate::RecvError::Timeout if client => Error::new(
            ErrorKind::TimedOut,
            "the peer did not answer the hello in time",
        ),
        crate::RecvError::Timeout => Error::new(ErrorKind::TimedOut, "no peer connected in time"),
        e => e.into(),
    })?;
    let hello = Hello::decode(&buf[..n]).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidData,
            "the peer's first message was not an ipckit hello",
        )
    })?;
    if !client {
        ep.send_deadline(&mine, deadline)?;
    }
    Ok(hello)
}

/// Opens a pidfd on the peer named by `hello`, if it shares our kernel and pid namespace.
///
/// The descriptor returned becomes readable when the peer is gone. If the peer is already
/// gone when we look (no such pid, or the pid now belongs to a process with another start
/// time), it is an eventfd that is readable from the start, so every wait reports the peer
/// gone instead of watching an unrelated process or nothing at all.
pub(crate) fn watch(hello: &Hello) -> (Option<PeerInfo>, Option<OwnedFd>) {
    if hello.boot != proc::boot_id() || hello.pidns != pid_namespace() {
        // Another machine or pid namespace: its pid means nothing here; only the protocol
        // (goodbye, EOF, errors) can tell.
        return (None, None);
    }
    let info = Some(PeerInfo {
        pid: hello.pid,
        watched: true,
    });
    match proc::pidfd_open(hello.pid) {
        Ok(fd) if proc::is_alive(hello.pid, hello.start) => (info, Some(fd)),
        Err(e) if e.raw_os_error() != Some(libc::ESRCH) => {
            // pidfd_open is unavailable (kernels before 5.3): unwatched.
            (
                Some(PeerInfo {
                    pid: hello.pid,
                    watched: false,
                }),
                None,
            )
        }
        // Gone already, or the pid was reused by another process.
        _ => (info, gone_marker()),
    }
}

/// A thread asleep in `poll` on a peer's pidfd. If the peer dies first it runs `on_death`
/// (given the stop descriptor, readable once the watcher is being dropped, for actions that
/// repeat); dropping the watcher stops and joins the thread, so nothing it touches may go away
/// before it.
#[derive(Debug)]
pub(crate) struct Watcher {
    stop: OwnedFd,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    pub(crate) fn start(
        name: &str,
        pidfd: OwnedFd,
        on_death: impl FnOnce(std::os::fd::BorrowedFd<'_>) + Send + 'static,
    ) -> std::io::Result<Watcher> {
        use crate::sys::fd as sysfd;
        use std::os::fd::AsFd;
        let stop = crate::sys::pipe::eventfd(false)?;
        let stop_w = sysfd::dup(stop.as_fd())?;
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let ready = sysfd::poll(
                    &[
                        (pidfd.as_fd(), libc::POLLIN),
                        (stop_w.as_fd(), libc::POLLIN),
                    ],
                    None,
                );
                if matches!(ready, Ok(sysfd::Ready::Fd(0))) {
                    on_death(stop_w.as_fd());
                }
            })?;
        Ok(Watcher {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        use std::os::fd::AsFd;
        let _ = crate::sys::fd::write(self.stop.as_fd(), &1u64.to_ne_bytes());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A descriptor that polls readable at once: stands in for the pidfd of a peer known dead.
fn gone_marker() -> Option<OwnedFd> {
    use std::os::fd::AsFd;
    let fd = crate::sys::pipe::eventfd(false).ok()?;
    crate::sys::fd::write(fd.as_fd(), &1u64.to_ne_bytes()).ok()?;
    Some(fd)
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
