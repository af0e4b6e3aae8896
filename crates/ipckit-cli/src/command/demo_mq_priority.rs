//! The `mq-priority` demo: a child sends four messages with priorities 1, 5, 9, 3 to a POSIX
//! queue; the parent receives them 9, 5, 3, 1. A second child then sends timestamped messages
//! one at a time and the parent reports how long each took to arrive.

use super::{interrupt, spawn_child};
use crate::cli::DemoArgs;
use ipckit::mq::posix::{PosixMq, PosixMqBuilder};
use ipckit::{RecvError, Transport};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PRIORITIES: [u32; 4] = [1, 5, 9, 3];
const SLICE: Duration = Duration::from_millis(100);

/// The parent's side.
pub(super) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let me = std::process::id();
    let timed = if args.short { 100 } else { 1000 };
    let name = format!("/{}", ipckit::registry::unique_name("demo"));
    let mut q = PosixMqBuilder::new(&name).max_msg_size(64).create()?;
    say!(
        "[parent {me}] mq_open(O_CREAT) made the queue {name} (messages up to 64 bytes; see /dev/mqueue{name})"
    );
    say!("[parent {me}] starting a child to send four messages, then waiting for it to exit");
    let mut c = spawn_child("mq-priority", &format!("order:{name}"), |_| {})?;
    c.wait(Duration::from_secs(5))?;
    drop(c);
    say!("[parent {me}] the child is gone but its messages wait in the kernel; receiving:");
    let mut buf = vec![0u8; q.max_msg_size()];
    let mut order = Vec::new();
    for _ in PRIORITIES {
        let (n, prio) = recv(&mut q, &mut buf)?;
        say!(
            "[parent {me}]   got \"{}\" (priority {prio})",
            String::from_utf8_lossy(&buf[..n])
        );
        order.push(prio.to_string());
    }
    let sent: Vec<_> = PRIORITIES.iter().map(u32::to_string).collect();
    say!(
        "[parent {me}] sent in order {}, received {}: highest priority first",
        sent.join(","),
        order.join(",")
    );
    let mut c = spawn_child("mq-priority", &format!("timed{timed}:{name}"), |_| {})?;
    say!(
        "[parent {me}] started child {}: it sends {timed} messages 1 ms apart, each carrying the \
         time it was sent; the parent waits blocked in poll(2)",
        c.pid()
    );
    let mut lat = Vec::with_capacity(timed);
    for _ in 0..timed {
        let (n, _) = recv(&mut q, &mut buf)?;
        let now = now_ns();
        anyhow::ensure!(n == 16, "unexpected {n}-byte message");
        let sent = u128::from_le_bytes(buf[..16].try_into()?);
        lat.push(now.saturating_sub(sent) as f64 / 1000.0);
    }
    c.wait(Duration::from_secs(5))?;
    drop(c);
    drop(q);
    say!("[parent {me}] children exited; mq_unlink removed {name}");
    lat.sort_by(f64::total_cmp);
    let median = lat[lat.len() / 2];
    let p99 = lat[(lat.len() * 99 / 100).min(lat.len() - 1)];
    say!(
        "result: receive latency (child's mq_send to parent's mq_receive returning), median \
         {median:.1} µs, 99th percentile {p99:.1} µs over {timed} messages"
    );
    Ok(())
}

/// Receives one message, in slices so Ctrl-C is seen; gives up after 5 s of silence.
fn recv(q: &mut PosixMq, buf: &mut [u8]) -> anyhow::Result<(usize, u32)> {
    for _ in 0..50 {
        anyhow::ensure!(!interrupt::interrupted(), "interrupted");
        match q.recv_priority_timeout(buf, SLICE) {
            Ok(v) => return Ok(v),
            Err(RecvError::Timeout) => {}
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("no message came within 5 s")
}

/// Wall-clock nanoseconds: both processes read the same system clock.
fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The children: `order:/name` sends the four priorities; `timedN:/name` sends N timestamps.
pub(super) fn child(role: &str) -> anyhow::Result<()> {
    let me = std::process::id();
    let (what, name) = role
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("bad child role '{role}'"))?;
    let mut q = PosixMqBuilder::new(name).open()?;
    if what == "order" {
        for p in PRIORITIES {
            let msg = format!("priority {p}");
            q.send_priority(msg.as_bytes(), p)?;
            say!("[child  {me}]   mq_send \"{msg}\" with priority {p}");
        }
        return Ok(());
    }
    let n: usize = what
        .strip_prefix("timed")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("bad child role '{role}'"))?;
    for _ in 0..n {
        q.send_priority(&now_ns().to_le_bytes(), 0)?;
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
