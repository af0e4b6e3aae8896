//! The `shutdown` demo: a service with requests in flight and an adopted child worker, run by
//! `ipckit::shutdown::Coordinator`: SIGHUP reloads, SIGTERM drains (no new work, in-flight
//! work finishes, the worker is told and reaped), and a second SIGTERM forces a stuck worker.

use super::spawn_child;
use crate::cli::DemoArgs;
use ipckit::shutdown::{Coordinator, Event, SignalMap};
use ipckit::signal::{self, Signal};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The parent's side: the service.
pub(super) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let me = std::process::id();
    let work = if args.short { 200 } else { 800 };
    let map = SignalMap::default();
    // First thing, before any thread: the signals wait for the coordinator's signalfd.
    Coordinator::block(&map)?;
    let c = Coordinator::new(map)?;
    say!("[service {me}] SignalMap::default(): SIGTERM and SIGINT graceful, SIGHUP reload;");
    say!("[service {me}]   blocked before any thread, read from a signalfd by a watcher thread");
    let worker = spawn_worker()?;
    let wpid = worker.id();
    c.adopt(worker);
    say!("[service {me}] adopted worker {wpid}: it is signalled when we stop and reaped after");
    let guards: Vec<_> = (0..2).filter_map(|_| c.begin()).collect();
    say!("[service {me}] 2 requests in flight (each takes {work} ms more once we drain)");
    signal::send(me, Signal::SIGHUP)?;
    if let Some(Event::Reload(i)) = c.next_event_timeout(Duration::from_secs(5)) {
        say!(
            "[service {me}] {} from pid {}: reload; still accepting = {}",
            i.signal,
            i.pid,
            c.accepting()
        );
    }
    std::thread::sleep(Duration::from_millis(100)); // let the worker start its request
    say!("[service {me}] sending itself SIGTERM");
    signal::send(me, Signal::SIGTERM)?;
    let phase = c.wait_stop();
    say!(
        "[service {me}] {phase:?}: accepting = {}, a new request gets {}",
        c.accepting(),
        if c.begin().is_none() {
            "None (refused)"
        } else {
            "a guard?!"
        }
    );
    let start = Instant::now();
    std::thread::scope(|s| -> std::io::Result<()> {
        for (i, g) in guards.into_iter().enumerate() {
            s.spawn(move || -> std::io::Result<()> {
                std::thread::sleep(Duration::from_millis(work));
                say!("[service {me}]   request {} done", i + 1);
                drop(g);
                Ok(())
            });
        }
        let o = c.wait_drained(Duration::from_secs(10));
        say!(
            "[service {me}] drained in {:.2} s: {o:?}, exit status by convention {}",
            start.elapsed().as_secs_f64(),
            o.exit_status()
        );
        Ok(())
    })?;
    for (pid, st) in c.reaped() {
        say!("[service {me}] reaped worker {pid}: {st} (no zombie left)");
    }

    say!("[service {me}] now a worker whose request never finishes:");
    let mut stuck = spawn_child("shutdown", "stuck", |cmd| {
        cmd.stdout(Stdio::piped());
    })?;
    let spid = stuck.pid();
    let mut out = BufReader::new(stuck.0.stdout.take().expect("piped"));
    // Each signal waits for the worker to have read the one before: two SIGTERMs pending at
    // once would be one (standard signals coalesce).
    relay_until(&mut out, "started a request")?;
    say!("[service {me}] SIGTERM to worker {spid}: it starts draining, but cannot finish");
    signal::send(spid, Signal::SIGTERM)?;
    relay_until(&mut out, "never ends")?;
    say!("[service {me}] a second SIGTERM to worker {spid}: that forces it");
    signal::send(spid, Signal::SIGTERM)?;
    let st = stuck.0.wait()?;
    say!(
        "[service {me}] reaped worker {spid}: exit status {:?} (128 + 15), signal {:?}",
        st.code(),
        st.signal()
    );
    anyhow::ensure!(st.code() == Some(143), "the stuck worker exited with {st}");
    say!("result: graceful drain exit 0 with the worker reaped; forced exit 143");
    Ok(())
}

/// Prints the child's lines up to and including the first that contains `what`.
fn relay_until(out: &mut impl BufRead, what: &str) -> anyhow::Result<()> {
    loop {
        let mut line = String::new();
        anyhow::ensure!(out.read_line(&mut line)? > 0, "the worker exited early");
        say!("{}", line.trim_end_matches('\n'));
        if line.contains(what) {
            return Ok(());
        }
    }
}

/// Starts `ipckit demo shutdown --child worker` as a plain `Child`, for the coordinator to
/// own and reap (a `ChildGuard` would reap it itself).
fn spawn_worker() -> anyhow::Result<std::process::Child> {
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["demo", "shutdown", "--child", "worker"]);
    Ok(cmd.spawn()?)
}

/// The child's side: a worker with one request in flight. `stuck`'s request never ends.
pub(super) fn child(role: &str) -> anyhow::Result<()> {
    anyhow::ensure!(role == "worker" || role == "stuck", "unknown role {role}");
    let me = std::process::id();
    // Never outlive a demo that died, as an orphan that ignores SIGTERM.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(30));
        std::process::exit(99);
    });
    let map = SignalMap::default();
    Coordinator::block(&map)?; // inherited across exec already; this says so
    let c = Coordinator::new(map)?;
    let work = c.begin();
    say!("[worker  {me}] started a request");
    let phase = c.wait_stop();
    say!("[worker  {me}] {phase:?}: taking no new work, finishing the request in flight");
    if role == "stuck" {
        say!("[worker  {me}] (this request never ends; only a second signal stops me)");
        std::thread::sleep(Duration::from_secs(30));
    }
    std::thread::sleep(Duration::from_millis(300));
    drop(work);
    let o = c.wait_drained(Duration::from_secs(5));
    say!(
        "[worker  {me}] request done; exiting with status {}",
        o.exit_status()
    );
    std::process::exit(o.exit_status());
}
