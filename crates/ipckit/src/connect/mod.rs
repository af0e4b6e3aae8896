//! Making a connected pair of endpoints across two processes, for any mechanism, from a
//! string address: the server creates the kernel objects ([`Server::create`]), hands
//! [`Server::address`] to the peer (on its command line), and [`Server::accept`]s; the peer
//! calls [`connect`]. The bench and the conformance suite drive every mechanism this way.
//!
//! Addresses: a path or `@name` (abstract) for Unix sockets, `host:port` for TCP and UDP, a
//! path for FIFOs (the pair uses `PATH.c2s` and `PATH.s2c`), `/name` for POSIX queues (the
//! pair uses `/name.c2s` and `/name.s2c`), a key for System V queues (the pair uses `KEY`
//! and `KEY + 1`), `fd:R,W` for pipes.
//!
//! By role: [`Server`] (`server.rs`), [`connect`] (`client.rs`), the one-way [`open_receiver`]
//! and [`open_sender`] (`oneway.rs`), over the shared opening steps of `open.rs`; this file
//! holds the [`Options`] they all take.
//!
//! # Examples
//!
//! ```no_run
//! use ipckit::connect::{connect, Options, Server};
//! use ipckit::{Mechanism, Transport};
//! # fn main() -> std::io::Result<()> {
//! // Process 1
//! let server = Server::create(Mechanism::Uds, &Options::default())?;
//! let addr = server.address(); // pass to process 2
//! let mut ep = server.accept()?;
//! let mut buf = vec![0; ep.max_msg_size()];
//! let n = ep.recv(&mut buf)?;
//! // Process 2
//! let mut ep2 = connect(Mechanism::Uds, &addr, &Options::default())?;
//! ep2.send(b"hello")?;
//! # Ok(()) }
//! ```

mod client;
mod oneway;
mod open;
mod server;

pub use client::{connect, connect_dgram, connect_stream};
pub use oneway::{open_receiver, open_sender, Listener, Receiver};
pub use open::{check_existing_queue, ip_addr};
pub use server::Server;

use crate::shm::PairBuilder;
use crate::wait::Wait;
use std::time::Duration;

/// How to make an endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Wait strategy of the endpoint.
    pub wait: Wait,
    /// Largest message; `None` takes the mechanism's default (1 MiB for streams and Unix
    /// datagrams, the system limit for queues and UDP).
    pub max_msg_size: Option<usize>,
    /// How long opening, connecting and accepting may wait for the peer.
    pub timeout: Duration,
    /// Permission bits of created objects (0600).
    pub mode: u32,
    /// Pipe capacity to set (pipes and FIFOs), within `/proc/sys/fs/pipe-max-size`.
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

/// The largest UDP payload over IPv4 (65,535 - 8 - 20).
pub const UDP_MAX_V4: usize = 65_507;
/// The largest UDP payload over IPv6 (65,535 - 8).
pub const UDP_MAX_V6: usize = 65_527;
