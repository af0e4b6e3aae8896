//! The `pipeline` demo: `seq 1 100000 | grep 7 | wc -l` and `yes | head -n 3` run without a
//! shell, showing each stage's pid and pipe descriptors and every stage's status, then the
//! throughput of a chain of `cat` stages with the default pipes and with 1 MiB pipes.

use super::interrupt;
use crate::cli::DemoArgs;
use ipckit::pipeline::{Outcome, Pipeline, Running};
use std::io::Read;
use std::process::Stdio;
use std::time::Instant;

/// Runs the demo.
pub(super) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let me = std::process::id();
    let text = ["seq 1 100000", "grep 7", "wc -l"];
    say!("[ipckit {me}] pipeline: {}", text.join(" | "));
    say!("[ipckit {me}]   each stage is split into words with shell quoting; no shell runs");
    say!("[ipckit {me}]   every program is found on PATH first, so a missing one starts nothing");
    say!("[ipckit {me}]   pipe2(O_CLOEXEC) x2, then fork+exec each stage with its ends as fd 0 / fd 1,");
    say!(
        "[ipckit {me}]   closing ipckit's copies right after each spawn (or EOF would never come)"
    );
    let mut p = Pipeline::new();
    for t in text {
        p = p.stage_str(t)?;
    }
    let mut running = p.stdout(Stdio::piped()).spawn()?;
    show_stages(&running, &text)?;
    let mut out = String::new();
    running
        .take_stdout()
        .expect("piped")
        .read_to_string(&mut out)?;
    let o = running.wait()?;
    say!(
        "[ipckit {me}] wc -l printed {}: lines of 1..100000 containing a 7",
        out.trim()
    );
    show_outcome(&o, false)?;

    let text = ["yes", "head -n 3"];
    say!();
    say!("[ipckit {me}] pipeline: {}", text.join(" | "));
    say!(
        "[ipckit {me}]   yes writes forever; head exits after 3 lines, closing the only read end;"
    );
    say!("[ipckit {me}]   yes's next write raises SIGPIPE, whose default action kills it (128 + 13 = 141)");
    for pipefail in [false, true] {
        let o = Pipeline::new()
            .stage_str(text[0])?
            .stage_str(text[1])?
            .stdout(Stdio::null())
            .pipefail(pipefail)
            .spawn()?
            .wait()?;
        show_outcome(&o, pipefail)?;
    }
    say!("[ipckit {me}]   as in bash: a consumer that stops early is not a failure, unless pipefail says so");
    interrupt::exit_if_interrupted();

    say!();
    let mib = if args.short { 32 } else { 512 };
    let big = ipckit::pipe::max_capacity()?.min(1 << 20);
    say!(
        "[ipckit {me}] throughput: head -c {mib}M /dev/zero | cat | cat | cat, read here in 1 MiB reads"
    );
    let default = throughput(mib, None)?;
    let (bigger, cap) = throughput(mib, Some(big))?;
    say!(
        "[ipckit {me}]   default pipes ({} KiB): {:.0} MB/s",
        default.1 / 1024,
        default.0
    );
    say!(
        "[ipckit {me}]   --pipe-size {big} ({} KiB): {bigger:.0} MB/s",
        cap / 1024
    );
    say!("[ipckit {me}] every stage reaped; anonymous pipes vanish with their last descriptor");
    say!(
        "result: {:.0} MB/s through 4 stages with {} KiB pipes vs {:.0} MB/s with the default {} KiB ({:.2}x)",
        bigger,
        cap / 1024,
        default.0,
        default.1 / 1024,
        bigger / default.0
    );
    Ok(())
}

/// Each stage's pid and what its fd 0 and fd 1 are (from `/proc/PID/fd`).
fn show_stages(running: &Running, text: &[&str]) -> std::io::Result<()> {
    let me = std::process::id();
    for (i, (pid, t)) in running.pids().into_iter().zip(text).enumerate() {
        let link = |fd: u32| {
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|l| l.display().to_string())
                .unwrap_or_else(|_| "(already closed: the stage is done)".into())
        };
        say!(
            "[ipckit {me}]   stage {} pid {pid:<7} {t:<14} fd 0 -> {:<16} fd 1 -> {}",
            i + 1,
            link(0),
            link(1)
        );
    }
    say!("[ipckit {me}]   (the same pipe:[inode] as one stage's fd 1 and the next one's fd 0)");
    Ok(())
}

fn show_outcome(o: &Outcome, pipefail: bool) -> std::io::Result<()> {
    let me = std::process::id();
    let all: Vec<String> = o.stages().iter().map(|s| s.to_string()).collect();
    say!(
        "[ipckit {me}]   statuses: {}; pipeline status {}{}",
        all.join(", "),
        o.status(),
        if pipefail {
            " with pipefail (the rightmost non-zero)"
        } else {
            " (the last stage's)"
        }
    );
    Ok(())
}

/// MB/s through `head -c MIB M /dev/zero | cat | cat | cat` read here, and the pipe capacity.
fn throughput(mib: usize, pipe_size: Option<usize>) -> anyhow::Result<(f64, usize)> {
    let mut p = Pipeline::new()
        .stage(["head", "-c", &format!("{mib}M"), "/dev/zero"])
        .stage(["cat"])
        .stage(["cat"])
        .stage(["cat"])
        .stdout(Stdio::piped());
    if let Some(size) = pipe_size {
        p = p.pipe_capacity(size);
    }
    let start = Instant::now();
    let mut running = p.spawn()?;
    let cap = running.pipe_capacity().unwrap_or(0);
    let mut out = running.take_stdout().expect("piped");
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    loop {
        let n = out.read(&mut buf)?;
        if n == 0 || interrupt::interrupted() {
            break;
        }
        total += n;
    }
    drop(out);
    let o = running.wait()?;
    let took = start.elapsed().as_secs_f64();
    anyhow::ensure!(!interrupt::interrupted(), "interrupted");
    anyhow::ensure!(
        o.success() && total == mib << 20,
        "the chain moved {total} bytes, statuses {:?}",
        o.pipestatus()
    );
    Ok((total as f64 / took / 1e6, cap))
}
