//! `ipckit-peers`: ipckit beside iceoryx2 and ipc-channel, measured by ipckit's harness in one
//! run: two real processes (this binary re-executes itself as the peer), each pinned to its
//! own CPU, HdrHistogram round trips, and a one-way stream whose every 8-byte word the
//! receiver verifies. See `README.md` beside this crate.

mod driver;
mod iox;
mod ipcc;
mod report;
mod target;

use clap::Parser;
use ipckit::Wait;
use ipckit_bench::options::{format_size, parse_pin, parse_size, BenchOptions};
use ipckit_bench::{machine, os, PEER_ARG};
use report::{Report, Row, Skipped, VERSIONS};
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;
use target::{Target, LIB_NAMES};

/// ipckit beside iceoryx2 and ipc-channel: round-trip latency and verified one-way throughput,
/// two pinned processes, one run.
#[derive(Debug, Parser)]
#[command(name = "ipckit-peers", version)]
struct Cli {
    /// Message sizes, comma-separated (64, 4K, 64KiB, 1M).
    #[arg(long, default_value = "64,4K,64K", value_delimiter = ',', value_parser = parse_size)]
    sizes: Vec<usize>,
    /// Libraries to run, comma-separated: ipckit, iceoryx2, ipc-channel.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ipckit,iceoryx2,ipc-channel"
    )]
    libs: Vec<String>,
    /// ipckit's mechanisms, comma-separated (each runs spin and block): shm, uds, pipe, ...
    #[arg(long, value_delimiter = ',', default_value = "shm", value_parser = target::parse_ipckit_mech)]
    ipckit: Vec<ipckit::Mechanism>,
    /// Wait strategies to run, comma-separated: spin, block.
    #[arg(long, value_delimiter = ',', default_value = "spin,block")]
    waits: Vec<String>,
    /// The two CPUs, parent then peer (default: the first two this process may use).
    #[arg(long, value_name = "A,B", value_parser = parse_pin)]
    pin: Option<(usize, usize)>,
    /// Length of each measured phase, ms (default 200; 40 with --quick).
    #[arg(long, value_name = "MS")]
    duration: Option<u64>,
    /// Runs per row; the median is shown (default 3; 1 with --quick).
    #[arg(long)]
    repeat: Option<u32>,
    /// Unrecorded round trips before each latency phase (default 2000; 300 with --quick).
    #[arg(long)]
    warmup: Option<u64>,
    /// Short phases and one repeat: checks that everything runs, in seconds.
    #[arg(long)]
    quick: bool,
    /// iceoryx2: the stream subscriber's buffer, in samples.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    iox_buffer: u64,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(PEER_ARG) {
        iox::init_logging();
        let code = ipckit_bench::peer_main_with(&args[2..], driver::serve_peer);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = Cli::parse();
    iox::init_logging();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(Usage(msg)) => {
            eprintln!("ipckit-peers: {msg}");
            ExitCode::from(2)
        }
    }
}

/// A mistake in the options: one line on stderr, exit status 2.
struct Usage(String);

fn selected_targets(cli: &Cli) -> Result<Vec<Target>, Usage> {
    for l in &cli.libs {
        if !LIB_NAMES.contains(&l.as_str()) {
            return Err(Usage(format!(
                "--libs: unknown library '{l}' (expected some of: {})",
                LIB_NAMES.join(", ")
            )));
        }
    }
    let mut waits = Vec::new();
    for w in &cli.waits {
        match w.as_str() {
            "spin" => waits.push(Wait::Spin),
            "block" => waits.push(Wait::Block),
            _ => {
                return Err(Usage(format!(
                    "--waits: unknown wait '{w}' (expected spin, block)"
                )))
            }
        }
    }
    let mut mechs = cli.ipckit.clone();
    mechs.dedup();
    let targets: Vec<Target> = target::targets(&mechs)
        .into_iter()
        .filter(|t| cli.libs.iter().any(|l| l == t.lib.name()) && waits.contains(&t.wait))
        .collect();
    if targets.is_empty() {
        return Err(Usage("no row matches --libs and --waits".into()));
    }
    Ok(targets)
}

/// Runs everything; `Ok(false)` if any row had errors (the report says which).
fn run(cli: &Cli) -> Result<bool, Usage> {
    let targets = selected_targets(cli)?;
    // Open the JSON file first: a bad path should fail now, not after the whole run.
    let json_out = match &cli.json {
        Some(path) => Some((
            path,
            std::fs::File::create(path)
                .map_err(|e| Usage(format!("--json {}: {e}", path.display())))?,
        )),
        None => None,
    };
    let mut bopts = BenchOptions::default();
    if cli.quick {
        bopts = bopts.quick(cli.duration.is_some(), cli.repeat.is_some());
    }
    if let Some(ms) = cli.duration {
        if ms == 0 {
            return Err(Usage("--duration must be at least 1 ms".into()));
        }
        bopts.duration = Duration::from_millis(ms);
    }
    if let Some(r) = cli.repeat {
        if r == 0 {
            return Err(Usage("--repeat must be at least 1".into()));
        }
        bopts.repeat = r;
    }
    if let Some(w) = cli.warmup {
        bopts.warmup = w;
    }
    let params = driver::Params {
        duration: bopts.duration,
        warmup: bopts.warmup,
        batch: bopts.batch,
        iox_stream_buffer: cli.iox_buffer as usize,
    };
    let mut sizes = cli.sizes.clone();
    sizes.dedup();

    let allowed = os::allowed_cpus().map_err(|e| Usage(format!("sched_getaffinity: {e}")))?;
    let cpus = machine::choose_cpus(&allowed, cli.pin).map_err(Usage)?;
    if cfg!(debug_assertions) {
        eprintln!("ipckit-peers: warning: this is a debug build; its figures are not release figures (cargo run --release)");
    }
    let machine = machine::probe(cpus, allowed.clone());

    let mut run_targets = Vec::new();
    let mut skipped = Vec::new();
    for t in &targets {
        if t.wait.spins() && cpus[0] == cpus[1] {
            skipped.push(Skipped {
                target: format!("{} {} {}", t.lib.name(), t.lib.transport(), t.wait.name()),
                reason: format!(
                    "spin rows need two CPUs; only CPU {} is available, and two busy-polling processes on one CPU would measure the scheduler",
                    cpus[0]
                ),
            });
        } else {
            run_targets.push(*t);
        }
    }

    // Repeats are interleaved (every target once, then again), so a machine whose speed
    // drifts over seconds shifts all the libraries alike instead of favouring whichever ran
    // while it was fast.
    let total = sizes.len() * run_targets.len() * bopts.repeat as usize;
    let mut done = 0;
    let mut rows = Vec::new();
    for &size in &sizes {
        let mut results: Vec<Vec<Result<driver::Measured, String>>> =
            vec![Vec::new(); run_targets.len()];
        for _ in 0..bopts.repeat {
            for (t, res) in run_targets.iter().zip(results.iter_mut()) {
                done += 1;
                eprintln!(
                    "[{done}/{total}] {} {} {} {}",
                    t.lib.name(),
                    t.lib.transport(),
                    t.wait.name(),
                    format_size(size)
                );
                let r = driver::run(t, size, cpus, &params);
                if let Err(e) = &r {
                    eprintln!("  failed: {e}");
                }
                res.push(r);
            }
        }
        for (t, res) in run_targets.iter().zip(&results) {
            rows.push(Row::new(t, size, res));
        }
    }
    let _ = os::set_affinity(&allowed);

    let report = Report {
        schema: 1,
        tool: format!("ipckit-peers {}", env!("CARGO_PKG_VERSION")),
        versions: VERSIONS,
        machine,
        params,
        repeat: bopts.repeat,
        sizes,
        rows,
        skipped,
        notes: report::notes(),
    };
    print!("{}", report.table());
    if let Some((path, mut file)) = json_out {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| Usage(format!("cannot encode the report: {e}")))?;
        file.write_all((json + "\n").as_bytes())
            .map_err(|e| Usage(format!("--json {}: {e}", path.display())))?;
        eprintln!("ipckit-peers: wrote {}", path.display());
    }
    Ok(report.rows.iter().all(|r| r.errors == 0))
}
