//! `ipckit compare A.json B.json`: the change, row by row, between two saved runs.
//!
//! Rows match on (mechanism, wait, placement, size, impl, producers). For throughput and RTT
//! p50/p99, the change is (B − A) / A in percent. It is flagged as real when its size exceeds
//! the larger of the two rows' own spreads (`spread_pct`: (max − min) / median across a run's
//! repeats); a row without a spread (one repeat) is judged against [`DEFAULT_SPREAD_PCT`].
//! Inside the spread, the two runs disagree no more than one run disagrees with itself: noise.
//! The spread is measured on msgs/s and p50; p99 moves more, so its flag is a hint.

use crate::results::{Saved, SavedRow};

/// Spread assumed for a row that has none recorded, percent.
pub const DEFAULT_SPREAD_PCT: f64 = 10.0;

/// One figure's change.
#[derive(Debug, Clone, Copy)]
pub struct Change {
    /// In A.
    pub a: f64,
    /// In B.
    pub b: f64,
    /// (B − A) / A, percent.
    pub pct: f64,
    /// Larger than the runs' spread.
    pub flagged: bool,
}

/// A row present in both runs.
#[derive(Debug, Clone)]
pub struct RowChange {
    /// `mechanism wait placement size impl [×N]`.
    pub key: String,
    /// The spread the changes were judged against, percent.
    pub spread_pct: f64,
    /// MB/s.
    pub throughput: Option<Change>,
    /// RTT p50.
    pub p50: Option<Change>,
    /// RTT p99.
    pub p99: Option<Change>,
}

/// The comparison.
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    /// Rows in both.
    pub rows: Vec<RowChange>,
    /// Keys only in A.
    pub only_a: Vec<String>,
    /// Keys only in B.
    pub only_b: Vec<String>,
}

/// A row's key as printed.
pub fn key(r: &SavedRow) -> String {
    let mut k = format!(
        "{} {} {} {}B {}",
        r.mechanism, r.wait, r.placement, r.size, r.imp
    );
    if let Some(n) = r.producers {
        k.push_str(&format!(" x{n}"));
    }
    k
}

fn change(a: Option<f64>, b: Option<f64>, spread: f64) -> Option<Change> {
    let (a, b) = (a?, b?);
    if a == 0.0 {
        return None;
    }
    let pct = (b - a) / a * 100.0;
    Some(Change {
        a,
        b,
        pct,
        flagged: pct.abs() > spread,
    })
}

/// Compares run B against run A.
pub fn compare(a: &Saved, b: &Saved) -> Comparison {
    let mut out = Comparison::default();
    for ra in &a.rows {
        let k = key(ra);
        match b.rows.iter().find(|rb| key(rb) == k) {
            None => out.only_a.push(k),
            Some(rb) => {
                let spread = ra
                    .spread_pct
                    .unwrap_or(DEFAULT_SPREAD_PCT)
                    .max(rb.spread_pct.unwrap_or(DEFAULT_SPREAD_PCT));
                out.rows.push(RowChange {
                    key: k,
                    spread_pct: spread,
                    throughput: change(ra.throughput_mbps, rb.throughput_mbps, spread),
                    p50: change(ra.rtt_ns.map(|p| p.p50), rb.rtt_ns.map(|p| p.p50), spread),
                    p99: change(ra.rtt_ns.map(|p| p.p99), rb.rtt_ns.map(|p| p.p99), spread),
                });
            }
        }
    }
    for rb in &b.rows {
        let k = key(rb);
        if !a.rows.iter().any(|ra| key(ra) == k) {
            out.only_b.push(k);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn run(rows: &str) -> Saved {
        crate::results::parse(
            Path::new("t.json"),
            &format!(r#"{{"schema":1,"tool":"ipckit 0.1.0","rows":[{rows}]}}"#),
        )
        .unwrap()
    }

    fn row(m: &str, mbps: f64, spread: Option<f64>) -> String {
        format!(
            r#"{{"mechanism":"{m}","wait":"block","placement":"cross","size":64,"impl":"ipckit",
            "throughput_mbps":{mbps},"spread_pct":{}}}"#,
            spread.map_or("null".into(), |s| s.to_string())
        )
    }

    #[test]
    fn flags_beyond_the_larger_spread_only() {
        let a = run(&[row("pipe", 100.0, Some(5.0)), row("uds", 100.0, Some(2.0))].join(","));
        let b = run(&[row("pipe", 108.0, Some(1.0)), row("uds", 108.0, Some(10.0))].join(","));
        let c = compare(&a, &b);
        assert!(c.rows[0].throughput.unwrap().flagged, "8% > max(5, 1)");
        assert!(!c.rows[1].throughput.unwrap().flagged, "8% < max(2, 10)");
        assert!(c.rows[0].p50.is_none());
    }

    #[test]
    fn missing_spread_uses_the_default_and_unmatched_rows_are_listed() {
        let a = run(&[row("pipe", 100.0, None), row("tcp", 1.0, None)].join(","));
        let b = run(&row("pipe", 109.0, None));
        let c = compare(&a, &b);
        assert!(!c.rows[0].throughput.unwrap().flagged);
        assert_eq!(c.only_a, ["tcp block cross 64B ipckit"]);
        assert!(c.only_b.is_empty());
    }
}
