//! `ipckit clean`: removes the objects whose creator is dead (same pid and start time) and
//! that no live process uses, and says what it kept and why. An object is removed only while
//! its name still denotes the object that was made (its recorded identity: see
//! `ipckit::registry`) and is ours; anything else at that name is left alone and reported.

use crate::cli::CleanArgs;
use anyhow::Context;
use ipckit::registry::{self, CleanAction};
use std::io::{self, Write};

/// Runs `ipckit clean`.
pub fn run(args: &CleanArgs) -> anyhow::Result<()> {
    let (serve_seen, serve_failed) = clean_serve_state(args.dry_run)?;
    let results = registry::clean(args.dry_run).context("reading the ipckit registry")?;
    let mut out = io::stdout().lock();
    if results.is_empty() && serve_seen == 0 {
        writeln!(out, "nothing to clean: no ipckit objects are recorded")?;
        return Ok(());
    }
    let (mut failed, mut left) = (0, 0);
    for (e, action) in &results {
        let r = &e.record;
        let what = format!("{} {}", r.kind.name(), r.name);
        let line = match action {
            CleanAction::Removed if args.dry_run => {
                format!("would remove {what} (owner pid {} is gone)", r.pid)
            }
            CleanAction::Removed => format!("removed {what} (owner pid {} is gone)", r.pid),
            CleanAction::AlreadyGone => {
                let verb = if args.dry_run {
                    "would remove"
                } else {
                    "removed"
                };
                let now = if e.name_taken {
                    "; what that name denotes now is another object, left alone"
                } else {
                    ""
                };
                format!(
                    "{verb} the record of {what} (owner pid {} is gone; the object it made was \
                     already gone{now})",
                    r.pid
                )
            }
            CleanAction::OwnerAlive => format!("kept {what} (owner pid {} is alive)", r.pid),
            CleanAction::InUse => format!(
                "kept {what} (owner pid {} is gone, but a live process still uses it)",
                r.pid
            ),
            CleanAction::LeftAlone(why) => {
                left += 1;
                let verb = if args.dry_run { "would leave" } else { "left" };
                format!("{verb} {what} alone (owner pid {} is gone): {why}", r.pid)
            }
            CleanAction::Failed(err) => {
                failed += 1;
                format!("failed to remove {what}: {err}")
            }
        };
        writeln!(out, "{line}")?;
    }
    if left > 0 {
        eprintln!(
            "ipckit: {left} object(s) left alone: their names no longer denote what ipckit made, \
             or what they are could not be checked"
        );
    }
    failed += serve_failed;
    if failed > 0 {
        anyhow::bail!("{failed} object(s) could not be removed");
    }
    Ok(())
}

/// The state files of `serve` masters that were killed (`kill -9`): one line each; returns
/// how many state files there were and how many could not be removed.
fn clean_serve_state(dry_run: bool) -> anyhow::Result<(usize, usize)> {
    use ipckit_server::master::{clean_stale, StaleAction};
    let results = clean_stale(dry_run).context("reading serve's state directory")?;
    let mut out = io::stdout().lock();
    let (seen, mut failed) = (results.len(), 0);
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
    Ok((seen, failed))
}
