//! `ipckit send`: one message from the command line, or one message per line of stdin, to a
//! receiver that already exists.
//!
//! The CLI adds no header of its own: what goes out is the message's bytes, newline-ended on
//! byte streams by default so `cat`, `nc` and `socat` read it (`--framing length` switches to
//! the library's 16-byte header: the payload's length as a little-endian `u32`, then 12 zero
//! bytes; [`ipckit::framing`]).
//!
//! A FIFO may have several writers at once, so each message (with its newline or header)
//! goes out in one `write` of at most `PIPE_BUF` (4096) bytes, which the kernel never splits
//! or interleaves: a FIFO message is at most 4,095 bytes with line framing, 4,080 with
//! length framing. A killed sender can then never leave half a message in the FIFO.
//!
//! tcp and udp send to any `HOST:PORT` (a name, an IPv4 address, or `[IPv6]:PORT`), on this
//! machine or another one.

use crate::cli::{FramingArg, SendArgs};
use crate::UserError;
use ipckit::connect::ChannelBuilder;
use ipckit::framing::Framing;
use ipckit::mq::posix::PosixMqBuilder;
use ipckit::mq::sysv::{self, SysvMqBuilder};
use ipckit::{Mechanism, SendError, Transport};
use std::io::{self, BufRead};
use std::path::Path;
use std::time::Duration;

/// How long `send` waits for a FIFO reader or a connection before calling the peer missing.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `ipckit send`.
pub fn run(args: &SendArgs) -> anyhow::Result<()> {
    let mech = args.via;
    let addr = check_address(mech, &args.to)?;
    let framing = framing_for(mech, args.framing)?;
    if args.priority.is_some() && !matches!(mech, Mechanism::MqPosix | Mechanism::MqSysv) {
        return Err(UserError::new(format!(
            "--priority applies to mq-posix (priority) and mq-sysv (message type), not {mech}"
        ))
        .into());
    }
    let mut ep = open_sender(mech, &addr, args.priority)?;
    ep.set_framing(framing);
    let mut out = Sender {
        ep,
        mech,
        addr: &addr,
        framing,
    };
    match &args.message {
        Some(m) => out.send(m.as_bytes()),
        None => {
            for line in io::stdin().lock().split(b'\n') {
                out.send(&line?)?;
            }
            Ok(())
        }
    }
}

struct Sender<'a> {
    ep: Box<dyn Transport>,
    mech: Mechanism,
    addr: &'a str,
    framing: Framing,
}

impl Sender<'_> {
    fn send(&mut self, msg: &[u8]) -> anyhow::Result<()> {
        let mech = self.mech;
        if self.framing == Framing::Line && mech.is_stream() && msg.contains(&b'\n') {
            return Err(UserError::new(
                "a message sent with line framing cannot contain a newline (use --framing length)",
            )
            .into());
        }
        if msg.is_empty() && mech == Mechanism::UdsSeqpacket {
            // A seqpacket read of 0 bytes is also how the end of the connection looks.
            return Err(UserError::new(
                "uds-seqpacket cannot carry an empty message: the receiver cannot tell it from \
                 the end of the connection",
            )
            .into());
        }
        if mech == Mechanism::Fifo {
            // A FIFO may have several writers, and only a write of at most PIPE_BUF bytes is
            // never split, interleaved with another writer's or left half-written by a killed
            // sender; so each message goes out whole in one such write.
            let overhead = match self.framing {
                Framing::Line => 1,
                Framing::Length => ipckit::framing::FRAME_HEADER_LEN,
            };
            let limit = ipckit::fifo::ATOMIC_WRITE - overhead;
            if msg.len() > limit {
                return Err(UserError::new(format!(
                    "message of {} bytes is over the fifo limit of {limit} bytes ({} with this \
                     framing: one atomic write of PIPE_BUF, {} bytes, per message so writers \
                     never mix); nothing sent; use uds for larger messages",
                    msg.len(),
                    limit,
                    ipckit::fifo::ATOMIC_WRITE
                ))
                .into());
            }
        }
        match self.ep.send(msg) {
            Ok(()) => Ok(()),
            Err(SendError::TooLarge { len, max }) => Err(UserError::new(format!(
                "message of {len} bytes is over the limit of {max} bytes for {mech} at {}; \
                 nothing sent",
                self.addr
            ))
            .into()),
            Err(SendError::PeerGone) => {
                anyhow::bail!(
                    "the receiver at {} went away before the message was sent",
                    self.addr
                )
            }
            Err(e) => Err(anyhow::Error::from(io::Error::from(e))
                .context(format!("sending to {} over {mech}", self.addr))),
        }
    }
}

/// Opens the sending endpoint; a missing receiver or a malformed address is the user's error.
fn open_sender(
    mech: Mechanism,
    addr: &str,
    priority: Option<u32>,
) -> anyhow::Result<Box<dyn Transport>> {
    let chan = ChannelBuilder::new(mech).timeout(OPEN_TIMEOUT);
    let r: io::Result<Box<dyn Transport>> = match mech {
        // Opened directly: the priority and the message type are not on the trait.
        // Linux accepts priorities below MQ_PRIO_MAX (32768).
        Mechanism::MqPosix if priority.is_some_and(|p| p >= 32768) => {
            return Err(UserError::new("a POSIX priority (--priority) must be below 32768").into());
        }
        // One-way senders: a send waiting on a full queue learns of the receiver's end.
        Mechanism::MqPosix => PosixMqBuilder::new(addr).open_sender().map(|mut q| {
            q.set_priority(priority.unwrap_or(0));
            Box::new(q) as Box<dyn Transport>
        }),
        Mechanism::MqSysv => {
            let mtype = i64::from(priority.unwrap_or(1));
            if mtype < 1 {
                return Err(UserError::new(
                    "a System V message type (--priority) must be 1 or more",
                )
                .into());
            }
            sysv::parse_key(addr)
                .and_then(|key| SysvMqBuilder::new(key).open_sender())
                .and_then(|mut q| {
                    q.set_send_type(mtype)?;
                    Ok(Box::new(q) as Box<dyn Transport>)
                })
        }
        _ => chan.open_sender(addr),
    };
    r.map_err(|e| open_error(e, mech, addr, "send to"))
}

/// Turns an error opening an endpoint into a user error where the user can fix it.
pub(crate) fn open_error(e: io::Error, mech: Mechanism, addr: &str, verb: &str) -> anyhow::Error {
    use io::ErrorKind as K;
    match e.kind() {
        K::InvalidInput => {
            UserError::new(format!("cannot {verb} {addr} over {mech}: {e}")).into()
        }
        // A receiver that cannot make its object (a missing directory) is not told to start
        // a receiver.
        K::NotFound if verb.starts_with("receive") => {
            UserError::new(format!("cannot {verb} {addr} over {mech}: {e}")).into()
        }
        K::NotFound | K::ConnectionRefused | K::TimedOut => UserError::new(format!(
            "no receiver at {addr} ({mech}): {e}; start one with 'ipckit recv --via {mech} --at {addr}'"
        ))
        .into(),
        K::AlreadyExists | K::AddrInUse => {
            UserError::new(format!("cannot {verb} {addr} over {mech}: {e}")).into()
        }
        _ => anyhow::Error::from(e).context(format!("cannot {verb} {addr} over {mech}")),
    }
}

/// Checks that `addr` has the form `mech` takes, and makes file-system paths absolute (the
/// registry records them, and `ipckit clean` may run from another directory).
pub(crate) fn check_address(mech: Mechanism, addr: &str) -> anyhow::Result<String> {
    let bad = |why: &str| -> anyhow::Error {
        UserError::new(format!("'{addr}' is not a {mech} address: {why}")).into()
    };
    if addr.is_empty() {
        return Err(bad("it is empty"));
    }
    match mech {
        Mechanism::Pipe | Mechanism::Eventfd => Err(UserError::new(format!(
            "{mech} has no address; use one of fifo, uds, uds-dgram, uds-seqpacket, tcp, udp, \
             mq-posix, mq-sysv, shm"
        ))
        .into()),
        Mechanism::Fifo => {
            if addr.starts_with('@') {
                return Err(bad("a FIFO is a file: give a path"));
            }
            absolute(addr)
        }
        Mechanism::Uds | Mechanism::UdsDgram | Mechanism::UdsSeqpacket => {
            if addr.starts_with('@') {
                if addr.len() == 1 {
                    return Err(bad("an abstract address needs a name after '@'"));
                }
                Ok(addr.to_owned())
            } else {
                absolute(addr)
            }
        }
        Mechanism::Tcp | Mechanism::Udp => {
            let ok = addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if ok {
                Ok(addr.to_owned())
            } else {
                Err(bad("expected host:port"))
            }
        }
        Mechanism::MqPosix => {
            ipckit::name::check_posix_mq(addr).map_err(|e| UserError::new(e.to_string()))?;
            Ok(addr.to_owned())
        }
        Mechanism::MqSysv => {
            sysv::parse_key(addr).map_err(|e| bad(&e.to_string()))?;
            Ok(addr.to_owned())
        }
        Mechanism::Shm => ipckit::name::check_shm(addr).map_err(|e| bad(&e.to_string())),
    }
}

fn absolute(addr: &str) -> anyhow::Result<String> {
    let p = Path::new(addr);
    if p.is_absolute() {
        return Ok(addr.to_owned());
    }
    let abs = std::env::current_dir()?.join(p);
    abs.into_os_string()
        .into_string()
        .map_err(|_| UserError::new("the path must be UTF-8").into())
}

/// The framing to use: line framing on byte streams unless `--framing length`; datagram and
/// queue mechanisms keep boundaries themselves and take no `--framing`.
pub(crate) fn framing_for(mech: Mechanism, arg: Option<FramingArg>) -> anyhow::Result<Framing> {
    match arg {
        Some(_) if !mech.is_stream() => Err(UserError::new(format!(
            "--framing applies to byte streams (fifo, uds, tcp); {mech} keeps message boundaries"
        ))
        .into()),
        Some(FramingArg::Length) => Ok(Framing::Length),
        Some(FramingArg::Line) | None => Ok(Framing::Line),
    }
}
