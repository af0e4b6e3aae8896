//! The graceful shutdown coordinator across processes: a service with in-flight work and a
//! child worker gets SIGTERM, drains, reaps the worker and exits 0; a second SIGTERM during
//! the drain forces exit 143; SIGHUP reloads without stopping.
//!
//! The service, worker and jobs peers are the peer binary (`peer.rs`).

#[path = "../util/mod.rs"]
mod util;

use ipckit::shutdown::{Action, Coordinator, CoordinatorBuilder, Outcome, Phase, SignalMap};
use ipckit::signal::{self, Signal};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;
use util::{peer_command, watchdog, KillOnDrop};

/// A service peer, once it says it is ready.
struct Service {
    child: KillOnDrop,
    out: BufReader<std::process::ChildStdout>,
    lines: Vec<String>,
}

impl Service {
    fn start(mode: &str) -> Service {
        Service::start_role("service", &[("MODE", mode.to_owned())])
    }

    /// The `jobs` peer with `n` jobs in flight and a drain deadline of `deadline_ms`.
    fn start_jobs(mode: &str, n: usize, deadline_ms: u64) -> Service {
        Service::start_role(
            "jobs",
            &[
                ("MODE", mode.to_owned()),
                ("JOBS", n.to_string()),
                ("DEADLINE_MS", deadline_ms.to_string()),
            ],
        )
    }

    fn start_role(role: &str, vars: &[(&str, String)]) -> Service {
        let mut cmd = peer_command(role, vars);
        cmd.stdout(Stdio::piped());
        let mut child = KillOnDrop(cmd.spawn().unwrap());
        let out = BufReader::new(child.0.stdout.take().unwrap());
        let mut s = Service {
            child,
            out,
            lines: Vec::new(),
        };
        s.until("READY");
        s
    }

    /// Reads lines until one starts with `prefix`; returns it.
    fn until(&mut self, prefix: &str) -> String {
        loop {
            let mut line = String::new();
            assert!(
                self.out.read_line(&mut line).unwrap() > 0,
                "service ended before '{prefix}': {:?}",
                self.lines
            );
            let line = line.trim().to_owned();
            self.lines.push(line.clone());
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn worker_pid(&self) -> u32 {
        let l = self
            .lines
            .iter()
            .find(|l| l.starts_with("WORKER "))
            .unwrap();
        l["WORKER ".len()..].parse().unwrap()
    }

    /// Reads to the end and returns the exit code and every line.
    fn finish(mut self) -> (Option<i32>, Vec<String>) {
        for l in (&mut self.out).lines() {
            self.lines.push(l.unwrap());
        }
        let st = self.child.0.wait().unwrap();
        (st.code(), std::mem::take(&mut self.lines))
    }
}

fn pos(lines: &[String], prefix: &str) -> usize {
    lines
        .iter()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no '{prefix}' in {lines:#?}"))
}

#[test]
fn sigterm_drains_in_flight_work_reaps_the_worker_and_exits_0() {
    watchdog(60, || {
        let s = Service::start("drain");
        let wpid = s.worker_pid();
        signal::send(s.pid(), Signal::SIGTERM).unwrap();
        let (code, lines) = s.finish();
        assert_eq!(code, Some(0), "{lines:#?}");
        assert!(pos(&lines, "DRAINING in_flight=1") < pos(&lines, "WORK DONE"));
        pos(&lines, "REFUSED new work");
        // The worker was told (SIGTERM), drained its own work and exited 0; it was reaped.
        pos(&lines, "WORKER STOPPING Draining(SIGTERM(15))");
        pos(&lines, "WORKER DRAINED");
        assert!(pos(&lines, "WORK DONE") < pos(&lines, "OUTCOME Drained(SIGTERM(15))"));
        assert!(
            lines.contains(&format!("REAPED {wpid} code=Some(0)")),
            "{lines:#?}"
        );
        assert!(!lines.iter().any(|l| l.starts_with("ZOMBIE")), "{lines:#?}");
    });
}

#[test]
fn a_second_sigterm_during_the_drain_forces_exit_143() {
    watchdog(60, || {
        let mut s = Service::start("stuck");
        let wpid = s.worker_pid();
        signal::send(s.pid(), Signal::SIGTERM).unwrap();
        // Both lines, in either order (the worker's are forwarded by another thread).
        for want in ["DRAINING", "WORKER STOPPING"] {
            if !s.lines.iter().any(|l| l.starts_with(want)) {
                s.until(want);
            }
        }
        signal::send(s.pid(), Signal::SIGTERM).unwrap();
        let (code, lines) = s.finish();
        assert_eq!(code, Some(128 + 15), "{lines:#?}");
        assert!(
            !lines.iter().any(|l| l.starts_with("WORK DONE")),
            "{lines:#?}"
        );
        // The stuck worker was killed and reaped before the service exited: its pid is gone,
        // not a zombie left for init.
        assert!(
            !std::path::Path::new(&format!("/proc/{wpid}")).exists(),
            "worker {wpid} outlived the forced service"
        );
    });
}

#[test]
fn sighup_reloads_without_stopping() {
    watchdog(60, || {
        let mut s = Service::start("drain");
        for n in 1..=2 {
            signal::send(s.pid(), Signal::SIGHUP).unwrap();
            // HUP is a standard signal: wait for each before the next, or two would merge.
            let l = s.until("RELOAD");
            assert_eq!(l, format!("RELOAD {n} SIGHUP accepting=true"));
        }
        assert!(
            s.child.0.try_wait().unwrap().is_none(),
            "the service stopped"
        );
        signal::send(s.pid(), Signal::SIGTERM).unwrap();
        let (code, lines) = s.finish();
        assert_eq!(code, Some(0), "{lines:#?}");
    });
}

#[test]
fn maps_and_exit_statuses() {
    let d = SignalMap::default();
    assert_eq!(d.get(Signal::SIGTERM), Some(Action::Graceful));
    assert_eq!(d.get(Signal::SIGINT), Some(Action::Graceful));
    assert_eq!(d.get(Signal::SIGHUP), Some(Action::Reload));
    let n = SignalMap::nginx();
    assert_eq!(n.get(Signal::SIGTERM), Some(Action::Fast));
    assert_eq!(n.get(Signal::SIGQUIT), Some(Action::Graceful));
    assert_eq!(n.get(Signal::SIGUSR1), Some(Action::Custom(1)));
    let custom = SignalMap::empty().set(Signal::SIGUSR2, Action::Custom(7));
    assert_eq!(custom.signals(), vec![Signal::SIGUSR2]);
    assert_eq!(Outcome::Drained(Signal::SIGTERM).exit_status(), 0);
    assert_eq!(Outcome::Fast(Signal::SIGINT).exit_status(), 130);
    assert_eq!(Outcome::Forced(Signal::SIGTERM).exit_status(), 143);
    // Signals a thread has not blocked would never reach the coordinator: refused.
    let e = Coordinator::new(SignalMap::default()).unwrap_err();
    assert!(e.to_string().contains("not blocked"), "{e}");
}

/// In-process, with SIGUSR2 blocked in this test's own thread (the watcher inherits the mask)
/// and stops started by `trigger`: a deadline cuts off stuck work, a child that ignores the
/// signal is killed at the deadline and reaped, and a second stop is a forced one.
#[test]
fn the_deadline_kills_a_child_that_ignores_the_signal() {
    watchdog(60, || {
        signal::block_for_process(&[Signal::SIGUSR2]).unwrap();
        let map = SignalMap::empty().set(Signal::SIGUSR2, Action::Graceful);
        let c = CoordinatorBuilder::new(map)
            .force_exit(false)
            .create()
            .unwrap();
        let mut child = Command::new("sh")
            .args(["-c", "trap '' USR2; echo ready; exec sleep 30"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let cpid = child.id();
        c.adopt(child);
        let work = c.begin().unwrap();
        c.trigger(Signal::SIGUSR2, Action::Graceful);
        assert_eq!(c.phase(), Phase::Draining(Signal::SIGUSR2));
        assert!(!c.accepting() && c.begin().is_none());
        let o = c.wait_drained(Duration::from_millis(200));
        assert_eq!(
            o,
            Outcome::DeadlineExpired {
                signal: Signal::SIGUSR2,
                in_flight: 1
            }
        );
        assert_eq!(o.exit_status(), 128 + Signal::SIGUSR2.number());
        let reaped = c.reaped();
        assert_eq!(reaped.len(), 1);
        assert_eq!(reaped[0].0, cpid);
        assert_eq!(reaped[0].1.signal(), Some(libc::SIGKILL));
        assert!(c.children().is_empty());
        c.trigger(Signal::SIGUSR2, Action::Graceful);
        assert_eq!(
            c.wait_drained(Duration::ZERO),
            Outcome::Forced(Signal::SIGUSR2)
        );
        drop(work);
    });
}

#[test]
fn sigterm_drains_100_jobs_started_before_it_and_accepts_none_after() {
    watchdog(60, || {
        let mut s = Service::start_jobs("drain", 100, 10_000);
        assert_eq!(s.lines.last().unwrap(), "READY in_flight=100");
        let t0 = std::time::Instant::now();
        signal::send(s.pid(), Signal::SIGTERM).unwrap();
        s.until("STOP");
        let (code, lines) = s.finish();
        let took = t0.elapsed();
        assert_eq!(code, Some(0), "{lines:#?}");
        // All 100 were in flight when the stop began, none was accepted after it, and every
        // one finished before the process exited: well within the 10 s deadline.
        assert!(
            lines.contains(&"STOP Draining(SIGTERM(15)) in_flight=100 accepted_after=0".into()),
            "{lines:#?}"
        );
        assert!(
            lines.contains(&"OUTCOME Drained(SIGTERM(15)) done=100 in_flight=0".into()),
            "{lines:#?}"
        );
        assert!(took < Duration::from_secs(10), "took {took:?}");
    });
}

#[test]
fn stuck_jobs_end_at_the_deadline() {
    watchdog(60, || {
        let s = Service::start_jobs("stuck", 100, 1_000);
        let t0 = std::time::Instant::now();
        signal::send(s.pid(), Signal::SIGTERM).unwrap();
        let (code, lines) = s.finish();
        let took = t0.elapsed();
        assert_eq!(code, Some(128 + 15), "{lines:#?}");
        assert!(
            lines.contains(&"STOP Draining(SIGTERM(15)) in_flight=100 accepted_after=0".into()),
            "{lines:#?}"
        );
        assert!(
            lines.contains(
                &"OUTCOME DeadlineExpired { signal: SIGTERM(15), in_flight: 100 } done=0 in_flight=100"
                    .into()
            ),
            "{lines:#?}"
        );
        // It waited for the deadline, and not much longer.
        assert!(took >= Duration::from_millis(1_000), "took {took:?}");
        assert!(took < Duration::from_secs(6), "took {took:?}");
    });
}

#[test]
fn a_second_sigint_during_the_drain_forces_exit_130() {
    watchdog(60, || {
        let mut s = Service::start_jobs("stuck", 100, 30_000);
        signal::send(s.pid(), Signal::SIGTERM).unwrap();
        s.until("STOP Draining(SIGTERM(15)) in_flight=100");
        let t0 = std::time::Instant::now();
        signal::send(s.pid(), Signal::SIGINT).unwrap();
        let (code, lines) = s.finish();
        let took = t0.elapsed();
        // Forced at once by the second signal (SIGINT: 128 + 2), long before the 30 s deadline,
        // with the stuck jobs abandoned.
        assert_eq!(code, Some(128 + 2), "{lines:#?}");
        assert!(
            !lines.iter().any(|l| l.starts_with("OUTCOME")),
            "{lines:#?}"
        );
        assert!(took < Duration::from_secs(5), "took {took:?}");
    });
}

/// A child spawned after the stop signals were blocked inherits the blocked mask: spawned
/// as it is, the signal a graceful stop sends it stays pending and it dies only at the
/// deadline (SIGKILL). Spawned through `configure_child`, it starts with nothing blocked
/// and dies of the stop's signal at once.
#[test]
fn configure_child_lets_an_adopted_child_die_of_the_stop_signal() {
    watchdog(60, || {
        signal::block_for_process(&[Signal::SIGUSR2]).unwrap();
        let run = |configure: bool| {
            let map = SignalMap::empty().set(Signal::SIGUSR2, Action::Graceful);
            let c = CoordinatorBuilder::new(map)
                .force_exit(false)
                .create()
                .unwrap();
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            if configure {
                c.configure_child(&mut cmd);
            }
            let child = cmd.spawn().unwrap();
            c.adopt(child);
            c.trigger(Signal::SIGUSR2, Action::Graceful);
            let _ = c.wait_drained(Duration::from_secs(2));
            let reaped = c.reaped();
            assert_eq!(reaped.len(), 1);
            reaped[0].1.signal()
        };
        assert_eq!(
            run(true),
            Some(libc::SIGUSR2),
            "configured: the stop's signal"
        );
        assert_eq!(
            run(false),
            Some(libc::SIGKILL),
            "inherited mask: only the deadline"
        );
    });
}

/// The waits for an event and for the stop come as op / try_op / op_timeout: the `try_` and
/// `_timeout` forms return `None` while nothing happened, and `next_event` returns `None` at
/// once when a stop has begun.
#[test]
fn event_and_stop_waits_try_and_time_out() {
    watchdog(30, || {
        signal::block_for_process(&[Signal::SIGUSR1, Signal::SIGUSR2]).unwrap();
        let map = SignalMap::empty()
            .set(Signal::SIGUSR1, Action::Reload)
            .set(Signal::SIGUSR2, Action::Graceful);
        let c = CoordinatorBuilder::new(map)
            .force_exit(false)
            .create()
            .unwrap();
        assert_eq!(c.try_wait_stop(), None);
        assert_eq!(c.wait_stop_timeout(Duration::from_millis(20)), None);
        assert!(c.try_next_event().is_none());
        assert!(c.next_event_timeout(Duration::from_millis(20)).is_none());
        c.trigger(Signal::SIGUSR1, Action::Reload);
        assert!(matches!(
            c.try_next_event(),
            Some(ipckit::shutdown::Event::Reload(_))
        ));
        c.trigger(Signal::SIGUSR2, Action::Graceful);
        assert_eq!(c.try_wait_stop(), Some(Phase::Draining(Signal::SIGUSR2)));
        assert_eq!(
            c.wait_stop_timeout(Duration::from_secs(5)),
            Some(Phase::Draining(Signal::SIGUSR2))
        );
        assert!(c.next_event().is_none());
    });
}
