//! The `pipe` demo: a parent makes two anonymous pipes, spawns a child that inherits one end
//! of each, and measures round trips of a 64-byte message.

use super::{interrupt, spawn_child};
use crate::cli::DemoArgs;
use ipckit::pipe::{self, PipePair};
use ipckit::{RecvError, Transport, Wait};
use std::time::{Duration, Instant};

/// The parent's side.
pub(super) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let me = std::process::id();
    let measure = if args.short {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(2)
    };
    println!("[parent {me}] pipe(2) twice: one pipe parent -> child, one child -> parent");
    let pair = PipePair::new(Wait::Block, None)?;
    let addr = pair.address();
    println!(
        "[parent {me}] starting a child (this program again) that inherits descriptors {addr}"
    );
    let mut child = spawn_child("pipe", &addr, |cmd| pair.configure_child(cmd))?;
    // Dropping the child's ends here matters: otherwise the parent would never see end-of-file.
    let mut ep = pair.into_parent()?;
    let mut buf = vec![0u8; ep.max_msg_size()];
    ep.send(b"ping")?;
    let n = ep.recv(&mut buf)?;
    println!(
        "[parent {me}] wrote \"ping\" into the first pipe; read \"{}\" back from the second",
        String::from_utf8_lossy(&buf[..n])
    );
    println!(
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
    println!("[parent {me}] closing its pipe ends");
    drop(ep);
    child.wait(Duration::from_secs(5))?;
    println!("[parent {me}] child exited; anonymous pipes vanish with their last descriptor, nothing to remove");
    let us = took.as_secs_f64() * 1e6 / trips.max(1) as f64;
    println!(
        "result: {us:.1} µs per round trip ({:.0} round trips/s, {trips} in {:.2} s, blocking waits)",
        trips as f64 / took.as_secs_f64(),
        took.as_secs_f64()
    );
    Ok(())
}

/// The child's side: echo every message until the parent closes its ends.
pub(super) fn child(addr: &str) -> anyhow::Result<()> {
    let me = std::process::id();
    let mut ep = pipe::from_address(addr, Wait::Block, None)?;
    println!("[child  {me}] adopted descriptors {addr}; echoing every message back");
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
    println!("[child  {me}] read returned end-of-file: the parent closed its end; exiting after {echoed} echoes");
    Ok(())
}
