//! `ipckit recommend`: read (or measure) the figures, apply the rules of
//! [`ipckit_bench::recommend`], print every candidate. Nothing fits: exit 2, naming the
//! closest.

use crate::cli::{OnePlacement, RecommendArgs};
use crate::UserError;
use ipckit::{Mechanism, Wait};
use ipckit_bench::options::{BenchOptions, Placement};
use ipckit_bench::recommend::{describe_row, recommend, Limits, Requirements};
use ipckit_bench::results::{self, Saved};
use ipckit_bench::BenchError;
use std::process::ExitCode;

fn requirements(a: &RecommendArgs) -> Requirements {
    Requirements {
        latency_p99_ns: a.latency_p99,
        throughput_mbps: a.throughput,
        msg_size: a.msg_size,
        placement: a.placement.map(|p| match p {
            OnePlacement::Cross => "cross".to_string(),
            OnePlacement::Same => "same".to_string(),
        }),
        producers: a.producers,
        cross_host: a.cross_host,
        fd_passing: a.fd_passing,
        priorities: a.priorities,
        no_busy_poll: a.no_busy_poll,
    }
}

/// A quick bench run shaped by the requirements (their size, placement, waits, producers).
fn measure(a: &RecommendArgs) -> anyhow::Result<Saved> {
    let mut o = BenchOptions::default().quick(false, false);
    if let Some(s) = a.msg_size {
        o.sizes = vec![s];
    }
    o.placements = vec![match a.placement {
        Some(OnePlacement::Same) => Placement::Same,
        _ => Placement::Cross,
    }];
    if a.no_busy_poll {
        o.waits = vec![Wait::Block];
    }
    // Measure only what the capability rules leave (a rule no figure can change is "hard").
    let no_rows = recommend(&[], &requirements(a), &Limits::read());
    let possible: Vec<&str> = no_rows
        .excluded
        .iter()
        .filter(|v| v.misses.iter().all(|m| !m.hard))
        .map(|v| v.mechanism)
        .collect();
    o.mechs = Mechanism::ALL
        .into_iter()
        .filter(|m| match m {
            Mechanism::Shm => possible.iter().any(|p| p.starts_with("shm")),
            m => possible.contains(&m.name()),
        })
        .collect();
    o.mpsc_producers = if possible.contains(&"shm-mpsc") {
        vec![a.producers.max(1)]
    } else {
        Vec::new()
    };
    if o.mechs.is_empty() {
        // Nothing can fit whatever the figures: the rules alone answer.
        o.mechs = vec![Mechanism::Pipe];
        o.sizes = vec![64];
        o.mpsc_producers = Vec::new();
    }
    eprintln!(
        "ipckit: no --from: measuring now with a quick bench run (one repeat of short phases)"
    );
    let report = ipckit_bench::run(&o, false).map_err(|e| match e {
        BenchError::Usage(s) => anyhow::Error::new(UserError::new(s)),
        BenchError::Other(s) => anyhow::anyhow!(s),
    })?;
    Ok(results::from_report(&report)?)
}

/// Runs `ipckit recommend`.
pub fn run(a: &RecommendArgs) -> anyhow::Result<ExitCode> {
    let (saved, source) = match &a.from {
        Some(p) => (
            results::load(p).map_err(|e| UserError::new(e.to_string()))?,
            format!("figures from {}", p.display()),
        ),
        None => (
            measure(a)?,
            "figures from a quick bench run made just now (ipckit bench --quick: one repeat, short phases; save a full run with 'ipckit bench --format json' and pass --from for firmer figures)".to_string(),
        ),
    };
    let req = requirements(a);
    let answer = recommend(&saved.rows, &req, &Limits::read());
    println!(
        "{source} ({}{})",
        saved.tool,
        saved
            .cpu_model
            .as_deref()
            .map(|c| format!(", {c}"))
            .unwrap_or_default()
    );
    if answer.fitting.is_empty() {
        println!("fits: none");
    } else {
        println!("fits, best first:");
    }
    for (i, v) in answer.fitting.iter().enumerate() {
        let figs = v.row.as_ref().map(describe_row).unwrap_or_default();
        println!(
            "  {}. {}: {figs}; fits: {}",
            i + 1,
            v.mechanism,
            v.fits_because.join(", ")
        );
    }
    for v in &answer.excluded {
        let why: Vec<&str> = v.misses.iter().map(|m| m.reason.as_str()).collect();
        println!("  {}: excluded, {}", v.mechanism, why.join("; "));
    }
    if answer.fitting.is_empty() {
        let closest: Vec<String> = answer
            .closest(3)
            .iter()
            .map(|v| format!("{} ({})", v.mechanism, v.misses[0].reason))
            .collect();
        return Err(UserError::new(format!(
            "no mechanism meets all these requirements; closest: {}",
            closest.join(", ")
        ))
        .into());
    }
    Ok(ExitCode::SUCCESS)
}
