//! The shutdown tests' peers (run by `tests/peers/bin.rs`): a service, its worker, and a
//! service with many jobs in flight.

use crate::util::peer_command;
use ipckit::shutdown::{Coordinator, Event, SignalMap};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

/// `MODE=stuck` makes in-flight work never finish.
fn stuck() -> bool {
    std::env::var("MODE").is_ok_and(|m| m == "stuck")
}

/// Runs peer `role`. Like a real program, it blocks the default map's signals first, at the
/// top of `main` while it has no other thread that could take them.
pub fn run(role: &str) {
    if Coordinator::block(&SignalMap::default()).is_err() {
        std::process::abort();
    }
    match role {
        "service" => service(),
        "worker" => worker(),
        "jobs" => jobs(),
        other => panic!("unknown role {other}"),
    }
}

/// A worker child: one unit of in-flight work that finishes 100 ms after the stop begins.
fn worker() -> ! {
    // Never outlive a failed test as an orphan that ignores SIGTERM.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(30));
        std::process::exit(99);
    });
    let c = Coordinator::new(SignalMap::default()).unwrap();
    let work = c.begin().unwrap();
    println!("WORKER READY");
    let phase = c.wait_stop();
    println!("WORKER STOPPING {phase:?}");
    if stuck() {
        std::thread::sleep(Duration::from_secs(60));
    }
    std::thread::sleep(Duration::from_millis(100));
    drop(work);
    println!("WORKER DRAINED");
    std::process::exit(c.wait_drained(Duration::from_secs(10)).exit_status());
}

/// A service with `JOBS` jobs in flight before any signal: each holds a work guard and, once
/// the stop has begun and been counted, finishes after a few ms (`MODE=stuck`: never). After the stop it tries to
/// start `JOBS` more, then waits for the drain up to `DEADLINE_MS` and exits with the outcome.
fn jobs() -> ! {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let n: usize = std::env::var("JOBS").unwrap().parse().unwrap();
    let deadline = Duration::from_millis(std::env::var("DEADLINE_MS").unwrap().parse().unwrap());
    let c = Coordinator::new(SignalMap::default()).unwrap();
    let done = AtomicUsize::new(0);
    // Jobs finish only once the stop has been observed, so the count at the stop is exact.
    let observed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for j in 0..n {
            let work = c.begin().expect("accepting before any signal");
            let (c, done, observed) = (&c, &done, &observed);
            s.spawn(move || {
                c.wait_stop();
                while !observed.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if stuck() {
                    std::thread::sleep(Duration::from_secs(60));
                }
                std::thread::sleep(Duration::from_millis(1 + (j % 50) as u64));
                done.fetch_add(1, Ordering::SeqCst);
                drop(work);
            });
        }
        println!("READY in_flight={}", c.in_flight());
        let phase = c.wait_stop();
        let at_stop = c.in_flight();
        let accepted = (0..n).filter(|_| c.begin().is_some()).count();
        observed.store(true, Ordering::SeqCst);
        println!("STOP {phase:?} in_flight={at_stop} accepted_after={accepted}");
        let outcome = c.wait_drained(deadline);
        println!(
            "OUTCOME {outcome:?} done={} in_flight={}",
            done.load(Ordering::SeqCst),
            c.in_flight()
        );
        std::process::exit(outcome.exit_status());
    })
}

/// The service: adopts a worker, holds one unit of work, reports reloads, drains on SIGTERM.
fn service() -> ! {
    let c = Coordinator::new(SignalMap::default()).unwrap();
    let mut w = peer_command("worker", &[])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let wpid = w.id();
    let mut wout = BufReader::new(w.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(wout.read_line(&mut line).unwrap() > 0, "worker died");
        if line.trim() == "WORKER READY" {
            break;
        }
    }
    std::thread::spawn(move || {
        for l in wout.lines() {
            println!("{}", l.unwrap());
        }
    });
    c.adopt(w);
    println!("WORKER {wpid}");
    let work = c.begin().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            while c.accepting() {
                std::thread::sleep(Duration::from_millis(5));
            }
            println!("DRAINING in_flight={}", c.in_flight());
            if c.begin().is_none() {
                println!("REFUSED new work");
            }
            if stuck() {
                std::thread::sleep(Duration::from_secs(60));
            }
            std::thread::sleep(Duration::from_millis(200));
            println!("WORK DONE");
            drop(work);
        });
        println!("READY");
        let mut reloads = 0;
        while c.accepting() {
            if let Some(Event::Reload(info)) = c.next_event_timeout(Duration::from_millis(20)) {
                reloads += 1;
                println!(
                    "RELOAD {reloads} {} accepting={}",
                    info.signal,
                    c.accepting()
                );
            }
        }
        let outcome = c.wait_drained(Duration::from_secs(10));
        println!("OUTCOME {outcome:?}");
        for (pid, st) in c.reaped() {
            println!("REAPED {pid} code={:?}", st.code());
        }
        if std::path::Path::new(&format!("/proc/{wpid}")).exists() {
            println!("ZOMBIE {wpid}");
        }
        std::process::exit(outcome.exit_status());
    })
}
