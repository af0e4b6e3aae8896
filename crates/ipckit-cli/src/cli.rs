//! The command line, declared with clap's derive API. Every command's arguments live here;
//! `command/<verb>.rs` runs them.

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipckit::Mechanism;
use ipckit_bench::netvariants::NetVariant;
use std::path::PathBuf;
use std::time::Duration;

/// Every way Linux processes talk: pipes, FIFOs, Unix and IP sockets, POSIX and System V
/// queues, eventfd.
#[derive(Debug, Parser)]
#[command(name = "ipckit", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure every mechanism on this machine (latency, throughput, CPU cost, the floor).
    Bench(BenchArgs),
    /// Send one message.
    Send(SendArgs),
    /// Receive messages.
    Recv(RecvArgs),
    /// List the IPC objects ipckit created that still exist.
    List(ListArgs),
    /// Remove IPC objects left behind by ipckit processes that are gone.
    Clean(CleanArgs),
    /// Walk through a mechanism with two processes.
    Demo(DemoArgs),
    /// Listen for signals (with their siginfo) or send them, with a payload if asked.
    Signal(SignalArgs),
    /// Run STAGE | STAGE | ... without a shell; exit with the pipeline's status, as bash does.
    Pipeline(PipelineArgs),
    /// Serve HTTP nginx-style: a master and N worker processes, controlled by signals
    /// (TERM/INT fast stop, QUIT graceful stop, HUP reload, USR1 reopen logs).
    Serve(ServeArgs),
    /// Which mechanism fits these requirements: every candidate, ranked or excluded with why.
    Recommend(RecommendArgs),
    /// The change between two saved runs, row by row, flagged when larger than their spread.
    Compare(CompareArgs),
    /// Turn a saved bench run (`ipckit bench --format json`) into a report.
    Report(ReportArgs),
}

/// A list of mechanisms (`pipe,uds` or `all`), the TCP/UDP variants of the bench among them
/// (`tcp-nagle`, ...), and its zero-copy rows (`zero-copy`, `pipe-vmsplice`, ...), which are
/// not mechanisms of the library.
#[derive(Debug, Clone)]
pub struct MechList(
    pub Vec<Mechanism>,
    pub Vec<NetVariant>,
    pub Vec<ipckit_bench::zerocopy::Path>,
);

fn parse_mech_list(s: &str) -> Result<MechList, String> {
    if s.trim() == "all" {
        return Ok(MechList(Mechanism::ALL.to_vec(), Vec::new(), Vec::new()));
    }
    let mut list = MechList(Vec::new(), Vec::new(), Vec::new());
    for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some(z) = ipckit_bench::zerocopy::parse_selection(p) {
            list.2.extend(z);
            continue;
        }
        match ipckit_bench::netvariants::parse_row_name(p).map_err(|e| {
            format!(
                "{e}; zero-copy rows: {}",
                ipckit_bench::zerocopy::SELECTION_NAMES
            )
        })? {
            (_, Some(v)) => list.1.push(v),
            (m, None) => list.0.push(m),
        }
    }
    list.2.sort();
    list.2.dedup();
    Ok(list)
}

fn parse_mech(s: &str) -> Result<Mechanism, String> {
    s.parse()
}

fn parse_positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive number")),
    }
}

fn parse_pipe_size(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "'{s}' is not a pipe size in bytes (a whole number, 1 or more)"
        )),
    }
}

/// Largest table `demo cow-snapshot --size` accepts, in MiB (64 GiB).
pub const MAX_TABLE_MB: u64 = 64 << 10;

fn parse_table_mb(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if (1..=MAX_TABLE_MB).contains(&n) => Ok(n),
        _ => Err(format!(
            "the table size is a whole number of MiB from 1 to {MAX_TABLE_MB}"
        )),
    }
}

/// Wait strategies to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WaitArg {
    /// Sleep in the kernel.
    Block,
    /// Busy-poll.
    Spin,
    /// Spin briefly, then block.
    Adaptive,
    /// All three.
    All,
}

/// Placements to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlacementArg {
    /// The two processes on two CPUs.
    Cross,
    /// Both on one CPU.
    Same,
    /// Both placements.
    Both,
}

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// A table for people.
    Table,
    /// JSON (`"schema": 1`).
    Json,
    /// CSV, one line per row.
    Csv,
    /// One self-contained HTML page with charts (needs --output or --html).
    Html,
}

/// Message framing on byte streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FramingArg {
    /// Newline-terminated messages, at most 65,535 bytes a line (4,095 on a fifo).
    Line,
    /// A 16-byte header (the payload's length as a little-endian u32, then 12 zero bytes),
    /// then the payload: up to 1 MiB (4,080 bytes on a fifo).
    Length,
}

/// `ipckit bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Mechanisms, comma-separated, or `all` [default: all]: pipe fifo uds uds-dgram
    /// uds-seqpacket tcp udp mq-posix mq-sysv eventfd shm (shm also runs its zero-copy API,
    /// as shm-zerocopy). TCP/UDP variants, only when named: tcp-nagle, tcp-nagle-split
    /// (Nagle on, two writes per message), tcp-bigbuf (4 MiB buffers), udp-defbuf (the
    /// kernel's default buffers). Zero-copy rows, not in `all`, each run beside its copying
    /// baseline: zero-copy (all four), pipe-vmsplice, uds-splice (splice), uds-sendfile
    /// (sendfile), tcp-zerocopy.
    #[arg(long, value_name = "LIST", value_parser = parse_mech_list)]
    pub mech: Option<MechList>,
    /// Message sizes, comma-separated: 64, 64K, 64KiB, 1M, 1MiB [default: 64,64KiB].
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = ipckit_bench::options::parse_size)]
    pub size: Vec<usize>,
    /// Wait strategies [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub wait: Vec<WaitArg>,
    /// Cross-CPU, same CPU, or both.
    #[arg(long, value_enum, default_value_t = PlacementArg::Cross)]
    pub placement: PlacementArg,
    /// The two CPUs to use, `A,B` [default: the first two this process may use].
    #[arg(long, value_name = "A,B", value_parser = ipckit_bench::options::parse_pin)]
    pub pin: Option<(usize, usize)>,
    /// Open-loop latency: send N messages per second on a fixed schedule.
    #[arg(long, value_name = "N", value_parser = parse_positive_f64)]
    pub rate: Option<f64>,
    /// Do not write or verify payloads (the report says so).
    #[arg(long)]
    pub no_touch: bool,
    /// Length of each measured phase, seconds (or 200ms, ...) [default: 0.2; --quick 0.04].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Runs per configuration [default: 3; --quick 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub repeat: Option<u32>,
    /// One repeat, short phases: a quick look, not a publishable figure.
    #[arg(long)]
    pub quick: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    pub format: FormatArg,
    /// Write the report to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Write the HTML report to FILE: short for `--format html --output FILE`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["output", "format"])]
    pub html: Option<PathBuf>,
    /// Also run the raw-syscall reference loops (for shm, the reference ring) and show
    /// ipckit/raw.
    #[arg(long)]
    pub reference: bool,
    /// Shared memory: each ring's data area, a power of two (e.g. 256K), and the payload bytes
    /// of the shm-mpsc queue beside it [default: ipckit's].
    #[arg(long, value_name = "SIZE", value_parser = parse_capacity)]
    pub shm_capacity: Option<usize>,
    /// Shared memory: producer counts of the shm-mpsc rows, 0 for none [default: 1,2,4].
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = clap::value_parser!(u32).range(0..=64))]
    pub mpsc_producers: Vec<u32>,
}

/// The longest duration any option takes: 365 days (a wait or a phase longer than that is a
/// typo, and an unbounded one overflows `Duration`).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// The one parser of durations: a positive decimal number (`20`, `0.5`) with an optional unit
/// `ns`, `us`/`µs`, `ms` or `s`; a bare number is in `bare` (`"s"` or `"us"`). At most
/// [`MAX_DURATION`]; no exponent, sign, `inf` or `nan`.
fn parse_duration(s: &str, bare: &str) -> Result<Duration, String> {
    let t = s.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(end);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration '{s}': expected e.g. 20us, 5ms, 1.5s"))?;
    let unit = match unit.trim() {
        "" => bare,
        u => u,
    };
    let secs_per_unit = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        u => {
            return Err(format!(
                "invalid duration unit '{u}' in '{s}': use ns, us, ms or s"
            ))
        }
    };
    let max = MAX_DURATION.as_secs();
    match Duration::try_from_secs_f64(n * secs_per_unit) {
        Ok(d) if d.is_zero() => Err(format!("invalid duration '{s}': must be above zero")),
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(format!(
            "invalid duration '{s}': at most {max} s ({} days)",
            max / 86_400
        )),
    }
}

/// A duration whose bare number is seconds: `--timeout 1.5`, `--duration 200ms`.
fn parse_secs(s: &str) -> Result<Duration, String> {
    parse_duration(s, "s")
}

/// A latency: `500ns`, `20us`, `20µs`, `5ms`, `1s` (a bare number is µs); in ns.
fn parse_latency(s: &str) -> Result<f64, String> {
    parse_duration(s, "us").map(|d| d.as_nanos() as f64)
}

/// `ipckit recommend`.
#[derive(Debug, Args)]
pub struct RecommendArgs {
    /// A saved run (`ipckit bench --format json`) [default: a quick bench run made now].
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Largest acceptable round-trip p99: 500ns, 20us, 5ms, 1s.
    #[arg(long, value_name = "DUR", value_parser = parse_latency)]
    pub latency_p99: Option<f64>,
    /// Smallest acceptable throughput, MB/s (10^6 B/s).
    #[arg(long, value_name = "MBPS", value_parser = parse_positive_f64)]
    pub throughput: Option<f64>,
    /// Message size: 64, 4K, 1M.
    #[arg(long, value_name = "BYTES", value_parser = ipckit_bench::options::parse_size)]
    pub msg_size: Option<usize>,
    /// The two processes on different CPUs, or on the same one [default: either].
    #[arg(long, value_enum)]
    pub placement: Option<OnePlacement>,
    /// Processes writing to one reader.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub producers: u32,
    /// The processes run on different hosts.
    #[arg(long)]
    pub cross_host: bool,
    /// File descriptors travel with the messages.
    #[arg(long)]
    pub fd_passing: bool,
    /// Messages are read by priority.
    #[arg(long)]
    pub priorities: bool,
    /// No spinning: a core cannot be burned waiting.
    #[arg(long)]
    pub no_busy_poll: bool,
}

/// One placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnePlacement {
    /// Different CPUs.
    Cross,
    /// The same CPU.
    Same,
}

/// `ipckit compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The earlier run (JSON).
    pub a: PathBuf,
    /// The later run (JSON).
    pub b: PathBuf,
}

fn parse_capacity(s: &str) -> Result<usize, String> {
    let n = ipckit_bench::options::parse_size(s)?;
    if n < 4096 || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two of at least 4096"));
    }
    Ok(n)
}

/// `ipckit send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Mechanism to send through.
    #[arg(long, value_name = "MECH", value_parser = parse_mech)]
    pub via: Mechanism,
    /// Where to send (a path, @name, host:port, /queue or a SysV key).
    #[arg(long, value_name = "ADDR")]
    pub to: String,
    /// Message priority (POSIX queues) or type (System V queues).
    #[arg(long, value_name = "N")]
    pub priority: Option<u32>,
    /// Framing on byte streams.
    #[arg(long, value_enum)]
    pub framing: Option<FramingArg>,
    /// The message (default: read stdin).
    pub message: Option<String>,
}

/// `ipckit recv`.
#[derive(Debug, Args)]
pub struct RecvArgs {
    /// Mechanism to receive from.
    #[arg(long, value_name = "MECH", value_parser = parse_mech)]
    pub via: Mechanism,
    /// Where to receive (a path, @name, host:port, /queue or a SysV key).
    #[arg(long, value_name = "ADDR")]
    pub at: String,
    /// Stop after N messages.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Give up after SECS without a message.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
    /// System V message type to receive (msgrcv's msgtyp).
    #[arg(long = "type", value_name = "T", allow_negative_numbers = true)]
    pub msg_type: Option<i64>,
    /// Framing on byte streams.
    #[arg(long, value_enum)]
    pub framing: Option<FramingArg>,
}

/// `ipckit list`.
#[derive(Debug, Args)]
pub struct ListArgs {}

/// `ipckit clean`.
#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Show what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `ipckit demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// What to demonstrate (default: list the topics).
    pub topic: Option<String>,
    /// A shorter walk-through.
    #[arg(long)]
    pub short: bool,
    /// cow-snapshot only: the table's size in MiB [default: 256].
    #[arg(long, value_name = "MB", value_parser = parse_table_mb)]
    pub size: Option<u64>,
    /// stream only: the downloader's top speed in MB/s (10^6 bytes) [default: 200].
    #[arg(long, value_name = "MBps", value_parser = parse_positive_f64)]
    pub rate: Option<f64>,
    /// stream only: the player's speed in MB/s [default: 50].
    #[arg(long, value_name = "MBps", value_parser = parse_positive_f64)]
    pub consume: Option<f64>,
    /// stream only: the pipe's capacity in bytes (rounded up by the kernel to a power-of-two
    /// number of pages; at most /proc/sys/fs/pipe-max-size) [default: the system's, 64 KiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_pipe_size)]
    pub pipe_size: Option<usize>,
    /// Internal: run as the demo's second process, with this role and address.
    #[arg(long, hide = true, value_name = "ROLE")]
    pub child: Option<String>,
}

/// `ipckit pipeline`.
#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// The status is the rightmost non-zero stage status (bash's `set -o pipefail`), not the
    /// last stage's.
    #[arg(long)]
    pub pipefail: bool,
    /// Every pipe's capacity (F_SETPIPE_SZ): 1048576, 1MiB; at most
    /// /proc/sys/fs/pipe-max-size [default: the system's, 64KiB].
    #[arg(long, value_name = "BYTES", value_parser = ipckit_bench::options::parse_size)]
    pub pipe_size: Option<usize>,
    /// Print each stage's status to stderr, like bash's PIPESTATUS.
    #[arg(long)]
    pub status: bool,
    /// The stages, in order, one argument each, written with shell quoting: "seq 1 100000"
    /// "grep 7" "wc -l". Globs, $ expansions and redirections are refused: no shell runs.
    #[arg(required = true, value_name = "STAGE")]
    pub stages: Vec<String>,
}

fn parse_signal(s: &str) -> Result<ipckit::signal::Signal, String> {
    s.parse().map_err(|e: std::io::Error| e.to_string())
}

/// `ipckit signal`.
#[derive(Debug, Args)]
pub struct SignalArgs {
    /// Listen or send.
    #[command(subcommand)]
    pub command: SignalCommand,
}

/// The `signal` subcommands.
#[derive(Debug, Subcommand)]
pub enum SignalCommand {
    /// Print one line per signal received, until SIGINT or SIGTERM (then a count per signal).
    Listen(ListenArgs),
    /// Send a signal with kill(2), or with sigqueue(3) and a payload (--value).
    Send(SignalSendArgs),
}

/// `ipckit signal listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Signals to listen for, comma-separated: USR1, SIGUSR1, 10, RTMIN+3, SIGRTMIN+3
    /// [default: HUP,USR1,USR2 and every real-time signal]. SIGINT and SIGTERM always end it.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_signal)]
    pub signals: Vec<ipckit::signal::Signal>,
    /// One JSON object per line: signal, number, pid, uid, code, value (the summary goes to
    /// stderr).
    #[arg(long)]
    pub json: bool,
}

/// `ipckit signal send`.
#[derive(Debug, Args)]
pub struct SignalSendArgs {
    /// The receiving process.
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..=i32::MAX as i64))]
    pub pid: u32,
    /// The signal: a name with or without SIG (USR1, SIGRTMIN+3, RTMIN+3) or a number.
    #[arg(long, value_name = "NAME|NUM", value_parser = parse_signal)]
    pub signal: ipckit::signal::Signal,
    /// Send with sigqueue(3), carrying this 32-bit integer (otherwise kill(2), no payload).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub value: Option<i32>,
    /// Send it N times.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bench_parses_lists() {
        let c = Cli::try_parse_from([
            "ipckit",
            "bench",
            "--mech",
            "pipe,udp",
            "--size",
            "64,64KiB,1M",
            "--wait",
            "spin",
            "--pin",
            "0,1",
        ])
        .unwrap();
        let Command::Bench(b) = c.command else {
            panic!("not bench")
        };
        assert_eq!(b.mech.unwrap().0, vec![Mechanism::Pipe, Mechanism::Udp]);
        assert_eq!(b.size, vec![64, 65536, 1 << 20]);
        assert_eq!(b.wait, vec![WaitArg::Spin]);
        assert_eq!(b.pin, Some((0, 1)));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_secs("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_secs("31536000"), Ok(MAX_DURATION));
        assert!(parse_secs("31536001").is_err());
        assert_eq!(parse_latency("20"), Ok(20_000.0));
        assert_eq!(parse_latency("5ms"), Ok(5e6));
    }

    #[test]
    fn bench_rejects_bad_values() {
        for bad in [
            &["ipckit", "bench", "--mech", "carrier-pigeon"][..],
            &["ipckit", "bench", "--size", "12Q"],
            &["ipckit", "bench", "--size", "0"],
            &["ipckit", "bench", "--wait", "sometimes"],
            &["ipckit", "bench", "--pin", "1"],
            &["ipckit", "bench", "--repeat", "0"],
            &["ipckit", "bench", "--rate", "-5"],
            &["ipckit", "bench", "--duration", "1e30"],
            &["ipckit", "bench", "--duration", "0"],
            &[
                "ipckit",
                "recv",
                "--via",
                "udp",
                "--at",
                "x:1",
                "--timeout",
                "1e30",
            ],
            &[
                "ipckit",
                "recv",
                "--via",
                "udp",
                "--at",
                "x:1",
                "--timeout",
                "18446744073709551616",
            ],
            &[
                "ipckit",
                "recv",
                "--via",
                "udp",
                "--at",
                "x:1",
                "--timeout",
                "inf",
            ],
            &[
                "ipckit",
                "recv",
                "--via",
                "udp",
                "--at",
                "x:1",
                "--timeout",
                "NaN",
            ],
            &[
                "ipckit",
                "recv",
                "--via",
                "udp",
                "--at",
                "x:1",
                "--timeout",
                "-1",
            ],
            &[
                "ipckit",
                "recv",
                "--via",
                "udp",
                "--at",
                "x:1",
                "--timeout",
                "366days",
            ],
            &["ipckit", "recommend", "--latency-p99", "1e30"],
            &["ipckit", "demo", "cow-snapshot", "--size", "0"],
            &["ipckit", "demo", "cow-snapshot", "--size", "65537"],
            &["ipckit", "demo", "cow-snapshot", "--size", "1.5"],
            &["ipckit", "signal", "listen", "--signals", "USR1,NOPE"],
            &["ipckit", "signal", "send", "--pid", "1", "--signal", "99"],
            &["ipckit", "signal", "send", "--pid", "0", "--signal", "USR1"],
            &["ipckit", "pipeline"],
            &["ipckit", "pipeline", "--pipe-size", "0", "cat"],
            &[
                "ipckit", "signal", "send", "--pid", "1", "--signal", "USR1", "--count", "0",
            ],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?} accepted");
        }
    }
}

fn parse_accept(s: &str) -> Result<ipckit_server::config::AcceptMode, String> {
    s.parse()
}

/// `ipckit serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// An address to listen on, e.g. 127.0.0.1:8080, or an IPv6 one in brackets
    /// (repeatable) [default: the config file's, else 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<std::net::SocketAddr>,
    /// Worker processes [default: one per CPU].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Serve static files from this directory (else `GET /` answers `Hello, World!`).
    #[arg(long, value_name = "DIR")]
    pub root: Option<std::path::PathBuf>,
    /// A config file of `key = value` lines (the flags override it; re-read on HUP).
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// How workers share accepting: exclusive (one socket per address, EPOLLEXCLUSIVE) or
    /// reuseport (one SO_REUSEPORT socket per address and worker) [default: the config
    /// file's, else exclusive].
    #[arg(long, value_name = "MODE", value_parser = parse_accept)]
    pub accept: Option<ipckit_server::config::AcceptMode>,
    /// Print the running server's workers and counters, then exit (1 if none runs).
    #[arg(long)]
    pub status: bool,
    /// Run as a worker (started by the master, which passes the spec in the environment).
    #[arg(long, hide = true)]
    pub worker: bool,
}

/// `ipckit report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A saved run: the JSON of `ipckit bench --format json`.
    #[arg(value_name = "RESULTS.json")]
    pub results: PathBuf,
    /// Write the self-contained HTML report (charts, table, in-page self-check) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: PathBuf,
}
