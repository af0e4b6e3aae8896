//! The `low-latency` demo: the seed's recipe for a trading engine's hot path (shared memory,
//! a lock-free ring, CPU affinity, real-time scheduling, locked memory), one step at a time,
//! with a CPU-bound process competing for the machine all along. Each step measures 64 B
//! round trips over the shared-memory ring and prints p50, p99, p99.9 and the worst.
//!
//! Safe on a small machine: one real-time process at most (the echoing child, on one CPU),
//! only while real-time throttling is on (the kernel keeps 5% of that CPU for everything
//! else; the step is skipped with the reason when throttling is off or the policy is not
//! permitted), every step bounded in time, and every child killed and reaped when the demo
//! ends, however it ends.

use super::{child_command, interrupt, ChildGuard};
use crate::cli::DemoArgs;
use hdrhistogram::Histogram;
use ipckit::sched::{self, SchedPolicy};
use ipckit::shm::{PairBuilder, ShmEndpoint};
use ipckit::{RecvError, Transport, Wait};
use std::time::{Duration, Instant};

/// One step of the recipe.
#[derive(Clone, Copy)]
struct Step {
    name: &'static str,
    what: &'static str,
    pin: bool,
    wait: Wait,
    fifo: bool,
    mlock: bool,
}

const STEPS: [Step; 5] = [
    Step {
        name: "default",
        what: "no pinning, blocking waits: the scheduler puts both processes and the \
               competitor wherever it likes",
        pin: false,
        wait: Wait::Block,
        fifo: false,
        mlock: false,
    },
    Step {
        name: "pinned",
        what: "each process pinned to its own CPU (the competitor shares the echoing side's)",
        pin: true,
        wait: Wait::Block,
        fifo: false,
        mlock: false,
    },
    Step {
        name: "pinned + spin",
        what: "both sides busy-poll the ring instead of sleeping in the kernel",
        pin: true,
        wait: Wait::Spin,
        fifo: false,
        mlock: false,
    },
    Step {
        name: "+ SCHED_FIFO",
        what: "the echoing side runs SCHED_FIFO priority 1: the competitor no longer takes \
               its CPU (but for the 5% real-time throttling keeps)",
        pin: true,
        wait: Wait::Spin,
        fifo: true,
        mlock: false,
    },
    Step {
        name: "+ mlockall",
        what: "both processes lock their memory: no page fault on the path",
        pin: true,
        wait: Wait::Spin,
        fifo: true,
        mlock: true,
    },
];

/// The parent's side: the measuring process.
pub(super) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let me = std::process::id();
    let step_time = if args.short {
        Duration::from_millis(150)
    } else {
        Duration::from_secs(1)
    };
    let cpus = sched::affinity()?;
    if cpus.len() < 2 {
        say!("[parent {me}] one CPU only: the recipe needs two (one per process); nothing to measure");
        say!("result: skipped: this process may use only CPU {:?}", cpus);
        return Ok(());
    }
    let (a, b) = (cpus[0], cpus[1]);
    match sched::rt_throttling()? {
        Some((run, period)) => say!(
            "[parent {me}] real-time throttling is on: real-time threads get at most {run} of every {period} µs of a CPU"
        ),
        None => say!(
            "[parent {me}] real-time throttling is OFF (sched_rt_runtime_us = -1): the SCHED_FIFO steps will be skipped, as a spinning real-time process could starve this machine"
        ),
    }
    let burner = ChildGuard(child_command("low-latency", &format!("burn,{me},{b}"))?.spawn()?);
    say!(
        "[parent {me}] started a competitor, process {}: a CPU-bound loop, on CPU {b} from step 2 on",
        burner.pid()
    );
    let mut results = Vec::new();
    for (i, step) in STEPS.iter().enumerate() {
        anyhow::ensure!(!interrupt::interrupted(), "interrupted");
        say!("\n-- step {}: {} --", i + 1, step.name);
        say!("[parent {me}] {}", step.what);
        if step.pin {
            sched::pin_process(burner.pid(), &[b])?;
            sched::pin_thread(&[a])?;
        } else {
            sched::pin_process(burner.pid(), &cpus)?;
            sched::pin_thread(&cpus)?;
        }
        if step.mlock {
            if let Err(e) = sched::lock_memory() {
                say!("[parent {me}] {e}; going on without");
            }
        }
        match measure(me, step, b, step_time) {
            Ok(Some(h)) => {
                say!(
                    "[parent {me}] {}: {} round trips, p50 {}, p99 {}, p99.9 {}, max {}",
                    step.name,
                    h.len(),
                    us(h.value_at_quantile(0.5)),
                    us(h.value_at_quantile(0.99)),
                    us(h.value_at_quantile(0.999)),
                    us(h.max())
                );
                results.push((step.name, h));
            }
            Ok(None) => {}
            Err(e) => return Err(e),
        }
        if step.mlock {
            let _ = sched::unlock_memory();
        }
    }
    sched::pin_thread(&cpus)?;
    // Killed and reaped.
    drop(burner);
    let line: Vec<String> = results
        .iter()
        .map(|(name, h)| {
            format!(
                "{name} p50 {} p99.9 {} max {}",
                us(h.value_at_quantile(0.5)),
                us(h.value_at_quantile(0.999)),
                us(h.max())
            )
        })
        .collect();
    say!(
        "result: 64 B round trips beside a CPU-bound process: {}",
        line.join("; ")
    );
    Ok(())
}

/// One step: a fresh pair, the echoing child set up as the step says, round trips for
/// `time`. `None` if the child could not take the step (its reason is printed).
fn measure(
    me: u32,
    step: &Step,
    cpu: usize,
    time: Duration,
) -> anyhow::Result<Option<Histogram<u64>>> {
    let name = format!("/{}", ipckit::registry::unique_name("demo-lowlat"));
    let mut listener = PairBuilder::new(&name).wait(step.wait).create()?;
    let role = format!(
        "echo,{me},{name},{},{},{},{}",
        step.wait.name(),
        if step.pin {
            cpu.to_string()
        } else {
            "-".into()
        },
        u8::from(step.fifo),
        u8::from(step.mlock)
    );
    let mut child = ChildGuard(child_command("low-latency", &role)?.spawn()?);
    let mut ep = listener.accept_timeout(Duration::from_secs(10))?;
    let mut buf = vec![0u8; 256];
    // The child's first message: "ready", or why it cannot take this step.
    let n = ep.recv_timeout(&mut buf, Duration::from_secs(10))?;
    let hello = String::from_utf8_lossy(&buf[..n]).into_owned();
    if let Some(why) = hello.strip_prefix("skip: ") {
        say!("[child  {}] {why}; step skipped", child.pid());
        drop(ep);
        child.wait(Duration::from_secs(5))?;
        return Ok(None);
    }
    anyhow::ensure!(hello == "ready", "the echoing child said {hello:?}");
    let mut h = ipckit_bench::stats::new_histogram();
    let msg = [0x5au8; 64];
    // A short warm-up, then `time` of round trips, each timed on its own.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(20) {
        ep.send(&msg)?;
        ep.recv(&mut buf)?;
    }
    let start = Instant::now();
    while start.elapsed() < time && !interrupt::interrupted() {
        let t = Instant::now();
        ep.send(&msg)?;
        let n = ep.recv_timeout(&mut buf, Duration::from_secs(5))?;
        let ns = t.elapsed().as_nanos();
        anyhow::ensure!(n == msg.len() && buf[..n] == msg, "a wrong echo");
        h.record(u64::try_from(ns).unwrap_or(u64::MAX).max(1))?;
    }
    ep.send(b"")?;
    drop(ep);
    child.wait(Duration::from_secs(5))?;
    Ok(Some(h))
}

fn us(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1e3)
}

/// The children: `burn,PARENT,CPU` (the competitor) and
/// `echo,PARENT,NAME,WAIT,CPU|-,FIFO,MLOCK` (the echoing side of one step).
pub(super) fn child(role: &str) -> anyhow::Result<()> {
    let parts: Vec<&str> = role.split(',').collect();
    let parent: u32 = parts
        .get(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("bad child role {role}"))?;
    // A watchdog of its own: never outlive the demo.
    ipckit::process::die_with_parent(parent)?;
    match (parts.first().copied(), parts.len()) {
        (Some("burn"), 3) => burn(),
        (Some("echo"), 7) => echo(&parts),
        _ => anyhow::bail!("bad child role {role}"),
    }
}

/// The competitor: spins until killed (or its parent dies).
fn burn() -> anyhow::Result<()> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    loop {
        for _ in 0..1_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        std::hint::black_box(x);
        if interrupt::interrupted() {
            return Ok(());
        }
    }
}

/// The echoing side of one step.
fn echo(parts: &[&str]) -> anyhow::Result<()> {
    let me = std::process::id();
    let wait = Wait::parse(parts[3]).ok_or_else(|| anyhow::anyhow!("bad wait {}", parts[3]))?;
    let mut ep: ShmEndpoint = PairBuilder::new(parts[2]).wait(wait).open()?;
    if let Ok(cpu) = parts[4].parse::<usize>() {
        sched::pin_thread(&[cpu])?;
    }
    if parts[6] == "1" {
        if let Err(e) = sched::lock_memory() {
            say!("[child  {me}] {e}; going on without");
        }
    }
    if parts[5] == "1" {
        if let Err(e) = sched::set_policy(SchedPolicy::Fifo(1)) {
            ep.send(format!("skip: {e}").as_bytes())?;
            return wait_for_close(&mut ep);
        }
        say!("[child  {me}] now {}", sched::policy()?);
    }
    ep.send(b"ready")?;
    let mut buf = vec![0u8; 256];
    loop {
        let n = match ep.recv(&mut buf) {
            Ok(n) => n,
            Err(RecvError::PeerGone) => break,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        ep.send(&buf[..n])?;
    }
    // Back to the normal policy before anything else runs here.
    sched::set_policy(SchedPolicy::Normal)?;
    Ok(())
}

fn wait_for_close(ep: &mut ShmEndpoint) -> anyhow::Result<()> {
    let mut buf = [0u8; 8];
    match ep.recv_timeout(&mut buf, Duration::from_secs(10)) {
        Ok(_) | Err(RecvError::PeerGone) | Err(RecvError::Timeout) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
