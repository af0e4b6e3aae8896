//! `ipckit report`: the HTML report of a saved bench run.

use crate::cli::ReportArgs;
use crate::UserError;
use anyhow::Context;

/// Runs `ipckit report`.
pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let path = &args.results;
    let bytes =
        std::fs::read(path).map_err(|e| UserError(format!("reading {}: {e}", path.display())))?;
    let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        UserError(format!(
            "{}: not an ipckit results file (not JSON: {e})",
            path.display()
        ))
    })?;
    ipckit_bench::html::check_schema(&doc)
        .map_err(|e| UserError(format!("{}: {e}", path.display())))?;
    let html = ipckit_bench::html::render(&doc)
        .map_err(|e| UserError(format!("{}: {e}", path.display())))?;
    std::fs::write(&args.html, html).with_context(|| format!("writing {}", args.html.display()))?;
    Ok(())
}
