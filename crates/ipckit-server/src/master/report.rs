//! `ipckit serve --status`: each running master's workers, read from its state file and
//! its status board, printed as a table.

use super::log::now_ns;
use super::state::{running, state_dir, State};
use crate::status::StatusBoard;
use std::io::{self, Write};
use std::path::Path;

/// `ipckit serve --status`: prints each running master's workers (pid, generation,
/// requests, connections, active, errors, 4xx, 5xx, age) and totals to `out`. Returns 0, or 1
/// with a message on stderr when no server runs.
pub fn status(port: Option<u16>, out: &mut dyn Write) -> i32 {
    let masters = match running(port) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ipckit serve --status: {e}");
            return 1;
        }
    };
    if masters.is_empty() {
        let which = port.map_or_else(String::new, |p| format!(" on port {p}"));
        eprintln!(
            "ipckit serve --status: no ipckit serve is running{which} (no live state file in {})",
            state_dir().display()
        );
        return 1;
    }
    for (path, s) in masters {
        if let Err(e) = print_status(&path, &s, out) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                return 0;
            }
            eprintln!("ipckit serve --status: {e}");
            return 1;
        }
    }
    0
}

/// Prints one master's status (what [`status`] prints for each): its board, opened by the
/// name in `s`, read against the workers `s` lists. Public only for the fuzz target
/// (`fuzz/fuzz_targets/status.rs`): the board's words are written by worker processes, the
/// state file by any process of the same user.
#[doc(hidden)]
pub fn print_status(path: &Path, s: &State, out: &mut dyn Write) -> io::Result<()> {
    let board = StatusBoard::open_named(&s.status)
        .map_err(|e| io::Error::new(e.kind(), format!("status board {}: {e}", s.status)))?;
    let snap = board.snapshot();
    let addrs: Vec<String> = s.listen.iter().map(ToString::to_string).collect();
    writeln!(
        out,
        "ipckit serve: master {}, listening on {} ({} accept), generation {}, {} workers ({})",
        s.master_pid,
        addrs.join(", "),
        s.accept,
        s.generation,
        s.workers.len(),
        path.display()
    )?;
    writeln!(
        out,
        "{:>4} {:>8} {:>4} {:>10} {:>8} {:>7} {:>7} {:>6} {:>6} {:>9}",
        "slot", "pid", "gen", "requests", "conns", "active", "errors", "4xx", "5xx", "age"
    )?;
    let now = now_ns();
    let boot_ns = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0, |s| (s * 1e9) as u64);
    let mut total = [0u64; 7];
    for w in &s.workers {
        // The slot's counters, if the worker the state file names has claimed it yet.
        let c = snap.get(w.slot).filter(|c| c.pid == u64::from(w.pid));
        let age = match c {
            Some(c) if c.started_ns > 0 => {
                // Times before 2001 are taken for a clock since boot (CLOCK_MONOTONIC).
                let clock = if c.started_ns < 1_000_000_000_000_000_000 {
                    boot_ns
                } else {
                    now
                };
                format!("{:.1}s", clock.saturating_sub(c.started_ns) as f64 / 1e9)
            }
            _ => "starting".into(),
        };
        let vals = c.map_or([0; 6], |c| {
            [
                c.requests,
                c.connections,
                c.active,
                c.errors,
                c.status_4xx,
                c.status_5xx,
            ]
        });
        // Saturating: the counters are whatever the board holds, and a worker (or anyone
        // who can write the board) may have left any value there.
        for (t, v) in total.iter_mut().zip(vals) {
            *t = t.saturating_add(v);
        }
        total[6] += 1;
        writeln!(
            out,
            "{:>4} {:>8} {:>4} {:>10} {:>8} {:>7} {:>7} {:>6} {:>6} {:>9}{}",
            w.slot,
            w.pid,
            w.generation,
            vals[0],
            vals[1],
            vals[2],
            vals[3],
            vals[4],
            vals[5],
            age,
            if w.retiring { "  retiring" } else { "" }
        )?;
    }
    writeln!(
        out,
        "{:>4} {:>8} {:>4} {:>10} {:>8} {:>7} {:>7} {:>6} {:>6}",
        "all", total[6], "", total[0], total[1], total[2], total[3], total[4], total[5]
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AcceptMode;
    use crate::master::StateWorker;
    use std::sync::atomic::Ordering;

    /// Found by the `status` fuzz target: counters near `u64::MAX` (a board another process
    /// wrote) overflowed the totals, a panic in a debug build.
    #[test]
    fn status_totals_of_huge_counters_saturate() {
        let name = format!("ipckit-test-status-{}", std::process::id());
        let board = StatusBoard::create_named(&name, 2).unwrap();
        for i in 0..2 {
            board.slot(i).claim(100 + i as u32, 1, 0);
            board.slot(i).requests.store(u64::MAX, Ordering::Relaxed);
        }
        let state = State {
            master_pid: 1,
            master_start: 0,
            status: name,
            listen: Vec::new(),
            accept: AcceptMode::Exclusive,
            generation: 1,
            workers: (0..2)
                .map(|i| StateWorker {
                    slot: i,
                    pid: 100 + i as u32,
                    generation: 1,
                    retiring: false,
                })
                .collect(),
        };
        let mut out = Vec::new();
        print_status(Path::new("test.json"), &state, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let all = text.lines().last().unwrap();
        assert!(all.contains(&u64::MAX.to_string()), "{text}");
    }
}
