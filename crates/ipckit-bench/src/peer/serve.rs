//! The peer process's main: reads what the parent asked for and runs the matching side of the
//! session (the floor's ping-pong, a transport or counter through ipckit or the reference
//! loops, an MPSC producer, a zero-copy receiver).
#![allow(unsafe_code)]

use super::control::{peer_main_with, Control, FromPeer, PeerSpec, Role, ToPeer, GO_TIMEOUT};
use crate::rows::Impl;
use crate::scenario::{self, Channel, IpcChannel, IpcCounter};
use crate::sys;
use crate::{floor, reference};
use ipckit::{Mechanism, Wait};
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

/// Entry point of the peer process (`ipckit __peer <json>`); returns the exit code.
pub fn peer_main(args: &[String]) -> i32 {
    peer_main_with(args, run_peer)
}

fn run_peer(spec: &PeerSpec, ctl: &mut Control) -> io::Result<()> {
    sys::pin_current_thread(spec.cpu)?;
    if let Role::Floor = spec.role {
        let fd = spec
            .shm_fd
            .ok_or_else(|| io::Error::other("floor peer without a shared page"))?;
        // SAFETY: the parent's memfd, inherited and named in the spec; unowned here.
        let fd = unsafe { sys::owned_from_inherited(fd) };
        return floor::peer(&fd, ctl);
    }
    if let Some(p) = crate::zerocopy::Path::from_row_name(&spec.mechanism) {
        let fd = crate::zerocopy::peer_fd(spec)?;
        // SAFETY: the parent created this descriptor for us, left it inheritable and named
        // it in the spec; nothing else in this process owns it.
        let fd = unsafe { sys::owned_from_inherited(fd) };
        return crate::zerocopy::serve(spec, p, fd, ctl);
    }
    let (mech, net) =
        crate::netvariants::parse_row_name(&spec.mechanism).map_err(io::Error::other)?;
    let wait = Wait::parse(&spec.wait).ok_or_else(|| io::Error::other("bad wait"))?;
    if mech == Mechanism::Eventfd {
        let rx = ipckit::eventfd::EventFd::open(&spec.address, wait)?;
        let tx_addr = spec
            .address2
            .as_deref()
            .ok_or_else(|| io::Error::other("eventfd needs two"))?;
        let tx = ipckit::eventfd::EventFd::open(tx_addr, wait)?;
        ctl.send(&FromPeer::Ready { max_msg_size: 8 })?;
        let ToPeer::Go { lat_size, .. } = ctl.recv(GO_TIMEOUT)?;
        return match spec.imp {
            Impl::Ipckit => serve_counter(
                &mut IpcCounter { tx, rx },
                lat_size.is_some(),
                spec.warmup,
                ctl,
            ),
            Impl::Raw => {
                let mut c = reference::RawCounter::new(tx.as_fd(), rx.as_fd(), wait)?;
                serve_counter(&mut c, lat_size.is_some(), spec.warmup, ctl)
            }
        };
    }
    if mech == Mechanism::Shm && spec.producer.is_some() {
        return crate::mpsc::produce(spec, wait, ctl);
    }
    if mech == Mechanism::Shm {
        return serve_shm(spec, wait, ctl);
    }
    let mut chan = ipckit::connect::ChannelBuilder::new(mech)
        .wait(wait)
        .timeout(Duration::from_secs(10));
    if let Some(m) = spec.max_msg_size {
        chan = chan.max_msg_size(m);
    }
    let t = chan.open(&spec.address)?;
    crate::netvariants::setup(&*t, net)?;
    let cap = t.max_msg_size();
    ctl.send(&FromPeer::Ready { max_msg_size: cap })?;
    let ToPeer::Go {
        lat_size,
        tput_size,
    } = ctl.recv(GO_TIMEOUT)?;
    let lossy = mech.is_lossy();
    match spec.imp {
        Impl::Ipckit => serve(
            &mut IpcChannel(t),
            cap,
            lat_size,
            tput_size,
            spec,
            lossy,
            ctl,
        ),
        Impl::Raw if net.is_some_and(|v| v.split_writes()) => {
            let mut ch = crate::netvariants::SplitWrites(reference::RawChannel::new(&*t, wait)?);
            let r = serve(&mut ch, cap, lat_size, tput_size, spec, lossy, ctl);
            drop(t);
            r
        }
        Impl::Raw => {
            let mut ch = reference::RawChannel::new(&*t, wait)?;
            let r = serve(&mut ch, cap, lat_size, tput_size, spec, lossy, ctl);
            drop(t);
            r
        }
    }
}

/// The peer of a shared-memory session: ipckit's ring pair, or the reference ring.
fn serve_shm(spec: &PeerSpec, wait: Wait, ctl: &mut Control) -> io::Result<()> {
    match spec.imp {
        Impl::Ipckit => {
            let ep = ipckit::shm::PairBuilder::new(&spec.address)
                .wait(wait)
                .open()?;
            let mut ch = crate::shm_channel::ShmChannel {
                ep,
                zero_copy: spec.zero_copy,
            };
            serve_ready(&mut ch, ctl, spec)
        }
        Impl::Raw => {
            let fd = spec
                .shm_fd
                .ok_or_else(|| io::Error::other("reference ring without its memfd"))?;
            let cap = spec
                .shm_capacity
                .ok_or_else(|| io::Error::other("reference ring without a capacity"))?;
            // SAFETY: the parent's memfd, inherited and named in the spec; unowned here.
            let fd = unsafe { sys::owned_from_inherited(fd) };
            let mem = sys::SharedPage::map_len(fd.as_fd(), crate::refring::pair_len(cap))?;
            let mut ch = crate::refring::RefRing::new(mem, cap, false, wait);
            serve_ready(&mut ch, ctl, spec)
        }
    }
}

fn serve_ready<C: Channel>(ch: &mut C, ctl: &mut Control, spec: &PeerSpec) -> io::Result<()> {
    let cap = spec.max_msg_size.unwrap_or(0);
    ctl.send(&FromPeer::Ready { max_msg_size: cap })?;
    let ToPeer::Go {
        lat_size,
        tput_size,
    } = ctl.recv(GO_TIMEOUT)?;
    serve(ch, cap, lat_size, tput_size, spec, false, ctl)
}

fn serve<C: Channel>(
    ch: &mut C,
    cap: usize,
    lat_size: Option<usize>,
    tput_size: usize,
    spec: &PeerSpec,
    lossy: bool,
    ctl: &mut Control,
) -> io::Result<()> {
    if let Some(size) = lat_size {
        let cpu_ns = scenario::latency_server(ch, size, cap, spec.warmup, lossy)?;
        ctl.send(&FromPeer::LatDone { cpu_ns })?;
    }
    let totals = scenario::stream_recv(ch, tput_size, cap, spec.touch, lossy)?;
    ctl.send(&FromPeer::TputDone(totals))?;
    Ok(())
}

fn serve_counter<C: scenario::Counter>(
    c: &mut C,
    latency: bool,
    warmup: u64,
    ctl: &mut Control,
) -> io::Result<()> {
    if latency {
        let cpu_ns = scenario::counter_latency_server(c, warmup)?;
        ctl.send(&FromPeer::LatDone { cpu_ns })?;
    }
    let totals = scenario::counter_stream_recv(c)?;
    ctl.send(&FromPeer::TputDone(totals))?;
    Ok(())
}
