//! What one session runs ([`Config`]) and what it measured ([`Measured`]): shared by the
//! ordinary sessions and the MPSC ones.

use crate::rows::{Impl, NetVariant, SocketBuffers};
use crate::stats::Percentiles;
use ipckit::{Mechanism, Wait};

/// What one session runs.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Mechanism.
    pub mech: Mechanism,
    /// Wait strategy.
    pub wait: Wait,
    /// ipckit or raw loops.
    pub imp: Impl,
    /// Requested message size.
    pub size: usize,
    /// Parent's CPU, peer's CPU.
    pub cpus: [usize; 2],
    /// Shared memory: the zero-copy API.
    pub zero_copy: bool,
    /// Shared memory: MPSC producer processes (0: not an MPSC session).
    pub producers: u32,
    /// TCP/UDP: the socket option this row changes ([`crate::netvariants`]).
    pub net: Option<NetVariant>,
}

/// What one session measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Smallest of the two endpoints' maximum message sizes.
    pub max_msg_size: usize,
    /// Latency message size (`None`: the mechanism cannot carry the requested size).
    pub lat_size: Option<usize>,
    /// Throughput message size (the requested one, or the mechanism's largest).
    pub tput_size: usize,
    /// Round-trip percentiles, ns.
    pub rtt: Option<Percentiles>,
    /// Batched mean round trip, ns.
    pub rtt_batched_ns: Option<f64>,
    /// CPU (both processes) per round trip, ns.
    pub cpu_ns_per_rtt: Option<f64>,
    /// MB/s (10^6 B/s) of payload received; `None` for counters.
    pub mbps: Option<f64>,
    /// Messages (or notifications) per second.
    pub msgs_per_s: f64,
    /// CPU (both processes) per message received, ns.
    pub cpu_ns_per_msg: Option<f64>,
    /// Lost messages (lossy transports; latency retries included).
    pub lost: u64,
    /// Reordered messages (lossy transports).
    pub reordered: u64,
    /// Verification failures.
    pub errors: u64,
    /// The first failure, described.
    pub first_error: Option<String>,
    /// Shared memory, whatever the wait (cross-CPU): the cache-line round trip p50 measured
    /// just before this session, ns. This VM's cross-CPU cost changes over seconds (as the host moves its
    /// virtual CPUs), so a shm row is compared with the floor of its own moment.
    pub cacheline_p50_ns: Option<f64>,
    /// TCP/UDP: the socket buffers the kernel granted the parent's socket after setup.
    pub socket_buffers: Option<SocketBuffers>,
    /// Messages sent in the throughput phase.
    pub tput_sent: u64,
    /// Of those, lost (lossy transports).
    pub tput_lost: u64,
}
