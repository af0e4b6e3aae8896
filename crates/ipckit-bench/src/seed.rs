//! The seed's table, measured: one line per family of mechanisms (shared memory, pipe, Unix
//! socket, message queue, TCP) in the shape of the table that started this project, its
//! figures taken from this run's rows, with the seed's own figures beside them, labelled as
//! the seed's, so a reader sees where this machine agrees and where the seed was off.
//!
//! Every figure is one row's figure, and the row is named: nothing is computed that a row
//! does not hold but the one-way latency, which is the round trip halved (as the rows'
//! `one_way_p50_ns`).

use crate::rows::Row;
use serde::Serialize;
use std::fmt::Write as _;

/// One family, measured here, beside the seed's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeedRow {
    /// The family, as the seed named it.
    pub family: &'static str,
    /// The mechanisms of this run counted in the family.
    pub mechanisms: Vec<&'static str>,
    /// The family's best throughput in this run, MB/s (10^6 B/s), over every row.
    pub best_mbps: Option<f64>,
    /// The row it comes from: `mechanism wait size`.
    pub best_mbps_row: Option<String>,
    /// The 64 B round trip, blocking (`--wait block`), p50, µs: the family's lowest.
    pub rtt_64_block_us: Option<f64>,
    /// The row it comes from.
    pub rtt_64_block_row: Option<String>,
    /// The 64 B round trip, busy-polling (`--wait spin`), p50, µs: the family's lowest.
    pub rtt_64_spin_us: Option<f64>,
    /// The row it comes from.
    pub rtt_64_spin_row: Option<String>,
    /// CPU per message (user+sys of both processes, throughput phase), µs, of the blocking
    /// 64 B row above.
    pub cpu_us_per_msg: Option<f64>,
    /// What the family is for.
    pub use_for: &'static str,
    /// The seed's throughput, MB/s.
    pub seed_mbps: f64,
    /// The seed's latency, µs (the seed does not say whether one way or a round trip).
    pub seed_latency_us: f64,
}

/// (family, its mechanisms, what it is for, the seed's MB/s, the seed's µs).
const FAMILIES: [(&str, &[&str], &str, f64, f64); 5] = [
    (
        "shared memory",
        &["shm", "shm-zerocopy", "shm-mpsc"],
        "bulk data and the lowest latency between processes that trust each other",
        22_000.0,
        0.5,
    ),
    (
        "pipe",
        &["pipe", "fifo"],
        "a parent and its children; shell pipelines; one-way byte streams",
        1_900.0,
        520.0,
    ),
    (
        "Unix socket",
        &["uds", "uds-seqpacket", "uds-dgram"],
        "local client/server, with credentials and descriptors passed",
        1_600.0,
        612.0,
    ),
    (
        "message queue",
        &["mq-posix", "mq-sysv"],
        "whole messages with priorities or types, kept by the kernel, no connection",
        1_100.0,
        892.0,
    ),
    (
        "TCP",
        &["tcp"],
        "across machines (here over loopback, for comparison)",
        800.0,
        1_250.0,
    ),
];

fn name(r: &Row) -> String {
    format!(
        "{} {} {}",
        r.mechanism,
        r.wait,
        crate::options::format_size(r.size)
    )
}

/// The seed's table from `rows`: ipckit's rows only (not the reference loops), cross-CPU
/// where the run has both placements.
pub fn summarize(rows: &[Row]) -> Vec<SeedRow> {
    let ours: Vec<&Row> = rows.iter().filter(|r| r.imp == "ipckit").collect();
    let cross = ours.iter().any(|r| r.placement == "cross");
    let ours: Vec<&Row> = ours
        .into_iter()
        .filter(|r| !cross || r.placement == "cross")
        .collect();
    FAMILIES
        .iter()
        .map(|&(family, mechs, use_for, seed_mbps, seed_latency_us)| {
            let fam: Vec<&Row> = ours
                .iter()
                .copied()
                .filter(|r| mechs.contains(&r.mechanism.as_str()))
                .collect();
            let best = fam
                .iter()
                .filter(|r| r.throughput_mbps.is_some())
                .max_by(|a, b| a.throughput_mbps.partial_cmp(&b.throughput_mbps).unwrap());
            let fastest = |wait: &str| {
                fam.iter()
                    .filter(|r| r.wait == wait && r.size == 64 && r.latency_size == Some(64))
                    .filter_map(|r| r.rtt_ns.as_ref().map(|p| (p.p50, *r)))
                    .min_by(|a, b| a.0.total_cmp(&b.0))
            };
            let block = fastest("block");
            let spin = fastest("spin");
            SeedRow {
                family,
                mechanisms: mechs
                    .iter()
                    .copied()
                    .filter(|m| fam.iter().any(|r| r.mechanism == *m))
                    .collect(),
                best_mbps: best.and_then(|r| r.throughput_mbps),
                best_mbps_row: best.map(|r| name(r)),
                rtt_64_block_us: block.map(|(p, _)| p / 1e3),
                rtt_64_block_row: block.map(|(_, r)| name(r)),
                rtt_64_spin_us: spin.map(|(p, _)| p / 1e3),
                rtt_64_spin_row: spin.map(|(_, r)| name(r)),
                cpu_us_per_msg: block.and_then(|(_, r)| r.cpu_ns_per_msg).map(|c| c / 1e3),
                use_for,
                seed_mbps,
                seed_latency_us,
            }
        })
        .collect()
}

/// The table for people, as `ipckit bench` prints it at the end of a run.
pub fn render(table: &[SeedRow]) -> String {
    let mut s = String::new();
    if table
        .iter()
        .all(|r| r.best_mbps.is_none() && r.rtt_64_block_us.is_none())
    {
        return s;
    }
    let _ = writeln!(
        s,
        "The seed's table, measured here (ipckit rows; 64 B round trip p50, one way = half; \
         the seed's figures as the seed gave them, its latency not said to be one way or a \
         round trip):"
    );
    let header = [
        "family",
        "best MB/s",
        "64 B block RTT / one-way us",
        "64 B spin RTT / one-way us",
        "CPU us/msg",
        "seed MB/s",
        "seed us",
        "for",
    ];
    let f = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |x| format!("{x:.prec$}"));
    let rtt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2} / {:.2}", x / 2.0));
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in table {
        lines.push(vec![
            r.family.to_string(),
            f(r.best_mbps, 0),
            rtt(r.rtt_64_block_us),
            rtt(r.rtt_64_spin_us),
            f(r.cpu_us_per_msg, 2),
            format!("{:.0}", r.seed_mbps),
            format!("{}", r.seed_latency_us),
            r.use_for.to_string(),
        ]);
    }
    let ncol = header.len();
    s.push_str(&crate::columns::render(&lines, |c| c == 0 || c == ncol - 1));
    for r in table {
        let rows = sources(r);
        if !rows.is_empty() {
            let _ = writeln!(s, "  {}: {}", r.family, rows.join(", "));
        }
    }
    s
}

/// Which row each figure of `r` comes from, labelled (`MB/s from shm-zerocopy spin 64KiB`).
pub fn sources(r: &SeedRow) -> Vec<String> {
    [
        ("MB/s", &r.best_mbps_row),
        ("block RTT and CPU", &r.rtt_64_block_row),
        ("spin RTT", &r.rtt_64_spin_row),
    ]
    .into_iter()
    .filter_map(|(what, row)| row.as_ref().map(|row| format!("{what} from {row}")))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Percentiles;

    fn row(mech: &str, wait: &str, size: usize, mbps: f64, p50: f64, cpu: f64) -> Row {
        Row {
            mechanism: mech.into(),
            wait: wait.into(),
            placement: "cross".into(),
            size,
            imp: "ipckit".into(),
            producers: None,
            latency_size: Some(size),
            throughput_size: Some(size),
            max_msg_size: None,
            rtt_ns: Some(Percentiles {
                p50,
                p99: p50,
                p999: p50,
                max: p50,
            }),
            rtt_batched_ns: None,
            one_way_p50_ns: Some(p50 / 2.0),
            throughput_mbps: Some(mbps),
            msgs_per_s: Some(1.0),
            cpu_ns_per_msg: Some(cpu),
            cpu_ns_per_rtt: None,
            spread_pct: None,
            noisy: false,
            lost: 0,
            reordered: 0,
            loss_pct: None,
            socket_buffers: None,
            errors: 0,
            first_error: None,
            ratio_to_floor: None,
            cacheline_p50_ns: None,
            probe_vs_floor: None,
            mode_changed: false,
            throughput_vs_memcpy: None,
            ratio_to_raw_rtt: None,
            ratio_to_raw_msgs: None,
            repeats: 1,
            touch: true,
            open_loop_rate: None,
            note: None,
            zc_completions: None,
            zc_copied: None,
        }
    }

    #[test]
    fn every_figure_is_a_rows_figure() {
        let rows = vec![
            row("shm", "spin", 64, 3_000.0, 200.0, 40.0),
            row("shm", "block", 64, 2_000.0, 45_000.0, 50.0),
            row("shm-zerocopy", "spin", 65_536, 55_000.0, 9_000.0, 900.0),
            row("pipe", "block", 64, 300.0, 60_000.0, 2_000.0),
            row("fifo", "block", 64, 310.0, 55_000.0, 1_900.0),
            row("tcp", "spin", 64, 100.0, 9_000.0, 3_000.0),
        ];
        let t = summarize(&rows);
        assert_eq!(t.len(), 5);
        let shm = &t[0];
        assert_eq!(shm.best_mbps, Some(55_000.0));
        assert_eq!(
            shm.best_mbps_row.as_deref(),
            Some("shm-zerocopy spin 64KiB")
        );
        assert_eq!(shm.rtt_64_spin_us, Some(0.2));
        assert_eq!(shm.rtt_64_block_us, Some(45.0));
        assert_eq!(shm.cpu_us_per_msg, Some(0.05));
        let pipe = &t[1];
        // The family's lowest blocking round trip, and that row's CPU.
        assert_eq!(pipe.rtt_64_block_us, Some(55.0));
        assert_eq!(pipe.rtt_64_block_row.as_deref(), Some("fifo block 64B"));
        assert_eq!(pipe.cpu_us_per_msg, Some(1.9));
        assert_eq!(pipe.mechanisms, vec!["pipe", "fifo"]);
        // A family with no rows in the run has no figures, only the seed's.
        assert_eq!(t[3].best_mbps, None);
        assert_eq!(t[3].seed_mbps, 1_100.0);
        assert_eq!(t[4].rtt_64_block_us, None);
        assert_eq!(t[4].rtt_64_spin_us, Some(9.0));
        let text = render(&t);
        assert!(text.contains("The seed's table"), "{text}");
        assert!(text.contains("55000"), "{text}");
        assert!(text.contains("45.00 / 22.50"), "{text}");
        assert!(text.contains("22000"), "{text}");
    }

    #[test]
    fn reference_rows_and_same_cpu_rows_are_not_counted() {
        let mut raw = row("shm", "spin", 64, 9_999.0, 10.0, 1.0);
        raw.imp = "raw".into();
        let mut same = row("shm", "spin", 64, 8_888.0, 20.0, 1.0);
        same.placement = "same".into();
        let t = summarize(&[
            raw,
            same.clone(),
            row("shm", "spin", 64, 3_000.0, 200.0, 40.0),
        ]);
        assert_eq!(t[0].best_mbps, Some(3_000.0));
        assert_eq!(t[0].rtt_64_spin_us, Some(0.2));
        // Only same-CPU rows in the run: those are the run's figures.
        let t = summarize(&[same]);
        assert_eq!(t[0].best_mbps, Some(8_888.0));
    }
}
