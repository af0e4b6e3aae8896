//! `ipckit compare A.json B.json`: print [`ipckit_bench::compare`]'s row-by-row changes.

use crate::cli::CompareArgs;
use crate::UserError;
use ipckit_bench::compare::{compare, Change};
use ipckit_bench::results;

fn cell(c: Option<Change>) -> String {
    match c {
        None => "-".into(),
        Some(c) => format!("{:+.1}%{}", c.pct, if c.flagged { " !" } else { "" }),
    }
}

/// Runs `ipckit compare`.
pub fn run(a: &CompareArgs) -> anyhow::Result<()> {
    let ra = results::load(&a.a).map_err(|e| UserError::new(e.to_string()))?;
    let rb = results::load(&a.b).map_err(|e| UserError::new(e.to_string()))?;
    let c = compare(&ra, &rb);
    println!("A: {} ({})", a.a.display(), ra.tool);
    println!("B: {} ({})", a.b.display(), rb.tool);
    println!("change B vs A; '!' marks a change larger than the runs' spread (max of the two rows' spread_pct): beyond noise");
    println!(
        "{:<44} {:>8} {:>12} {:>12} {:>12}",
        "row", "spread", "MB/s", "RTT p50", "RTT p99"
    );
    let mut flagged = 0;
    for r in &c.rows {
        let f = [r.throughput, r.p50, r.p99]
            .iter()
            .any(|x| x.is_some_and(|x| x.flagged));
        flagged += usize::from(f);
        println!(
            "{:<44} {:>7.1}% {:>12} {:>12} {:>12}{}",
            r.key,
            r.spread_pct,
            cell(r.throughput),
            cell(r.p50),
            cell(r.p99),
            if f { "  CHANGED" } else { "" }
        );
    }
    for k in &c.only_a {
        println!("only in A: {k}");
    }
    for k in &c.only_b {
        println!("only in B: {k}");
    }
    println!(
        "{} rows compared, {flagged} changed beyond their spread, {} only in A, {} only in B",
        c.rows.len(),
        c.only_a.len(),
        c.only_b.len()
    );
    Ok(())
}
