//! The measured loops, written once over two small traits so that ipckit's transports and the
//! raw-syscall reference loops ([`crate::reference`]) run exactly the same scenario.
//!
//! Buffers carry `prefix()` bytes before the payload (8 for a raw System V `mtype`, 0
//! otherwise) so the raw loops can send in place, without a copy ipckit would not make.

use crate::libc_only;
use crate::pattern;
use crate::stats::new_histogram;
use crate::sys;
use hdrhistogram::Histogram;
use ipckit::{Notify, RecvError, Transport};
use serde::{Deserialize, Serialize};
use std::io;
use std::time::{Duration, Instant};

/// One endpoint that sends and receives whole messages.
pub trait Channel {
    /// Bytes reserved before the payload in every buffer passed to `send`/`recv`.
    fn prefix(&self) -> usize {
        0
    }
    /// Sends `buf[prefix..]` as one message (the prefix bytes may be overwritten).
    fn send(&mut self, buf: &mut [u8]) -> io::Result<()>;
    /// Receives one message into `buf[prefix..]`; returns its length. `expect` is the length
    /// the scenario expects (the raw stream loops read exactly that many bytes).
    fn recv(&mut self, buf: &mut [u8], expect: usize) -> io::Result<usize>;
    /// As `recv`, giving up after `timeout` with `Ok(None)` (used only on lossy transports).
    fn recv_timeout(
        &mut self,
        buf: &mut [u8],
        expect: usize,
        timeout: Duration,
    ) -> io::Result<Option<usize>>;

    /// Sends a message of `len` bytes that `fill` writes. By default `fill` writes into
    /// `scratch[prefix..]` and the message is sent from there (a copy); a zero-copy channel
    /// lets `fill` write straight into the transport's memory instead.
    #[inline]
    fn send_with(
        &mut self,
        scratch: &mut [u8],
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> io::Result<()> {
        copy_send_with(self, scratch, len, fill)
    }

    /// Receives one message and hands it to `look`. By default it is received into
    /// `scratch` (a copy); a zero-copy channel lends the transport's memory instead.
    #[inline]
    fn recv_with<R>(
        &mut self,
        scratch: &mut [u8],
        expect: usize,
        look: impl FnOnce(&[u8]) -> R,
    ) -> io::Result<R> {
        copy_recv_with(self, scratch, expect, look)
    }
}

/// [`Channel::send_with`] through a copy: `fill` writes `scratch[prefix..]`, then `send`.
/// Exposed so a channel that overrides `send_with` can still fall back on it.
#[inline]
pub fn copy_send_with<C: Channel + ?Sized>(
    ch: &mut C,
    scratch: &mut [u8],
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> io::Result<()> {
    let pre = ch.prefix();
    fill(&mut scratch[pre..pre + len]);
    ch.send(&mut scratch[..pre + len])
}

/// [`Channel::recv_with`] through a copy: `recv` into `scratch`, then `look` at it.
#[inline]
pub fn copy_recv_with<C: Channel + ?Sized, R>(
    ch: &mut C,
    scratch: &mut [u8],
    expect: usize,
    look: impl FnOnce(&[u8]) -> R,
) -> io::Result<R> {
    let pre = ch.prefix();
    let n = ch.recv(scratch, expect)?;
    Ok(look(&scratch[pre..pre + n]))
}

/// ipckit's side of [`Channel`].
#[derive(Debug)]
pub struct IpcChannel(pub Box<dyn Transport>);

impl Channel for IpcChannel {
    #[inline]
    fn send(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.0.send(buf).map_err(io::Error::from)
    }
    #[inline]
    fn recv(&mut self, buf: &mut [u8], _expect: usize) -> io::Result<usize> {
        self.0.recv(buf).map_err(io::Error::from)
    }
    fn recv_timeout(
        &mut self,
        buf: &mut [u8],
        _expect: usize,
        timeout: Duration,
    ) -> io::Result<Option<usize>> {
        match self.0.recv_timeout(buf, timeout) {
            Ok(n) => Ok(Some(n)),
            Err(RecvError::Timeout) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// A pair of counters: `add` notifies the peer, `take` waits for the peer's notifications.
pub trait Counter {
    /// Adds `n` to the peer's counter.
    fn add(&mut self, n: u64) -> io::Result<()>;
    /// Waits until our counter is non-zero; takes and returns it.
    fn take(&mut self) -> io::Result<u64>;
}

/// ipckit's side of [`Counter`]: two eventfds, one per direction.
#[derive(Debug)]
pub struct IpcCounter<N: Notify> {
    /// The one we notify.
    pub tx: N,
    /// The one we wait on.
    pub rx: N,
}

impl<N: Notify> Counter for IpcCounter<N> {
    #[inline]
    fn add(&mut self, n: u64) -> io::Result<()> {
        self.tx.notify(n)
    }
    #[inline]
    fn take(&mut self) -> io::Result<u64> {
        self.rx.wait()
    }
}

/// The notification that ends a phase on a counter: far above any count a phase reaches.
pub const COUNTER_END: u64 = 1 << 40;

/// How the latency phase runs.
#[derive(Debug, Clone, Copy)]
pub struct LatencyParams {
    /// Unrecorded round trips first.
    pub warmup: u64,
    /// Length of the recorded phase.
    pub duration: Duration,
    /// Round trips timed together for the batched mean.
    pub batch: u64,
    /// Open loop: sends per second on a fixed schedule.
    pub rate: Option<f64>,
    /// Lossy transport: a lost message is retried instead of waited for.
    pub lossy: bool,
}

/// What the client side of the latency phase measured.
#[derive(Debug)]
pub struct LatencyResult {
    /// One sample per recorded round trip, ns (from the scheduled send time in open loop).
    pub hist: Histogram<u64>,
    /// Mean of `batch` round trips timed with one clock pair, ns.
    pub batched_ns: f64,
    /// Round trips recorded plus batched.
    pub round_trips: u64,
    /// This thread's CPU time over the recorded and batched parts, ns.
    pub cpu_ns: u64,
    /// Round trips lost and retried (lossy transports).
    pub lost: u64,
    /// Echoes that did not match what was sent.
    pub errors: u64,
}

/// What the receiving side of the throughput phase reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RecvTotals {
    /// Messages received and counted (the end marker excluded).
    pub received: u64,
    /// Payload bytes in those messages.
    pub bytes: u64,
    /// Messages that arrived before one already seen (lossy transports).
    pub reordered: u64,
    /// Lost, duplicated, out-of-order (reliable) or corrupted messages.
    pub errors: u64,
    /// The first error, described.
    pub first_error: Option<String>,
    /// `CLOCK_MONOTONIC` of the last receive, ns.
    pub last_recv_ns: u64,
    /// Receiver CPU time over the phase, ns.
    pub cpu_ns: u64,
    /// Counter mechanisms: sum of all notifications received.
    pub sum: u64,
    /// Counter mechanisms: wake-ups (waits that returned).
    pub wakeups: u64,
}

/// What the sending side of the throughput phase did.
#[derive(Debug, Clone, Default)]
pub struct SendTotals {
    /// Messages sent (the end marker excluded).
    pub sent: u64,
    /// `CLOCK_MONOTONIC` just before the first send, ns.
    pub first_send_ns: u64,
    /// Sender CPU time over the phase, ns.
    pub cpu_ns: u64,
}

fn mismatch(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Client side of ping-pong: warm-up, recorded round trips (closed or open loop), a batched
/// block, then the end marker. `size` is the message size; `cap` the receive buffer size.
pub fn latency_client<C: Channel>(
    ch: &mut C,
    size: usize,
    cap: usize,
    p: &LatencyParams,
) -> io::Result<LatencyResult> {
    let pre = ch.prefix();
    let mut tx = vec![0u8; pre + size];
    let mut rx = vec![0u8; pre + cap.max(size)];
    pattern::fill(&mut tx[pre..], 0);
    let mask = pattern::seq_mask(size);
    let mut seq: u64 = 0;
    let mut lost = 0u64;
    let mut errors = 0u64;

    // One round trip: returns after the matching echo.
    let mut round_trip = |ch: &mut C, tx: &mut [u8], rx: &mut [u8], v: u64| -> io::Result<()> {
        pattern::write_header(&mut tx[pre..], v);
        ch.send(tx)?;
        loop {
            let n = if p.lossy {
                match ch.recv_timeout(rx, size, Duration::from_millis(200))? {
                    Some(n) => n,
                    None => {
                        lost += 1;
                        ch.send(tx)?;
                        continue;
                    }
                }
            } else {
                ch.recv(rx, size)?
            };
            let got = pattern::read_header(&rx[pre..pre + n]);
            if n == size && got == v {
                return Ok(());
            }
            if p.lossy && n == size && got != v {
                continue; // a late echo of a retried message
            }
            errors += 1;
            return Err(mismatch(&format!(
                "echo mismatch: sent header {v:#x} ({size} B), got {got:#x} ({n} B)"
            )));
        }
    };

    for _ in 0..p.warmup {
        round_trip(ch, &mut tx, &mut rx, seq & mask)?;
        seq += 1;
    }
    let mut hist = new_histogram();
    let cpu0 = libc_only::thread_cpu_ns();
    let start = Instant::now();
    let mut recorded = 0u64;
    match p.rate {
        None => loop {
            let t0 = Instant::now();
            round_trip(ch, &mut tx, &mut rx, seq & mask)?;
            let t1 = Instant::now();
            seq += 1;
            recorded += 1;
            hist.saturating_record(t1.duration_since(t0).as_nanos() as u64);
            if t1.duration_since(start) >= p.duration {
                break;
            }
        },
        Some(rate) => {
            let interval = Duration::from_secs_f64(1.0 / rate);
            let mut next = start;
            loop {
                // Wait for the scheduled time; a late send keeps its scheduled time, so a
                // stall shows up in the samples (no coordinated omission).
                let mut now = Instant::now();
                if next > now {
                    let ahead = next - now;
                    if ahead > Duration::from_micros(200) {
                        std::thread::sleep(ahead - Duration::from_micros(100));
                    }
                    while Instant::now() < next {
                        std::hint::spin_loop();
                    }
                }
                round_trip(ch, &mut tx, &mut rx, seq & mask)?;
                now = Instant::now();
                seq += 1;
                recorded += 1;
                hist.saturating_record(now.duration_since(next).as_nanos() as u64);
                next += interval;
                if now.duration_since(start) >= p.duration {
                    break;
                }
            }
        }
    }
    let t0 = Instant::now();
    for _ in 0..p.batch {
        round_trip(ch, &mut tx, &mut rx, seq & mask)?;
        seq += 1;
    }
    let batched_ns = if p.batch > 0 {
        t0.elapsed().as_nanos() as f64 / p.batch as f64
    } else {
        f64::NAN
    };
    // The end marker travels as one more round trip.
    round_trip(ch, &mut tx, &mut rx, (seq & mask) | pattern::end_bit(size))?;
    let cpu_ns = libc_only::thread_cpu_ns().saturating_sub(cpu0);
    Ok(LatencyResult {
        hist,
        batched_ns,
        round_trips: recorded + p.batch,
        cpu_ns,
        lost,
        errors,
    })
}

/// Server side of ping-pong: echoes until the end marker (echoed too). Returns the CPU time
/// spent after the first `warmup` echoes, ns.
pub fn latency_server<C: Channel>(
    ch: &mut C,
    size: usize,
    cap: usize,
    warmup: u64,
    lossy: bool,
) -> io::Result<u64> {
    let pre = ch.prefix();
    let mut buf = vec![0u8; pre + cap.max(size)];
    let end = pattern::end_bit(size);
    let mut n_echoed = 0u64;
    let mut cpu0 = libc_only::thread_cpu_ns();
    loop {
        if n_echoed == warmup {
            cpu0 = libc_only::thread_cpu_ns();
        }
        let n = ch.recv(&mut buf, size)?;
        let h = pattern::read_header(&buf[pre..pre + n]);
        ch.send(&mut buf[..pre + n])?;
        n_echoed += 1;
        if h & end != 0 {
            break;
        }
    }
    let cpu = libc_only::thread_cpu_ns().saturating_sub(cpu0);
    if lossy {
        // Drop late duplicates of the end marker before the next phase.
        while let Some(_n) = ch.recv_timeout(&mut buf, size, Duration::from_millis(20))? {}
    }
    Ok(cpu)
}

/// Sender side of streaming: sends for `duration`, then the end marker (once; the caller
/// repeats it on a lossy transport via [`send_end`]).
pub fn stream_send<C: Channel>(
    ch: &mut C,
    size: usize,
    duration: Duration,
    touch: bool,
) -> io::Result<SendTotals> {
    let mut tx = vec![0u8; ch.prefix() + size];
    let mask = pattern::seq_mask(size);
    let cpu0 = libc_only::thread_cpu_ns();
    let first_send_ns = sys::mono_ns();
    let start = Instant::now();
    let mut seq: u64 = 0;
    loop {
        let h = seq & mask;
        ch.send_with(&mut tx, size, |m| {
            pattern::write_header(m, h);
            if touch {
                pattern::fill(m, h);
            }
        })?;
        seq += 1;
        if seq.is_multiple_of(16) && start.elapsed() >= duration {
            break;
        }
    }
    send_end(ch, size, seq)?;
    Ok(SendTotals {
        sent: seq,
        first_send_ns,
        cpu_ns: libc_only::thread_cpu_ns().saturating_sub(cpu0),
    })
}

/// Sends the end marker of a stream of `sent` messages.
pub fn send_end<C: Channel>(ch: &mut C, size: usize, sent: u64) -> io::Result<()> {
    let pre = ch.prefix();
    let mut tx = vec![0u8; pre + size];
    pattern::write_header(
        &mut tx[pre..],
        (sent & pattern::seq_mask(size)) | pattern::end_bit(size),
    );
    ch.send(&mut tx)
}

/// Receiver side of streaming: counts and verifies every message until the end marker.
pub fn stream_recv<C: Channel>(
    ch: &mut C,
    size: usize,
    cap: usize,
    touch: bool,
    lossy: bool,
) -> io::Result<RecvTotals> {
    let mut rx = vec![0u8; ch.prefix() + cap.max(size)];
    let mask = pattern::seq_mask(size);
    let end = pattern::end_bit(size);
    let mut t = RecvTotals::default();
    let mut expected: u64 = 0;
    let cpu0 = libc_only::thread_cpu_ns();
    let note = |t: &mut RecvTotals, msg: String| {
        t.errors += 1;
        if t.first_error.is_none() {
            t.first_error = Some(msg);
        }
    };
    loop {
        let done = ch.recv_with(&mut rx, size, |msg| {
            let n = msg.len();
            let h = pattern::read_header(msg);
            if h & end != 0 {
                if !lossy {
                    t.last_recv_ns = sys::mono_ns();
                }
                return true;
            }
            if lossy {
                t.last_recv_ns = sys::mono_ns();
            }
            if n != size {
                let at = t.received;
                note(
                    &mut t,
                    format!("message {at} has {n} bytes, expected {size}"),
                );
                return false;
            }
            if h != expected {
                if lossy {
                    let ahead = h.wrapping_sub(expected) & mask;
                    if ahead < mask / 2 {
                        expected = h; // the ones in between were lost (counted by the sender's total)
                    } else {
                        t.reordered += 1;
                        t.received += 1;
                        t.bytes += n as u64;
                        if touch && !pattern::verify(msg, h) {
                            note(&mut t, format!("message with sequence {h} is corrupted"));
                        }
                        return false;
                    }
                } else {
                    note(
                        &mut t,
                        format!(
                            "expected sequence {expected}, got {h} (lost, duplicated or reordered)"
                        ),
                    );
                    expected = h;
                }
            }
            if touch && !pattern::verify(msg, h) {
                note(&mut t, format!("message with sequence {h} is corrupted"));
            }
            expected = (expected + 1) & mask;
            t.received += 1;
            t.bytes += n as u64;
            false
        })?;
        if done {
            break;
        }
    }
    t.cpu_ns = libc_only::thread_cpu_ns().saturating_sub(cpu0);
    Ok(t)
}

/// Client side of counter ping-pong (eventfd).
pub fn counter_latency_client<C: Counter>(
    c: &mut C,
    p: &LatencyParams,
) -> io::Result<LatencyResult> {
    let mut errors = 0u64;
    let mut rt = |c: &mut C, n: u64| -> io::Result<()> {
        c.add(n)?;
        let got = c.take()?;
        if got != 1 {
            errors += 1;
            return Err(mismatch(&format!("counter echo: expected 1, got {got}")));
        }
        Ok(())
    };
    for _ in 0..p.warmup {
        rt(c, 1)?;
    }
    let mut hist = new_histogram();
    let cpu0 = libc_only::thread_cpu_ns();
    let start = Instant::now();
    let mut recorded = 0u64;
    let interval = p.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut next = start;
    loop {
        let t0 = match interval {
            None => Instant::now(),
            Some(_) => {
                while Instant::now() < next {
                    std::hint::spin_loop();
                }
                next
            }
        };
        rt(c, 1)?;
        let t1 = Instant::now();
        recorded += 1;
        hist.saturating_record(t1.duration_since(t0).as_nanos() as u64);
        if let Some(i) = interval {
            next += i;
        }
        if t1.duration_since(start) >= p.duration {
            break;
        }
    }
    let t0 = Instant::now();
    for _ in 0..p.batch {
        rt(c, 1)?;
    }
    let batched_ns = if p.batch > 0 {
        t0.elapsed().as_nanos() as f64 / p.batch as f64
    } else {
        f64::NAN
    };
    rt(c, COUNTER_END)?;
    let cpu_ns = libc_only::thread_cpu_ns().saturating_sub(cpu0);
    Ok(LatencyResult {
        hist,
        batched_ns,
        round_trips: recorded + p.batch,
        cpu_ns,
        lost: 0,
        errors,
    })
}

/// Server side of counter ping-pong: answers every wake-up with one notification until the
/// end marker. Returns CPU time after the warm-up, ns.
pub fn counter_latency_server<C: Counter>(c: &mut C, warmup: u64) -> io::Result<u64> {
    let mut n = 0u64;
    let mut cpu0 = libc_only::thread_cpu_ns();
    loop {
        if n == warmup {
            cpu0 = libc_only::thread_cpu_ns();
        }
        let v = c.take()?;
        c.add(1)?;
        n += 1;
        if v >= COUNTER_END {
            break;
        }
    }
    Ok(libc_only::thread_cpu_ns().saturating_sub(cpu0))
}

/// Sender side of counter streaming: `add(1)` for `duration`, then the end marker.
pub fn counter_stream_send<C: Counter>(c: &mut C, duration: Duration) -> io::Result<SendTotals> {
    let cpu0 = libc_only::thread_cpu_ns();
    let first_send_ns = sys::mono_ns();
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        c.add(1)?;
        sent += 1;
        if sent.is_multiple_of(16) && start.elapsed() >= duration {
            break;
        }
    }
    c.add(COUNTER_END)?;
    Ok(SendTotals {
        sent,
        first_send_ns,
        cpu_ns: libc_only::thread_cpu_ns().saturating_sub(cpu0),
    })
}

/// Receiver side of counter streaming: sums every wake-up until the end marker.
pub fn counter_stream_recv<C: Counter>(c: &mut C) -> io::Result<RecvTotals> {
    let cpu0 = libc_only::thread_cpu_ns();
    let mut t = RecvTotals::default();
    loop {
        let v = c.take()?;
        t.wakeups += 1;
        if v >= COUNTER_END {
            t.sum += v - COUNTER_END;
            t.last_recv_ns = sys::mono_ns();
            break;
        }
        t.sum += v;
    }
    t.received = t.sum;
    t.cpu_ns = libc_only::thread_cpu_ns().saturating_sub(cpu0);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// An in-memory channel that can lose, corrupt or swap one message.
    #[derive(Default)]
    struct Mock {
        q: VecDeque<Vec<u8>>,
        n: usize,
        drop_at: Option<usize>,
        flip_at: Option<usize>,
        swap_at: Option<usize>,
        held: Option<Vec<u8>>,
    }

    impl Channel for Mock {
        fn send(&mut self, buf: &mut [u8]) -> io::Result<()> {
            let i = self.n;
            self.n += 1;
            if Some(i) == self.drop_at {
                return Ok(());
            }
            let mut m = buf.to_vec();
            if Some(i) == self.flip_at {
                let l = m.len();
                m[l - 1] ^= 0x10;
            }
            if Some(i) == self.swap_at {
                self.held = Some(m);
                return Ok(());
            }
            self.q.push_back(m);
            if let Some(h) = self.held.take() {
                self.q.push_back(h);
            }
            Ok(())
        }
        fn recv(&mut self, buf: &mut [u8], _expect: usize) -> io::Result<usize> {
            let m = self
                .q
                .pop_front()
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf[..m.len()].copy_from_slice(&m);
            Ok(m.len())
        }
        fn recv_timeout(
            &mut self,
            buf: &mut [u8],
            expect: usize,
            _t: Duration,
        ) -> io::Result<Option<usize>> {
            if self.q.is_empty() {
                return Ok(None);
            }
            self.recv(buf, expect).map(Some)
        }
    }

    fn stream(mut m: Mock, size: usize, lossy: bool) -> (SendTotals, RecvTotals) {
        let s = stream_send(&mut m, size, Duration::from_millis(2), true).unwrap();
        let r = stream_recv(&mut m, size, size, true, lossy).unwrap();
        (s, r)
    }

    #[test]
    fn clean_stream_counts_everything() {
        for size in [1usize, 7, 8, 64, 1000] {
            let (s, r) = stream(Mock::default(), size, false);
            assert!(s.sent > 100);
            assert_eq!(r.received, s.sent, "size {size}");
            assert_eq!(r.errors, 0, "size {size}: {:?}", r.first_error);
            assert_eq!(r.bytes, s.sent * size as u64);
        }
    }

    #[test]
    fn reliable_loss_is_an_error() {
        let (s, r) = stream(
            Mock {
                drop_at: Some(50),
                ..Default::default()
            },
            64,
            false,
        );
        assert_eq!(r.received + 1, s.sent);
        assert!(r.errors > 0);
    }

    #[test]
    fn corruption_is_an_error_even_when_lossy() {
        for lossy in [false, true] {
            let (_, r) = stream(
                Mock {
                    flip_at: Some(10),
                    ..Default::default()
                },
                64,
                lossy,
            );
            assert_eq!(r.errors, 1, "lossy {lossy}");
        }
    }

    #[test]
    fn lossy_loss_and_reorder_are_counted_not_errors() {
        let (s, r) = stream(
            Mock {
                drop_at: Some(20),
                ..Default::default()
            },
            64,
            true,
        );
        assert_eq!(r.errors, 0);
        assert_eq!(s.sent - r.received, 1);
        let (_, r) = stream(
            Mock {
                swap_at: Some(30),
                ..Default::default()
            },
            64,
            true,
        );
        assert_eq!(r.errors, 0);
        assert_eq!(r.reordered, 1);
        let (_, r) = stream(
            Mock {
                swap_at: Some(30),
                ..Default::default()
            },
            64,
            false,
        );
        assert!(r.errors > 0, "reordering on a reliable transport must fail");
    }
}
