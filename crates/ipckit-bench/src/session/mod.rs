//! One measured session: spawn the peer, connect, pin, run the latency phase then the
//! throughput phase, collect both sides' totals over the control pipe, reap the peer.

mod config;

pub use config::{Config, Measured};

use crate::options::BenchOptions;
use crate::peer::{self, expect_ready, Control, FromPeer, PeerSpec, Role, ToPeer};
use crate::reference::{RawChannel, RawCounter};
use crate::rows::Impl;
use crate::scenario::{
    self, Channel, Counter, IpcChannel, IpcCounter, LatencyParams, LatencyResult, RecvTotals,
    SendTotals,
};
use crate::stats::Percentiles;
use crate::sys;
use ipckit::Mechanism;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

const PHASE_SLACK: Duration = Duration::from_secs(30);

fn expect_lat_done(ctl: &mut Control) -> io::Result<u64> {
    match ctl.recv::<FromPeer>(PHASE_SLACK)? {
        FromPeer::LatDone { cpu_ns } => Ok(cpu_ns),
        FromPeer::Error(e) => Err(io::Error::other(format!("peer: {e}"))),
        other => Err(io::Error::other(format!(
            "peer sent {other:?}, expected the latency totals"
        ))),
    }
}

fn expect_tput_done(ctl: &mut Control) -> io::Result<RecvTotals> {
    match ctl.recv::<FromPeer>(PHASE_SLACK)? {
        FromPeer::TputDone(t) => Ok(t),
        FromPeer::Error(e) => Err(io::Error::other(format!("peer: {e}"))),
        other => Err(io::Error::other(format!(
            "peer sent {other:?}, expected the throughput totals"
        ))),
    }
}

/// Runs one session. Errors are described for the row's note.
pub fn run(cfg: &Config, opts: &BenchOptions) -> Result<Measured, String> {
    run_inner(cfg, opts).map_err(|e| e.to_string())
}

fn base_spec(cfg: &Config, opts: &BenchOptions) -> PeerSpec {
    PeerSpec {
        role: Role::Transport,
        mechanism: crate::netvariants::row_name(cfg.mech, cfg.net).into(),
        wait: cfg.wait.name().into(),
        imp: cfg.imp,
        address: String::new(),
        address2: None,
        cpu: cfg.cpus[1],
        ctl_in: -1,
        ctl_out: -1,
        shm_fd: None,
        warmup: opts.warmup,
        touch: opts.touch,
        max_msg_size: None,
        zero_copy: cfg.zero_copy,
        shm_capacity: opts.shm_capacity,
        producer: None,
        duration_ms: opts.duration.as_millis() as u64,
    }
}

fn lat_params(opts: &BenchOptions, lossy: bool) -> LatencyParams {
    LatencyParams {
        warmup: opts.warmup,
        duration: opts.duration,
        batch: opts.batch,
        rate: opts.rate,
        lossy,
    }
}

fn run_inner(cfg: &Config, opts: &BenchOptions) -> io::Result<Measured> {
    let adjusted = cfg.net.map(|v| v.adjust(opts));
    let opts = adjusted.as_ref().unwrap_or(opts);
    let limit = PHASE_SLACK * 2 + opts.duration * 4;
    let mut spec = base_spec(cfg, opts);
    if cfg.mech == Mechanism::Eventfd {
        let a = ipckit::eventfd::EventFd::new(cfg.wait)?; // parent notifies, peer waits
        let b = ipckit::eventfd::EventFd::new(cfg.wait)?; // peer notifies, parent waits
        spec.address = a.address();
        spec.address2 = Some(b.address());
        let (guard, mut ctl) = peer::spawn(
            &mut spec,
            |cmd| {
                a.configure_child(cmd);
                b.configure_child(cmd);
            },
            &[],
            limit,
        )?;
        expect_ready(&mut ctl)?;
        sys::pin_current_thread(cfg.cpus[0])?;
        ctl.send(&ToPeer::Go {
            lat_size: Some(8),
            tput_size: 8,
        })?;
        let m = match cfg.imp {
            Impl::Ipckit => drive_counter(&mut IpcCounter { tx: a, rx: b }, opts, &mut ctl)?,
            Impl::Raw => {
                let mut c = RawCounter::new(a.as_fd(), b.as_fd(), cfg.wait)?;
                let m = drive_counter(&mut c, opts, &mut ctl)?;
                drop((a, b));
                m
            }
        };
        guard
            .finish(Duration::from_secs(5))
            .map_err(io::Error::other)?;
        return Ok(m);
    }

    if cfg.mech == Mechanism::Shm {
        // Every shared-memory session is probed, whatever its wait: its figures follow the
        // machine's mode, which on some VMs changes over seconds, and a row is only
        // comparable with the cache line measured beside it.
        let probe = (cfg.cpus[0] != cfg.cpus[1])
            .then(|| crate::floor::cacheline(cfg.cpus, Duration::from_millis(30), 500).ok())
            .flatten()
            .map(|(p, _)| p.p50);
        let mut m = if cfg.producers > 0 {
            crate::mpsc::run(cfg, opts, spec, limit)?
        } else {
            run_shm(cfg, opts, spec, limit)?
        };
        m.cacheline_p50_ns = probe;
        return Ok(m);
    }

    // Streams carry 1 MiB by default; ask for more only when the run needs it.
    let want_max = (cfg.mech.is_stream() && cfg.size > (1 << 20)).then_some(cfg.size);
    spec.max_msg_size = want_max;
    let mut chan = ipckit::connect::ChannelBuilder::new(cfg.mech)
        .wait(cfg.wait)
        .timeout(Duration::from_secs(10));
    if let Some(m) = want_max {
        chan = chan.max_msg_size(m);
    }
    let mut server = chan.create()?;
    spec.address = server.address();
    let (guard, mut ctl) = peer::spawn(&mut spec, |cmd| server.configure_child(cmd), &[], limit)?;
    let t = server.accept_timeout(Duration::from_secs(10))?;
    let socket_buffers = crate::netvariants::setup(&*t, cfg.net)?;
    let peer_max = expect_ready(&mut ctl)?;
    sys::pin_current_thread(cfg.cpus[0])?;
    let max = t.max_msg_size().min(peer_max);
    let lat_size = (cfg.size <= max).then_some(cfg.size);
    let tput_size = cfg.size.min(max);
    ctl.send(&ToPeer::Go {
        lat_size,
        tput_size,
    })?;
    let cap = t.max_msg_size();
    let lossy = cfg.mech.is_lossy();
    let mut m = match cfg.imp {
        Impl::Ipckit => drive_channel(
            &mut IpcChannel(t),
            cap,
            lat_size,
            tput_size,
            lossy,
            opts,
            &mut ctl,
        )?,
        Impl::Raw if cfg.net.is_some_and(|v| v.split_writes()) => {
            let mut ch = crate::netvariants::SplitWrites(RawChannel::new(&*t, cfg.wait)?);
            let m = drive_channel(&mut ch, cap, lat_size, tput_size, lossy, opts, &mut ctl)?;
            drop(t);
            m
        }
        Impl::Raw => {
            let mut ch = RawChannel::new(&*t, cfg.wait)?;
            let m = drive_channel(&mut ch, cap, lat_size, tput_size, lossy, opts, &mut ctl)?;
            drop(t);
            m
        }
    };
    m.max_msg_size = max;
    m.socket_buffers = socket_buffers;
    guard
        .finish(Duration::from_secs(5))
        .map_err(io::Error::other)?;
    Ok(m)
}

/// A shared-memory session: ipckit's ring pair (copy or zero-copy API) or the reference
/// ring, both on rings of the same capacity.
fn run_shm(
    cfg: &Config,
    opts: &BenchOptions,
    mut spec: PeerSpec,
    limit: Duration,
) -> io::Result<Measured> {
    use ipckit::shm::PairBuilder;
    let popts = |name: &str| {
        let b = PairBuilder::new(name).wait(cfg.wait).max_msg_size(cfg.size);
        match opts.shm_capacity {
            Some(c) => b.capacity(c),
            None => b,
        }
    };
    let finish = |m: io::Result<Measured>, guard: peer::PeerGuard| -> io::Result<Measured> {
        let m = m?;
        guard
            .finish(Duration::from_secs(5))
            .map_err(io::Error::other)?;
        Ok(m)
    };
    match cfg.imp {
        Impl::Ipckit => {
            let name = format!("/{}", ipckit::registry::unique_name("bench-shm"));
            let mut l = popts(&name).create()?;
            spec.address = name;
            spec.max_msg_size = Some(cfg.size);
            let (guard, mut ctl) = peer::spawn(&mut spec, |_| {}, &[], limit)?;
            let ep = l.accept_timeout(Duration::from_secs(10))?;
            let mut ch = crate::shm_channel::ShmChannel {
                ep,
                zero_copy: cfg.zero_copy,
            };
            let m = shm_drive(&mut ch, cfg, opts, &mut ctl);
            finish(m, guard)
        }
        Impl::Raw => {
            // The same capacity ipckit's ring gets for these options.
            let (cap, _) = popts("").ring_size()?; // no segment: the name is not used
            let len = crate::refring::pair_len(cap);
            let fd = sys::SharedPage::create_fd_len(len)?;
            let mem = sys::SharedPage::map_len(fd.as_fd(), len)?;
            spec.shm_fd = Some(fd.as_raw_fd());
            spec.shm_capacity = Some(cap);
            spec.max_msg_size = Some(cfg.size);
            let (guard, mut ctl) = peer::spawn(&mut spec, |_| {}, &[fd.as_raw_fd()], limit)?;
            let mut ch = crate::refring::RefRing::new(mem, cap, true, cfg.wait);
            let m = shm_drive(&mut ch, cfg, opts, &mut ctl);
            finish(m, guard)
        }
    }
}

fn shm_drive<C: Channel>(
    ch: &mut C,
    cfg: &Config,
    opts: &BenchOptions,
    ctl: &mut Control,
) -> io::Result<Measured> {
    expect_ready(ctl)?;
    sys::pin_current_thread(cfg.cpus[0])?;
    ctl.send(&ToPeer::Go {
        lat_size: Some(cfg.size),
        tput_size: cfg.size,
    })?;
    let mut m = drive_channel(ch, cfg.size, Some(cfg.size), cfg.size, false, opts, ctl)?;
    m.max_msg_size = cfg.size;
    Ok(m)
}

fn latency_fields(m: &mut Measured, lat: &LatencyResult, peer_cpu: u64) {
    m.rtt = Some(Percentiles::of(&lat.hist));
    m.rtt_batched_ns = Some(lat.batched_ns);
    if lat.round_trips > 0 {
        m.cpu_ns_per_rtt = Some((lat.cpu_ns + peer_cpu) as f64 / lat.round_trips as f64);
    }
    m.lost += lat.lost;
    m.errors += lat.errors;
}

fn throughput_fields(m: &mut Measured, s: &SendTotals, r: &RecvTotals, bytes: bool) {
    let elapsed_ns = r.last_recv_ns.saturating_sub(s.first_send_ns).max(1) as f64;
    m.msgs_per_s = r.received as f64 / elapsed_ns * 1e9;
    if bytes {
        m.mbps = Some(r.bytes as f64 / elapsed_ns * 1e3);
    }
    if r.received > 0 {
        m.cpu_ns_per_msg = Some((s.cpu_ns + r.cpu_ns) as f64 / r.received as f64);
    }
    m.reordered += r.reordered;
    m.errors += r.errors;
    if m.first_error.is_none() {
        m.first_error.clone_from(&r.first_error);
    }
}

fn drive_channel<C: Channel>(
    ch: &mut C,
    cap: usize,
    lat_size: Option<usize>,
    tput_size: usize,
    lossy: bool,
    opts: &BenchOptions,
    ctl: &mut Control,
) -> io::Result<Measured> {
    let mut m = Measured {
        lat_size,
        tput_size,
        ..Default::default()
    };
    if let Some(size) = lat_size {
        let lat = scenario::latency_client(ch, size, cap, &lat_params(opts, lossy))?;
        let peer_cpu = expect_lat_done(ctl)?;
        latency_fields(&mut m, &lat, peer_cpu);
    }
    let s = scenario::stream_send(ch, tput_size, opts.duration, opts.touch)?;
    if lossy {
        // The end marker may be lost too: repeat it until the receiver reports.
        let mut tries = 0;
        while !ctl.readable(10)? {
            tries += 1;
            if tries > 1000 {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "receiver never saw the end marker",
                ));
            }
            scenario::send_end(ch, tput_size, s.sent)?;
        }
    }
    let r = expect_tput_done(ctl)?;
    throughput_fields(&mut m, &s, &r, true);
    m.tput_sent = s.sent;
    if lossy {
        m.tput_lost = s.sent.saturating_sub(r.received);
        m.lost += m.tput_lost;
    } else if r.received != s.sent {
        m.errors += s.sent.abs_diff(r.received);
        if m.first_error.is_none() {
            m.first_error = Some(format!(
                "sent {} messages, receiver counted {}",
                s.sent, r.received
            ));
        }
    }
    Ok(m)
}

fn drive_counter<C: Counter>(
    c: &mut C,
    opts: &BenchOptions,
    ctl: &mut Control,
) -> io::Result<Measured> {
    let mut m = Measured {
        lat_size: Some(8),
        tput_size: 8,
        max_msg_size: 8,
        ..Default::default()
    };
    let lat = scenario::counter_latency_client(c, &lat_params(opts, false))?;
    let peer_cpu = expect_lat_done(ctl)?;
    latency_fields(&mut m, &lat, peer_cpu);
    let s = scenario::counter_stream_send(c, opts.duration)?;
    let r = expect_tput_done(ctl)?;
    throughput_fields(&mut m, &s, &r, false);
    if r.sum != s.sent {
        m.errors += 1;
        m.first_error = Some(format!(
            "notified {} in total, receiver summed {}",
            s.sent, r.sum
        ));
    }
    Ok(m)
}
