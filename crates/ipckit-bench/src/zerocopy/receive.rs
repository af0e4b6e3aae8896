//! The receiving peer of a zero-copy row: reads one message at a time into one buffer and
//! checks its header and every word.

use super::session::wait_ready;
use super::{file_slots, Path};
use crate::libc_only;
use crate::pattern;
use crate::peer::{Control, FromPeer, PeerSpec, ToPeer, GO_TIMEOUT};
use crate::scenario::RecvTotals;
use crate::sys;
use ipckit::Wait;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Instant;

/// The descriptor a zero-copy row's peer reads from, named in its spec as `fd:N`.
pub(crate) fn peer_fd(spec: &PeerSpec) -> io::Result<RawFd> {
    spec.address
        .strip_prefix("fd:")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad zero-copy address {}", spec.address)))
}

/// The receiving peer of a zero-copy row (`ipckit __peer` with a row name as mechanism):
/// reads exactly one message at a time into one buffer and checks header and words.
pub(crate) fn serve(spec: &PeerSpec, p: Path, fd: OwnedFd, ctl: &mut Control) -> io::Result<()> {
    let wait = Wait::parse(&spec.wait).ok_or_else(|| io::Error::other("bad wait"))?;
    sys::set_nonblocking(fd.as_fd(), wait.spins())?;
    let size = spec
        .max_msg_size
        .ok_or_else(|| io::Error::other("zero-copy peer without a size"))?;
    ctl.send(&FromPeer::Ready { max_msg_size: size })?;
    let ToPeer::Go { tput_size, .. } = ctl.recv(GO_TIMEOUT)?;
    if tput_size != size {
        return Err(io::Error::other("size changed between ready and go"));
    }
    let slots = p.serves_a_file().then(|| file_slots(size) as u64);
    let totals = receive(fd.as_fd(), size, slots, spec.touch, wait)?;
    ctl.send(&FromPeer::TputDone(totals))?;
    Ok(())
}

/// Reads messages of `size` bytes until the end marker; message `i` must carry header
/// `i mod slots` (file rows) or `i` (masked), and the pattern that header seeds.
fn receive(
    fd: BorrowedFd<'_>,
    size: usize,
    slots: Option<u64>,
    touch: bool,
    wait: Wait,
) -> io::Result<RecvTotals> {
    let mask = pattern::seq_mask(size);
    let end = pattern::end_bit(size);
    // One message at a time, into one reused buffer (cache-hot), as a consumer would.
    let mut buf = vec![0u8; size];
    let mut t = RecvTotals::default();
    let cpu0 = libc_only::thread_cpu_ns();
    let mut i = 0u64;
    loop {
        let mut have = 0usize;
        let mut since = None;
        while have < size {
            match sys::read(fd, &mut buf[have..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "sender gone")),
                Ok(n) => {
                    have += n;
                    since = None;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_ready(
                    fd,
                    libc_only::POLLIN,
                    wait,
                    *since.get_or_insert_with(Instant::now),
                )?,
                Err(e) => return Err(e),
            }
        }
        let h = pattern::read_header(&buf);
        if h & end != 0 {
            t.last_recv_ns = sys::mono_ns();
            break;
        }
        let want = match slots {
            Some(k) => i % k,
            None => i & mask,
        };
        if h != want || (touch && !pattern::verify(&buf, h)) {
            t.errors += 1;
            if t.first_error.is_none() {
                t.first_error = Some(if h != want {
                    format!("message {i}: header {h}, expected {want}")
                } else {
                    format!("message {i} (header {h}) is corrupted")
                });
            }
        }
        i += 1;
        t.received += 1;
        t.bytes += size as u64;
    }
    t.cpu_ns = libc_only::thread_cpu_ns().saturating_sub(cpu0);
    Ok(t)
}
