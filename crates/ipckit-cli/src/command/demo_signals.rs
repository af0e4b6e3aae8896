//! The `signals` demo: a `sigaction` handler in this process, then a child reading a signalfd,
//! to which the parent sends five standard and five real-time signals: the standard ones
//! coalesce into one, the real-time ones queue in order with their payloads.

use super::spawn_child;
use crate::cli::DemoArgs;
use ipckit::signal::{self, HandlerBuilder, Signal, Signals};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

/// The parent's side.
pub(super) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let me = std::process::id();
    let n = if args.short { 5 } else { 20 };
    say!("[parent {me}] way 1, sigaction(2): a handler runs between any two instructions,");
    say!("[parent {me}]   so it may only call async-signal-safe functions; ipckit's adds 1 to an eventfd");
    let h = HandlerBuilder::new(Signal::SIGUSR2).notify().install()?;
    for _ in 0..3 {
        signal::send(me, Signal::SIGUSR2)?;
    }
    let got = h.wait_timeout(Duration::from_secs(5))?;
    say!("[parent {me}]   sent itself SIGUSR2 3 times; the handler counted {got} (each kill to self is delivered at once)");
    drop(h);
    say!("[parent {me}] way 2, signalfd(2): the child blocks its signals first thing, then reads");
    say!("[parent {me}]   them as data in normal context, each with its siginfo (sender pid, code, payload)");
    let mut child = spawn_child("signals", "listener", |cmd| {
        cmd.stdout(Stdio::piped());
    })?;
    let pid = child.pid();
    let mut out = BufReader::new(child.0.stdout.take().expect("piped"));
    let mut line = String::new();
    while line.trim() != "READY" {
        line.clear();
        anyhow::ensure!(out.read_line(&mut line)? > 0, "the child exited early");
    }
    let rt1 = Signal::rt(1)?;
    say!("[parent {me}] sending the child {n} x SIGUSR1 with kill(2) and {n} x {rt1} with sigqueue(3) (payloads 0..{n}),");
    say!("[parent {me}]   all before it reads any, then SIGUSR2 to say \"done\"");
    for v in 0..n {
        signal::send(pid, Signal::SIGUSR1)?;
        signal::queue(pid, rt1, v)?;
    }
    signal::send(pid, Signal::SIGUSR2)?;
    let (mut usr1, mut rt) = (0, 0);
    for l in out.lines() {
        let l = l?;
        if l.contains("SIGUSR1") {
            usr1 += 1;
        }
        if l.contains(&rt1.to_string()) {
            rt += 1;
        }
        say!("{l}");
    }
    child.wait(Duration::from_secs(10))?;
    say!("[parent {me}] a standard signal is one pending bit: {n} sends, {usr1} received (coalesced);");
    say!("[parent {me}]   a real-time signal is queued: {n} sends, {rt} received, in order, each with its payload");
    say!("result: SIGUSR1 {usr1}/{n} received, {rt1} {rt}/{n} received");
    Ok(())
}

/// The child's side: block, say ready, wait for "done", then drain and print what arrived.
pub(super) fn child(role: &str) -> anyhow::Result<()> {
    anyhow::ensure!(role == "listener", "unknown role {role}");
    let me = std::process::id();
    let rt1 = Signal::rt(1)?;
    // First thing, before any thread: blocked signals wait for the signalfd.
    signal::block_for_process(&[Signal::SIGUSR1, Signal::SIGUSR2, rt1])?;
    let done = Signals::new(&[Signal::SIGUSR2])?;
    let rest = Signals::new(&[Signal::SIGUSR1, rt1])?;
    say!("READY");
    done.read_timeout(Duration::from_secs(10))?;
    say!("[child  {me}] \"done\" arrived; reading what is pending on the signalfd:");
    while let Some(i) = rest.try_read()? {
        say!(
            "[child  {me}]   {} from pid {} ({}) payload {:?}",
            i.signal,
            i.pid,
            i.code,
            i.value
        );
    }
    Ok(())
}
