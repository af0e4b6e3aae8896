//! # ipckit
//!
//! Every way Linux processes talk, behind one trait.
//!
//! Each mechanism that carries messages (anonymous pipes, named FIFOs, Unix stream, datagram
//! and seqpacket sockets, TCP, UDP, POSIX and System V message queues) implements
//! [`Transport`]: `send`/`try_send`/`send_timeout` a whole message, and
//! `recv`/`try_recv`/`recv_timeout` one into your buffer. Byte streams are framed
//! ([`framing`]); every endpoint enforces a maximum message size; every endpoint has a
//! [`Wait`] strategy (block, spin, or spin-then-block). eventfd, a counter rather than a
//! carrier, implements [`Notify`]. Signals, with their siginfo and `sigqueue` payloads, are
//! in [`signal`]. [`pipeline`] runs `a | b | c` the way a shell does, without the shell.
//! [`unix`] listeners check a peer's credentials before reading a byte from it, make their
//! socket files safely and reclaim stale ones. Socket endpoints implement `AsFd` for
//! [`epoll`]; with the `tokio` feature, `ipckit::tokio` sends, receives and accepts
//! asynchronously.
//! [`zerocopy`] has `vmsplice`, `splice`, `sendfile` and `MSG_ZEROCOPY`, with senders that
//! never rewrite a page the kernel still references.
//!
//! ```
//! use ipckit::{pipe, Transport};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut rx, mut tx) = pipe::pipe()?;
//! tx.send(b"hello")?;
//! tx.send(b"")?; // empty messages are messages too
//! let mut buf = vec![0; rx.max_msg_size()];
//! let n = rx.recv(&mut buf)?;
//! assert_eq!(&buf[..n], b"hello");
//! assert_eq!(rx.recv(&mut buf)?, 0);
//! assert!(tx.send(&vec![0; tx.max_msg_size() + 1]).is_err()); // over the maximum: refused
//! # Ok(()) }
//! ```
//!
//! Across processes, a [`connect::ChannelBuilder`] makes a connected pair of any mechanism
//! from a string address:
//!
//! ```
//! use ipckit::connect::ChannelBuilder;
//! use ipckit::{Mechanism, Transport, Wait};
//! use std::time::Duration;
//! # fn main() -> std::io::Result<()> {
//! let chan = ChannelBuilder::new(Mechanism::MqPosix).wait(Wait::ADAPTIVE);
//! // Process 1
//! let mut listener = chan.create()?; // owner-only, exclusive
//! let address = listener.address(); // "/ipckit-<run>-mq-<pid>-0": give it to process 2
//!
//! // Process 2 (another process in real use; a thread here, so that the example runs)
//! let process_2 = std::thread::spawn(move || -> std::io::Result<()> {
//!     let mut ep = chan.open(&address)?;
//!     ep.send(b"ping")?;
//!     Ok(())
//! });
//!
//! // Process 1
//! let mut ep = listener.accept_timeout(Duration::from_secs(10))?; // process 2's hello
//! let mut buf = vec![0; ep.max_msg_size()];
//! let n = ep.recv_timeout(&mut buf, Duration::from_secs(10))?; // PeerGone if process 2 dies
//! assert_eq!(&buf[..n], b"ping");
//! # process_2.join().unwrap()?;
//! # Ok(()) }
//! ```
//!
//! ## Safety and hygiene
//!
//! - Every object ipckit creates is owner-only (0600), created exclusively, named
//!   `ipckit-<run>-...`, recorded in the [`registry`] with its creator's pid and start time,
//!   and removed when its owner drops it; `ipckit clean` removes those of dead owners.
//! - A peer that exits or is killed is noticed: by EOF/EPIPE on streams, and by a pidfd on
//!   the mechanisms without a connection (datagrams, queues), whose endpoints exchange a
//!   hello with their pids.
//! - Raw syscalls live in a private `sys` layer; the crate root denies `unsafe_code`.
//!
//! ## Conventions
//!
//! Every mechanism follows the same rules, so what you learn on one carries to the others.
//!
//! - **Making and attaching.** A named object (a path, a name or a key another process can
//!   find) is made through a builder, `XBuilder::new(name)`, whose setters take and return it
//!   by value (`.wait(..)`, `.max_msg_size(..)`, `.capacity(..)`, `.mode(..)`,
//!   `.timeout(..)`) and which ends in `.create()` (exclusive, owner-only unless `.mode(..)`,
//!   recorded, removed when its creator drops it) or `.open()` (attaches, never creates); a
//!   role that attaches differently has its own verb on the same builder (`.open_sender()`).
//!   An unnamed object (pipe, socketpair, eventfd, epoll) has `X::new()`, and a builder only
//!   where it has options. The generic entry point is [`connect::ChannelBuilder`].
//! - **Listeners.** Every type that accepts peers is a `...Listener` with `accept()`,
//!   `try_accept()` and `accept_timeout(Duration)`.
//! - **Time limits.** A blocking operation comes as `op()` (waits as long as it takes, under
//!   the object's [`Wait`]), `try_op()` (never waits: `WouldBlock`, `Empty`, `Full`) and
//!   `op_timeout(Duration)`; no method takes an `Option<Duration>`. The trait methods that
//!   compose waits take a [`Deadline`].
//! - **One name per concept.** The wait strategy is [`Wait`]: `.wait(..)` on a builder,
//!   `wait_strategy()` / `set_wait_strategy(..)` on a live endpoint; `max_msg_size` is the
//!   largest message, `capacity` a buffer's size in bytes, `mode` permission bits,
//!   `allow_other_users` the credential policy.
#![deny(unsafe_code, missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod connect;
mod dgram;
pub mod epoll;
mod error;
pub mod eventfd;
pub mod fifo;
pub mod framing;
pub mod fs;
pub mod inherit;
pub mod mq;
pub mod name;
pub mod net;
mod peer;
pub mod pipe;
pub mod pipeline;
pub mod process;
pub mod registry;
pub mod sched;
pub mod shm;
pub mod shutdown;
pub mod signal;
mod stream;
mod sys;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;
mod transport;
pub mod unix;
mod wait;
pub mod zerocopy;

pub use dgram::DgramEndpoint;
pub use error::{RecvError, SendError};
pub use stream::{StreamEndpoint, DEFAULT_STREAM_MAX, STREAM_MAX_LIMIT};
pub use transport::{Mechanism, Notify, PeerInfo, RawHandle, Transport};
pub use wait::{Deadline, Wait};
