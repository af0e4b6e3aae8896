//! The measurement harness behind `ipckit bench`.
//!
//! Two real processes (the bench re-executes its own binary as the peer, see [`peer`]), each
//! pinned to its own CPU; the floor first ([`floor`]); then, for every (mechanism, wait,
//! placement, size), a latency phase and a throughput phase ([`scenario`]) through ipckit and,
//! with `--reference`, through the plain syscalls ([`mod@reference`], and [`refring`] for shared memory). The rules it follows are
//! in `METHOD.md`.
#![deny(unsafe_code)]

mod columns;
pub mod compare;
pub mod floor;
pub mod html;
mod libc_only;
pub mod machine;
mod mpsc;
pub mod netvariants;
pub mod options;
pub mod pattern;
pub mod peer;
pub mod recommend;
pub mod reference;
pub mod refring;
pub mod report;
pub mod results;
mod rows;
pub mod scenario;
pub mod seed;
pub mod session;
mod shm_channel;
pub mod stats;
mod sys;
pub mod zerocopy;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ipckit::{Mechanism, Wait};
use options::{format_size, BenchOptions};
use report::{Report, Row, Skipped};
use rows::{Impl, Placement};
use stats::{median, spread_pct, Percentiles, NOISY_PCT};
use std::time::Duration;

pub use peer::{peer_main, peer_main_with, PEER_ARG};

/// The few system calls a driver outside this crate needs to follow the harness's rules (the
/// `peers` comparison crate): the same pinning, per-thread CPU time and shared monotonic clock.
pub mod os {
    pub use crate::libc_only::thread_cpu_ns;
    pub use crate::sys::{allowed_cpus, mono_ns, pin_current_thread, set_affinity};
}

/// Why a run could not start.
#[derive(Debug)]
pub enum BenchError {
    /// The options ask for something impossible here (exit status 2).
    Usage(String),
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchError::Usage(s) | BenchError::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for BenchError {}

/// One configuration to measure.
#[derive(Debug, Clone, Copy)]
struct Plan {
    mech: Mechanism,
    wait: Wait,
    placement: Placement,
    size: usize,
    imp: Impl,
    zero_copy: bool,
    /// MPSC rows: producer processes (0: not an MPSC row).
    producers: u32,
    /// TCP/UDP rows with one socket option changed ([`netvariants`]).
    net: Option<netvariants::NetVariant>,
}

impl Plan {
    /// The row's mechanism name: `shm-zerocopy` for the zero-copy API of `shm`, `shm-mpsc`
    /// for its many-to-one queue.
    fn name(&self) -> String {
        if let Some(v) = self.net {
            v.name().to_owned()
        } else if self.producers > 0 {
            format!("{}-mpsc", self.mech)
        } else if self.zero_copy {
            format!("{}-zerocopy", self.mech)
        } else {
            self.mech.name().to_owned()
        }
    }
}

/// Runs the whole benchmark: floor, then every configuration `opts.repeat` times.
/// `progress` draws a bar on stderr.
///
/// # Errors
///
/// [`BenchError::Usage`] for CPUs that cannot be used; failures of single rows are recorded
/// in the rows (`errors`), not returned.
pub fn run(opts: &BenchOptions, progress: bool) -> Result<Report, BenchError> {
    let allowed =
        sys::allowed_cpus().map_err(|e| BenchError::Other(format!("sched_getaffinity: {e}")))?;
    let cpus = machine::choose_cpus(&allowed, opts.pin).map_err(BenchError::Usage)?;
    if cfg!(debug_assertions) {
        eprintln!("ipckit bench: warning: this is a debug build; its figures are not release figures (recorded as \"profile\": \"debug\")");
    }
    let machine = machine::probe(cpus, allowed.clone());

    let mut plans = Vec::new();
    let mut skipped = Vec::new();
    for (mech, net) in netvariants::order(&opts.mechs, &opts.net_variants) {
        let sizes: Vec<usize> = if mech.carries_payload() {
            opts.sizes.clone()
        } else {
            vec![8]
        };
        for &size in &sizes {
            for &wait in &opts.waits {
                for &placement in &opts.placements {
                    let pair = placement_cpus(placement, cpus);
                    if wait.spins() && pair[0] == pair[1] {
                        skipped.push(Skipped {
                            mechanism: netvariants::row_name(mech, net).into(),
                            wait: wait.name().into(),
                            placement: placement.name().into(),
                            size,
                            reason: format!(
                                "{} waits busy-poll: two spinning processes on one CPU (CPU {}) would measure the scheduler, not the mechanism",
                                wait.name(),
                                pair[0]
                            ),
                        });
                        continue;
                    }
                    // Shared memory has two APIs: copy (the Transport) and zero-copy.
                    let variants: &[bool] = if mech == Mechanism::Shm {
                        &[false, true]
                    } else {
                        &[false]
                    };
                    skipped.extend(netvariants::udp_latency_skip(
                        mech,
                        net,
                        wait.name(),
                        placement.name(),
                        size,
                    ));
                    if let Some(v) = net {
                        // One implementation per variant, never paired with a raw row.
                        plans.push(Plan {
                            mech,
                            wait,
                            placement,
                            size,
                            imp: if v.split_writes() {
                                Impl::Raw
                            } else {
                                Impl::Ipckit
                            },
                            zero_copy: false,
                            producers: 0,
                            net,
                        });
                        continue;
                    }
                    for &zero_copy in variants {
                        plans.push(Plan {
                            mech,
                            wait,
                            placement,
                            size,
                            imp: Impl::Ipckit,
                            zero_copy,
                            producers: 0,
                            net: None,
                        });
                        if opts.reference {
                            plans.push(Plan {
                                mech,
                                wait,
                                placement,
                                size,
                                imp: Impl::Raw,
                                zero_copy,
                                producers: 0,
                                net: None,
                            });
                        }
                    }
                    if mech != Mechanism::Shm {
                        continue;
                    }
                    // The MPSC queue: one consumer on the first CPU, every producer on the
                    // second. With more processes than CPUs only blocking waits mean anything.
                    for &n in &opts.mpsc_producers {
                        let procs = n as usize + 1;
                        let distinct = if pair[0] == pair[1] { 1 } else { 2 };
                        let why = if size < 8 {
                            Some(
                                "an MPSC message needs 8 bytes for its producer id and sequence"
                                    .to_string(),
                            )
                        } else if wait.spins() && procs > distinct {
                            Some(format!(
                                "{procs} processes ({n} producers, 1 consumer) on {distinct} CPU(s): {} waits busy-poll and would measure the scheduler; only blocking waits are measured",
                                wait.name()
                            ))
                        } else {
                            None
                        };
                        if let Some(reason) = why {
                            skipped.push(Skipped {
                                mechanism: format!("shm-mpsc x{n}"),
                                wait: wait.name().into(),
                                placement: placement.name().into(),
                                size,
                                reason,
                            });
                            continue;
                        }
                        plans.push(Plan {
                            mech,
                            wait,
                            placement,
                            size,
                            imp: Impl::Ipckit,
                            zero_copy: false,
                            producers: n,
                            net: None,
                        });
                    }
                }
            }
        }
    }

    let bar = if progress {
        let b = ProgressBar::with_draw_target(
            Some(1 + (plans.len() as u64) * u64::from(opts.repeat)),
            ProgressDrawTarget::stderr(),
        );
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    bar.set_message("floor: cache-line ping-pong, memcpy, syscall");
    let mut floor = floor::measure(cpus, opts.duration, opts.quick);
    // How much placement matters for anything that blocks: one blocking eventfd round trip
    // across the two CPUs and on one CPU. On a VM where waking an idle CPU is slow the two
    // differ several times over, and every blocking row inherits that.
    if cpus[0] != cpus[1] {
        let mut short = opts.clone();
        short.duration = opts.duration.min(Duration::from_millis(150));
        short.rate = None;
        for (pair, slot) in [
            ([cpus[0], cpus[1]], &mut floor.blocking_rtt_cross_ns),
            ([cpus[0], cpus[0]], &mut floor.blocking_rtt_same_ns),
        ] {
            let cfg = session::Config {
                mech: Mechanism::Eventfd,
                wait: Wait::Block,
                imp: Impl::Ipckit,
                size: 8,
                cpus: pair,
                zero_copy: false,
                producers: 0,
                net: None,
            };
            *slot = session::run(&cfg, &short)
                .ok()
                .and_then(|m| m.rtt)
                .map(|r| r.p50);
        }
    }
    bar.inc(1);

    // With --reference, the ipckit and raw runs of one configuration alternate repeat by
    // repeat (ipckit first on even repeats, raw first on odd ones), and the ratio reported is
    // the median of the per-repeat ratios: on a machine whose speed drifts over seconds (a VM
    // waking idle CPUs), comparing two medians taken a minute apart would measure the drift.
    let mut rows = Vec::new();
    let mut i = 0;
    while i < plans.len() {
        let paired = opts.reference
            && plans
                .get(i + 1)
                .is_some_and(|q| q.imp == Impl::Raw && q.net == plans[i].net)
            && plans[i].imp == Impl::Ipckit;
        let group = if paired {
            &plans[i..i + 2]
        } else {
            &plans[i..i + 1]
        };
        let mut results: Vec<Vec<Result<session::Measured, String>>> =
            vec![Vec::new(); group.len()];
        for rep in 0..opts.repeat {
            for k in 0..group.len() {
                let k = if rep % 2 == 1 { group.len() - 1 - k } else { k };
                let p = &group[k];
                bar.set_message(format!(
                    "{} {} {} {} {}",
                    p.name(),
                    p.wait.name(),
                    p.placement.name(),
                    format_size(p.size),
                    p.imp.name()
                ));
                let cfg = session::Config {
                    mech: p.mech,
                    wait: p.wait,
                    imp: p.imp,
                    size: p.size,
                    cpus: placement_cpus(p.placement, cpus),
                    zero_copy: p.zero_copy,
                    producers: p.producers,
                    net: p.net,
                };
                results[k].push(session::run(&cfg, opts));
                bar.inc(1);
            }
        }
        let mut group_rows: Vec<Row> = group
            .iter()
            .zip(&results)
            .map(|(p, r)| aggregate(p, r, opts, &floor))
            .collect();
        if let [ipc, raw] = &results[..] {
            let paired = |f: &dyn Fn(&session::Measured) -> Option<f64>| {
                let ratios: Vec<f64> = ipc
                    .iter()
                    .zip(raw)
                    .filter_map(|(a, b)| match (a, b) {
                        (Ok(a), Ok(b)) => match (f(a), f(b)) {
                            (Some(x), Some(y)) if y > 0.0 => Some(x / y),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect();
                median(&ratios)
            };
            group_rows[0].ratio_to_raw_rtt = paired(&|m| m.rtt.map(|r| r.p50));
            group_rows[0].ratio_to_raw_msgs = paired(&|m| Some(m.msgs_per_s));
        }
        rows.extend(group_rows);
        i += group.len();
    }
    // The zero-copy rows (`--mech zero-copy`), each beside its copying baseline.
    let (zc_rows, zc_skipped) = zerocopy::run_rows(opts, cpus, &bar);
    rows.extend(zc_rows);
    skipped.extend(zc_skipped);
    bar.finish_and_clear();
    let _ = sys::set_affinity(&allowed);
    let mut report = Report::new(machine, floor, opts, rows, skipped);
    report.notes.extend(zerocopy::summary(&report.rows));
    Ok(report)
}

fn placement_cpus(p: Placement, cpus: [usize; 2]) -> [usize; 2] {
    match p {
        Placement::Cross => cpus,
        Placement::Same => [cpus[0], cpus[0]],
    }
}

/// A probe over the floor's probe outside 1/1.5..1.5: the machine changed mode between them
/// (this VM's cache-line round trip flips between about 120 and 350-400 ns).
fn mode_changed(probe_vs_floor: f64) -> bool {
    !(1.0 / 1.5..=1.5).contains(&probe_vs_floor)
}

fn aggregate(
    p: &Plan,
    results: &[Result<session::Measured, String>],
    opts: &BenchOptions,
    floor: &floor::Floor,
) -> Row {
    let ok: Vec<&session::Measured> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let med = |f: &dyn Fn(&session::Measured) -> Option<f64>| {
        median(&ok.iter().filter_map(|m| f(m)).collect::<Vec<_>>())
    };
    let rtts: Vec<Percentiles> = ok.iter().filter_map(|m| m.rtt).collect();
    let rtt = Percentiles::median_of(&rtts);
    let msgs: Vec<f64> = ok.iter().map(|m| m.msgs_per_s).collect();
    let p50s: Vec<f64> = rtts.iter().map(|r| r.p50).collect();
    let spread = match (spread_pct(&msgs), spread_pct(&p50s)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let first = ok.first();
    let max_msg = first.map(|m| m.max_msg_size);
    let lat_size = first.and_then(|m| m.lat_size);
    let tput_size = first.map(|m| m.tput_size);
    let mut notes = Vec::new();
    if p.producers > 0 {
        notes.push(format!(
            "throughput only: {} producer process(es) into one consumer; every message's producer, sequence and words checked",
            p.producers
        ));
    } else if let (Some(max), None, false) = (max_msg, lat_size, p.mech == Mechanism::Udp) {
        if !ok.is_empty() {
            notes.push(format!("latency n/a: {} carries at most {max} B", p.mech));
        }
    }
    if let Some(t) = tput_size {
        if t != p.size && p.mech.carries_payload() {
            notes.push(format!("throughput measured at the largest message, {t} B"));
        }
    }
    let socket_buffers = first.and_then(|m| m.socket_buffers);
    if let Some(v) = p.net {
        notes.push(v.note(socket_buffers, rtt.map(|r| r.p50)));
    }
    if p.mech == Mechanism::Udp {
        notes.extend(netvariants::udp_size_note(p.size));
    }
    if !p.mech.carries_payload() {
        notes.push("counter: msgs/s = notifications/s, sum verified".into());
    }
    for f in &failures {
        notes.push(format!("run failed: {f}"));
    }
    let errors = ok.iter().map(|m| m.errors).sum::<u64>() + failures.len() as u64;
    let first_error = ok
        .iter()
        .find_map(|m| m.first_error.clone())
        .or_else(|| failures.first().map(|s| s.to_string()));
    let mbps = med(&|m| m.mbps);
    let probe = med(&|m| m.cacheline_p50_ns);
    let probe_vs_floor = match (probe, floor.cacheline_rtt_ns) {
        (Some(p), Some(f)) if f.p50 > 0.0 => Some(p / f.p50),
        _ => None,
    };
    let mode_changed = probe_vs_floor.is_some_and(mode_changed);
    if mode_changed {
        notes.push(format!(
            "the machine changed mode: the cache line beside this row took {:.0} ns, the run's floor {:.0} ns; compare it only with rows of a like probe",
            probe.unwrap_or(f64::NAN),
            floor.cacheline_rtt_ns.map_or(f64::NAN, |f| f.p50)
        ));
    }
    Row {
        mechanism: p.name(),
        wait: p.wait.name().into(),
        placement: p.placement.name().into(),
        size: p.size,
        imp: p.imp.name().into(),
        producers: (p.producers > 0).then_some(p.producers),
        latency_size: lat_size,
        throughput_size: tput_size,
        max_msg_size: max_msg,
        rtt_ns: rtt,
        rtt_batched_ns: med(&|m| m.rtt_batched_ns),
        one_way_p50_ns: rtt.map(|r| r.p50 / 2.0),
        throughput_mbps: mbps,
        msgs_per_s: median(&msgs),
        cpu_ns_per_msg: med(&|m| m.cpu_ns_per_msg),
        cpu_ns_per_rtt: med(&|m| m.cpu_ns_per_rtt),
        spread_pct: spread,
        noisy: spread.is_some_and(|s| s > NOISY_PCT),
        lost: ok.iter().map(|m| m.lost).sum(),
        reordered: ok.iter().map(|m| m.reordered).sum(),
        loss_pct: {
            let sent: u64 = ok.iter().map(|m| m.tput_sent).sum();
            let lost: u64 = ok.iter().map(|m| m.tput_lost).sum();
            (p.mech.is_lossy() && sent > 0).then(|| lost as f64 * 100.0 / sent as f64)
        },
        socket_buffers,
        errors,
        first_error,
        // Rows that probed the cache line beside each session are compared with those
        // probes (median of the per-session ratios); the others with the run's floor.
        ratio_to_floor: match (rtt, floor.cacheline_rtt_ns) {
            _ if ok.iter().any(|m| m.cacheline_p50_ns.is_some()) => median(
                &ok.iter()
                    .filter_map(|m| Some(m.rtt?.p50 / m.cacheline_p50_ns?))
                    .collect::<Vec<_>>(),
            ),
            (Some(r), Some(f)) if f.p50 > 0.0 => Some(r.p50 / f.p50),
            _ => None,
        },
        cacheline_p50_ns: probe,
        probe_vs_floor,
        mode_changed,
        throughput_vs_memcpy: mbps.map(|m| m / floor.memcpy_mbps),
        ratio_to_raw_rtt: None,
        ratio_to_raw_msgs: None,
        repeats: results.len() as u32,
        touch: opts.touch,
        open_loop_rate: opts.rate,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
        zc_completions: None,
        zc_copied: None,
    }
}

#[cfg(test)]
mod tests {
    use super::mode_changed;

    #[test]
    fn a_probe_half_again_off_the_floor_is_another_mode() {
        // This VM: 120 ns in one mode, 350-400 ns in the other.
        assert!(mode_changed(380.0 / 120.0));
        assert!(mode_changed(120.0 / 380.0));
        assert!(!mode_changed(130.0 / 120.0));
        assert!(!mode_changed(100.0 / 120.0));
        assert!(!mode_changed(1.5));
        assert!(mode_changed(1.51));
    }
}
