//! `ipckit list`: every object in the registry, with its owner and what is true of it now.

use crate::cli::ListArgs;
use anyhow::Context;
use ipckit::registry;
use std::io::{self, Write};

/// Runs `ipckit list`.
pub fn run(args: &ListArgs) -> anyhow::Result<()> {
    let ListArgs {} = args;
    let entries = registry::list().context("reading the ipckit registry")?;
    let mut out = io::stdout().lock();
    if entries.is_empty() {
        writeln!(out, "no ipckit objects are recorded")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<9} {:>8} {:<5} {:<6} {:<6} NAME",
        "KIND", "PID", "OWNER", "IN-USE", "EXISTS"
    )?;
    for e in &entries {
        writeln!(
            out,
            "{:<9} {:>8} {:<5} {:<6} {:<6} {}",
            e.record.kind.name(),
            e.record.pid,
            if e.owner_alive { "alive" } else { "dead" },
            yes_no(e.in_use),
            yes_no(e.exists),
            e.record.name
        )?;
    }
    Ok(())
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
