//! The zero-copy rows: each zero-copy path beside the plain copying path of the same
//! transport, measured the same way (throughput only, every payload word verified by the
//! receiving process), so a reader sees per size where zero-copy pays and where it does not.
//!
//! | row              | sender (bench process)                                   | baseline of       |
//! |------------------|----------------------------------------------------------|-------------------|
//! | `pipe-write`     | `write()` from one buffer into a 1 MiB pipe              |                   |
//! | `pipe-vmsplice`  | `vmsplice()` from ipckit's page ring into the same pipe  | `pipe-write`      |
//! | `uds-read-write` | `pread()` a file slot into a buffer, `write()` it to a Unix stream socket |  |
//! | `uds-splice`     | `splice()` file → 1 MiB pipe → socket                    | `uds-read-write`  |
//! | `uds-sendfile`   | `sendfile()` file → socket                               | `uds-read-write`  |
//! | `tcp-send`       | `send()` from one buffer on loopback TCP                 |                   |
//! | `tcp-zerocopy`   | `send(MSG_ZEROCOPY)` from ipckit's buffer pool, completions read | `tcp-send` |
//!
//! The receiver (the peer process) always `read()`s exactly one message into one reused
//! buffer and checks its header and every word: the cost a consumer of the data pays. The
//! generating paths (pipe, tcp) fill every message afresh; the file paths serve a file of
//! pre-filled messages (in the page cache, never rewritten while sent), message `i` being the
//! file's slot `i mod K`, so the receiver expects header `i mod K`. A group (a baseline and
//! its zero-copy rows) runs interleaved repeat by repeat, in alternating order, and a
//! zero-copy row's `ratio_to_raw_msgs` is the median of its per-repeat ratios to the
//! baseline's msgs/s. Rows are blocking only: every call here sleeps in the kernel.

use crate::options::{format_size, BenchOptions, Impl, Placement};
use crate::pattern;
use crate::peer::{self, Control, FromPeer, PeerSpec, Role, ToPeer, GO_TIMEOUT};
use crate::report::{Row, Skipped};
use crate::scenario::RecvTotals;
use crate::session::expect_ready;
use crate::stats::{median, spread_pct, NOISY_PCT};
use crate::sys;
use ipckit::zerocopy::{self as zc, VmspliceSender, ZeroCopySender};
use ipckit::Wait;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// One zero-copy row or copying baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Path {
    /// `write()` into a 1 MiB pipe (baseline of `pipe-vmsplice`).
    PipeWrite,
    /// `vmsplice()` into a 1 MiB pipe.
    PipeVmsplice,
    /// File → `pread()` → `write()` → Unix stream socket (baseline of the two below).
    UdsReadWrite,
    /// File → `splice()` → pipe → `splice()` → Unix stream socket.
    UdsSplice,
    /// File → `sendfile()` → Unix stream socket.
    UdsSendfile,
    /// `send()` on loopback TCP (baseline of `tcp-zerocopy`).
    TcpSend,
    /// `send(MSG_ZEROCOPY)` on loopback TCP, completions handled.
    TcpZerocopy,
}

/// The zero-copy paths `--mech` selects (each brings its baseline).
pub const ZERO_COPY: [Path; 4] = [
    Path::PipeVmsplice,
    Path::UdsSplice,
    Path::UdsSendfile,
    Path::TcpZerocopy,
];

const ALL_ROWS: [Path; 7] = [
    Path::PipeWrite,
    Path::PipeVmsplice,
    Path::UdsReadWrite,
    Path::UdsSplice,
    Path::UdsSendfile,
    Path::TcpSend,
    Path::TcpZerocopy,
];

/// The pipe size of the pipe rows and of `uds-splice`'s middle pipe.
pub const PIPE_SIZE: usize = 1 << 20;

/// Bytes of file the file rows serve (a whole number of messages, at least 2).
const FILE_BYTES: usize = 16 << 20;

impl Path {
    /// The row's name.
    pub fn name(self) -> &'static str {
        match self {
            Path::PipeWrite => "pipe-write",
            Path::PipeVmsplice => "pipe-vmsplice",
            Path::UdsReadWrite => "uds-read-write",
            Path::UdsSplice => "uds-splice",
            Path::UdsSendfile => "uds-sendfile",
            Path::TcpSend => "tcp-send",
            Path::TcpZerocopy => "tcp-zerocopy",
        }
    }

    /// The copying baseline of a zero-copy path (`None` for a baseline).
    pub fn baseline(self) -> Option<Path> {
        match self {
            Path::PipeVmsplice => Some(Path::PipeWrite),
            Path::UdsSplice | Path::UdsSendfile => Some(Path::UdsReadWrite),
            Path::TcpZerocopy => Some(Path::TcpSend),
            _ => None,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Path::PipeWrite => "write() into a 1 MiB pipe",
            Path::PipeVmsplice => {
                "vmsplice() from a page ring (2x the safe minimum) into a 1 MiB pipe"
            }
            Path::UdsReadWrite => "file -> pread() -> write() -> Unix stream socket",
            Path::UdsSplice => "file -> splice() -> 1 MiB pipe -> splice() -> Unix stream socket",
            Path::UdsSendfile => "file -> sendfile() -> Unix stream socket",
            Path::TcpSend => "send() on loopback TCP",
            Path::TcpZerocopy => "send(MSG_ZEROCOPY) on loopback TCP, completions read",
        }
    }

    /// True for the rows that can spin (non-blocking calls retried): the pipe rows.
    fn spins(self) -> bool {
        matches!(self, Path::PipeWrite | Path::PipeVmsplice)
    }

    fn serves_a_file(self) -> bool {
        matches!(
            self,
            Path::UdsReadWrite | Path::UdsSplice | Path::UdsSendfile
        )
    }

    fn imp(self) -> Impl {
        if self.baseline().is_some() {
            Impl::Ipckit
        } else {
            Impl::Raw
        }
    }

    /// A row name back to its path.
    pub fn from_row_name(s: &str) -> Option<Path> {
        ALL_ROWS.iter().copied().find(|p| p.name() == s)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The zero-copy paths a `--mech` name selects: a row name, `splice`, `sendfile`, or
/// `zero-copy` for all four; `None` if the name is not one of these.
pub fn parse_selection(s: &str) -> Option<Vec<Path>> {
    match s {
        "zero-copy" => Some(ZERO_COPY.to_vec()),
        "splice" => Some(vec![Path::UdsSplice]),
        "sendfile" => Some(vec![Path::UdsSendfile]),
        _ => Path::from_row_name(s)
            .filter(|p| p.baseline().is_some())
            .map(|p| vec![p]),
    }
}

/// The names [`parse_selection`] accepts.
pub const SELECTION_NAMES: &str =
    "zero-copy, pipe-vmsplice, uds-splice (splice), uds-sendfile (sendfile), tcp-zerocopy";

impl FromStr for Path {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Path::from_row_name(s).ok_or_else(|| format!("unknown zero-copy row '{s}'"))
    }
}

/// Messages in the served file for messages of `size` bytes.
fn file_slots(size: usize) -> usize {
    (FILE_BYTES / size).max(2)
}

/// What one session measured.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Messages per second received (and verified).
    pub msgs_per_s: f64,
    /// MB/s (10^6 B/s) received.
    pub mbps: f64,
    /// CPU time of both processes per message, ns.
    pub cpu_ns_per_msg: Option<f64>,
    /// Corrupted, missing or out-of-order messages.
    pub errors: u64,
    /// The first of those, described.
    pub first_error: Option<String>,
    /// `tcp-zerocopy`: the sender's counts (completions, copied, ...).
    pub zc: Option<zc::ZeroCopyStats>,
}

/// Measures one row once, outside a bench run (for `ipckit demo zero-copy`): the two
/// processes pinned as the bench pins them, every word verified; this thread's CPU affinity
/// is restored afterwards.
///
/// # Errors
///
/// If the CPUs cannot be chosen or the session fails.
pub fn measure_once(p: Path, size: usize, duration: Duration) -> io::Result<Run> {
    let allowed = sys::allowed_cpus()?;
    let cpus = crate::machine::choose_cpus(&allowed, None).map_err(io::Error::other)?;
    let opts = BenchOptions {
        duration,
        ..BenchOptions::default()
    };
    let r = session(p, size, Wait::Block, cpus, &opts);
    let _ = sys::set_affinity(&allowed);
    r
}

/// Runs every selected zero-copy group and returns its rows (each baseline followed by its
/// zero-copy rows, per placement and size) and what was skipped.
pub(crate) fn run_rows(
    opts: &BenchOptions,
    cpus: [usize; 2],
    bar: &indicatif::ProgressBar,
) -> (Vec<Row>, Vec<Skipped>) {
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    if opts.zero_copy.is_empty() {
        return (rows, skipped);
    }
    // Groups: a baseline and the selected zero-copy paths that compare with it.
    let mut groups: Vec<(Path, Vec<Path>)> = Vec::new();
    for &p in ALL_ROWS.iter().filter(|p| opts.zero_copy.contains(p)) {
        let Some(b) = p.baseline() else { continue };
        match groups.iter_mut().find(|(g, _)| *g == b) {
            Some((_, v)) => v.push(p),
            None => groups.push((b, vec![p])),
        }
    }
    // Pipes can spin (non-blocking calls retried); sockets and files are measured blocking.
    let plan: Vec<(Wait, &(Path, Vec<Path>))> = opts
        .waits
        .iter()
        .flat_map(|&w| groups.iter().map(move |g| (w, g)))
        .filter(|(w, g)| *w == Wait::Block || g.0 == Path::PipeWrite)
        .collect();
    for (b, zs) in &groups {
        if b.spins() || opts.waits.contains(&Wait::Block) {
            continue;
        }
        for p in std::iter::once(b).chain(zs) {
            for &size in &opts.sizes {
                skipped.push(Skipped {
                    mechanism: p.name().into(),
                    wait: opts
                        .waits
                        .iter()
                        .map(|w| w.name())
                        .collect::<Vec<_>>()
                        .join(","),
                    placement: "-".into(),
                    size,
                    reason: "sockets and files are measured blocking only (--wait block)".into(),
                });
            }
        }
    }
    let sessions: usize = plan.iter().map(|(_, (_, z))| 1 + z.len()).sum::<usize>()
        * opts.sizes.len()
        * opts.placements.len()
        * opts.repeat as usize;
    bar.inc_length(sessions as u64);
    for &placement in &opts.placements {
        let pair = match placement {
            Placement::Cross => cpus,
            Placement::Same => [cpus[0], cpus[0]],
        };
        for &size in &opts.sizes {
            for &(wait, (base, zs)) in &plan {
                if wait.spins() && pair[0] == pair[1] {
                    skipped.push(Skipped {
                        mechanism: format!("{base} and its zero-copy rows"),
                        wait: wait.name().into(),
                        placement: placement.name().into(),
                        size,
                        reason: "two spinning processes on one CPU would measure the scheduler"
                            .into(),
                    });
                    continue;
                }
                let members: Vec<Path> = std::iter::once(*base).chain(zs.iter().copied()).collect();
                let mut results: Vec<Vec<Result<Run, String>>> = vec![Vec::new(); members.len()];
                for rep in 0..opts.repeat {
                    for k in 0..members.len() {
                        let k = if rep % 2 == 1 {
                            members.len() - 1 - k
                        } else {
                            k
                        };
                        let p = members[k];
                        bar.set_message(format!(
                            "{} {} {} {}",
                            p.name(),
                            wait.name(),
                            placement.name(),
                            format_size(size)
                        ));
                        results[k]
                            .push(session(p, size, wait, pair, opts).map_err(|e| e.to_string()));
                        bar.inc(1);
                    }
                }
                for (k, p) in members.iter().enumerate() {
                    let ratio = (k > 0).then(|| {
                        let r: Vec<f64> = results[k]
                            .iter()
                            .zip(&results[0])
                            .filter_map(|(a, b)| match (a, b) {
                                (Ok(a), Ok(b)) if b.msgs_per_s > 0.0 => {
                                    Some(a.msgs_per_s / b.msgs_per_s)
                                }
                                _ => None,
                            })
                            .collect();
                        median(&r)
                    });
                    rows.push(row(
                        *p,
                        wait,
                        placement,
                        size,
                        &results[k],
                        ratio.flatten(),
                        opts,
                    ));
                }
            }
        }
    }
    (rows, skipped)
}

/// Whether a zero-copy path pays, from its msgs/s over its baseline's: within 5% is even.
fn verdict(ratio: f64) -> &'static str {
    if ratio >= 1.05 {
        "pays"
    } else if ratio > 0.95 {
        "even"
    } else {
        "does not pay"
    }
}

/// One note per zero-copy path, wait and placement: its ratio to its copying baseline at
/// every size, and whether it pays; and the `MSG_ZEROCOPY` completions marked copied.
pub(crate) fn summary(rows: &[Row]) -> Vec<String> {
    let mut notes = Vec::new();
    let mut seen: Vec<(String, String, String)> = Vec::new();
    for r in rows {
        let Some(p) = Path::from_row_name(&r.mechanism) else {
            continue;
        };
        let Some(b) = p.baseline() else { continue };
        let key = (r.mechanism.clone(), r.wait.clone(), r.placement.clone());
        if seen.contains(&key) {
            continue;
        }
        let same: Vec<&Row> = rows
            .iter()
            .filter(|q| q.mechanism == key.0 && q.wait == key.1 && q.placement == key.2)
            .collect();
        let per_size: Vec<String> = same
            .iter()
            .map(|q| {
                // CPU per message against the baseline's row of the same size.
                let cpu = rows
                    .iter()
                    .find(|c| {
                        c.mechanism == b.name()
                            && c.size == q.size
                            && c.wait == q.wait
                            && c.placement == q.placement
                    })
                    .and_then(|c| Some(q.cpu_ns_per_msg? / c.cpu_ns_per_msg?))
                    .map_or(String::new(), |c| format!(", CPU x{c:.2}"));
                match q.ratio_to_raw_msgs {
                    Some(x) => format!("{} x{x:.2} {}{cpu}", format_size(q.size), verdict(x)),
                    None => format!("{} n/a", format_size(q.size)),
                }
            })
            .collect();
        notes.push(format!(
            "zero-copy: {} vs {b} ({} {}), msgs/s (and CPU per message): {}",
            key.0,
            key.1,
            key.2,
            per_size.join(", ")
        ));
        let done: u64 = same.iter().filter_map(|q| q.zc_completions).sum();
        let copied: u64 = same.iter().filter_map(|q| q.zc_copied).sum();
        if p == Path::TcpZerocopy {
            notes.push(format!(
                "MSG_ZEROCOPY: the kernel marked {copied} of {done} completions copied{}",
                if copied == done && done > 0 {
                    " (loopback: the receiving socket cannot keep the sender's pages, so they \
                     are copied on delivery; there is no crossover to find here)"
                } else {
                    ""
                }
            ));
        }
        seen.push(key);
    }
    notes
}

fn row(
    p: Path,
    wait: Wait,
    placement: Placement,
    size: usize,
    results: &[Result<Run, String>],
    ratio: Option<f64>,
    opts: &BenchOptions,
) -> Row {
    let ok: Vec<&Run> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let msgs: Vec<f64> = ok.iter().map(|r| r.msgs_per_s).collect();
    let mbps = median(&ok.iter().map(|r| r.mbps).collect::<Vec<_>>());
    let spread = spread_pct(&msgs);
    let mut notes = vec![format!("throughput only: {}", p.what())];
    if let (Some(b), Some(x)) = (p.baseline(), ratio) {
        notes.push(format!(
            "x{x:.2} the msgs/s of {b} ({}; median of paired runs)",
            verdict(x)
        ));
    }
    let zc_completions = ok
        .iter()
        .filter_map(|r| r.zc.map(|s| s.completions))
        .reduce(|a, b| a + b);
    let zc_copied = ok
        .iter()
        .filter_map(|r| r.zc.map(|s| s.copied))
        .reduce(|a, b| a + b);
    if let (Some(m), Some(n)) = (zc_completions, zc_copied) {
        let why = if n == m && m > 0 {
            ": loopback copies (the receiving socket cannot keep the sender's pages)"
        } else {
            ""
        };
        notes.push(format!("copied {n} of {m} completions{why}"));
    }
    for f in &failures {
        notes.push(format!("run failed: {f}"));
    }
    let errors = ok.iter().map(|r| r.errors).sum::<u64>() + failures.len() as u64;
    let first_error = ok
        .iter()
        .find_map(|r| r.first_error.clone())
        .or_else(|| failures.first().map(|s| s.to_string()));
    Row {
        mechanism: p.name().into(),
        wait: wait.name().into(),
        placement: placement.name().into(),
        size,
        imp: p.imp().name().into(),
        producers: None,
        latency_size: None,
        throughput_size: Some(size),
        max_msg_size: None,
        rtt_ns: None,
        rtt_batched_ns: None,
        one_way_p50_ns: None,
        throughput_mbps: mbps,
        msgs_per_s: median(&msgs),
        cpu_ns_per_msg: median(
            &ok.iter()
                .filter_map(|r| r.cpu_ns_per_msg)
                .collect::<Vec<_>>(),
        ),
        cpu_ns_per_rtt: None,
        spread_pct: spread,
        noisy: spread.is_some_and(|s| s > NOISY_PCT),
        lost: 0,
        reordered: 0,
        errors,
        first_error,
        ratio_to_floor: None,
        cacheline_p50_ns: None,
        throughput_vs_memcpy: None,
        ratio_to_raw_rtt: None,
        ratio_to_raw_msgs: ratio,
        repeats: results.len() as u32,
        touch: opts.touch,
        open_loop_rate: None,
        note: Some(notes.join("; ")),
        zc_completions,
        zc_copied,
        loss_pct: None,
        socket_buffers: None,
    }
}

/// How a file row moves a file slot to the socket.
enum FileHow {
    ReadWrite,
    Sendfile,
    /// Through a pipe: its (read, write) ends.
    Splice {
        r: OwnedFd,
        w: OwnedFd,
    },
}

/// The sender's objects for one session, and the descriptor the peer reads from.
enum Sender {
    Pipe {
        w: OwnedFd,
        wait: Wait,
    },
    Vmsplice(VmspliceSender),
    File {
        sock: OwnedFd,
        file: File,
        how: FileHow,
    },
    Tcp {
        sock: OwnedFd,
    },
    TcpZc(ZeroCopySender),
}

fn pipe_pair(size: usize) -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = std::io::pipe()?;
    let (r, w): (OwnedFd, OwnedFd) = (r.into(), w.into());
    ipckit::pipe::set_capacity(&w, size)?;
    Ok((r, w))
}

fn tcp_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let a = std::net::TcpStream::connect(l.local_addr()?)?;
    let (b, _) = l.accept()?;
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    Ok((a.into(), b.into()))
}

/// The served file: `file_slots(size)` messages, message `j` with header `j`, unlinked at
/// once (created 0600 and exclusively in the temporary directory).
fn served_file(size: usize, touch: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = std::env::temp_dir().join(ipckit::registry::unique_name("bench-file"));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    let mut w = io::BufWriter::with_capacity(1 << 20, &f);
    let mut msg = vec![0u8; size];
    for j in 0..file_slots(size) as u64 {
        pattern::write_header(&mut msg, j);
        if touch {
            pattern::fill(&mut msg, j);
        }
        w.write_all(&msg)?;
    }
    w.flush()?;
    drop(w);
    Ok(f)
}

/// One session of row `p`: spawn the receiver, stream for the phase's duration, collect.
fn session(
    p: Path,
    size: usize,
    wait: Wait,
    cpus: [usize; 2],
    opts: &BenchOptions,
) -> io::Result<Run> {
    let (peer_fd, mut sender): (OwnedFd, Sender) = match p {
        Path::PipeWrite => {
            let (r, w) = pipe_pair(PIPE_SIZE)?;
            sys::set_nonblocking(w.as_raw_fd(), wait.spins())?;
            (r, Sender::Pipe { w, wait })
        }
        Path::PipeVmsplice => {
            let (r, w) = pipe_pair(PIPE_SIZE)?;
            // Twice the ring correctness needs: the sender then rewrites lines the reader
            // copied longer ago, which measured 10-30% faster at 64 KiB here (the C loop
            // the target comes from rotates about 2 MiB too).
            let min = zc::vmsplice_ring_pages(PIPE_SIZE, size);
            let mut v = VmspliceSender::with_ring_pages(w, size, 2 * min)?;
            v.set_wait(wait);
            (r, Sender::Vmsplice(v))
        }
        Path::UdsReadWrite | Path::UdsSplice | Path::UdsSendfile => {
            let (a, b) = std::os::unix::net::UnixStream::pair()?;
            let how = match p {
                Path::UdsSplice => {
                    let (r, w) = pipe_pair(PIPE_SIZE.max(size))?;
                    FileHow::Splice { r, w }
                }
                Path::UdsSendfile => FileHow::Sendfile,
                _ => FileHow::ReadWrite,
            };
            (
                b.into(),
                Sender::File {
                    sock: a.into(),
                    file: served_file(size, opts.touch)?,
                    how,
                },
            )
        }
        Path::TcpSend => {
            let (a, b) = tcp_pair()?;
            (b, Sender::Tcp { sock: a })
        }
        Path::TcpZerocopy => {
            let (a, b) = tcp_pair()?;
            // Enough buffers to keep a few MiB in flight; at least 4.
            let slots = ((8 << 20) / size).clamp(4, 1024);
            (b, Sender::TcpZc(ZeroCopySender::new(a, slots, size)?))
        }
    };
    let mut spec = PeerSpec {
        role: Role::Transport,
        mechanism: p.name().into(),
        wait: wait.name().into(),
        imp: p.imp(),
        address: format!("fd:{}", peer_fd.as_raw_fd()),
        address2: None,
        cpu: cpus[1],
        ctl_in: -1,
        ctl_out: -1,
        shm_fd: None,
        warmup: 0,
        touch: opts.touch,
        max_msg_size: Some(size),
        zero_copy: false,
        shm_capacity: None,
        producer: None,
        duration_ms: opts.duration.as_millis() as u64,
    };
    let limit = Duration::from_secs(60) + opts.duration * 4;
    let (guard, mut ctl) = peer::spawn(&mut spec, |_| {}, &[peer_fd.as_raw_fd()], limit)?;
    drop(peer_fd);
    expect_ready(&mut ctl)?;
    sys::pin_current_thread(cpus[0])?;
    ctl.send(&ToPeer::Go {
        lat_size: None,
        tput_size: size,
    })?;
    let (sent, first_send_ns, cpu_ns) = stream(&mut sender, size, opts)?;
    let zc = match &mut sender {
        Sender::TcpZc(z) => {
            z.flush(Some(Duration::from_secs(10)))?;
            Some(z.stats())
        }
        _ => None,
    };
    let r: RecvTotals = match ctl.recv::<FromPeer>(Duration::from_secs(30) + opts.duration)? {
        FromPeer::TputDone(t) => t,
        FromPeer::Error(e) => return Err(io::Error::other(format!("peer: {e}"))),
        other => return Err(io::Error::other(format!("peer sent {other:?}"))),
    };
    drop(sender);
    guard
        .finish(Duration::from_secs(5))
        .map_err(io::Error::other)?;
    let elapsed = r.last_recv_ns.saturating_sub(first_send_ns).max(1) as f64;
    let mut run = Run {
        msgs_per_s: r.received as f64 / elapsed * 1e9,
        mbps: r.bytes as f64 / elapsed * 1e3,
        cpu_ns_per_msg: (r.received > 0).then(|| (cpu_ns + r.cpu_ns) as f64 / r.received as f64),
        errors: r.errors,
        first_error: r.first_error,
        zc,
    };
    if r.received != sent {
        run.errors += sent.abs_diff(r.received);
        run.first_error.get_or_insert(format!(
            "sent {sent} messages, receiver counted {}",
            r.received
        ));
    }
    Ok(run)
}

fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = sys::write(fd.as_raw_fd(), buf)?;
        buf = &buf[n..];
    }
    Ok(())
}

/// Waits as `wait` says after a call found the descriptor not ready (`since`: when the
/// wait began): spins, or (blocking, or adaptive past its spin) polls for `events`.
fn wait_ready(fd: BorrowedFd<'_>, events: i16, wait: Wait, since: Instant) -> io::Result<()> {
    let spin_for = match wait {
        Wait::Block => Duration::ZERO,
        Wait::Spin => Duration::MAX,
        Wait::Adaptive { spin } => spin,
    };
    if spin_for == Duration::MAX || since.elapsed() < spin_for {
        std::hint::spin_loop();
    } else {
        sys::poll_one(fd.as_raw_fd(), events, -1)?;
    }
    Ok(())
}

/// `write` until all of `buf` is written, on a descriptor that is non-blocking when `wait`
/// spins.
fn write_all_waiting(fd: BorrowedFd<'_>, mut buf: &[u8], wait: Wait) -> io::Result<()> {
    let mut since = None;
    while !buf.is_empty() {
        match sys::write(fd.as_raw_fd(), buf) {
            Ok(n) => {
                buf = &buf[n..];
                since = None;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_ready(
                fd,
                libc::POLLOUT,
                wait,
                *since.get_or_insert_with(Instant::now),
            )?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The sender's loop: messages for the phase's duration, then the end marker. Returns
/// (messages sent, mono ns before the first, sender CPU ns).
fn stream(s: &mut Sender, size: usize, opts: &BenchOptions) -> io::Result<(u64, u64, u64)> {
    let mask = pattern::seq_mask(size);
    let slots = file_slots(size) as u64;
    let mut buf = vec![0u8; size];
    let cpu0 = sys::thread_cpu_ns();
    let first = sys::mono_ns();
    let start = Instant::now();
    let mut seq = 0u64;
    let fill = |m: &mut [u8], h: u64| {
        pattern::write_header(m, h);
        if opts.touch {
            pattern::fill(m, h);
        }
    };
    loop {
        let h = seq & mask;
        match s {
            Sender::Pipe { w, wait } => {
                fill(&mut buf, h);
                write_all_waiting(w.as_fd(), &buf, *wait)?;
            }
            Sender::Vmsplice(v) => v.send_with(size, |m| fill(m, h))?,
            Sender::Tcp { sock } => {
                fill(&mut buf, h);
                write_all(sock.as_fd(), &buf)?;
            }
            Sender::TcpZc(z) => z.send_with(size, |m| fill(m, h))?,
            Sender::File { sock, file, how } => {
                let mut off = (seq % slots) * size as u64;
                match how {
                    FileHow::ReadWrite => {
                        file.read_exact_at(&mut buf, off)?;
                        write_all(sock.as_fd(), &buf)?;
                    }
                    FileHow::Sendfile => {
                        if zc::sendfile_exact(&*sock, &*file, &mut off, size)? != size {
                            return Err(io::Error::other("served file ended early"));
                        }
                    }
                    FileHow::Splice { r, w } => {
                        let mut left = size;
                        while left > 0 {
                            let n = zc::splice(
                                &*file,
                                Some(&mut off),
                                &*w,
                                None,
                                left,
                                zc::SpliceFlags::MOVE | zc::SpliceFlags::MORE,
                            )?;
                            if n == 0 {
                                return Err(io::Error::other("served file ended early"));
                            }
                            zc::splice_exact(&*r, &*sock, n)?;
                            left -= n;
                        }
                    }
                }
            }
        }
        seq += 1;
        if seq.is_multiple_of(16) && start.elapsed() >= opts.duration {
            break;
        }
    }
    // The end marker: a plain write of one message with the end bit.
    let mut end = vec![0u8; size];
    pattern::write_header(&mut end, (seq & mask) | pattern::end_bit(size));
    match s {
        Sender::Pipe { w, wait } => write_all_waiting(w.as_fd(), &end, *wait)?,
        Sender::Vmsplice(v) => v.send(&end)?,
        Sender::Tcp { sock } | Sender::File { sock, .. } => write_all(sock.as_fd(), &end)?,
        Sender::TcpZc(z) => z.send(&end)?,
    }
    Ok((seq, first, sys::thread_cpu_ns().saturating_sub(cpu0)))
}

/// The descriptor a zero-copy row's peer reads from, named in its spec as `fd:N`.
pub(crate) fn peer_fd(spec: &PeerSpec) -> io::Result<RawFd> {
    spec.address
        .strip_prefix("fd:")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad zero-copy address {}", spec.address)))
}

/// The receiving peer of a zero-copy row (`ipckit __peer` with a row name as mechanism):
/// reads exactly one message at a time into one buffer and checks header and words.
pub(crate) fn serve(spec: &PeerSpec, p: Path, fd: OwnedFd, ctl: &mut Control) -> io::Result<()> {
    let wait = Wait::parse(&spec.wait).ok_or_else(|| io::Error::other("bad wait"))?;
    sys::set_nonblocking(fd.as_raw_fd(), wait.spins())?;
    let size = spec
        .max_msg_size
        .ok_or_else(|| io::Error::other("zero-copy peer without a size"))?;
    ctl.send(&FromPeer::Ready { max_msg_size: size })?;
    let ToPeer::Go { tput_size, .. } = ctl.recv(GO_TIMEOUT)?;
    if tput_size != size {
        return Err(io::Error::other("size changed between ready and go"));
    }
    let slots = p.serves_a_file().then(|| file_slots(size) as u64);
    let totals = receive(fd.as_fd(), size, slots, spec.touch, wait)?;
    ctl.send(&FromPeer::TputDone(totals))?;
    Ok(())
}

/// Reads messages of `size` bytes until the end marker; message `i` must carry header
/// `i mod slots` (file rows) or `i` (masked), and the pattern that header seeds.
fn receive(
    fd: BorrowedFd<'_>,
    size: usize,
    slots: Option<u64>,
    touch: bool,
    wait: Wait,
) -> io::Result<RecvTotals> {
    let mask = pattern::seq_mask(size);
    let end = pattern::end_bit(size);
    // One message at a time, into one reused buffer (cache-hot), as a consumer would.
    let mut buf = vec![0u8; size];
    let mut t = RecvTotals::default();
    let cpu0 = sys::thread_cpu_ns();
    let mut i = 0u64;
    loop {
        let mut have = 0usize;
        let mut since = None;
        while have < size {
            match sys::read(fd.as_raw_fd(), &mut buf[have..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "sender gone")),
                Ok(n) => {
                    have += n;
                    since = None;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_ready(
                    fd,
                    libc::POLLIN,
                    wait,
                    *since.get_or_insert_with(Instant::now),
                )?,
                Err(e) => return Err(e),
            }
        }
        let h = pattern::read_header(&buf);
        if h & end != 0 {
            t.last_recv_ns = sys::mono_ns();
            break;
        }
        let want = match slots {
            Some(k) => i % k,
            None => i & mask,
        };
        if h != want || (touch && !pattern::verify(&buf, h)) {
            t.errors += 1;
            if t.first_error.is_none() {
                t.first_error = Some(if h != want {
                    format!("message {i}: header {h}, expected {want}")
                } else {
                    format!("message {i} (header {h}) is corrupted")
                });
            }
        }
        i += 1;
        t.received += 1;
        t.bytes += size as u64;
    }
    t.cpu_ns = sys::thread_cpu_ns().saturating_sub(cpu0);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_and_baselines() {
        assert_eq!(parse_selection("zero-copy").unwrap(), ZERO_COPY.to_vec());
        assert_eq!(parse_selection("splice").unwrap(), vec![Path::UdsSplice]);
        assert_eq!(
            parse_selection("tcp-zerocopy").unwrap(),
            vec![Path::TcpZerocopy]
        );
        assert_eq!(
            parse_selection("pipe-write"),
            None,
            "a baseline is not selected alone"
        );
        assert_eq!(parse_selection("pipe"), None);
        for p in ALL_ROWS {
            assert_eq!(Path::from_row_name(p.name()), Some(p));
            if let Some(b) = p.baseline() {
                assert_eq!(b.baseline(), None);
                assert_eq!(p.imp(), Impl::Ipckit);
                assert_eq!(b.imp(), Impl::Raw);
            }
        }
        assert!(file_slots(64 << 20) >= 2);
    }
}
