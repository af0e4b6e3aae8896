//! The zero-copy rows of a bench run: each group (a baseline and its zero-copy paths) run
//! interleaved repeat by repeat, its rows built, and the summary notes that say where
//! zero-copy pays.

use super::session::{session, Run};
use super::{Path, ALL_ROWS};
use crate::options::{format_size, BenchOptions};
use crate::report::Row;
use crate::rows::{Placement, Skipped};
use crate::stats::{median, spread_pct, NOISY_PCT};
use ipckit::Wait;

/// Runs every selected zero-copy group and returns its rows (each baseline followed by its
/// zero-copy rows, per placement and size) and what was skipped.
pub(crate) fn run_rows(
    opts: &BenchOptions,
    cpus: [usize; 2],
    bar: &indicatif::ProgressBar,
) -> (Vec<Row>, Vec<Skipped>) {
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    if opts.zero_copy.is_empty() {
        return (rows, skipped);
    }
    // Groups: a baseline and the selected zero-copy paths that compare with it.
    let mut groups: Vec<(Path, Vec<Path>)> = Vec::new();
    for &p in ALL_ROWS.iter().filter(|p| opts.zero_copy.contains(p)) {
        let Some(b) = p.baseline() else { continue };
        match groups.iter_mut().find(|(g, _)| *g == b) {
            Some((_, v)) => v.push(p),
            None => groups.push((b, vec![p])),
        }
    }
    // Pipes can spin (non-blocking calls retried); sockets and files are measured blocking.
    let plan: Vec<(Wait, &(Path, Vec<Path>))> = opts
        .waits
        .iter()
        .flat_map(|&w| groups.iter().map(move |g| (w, g)))
        .filter(|(w, g)| *w == Wait::Block || g.0 == Path::PipeWrite)
        .collect();
    for (b, zs) in &groups {
        if b.spins() || opts.waits.contains(&Wait::Block) {
            continue;
        }
        for p in std::iter::once(b).chain(zs) {
            for &size in &opts.sizes {
                skipped.push(Skipped {
                    mechanism: p.name().into(),
                    wait: opts
                        .waits
                        .iter()
                        .map(|w| w.name())
                        .collect::<Vec<_>>()
                        .join(","),
                    placement: "-".into(),
                    size,
                    reason: "sockets and files are measured blocking only (--wait block)".into(),
                });
            }
        }
    }
    let sessions: usize = plan.iter().map(|(_, (_, z))| 1 + z.len()).sum::<usize>()
        * opts.sizes.len()
        * opts.placements.len()
        * opts.repeat as usize;
    bar.inc_length(sessions as u64);
    for &placement in &opts.placements {
        let pair = match placement {
            Placement::Cross => cpus,
            Placement::Same => [cpus[0], cpus[0]],
        };
        for &size in &opts.sizes {
            for &(wait, (base, zs)) in &plan {
                if wait.spins() && pair[0] == pair[1] {
                    skipped.push(Skipped {
                        mechanism: format!("{base} and its zero-copy rows"),
                        wait: wait.name().into(),
                        placement: placement.name().into(),
                        size,
                        reason: "two spinning processes on one CPU would measure the scheduler"
                            .into(),
                    });
                    continue;
                }
                let members: Vec<Path> = std::iter::once(*base).chain(zs.iter().copied()).collect();
                let mut results: Vec<Vec<Result<Run, String>>> = vec![Vec::new(); members.len()];
                for rep in 0..opts.repeat {
                    for k in 0..members.len() {
                        let k = if rep % 2 == 1 {
                            members.len() - 1 - k
                        } else {
                            k
                        };
                        let p = members[k];
                        bar.set_message(format!(
                            "{} {} {} {}",
                            p.name(),
                            wait.name(),
                            placement.name(),
                            format_size(size)
                        ));
                        results[k]
                            .push(session(p, size, wait, pair, opts).map_err(|e| e.to_string()));
                        bar.inc(1);
                    }
                }
                for (k, p) in members.iter().enumerate() {
                    let ratio = (k > 0).then(|| {
                        let r: Vec<f64> = results[k]
                            .iter()
                            .zip(&results[0])
                            .filter_map(|(a, b)| match (a, b) {
                                (Ok(a), Ok(b)) if b.msgs_per_s > 0.0 => {
                                    Some(a.msgs_per_s / b.msgs_per_s)
                                }
                                _ => None,
                            })
                            .collect();
                        median(&r)
                    });
                    rows.push(row(
                        *p,
                        wait,
                        placement,
                        size,
                        &results[k],
                        ratio.flatten(),
                        opts,
                    ));
                }
            }
        }
    }
    (rows, skipped)
}

/// Whether a zero-copy path pays, from its msgs/s over its baseline's: within 5% is even.
fn verdict(ratio: f64) -> &'static str {
    if ratio >= 1.05 {
        "pays"
    } else if ratio > 0.95 {
        "even"
    } else {
        "does not pay"
    }
}

/// One note per zero-copy path, wait and placement: its ratio to its copying baseline at
/// every size, and whether it pays; and the `MSG_ZEROCOPY` completions marked copied.
pub(crate) fn summary(rows: &[Row]) -> Vec<String> {
    let mut notes = Vec::new();
    let mut seen: Vec<(String, String, String)> = Vec::new();
    for r in rows {
        let Some(p) = Path::from_row_name(&r.mechanism) else {
            continue;
        };
        let Some(b) = p.baseline() else { continue };
        let key = (r.mechanism.clone(), r.wait.clone(), r.placement.clone());
        if seen.contains(&key) {
            continue;
        }
        let same: Vec<&Row> = rows
            .iter()
            .filter(|q| q.mechanism == key.0 && q.wait == key.1 && q.placement == key.2)
            .collect();
        let per_size: Vec<String> = same
            .iter()
            .map(|q| {
                // CPU per message against the baseline's row of the same size.
                let cpu = rows
                    .iter()
                    .find(|c| {
                        c.mechanism == b.name()
                            && c.size == q.size
                            && c.wait == q.wait
                            && c.placement == q.placement
                    })
                    .and_then(|c| Some(q.cpu_ns_per_msg? / c.cpu_ns_per_msg?))
                    .map_or(String::new(), |c| format!(", CPU x{c:.2}"));
                match q.ratio_to_raw_msgs {
                    Some(x) => format!("{} x{x:.2} {}{cpu}", format_size(q.size), verdict(x)),
                    None => format!("{} n/a", format_size(q.size)),
                }
            })
            .collect();
        notes.push(format!(
            "zero-copy: {} vs {b} ({} {}), msgs/s (and CPU per message): {}",
            key.0,
            key.1,
            key.2,
            per_size.join(", ")
        ));
        let done: u64 = same.iter().filter_map(|q| q.zc_completions).sum();
        let copied: u64 = same.iter().filter_map(|q| q.zc_copied).sum();
        if p == Path::TcpZerocopy {
            notes.push(format!(
                "MSG_ZEROCOPY: the kernel marked {copied} of {done} completions copied{}",
                if copied == done && done > 0 {
                    " (loopback: the receiving socket cannot keep the sender's pages, so they \
                     are copied on delivery; there is no crossover to find here)"
                } else {
                    ""
                }
            ));
        }
        seen.push(key);
    }
    notes
}

fn row(
    p: Path,
    wait: Wait,
    placement: Placement,
    size: usize,
    results: &[Result<Run, String>],
    ratio: Option<f64>,
    opts: &BenchOptions,
) -> Row {
    let ok: Vec<&Run> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let msgs: Vec<f64> = ok.iter().map(|r| r.msgs_per_s).collect();
    let mbps = median(&ok.iter().map(|r| r.mbps).collect::<Vec<_>>());
    let spread = spread_pct(&msgs);
    let mut notes = vec![format!("throughput only: {}", p.what())];
    if let (Some(b), Some(x)) = (p.baseline(), ratio) {
        notes.push(format!(
            "x{x:.2} the msgs/s of {b} ({}; median of paired runs)",
            verdict(x)
        ));
    }
    let zc_completions = ok
        .iter()
        .filter_map(|r| r.zc.map(|s| s.completions))
        .reduce(|a, b| a + b);
    let zc_copied = ok
        .iter()
        .filter_map(|r| r.zc.map(|s| s.copied))
        .reduce(|a, b| a + b);
    if let (Some(m), Some(n)) = (zc_completions, zc_copied) {
        let why = if n == m && m > 0 {
            ": loopback copies (the receiving socket cannot keep the sender's pages)"
        } else {
            ""
        };
        notes.push(format!("copied {n} of {m} completions{why}"));
    }
    for f in &failures {
        notes.push(format!("run failed: {f}"));
    }
    let errors = ok.iter().map(|r| r.errors).sum::<u64>() + failures.len() as u64;
    let first_error = ok
        .iter()
        .find_map(|r| r.first_error.clone())
        .or_else(|| failures.first().map(|s| s.to_string()));
    Row {
        mechanism: p.name().into(),
        wait: wait.name().into(),
        placement: placement.name().into(),
        size,
        imp: p.imp().name().into(),
        producers: None,
        latency_size: None,
        throughput_size: Some(size),
        max_msg_size: None,
        rtt_ns: None,
        rtt_batched_ns: None,
        one_way_p50_ns: None,
        throughput_mbps: mbps,
        msgs_per_s: median(&msgs),
        cpu_ns_per_msg: median(
            &ok.iter()
                .filter_map(|r| r.cpu_ns_per_msg)
                .collect::<Vec<_>>(),
        ),
        cpu_ns_per_rtt: None,
        spread_pct: spread,
        noisy: spread.is_some_and(|s| s > NOISY_PCT),
        lost: 0,
        reordered: 0,
        errors,
        first_error,
        ratio_to_floor: None,
        cacheline_p50_ns: None,
        probe_vs_floor: None,
        mode_changed: false,
        throughput_vs_memcpy: None,
        ratio_to_raw_rtt: None,
        ratio_to_raw_msgs: ratio,
        repeats: results.len() as u32,
        touch: opts.touch,
        open_loop_rate: None,
        note: Some(notes.join("; ")),
        zc_completions,
        zc_copied,
        loss_pct: None,
        socket_buffers: None,
    }
}
