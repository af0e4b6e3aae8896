//! One measured session, the same for every library: the harness spawns this binary again as
//! the peer (`peer::spawn`, with its watchdog and parent-death signal), each process pins
//! itself to its CPU, the peer reports ready over the control pipe, then the harness's own
//! loops run the round trips (`latency_client` / `latency_server`) and the verified one-way
//! stream (`stream_send` / `stream_recv`) through the library's [`Channel`].

use crate::iox;
use crate::ipcc;
use crate::target::{Lib, Target};
use ipckit_bench::options::Impl;
use ipckit_bench::os;
use ipckit_bench::peer::{self, Control, FromPeer, PeerGuard, PeerSpec, Role, ToPeer};
use ipckit_bench::scenario::{self, Channel, IpcChannel, LatencyParams};
use ipckit_bench::stats::Percentiles;
use serde::Serialize;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How each session runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Params {
    /// Length of each measured phase.
    #[serde(rename = "duration_s", serialize_with = "as_secs")]
    pub duration: Duration,
    /// Unrecorded round trips first.
    pub warmup: u64,
    /// Round trips timed together for the batched mean.
    pub batch: u64,
    /// iceoryx2: the stream subscriber's buffer, in samples.
    pub iox_stream_buffer: usize,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// What one session measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Round-trip percentiles, ns.
    pub rtt: Option<Percentiles>,
    /// Batched mean round trip, ns.
    pub rtt_batched_ns: Option<f64>,
    /// CPU of both processes per round trip, ns.
    pub cpu_ns_per_rtt: Option<f64>,
    /// 10^6 payload bytes per second received and verified.
    pub mbps: f64,
    /// Messages per second.
    pub msgs_per_s: f64,
    /// CPU of both processes per streamed message, ns.
    pub cpu_ns_per_msg: Option<f64>,
    /// Verification failures and lost messages.
    pub errors: u64,
    /// The first one, described.
    pub first_error: Option<String>,
}

const READY_TIMEOUT: Duration = Duration::from_secs(15);
const PHASE_SLACK: Duration = Duration::from_secs(30);
const GO_TIMEOUT: Duration = Duration::from_secs(60);

/// A service-name prefix (iceoryx2) unique to this process and session.
fn unique_prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "ipckit-peers/{}/{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn from_peer(ctl: &mut Control, timeout: Duration, what: &str) -> io::Result<FromPeer> {
    match ctl.recv::<FromPeer>(timeout)? {
        FromPeer::Error(e) => Err(io::Error::other(format!("peer: {e}"))),
        m => Ok(m),
    }
    .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))
}

fn expect_ready(ctl: &mut Control) -> io::Result<()> {
    match from_peer(ctl, READY_TIMEOUT, "waiting for the peer")? {
        FromPeer::Ready { .. } => Ok(()),
        other => Err(io::Error::other(format!(
            "peer sent {other:?} before ready"
        ))),
    }
}

/// When a phase fails here, the peer has often said why on the control pipe: prefer that.
fn with_peer_reason(ctl: &mut Control, e: io::Error) -> io::Error {
    match ctl.recv::<FromPeer>(Duration::from_millis(200)) {
        Ok(FromPeer::Error(p)) => io::Error::other(format!("{e} (peer: {p})")),
        _ => e,
    }
}

/// ipckit's `max_msg_size` for a row: its defaults carry 64 KiB on every mechanism that can
/// (1 MiB on streams, half the 256 KiB ring on shm), as `ipckit bench` uses them; a larger
/// row asks for its size, on both sides alike.
fn max_msg_for(size: usize) -> Option<usize> {
    (size > 64 * 1024).then_some(size)
}

/// Runs one session of `t` at `size` bytes, parent on `cpus[0]`, peer on `cpus[1]`.
pub fn run(t: &Target, size: usize, cpus: [usize; 2], p: &Params) -> Result<Measured, String> {
    run_inner(t, size, cpus, p).map_err(|e| e.to_string())
}

fn run_inner(t: &Target, size: usize, cpus: [usize; 2], p: &Params) -> io::Result<Measured> {
    let limit = PHASE_SLACK * 2 + p.duration * 4;
    let mut spec = PeerSpec {
        role: Role::Transport,
        mechanism: t.key(),
        wait: t.wait.name().into(),
        imp: Impl::Ipckit,
        address: String::new(),
        address2: None,
        cpu: cpus[1],
        ctl_in: -1,
        ctl_out: -1,
        shm_fd: None,
        warmup: p.warmup,
        touch: true,
        max_msg_size: Some(size),
        zero_copy: false,
        shm_capacity: None,
        producer: None,
        duration_ms: 0,
    };
    match t.lib {
        Lib::Ipckit(mech) => {
            let mut chan = ipckit::connect::ChannelBuilder::new(mech)
                .wait(t.wait)
                .timeout(Duration::from_secs(10));
            if let Some(m) = max_msg_for(size) {
                chan = chan.max_msg_size(m);
            }
            let mut server = chan.create()?;
            spec.address = server.address();
            let (guard, mut ctl) =
                peer::spawn(&mut spec, |cmd| server.configure_child(cmd), &[], limit)?;
            let tr = server.accept_timeout(std::time::Duration::from_secs(10))?;
            expect_ready(&mut ctl)?;
            let cap = tr.max_msg_size();
            if size > cap {
                return Err(io::Error::other(format!(
                    "{mech} carries at most {cap} B here"
                )));
            }
            let mut ch = IpcChannel(tr);
            parent_phases(
                &mut ch,
                None::<&mut IpcChannel>,
                size,
                cap,
                cpus[0],
                p,
                guard,
                &mut ctl,
            )
        }
        Lib::Iceoryx2 => {
            spec.address = unique_prefix();
            let layout = iox::Layout {
                size,
                block: matches!(t.wait, ipckit::Wait::Block),
                stream_buffer: p.iox_stream_buffer,
            };
            let mut parent = iox::Parent::create(&spec.address, &layout)?;
            let (guard, mut ctl) = peer::spawn(&mut spec, |_| {}, &[], limit)?;
            expect_ready(&mut ctl)?;
            let iox::Parent { lat, stream, .. } = &mut parent;
            parent_phases(lat, Some(stream), size, size, cpus[0], p, guard, &mut ctl)
        }
        Lib::IpcChannel => {
            let (server, name) = ipcc::Server::new()?;
            spec.address = name;
            let (guard, mut ctl) = peer::spawn(&mut spec, |_| {}, &[], limit)?;
            // The peer sends its channels before it says ready, so `accept` cannot hang.
            expect_ready(&mut ctl)?;
            let mut ch = server.accept()?;
            parent_phases(
                &mut ch,
                None::<&mut ipcc::IpcChan>,
                size,
                size,
                cpus[0],
                p,
                guard,
                &mut ctl,
            )
        }
    }
}

/// Pins, starts the peer, runs both phases (the stream on `stream` if the library uses a
/// separate channel for it) and reaps the peer.
#[allow(clippy::too_many_arguments)]
fn parent_phases<L: Channel, S: Channel>(
    lat: &mut L,
    stream: Option<&mut S>,
    size: usize,
    cap: usize,
    cpu: usize,
    p: &Params,
    guard: PeerGuard,
    ctl: &mut Control,
) -> io::Result<Measured> {
    os::pin_current_thread(cpu)?;
    ctl.send(&ToPeer::Go {
        lat_size: Some(size),
        tput_size: size,
    })?;
    let mut m = Measured::default();

    let lp = LatencyParams {
        warmup: p.warmup,
        duration: p.duration,
        batch: p.batch,
        rate: None,
        lossy: false,
    };
    let r = scenario::latency_client(lat, size, cap, &lp).map_err(|e| with_peer_reason(ctl, e))?;
    let peer_cpu = match from_peer(ctl, PHASE_SLACK, "latency phase")? {
        FromPeer::LatDone { cpu_ns } => cpu_ns,
        other => {
            return Err(io::Error::other(format!(
                "peer sent {other:?}, expected the latency totals"
            )))
        }
    };
    m.rtt = Some(Percentiles::of(&r.hist));
    m.rtt_batched_ns = Some(r.batched_ns);
    if r.round_trips > 0 {
        m.cpu_ns_per_rtt = Some((r.cpu_ns + peer_cpu) as f64 / r.round_trips as f64);
    }
    m.errors += r.errors;

    let s = match stream {
        Some(st) => scenario::stream_send(st, size, p.duration, true),
        None => scenario::stream_send(lat, size, p.duration, true),
    }
    .map_err(|e| with_peer_reason(ctl, e))?;
    let t = match from_peer(ctl, PHASE_SLACK, "stream phase")? {
        FromPeer::TputDone(t) => t,
        other => {
            return Err(io::Error::other(format!(
                "peer sent {other:?}, expected the stream totals"
            )))
        }
    };
    let elapsed_ns = t.last_recv_ns.saturating_sub(s.first_send_ns).max(1) as f64;
    m.msgs_per_s = t.received as f64 / elapsed_ns * 1e9;
    m.mbps = t.bytes as f64 / elapsed_ns * 1e3;
    if t.received > 0 {
        m.cpu_ns_per_msg = Some((s.cpu_ns + t.cpu_ns) as f64 / t.received as f64);
    }
    m.errors += t.errors;
    m.first_error.clone_from(&t.first_error);
    if t.received != s.sent {
        m.errors += s.sent.abs_diff(t.received);
        m.first_error.get_or_insert_with(|| {
            format!(
                "sent {} messages, the receiver counted {}",
                s.sent, t.received
            )
        });
    }
    guard
        .finish(Duration::from_secs(5))
        .map_err(io::Error::other)?;
    Ok(m)
}

/// The peer process: `ipckit-peers __peer <spec>`, run through the harness's `peer_main_with`.
pub fn serve_peer(spec: &PeerSpec, ctl: &mut Control) -> io::Result<()> {
    os::pin_current_thread(spec.cpu)?;
    let t = Target::parse(&spec.mechanism, &spec.wait).map_err(io::Error::other)?;
    let size = spec
        .max_msg_size
        .ok_or_else(|| io::Error::other("peer spec without a message size"))?;
    match t.lib {
        Lib::Ipckit(mech) => {
            let mut chan = ipckit::connect::ChannelBuilder::new(mech)
                .wait(t.wait)
                .timeout(Duration::from_secs(10));
            if let Some(m) = max_msg_for(size) {
                chan = chan.max_msg_size(m);
            }
            let tr = chan.open(&spec.address)?;
            let cap = tr.max_msg_size();
            let mut ch = IpcChannel(tr);
            peer_phases(&mut ch, None::<&mut IpcChannel>, cap, spec, ctl)
        }
        Lib::Iceoryx2 => {
            let layout = iox::Layout {
                size,
                block: matches!(t.wait, ipckit::Wait::Block),
                stream_buffer: 0, // the peer opens the parent's services as they are
            };
            let mut peer = iox::Peer::open(&spec.address, &layout)?;
            let iox::Peer { lat, stream, .. } = &mut peer;
            peer_phases(lat, Some(stream), size, spec, ctl)
        }
        Lib::IpcChannel => {
            let mut ch = ipcc::connect(&spec.address)?;
            peer_phases(&mut ch, None::<&mut ipcc::IpcChan>, size, spec, ctl)
        }
    }
}

fn peer_phases<L: Channel, S: Channel>(
    lat: &mut L,
    stream: Option<&mut S>,
    cap: usize,
    spec: &PeerSpec,
    ctl: &mut Control,
) -> io::Result<()> {
    ctl.send(&FromPeer::Ready { max_msg_size: cap })?;
    let ToPeer::Go {
        lat_size,
        tput_size,
    } = ctl.recv(GO_TIMEOUT)?;
    if let Some(size) = lat_size {
        let cpu_ns = scenario::latency_server(lat, size, cap, spec.warmup, false)?;
        ctl.send(&FromPeer::LatDone { cpu_ns })?;
    }
    let totals = match stream {
        Some(st) => scenario::stream_recv(st, tput_size, cap, spec.touch, false),
        None => scenario::stream_recv(lat, tput_size, cap, spec.touch, false),
    }?;
    ctl.send(&FromPeer::TputDone(totals))?;
    Ok(())
}
