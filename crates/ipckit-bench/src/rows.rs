//! The plain types the report's rows are made of and that the options, the report and the
//! sessions share: a measured row, where the two processes run, which code drives the
//! mechanism, the TCP/UDP variant a row measures, the socket buffers it was granted, a
//! configuration not measured.
//!
//! Data and names only: what a variant does to a socket and how it runs are in
//! [`crate::netvariants`]. This file imports nothing from the rest of the harness but the
//! percentiles' type, so every other file can use it.

use crate::stats::Percentiles;
use ipckit::Mechanism;
use serde::Serialize;

/// Where the two processes run relative to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Each process on its own CPU.
    Cross,
    /// Both processes on one CPU.
    Same,
}

impl Placement {
    /// `cross` or `same`.
    pub fn name(self) -> &'static str {
        match self {
            Placement::Cross => "cross",
            Placement::Same => "same",
        }
    }
}

/// Which code drives the mechanism: ipckit's transports, or the plain syscalls.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Impl {
    /// Through `ipckit::Transport` / `ipckit::Notify`.
    Ipckit,
    /// The reference loop: raw syscalls on the same kernel objects.
    Raw,
}

impl Impl {
    /// `ipckit` or `raw`.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Ipckit => "ipckit",
            Impl::Raw => "raw",
        }
    }
}

/// A variant of the TCP or UDP rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetVariant {
    /// `tcp-nagle`: Nagle's algorithm on, ipckit's framing (one `sendmsg` per message).
    TcpNagle,
    /// `tcp-nagle-split`: Nagle on, every message written in two `write(2)`s.
    TcpNagleSplit,
    /// `tcp-bigbuf`: 4 MiB socket buffers asked on both ends.
    TcpBigBuf,
    /// `udp-defbuf`: the kernel's default socket buffers.
    UdpDefBuf,
}

impl NetVariant {
    /// Every variant, in report order.
    pub const ALL: [NetVariant; 4] = [
        NetVariant::TcpNagle,
        NetVariant::TcpNagleSplit,
        NetVariant::TcpBigBuf,
        NetVariant::UdpDefBuf,
    ];

    /// The row name, as `--mech` takes it.
    pub fn name(self) -> &'static str {
        match self {
            NetVariant::TcpNagle => "tcp-nagle",
            NetVariant::TcpNagleSplit => "tcp-nagle-split",
            NetVariant::TcpBigBuf => "tcp-bigbuf",
            NetVariant::UdpDefBuf => "udp-defbuf",
        }
    }

    /// The mechanism it varies.
    pub fn base(self) -> Mechanism {
        match self {
            NetVariant::UdpDefBuf => Mechanism::Udp,
            _ => Mechanism::Tcp,
        }
    }

    /// The variant named `s`, if any.
    pub fn parse(s: &str) -> Option<NetVariant> {
        Self::ALL.iter().copied().find(|v| v.name() == s)
    }

    /// True if messages go through the raw loop in two writes (no ipckit framing).
    pub fn split_writes(self) -> bool {
        self == NetVariant::TcpNagleSplit
    }
}

/// What the kernel granted a socket, as `getsockopt` reports it (Linux doubles the value
/// asked, for its bookkeeping, within `net.core.wmem_max`/`rmem_max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SocketBuffers {
    /// `SO_SNDBUF`, bytes.
    pub sndbuf: usize,
    /// `SO_RCVBUF`, bytes.
    pub rcvbuf: usize,
}

/// A configuration not measured, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// Mechanism.
    pub mechanism: String,
    /// Wait.
    pub wait: String,
    /// Placement.
    pub placement: String,
    /// Size.
    pub size: usize,
    /// Why.
    pub reason: String,
}

/// One row: a (mechanism, wait, placement, size) through one implementation, over its repeats
/// (medians; `lost`, `reordered` and `errors` are sums).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Mechanism name.
    pub mechanism: String,
    /// Wait strategy.
    pub wait: String,
    /// `cross` or `same`.
    pub placement: String,
    /// Requested message size, bytes.
    pub size: usize,
    /// `ipckit` or `raw` (the reference loop).
    #[serde(rename = "impl")]
    pub imp: String,
    /// `shm-mpsc` rows: the number of producer processes (one consumer).
    pub producers: Option<u32>,
    /// Size the latency phase used (`null`: the mechanism cannot carry `size`).
    pub latency_size: Option<usize>,
    /// Size the throughput phase used (the mechanism's largest if it cannot carry `size`).
    pub throughput_size: Option<usize>,
    /// The mechanism's largest message here.
    pub max_msg_size: Option<usize>,
    /// Round trip, ns.
    pub rtt_ns: Option<Percentiles>,
    /// Batched mean round trip, ns.
    pub rtt_batched_ns: Option<f64>,
    /// One-way latency estimated as RTT p50 / 2, ns.
    pub one_way_p50_ns: Option<f64>,
    /// MB/s (10^6 B/s) of verified payload; `null` for counters.
    pub throughput_mbps: Option<f64>,
    /// Messages (notifications for eventfd) per second.
    pub msgs_per_s: Option<f64>,
    /// CPU time (user + sys, both processes) per message in the throughput phase, ns.
    pub cpu_ns_per_msg: Option<f64>,
    /// CPU time (both processes) per round trip in the latency phase, ns.
    pub cpu_ns_per_rtt: Option<f64>,
    /// max-min over median of msgs/s and RTT p50 across repeats (the larger), percent.
    pub spread_pct: Option<f64>,
    /// Spread over 20%.
    pub noisy: bool,
    /// Lost messages (UDP).
    pub lost: u64,
    /// Reordered messages (UDP).
    pub reordered: u64,
    /// Lossy rows: the share of the throughput phase's messages that never arrived, % (the
    /// flood sends as fast as it can, so this is what overflowed the receive buffer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_pct: Option<f64>,
    /// TCP/UDP rows: `SO_SNDBUF`/`SO_RCVBUF` as `getsockopt` reported them on the parent's
    /// socket once set up (TCP's unset buffers autotune beyond this during the run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_buffers: Option<SocketBuffers>,
    /// Verification failures and failed runs.
    pub errors: u64,
    /// The first error, described.
    pub first_error: Option<String>,
    /// RTT p50 / cache-line RTT p50: of the floor, or (shm rows) of a probe run just before
    /// each session, median of the per-session ratios.
    pub ratio_to_floor: Option<f64>,
    /// shm rows (cross-CPU, every wait): the cache-line RTT p50 probed beside the sessions
    /// (median), ns.
    pub cacheline_p50_ns: Option<f64>,
    /// shm rows: the probe beside them over the run's floor probe; outside 1/1.5..1.5 the
    /// machine changed mode between the two ([`Row::mode_changed`]).
    pub probe_vs_floor: Option<f64>,
    /// The probe beside this row differs from the run's floor by more than 50%: the machine
    /// was in another mode, and the row compares only with rows of a like probe.
    pub mode_changed: bool,
    /// MB/s / memcpy MB/s of the floor.
    pub throughput_vs_memcpy: Option<f64>,
    /// ipckit rows: RTT p50 ipckit / raw, the median of the ratios of runs made back to back.
    pub ratio_to_raw_rtt: Option<f64>,
    /// ipckit rows: msgs/s ipckit / raw, the median of the ratios of runs made back to back.
    pub ratio_to_raw_msgs: Option<f64>,
    /// Runs behind the medians.
    pub repeats: u32,
    /// Payload written and verified.
    pub touch: bool,
    /// Open-loop rate of the latency phase, if any.
    pub open_loop_rate: Option<f64>,
    /// What else the reader must know about this row.
    pub note: Option<String>,
    /// `tcp-zerocopy` rows: `MSG_ZEROCOPY` sends the kernel completed (summed over repeats).
    pub zc_completions: Option<u64>,
    /// `tcp-zerocopy` rows: of those, the ones it marked `SO_EE_CODE_ZEROCOPY_COPIED`.
    pub zc_copied: Option<u64>,
}
