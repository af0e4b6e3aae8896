//! Rows (the median of the repeats), the table and the JSON document.

use crate::driver::{Measured, Params};
use crate::target::Target;
use ipckit_bench::machine::Machine;
use ipckit_bench::options::format_size;
use ipckit_bench::stats::{median, spread_pct, Percentiles, NOISY_PCT};
use serde::Serialize;
use std::fmt::Write as _;

/// One (library, transport, wait, size): the median over its repeats.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `ipckit`, `iceoryx2` or `ipc-channel`.
    pub library: String,
    /// What carries the bytes.
    pub transport: String,
    /// `spin` or `block`.
    pub wait: String,
    /// Message size, bytes.
    pub size: usize,
    /// Round trip, ns (field-wise median over the repeats).
    pub rtt_ns: Option<Percentiles>,
    /// Batched mean round trip, ns.
    pub rtt_batched_ns: Option<f64>,
    /// CPU of both processes per round trip, ns.
    pub cpu_ns_per_rtt: Option<f64>,
    /// 10^6 verified payload bytes per second, one way.
    pub throughput_mbps: Option<f64>,
    /// Messages per second, one way.
    pub msgs_per_s: Option<f64>,
    /// CPU of both processes per streamed message, ns.
    pub cpu_ns_per_msg: Option<f64>,
    /// (max - min) / median of RTT p50 and of MB/s over the repeats, the larger, percent.
    pub spread_pct: Option<f64>,
    /// Spread over 20%.
    pub noisy: bool,
    /// Repeats run (failed ones included).
    pub repeats: u32,
    /// Verification failures, lost messages and failed repeats.
    pub errors: u64,
    /// The first of them.
    pub first_error: Option<String>,
}

impl Row {
    /// Aggregates the repeats of one target and size.
    pub fn new(t: &Target, size: usize, results: &[Result<Measured, String>]) -> Row {
        let ok: Vec<&Measured> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        let med = |f: &dyn Fn(&Measured) -> Option<f64>| {
            median(&ok.iter().filter_map(|m| f(m)).collect::<Vec<_>>())
        };
        let rtts: Vec<Percentiles> = ok.iter().filter_map(|m| m.rtt).collect();
        let p50s: Vec<f64> = rtts.iter().map(|r| r.p50).collect();
        let mbps: Vec<f64> = ok.iter().map(|m| m.mbps).collect();
        let spread = match (spread_pct(&p50s), spread_pct(&mbps)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Row {
            library: t.lib.name().into(),
            transport: t.lib.transport().into(),
            wait: t.wait.name().into(),
            size,
            rtt_ns: Percentiles::median_of(&rtts),
            rtt_batched_ns: med(&|m| m.rtt_batched_ns),
            cpu_ns_per_rtt: med(&|m| m.cpu_ns_per_rtt),
            throughput_mbps: med(&|m| Some(m.mbps)),
            msgs_per_s: med(&|m| Some(m.msgs_per_s)),
            cpu_ns_per_msg: med(&|m| m.cpu_ns_per_msg),
            spread_pct: spread,
            noisy: spread.is_some_and(|s| s > NOISY_PCT),
            repeats: results.len() as u32,
            errors: ok.iter().map(|m| m.errors).sum::<u64>() + failed.len() as u64,
            first_error: ok
                .iter()
                .find_map(|m| m.first_error.clone())
                .or_else(|| failed.first().map(|s| s.to_string())),
        }
    }

    fn is_ipckit(&self) -> bool {
        self.library == "ipckit"
    }
}

/// A configuration that was not run, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// `library transport wait`.
    pub target: String,
    /// Why.
    pub reason: String,
}

/// The whole run, as `--json` writes it.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Version of this document's layout.
    pub schema: u32,
    /// `ipckit-peers 0.1.0`.
    pub tool: String,
    /// The peers' versions, from `Cargo.lock`.
    pub versions: Versions,
    /// The machine and the two CPUs used.
    pub machine: Machine,
    /// How each session ran.
    pub params: Params,
    /// Repeats per row.
    pub repeat: u32,
    /// Sizes, bytes.
    pub sizes: Vec<usize>,
    /// One per (target, size), in report order: sizes, then targets.
    pub rows: Vec<Row>,
    /// Targets not run.
    pub skipped: Vec<Skipped>,
    /// How to read the figures.
    pub notes: Vec<String>,
}

/// Versions of the libraries compared.
#[derive(Debug, Clone, Serialize)]
pub struct Versions {
    /// ipckit.
    pub ipckit: &'static str,
    /// iceoryx2.
    pub iceoryx2: &'static str,
    /// ipc-channel.
    pub ipc_channel: &'static str,
}

/// The versions this binary was built with.
pub const VERSIONS: Versions = Versions {
    ipckit: env!("CARGO_PKG_VERSION"),
    iceoryx2: env!("PEERS_ICEORYX2_VERSION"),
    ipc_channel: env!("PEERS_IPC_CHANNEL_VERSION"),
};

/// How to read the table (also in the JSON).
pub fn notes() -> Vec<String> {
    vec![
        "RTT is a round trip (one way is half), p50/p99/p99.9 of every recorded round trip".into(),
        "MB/s is 10^6 bytes/s of payload written by the sender and verified word by word by the receiver".into(),
        "CPU is user + system time of both processes' measuring threads, per round trip or per streamed message".into(),
        "every row copies: the sender's payload goes into the library from a buffer, the receiver copies it out (iceoryx2 is zero-copy natively; see peers/README.md)".into(),
    ]
}

fn us(ns: f64) -> String {
    let u = ns / 1000.0;
    if u < 10.0 {
        format!("{u:.2}")
    } else if u < 100.0 {
        format!("{u:.1}")
    } else {
        format!("{u:.0}")
    }
}

fn count(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

impl Report {
    /// The Markdown table, the ipckit-to-peers ratios, the skipped targets and the notes.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(
            s,
            "ipckit-peers: {} CPUs ({}), {}, kernel {}; processes pinned to CPUs {} and {} ({}); {} build; {} repeat(s) of {} ms phases, median shown",
            m.cpu_count,
            m.cpu_model,
            m.clock_source,
            m.kernel,
            m.cpus_used[0],
            m.cpus_used[1],
            match m.siblings {
                Some(true) => "hyperthread siblings",
                Some(false) => "not siblings",
                None => "topology unknown",
            },
            m.profile,
            self.repeat,
            self.params.duration.as_millis(),
        );
        let _ = writeln!(
            s,
            "versions: ipckit {}, iceoryx2 {}, ipc-channel {}\n",
            self.versions.ipckit, self.versions.iceoryx2, self.versions.ipc_channel
        );
        s.push_str("| library | transport | wait | size | RTT p50 µs | RTT p99 µs | RTT p99.9 µs | CPU µs/RTT | MB/s | msgs/s | CPU µs/msg | spread |\n");
        s.push_str("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in &self.rows {
            let rtt = r.rtt_ns;
            let spread = match r.spread_pct {
                Some(p) if r.noisy => format!("{p:.0}% noisy"),
                Some(p) => format!("{p:.0}%"),
                None => "–".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.library,
                r.transport,
                r.wait,
                format_size(r.size),
                opt(rtt.map(|p| p.p50), us),
                opt(rtt.map(|p| p.p99), us),
                opt(rtt.map(|p| p.p999), us),
                opt(r.cpu_ns_per_rtt, us),
                opt(r.throughput_mbps, |v| format!("{v:.0}")),
                opt(r.msgs_per_s, count),
                opt(r.cpu_ns_per_msg, us),
                spread,
            );
        }
        let ratios = self.ratios();
        if !ratios.is_empty() {
            s.push_str("\nipckit beside the fastest peer with the same wait (RTT: below 1 is faster; MB/s: above 1 is faster):\n\n");
            s.push_str("| size | wait | ipckit | fastest peer (RTT p50) | RTT p50 ratio | fastest peer (MB/s) | MB/s ratio |\n");
            s.push_str("|---|---|---|---|---:|---|---:|\n");
            s.push_str(&ratios);
        }
        for sk in &self.skipped {
            let _ = writeln!(s, "\nskipped {}: {}", sk.target, sk.reason);
        }
        let errors: Vec<&Row> = self.rows.iter().filter(|r| r.errors > 0).collect();
        for r in &errors {
            let _ = writeln!(
                s,
                "\nERRORS in {} {} {} {}: {} ({})",
                r.library,
                r.transport,
                r.wait,
                format_size(r.size),
                r.errors,
                r.first_error.as_deref().unwrap_or("no detail")
            );
        }
        s.push('\n');
        for n in &self.notes {
            let _ = writeln!(s, "{n}.");
        }
        s
    }

    /// For every (size, wait) with an ipckit row and a peer row: ipckit's best against the
    /// best peer, on RTT p50 and on MB/s.
    fn ratios(&self) -> String {
        let mut s = String::new();
        let ok = |r: &&Row| r.errors == 0;
        for &size in &self.sizes {
            for wait in ["spin", "block"] {
                let here: Vec<&Row> = self
                    .rows
                    .iter()
                    .filter(|r| r.size == size && r.wait == wait)
                    .filter(ok)
                    .collect();
                let best = |ipckit: bool, key: &dyn Fn(&Row) -> Option<f64>, lower: bool| {
                    here.iter()
                        .filter(|r| r.is_ipckit() == ipckit)
                        .filter_map(|r| key(r).map(|v| (*r, v)))
                        .min_by(|a, b| {
                            if lower {
                                a.1.total_cmp(&b.1)
                            } else {
                                b.1.total_cmp(&a.1)
                            }
                        })
                };
                let p50 = |r: &Row| r.rtt_ns.map(|p| p.p50);
                let mbps = |r: &Row| r.throughput_mbps;
                let (Some(k_rtt), Some(p_rtt), Some(k_mb), Some(p_mb)) = (
                    best(true, &p50, true),
                    best(false, &p50, true),
                    best(true, &mbps, false),
                    best(false, &mbps, false),
                ) else {
                    continue;
                };
                let name = |r: &Row| format!("{} {}", r.library, r.transport);
                let kit = if name(k_rtt.0) == name(k_mb.0) {
                    name(k_rtt.0)
                } else {
                    format!("{} / {}", name(k_rtt.0), name(k_mb.0))
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {:.2} | {} | {:.2} |",
                    format_size(size),
                    wait,
                    kit,
                    name(p_rtt.0),
                    k_rtt.1 / p_rtt.1,
                    name(p_mb.0),
                    k_mb.1 / p_mb.1,
                );
            }
        }
        s
    }
}
