//! The `shm-ring` demo: two processes share a pair of lock-free rings in one shared memory
//! segment. It shows the zero-copy API (write in place, read in place), what spinning and
//! blocking waits cost, and how fast 64 KiB messages move when nothing is copied.

use super::{interrupt, spawn_child};
use crate::cli::DemoArgs;
use ipckit::shm::{PairBuilder, ShmEndpoint};
use ipckit::{Deadline, RecvError, Transport, Wait};
use std::time::{Duration, Instant};

const BIG: usize = 64 * 1024;

/// The parent's side.
pub(super) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let me = std::process::id();
    let measure = if args.short {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(1)
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut waits = vec![Wait::Block];
    if cpus >= 2 {
        waits.insert(0, Wait::Spin);
    } else {
        say!("[parent {me}] one CPU only: skipping the spinning phase (two spinners on one CPU measure the scheduler)");
    }
    let mut results = Vec::new();
    for wait in waits {
        let name = format!("/{}", ipckit::registry::unique_name("demo-shm"));
        let opts = PairBuilder::new(&name).wait(wait).max_msg_size(BIG);
        let mut l = opts.clone().create()?;
        say!(
            "\n[parent {me}] shm_open(\"{name}\", O_CREAT|O_EXCL, 0600): one segment, two rings of {} KiB (one per direction), {} waits",
            opts.ring_size()?.0 / 1024,
            wait.name()
        );
        let mut child = spawn_child("shm-ring", &format!("{name},{}", wait.name()), |_| {})?;
        let mut ep = l.accept_timeout(Duration::from_secs(5))?;
        say!(
            "[parent {me}] child {} attached; the name is unlinked now: the mapping lives on, nothing is left if either of us dies",
            child.pid()
        );
        if results.is_empty() {
            zero_copy_hello(&mut ep, me)?;
        }
        let rtt = round_trips(&mut ep, measure)?;
        let gbps = stream(&mut ep, measure)?;
        anyhow::ensure!(!interrupt::interrupted(), "interrupted");
        drop(ep);
        child.wait(Duration::from_secs(5))?;
        say!(
            "[parent {me}] {}: 64 B round trip {:.2} µs; 64 KiB written in place and checked in place at {gbps:.1} GB/s",
            wait.name(),
            rtt * 1e6
        );
        results.push((wait, rtt, gbps));
    }
    let (block, block_gbps) = results
        .iter()
        .find(|r| r.0 == Wait::Block)
        .map(|r| (r.1, r.2))
        .ok_or_else(|| anyhow::anyhow!("the blocking phase did not run"))?;
    let spin = match results.iter().find(|r| r.0 != Wait::Block) {
        Some(s) => format!(
            "; spinning {:.2} µs, {} (a blocked process must be woken by the kernel; \
             spinning burns a CPU per waiting side instead)",
            s.1 * 1e6,
            if s.1 < block {
                format!("{:.1}x sooner", block / s.1)
            } else {
                "no sooner here: the CPUs are busy with other work".to_owned()
            }
        ),
        None => String::new(),
    };
    say!(
        "result: 64 B round trip {:.2} µs with blocking waits{spin}; zero-copy 64 KiB stream {block_gbps:.1} GB/s",
        block * 1e6
    );
    Ok(())
}

fn zero_copy_hello(ep: &mut ShmEndpoint, me: u32) -> anyhow::Result<()> {
    let text = b"hello, written straight into shared memory";
    let mut loan = ep.loan(text.len(), Deadline::Never)?;
    loan.copy_from_slice(text);
    loan.commit();
    say!("[parent {me}] loaned {} bytes of the ring, wrote the message in place, committed it (one 8-byte header store publishes it)", text.len());
    let m = ep.recv_ref(Deadline::Never)?;
    // Copied before the UTF-8 check: the child can still write the bytes in place, and a
    // `&str` checked over them could stop being UTF-8 while it is printed.
    let copy = m.to_vec();
    let answer = String::from_utf8_lossy(&copy);
    say!(
        "[parent {me}] the child's answer, read in place without a copy: \"{answer}\" (copied \
         out only to be printed, as bytes the child can still rewrite must be)"
    );
    Ok(())
}

/// Mean round trip of 64-byte messages over `measure`, seconds.
fn round_trips(ep: &mut ShmEndpoint, measure: Duration) -> anyhow::Result<f64> {
    let msg = [0x5au8; 64];
    let mut buf = vec![0u8; ep.max_msg_size()];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < measure && !interrupt::interrupted() {
        ep.send(&msg)?;
        let got = ep.recv(&mut buf)?;
        anyhow::ensure!(got == msg.len(), "echo of {got} bytes");
        n += 1;
    }
    // Tell the child the next phase is a stream.
    ep.send(b"")?;
    Ok(start.elapsed().as_secs_f64() / n.max(1) as f64)
}

/// 64 KiB messages written in place for `measure`; the child checks each in place and
/// reports how many bytes were right. Returns GB/s.
fn stream(ep: &mut ShmEndpoint, measure: Duration) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < measure && !interrupt::interrupted() {
        let mut loan = ep.loan(BIG, Deadline::Never)?;
        let word = sent.to_le_bytes();
        for c in loan.chunks_exact_mut(8) {
            c.copy_from_slice(&word);
        }
        loan.commit();
        sent += 1;
    }
    ep.send(b"")?; // end of stream
    let mut buf = [0u8; 8];
    let n = ep.recv(&mut buf)?;
    anyhow::ensure!(n == 8, "no count from the child");
    let good = u64::from_le_bytes(buf);
    let took = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        good == sent,
        "the child checked {good} messages correct out of {sent}"
    );
    Ok(sent as f64 * BIG as f64 / took / 1e9)
}

/// The child's side: echo, then check a stream in place, then wait for the parent to go.
pub(super) fn child(role: &str) -> anyhow::Result<()> {
    let me = std::process::id();
    let (name, wait) = role
        .rsplit_once(',')
        .ok_or_else(|| anyhow::anyhow!("bad child role {role}"))?;
    let wait = Wait::parse(wait).ok_or_else(|| anyhow::anyhow!("bad wait {wait}"))?;
    let mut ep = PairBuilder::new(name).wait(wait).open()?;
    let mut buf = vec![0u8; ep.max_msg_size()];
    // Echo until the empty message.
    loop {
        let n = ep.recv(&mut buf)?;
        if n == 0 {
            break;
        }
        ep.send(&buf[..n])?;
    }
    // Check every 64 KiB message in place: every word holds its sequence number.
    let mut good = 0u64;
    loop {
        let m = ep.recv_ref(Deadline::Never)?;
        if m.is_empty() {
            break;
        }
        let want = good.to_le_bytes();
        if m.len() == BIG && m.chunks_exact(8).all(|c| c == want) {
            good += 1;
        }
    }
    ep.send(&good.to_le_bytes())?;
    match ep.recv(&mut buf) {
        Err(RecvError::PeerGone) => {}
        Ok(_) => anyhow::bail!("unexpected message after the stream"),
        Err(e) => return Err(e.into()),
    }
    say!("[child  {me}] checked {good} messages in place; the parent closed the rings, exiting");
    Ok(())
}
