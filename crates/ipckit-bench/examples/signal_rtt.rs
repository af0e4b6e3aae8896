//! Signals as a transport, measured the way `ipckit bench` measures everything else: two
//! processes pinned to two CPUs (or one), a ping-pong of real-time signals carrying a
//! sigqueue payload (timed per round trip, p50/p99), then one-way streaming of real-time
//! signals for a second (signals/s, every payload checked in order).
//!
//! Waiting is either `block` (a blocking read of a signalfd: the process sleeps until the
//! signal arrives) or `spin` (a non-blocking read retried at once).
//!
//! `cargo run --release -p ipckit-bench --example signal_rtt [-- --pin A,B] [--trips N]`

use hdrhistogram::Histogram;
use ipckit::signal::{self, Signal, Signals};
use ipckit_bench::os::pin_current_thread;
use std::io::{self, BufRead, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A message's signal to the child, and the child's answer.
fn sigs() -> (Signal, Signal) {
    (Signal::rtmin(), Signal::rt(1).expect("SIGRTMIN+1 exists"))
}

fn recv(s: &Signals, spin: bool) -> io::Result<i32> {
    let info = if spin {
        loop {
            if let Some(i) = s.try_read()? {
                break i;
            }
            std::hint::spin_loop();
        }
    } else {
        s.read()?
    };
    Ok(info.value.unwrap_or(-1))
}

/// Sends, retrying while the receiver's queue is full (RLIMIT_SIGPENDING); returns retries.
fn send(pid: u32, sig: Signal, v: i32) -> io::Result<u64> {
    let mut retries = 0;
    loop {
        match signal::queue(pid, sig, v) {
            Ok(()) => return Ok(retries),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                retries += 1;
                std::thread::yield_now();
            }
            Err(e) => return Err(e),
        }
    }
}

/// The child: echo `trips` signals, then count a stream until the value -1.
fn child(parent: u32, cpu: usize, spin: bool, trips: u64) -> io::Result<()> {
    let (ping, pong) = sigs();
    pin_current_thread(cpu)?;
    let s = Signals::new(&[ping])?;
    println!("ready");
    io::stdout().flush()?;
    for _ in 0..trips {
        let v = recv(&s, spin)?;
        send(parent, pong, v)?;
    }
    let (mut n, mut bad) = (0i64, 0i64);
    loop {
        let v = recv(&s, spin)?;
        if v == -1 {
            break;
        }
        if i64::from(v) != n {
            bad += 1;
        }
        n += 1;
    }
    println!("{n} {bad}");
    Ok(())
}

fn run(cpus: [usize; 2], spin: bool, trips: u64) -> io::Result<()> {
    let (ping, pong) = sigs();
    let exe = std::env::current_exe()?;
    let mut c = Command::new(exe)
        .args([
            "--child",
            &std::process::id().to_string(),
            &cpus[1].to_string(),
            if spin { "spin" } else { "block" },
            &trips.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = c.id();
    let mut lines = io::BufReader::new(c.stdout.take().expect("piped")).lines();
    let ready = lines.next().transpose()?;
    if ready.as_deref() != Some("ready") {
        return Err(io::Error::other(format!("child said {ready:?}")));
    }
    pin_current_thread(cpus[0])?;
    let s = Signals::new(&[pong])?;
    let warm = trips / 10;
    let mut h =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(io::Error::other)?;
    for i in 0..trips {
        let t = Instant::now();
        send(pid, ping, i as i32)?;
        let v = recv(&s, spin)?;
        let ns = t.elapsed().as_nanos() as u64;
        if v != i as i32 {
            return Err(io::Error::other(format!("echo {v} for {i}")));
        }
        if i >= warm {
            h.saturating_record(ns);
        }
    }
    // Stream for a second.
    let start = Instant::now();
    let (mut sent, mut retries) = (0i64, 0u64);
    while start.elapsed() < Duration::from_secs(1) {
        retries += send(pid, ping, sent as i32)?;
        sent += 1;
    }
    send(pid, ping, -1)?;
    let line = lines.next().transpose()?.unwrap_or_default();
    let took = start.elapsed().as_secs_f64();
    c.wait()?;
    let mut f = line
        .split_whitespace()
        .map(|x| x.parse::<i64>().unwrap_or(-1));
    let (got, bad) = (f.next().unwrap_or(-1), f.next().unwrap_or(-1));
    println!(
        "{:<5} CPUs {},{}: RTT p50 {:6.2} µs  p99 {:6.2} µs   stream {:>9.0} signals/s  (received {got} of {sent} in order, {bad} out of order, {retries} sends retried on a full queue)",
        if spin { "spin" } else { "block" },
        cpus[0],
        cpus[1],
        h.value_at_quantile(0.5) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        got as f64 / took,
    );
    Ok(())
}

fn main() -> io::Result<()> {
    let (ping, pong) = sigs();
    // Before any thread exists: both signals are read from signalfds, never delivered.
    signal::block_for_process(&[ping, pong])?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let num = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
        return child(
            num(1) as u32,
            num(2) as usize,
            args.get(3).map(String::as_str) == Some("spin"),
            num(4),
        );
    }
    let mut pin = [0usize, 1];
    let mut trips = 100_000u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--pin" => {
                let v = it.next().map(String::as_str).unwrap_or("0,1");
                let mut p = v.split(',').filter_map(|x| x.parse().ok());
                pin = [p.next().unwrap_or(0), p.next().unwrap_or(1)];
            }
            "--trips" => trips = it.next().and_then(|v| v.parse().ok()).unwrap_or(trips),
            other => return Err(io::Error::other(format!("unknown argument {other}"))),
        }
    }
    println!("signal ping-pong (sigqueue SIGRTMIN / SIGRTMIN+1 with payloads, signalfd), {trips} round trips:");
    run(pin, false, trips)?;
    run(pin, true, trips)?;
    run([pin[0], pin[0]], false, trips)?;
    Ok(())
}
