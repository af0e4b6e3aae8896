//! `ipckit report`: the HTML report of a saved bench run.

use crate::cli::ReportArgs;
use crate::UserError;
use anyhow::Context;

/// Runs `ipckit report`.
pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let path = &args.results;
    // The one loader of saved runs (recommend and compare use it too): not JSON, not
    // ipckit's, or a newer schema is a user error.
    let saved = ipckit_bench::results::load(path).map_err(|e| UserError::new(e.to_string()))?;
    let html = ipckit_bench::html::render(&saved.raw)
        .map_err(|e| UserError(format!("{}: {e}", path.display())))?;
    // Never through a symbolic link, never over the input (see `ipckit::fs::create_output`).
    let mut f = ipckit::fs::create_output(&args.html, &[path])
        .map_err(|e| UserError::new(e.to_string()))?;
    std::io::Write::write_all(&mut f, html.as_bytes())
        .with_context(|| format!("writing {}", args.html.display()))?;
    Ok(())
}
