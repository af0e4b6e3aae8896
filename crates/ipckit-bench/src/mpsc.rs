//! The `shm-mpsc` rows: N producer processes stream into one consumer through
//! `ipckit::shm`'s MPSC queue. Throughput only (a many-to-one queue has no echo path).
//!
//! Every message starts with an 8-byte header, `producer << 56 | seq` (bit 55 marks a
//! producer's end), and its words follow the pattern seeded by that header, so the consumer
//! checks, per message, which producer sent it, that it is that producer's next one, and every
//! word. The rate is bytes received over the time from the start signal to the last message.

use crate::libc_only;
use crate::options::BenchOptions;
use crate::pattern;
use crate::peer::{self, expect_ready, Control, FromPeer, PeerSpec, ToPeer, GO_TIMEOUT};
use crate::session::{Config, Measured};
use crate::sys;
use ipckit::shm::{MpscBuilder, PairBuilder};
use ipckit::Wait;
use std::io;
use std::time::{Duration, Instant};

const END: u64 = 1 << 55;
const SEQ: u64 = END - 1;

/// Slots of `size` bytes holding as many payload bytes as `ring_capacity`, the capacity of the
/// `shm` ring row beside this one, so the two rows queue alike: the largest power of two of
/// slots that fits (at least 4, at most the queue's maximum).
fn slots_for(size: usize, ring_capacity: usize) -> usize {
    let fit = (ring_capacity / size.max(1)).max(1);
    (1usize << fit.ilog2()).clamp(4, ipckit::shm::MAX_SLOTS)
}

/// The consumer's side, in the bench process.
pub(crate) fn run(
    cfg: &Config,
    opts: &BenchOptions,
    spec: PeerSpec,
    limit: Duration,
) -> io::Result<Measured> {
    let n = cfg.producers as usize;
    let name = format!("/{}", ipckit::registry::unique_name("bench-mpsc"));
    // The ring's capacity for the same options (`--shm-capacity`, 4 MiB by default, more for
    // a message too large for it), as the `shm` rows get it.
    let pair = PairBuilder::new(&name).max_msg_size(cfg.size);
    let (ring_capacity, _) = match opts.shm_capacity {
        Some(c) => pair.capacity(c),
        None => pair,
    }
    .ring_size()?;
    let mut rx = MpscBuilder::new(&name)
        .slots(slots_for(cfg.size, ring_capacity))
        .slot_size(cfg.size)
        .wait(cfg.wait)
        .create()?;
    let mut peers = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = spec.clone();
        s.address = name.clone();
        s.producer = Some(i as u32);
        let (guard, mut ctl) = peer::spawn(&mut s, |_| {}, &[], limit)?;
        expect_ready(&mut ctl)?;
        peers.push((guard, ctl));
    }
    sys::pin_current_thread(cfg.cpus[0])?;
    let go = ToPeer::Go {
        lat_size: None,
        tput_size: cfg.size,
    };
    let mut buf = vec![0u8; cfg.size];
    let mut next = vec![0u64; n];
    let mut ended = 0usize;
    let (mut received, mut bytes, mut errors) = (0u64, 0u64, 0u64);
    let mut first_error: Option<String> = None;
    let mut note = |errors: &mut u64, msg: String| {
        *errors += 1;
        if first_error.is_none() {
            first_error = Some(msg);
        }
    };
    let cpu0 = libc_only::thread_cpu_ns();
    let start_ns = sys::mono_ns();
    for (_, ctl) in &mut peers {
        ctl.send(&go)?;
    }
    let mut last_ns = start_ns;
    let deadline = Instant::now() + opts.duration * 4 + Duration::from_secs(20);
    while ended < n {
        let len = match rx.recv_timeout(&mut buf, Duration::from_millis(100)) {
            Ok(len) => len,
            Err(ipckit::RecvError::Timeout) if Instant::now() < deadline => continue,
            Err(e) => return Err(io::Error::other(format!("mpsc receive: {e}"))),
        };
        let msg = &buf[..len];
        let h = pattern::read_header(msg);
        let (id, seq) = ((h >> 56) as usize, h & SEQ);
        if len != cfg.size || id >= n {
            note(
                &mut errors,
                format!(
                    "message of {len} B from producer {id} (expected {} B, < {n})",
                    cfg.size
                ),
            );
            continue;
        }
        if h & END != 0 {
            ended += 1;
            continue;
        }
        last_ns = sys::mono_ns();
        if seq != next[id] {
            note(
                &mut errors,
                format!("producer {id}: expected message {}, got {seq}", next[id]),
            );
        }
        next[id] = seq + 1;
        if opts.touch && !pattern::verify(msg, h) {
            note(
                &mut errors,
                format!("producer {id}: message {seq} is corrupted"),
            );
        }
        received += 1;
        bytes += len as u64;
    }
    let mut cpu = libc_only::thread_cpu_ns().saturating_sub(cpu0);
    for (i, (guard, mut ctl)) in peers.into_iter().enumerate() {
        match ctl.recv::<FromPeer>(Duration::from_secs(10))? {
            FromPeer::SendDone { sent, cpu_ns } => {
                cpu += cpu_ns;
                if sent != next[i] {
                    note(
                        &mut errors,
                        format!("producer {i} sent {sent} messages, {} arrived", next[i]),
                    );
                }
            }
            FromPeer::Error(e) => return Err(io::Error::other(format!("producer {i}: {e}"))),
            other => return Err(io::Error::other(format!("producer {i} sent {other:?}"))),
        }
        guard
            .finish(Duration::from_secs(5))
            .map_err(io::Error::other)?;
    }
    if rx.dropped() > 0 {
        note(
            &mut errors,
            format!("{} claimed slots were lost", rx.dropped()),
        );
    }
    let elapsed = last_ns.saturating_sub(start_ns).max(1) as f64;
    Ok(Measured {
        max_msg_size: rx.max_msg_size(),
        lat_size: None,
        tput_size: cfg.size,
        msgs_per_s: received as f64 / elapsed * 1e9,
        mbps: Some(bytes as f64 / elapsed * 1e3),
        cpu_ns_per_msg: (received > 0).then(|| cpu as f64 / received as f64),
        errors,
        first_error,
        ..Default::default()
    })
}

/// A producer's side, in a peer process.
pub(crate) fn produce(spec: &PeerSpec, wait: Wait, ctl: &mut Control) -> io::Result<()> {
    let id = u64::from(spec.producer.unwrap_or(0));
    let mut tx = MpscBuilder::new(&spec.address).wait(wait).open()?;
    ctl.send(&FromPeer::Ready {
        max_msg_size: tx.max_msg_size(),
    })?;
    let ToPeer::Go { tput_size, .. } = ctl.recv(GO_TIMEOUT)?;
    let mut msg = vec![0u8; tput_size];
    let duration = Duration::from_millis(spec.duration_ms);
    let cpu0 = libc_only::thread_cpu_ns();
    let start = Instant::now();
    let mut seq = 0u64;
    loop {
        let h = id << 56 | seq;
        pattern::write_header(&mut msg, h);
        if spec.touch {
            pattern::fill(&mut msg, h);
        }
        tx.send(&msg).map_err(io::Error::from)?;
        seq += 1;
        if seq.is_multiple_of(16) && start.elapsed() >= duration {
            break;
        }
    }
    pattern::write_header(&mut msg, id << 56 | END | seq);
    tx.send(&msg).map_err(io::Error::from)?;
    ctl.send(&FromPeer::SendDone {
        sent: seq,
        cpu_ns: libc_only::thread_cpu_ns().saturating_sub(cpu0),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_holds_what_the_ring_beside_it_holds() {
        let ring = |size| {
            PairBuilder::new("")
                .max_msg_size(size)
                .ring_size()
                .unwrap()
                .0
        };
        // The default 4 MiB ring: 65,536 slots of 64 B, 64 of 64 KiB (not 1,024 and 64).
        assert_eq!(ring(64), 4 << 20);
        assert_eq!(slots_for(64, ring(64)), 65_536);
        assert_eq!(slots_for(64 * 1024, ring(64 * 1024)), 64);
        // Never more than the ring: 100 B messages get 32,768 slots (3.1 MiB), not 65,536.
        assert_eq!(slots_for(100, 4 << 20), 32_768);
        // A message as large as the ring: still a queue of four.
        assert_eq!(slots_for(4 << 20, 4 << 20), 4);
        assert_eq!(slots_for(1, usize::MAX), ipckit::shm::MAX_SLOTS);
    }
}
