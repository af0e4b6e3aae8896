//! The results: one [`Report`] rendered as a table, JSON (`"schema": 1`) or CSV.

use crate::floor::Floor;
use crate::machine::Machine;
use crate::options::{format_size, BenchOptions, Format};
pub use crate::rows::{Row, Skipped};
use crate::seed::{self, SeedRow};
use crate::stats::NOISY_PCT;
use serde::Serialize;
use std::fmt::Write as _;

/// The options, as recorded in the JSON.
#[derive(Debug, Clone, Serialize)]
pub struct OptionsView {
    mechs: Vec<String>,
    sizes: Vec<usize>,
    waits: Vec<String>,
    placements: Vec<String>,
    pin: Option<(usize, usize)>,
    rate: Option<f64>,
    touch: bool,
    duration_s: f64,
    warmup: u64,
    batch: u64,
    repeat: u32,
    quick: bool,
    reference: bool,
    /// Shared memory: each ring's data area, bytes (`None`: ipckit's default).
    shm_capacity: Option<usize>,
    /// Producer counts of the `shm-mpsc` rows.
    mpsc_producers: Vec<u32>,
    /// Zero-copy rows asked for (`--mech zero-copy`), baselines not listed.
    zero_copy: Vec<String>,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Format version of this document.
    pub schema: u32,
    /// `ipckit` and its version.
    pub tool: String,
    /// The machine.
    pub machine: Machine,
    /// The floor.
    pub floor: Floor,
    /// What was asked for.
    pub options: OptionsView,
    /// The measurements.
    pub rows: Vec<Row>,
    /// Configurations not measured.
    pub skipped: Vec<Skipped>,
    /// Notes for the reader.
    pub notes: Vec<String>,
    /// The seed's table: one line per family, from the rows above, beside the seed's
    /// figures ([`crate::seed`]). Added to schema 1 without a bump: readers of older files
    /// find no `seed_table`.
    pub seed_table: Vec<SeedRow>,
}

impl Report {
    /// Assembles the report and its notes.
    pub fn new(
        machine: Machine,
        floor: Floor,
        o: &BenchOptions,
        rows: Vec<Row>,
        skipped: Vec<Skipped>,
    ) -> Report {
        let mut notes = Vec::new();
        if machine.profile == "debug" {
            notes.push("DEBUG BUILD: these figures are not release figures".into());
        }
        if !o.touch {
            notes.push(
                "--no-touch: payloads were neither written nor verified (only the sequence header)"
                    .into(),
            );
        }
        if let Some(r) = o.rate {
            notes.push(format!("open loop: latency sends at {r}/s on a fixed schedule, measured from the scheduled time"));
        }
        if machine.siblings == Some(true) {
            notes.push(format!(
                "CPUs {} and {} are hyperthread siblings (share a core)",
                machine.cpus_used[0], machine.cpus_used[1]
            ));
        }
        for s in &skipped {
            notes.push(format!(
                "skipped {} {} {} {}: {}",
                s.mechanism,
                s.wait,
                s.placement,
                format_size(s.size),
                s.reason
            ));
        }
        for r in rows.iter().filter(|r| r.noisy) {
            notes.push(format!(
                "noisy: {} {} {} {} {} spread {:.0}% > {NOISY_PCT:.0}%",
                r.mechanism,
                r.wait,
                r.placement,
                format_size(r.size),
                r.imp,
                r.spread_pct.unwrap_or(0.0)
            ));
        }
        for r in rows.iter().filter(|r| r.errors > 0) {
            notes.push(format!(
                "ERRORS: {} {} {} {} {}: {} ({})",
                r.mechanism,
                r.wait,
                r.placement,
                format_size(r.size),
                r.imp,
                r.errors,
                r.first_error.as_deref().unwrap_or("")
            ));
        }
        Report {
            schema: 1,
            tool: format!("ipckit {}", env!("CARGO_PKG_VERSION")),
            machine,
            floor,
            options: OptionsView {
                mechs: o
                    .mechs
                    .iter()
                    .map(|m| m.name())
                    .chain(o.net_variants.iter().map(|v| v.name()))
                    .map(str::to_string)
                    .collect(),
                sizes: o.sizes.clone(),
                waits: o.waits.iter().map(|w| w.name().to_string()).collect(),
                placements: o.placements.iter().map(|p| p.name().to_string()).collect(),
                pin: o.pin,
                rate: o.rate,
                touch: o.touch,
                duration_s: o.duration.as_secs_f64(),
                warmup: o.warmup,
                batch: o.batch,
                repeat: o.repeat,
                quick: o.quick,
                reference: o.reference,
                shm_capacity: o.shm_capacity,
                mpsc_producers: o.mpsc_producers.clone(),
                zero_copy: o.zero_copy.iter().map(|p| p.name().to_string()).collect(),
            },
            seed_table: seed::summarize(&rows),
            rows,
            skipped,
            notes,
        }
    }

    /// True if any row failed verification or did not run: the command exits non-zero.
    pub fn has_errors(&self) -> bool {
        self.rows.iter().any(|r| r.errors > 0)
    }

    /// Renders in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => self.table(),
            Format::Json => {
                let mut s = serde_json::to_string_pretty(self)
                    .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
                s.push('\n');
                s
            }
            Format::Csv => self.csv(),
        }
    }

    fn table(&self) -> String {
        let m = &self.machine;
        let f = &self.floor;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "ipckit bench ({} build) on {}, kernel {}",
            m.profile, m.cpu_model, m.kernel
        );
        let sib = match m.siblings {
            Some(true) => "hyperthread siblings",
            Some(false) => "not siblings",
            None => "topology unknown",
        };
        let _ = writeln!(
            s,
            "CPUs: {} online ({}), allowed {:?}; using {} and {} ({sib})",
            m.cpu_count, m.cpus_online, m.cpus_allowed, m.cpus_used[0], m.cpus_used[1]
        );
        let _ = writeln!(
            s,
            "clock: {}, Instant::now() {:.1} ns",
            m.clock_source, m.clock_read_ns
        );
        match &f.cacheline_rtt_ns {
            Some(p) => {
                let _ = writeln!(
                    s,
                    "floor: cache-line RTT p50 {:.0} ns, p99 {:.0} ns (batched {:.0} ns); memcpy {:.0} MB/s; syscall {:.0} ns",
                    p.p50,
                    p.p99,
                    f.cacheline_rtt_batched_ns.unwrap_or(f64::NAN),
                    f.memcpy_mbps,
                    f.syscall_ns
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "floor: cache-line RTT n/a ({}); memcpy {:.0} MB/s; syscall {:.0} ns",
                    f.cacheline_note.as_deref().unwrap_or("not measured"),
                    f.memcpy_mbps,
                    f.syscall_ns
                );
            }
        }
        if let (Some(c), Some(o)) = (f.blocking_rtt_cross_ns, f.blocking_rtt_same_ns) {
            let _ = writeln!(
                s,
                "wake-up: a blocking round trip (eventfd) takes {:.1} us across CPUs {} and {}, {:.1} us on CPU {} alone ({:.1}x): blocking rows depend on placement; compare with --placement both",
                c / 1e3,
                f.cpus[0],
                f.cpus[1],
                o / 1e3,
                f.cpus[0],
                c / o
            );
        }
        let _ = writeln!(
            s,
            "RTT = round trip (one-way = RTT/2); MB/s = 10^6 B/s; CPU = user+sys of both processes per message; xfloor = RTT p50 / cache-line RTT p50; xraw = ipckit RTT p50 / raw RTT p50 and xraw tput = ipckit msgs/s / raw msgs/s, medians of paired runs; medians of {} run(s)",
            self.options.repeat
        );
        let _ = writeln!(s);
        let header = [
            "mechanism",
            "wait",
            "place",
            "size",
            "impl",
            "MB/s",
            "msgs/s",
            "RTT p50 us",
            "RTT p99 us",
            "CPU us/msg",
            "xfloor",
            "xraw",
            "xraw tput",
            "",
        ];
        let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
        for r in &self.rows {
            let (p50, p99) = match (&r.rtt_ns, r.latency_size, r.max_msg_size) {
                _ if r.producers.is_some() => ("-".into(), "-".into()),
                (Some(p), _, _) => (format!("{:.2}", p.p50 / 1e3), format!("{:.2}", p.p99 / 1e3)),
                (None, None, Some(max)) => (format!("n/a (max {max})"), "n/a".into()),
                _ => ("-".into(), "-".into()),
            };
            let mut flags = Vec::new();
            if r.errors > 0 {
                flags.push(format!("ERRORS {}", r.errors));
            }
            if r.noisy {
                flags.push("noisy".into());
            }
            if let Some(pct) = r.loss_pct {
                flags.push(format!(
                    "lost {} ({pct:.2}% of the flood) reordered {}",
                    r.lost, r.reordered
                ));
            } else if r.lost > 0 || r.reordered > 0 {
                flags.push(format!("lost {} reordered {}", r.lost, r.reordered));
            }
            if let Some(n) = &r.note {
                flags.push(n.clone());
            }
            table.push(vec![
                match r.producers {
                    Some(n) => format!("{} x{n}", r.mechanism),
                    None => r.mechanism.clone(),
                },
                r.wait.clone(),
                r.placement.clone(),
                format_size(r.size),
                r.imp.clone(),
                r.throughput_mbps.map_or("-".into(), |v| format!("{v:.1}")),
                r.msgs_per_s.map_or("-".into(), human),
                p50,
                p99,
                r.cpu_ns_per_msg
                    .map_or("-".into(), |v| format!("{:.2}", v / 1e3)),
                r.ratio_to_floor.map_or("-".into(), |v| format!("{v:.1}")),
                r.ratio_to_raw_rtt.map_or("-".into(), |v| format!("{v:.2}")),
                r.ratio_to_raw_msgs
                    .map_or("-".into(), |v| format!("{v:.2}")),
                flags.join("; "),
            ]);
        }
        // Names and the flags column left, figures right.
        let ncol = header.len();
        s.push_str(&crate::columns::render(&table, |c| c < 5 || c == ncol - 1));
        let seed = seed::render(&self.seed_table);
        if !seed.is_empty() {
            let _ = writeln!(s);
            s.push_str(&seed);
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(s, "notes:");
            for n in &self.notes {
                let _ = writeln!(s, "  - {n}");
            }
        }
        s
    }

    fn csv(&self) -> String {
        let mut s = String::from(
            "mechanism,wait,placement,size,impl,latency_size,throughput_size,max_msg_size,rtt_p50_ns,rtt_p99_ns,rtt_p999_ns,rtt_max_ns,rtt_batched_ns,throughput_mbps,msgs_per_s,cpu_ns_per_msg,cpu_ns_per_rtt,spread_pct,noisy,lost,reordered,errors,ratio_to_floor,ratio_to_raw_rtt,ratio_to_raw_msgs,profile,touch,note\n",
        );
        let o = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x:.3}"));
        let u = |v: Option<usize>| v.map_or(String::new(), |x| x.to_string());
        for r in &self.rows {
            let p = r.rtt_ns;
            let fields = [
                r.mechanism.clone(),
                r.wait.clone(),
                r.placement.clone(),
                r.size.to_string(),
                r.imp.clone(),
                u(r.latency_size),
                u(r.throughput_size),
                u(r.max_msg_size),
                o(p.map(|p| p.p50)),
                o(p.map(|p| p.p99)),
                o(p.map(|p| p.p999)),
                o(p.map(|p| p.max)),
                o(r.rtt_batched_ns),
                o(r.throughput_mbps),
                o(r.msgs_per_s),
                o(r.cpu_ns_per_msg),
                o(r.cpu_ns_per_rtt),
                o(r.spread_pct),
                r.noisy.to_string(),
                r.lost.to_string(),
                r.reordered.to_string(),
                r.errors.to_string(),
                o(r.ratio_to_floor),
                o(r.ratio_to_raw_rtt),
                o(r.ratio_to_raw_msgs),
                self.machine.profile.to_string(),
                r.touch.to_string(),
                csv_quote(r.note.as_deref().unwrap_or("")),
            ];
            s.push_str(&fields.join(","));
            s.push('\n');
        }
        s
    }
}

fn csv_quote(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A rate as the table shows it: `950`, `12.3k`, `2.50M`.
pub(crate) fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_quote("plain"), "plain");
        assert_eq!(csv_quote("a, b"), "\"a, b\"");
        assert_eq!(csv_quote("say \"x\""), "\"say \"\"x\"\"\"");
    }

    #[test]
    fn human_rates() {
        assert_eq!(human(950.0), "950");
        assert_eq!(human(12_345.0), "12.3k");
        assert_eq!(human(2_500_000.0), "2.50M");
    }
}
