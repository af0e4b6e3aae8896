//! Signals and graceful shutdown with `ipckit::shutdown::Coordinator`: the first SIGTERM
//! stops new work and lets the work in flight finish (exit 0); a second SIGTERM while
//! draining forces the exit (128 + 15 = 143), as `systemctl stop` or Ctrl-C twice would.
//!
//! Process 1 (a supervisor) starts Process 2 (a service) twice, reading its output through a
//! pipe to know when to signal it:
//! 1. The service's job takes 300 ms: one SIGTERM, the job finishes, the service exits 0.
//! 2. The service's job is stuck: one SIGTERM starts the drain, a second one forces exit 143.
//!
//! Run it: `cargo run -p ipckit --example shutdown`

use ipckit::shutdown::{Coordinator, Outcome, SignalMap};
use ipckit::signal::{self, Signal};
use std::error::Error;
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Every wait is bounded: a peer that dies or hangs becomes an error, never a hang.
const LIMIT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let run = match std::env::args().nth(1).as_deref() {
        Some("service-quick") => service(Duration::from_millis(300)),
        Some("service-stuck") => service(LIMIT * 3),
        _ => supervisor(),
    };
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shutdown (pid {}): {e}", std::process::id());
            ExitCode::FAILURE
        }
    }
}

fn supervisor() -> Result<(), Box<dyn Error>> {
    // Process 1: one SIGTERM to a service whose job ends, two to one whose job is stuck.
    for (role, sigterms, expected) in [("service-quick", 1, 0), ("service-stuck", 2, 143)] {
        let mut child = Command::new(std::env::current_exe()?)
            .arg(role)
            .stdout(Stdio::piped())
            .spawn()?;
        let (tx, lines) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().ok_or("no pipe")?);
        std::thread::spawn(move || {
            out.lines()
                .map_while(Result::ok)
                .try_for_each(|l| tx.send(l))
        });
        // Echo the service's lines until one contains `word` (at most LIMIT for each).
        let wait_for = |word: &str| -> Result<String, String> {
            loop {
                let line = lines
                    .recv_timeout(LIMIT)
                    .map_err(|_| format!("no {word:?} from the service"))?;
                println!("{line}");
                if line.contains(word) {
                    return Ok(line);
                }
            }
        };
        wait_for("ready")?;
        let (me, pid) = (std::process::id(), child.id());
        for n in 1..=sigterms {
            if n > 1 {
                wait_for("draining")?;
            }
            println!("[process 1, pid {me}] SIGTERM number {n} to process 2 (pid {pid})");
            signal::send(pid, Signal::SIGTERM)?;
        }
        // The service's last words: its exit status if it exits by itself, none if forced.
        let exited_itself = wait_for("exit status").is_ok();
        let code = child.wait()?.code();
        println!("[process 1] the service exited with {code:?}");
        if code != Some(expected) || exited_itself != (sigterms == 1) {
            let how = if sigterms == 1 {
                "by itself, after the drain"
            } else {
                "forced"
            };
            return Err(format!("expected exit status {expected}, {how}; got {code:?}").into());
        }
    }
    Ok(())
}

fn service(job: Duration) -> Result<(), Box<dyn Error>> {
    // Process 2: block the signals before any thread starts; the coordinator reads them.
    let map = SignalMap::default(); // SIGTERM and SIGINT graceful, SIGHUP reload
    Coordinator::block(&map)?;
    let c = Coordinator::new(map)?;
    let me = std::process::id();
    let work = c.begin().ok_or("already stopping")?; // one job in flight...
    std::thread::spawn(move || {
        std::thread::sleep(job);
        drop(work); // ...until it is done
    });
    println!("[process 2, pid {me}] ready, one job of {job:?} in flight");
    let _ = c.next_event_timeout(LIMIT); // returns when a stop begins (or after LIMIT)
    if c.accepting() {
        return Err("no SIGTERM came: is the supervisor gone?".into());
    }
    println!(
        "[process 2] SIGTERM: draining, {} job(s) in flight",
        c.in_flight()
    );
    // From here a second SIGTERM makes the coordinator exit the process with 143.
    let outcome = c.wait_drained(LIMIT);
    let how = if matches!(outcome, Outcome::Drained(_)) {
        "all work done"
    } else {
        "work abandoned"
    };
    println!("[process 2] {how}: exit status {}", outcome.exit_status());
    std::process::exit(outcome.exit_status());
}
