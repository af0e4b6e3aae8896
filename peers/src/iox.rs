//! iceoryx2 through the harness's [`Channel`]: its IPC service (`ipc::Service`), publish-subscribe
//! over shared memory.
//!
//! Services of one session, under a unique prefix:
//! - `PREFIX/ping` (parent publishes, peer subscribes) and `PREFIX/pong` (the other way) for
//!   the round trips: the two-service ping-pong of iceoryx2's own benchmark;
//! - `PREFIX/stream` (parent to peer) for the one-way stream, with a deeper subscriber buffer;
//! - for the `block` rows, one event service beside each of those (`…/ev`): the sender
//!   notifies after every send and the receiver sleeps on its listener when no sample is
//!   waiting, which is how iceoryx2 combines publish-subscribe with event-based waiting. The
//!   `spin` rows busy-poll `Subscriber::receive`, as iceoryx2's benchmark does.
//!
//! Every service refuses to overflow (`enable_safe_overflow(false)`) and every publisher
//! retries until delivered, so the stream is reliable and the harness can require every
//! message; the default safe overflow would silently drop the oldest samples. Publishers are
//! made with `initial_max_slice_len(size)` (the static allocation strategy), so the data
//! segment holds messages of the measured size, up to 64 KiB and beyond.
//!
//! iceoryx2 is zero-copy natively: a sender may build its message in a loaned sample and a
//! receiver read it in place. The rows here are the *copy* style, the same contract every other
//! row has: the sender's payload is copied from the harness's buffer into the loaned sample
//! (`write_from_slice`), and the receiver copies the sample into its buffer before verifying.

use ipckit_bench::scenario::Channel;
use std::fmt::Debug;
use std::io;
use std::time::{Duration, Instant};

use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::port::{BackpressureAction, BackpressureInfo};
use iceoryx2::prelude::*;

type Svc = ipc::Service;

/// How long a receive, or a send retrying into a full buffer, may make no progress before the
/// session fails: the peer is gone or stuck (iceoryx2 has no connection to report it).
const STALL: Duration = Duration::from_secs(10);

fn err<E: Debug>(what: &'static str) -> impl Fn(E) -> io::Error {
    move |e| io::Error::other(format!("iceoryx2: {what}: {e:?}"))
}

/// The names of one session's services.
fn name(prefix: &str, what: &str) -> io::Result<ServiceName> {
    ServiceName::new(&format!("{prefix}/{what}")).map_err(err("service name"))
}

/// One process's node; ports keep what they need of it alive. iceoryx2's built-in defaults
/// (no config file is read, so a stray `iceoryx2.toml` cannot change a row); everything a row
/// needs beyond them is set on the services and ports below.
fn node() -> io::Result<Node<Svc>> {
    NodeBuilder::new()
        .config(&Config::default())
        // Leave SIGINT/SIGTERM to their defaults: Ctrl-C stops a run at once.
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<Svc>()
        .map_err(err("node"))
}

/// Quiets iceoryx2's console logger to warnings unless `IOX2_LOG_LEVEL` says otherwise.
pub fn init_logging() {
    set_log_level_from_env_or(LogLevel::Warn);
}

/// One endpoint: a publisher, a subscriber, or both, with their event ports in `block` mode.
pub struct IoxChannel {
    tx: Option<Publisher<Svc, [u8], ()>>,
    rx: Option<Subscriber<Svc, [u8], ()>>,
    notifier: Option<Notifier<Svc>>,
    listener: Option<Listener<Svc>>,
}

impl Debug for IoxChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoxChannel")
            .field("tx", &self.tx.is_some())
            .field("rx", &self.rx.is_some())
            .field("block", &self.listener.is_some())
            .finish()
    }
}

impl IoxChannel {
    fn receive_into(&self, buf: &mut [u8], deadline: Instant) -> io::Result<Option<usize>> {
        let rx = self
            .rx
            .as_ref()
            .ok_or_else(|| io::Error::other("iceoryx2: this endpoint does not receive"))?;
        let mut spins: u32 = 0;
        loop {
            if let Some(sample) = rx.receive().map_err(err("receive"))? {
                let p = sample.payload();
                let n = p.len();
                let dst = buf.get_mut(..n).ok_or_else(|| {
                    io::Error::other(format!("iceoryx2: a {n} B sample exceeds the buffer"))
                })?;
                dst.copy_from_slice(p);
                return Ok(Some(n));
            }
            match &self.listener {
                Some(l) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    // Sleeps until the sender's notification (or one already pending); the
                    // loop then takes the sample.
                    l.timed_wait(|_| {}, left).map_err(err("listener wait"))?;
                }
                None => {
                    std::hint::spin_loop();
                    spins = spins.wrapping_add(1);
                    if spins.is_multiple_of(1 << 14) && Instant::now() >= deadline {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

impl Channel for IoxChannel {
    fn send(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| io::Error::other("iceoryx2: this endpoint does not send"))?;
        let sample = tx.loan_slice_uninit(buf.len()).map_err(err("loan"))?;
        // Copy style (see the module doc): iceoryx2 could have the payload built in place.
        let sample = sample.write_from_slice(buf);
        let delivered = sample.send().map_err(err("send"))?;
        if delivered == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "iceoryx2: no subscriber received the sample",
            ));
        }
        if let Some(n) = &self.notifier {
            n.notify().map_err(err("notify"))?;
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8], _expect: usize) -> io::Result<usize> {
        self.receive_into(buf, Instant::now() + STALL)?
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("iceoryx2: nothing received for {STALL:?} (peer gone?)"),
                )
            })
    }

    fn recv_timeout(
        &mut self,
        buf: &mut [u8],
        _expect: usize,
        timeout: Duration,
    ) -> io::Result<Option<usize>> {
        self.receive_into(buf, Instant::now() + timeout)
    }
}

/// What the parent creates before spawning the peer, and the peer opens.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Payload bytes of every message (the publishers' max slice length).
    pub size: usize,
    /// Event-based waiting (`block`) instead of busy-polling (`spin`).
    pub block: bool,
    /// Subscriber buffer of the stream service, in samples.
    pub stream_buffer: usize,
}

/// The parent's side of a session: creates the services (so they are gone when it drops).
pub struct Parent {
    _node: Node<Svc>,
    /// Ping out, pong in.
    pub lat: IoxChannel,
    /// Stream out.
    pub stream: IoxChannel,
}

impl Debug for Parent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parent")
            .field("lat", &self.lat)
            .field("stream", &self.stream)
            .finish()
    }
}

/// Retry while the subscriber's buffer is full, for at most [`STALL`].
fn backpressure(info: &BackpressureInfo) -> BackpressureAction {
    if info.elapsed_time < STALL {
        BackpressureAction::Retry
    } else {
        BackpressureAction::DiscardDataAndFail
    }
}

fn publisher(
    node: &Node<Svc>,
    prefix: &str,
    what: &str,
    l: &Layout,
    buffer: usize,
) -> io::Result<Publisher<Svc, [u8], ()>> {
    let svc = node
        .service_builder(&name(prefix, what)?)
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(1)
        .history_size(0)
        .subscriber_max_buffer_size(buffer)
        .enable_safe_overflow(false)
        .create()
        .map_err(err("create publish-subscribe service"))?;
    svc.publisher_builder()
        .initial_max_slice_len(l.size)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .set_backpressure_handler(backpressure)
        .create()
        .map_err(err("create publisher"))
}

fn open_publisher(
    node: &Node<Svc>,
    prefix: &str,
    what: &str,
    l: &Layout,
) -> io::Result<Publisher<Svc, [u8], ()>> {
    let svc = node
        .service_builder(&name(prefix, what)?)
        .publish_subscribe::<[u8]>()
        .open()
        .map_err(err("open publish-subscribe service"))?;
    svc.publisher_builder()
        .initial_max_slice_len(l.size)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .set_backpressure_handler(backpressure)
        .create()
        .map_err(err("create publisher"))
}

fn create_subscriber(
    node: &Node<Svc>,
    prefix: &str,
    what: &str,
    buffer: usize,
) -> io::Result<Subscriber<Svc, [u8], ()>> {
    let svc = node
        .service_builder(&name(prefix, what)?)
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(1)
        .history_size(0)
        .subscriber_max_buffer_size(buffer)
        .enable_safe_overflow(false)
        .create()
        .map_err(err("create publish-subscribe service"))?;
    svc.subscriber_builder()
        .buffer_size(buffer)
        .create()
        .map_err(err("create subscriber"))
}

fn open_subscriber(
    node: &Node<Svc>,
    prefix: &str,
    what: &str,
) -> io::Result<Subscriber<Svc, [u8], ()>> {
    let svc = node
        .service_builder(&name(prefix, what)?)
        .publish_subscribe::<[u8]>()
        .open()
        .map_err(err("open publish-subscribe service"))?;
    let buffer = svc.static_config().subscriber_max_buffer_size();
    svc.subscriber_builder()
        .buffer_size(buffer)
        .create()
        .map_err(err("create subscriber"))
}

fn event(node: &Node<Svc>, prefix: &str, what: &str, create: bool) -> io::Result<EventPorts> {
    let b = node
        .service_builder(&name(prefix, &format!("{what}/ev"))?)
        .event();
    let svc = if create {
        b.max_notifiers(1)
            .max_listeners(1)
            .create()
            .map_err(err("create event service"))?
    } else {
        b.open().map_err(err("open event service"))?
    };
    Ok(EventPorts(svc))
}

struct EventPorts(iceoryx2::service::port_factory::event::PortFactory<Svc>);

impl EventPorts {
    fn notifier(&self) -> io::Result<Notifier<Svc>> {
        self.0
            .notifier_builder()
            .create()
            .map_err(err("create notifier"))
    }
    fn listener(&self) -> io::Result<Listener<Svc>> {
        self.0
            .listener_builder()
            .create()
            .map_err(err("create listener"))
    }
}

impl Parent {
    /// Creates the session's services under `prefix` and the parent's ports.
    pub fn create(prefix: &str, l: &Layout) -> io::Result<Parent> {
        let node = node()?;
        let ping = publisher(&node, prefix, "ping", l, 1)?;
        let pong = create_subscriber(&node, prefix, "pong", 1)?;
        let stream = publisher(&node, prefix, "stream", l, l.stream_buffer)?;
        let (mut lat, mut st) = (
            IoxChannel {
                tx: Some(ping),
                rx: Some(pong),
                notifier: None,
                listener: None,
            },
            IoxChannel {
                tx: Some(stream),
                rx: None,
                notifier: None,
                listener: None,
            },
        );
        if l.block {
            lat.notifier = Some(event(&node, prefix, "ping", true)?.notifier()?);
            lat.listener = Some(event(&node, prefix, "pong", true)?.listener()?);
            st.notifier = Some(event(&node, prefix, "stream", true)?.notifier()?);
        }
        Ok(Parent {
            _node: node,
            lat,
            stream: st,
        })
    }
}

/// The peer's side: opens what the parent created.
pub struct Peer {
    _node: Node<Svc>,
    /// Ping in, pong out.
    pub lat: IoxChannel,
    /// Stream in.
    pub stream: IoxChannel,
}

impl Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("lat", &self.lat)
            .field("stream", &self.stream)
            .finish()
    }
}

impl Peer {
    /// Opens the session's services under `prefix` and creates the peer's ports.
    pub fn open(prefix: &str, l: &Layout) -> io::Result<Peer> {
        let node = node()?;
        let mut lat = IoxChannel {
            tx: Some(open_publisher(&node, prefix, "pong", l)?),
            rx: Some(open_subscriber(&node, prefix, "ping")?),
            notifier: None,
            listener: None,
        };
        let mut st = IoxChannel {
            tx: None,
            rx: Some(open_subscriber(&node, prefix, "stream")?),
            notifier: None,
            listener: None,
        };
        if l.block {
            lat.listener = Some(event(&node, prefix, "ping", false)?.listener()?);
            lat.notifier = Some(event(&node, prefix, "pong", false)?.notifier()?);
            st.listener = Some(event(&node, prefix, "stream", false)?.listener()?);
        }
        Ok(Peer {
            _node: node,
            lat,
            stream: st,
        })
    }
}
