//! The plain types the report's rows are made of and that the options, the report and the
//! sessions share: where the two processes run, which code drives the mechanism, the TCP/UDP
//! variant a row measures, the socket buffers it was granted, a configuration not measured.
//!
//! Data and names only: what a variant does to a socket and how it runs are in
//! [`crate::netvariants`]. This file imports nothing from the rest of the harness, so every
//! other file can use it.

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
