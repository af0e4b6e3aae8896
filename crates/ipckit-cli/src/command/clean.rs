//! `ipckit clean`: removes the objects whose creator is dead (same pid and start time) and
//! that no live process uses, and says what it kept and why.

use crate::cli::CleanArgs;
use anyhow::Context;
use ipckit::registry::{self, CleanAction};
use std::io::{self, Write};

/// Runs `ipckit clean`.
pub fn run(args: &CleanArgs) -> anyhow::Result<()> {
    let serve_failed = clean_serve_state(args.dry_run)?;
    let results = registry::clean(args.dry_run).context("reading the ipckit registry")?;
    let mut out = io::stdout().lock();
    if results.is_empty() {
        writeln!(out, "nothing to clean: no ipckit objects are recorded")?;
        return Ok(());
    }
    let mut failed = 0;
    for (e, action) in &results {
        let r = &e.record;
        let what = format!("{} {}", r.kind.name(), r.name);
        let line = match action {
            CleanAction::Removed if args.dry_run => {
                format!("would remove {what} (owner pid {} is gone)", r.pid)
            }
            CleanAction::Removed if !e.exists => {
                format!("removed the record of {what} (owner pid {} is gone; the object was already gone)", r.pid)
            }
            CleanAction::Removed => format!("removed {what} (owner pid {} is gone)", r.pid),
            CleanAction::OwnerAlive => format!("kept {what} (owner pid {} is alive)", r.pid),
            CleanAction::InUse => format!(
                "kept {what} (owner pid {} is gone, but a live process still uses it)",
                r.pid
            ),
            CleanAction::Failed(err) => {
                failed += 1;
                format!("failed to remove {what}: {err}")
            }
        };
        writeln!(out, "{line}")?;
    }
    failed += serve_failed;
    if failed > 0 {
        anyhow::bail!("{failed} object(s) could not be removed");
    }
    Ok(())
}

/// The state files of `serve` masters that were killed (`kill -9`): one line each; returns
/// how many could not be removed.
fn clean_serve_state(dry_run: bool) -> anyhow::Result<usize> {
    use ipckit_server::master::{clean_stale, StaleAction};
    let results = clean_stale(dry_run).context("reading serve's state directory")?;
    let mut out = io::stdout().lock();
    let mut failed = 0;
    for (p, action) in results {
        let what = format!("serve state file {}", p.display());
        let line = match action {
            StaleAction::Removed(pid) if dry_run => {
                format!("would remove {what} (master pid {pid} is gone)")
            }
            StaleAction::Removed(pid) => format!("removed {what} (master pid {pid} is gone)"),
            StaleAction::MasterAlive(pid) => format!("kept {what} (master pid {pid} runs)"),
            StaleAction::Kept(why) => format!("kept {what}: {why}"),
            StaleAction::Failed(e) => {
                failed += 1;
                format!("failed to remove {what}: {e}")
            }
        };
        writeln!(out, "{line}")?;
    }
    Ok(failed)
}
