//! Making a connected pair of endpoints across two processes, for any mechanism, from a
//! string address, through one [`ChannelBuilder`]: the server side creates the kernel
//! objects ([`ChannelBuilder::create`], giving a [`PairListener`]), hands
//! [`PairListener::address`] to the peer (on its command line), and
//! [`accept`](PairListener::accept)s; the peer calls [`ChannelBuilder::open`]. The bench and
//! the conformance suite drive every mechanism this way.
//!
//! Addresses: a path or `@name` (abstract) for Unix sockets, `host:port` for TCP and UDP, a
//! path for FIFOs (the pair uses `PATH.c2s` and `PATH.s2c`), `/name` for POSIX queues (the
//! pair uses `/name.c2s` and `/name.s2c`), a key for System V queues (the pair uses `KEY`
//! and `KEY + 1`), `fd:R,W` for pipes.
//!
//! By role: [`PairListener`] (`server.rs`), the peer's side (`client.rs`), the one-way
//! receiver ([`Receiver`], [`Listener`]) and sender (`oneway.rs`), over the shared opening
//! steps of `open.rs`; this file holds the [`ChannelBuilder`] they all start from.
//!
//! # Examples
//!
//! ```
//! use ipckit::connect::ChannelBuilder;
//! use ipckit::{Mechanism, Transport};
//! use std::time::Duration;
//! # fn main() -> std::io::Result<()> {
//! // Process 1
//! let mut listener = ChannelBuilder::new(Mechanism::Uds).create()?;
//! let addr = listener.address(); // pass to process 2
//! // Process 2 (another process in real use; a thread here, so that the example runs)
//! let process_2 = std::thread::spawn(move || -> std::io::Result<()> {
//!     let mut ep2 = ChannelBuilder::new(Mechanism::Uds).open(&addr)?;
//!     ep2.send(b"hello")?;
//!     Ok(())
//! });
//! // Process 1
//! let mut ep = listener.accept_timeout(Duration::from_secs(10))?;
//! drop(listener); // one peer per pair
//! let mut buf = vec![0; ep.max_msg_size()];
//! let n = ep.recv_timeout(&mut buf, Duration::from_secs(10))?;
//! assert_eq!(&buf[..n], b"hello");
//! # process_2.join().unwrap()?;
//! # Ok(()) }
//! ```

mod client;
mod oneway;
mod open;
mod server;

pub use oneway::{Listener, Receiver};
pub use server::PairListener;

use crate::dgram::DgramEndpoint;
use crate::registry;
use crate::shm::PairBuilder;
use crate::stream::StreamEndpoint;
use crate::transport::{Mechanism, Transport};
use crate::wait::Wait;
use std::io;
use std::time::Duration;

/// What a [`ChannelBuilder`] holds: how to make an endpoint.
#[derive(Debug, Clone, Copy)]
struct Options {
    /// Wait strategy of the endpoint.
    pub wait: Wait,
    /// Largest message; `None` takes the mechanism's default (1 MiB for streams and Unix
    /// datagrams, the system limit for queues and UDP).
    pub max_msg_size: Option<usize>,
    /// How long opening and connecting may wait for the peer.
    pub timeout: Duration,
    /// Permission bits of created objects (0600).
    pub mode: u32,
    /// Pipe capacity to set (pipes), within `/proc/sys/fs/pipe-max-size`.
    pub pipe_capacity: Option<usize>,
    /// Accept peers of any uid on Unix sockets (by default a peer of another uid is refused).
    pub allow_other_users: bool,
    /// Shared memory: the data area of each ring (a power of two; `None` for
    /// [`crate::shm::DEFAULT_CAPACITY`], or more if `max_msg_size` needs it).
    pub shm_capacity: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            wait: Wait::Block,
            max_msg_size: None,
            timeout: Duration::from_secs(5),
            mode: 0o600,
            pipe_capacity: None,
            allow_other_users: false,
            shm_capacity: None,
        }
    }
}

impl Options {
    /// The shared-memory pair builder these options mean, for the segment `name` (the
    /// timeout is the accept's: `ShmListener::accept_timeout`).
    fn pair(&self, name: &str) -> PairBuilder {
        let mut b = PairBuilder::new(name)
            .wait(self.wait)
            .mode(self.mode)
            .populate(true);
        if let Some(m) = self.max_msg_size {
            b = b.max_msg_size(m);
        }
        if let Some(c) = self.shm_capacity {
            b = b.capacity(c);
        }
        b
    }
}

/// Makes either side of a channel of any [`Mechanism`], from a string address: the server's
/// [`create`](ChannelBuilder::create) / [`create_at`](ChannelBuilder::create_at) (a
/// [`PairListener`] for one peer) and the peer's [`open`](ChannelBuilder::open); for one-way
/// channels, [`create_receiver`](ChannelBuilder::create_receiver) and
/// [`open_sender`](ChannelBuilder::open_sender). See the [module docs](self) for the
/// addresses.
///
/// Defaults: [`Wait::Block`], the mechanism's largest message (1 MiB for streams and Unix
/// datagrams, the system limit for queues and UDP), a 5 s timeout, mode 0600, peers of our
/// own uid only. The builder is `Copy`: one builder can make several endpoints.
///
/// # Examples
///
/// ```
/// use ipckit::connect::ChannelBuilder;
/// use ipckit::{Mechanism, Transport, Wait};
/// use std::time::Duration;
/// # fn main() -> std::io::Result<()> {
/// let chan = ChannelBuilder::new(Mechanism::MqPosix)
///     .wait(Wait::ADAPTIVE)
///     .timeout(Duration::from_secs(10));
/// // Process 1
/// let mut listener = chan.create()?; // owner-only, exclusive
/// let address = listener.address(); // give it to process 2
/// // Process 2 (another process in real use; a thread here, so that the example runs)
/// let process_2 = std::thread::spawn(move || -> std::io::Result<()> {
///     let mut ep = chan.open(&address)?;
///     ep.send(b"ping")?;
///     Ok(())
/// });
/// // Process 1
/// let mut ep = listener.accept_timeout(Duration::from_secs(10))?;
/// # let mut buf = vec![0; ep.max_msg_size()];
/// # assert_eq!(ep.recv_timeout(&mut buf, Duration::from_secs(10))?, 4);
/// # process_2.join().unwrap()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
#[must_use = "a builder does nothing until create() or open()"]
pub struct ChannelBuilder {
    mech: Mechanism,
    opts: Options,
}

impl ChannelBuilder {
    /// A builder for `mech`, with the defaults above.
    pub fn new(mech: Mechanism) -> ChannelBuilder {
        ChannelBuilder {
            mech,
            opts: Options::default(),
        }
    }

    /// Wait strategy of the endpoints ([`Wait::Block`] by default).
    pub fn wait(mut self, wait: Wait) -> Self {
        self.opts.wait = wait;
        self
    }

    /// Largest message, in bytes (by default the mechanism's: 1 MiB for streams and Unix
    /// datagrams, the system limit for queues and UDP).
    pub fn max_msg_size(mut self, max_msg_size: usize) -> Self {
        self.opts.max_msg_size = Some(max_msg_size);
        self
    }

    /// How long opening and connecting may wait for the peer (5 s by default), and the
    /// one-way receivers' hello; a [`PairListener`] waits as its accept call says.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.opts.timeout = timeout;
        self
    }

    /// Permission bits of created objects (0600 by default). Ignored by the `open` side.
    pub fn mode(mut self, mode: u32) -> Self {
        self.opts.mode = mode;
        self
    }

    /// The buffer, in bytes, of the mechanisms that have one to size: a pipe's capacity
    /// (within `/proc/sys/fs/pipe-max-size`), or the data area of each shared-memory ring (a
    /// power of two; by default [`crate::shm::DEFAULT_CAPACITY`], or more if the largest
    /// message needs it). Ignored by the other mechanisms and by the `open` side.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.opts.pipe_capacity = Some(capacity);
        self.opts.shm_capacity = Some(capacity);
        self
    }

    /// Accept peers of any uid on Unix sockets, and queues and FIFOs other users own or may
    /// write (by default a peer or an object of another uid is refused). IP peers have no
    /// credentials to check: this does not apply to them.
    pub fn allow_other_users(mut self, allow: bool) -> Self {
        self.opts.allow_other_users = allow;
        self
    }

    /// Creates the server side of a pair at a fresh address of the mechanism (a new
    /// `ipckit-` name in the temp dir or queue namespace; loopback with a kernel-chosen port
    /// for TCP and UDP): owner-only, exclusive, removed when the listener (or the endpoint it
    /// accepts) drops.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for eventfd (not a message transport), or the OS error.
    pub fn create(self) -> io::Result<PairListener> {
        let addr = match self.mech {
            Mechanism::Pipe => String::new(),
            Mechanism::Fifo | Mechanism::Uds | Mechanism::UdsDgram | Mechanism::UdsSeqpacket => {
                open::default_path(self.mech).to_string_lossy().into_owned()
            }
            Mechanism::Tcp | Mechanism::Udp => "127.0.0.1:0".to_owned(),
            Mechanism::MqPosix => format!("/{}", registry::unique_name("mq")),
            Mechanism::MqSysv => String::new(),
            Mechanism::Shm => format!("/{}", registry::unique_name("shm")),
            Mechanism::Eventfd => {
                return Err(crate::error::invalid(
                    "eventfd carries no messages: use ipckit::eventfd",
                ))
            }
        };
        self.create_at(&addr)
    }

    /// Creates the server side of a pair at `addr` (ignored for pipes and System V pairs,
    /// which choose their own).
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if the address is taken, `InvalidInput` for an address of the wrong
    /// form, or the OS error.
    pub fn create_at(self, addr: &str) -> io::Result<PairListener> {
        PairListener::create_at(self.mech, addr, &self.opts)
    }

    /// Opens the peer's side of a pair a [`PairListener`] created at `addr`.
    ///
    /// # Errors
    ///
    /// `NotFound`/`ConnectionRefused` when nothing is there, `TimedOut` when the peer does
    /// not answer within the timeout, `InvalidInput` for an address of the wrong form, or
    /// the OS error.
    pub fn open(self, addr: &str) -> io::Result<Box<dyn Transport>> {
        client::connect(self.mech, addr, &self.opts)
    }

    /// [`open`](ChannelBuilder::open) for the byte-stream mechanisms (Unix stream sockets,
    /// TCP, FIFOs, pipes), with the endpoint's own type: it implements `AsFd`, for epoll or
    /// an async runtime.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a mechanism that is not a byte stream; as
    /// [`open`](ChannelBuilder::open).
    pub fn open_stream(self, addr: &str) -> io::Result<StreamEndpoint> {
        client::connect_stream(self.mech, addr, &self.opts)
    }

    /// [`open`](ChannelBuilder::open) for the message-socket mechanisms (Unix datagram and
    /// seqpacket sockets, UDP), with the endpoint's own type: it implements `AsFd`, for epoll
    /// or an async runtime.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for another mechanism; as [`open`](ChannelBuilder::open).
    pub fn open_dgram(self, addr: &str) -> io::Result<DgramEndpoint> {
        client::connect_dgram(self.mech, addr, &self.opts)
    }

    /// Makes or opens the receiving side of a one-way channel at `addr`, as `ipckit recv`
    /// does: the object is created (owner-only, recorded, removed on drop) when it does not
    /// exist and used when it does (FIFOs and queues). No hello is expected: any program may
    /// send.
    ///
    /// A FIFO receiver outlives its writers: when the last one closes it waits for the next,
    /// and a message left unfinished when the last writer closed is dropped and counted
    /// ([`Transport::dropped`]), never joined to the next writer's bytes. Writers that overlap
    /// share one byte stream: a fragment one of them leaves while another is connected cannot
    /// be told apart (ipckit's own senders write each message whole, in one `write` of at
    /// most [`crate::fifo::ATOMIC_WRITE`] bytes).
    ///
    /// TCP and UDP bind `addr` as given (`0.0.0.0:PORT` or `[::]:PORT` for every interface).
    /// An IP peer has no credentials to check, so
    /// [`allow_other_users`](ChannelBuilder::allow_other_users) does not apply: any host that
    /// can reach the address may send.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an address of the wrong form, `AlreadyExists` for a socket address
    /// in use, or the OS error.
    pub fn create_receiver(self, addr: &str) -> io::Result<Receiver> {
        oneway::open_receiver(self.mech, addr, &self.opts)
    }

    /// Opens the sending side of a one-way channel to an existing receiver at `addr`, as
    /// `ipckit send` does.
    ///
    /// A Unix datagram sender first has the receiver answer a hello whose credentials are
    /// checked against the policy ([`DgramEndpoint`]): the receiver must be receiving
    /// meanwhile. Queue senders are one-way senders that learn of their receiver's end while
    /// they wait for room ([`crate::mq`]).
    ///
    /// # Errors
    ///
    /// `NotFound`/`ConnectionRefused`/`TimedOut` when no receiver is there (for a Unix
    /// datagram socket, also one that does not answer the hello: not an ipckit receiver),
    /// `PermissionDenied` for a datagram receiver of a refused uid, `InvalidInput` for an
    /// address of the wrong form, or the OS error.
    pub fn open_sender(self, addr: &str) -> io::Result<Box<dyn Transport>> {
        oneway::open_sender(self.mech, addr, &self.opts)
    }
}

/// The largest UDP payload over IPv4 (65,535 - 8 - 20).
pub const UDP_MAX_V4: usize = 65_507;
/// The largest UDP payload over IPv6 (65,535 - 8).
pub const UDP_MAX_V6: usize = 65_527;
