//! The `stream` demo: streaming with backpressure, a downloader feeding a player.
//!
//! The parent is the downloader (the producer): it writes a numbered byte pattern into an
//! anonymous pipe as fast as `--rate` allows. The child is the player (the consumer): it
//! reads the pipe, its stdin, at `--consume` and checks every byte. When the player is
//! slower the pipe fills and the downloader's writes wait for room: that is backpressure,
//! and the downloader counts the time it spends waiting ([`PipeWriter::blocked`](ipckit::pipe::PipeWriter::blocked)).
//!
//! The counters are exact: the downloader counts what `write` accepted, the player what
//! `read` returned (from the descriptor, with no buffer in between), and it reports over a
//! second channel (a framed pipe pair). To stop, the downloader stops writing, the player
//! stops reading and reports its final count, and only then is the pipe's fill read
//! (`FIONREAD`), so `produced = consumed + in pipe` must hold to the byte.

use super::{interrupt, spawn_child, ChildGuard};
use crate::cli::DemoArgs;
use crate::UserError;
use ipckit::pipe::{self, PipeBuilder};
use ipckit::{RecvError, Transport};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Bytes the downloader prepares at a time (a multiple of 8: the pattern is 8-byte words).
const CHUNK: usize = 64 * 1024;
/// How often the player reports its count.
const REPORT_EVERY: Duration = Duration::from_millis(50);
/// Report tags: a running count, and the final one after the player stopped reading.
const RUNNING: u8 = b'R';
const FINAL: u8 = b'F';

/// The pattern: the bytes at offsets `8k..8k+8` are `k` as a little-endian u64, so a lost,
/// repeated or reordered byte shows at its offset.
fn fill_pattern(base: u64, buf: &mut [u8]) {
    debug_assert!(base.is_multiple_of(8) && buf.len().is_multiple_of(8));
    for (k, w) in buf.chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&(base / 8 + k as u64).to_le_bytes());
    }
}

/// Checks that `data` is the pattern from offset `off`; returns the first wrong offset.
fn check_pattern(off: u64, data: &[u8]) -> Result<(), u64> {
    let byte = |i: u64| (i / 8).to_le_bytes()[(i % 8) as usize];
    let head = (((8 - off % 8) % 8) as usize).min(data.len());
    for (j, &b) in data[..head].iter().enumerate() {
        if b != byte(off + j as u64) {
            return Err(off + j as u64);
        }
    }
    let aligned = off + head as u64;
    let mut words = data[head..].chunks_exact(8);
    for (k, w) in words.by_ref().enumerate() {
        if u64::from_le_bytes(w.try_into().expect("8 bytes")) != aligned / 8 + k as u64 {
            return Err(aligned + 8 * k as u64);
        }
    }
    let tail_off = off + (data.len() - words.remainder().len()) as u64;
    for (j, &b) in words.remainder().iter().enumerate() {
        if b != byte(tail_off + j as u64) {
            return Err(tail_off + j as u64);
        }
    }
    Ok(())
}

fn report(tag: u8, n: u64) -> [u8; 9] {
    let mut m = [tag; 9];
    m[1..].copy_from_slice(&n.to_le_bytes());
    m
}

fn parse_report(m: &[u8]) -> anyhow::Result<(u8, u64)> {
    anyhow::ensure!(m.len() == 9, "a report of {} bytes", m.len());
    Ok((m[0], u64::from_le_bytes(m[1..].try_into()?)))
}

fn mb(n: u64) -> f64 {
    n as f64 / 1e6
}

/// The downloader: the parent.
pub(super) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let me = std::process::id();
    let rate = args.rate.unwrap_or(200.0);
    let consume = args.consume.unwrap_or(50.0);
    let length = if args.short {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(10)
    };
    let (data_r, data_w) = pipe::raw_pipe()?;
    if let Some(size) = args.pipe_size {
        pipe::set_capacity(&data_w, size)
            .map_err(|e| UserError::new(format!("--pipe-size {size}: {e}")))?;
    }
    let capacity = pipe::capacity(&data_w)?;
    say!(
        "[downloader {me}] a pipe of {} KiB; the player (a child, this program again) reads it \
         as its stdin",
        capacity / 1024
    );
    say!(
        "[downloader {me}] I write at up to {rate} MB/s, the player reads at {consume} MB/s: {}",
        if consume < rate {
            "the pipe will fill, and my writes will wait for room (backpressure)"
        } else {
            "the player keeps up, so the pipe should stay nearly empty"
        }
    );
    let control = PipeBuilder::new().create_pair()?;
    let role = format!("{consume}/{}", control.address());
    let mut child = spawn_child("stream", &role, |cmd| {
        control.configure_child(cmd);
        cmd.stdin(Stdio::from(data_r));
    })?;
    // The child's ends are closed here now: a dead player shows as EPIPE and end-of-file.
    let mut ep = control.into_parent()?;
    let mut w = data_w;
    let mut msg = [0u8; 64];
    // The player says hello (a count of 0) when it is ready: its start-up is not measured.
    let n = ep.recv_timeout(&mut msg, Duration::from_secs(10))?;
    let (_, mut consumed) = parse_report(&msg[..n])?;
    say!(
        "[downloader {me}] streaming for {:.0} s; one line a second, \"consumed\" as the player \
         last reported it (every 50 ms); Ctrl-C stops both sides cleanly",
        length.as_secs_f64()
    );
    say!("   time     produced     consumed   pipe fill            downloader blocked");

    let mut buf = vec![0u8; CHUNK];
    let (mut base, mut pos) = (0u64, CHUNK);
    let mut produced = 0u64;
    let start = Instant::now();
    let end = start + length;
    let mut tick = start + Duration::from_secs(1);
    let mut last = (produced, consumed, Duration::ZERO);
    let bytes_per_sec = rate * 1e6;
    loop {
        loop {
            match ep.try_recv(&mut msg) {
                Ok(n) => consumed = parse_report(&msg[..n])?.1,
                Err(RecvError::Empty) => break,
                Err(RecvError::PeerGone) => anyhow::bail!("the player exited early"),
                Err(e) => return Err(e.into()),
            }
        }
        let now = Instant::now();
        if now >= tick {
            let fill = w.queued()?;
            let blocked = w.blocked() - last.2;
            say!(
                "  {:>3.0} s  {:>8.1} MB  {:>8.1} MB   {:>6.1} KiB ({:>3.0}%)   {:>5} ms ({:>3.0}% of the second)",
                (tick - start).as_secs_f64(),
                mb(produced),
                mb(consumed),
                fill as f64 / 1024.0,
                100.0 * fill as f64 / capacity as f64,
                blocked.as_millis(),
                100.0 * blocked.as_secs_f64(),
            );
            last = (produced, consumed, w.blocked());
            tick += Duration::from_secs(1);
        }
        if interrupt::interrupted() || now >= end {
            break;
        }
        // The download's speed limit: never ahead of `rate` since the start.
        let allowed = (bytes_per_sec * (now - start).as_secs_f64()) as u64;
        if produced >= allowed {
            let ahead = Duration::from_secs_f64((produced - allowed + 1) as f64 / bytes_per_sec);
            std::thread::sleep(ahead.min(Duration::from_millis(10)));
            continue;
        }
        if pos == CHUNK {
            fill_pattern(base, &mut buf);
            pos = 0;
        }
        let want = (CHUNK - pos).min((allowed - produced) as usize);
        // Wait for room at most until the next thing to do: a report line or a Ctrl-C check.
        let next = tick.min(end).saturating_duration_since(now);
        w.set_write_timeout(next.clamp(Duration::from_millis(1), Duration::from_millis(100)));
        match w.write(&buf[pos..pos + want]) {
            Ok(n) => {
                produced += n as u64;
                pos += n;
                if pos == CHUNK {
                    base += CHUNK as u64;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                anyhow::bail!("the player closed the pipe early")
            }
            Err(e) => return Err(e.into()),
        }
    }
    let took = start.elapsed();
    let why = if interrupt::interrupted() {
        "interrupted"
    } else {
        "time is up"
    };
    say!("[downloader {me}] {why}: I stop writing and ask the player to stop reading");
    ep.send(b"stop")?;
    // Running reports still in the channel come first; the final count is the last word.
    let consumed = loop {
        let n = ep.recv_timeout(&mut msg, Duration::from_secs(10))?;
        if let (FINAL, c) = parse_report(&msg[..n])? {
            break c;
        }
    };
    // Both sides are still: what is in the pipe now is exactly what was written, not read.
    let in_pipe = w.queued()? as u64;
    let blocked = w.blocked();
    drop(ep);
    drop(w);
    wait_quietly(&mut child, Duration::from_secs(5))?;
    say!(
        "[downloader {me}] totals: produced {produced} bytes ({:.1} MB/s), consumed {consumed} \
         ({:.1} MB/s), left in the pipe {in_pipe}",
        mb(produced) / took.as_secs_f64(),
        mb(consumed) / took.as_secs_f64()
    );
    anyhow::ensure!(
        produced == consumed + in_pipe,
        "the counters disagree: produced {produced} != consumed {consumed} + in pipe {in_pipe}"
    );
    say!(
        "result: produced = consumed + in pipe: {produced} = {consumed} + {in_pipe} bytes, every \
         byte checked in order; downloader blocked {} ms of {:.2} s ({:.0}%)",
        blocked.as_millis(),
        took.as_secs_f64(),
        100.0 * blocked.as_secs_f64() / took.as_secs_f64()
    );
    Ok(())
}

/// Waits for the player to exit without giving up on a Ctrl-C (the demo is stopping anyway,
/// and the player stops on its own once the control channel closes).
fn wait_quietly(child: &mut ChildGuard, limit: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + limit;
    loop {
        if let Some(st) = child.0.try_wait()? {
            anyhow::ensure!(st.success(), "the player failed: {st}");
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < until, "the player did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The player: the child. `role` is `MBps/fd:R,W` (its speed and the control channel).
pub(super) fn child(role: &str) -> anyhow::Result<()> {
    let me = std::process::id();
    // Ctrl-C reaches the whole process group; the downloader decides when the player stops,
    // so that the counts it reports are final.
    interrupt::install();
    let (speed, addr) = role
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("bad role '{role}'"))?;
    let bytes_per_sec: f64 = speed.parse::<f64>()? * 1e6;
    let mut ep = PipeBuilder::new().open(addr)?;
    // Read the descriptor itself: std's stdin buffers, and buffered bytes would be counted
    // as neither in the pipe nor consumed.
    let mut data = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    say!("[player     {me}] reading the pipe (my stdin) at {speed} MB/s, checking every byte");
    ep.send(&report(RUNNING, 0))?;
    let mut buf = vec![0u8; CHUNK];
    let mut msg = [0u8; 64];
    let mut consumed = 0u64;
    let start = Instant::now();
    let mut reported = start;
    loop {
        match ep.try_recv(&mut msg) {
            Ok(_) => break, // "stop"
            Err(RecvError::Empty) => {}
            Err(RecvError::PeerGone) => anyhow::bail!("the downloader went away"),
            Err(e) => return Err(e.into()),
        }
        if reported.elapsed() >= REPORT_EVERY {
            ep.send(&report(RUNNING, consumed))?;
            reported = Instant::now();
        }
        let allowed = (bytes_per_sec * start.elapsed().as_secs_f64()) as u64;
        if consumed >= allowed {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        // Read only what is there, so a read never waits and a stop is seen at once.
        let avail = pipe::queued(&data)?;
        if avail == 0 {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let want = avail.min(buf.len()).min((allowed - consumed) as usize);
        let n = data.read(&mut buf[..want])?;
        anyhow::ensure!(n > 0, "the pipe ended before the downloader said stop");
        if let Err(at) = check_pattern(consumed, &buf[..n]) {
            anyhow::bail!("byte {at} is wrong: data was lost or reordered");
        }
        consumed += n as u64;
    }
    ep.send(&report(FINAL, consumed))?;
    say!("[player     {me}] stopped reading after {consumed} bytes, all in order");
    std::io::stdout().flush()?;
    // Stay until the downloader has read the pipe's fill level and closed the channel.
    loop {
        match ep.recv(&mut msg) {
            Ok(_) => {}
            Err(RecvError::PeerGone) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_checks_at_any_offset_and_catches_a_lost_byte() {
        let mut buf = vec![0u8; 4096];
        fill_pattern(8192, &mut buf);
        for (a, b) in [(0, 4096), (3, 4000), (5, 6), (9, 4093)] {
            assert_eq!(check_pattern(8192 + a as u64, &buf[a..b]), Ok(()));
        }
        let mut lost = buf[..100].to_vec();
        lost.remove(42);
        assert!(check_pattern(8192, &lost).is_err());
    }
}
