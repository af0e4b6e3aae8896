//! `ipckit recv`: prints each message it receives on its own line of stdout.
//!
//! The endpoint is created when it does not exist and used when it does. On listening
//! mechanisms (uds, uds-seqpacket, tcp) peers are served side by side (up to [`MAX_PEERS`]
//! at once, waited on with `epoll`), so a silent peer delays nobody; a peer that
//! breaks the framing (a line over the limit, a length over the maximum, a malformed header)
//! loses its own connection, with one line on stderr, and the others are served. A FIFO
//! receiver goes from one writer to the next and drops an unfinished message a writer left;
//! a uds-dgram receiver drops datagrams from senders of another uid; both are reported on
//! stderr as they happen. It stops after
//! `--count` messages, after `--timeout` seconds without one, or on SIGINT/SIGTERM, and removes
//! what it created in every case (waits are sliced so the signal flag is seen). SIGTERM is a
//! request to stop, as for `signal listen`: what has already arrived is received and printed
//! (for at most [`DRAIN_MAX`]), then it exits 0. SIGINT (Ctrl-C) stops at once, status 130.
//!
//! tcp and udp bind the address given: `127.0.0.1:PORT` keeps to this machine, `0.0.0.0:PORT`
//! or `[::]:PORT` listens on every interface, for senders on other hosts. IP peers carry no
//! credentials (no uid, no pid, unlike Unix sockets' `SO_PEERCRED`): anyone who can reach the
//! port may send, so filter by address (bind one interface, or a firewall) if that matters.

use super::demo::interrupt;
use super::send::{check_address, framing_for, open_error};
use crate::cli::RecvArgs;
use crate::UserError;
use ipckit::connect::{ChannelBuilder, Listener, Receiver};
use ipckit::mq::sysv::{self, SysvMq, SysvMqBuilder};
use ipckit::{Mechanism, RecvError, Transport};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest single wait, so a signal is noticed promptly.
const SLICE: Duration = Duration::from_millis(100);

/// After SIGTERM: a wait this long without a message means everything sent is received.
const DRAIN_SLICE: Duration = Duration::from_millis(20);

/// After SIGTERM, the longest the draining goes on. A sender that never stops cannot keep
/// `recv` running, and a sender blocked on a full queue refills it as fast as it drains:
/// it learns of the departure only when `recv` has gone, so this bounds how late (the
/// issue's promise is 100 ms from the receiver's end, whatever the message rate).
pub const DRAIN_MAX: Duration = Duration::from_millis(100);

/// Set by SIGTERM (its own flag: SIGINT's, in `interrupt`, means stop at once).
static TERMINATED: AtomicBool = AtomicBool::new(false);

fn terminated() -> bool {
    TERMINATED.load(Ordering::SeqCst)
}

/// SIGTERM sets [`TERMINATED`] instead of the common interrupt flag.
fn install_term() {
    use ipckit::signal::{HandlerBuilder, Signal};
    if let Ok(h) = HandlerBuilder::new(Signal::SIGTERM)
        .flag(&TERMINATED)
        .install()
    {
        // The handler lasts for the rest of the process.
        std::mem::forget(h);
    }
}

/// Runs `ipckit recv`.
pub fn run(args: &RecvArgs) -> anyhow::Result<()> {
    let mech = args.via;
    let addr = check_address(mech, &args.at)?;
    let framing = framing_for(mech, args.framing)?;
    if args.msg_type.is_some() && mech != Mechanism::MqSysv {
        return Err(UserError::new(format!("--type applies to mq-sysv, not {mech}")).into());
    }
    // SIGTERM's handler first: `interrupt` then keeps SIGINT only (a signal has one handler).
    install_term();
    interrupt::install();
    let r = receive(args, mech, &addr, framing);
    // Everything receive() made is dropped (and removed) by now.
    interrupt::exit_if_interrupted();
    if terminated() && r.is_ok() {
        eprintln!("ipckit: stopped by SIGTERM; received what had arrived, cleaned up");
    }
    r
}

enum Source {
    One(Box<dyn Transport>),
    Listener(Listener),
}

enum Next {
    Msg(usize),
    PeerGone,
    /// This peer broke the framing (an over-long line or length, a malformed header): on a
    /// listener only its connection ends.
    BadPeer(anyhow::Error),
    Stop,
}

struct Clock {
    idle: Option<Duration>,
    deadline: Option<Instant>,
    /// Set at the first look after SIGTERM: when the draining ends at the latest.
    drain_until: std::cell::Cell<Option<Instant>>,
}

impl Clock {
    fn reset(&mut self) {
        self.deadline = self.idle.map(|d| Instant::now() + d);
    }

    /// The next wait: a slice, shorter if the deadline is nearer; `None` once it has passed
    /// or SIGINT came; after SIGTERM, a short one while draining.
    fn slice(&self) -> Option<Duration> {
        if interrupt::interrupted() {
            return None;
        }
        if terminated() {
            let until = self
                .drain_until
                .get()
                .unwrap_or_else(|| Instant::now() + DRAIN_MAX);
            self.drain_until.set(Some(until));
            return (Instant::now() < until).then_some(DRAIN_SLICE);
        }
        match self.deadline {
            None => Some(SLICE),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| left.min(SLICE))
            }
        }
    }
}

fn receive(
    args: &RecvArgs,
    mech: Mechanism,
    addr: &str,
    framing: ipckit::framing::Framing,
) -> anyhow::Result<()> {
    let chan = ChannelBuilder::new(mech);
    // A FIFO receiver goes on from one writer to the next by itself, and drops (and counts)
    // a message a writer left unfinished: the end of a writer's session is how it tells.
    let mut source = match mech {
        Mechanism::MqSysv => Source::One(open_sysv(addr, args.msg_type)?),
        _ => match chan.create_receiver(addr) {
            Ok(Receiver::Endpoint(ep)) => Source::One(ep),
            Ok(Receiver::Listener(l)) => Source::Listener(l),
            Err(e) => return Err(open_error(e, mech, addr, "receive at")),
        },
    };
    let bound = bound_address(mech, &source).unwrap_or_else(|| addr.to_owned());
    eprintln!("ipckit: receiving on {mech} at {bound}");
    let mut clock = Clock {
        idle: args.timeout,
        deadline: None,
        drain_until: std::cell::Cell::new(None),
    };
    clock.reset();
    let want = args.count.unwrap_or(u64::MAX);
    let mut got = 0u64;
    let mut bad_peers = 0u64;
    let mut drops = Drops { mech, seen: 0 };
    let mut out = io::stdout().lock();
    let served_side_by_side = match &source {
        Source::Listener(l) => match l.pollable() {
            Some(lfd) => {
                let mut peers = Peers {
                    framing,
                    want,
                    got: 0,
                    bad: 0,
                    out: &mut out,
                    clock: &mut clock,
                };
                peers.serve(l, lfd)?;
                (got, bad_peers) = (peers.got, peers.bad);
                true
            }
            None => false,
        },
        Source::One(_) => false,
    };
    // One endpoint; or the peers of a listener that cannot be polled (shm), one after another.
    'peers: while got < want && !served_side_by_side {
        let mut accepted;
        let ep: &mut dyn Transport = match &mut source {
            Source::One(ep) => ep.as_mut(),
            Source::Listener(l) => match accept(l, &clock)? {
                Some(ep) => {
                    accepted = ep;
                    accepted.as_mut()
                }
                None => break,
            },
        };
        ep.set_framing(framing);
        let mut buf = vec![0u8; ep.max_msg_size()];
        while got < want {
            let n = next(ep, &mut buf, &clock);
            drops.report(ep);
            match n? {
                Next::Msg(n) => {
                    print_msg(&mut out, &buf[..n])?;
                    got += 1;
                    clock.reset();
                }
                Next::PeerGone if matches!(source, Source::Listener(_)) => continue 'peers,
                Next::BadPeer(e) if matches!(source, Source::Listener(_)) => {
                    // One bad peer ends its own connection, not the listener.
                    bad_peers += 1;
                    eprintln!("ipckit: dropped a peer: {e:#}");
                    continue 'peers;
                }
                Next::BadPeer(e) => return Err(e),
                Next::PeerGone | Next::Stop => break 'peers,
            }
        }
    }
    if bad_peers > 0 {
        eprintln!("ipckit: {bad_peers} peer(s) dropped for malformed or over-long messages");
    }
    if got < want && args.count.is_some() && !interrupt::interrupted() && !terminated() {
        anyhow::bail!(
            "received {got} of {want} messages: {}",
            if clock.slice().is_none() {
                "timed out"
            } else {
                "the sender closed"
            }
        );
    }
    Ok(())
}

/// Most peers a listener serves at once; more wait in the kernel's backlog until one leaves.
const MAX_PEERS: usize = 256;

/// The peers of a pollable listener, served side by side: a peer that is silent, or stops
/// half-way through a message, delays nobody else.
struct Peers<'a, W: Write> {
    framing: ipckit::framing::Framing,
    want: u64,
    got: u64,
    /// Peers dropped for breaking the framing.
    bad: u64,
    out: &'a mut W,
    clock: &'a mut Clock,
}

impl<W: Write> Peers<'_, W> {
    /// Accepts and receives until `want` messages, the idle timeout, or a signal (after
    /// SIGTERM: no new peer, and what the connected ones have sent is received).
    fn serve(&mut self, l: &Listener, lfd: std::os::fd::BorrowedFd<'_>) -> anyhow::Result<()> {
        use ipckit::epoll::{Epoll, Events, Interest};
        use std::collections::BTreeMap;
        const LISTENER: u64 = 0;
        let ep = Epoll::new()?;
        ep.add(lfd, LISTENER, Interest::INPUT)?;
        let mut listening = true;
        let mut peers: BTreeMap<u64, Box<dyn Transport>> = BTreeMap::new();
        let mut next_token = 1u64;
        let mut events = Events::with_capacity(64);
        let mut buf = Vec::new();
        while self.got < self.want {
            let Some(slice) = self.clock.slice() else {
                break;
            };
            let wanted = !terminated() && peers.len() < MAX_PEERS;
            if listening != wanted {
                if wanted {
                    ep.add(lfd, LISTENER, Interest::INPUT)?;
                } else {
                    ep.delete(lfd)?;
                }
                listening = wanted;
            }
            if ep.wait_timeout(&mut events, slice)? == 0 {
                if terminated() {
                    // A quiet slice after SIGTERM: everything sent is received.
                    break;
                }
                continue;
            }
            let ready: Vec<u64> = events.iter().map(|e| e.token()).collect();
            for token in ready {
                if token == LISTENER {
                    // Every peer waiting, in the order they connected.
                    while listening && peers.len() < MAX_PEERS {
                        match l.try_accept() {
                            Ok(mut p) => {
                                p.set_framing(self.framing);
                                ep.add(read_fd(p.as_ref())?, next_token, Interest::INPUT)?;
                                peers.insert(next_token, p);
                                next_token += 1;
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                                eprintln!("ipckit: {e}")
                            }
                            Err(e) => {
                                return Err(anyhow::Error::from(e).context("accepting a peer"))
                            }
                        }
                    }
                    continue;
                }
                let Some(p) = peers.get_mut(&token) else {
                    continue;
                };
                if !self.drain(p.as_mut(), &mut buf)? {
                    ep.delete(read_fd(p.as_ref())?)?;
                    peers.remove(&token);
                }
                if self.got >= self.want {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Receives every whole message `p` has sent so far; false once it is gone or was dropped
    /// for breaking the framing.
    fn drain(&mut self, p: &mut dyn Transport, buf: &mut Vec<u8>) -> anyhow::Result<bool> {
        if buf.len() < p.max_msg_size() {
            buf.resize(p.max_msg_size(), 0);
        }
        while self.got < self.want {
            match receive_one(buf, |b| p.try_recv(b))? {
                Some(Next::Msg(n)) => {
                    print_msg(self.out, &buf[..n])?;
                    self.got += 1;
                    self.clock.reset();
                }
                None => return Ok(true),
                Some(Next::BadPeer(e)) => {
                    // One bad peer ends its own connection, not the listener.
                    self.bad += 1;
                    eprintln!("ipckit: dropped a peer: {e:#}");
                    return Ok(false);
                }
                Some(Next::PeerGone | Next::Stop) => return Ok(false),
            }
        }
        Ok(true)
    }
}

/// Prints one received message on its own line.
fn print_msg(out: &mut impl Write, msg: &[u8]) -> io::Result<()> {
    out.write_all(msg)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// One receive through `recv`, a bigger buffer tried at once where the message needs it:
/// `None` if nothing came (an empty queue, or the wait's time passed).
fn receive_one(
    buf: &mut Vec<u8>,
    mut recv: impl FnMut(&mut [u8]) -> Result<usize, RecvError>,
) -> anyhow::Result<Option<Next>> {
    loop {
        return match recv(buf) {
            Ok(n) => Ok(Some(Next::Msg(n))),
            Err(RecvError::Timeout) | Err(RecvError::Empty) => Ok(None),
            Err(RecvError::PeerGone) => Ok(Some(Next::PeerGone)),
            Err(RecvError::BufferTooSmall { needed }) => {
                buf.resize(needed, 0);
                continue;
            }
            Err(RecvError::Io(e)) if e.kind() == io::ErrorKind::InvalidData => Ok(Some(
                Next::BadPeer(anyhow::Error::from(e).context("receiving")),
            )),
            Err(e) => Err(anyhow::Error::from(io::Error::from(e)).context("receiving")),
        };
    }
}

/// The descriptor a connected peer's messages arrive on.
fn read_fd(p: &dyn Transport) -> io::Result<std::os::fd::BorrowedFd<'_>> {
    match p.raw() {
        ipckit::RawHandle::Fds { read: Some(fd), .. } => Ok(fd),
        _ => Err(io::Error::other(
            "a connected peer without a descriptor to wait on",
        )),
    }
}

/// The address a TCP or UDP receiver is bound to, as the kernel says (port 0 given: the
/// port it chose, which senders need); `None` for other mechanisms.
fn bound_address(mech: Mechanism, source: &Source) -> Option<String> {
    let fd = match (mech, source) {
        (Mechanism::Tcp, Source::Listener(l)) => l.pollable()?.try_clone_to_owned().ok()?,
        (Mechanism::Udp, Source::One(ep)) => match ep.raw() {
            ipckit::RawHandle::Fds { read: Some(fd), .. } => fd.try_clone_to_owned().ok()?,
            _ => return None,
        },
        _ => return None,
    };
    // A duplicate of the descriptor, closed when this returns; only its name is asked.
    let addr = match mech {
        Mechanism::Tcp => std::net::TcpListener::from(fd).local_addr(),
        _ => std::net::UdpSocket::from(fd).local_addr(),
    };
    addr.ok().map(|a| a.to_string())
}

/// Messages an endpoint threw away ([`Transport::dropped`]), reported on stderr as they come.
struct Drops {
    mech: Mechanism,
    seen: u64,
}

impl Drops {
    fn report(&mut self, ep: &dyn Transport) {
        let now = ep.dropped();
        if now > self.seen {
            let what = match self.mech {
                Mechanism::Fifo => "unfinished message(s) that a writer left when it closed",
                Mechanism::UdsDgram => "datagram(s) from a sender that the policy refuses",
                _ => "message(s)",
            };
            eprintln!("ipckit: dropped {} {what} ({now} so far)", now - self.seen);
            self.seen = now;
        }
    }
}

fn open_sysv(addr: &str, msg_type: Option<i64>) -> anyhow::Result<Box<dyn Transport>> {
    let open = || -> io::Result<SysvMq> {
        let key = sysv::parse_key(addr)?;
        match SysvMqBuilder::new(key).open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => SysvMqBuilder::new(key).create(),
            r => r,
        }
    };
    let mut q = open().map_err(|e| open_error(e, Mechanism::MqSysv, addr, "receive at"))?;
    // So one-way senders know whom to watch (`msg_lrpid`).
    q.announce_receiver()
        .map_err(|e| open_error(e, Mechanism::MqSysv, addr, "receive at"))?;
    if let Some(t) = msg_type {
        q.set_recv_type(t);
    }
    Ok(Box::new(q))
}

/// The next peer, or `None` when the time is up or a signal came.
fn accept(l: &Listener, clock: &Clock) -> anyhow::Result<Option<Box<dyn Transport>>> {
    while let Some(slice) = clock.slice() {
        if terminated() {
            // Draining receives from the peer at hand; no new one is taken.
            return Ok(None);
        }
        match l.accept_timeout(slice) {
            Ok(ep) => return Ok(Some(ep)),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => eprintln!("ipckit: {e}"),
            Err(e) => return Err(anyhow::Error::from(e).context("accepting a peer")),
        }
    }
    Ok(None)
}

fn next(ep: &mut dyn Transport, buf: &mut Vec<u8>, clock: &Clock) -> anyhow::Result<Next> {
    while let Some(slice) = clock.slice() {
        match receive_one(buf, |b| ep.recv_timeout(b, slice))? {
            Some(n) => return Ok(n),
            // After SIGTERM, a quiet slice means everything already sent is received.
            None if terminated() => break,
            None => {}
        }
    }
    Ok(Next::Stop)
}
