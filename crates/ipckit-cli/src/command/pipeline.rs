//! `ipckit pipeline STAGE...`: runs `STAGE | STAGE | ...` with [`ipckit::pipeline`], no
//! shell, and exits with the pipeline's status as bash would (`--pipefail` for
//! `set -o pipefail`).
//!
//! Like a shell waiting for its foreground job, ipckit does not die of SIGINT or SIGQUIT
//! while the stages run: they are in its process group, so Ctrl-C reaches them directly, and
//! their statuses (130 for a stage SIGINT killed) decide the exit status. If ipckit got a
//! SIGINT and the last stage died of one, it then kills itself with SIGINT, as bash does, so
//! a loop or script running it stops too. SIGTERM and SIGHUP sent to ipckit alone are passed
//! on to the stages, so none is left running.

use crate::cli::PipelineArgs;
use crate::UserError;
use ipckit::pipeline::{Outcome, Pipeline, StageStatus};
use ipckit::signal::{Disposition, Handler, HandlerBuilder, Signal};
use std::io::ErrorKind;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static QUIT: AtomicBool = AtomicBool::new(false);
static TERMINATED: AtomicBool = AtomicBool::new(false);
static HUNG_UP: AtomicBool = AtomicBool::new(false);

/// Runs `ipckit pipeline`.
pub fn run(args: &PipelineArgs) -> anyhow::Result<ExitCode> {
    let mut p = Pipeline::new().pipefail(args.pipefail);
    for (i, stage) in args.stages.iter().enumerate() {
        p = p
            .stage_str(stage)
            .map_err(|e| UserError::new(format!("stage {} {stage:?}: {e}", i + 1)))?;
    }
    if let Some(size) = args.pipe_size {
        p = p.pipe_capacity(size);
    }
    // Before spawning, so no signal finds ipckit without them; the stages' `exec` resets
    // caught signals to their default action.
    let handlers = install_handlers()?;
    let mut running = p.spawn().map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::PermissionDenied | ErrorKind::InvalidInput => {
            anyhow::Error::new(UserError::new(e.to_string()))
        }
        _ => anyhow::Error::new(e),
    })?;
    let outcome = loop {
        if let Some(o) = running.wait_timeout(Duration::from_millis(100))? {
            break o;
        }
        // SIGINT and SIGQUIT: nothing to do now; the stages got them too (same process
        // group), and their statuses decide ours.
        for (flag, sig) in [(&TERMINATED, Signal::SIGTERM), (&HUNG_UP, Signal::SIGHUP)] {
            if flag.swap(false, Ordering::Relaxed) {
                running.signal(sig)?;
            }
        }
    };
    if args.status {
        print_status(args, &outcome);
    }
    if INTERRUPTED.load(Ordering::Relaxed)
        && outcome.stages().last() == Some(&StageStatus::Signaled(Signal::SIGINT))
    {
        // Ctrl-C ended the pipeline: die of SIGINT ourselves, as bash does, so that a script
        // or loop running ipckit sees an interrupt and stops, not just a status of 130.
        drop(handlers);
        let _ = ipckit::signal::send(std::process::id(), Signal::SIGINT);
    }
    Ok(ExitCode::from(outcome.status()))
}

/// Flag handlers for SIGINT, SIGQUIT, SIGTERM and SIGHUP, each left out if the signal was
/// ignored when ipckit started: a shell's children inherit an ignored signal, and so do the
/// stages then. A handler, not SIG_IGN, because `exec` resets a caught signal to its default
/// action in the stages but passes an ignored one on.
fn install_handlers() -> anyhow::Result<Vec<Handler>> {
    let mut handlers = Vec::new();
    for (sig, flag) in [
        (Signal::SIGINT, &INTERRUPTED),
        (Signal::SIGQUIT, &QUIT),
        (Signal::SIGTERM, &TERMINATED),
        (Signal::SIGHUP, &HUNG_UP),
    ] {
        let h = HandlerBuilder::new(sig).flag(flag).install()?;
        if h.previous() != Disposition::Ignore {
            handlers.push(h);
        }
        // Otherwise dropping `h` puts SIG_IGN back before any stage is spawned.
    }
    Ok(handlers)
}

/// One line per stage, then the pipeline's status, on stderr.
fn print_status(args: &PipelineArgs, outcome: &Outcome) {
    for (i, (stage, st)) in args.stages.iter().zip(outcome.stages()).enumerate() {
        eprintln!("ipckit: stage {} {stage:?}: {st}", i + 1);
    }
    let all: Vec<String> = outcome.pipestatus().iter().map(|c| c.to_string()).collect();
    eprintln!(
        "ipckit: PIPESTATUS=({}) status {}{}",
        all.join(" "),
        outcome.status(),
        if args.pipefail { " (pipefail)" } else { "" }
    );
}
