//! The two traits every mechanism implements: [`Transport`] for mechanisms that carry
//! messages, [`Notify`] for eventfd, which carries a count; and the words they speak in
//! ([`Mechanism`], [`PeerInfo`], [`RawHandle`]; a byte stream's [`Framing`] is in
//! [`crate::framing`]).

use crate::error::{RecvError, SendError};
use crate::framing::Framing;
use crate::wait::{Deadline, Wait};
use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::str::FromStr;
use std::time::Duration;

/// Every mechanism ipckit measures, named as the CLI and the bench name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// Anonymous pipes, handed to a child by fd inheritance.
    Pipe,
    /// Named FIFOs in the file system.
    Fifo,
    /// Unix stream sockets.
    Uds,
    /// Unix datagram sockets.
    UdsDgram,
    /// Unix seqpacket sockets.
    UdsSeqpacket,
    /// TCP with `TCP_NODELAY`.
    Tcp,
    /// UDP.
    Udp,
    /// POSIX message queues.
    MqPosix,
    /// System V message queues.
    MqSysv,
    /// eventfd: a counter, not a message carrier (see [`Notify`]).
    Eventfd,
    /// A pair of shared-memory SPSC rings ([`crate::shm`]).
    Shm,
}

impl Mechanism {
    /// Every mechanism, in the order reports list them.
    pub const ALL: [Mechanism; 11] = [
        Mechanism::Pipe,
        Mechanism::Fifo,
        Mechanism::Uds,
        Mechanism::UdsDgram,
        Mechanism::UdsSeqpacket,
        Mechanism::Tcp,
        Mechanism::Udp,
        Mechanism::MqPosix,
        Mechanism::MqSysv,
        Mechanism::Eventfd,
        Mechanism::Shm,
    ];

    /// The mechanism's name in the CLI, the bench and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Pipe => "pipe",
            Mechanism::Fifo => "fifo",
            Mechanism::Uds => "uds",
            Mechanism::UdsDgram => "uds-dgram",
            Mechanism::UdsSeqpacket => "uds-seqpacket",
            Mechanism::Tcp => "tcp",
            Mechanism::Udp => "udp",
            Mechanism::MqPosix => "mq-posix",
            Mechanism::MqSysv => "mq-sysv",
            Mechanism::Eventfd => "eventfd",
            Mechanism::Shm => "shm",
        }
    }

    /// True for byte streams, which ipckit frames with a length prefix.
    pub fn is_stream(self) -> bool {
        matches!(
            self,
            Mechanism::Pipe | Mechanism::Fifo | Mechanism::Uds | Mechanism::Tcp
        )
    }

    /// True if messages may be lost (UDP).
    pub fn is_lossy(self) -> bool {
        matches!(self, Mechanism::Udp)
    }

    /// True if this mechanism carries payloads ([`Transport`]), false for eventfd ([`Notify`]).
    pub fn carries_payload(self) -> bool {
        !matches!(self, Mechanism::Eventfd)
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mechanism::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Mechanism::ALL.iter().map(|m| m.name()).collect();
                format!(
                    "unknown mechanism '{s}' (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// The accessors every endpoint type implements the same way: the mechanism (a field or a
/// constant), and the `max` and `wait` fields.
macro_rules! endpoint_accessors {
    (field $f:ident) => {
        fn mechanism(&self) -> $crate::Mechanism {
            self.$f
        }
        $crate::transport::endpoint_accessors!(@common);
    };
    (fixed $m:expr) => {
        fn mechanism(&self) -> $crate::Mechanism {
            $m
        }
        $crate::transport::endpoint_accessors!(@common);
    };
    (@common) => {
        fn max_msg_size(&self) -> usize {
            self.max
        }

        fn wait_strategy(&self) -> $crate::Wait {
            self.wait
        }

        fn set_wait_strategy(&mut self, wait: $crate::Wait) {
            self.wait = wait;
        }
    };
}
pub(crate) use endpoint_accessors;

/// The kernel objects behind an endpoint, for code that must make the raw syscalls itself
/// (the bench's reference loops do, to measure what ipckit adds).
#[derive(Debug, Clone, Copy)]
pub enum RawHandle<'a> {
    /// Descriptors to read from and write to (the same one for sockets).
    Fds {
        /// Descriptor messages arrive on.
        read: Option<BorrowedFd<'a>>,
        /// Descriptor messages leave by.
        write: Option<BorrowedFd<'a>>,
    },
    /// A System V queue pair: ids and the message types each direction uses.
    SysV {
        /// Queue this endpoint receives from.
        recv_id: i32,
        /// Message type it receives (msgrcv's `msgtyp`).
        recv_type: i64,
        /// Queue this endpoint sends to.
        send_id: i32,
        /// Message type it sends.
        send_type: i64,
    },
}

/// What is known about the process at the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's pid, in this pid namespace.
    pub pid: u32,
    /// True if ipckit watches the peer with a pidfd (mechanisms without a connection).
    pub watched: bool,
}

/// A message transport: an endpoint that sends whole messages and receives them into a
/// caller's buffer, preserving boundaries (byte streams are framed: a 16-byte header holding the length, or a
/// newline; see [`Framing`]).
///
/// Every endpoint has a [`Wait`] strategy and a maximum message size; a message over it is
/// refused with [`SendError::TooLarge`] and nothing is sent.
///
/// The provided `send`/`try_send`/`send_timeout` (and the `recv` ones) are thin wrappers over
/// [`Transport::send_deadline`] and [`Transport::recv_deadline`].
pub trait Transport: Send + fmt::Debug {
    /// Which mechanism this is.
    fn mechanism(&self) -> Mechanism;

    /// Largest payload this endpoint sends or accepts, in bytes.
    fn max_msg_size(&self) -> usize;

    /// The current wait strategy.
    fn wait_strategy(&self) -> Wait;

    /// Changes the wait strategy.
    fn set_wait_strategy(&mut self, wait: Wait);

    /// Sends one message, waiting under the wait strategy until `deadline`.
    ///
    /// # Errors
    ///
    /// [`SendError::TooLarge`] over the maximum, [`SendError::Full`] for
    /// [`Deadline::Now`], [`SendError::Timeout`] when the deadline passes,
    /// [`SendError::PeerGone`] when the peer is gone, [`SendError::Io`] otherwise.
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<(), SendError>;

    /// Receives one message into `buf`, returning its length.
    ///
    /// # Errors
    ///
    /// [`RecvError::Empty`] for [`Deadline::Now`], [`RecvError::Timeout`],
    /// [`RecvError::PeerGone`] once the peer is gone and its messages are read,
    /// [`RecvError::BufferTooSmall`] (the message stays), [`RecvError::Io`] otherwise.
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize, RecvError>;

    /// The process at the other end, where known.
    fn peer(&self) -> Option<PeerInfo> {
        None
    }

    /// The kernel objects behind this endpoint.
    fn raw(&self) -> RawHandle<'_>;

    /// Messages this endpoint received and threw away rather than deliver: an unfinished
    /// message a FIFO writer left at the end of its session, a datagram from a sender the
    /// receiver's policy refuses. Counted since the endpoint was made; 0 where nothing is
    /// ever dropped.
    fn dropped(&self) -> u64 {
        0
    }

    /// Chooses how a byte stream delimits messages ([`Framing`]). Mechanisms that keep
    /// message boundaries themselves ignore it.
    fn set_framing(&mut self, framing: Framing) {
        let _ = framing;
    }

    /// Writes out, without waiting, what an earlier `try_send`/`send_timeout` accepted but
    /// could not write whole. Only byte streams ever have such a rest (a message half in the
    /// stream cannot be taken back); for the others this is `Ok` at once. Event loops call it
    /// when the descriptor is writable again, or the peer never sees the message's end.
    ///
    /// # Errors
    ///
    /// `Full` while part of it is still waiting, `PeerGone` or `Io`.
    fn try_flush(&mut self) -> Result<(), SendError> {
        Ok(())
    }

    /// Sends, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// `TooLarge`, `PeerGone` or `Io`.
    fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_deadline(msg, Deadline::Never)
    }

    /// Sends only if it can be done without waiting.
    ///
    /// # Errors
    ///
    /// `Full` (nothing sent), `TooLarge`, `PeerGone` or `Io`.
    fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_deadline(msg, Deadline::Now)
    }

    /// Sends, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` (nothing sent), `TooLarge`, `PeerGone` or `Io`.
    fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.send_deadline(msg, Deadline::after(timeout))
    }

    /// Receives, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// `PeerGone`, `BufferTooSmall` or `Io`.
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_deadline(buf, Deadline::Never)
    }

    /// Receives only a message already waiting.
    ///
    /// # Errors
    ///
    /// `Empty`, `PeerGone`, `BufferTooSmall` or `Io`.
    fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_deadline(buf, Deadline::Now)
    }

    /// Receives, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout`, `PeerGone`, `BufferTooSmall` or `Io`.
    fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, RecvError> {
        self.recv_deadline(buf, Deadline::after(timeout))
    }
}

/// A notification counter (eventfd): `notify(n)` adds `n`; a wait returns the sum of all
/// notifications since the last wait and resets it to zero. Notifications coalesce: five
/// `notify(1)` may be seen as one wait returning 5. It carries no payload.
pub trait Notify: Send + fmt::Debug {
    /// The current wait strategy.
    fn wait_strategy(&self) -> Wait;

    /// Changes the wait strategy.
    fn set_wait_strategy(&mut self, wait: Wait);

    /// Adds `n` (1 ..= 2^64 - 2) to the counter, waiting under the strategy if it would
    /// overflow.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for `n == 0` or `n == u64::MAX`; `TimedOut`/`WouldBlock` per deadline.
    fn notify_deadline(&self, n: u64, deadline: Deadline) -> io::Result<()>;

    /// Waits for the counter to be non-zero, then takes and returns it.
    ///
    /// # Errors
    ///
    /// `WouldBlock` for [`Deadline::Now`] when zero, `TimedOut` when the deadline passes.
    fn wait_deadline(&self, deadline: Deadline) -> io::Result<u64>;

    /// Adds `n` to the counter.
    ///
    /// # Errors
    ///
    /// As [`Notify::notify_deadline`].
    fn notify(&self, n: u64) -> io::Result<()> {
        self.notify_deadline(n, Deadline::Never)
    }

    /// Blocks (under the strategy) until notified; returns the accumulated count.
    ///
    /// # Errors
    ///
    /// As [`Notify::wait_deadline`].
    fn wait(&self) -> io::Result<u64> {
        self.wait_deadline(Deadline::Never)
    }

    /// Takes the count if non-zero, without waiting.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when the count is zero.
    fn try_wait(&self) -> io::Result<u64> {
        self.wait_deadline(Deadline::Now)
    }

    /// Waits at most `timeout`.
    ///
    /// # Errors
    ///
    /// `TimedOut` when nothing came.
    fn wait_timeout(&self, timeout: Duration) -> io::Result<u64> {
        self.wait_deadline(Deadline::after(timeout))
    }
}

/// A boxed transport is a transport, so generic code (`fn run<T: Transport>`) takes what
/// [`ChannelBuilder::open`](crate::connect::ChannelBuilder::open) returns.
impl<T: Transport + ?Sized> Transport for Box<T> {
    fn mechanism(&self) -> Mechanism {
        (**self).mechanism()
    }
    fn max_msg_size(&self) -> usize {
        (**self).max_msg_size()
    }
    fn wait_strategy(&self) -> Wait {
        (**self).wait_strategy()
    }
    fn set_wait_strategy(&mut self, wait: Wait) {
        (**self).set_wait_strategy(wait)
    }
    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<(), SendError> {
        (**self).send_deadline(msg, deadline)
    }
    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize, RecvError> {
        (**self).recv_deadline(buf, deadline)
    }
    fn peer(&self) -> Option<PeerInfo> {
        (**self).peer()
    }
    fn raw(&self) -> RawHandle<'_> {
        (**self).raw()
    }
    fn dropped(&self) -> u64 {
        (**self).dropped()
    }
    fn set_framing(&mut self, framing: Framing) {
        (**self).set_framing(framing)
    }
    fn try_flush(&mut self) -> Result<(), SendError> {
        (**self).try_flush()
    }
    // The provided methods too, so an implementation's own versions are kept.
    fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        (**self).send(msg)
    }
    fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        (**self).try_send(msg)
    }
    fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        (**self).send_timeout(msg, timeout)
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        (**self).recv(buf)
    }
    fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        (**self).try_recv(buf)
    }
    fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, RecvError> {
        (**self).recv_timeout(buf, timeout)
    }
}
