//! `ipckit bench`: turn the arguments into [`BenchOptions`], run the harness, write the report.

use crate::cli::{BenchArgs, FormatArg, PlacementArg, WaitArg};
use crate::UserError;
use anyhow::Context;
use ipckit::Wait;
use ipckit_bench::options::{BenchOptions, Format, Placement};
use ipckit_bench::BenchError;
use std::io::Write;

fn options(a: &BenchArgs) -> BenchOptions {
    let mut o = BenchOptions::default();
    if let Some(m) = &a.mech {
        o.mechs = m.0.clone();
        o.net_variants = m.1.clone();
        o.zero_copy = m.2.clone();
    }
    if !a.size.is_empty() {
        o.sizes = a.size.clone();
    }
    if !a.wait.is_empty() && !a.wait.contains(&WaitArg::All) {
        o.waits = a
            .wait
            .iter()
            .map(|w| match w {
                WaitArg::Block => Wait::Block,
                WaitArg::Spin => Wait::Spin,
                WaitArg::Adaptive | WaitArg::All => Wait::ADAPTIVE,
            })
            .collect();
        o.waits.dedup();
    }
    o.placements = match a.placement {
        PlacementArg::Cross => vec![Placement::Cross],
        PlacementArg::Same => vec![Placement::Same],
        PlacementArg::Both => vec![Placement::Cross, Placement::Same],
    };
    o.pin = a.pin;
    o.rate = a.rate;
    o.touch = !a.no_touch;
    o.reference = a.reference;
    o.shm_capacity = a.shm_capacity;
    if !a.mpsc_producers.is_empty() {
        o.mpsc_producers = a
            .mpsc_producers
            .iter()
            .copied()
            .filter(|&n| n > 0)
            .collect();
    }
    o.format = match a.format {
        FormatArg::Table => Format::Table,
        FormatArg::Json => Format::Json,
        FormatArg::Csv => Format::Csv,
        // Rendered from the JSON (see `run`).
        FormatArg::Html => Format::Json,
    };
    if let Some(r) = a.repeat {
        o.repeat = r;
    }
    if let Some(d) = a.duration {
        o.duration = d;
    }
    if a.quick {
        o = o.quick(a.duration.is_some(), a.repeat.is_some());
    }
    o
}

/// Runs `ipckit bench`.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let html = args.html.is_some() || args.format == FormatArg::Html;
    let output = args.html.as_ref().or(args.output.as_ref());
    if html && output.is_none() {
        return Err(
            UserError("--format html needs --output FILE (or use --html FILE)".into()).into(),
        );
    }
    // Opened before the run, so a refused path costs nothing: never through a symbolic link
    // (see `ipckit::fs::create_output`; bench reads no input file).
    let file = output
        .map(|p| ipckit::fs::create_output(p, &[]).map_err(|e| UserError::new(e.to_string())))
        .transpose()?;
    let opts = options(args);
    let report = match ipckit_bench::run(&opts, true) {
        Ok(r) => r,
        Err(BenchError::Usage(s)) => return Err(UserError(s).into()),
        Err(e) => return Err(e.into()),
    };
    let text = if html {
        let doc = serde_json::to_value(&report).context("serializing the report")?;
        ipckit_bench::html::render(&doc).map_err(anyhow::Error::msg)?
    } else {
        report.render(opts.format)
    };
    match (file, output) {
        (Some(mut f), Some(path)) => f
            .write_all(text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        _ => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    if report.has_errors() {
        let n = report.rows.iter().filter(|r| r.errors > 0).count();
        anyhow::bail!("{n} row(s) had errors (lost, corrupted or out-of-order messages, or failed runs); see the notes");
    }
    Ok(())
}
