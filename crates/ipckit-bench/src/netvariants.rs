//! Rows that change one socket option of ipckit's TCP and UDP transports, so the report can
//! show what the option does rather than claim it: Nagle's algorithm, socket buffer sizes.
//!
//! These are bench-level variants, not [`Mechanism`]s: the library has one `tcp` (with
//! `TCP_NODELAY`, as every request/response protocol wants) and one `udp` (buffers raised to
//! 4 MiB). A variant runs the same session with the option changed on both ends right after
//! the connection is made, and is named after its base, like `shm-zerocopy`:
//!
//! - `tcp-nagle`: `TCP_NODELAY` off. ipckit writes a frame's header and payload with one
//!   `sendmsg`, and a ping-pong has nothing unacknowledged in flight when the next request
//!   leaves, so Nagle has nothing to hold back: the round trip should match `tcp`.
//! - `tcp-nagle-split`: `TCP_NODELAY` off and each message written with two `write(2)`s (16
//!   bytes, then the rest; the raw loop, which reads exactly the message size). The second
//!   write waits for the ACK of the first, and the receiver delays that ACK (Linux: 40 ms at
//!   least) because it has no reply to piggyback it on yet: the classic write-write-read stall.
//! - `tcp-bigbuf`: `SO_SNDBUF` and `SO_RCVBUF` asked at 4 MiB on both ends. Setting them locks
//!   the sizes (Linux then stops autotuning them); the row reports what the kernel granted.
//! - `udp-defbuf`: UDP with the kernel's default buffers (`net.core.rmem_default`,
//!   `wmem_default`), as a plain `socket(2)` gets them, where `udp` asks for 4 MiB. Under the
//!   throughput phase's flood the smaller receive buffer overflows sooner: more `lost`.

use crate::rows::Skipped;
pub use crate::rows::{NetVariant, SocketBuffers};
use crate::scenario::Channel;
use ipckit::connect::UDP_MAX_V4;
use ipckit::{Mechanism, RawHandle, Transport};
use rustix::net::sockopt;
use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

/// The buffer size `tcp-bigbuf` asks for.
pub const BIG_BUFFER: i32 = 4 << 20;

/// A `tcp-nagle-split` round trip at least this long (ns) is called a delayed-ACK stall: far
/// above any loopback round trip, below Linux's 40 ms minimum delayed ACK.
const STALL_NS: f64 = 10e6;

/// Split point of `tcp-nagle-split`: the size of ipckit's frame header.
const SPLIT_AT: usize = 16;

impl NetVariant {
    /// The options this variant runs with: `tcp-nagle-split` round trips take tens of
    /// milliseconds, so its warm-up and batch are a handful of round trips and its latency
    /// phase lasts at least a second (a few dozen samples instead of 2000 warm-ups that
    /// would take minutes).
    pub fn adjust(self, opts: &crate::options::BenchOptions) -> crate::options::BenchOptions {
        let mut o = opts.clone();
        if self.split_writes() {
            o.warmup = o.warmup.min(3);
            o.batch = o.batch.min(5);
            o.duration = o.duration.max(Duration::from_secs(1));
            o.rate = None;
        }
        o
    }

    fn apply(self, fd: BorrowedFd<'_>) -> io::Result<()> {
        match self {
            NetVariant::TcpNagle | NetVariant::TcpNagleSplit => {
                sockopt::set_tcp_nodelay(fd, false)?;
            }
            NetVariant::TcpBigBuf => {
                sockopt::set_socket_send_buffer_size(fd, BIG_BUFFER as usize)?;
                sockopt::set_socket_recv_buffer_size(fd, BIG_BUFFER as usize)?;
            }
            NetVariant::UdpDefBuf => {
                // The kernel doubles what it is given: half the default gives the default.
                for (send, file, fallback) in [
                    (true, "wmem_default", 212_992),
                    (false, "rmem_default", 212_992),
                ] {
                    let v = std::fs::read_to_string(format!("/proc/sys/net/core/{file}"))
                        .ok()
                        .and_then(|s| s.trim().parse::<i32>().ok())
                        .unwrap_or(fallback);
                    let half = (v / 2) as usize;
                    if send {
                        sockopt::set_socket_send_buffer_size(fd, half)?;
                    } else {
                        sockopt::set_socket_recv_buffer_size(fd, half)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// What the row's note says about the variant, given what it measured (`rtt_p50_ns`: the
    /// round trip's median, when there was a latency phase).
    pub fn note(self, bufs: Option<SocketBuffers>, rtt_p50_ns: Option<f64>) -> String {
        let granted = bufs.map_or_else(String::new, |b| {
            format!(
                " (granted: SO_SNDBUF {} B, SO_RCVBUF {} B)",
                b.sndbuf, b.rcvbuf
            )
        });
        match self {
            NetVariant::TcpNagle => "Nagle on (TCP_NODELAY off); ipckit sends header and payload in one sendmsg and a ping-pong leaves nothing unacknowledged, so the round trip has nothing held back (compare with tcp); in the flood, small messages written while an ACK is outstanding are coalesced into fewer segments".into(),
            NetVariant::TcpNagleSplit => {
                let what = match rtt_p50_ns {
                    Some(r) if r >= STALL_NS => "stalled: the small second write waits for the ACK of the first, which the receiver delays (Linux: at least 40 ms) as it has no reply yet to carry it",
                    Some(_) => "no stall at this size: the second write fills a full segment, which goes at once, and with more than a full segment unacknowledged the receiver ACKs without delay, releasing the tail",
                    None => "no latency phase",
                };
                format!("Nagle on, each message written in two write(2)s (16 B, then the rest), raw loop: {what}; few samples (warm-up 3, batch 5, at least 1 s)")
            }
            NetVariant::TcpBigBuf => format!("SO_SNDBUF/SO_RCVBUF asked at {} B on both ends{granted}; a set buffer is no longer autotuned (tcp's default buffers are)", BIG_BUFFER),
            NetVariant::UdpDefBuf => format!("the kernel's default UDP buffers{granted}, where udp asks for 4 MiB: under the flood more datagrams overflow the receive buffer"),
        }
    }
}

/// A row name: a mechanism, or a variant of one.
///
/// # Errors
///
/// A message listing the names, for a name that is neither.
pub fn parse_row_name(s: &str) -> Result<(Mechanism, Option<NetVariant>), String> {
    if let Some(v) = NetVariant::parse(s) {
        return Ok((v.base(), Some(v)));
    }
    s.parse::<Mechanism>().map(|m| (m, None)).map_err(|e| {
        let names: Vec<&str> = NetVariant::ALL.iter().map(|v| v.name()).collect();
        format!("{e}; or a TCP/UDP variant: {}", names.join(", "))
    })
}

/// The row name of a mechanism or its variant.
pub fn row_name(mech: Mechanism, net: Option<NetVariant>) -> &'static str {
    net.map_or(mech.name(), NetVariant::name)
}

/// Report order: each variant right after its base mechanism when that is measured too,
/// otherwise at the end.
pub fn order(mechs: &[Mechanism], variants: &[NetVariant]) -> Vec<(Mechanism, Option<NetVariant>)> {
    let mut out = Vec::new();
    for &m in mechs {
        out.push((m, None));
        out.extend(
            variants
                .iter()
                .filter(|v| v.base() == m)
                .map(|&v| (m, Some(v))),
        );
    }
    out.extend(
        variants
            .iter()
            .filter(|v| !mechs.contains(&v.base()))
            .map(|&v| (v.base(), Some(v))),
    );
    out
}

fn socket_fd(t: &dyn Transport) -> Option<BorrowedFd<'_>> {
    match t.raw() {
        RawHandle::Fds { read, write } => read.or(write),
        RawHandle::SysV { .. } => None,
    }
}

/// Applies the variant to a connected TCP or UDP endpoint, then reads the buffer sizes the
/// kernel granted. Other mechanisms: nothing to do, `None`.
///
/// # Errors
///
/// The `setsockopt`/`getsockopt` error.
pub fn setup(t: &dyn Transport, net: Option<NetVariant>) -> io::Result<Option<SocketBuffers>> {
    if !matches!(t.mechanism(), Mechanism::Tcp | Mechanism::Udp) {
        return Ok(None);
    }
    let Some(fd) = socket_fd(t) else {
        return Ok(None);
    };
    if let Some(v) = net {
        v.apply(fd)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: setsockopt: {e}", v.name())))?;
    }
    Ok(Some(SocketBuffers {
        sndbuf: sockopt::socket_send_buffer_size(fd)?,
        rcvbuf: sockopt::socket_recv_buffer_size(fd)?,
    }))
}

/// The latency phase of a UDP row over the datagram limit, as a skipped entry: it cannot be
/// measured (the send would fail with `EMSGSIZE`); the row itself measures throughput at the
/// largest datagram.
pub fn udp_latency_skip(
    mech: Mechanism,
    net: Option<NetVariant>,
    wait: &str,
    placement: &str,
    size: usize,
) -> Option<Skipped> {
    (mech == Mechanism::Udp && size > UDP_MAX_V4).then(|| Skipped {
        mechanism: format!("{} latency", row_name(mech, net)),
        wait: wait.into(),
        placement: placement.into(),
        size,
        reason: format!(
            "a UDP/IPv4 datagram carries at most {UDP_MAX_V4} B: sending {size} B fails with EMSGSIZE (the row measures throughput at {UDP_MAX_V4} B)"
        ),
    })
}

/// What a UDP row's note says about the size: the IPv4 limit, and fragmentation.
pub fn udp_size_note(size: usize) -> Option<String> {
    if size > UDP_MAX_V4 {
        Some(format!(
            "latency n/a: {size} B is over UDP/IPv4's {UDP_MAX_V4} B datagram limit (65,535 less the 8-byte UDP and 20-byte IP headers; a larger send fails with EMSGSIZE)"
        ))
    } else if size + 28 > 1500 {
        let mtu = std::fs::read_to_string("/sys/class/net/lo/mtu")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(65_536);
        // Each fragment carries 1,480 B of the IP payload (the UDP header and the data).
        let frags = (size + 8).div_ceil(1480);
        Some(format!(
            "{size} B fits loopback's MTU ({mtu} B) in one packet; on a 1500-byte-MTU NIC it would leave as {frags} IP fragments, and losing any one loses the datagram"
        ))
    } else {
        None
    }
}

/// A [`Channel`] that writes each message in two writes: the first 16 bytes, then the rest
/// (`tcp-nagle-split`). The receiving side reads exactly the message size, so the bytes on
/// the wire are the raw loop's.
#[derive(Debug)]
pub struct SplitWrites<C>(pub C);

impl<C: Channel> Channel for SplitWrites<C> {
    fn prefix(&self) -> usize {
        self.0.prefix()
    }

    fn send(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let pre = self.0.prefix();
        if buf.len() <= pre + 1 {
            return self.0.send(buf);
        }
        let cut = pre + SPLIT_AT.min(buf.len() - pre - 1);
        self.0.send(&mut buf[..cut])?;
        self.0.send(&mut buf[cut..])
    }

    fn recv(&mut self, buf: &mut [u8], expect: usize) -> io::Result<usize> {
        self.0.recv(buf, expect)
    }

    fn recv_timeout(
        &mut self,
        buf: &mut [u8],
        expect: usize,
        timeout: Duration,
    ) -> io::Result<Option<usize>> {
        self.0.recv_timeout(buf, expect, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_mechanisms_still_parse() {
        for v in NetVariant::ALL {
            assert_eq!(parse_row_name(v.name()), Ok((v.base(), Some(v))));
            assert_eq!(row_name(v.base(), Some(v)), v.name());
        }
        for m in Mechanism::ALL {
            assert_eq!(parse_row_name(m.name()), Ok((m, None)));
        }
        let e = parse_row_name("tcp-fast").unwrap_err();
        assert!(e.contains("tcp-nagle"), "{e}");
    }

    #[test]
    fn variants_follow_their_base() {
        use NetVariant::*;
        let o = order(
            &[Mechanism::Tcp, Mechanism::Pipe],
            &[UdpDefBuf, TcpBigBuf, TcpNagle],
        );
        assert_eq!(
            o,
            vec![
                (Mechanism::Tcp, None),
                (Mechanism::Tcp, Some(TcpBigBuf)),
                (Mechanism::Tcp, Some(TcpNagle)),
                (Mechanism::Pipe, None),
                (Mechanism::Udp, Some(UdpDefBuf)),
            ]
        );
    }

    #[test]
    fn udp_notes_name_the_limits() {
        assert!(udp_size_note(64).is_none());
        assert!(udp_size_note(65_536).unwrap().contains("EMSGSIZE"));
        assert!(udp_size_note(65_507).unwrap().contains("45 IP fragments"));
        assert!(udp_size_note(1_472).is_none());
        assert!(udp_size_note(1_473).unwrap().contains("2 IP fragments"));
    }
}
