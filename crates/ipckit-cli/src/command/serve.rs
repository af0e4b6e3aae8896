//! `ipckit serve`: the master (or, with the hidden `--worker`, one worker) of the HTTP server
//! in `ipckit-server`, and `--status`, which reads a running master's counters.
//!
//! The flags override the config file, on start and on every reload (HUP). A mistake in the
//! flags or the config file is one line and exit status 2.

use crate::cli::{Command, ServeArgs};
use crate::UserError;
use ipckit_server::config::Config;
use ipckit_server::master::{self, Overrides};
use ipckit_server::worker::{self, WorkerSpec};
use std::io;
use std::process::ExitCode;

/// Blocks the signals the master and its workers read from a signalfd, in `main`, before
/// any thread starts (a thread started earlier would keep them unblocked and take them).
pub fn block_before_threads(cmd: &Command) -> anyhow::Result<()> {
    if let Command::Serve(a) = cmd {
        if !a.status {
            ipckit::signal::block_for_process(&ipckit::shutdown::SignalMap::nginx().signals())?;
        }
    }
    Ok(())
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}

/// Runs `ipckit serve`.
pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    if args.worker {
        let spec = WorkerSpec::from_env().map_err(|e| UserError::new(e.to_string()))?;
        return Ok(code(worker::run(spec)));
    }
    let overrides = Overrides {
        listen: args.listen.clone(),
        workers: args.workers,
        root: args.root.clone(),
        accept: args.accept,
    };
    let mut config = match &args.config {
        Some(p) => Config::load(p).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::NotFound => {
                UserError::new(e.to_string()).into()
            }
            _ => anyhow::Error::from(e),
        })?,
        None => Config::default(),
    };
    overrides.apply(&mut config);
    if args.status {
        let port = if args.listen.is_empty() && args.config.is_none() {
            None
        } else {
            config.listen.first().map(|a| a.port())
        };
        return Ok(code(master::status(port, &mut io::stdout().lock())));
    }
    config.check().map_err(|e| UserError::new(e.to_string()))?;
    let path = match &args.config {
        Some(p) => Some(std::path::absolute(p)?),
        None => None,
    };
    Ok(code(master::run_with(config, path, overrides)))
}
