//! The `pipe` demo: a parent spawns a child with a duplex channel (two anonymous pipes) in
//! one call, shows that the child inherited those descriptors and nothing else, and measures
//! round trips of a 64-byte message.

use super::{child_command, interrupt, ChildGuard};
use crate::cli::DemoArgs;
use ipckit::pipe::{self, ChildChannel, Duplex};
use ipckit::{RecvError, Transport};
use std::time::{Duration, Instant};

/// The parent's side.
pub(super) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let me = std::process::id();
    let measure = if args.short {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(2)
    };
    say!("[parent {me}] pipe2(O_CLOEXEC) twice: one pipe parent -> child, one child -> parent");
    say!(
        "[parent {me}] spawning a child (this program again); in the child, between fork and \
         exec, close_range(3, ~0, CLOSE_RANGE_CLOEXEC) marks every descriptor close-on-exec, \
         then the flag is cleared on the child's two pipe ends alone"
    );
    let mut cmd = child_command("pipe", "echo")?;
    let (child, mut ep) = ChildChannel::new().duplex(Duplex::Pipes).spawn(&mut cmd)?;
    let mut child = ChildGuard(child);
    say!(
        "[parent {me}] child {} started; its address is in {}; our copies of its ends are \
         closed, so each side sees the other's exit as end-of-file",
        child.pid(),
        pipe::CHANNEL_ENV
    );
    let mut buf = vec![0u8; ep.max_msg_size()];
    let n = ep.recv(&mut buf)?;
    say!(
        "[parent {me}] the child reports its open descriptors: {}",
        String::from_utf8_lossy(&buf[..n])
    );
    ep.send(b"ping")?;
    let n = ep.recv(&mut buf)?;
    say!(
        "[parent {me}] wrote \"ping\" into the first pipe; read \"{}\" back from the second",
        String::from_utf8_lossy(&buf[..n])
    );
    say!(
        "[parent {me}] now timing round trips of a 64-byte message for {:.1} s ...",
        measure.as_secs_f64()
    );
    let msg = [0x5au8; 64];
    let start = Instant::now();
    let mut trips = 0u64;
    while start.elapsed() < measure && !interrupt::interrupted() {
        ep.send(&msg)?;
        let n = ep.recv(&mut buf)?;
        anyhow::ensure!(n == msg.len(), "the echo was {n} bytes, not {}", msg.len());
        trips += 1;
    }
    let took = start.elapsed();
    anyhow::ensure!(!interrupt::interrupted(), "interrupted");
    say!("[parent {me}] closing its pipe ends");
    drop(ep);
    child.wait(Duration::from_secs(5))?;
    say!("[parent {me}] child exited; anonymous pipes vanish with their last descriptor, nothing to remove");
    let us = took.as_secs_f64() * 1e6 / trips.max(1) as f64;
    say!(
        "result: {us:.1} µs per round trip ({:.0} round trips/s, {trips} in {:.2} s, blocking waits)",
        trips as f64 / took.as_secs_f64(),
        took.as_secs_f64()
    );
    Ok(())
}

/// The child's side: report its descriptors, then echo every message until the parent
/// closes its ends.
pub(super) fn child(_role: &str) -> anyhow::Result<()> {
    let me = std::process::id();
    // Listed before anything else is opened (the listing's own handle is left out).
    let mut fds: Vec<(i32, String)> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| {
            let e = e.ok()?;
            let n = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?.display().to_string();
            (!(target.starts_with("/proc/") && target.ends_with("/fd"))).then_some((n, target))
        })
        .collect();
    fds.sort();
    let mut ep = ChildChannel::new().open_from_env()?;
    let list: Vec<String> = fds.iter().map(|(n, t)| format!("{n} ({t})")).collect();
    ep.send(list.join(", ").as_bytes())?;
    say!(
        "[child  {me}] adopted the channel named in {}; echoing every message back",
        pipe::CHANNEL_ENV
    );
    let mut buf = vec![0u8; ep.max_msg_size()];
    let mut echoed = 0u64;
    loop {
        match ep.recv(&mut buf) {
            Ok(n) => ep.send(&buf[..n])?,
            Err(RecvError::PeerGone) => break,
            Err(e) => return Err(e.into()),
        }
        echoed += 1;
    }
    say!("[child  {me}] read returned end-of-file: the parent closed its end; exiting after {echoed} echoes");
    Ok(())
}
