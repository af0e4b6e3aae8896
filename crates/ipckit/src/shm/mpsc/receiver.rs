//! The consumer's handle: [`MpscReceiver`] creates the queue and receives from every
//! producer.

use super::layout::{geometry, views, ShmQueue, ENTRY_DEAD, MPSC_LAYOUT};
use super::queue::{pack, wake_space, Consumer, Head, QueueMem, FREE, MAX_PRODUCERS, TAG_MASK};
use super::watch::{Watch, SCAN};
use crate::peer::Hello;
use crate::shm::hello::put_hello;
use crate::shm::segment::{Segment, SegmentBuilder};
use crate::shm::sync::{futex_wake, Ordering};
use crate::shm::wait::wait_on;
use crate::wait::{Deadline, Wait};
use crate::RecvError;
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

/// The consumer of an MPSC queue: creates the segment and receives from every producer.
///
/// ```
/// use ipckit::shm::MpscBuilder;
/// use ipckit::Wait;
/// use std::time::Duration;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let jobs = format!("/doc-jobs-{}", std::process::id()); // unique: examples run at once
/// # let name = jobs.clone();
/// // Process 1: the one consumer.
/// let mut rx = MpscBuilder::new(&jobs) // e.g. "/jobs"; owner-only, exclusive
///     .slots(1024)
///     .slot_size(240)
///     .create()?;
///
/// // Processes 2, 3, ...: any number of producers (other processes in real use; a thread
/// // here, so that the example runs).
/// let process_2 = std::thread::spawn(move || -> std::io::Result<()> {
///     let mut tx = MpscBuilder::new(&name).wait(Wait::Block).open()?;
///     tx.send_timeout(b"job 1", Duration::from_secs(10))?; // PeerGone if the consumer dies
///     Ok(())
/// });
///
/// // Process 1
/// let mut buf = vec![0; rx.max_msg_size()];
/// // PeerGone once every producer is gone and all is read.
/// let n = rx.recv_timeout(&mut buf, Duration::from_secs(10))?;
/// assert_eq!(&buf[..n], b"job 1");
/// # process_2.join().unwrap()?;
/// # Ok(()) }
/// ```
///
/// # Producers that come and go
///
/// [`MpscReceiver::recv`] returns [`RecvError::PeerGone`] once at least one producer has
/// opened the queue, none is attached now, and every message published has been read.
/// Before the first producer opens, `recv` waits; after `PeerGone`, a producer that opens
/// makes it wait and deliver again.
///
/// The receiver looks at the producer table at once when a producer opens the queue or is
/// dropped, and every 20 ms while it waits. It watches each producer with a pidfd, and a
/// small thread per producer waits on that pidfd and wakes the receiver when the producer
/// ends. So a producer that exits or is SIGKILLed is noticed at once: measured here,
/// `PeerGone` came 0.3-0.5 ms after the last producer was killed.
///
/// A producer killed between claiming a slot and publishing it (at any step: claimed, half
/// written, written but not published) leaves the slot claimed. While the claimer lives, the
/// receiver waits for it (it is a send in progress); once it is dead, the receiver skips the
/// slot and counts it in [`MpscReceiver::dropped`] (measured: 0.4-0.5 ms after the kill).
/// Everything it published before is delivered.
///
/// # Limits
///
/// - Slots are taken in order, so a producer *stopped* (SIGSTOP, a debugger) between its
///   claim and its publish holds up the receiver until it runs again; the others fill the
///   queue and wait. Only death is detected, not slowness.
/// - A producer in another pid namespace or on another kernel cannot be watched: its death
///   is never noticed (its claim is never skipped, and `PeerGone` does not come while it is
///   registered). Its clean drop is seen as any other.
/// - At most [`MAX_PRODUCERS`] producers at once; each watched producer costs the receiver
///   a thread asleep in `poll` (and two descriptors) while it is attached.
/// - A receiver that is killed cannot unlink the segment: `ipckit clean` removes it, as its
///   registry record names a dead creator.
/// - A slot freed wakes every producer asleep on a full queue; they race for it and the
///   others sleep again.
pub struct MpscReceiver {
    q: ShmQueue,
    cons: Consumer,
    slots: usize,
    max: usize,
    wait: Wait,
    woke_up_at: Option<Instant>,
    watch: Watch,
    lost: u64,
    seg: Segment,
}

impl fmt::Debug for MpscReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpscReceiver")
            .field("segment", &self.seg)
            .field("slots", &self.slots)
            .field("max", &self.max)
            .field("wait", &self.wait)
            .field("lost", &self.lost)
            .finish()
    }
}

impl MpscReceiver {
    /// Creates the queue segment with `seg`'s name and settings (see
    /// [`MpscBuilder::create`](super::MpscBuilder::create)).
    pub(super) fn create(
        seg: SegmentBuilder,
        slots: usize,
        slot_size: usize,
        wait: Wait,
    ) -> io::Result<MpscReceiver> {
        let (stride, total) = geometry(slots, slot_size)?;
        let mut seg = seg.size(total).layout(MPSC_LAYOUT).create()?;
        let q = views(&seg, slots, stride)?;
        q.hdr.slots.store(slots as u64, Ordering::Relaxed);
        q.hdr.slot_size.store(slot_size as u64, Ordering::Relaxed);
        q.hdr.stride.store(stride as u64, Ordering::Relaxed);
        q.hdr
            .max_producers
            .store(MAX_PRODUCERS as u64, Ordering::Relaxed);
        put_hello(&q.hdr.receiver, &Hello::mine());
        // Slot `i` waits for position `i` (slot 0's zeroes already say so).
        for i in 1..slots {
            q.seq(i).store(pack(i as u64, FREE), Ordering::Relaxed);
        }
        // The magic's Release store publishes all of the above.
        seg.publish();
        let mut rx = MpscReceiver {
            q,
            cons: Consumer::new(slots, slot_size),
            slots,
            max: slot_size,
            wait: Wait::Spin,
            woke_up_at: None,
            watch: Watch::new(),
            lost: 0,
            seg,
        };
        rx.set_wait_strategy(wait);
        Ok(rx)
    }

    /// The segment's name, for the producers.
    pub fn name(&self) -> &str {
        self.seg.name().unwrap_or("")
    }

    /// The segment behind the queue.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The largest message: the slot size.
    pub fn max_msg_size(&self) -> usize {
        self.max
    }

    /// The wait strategy.
    pub fn wait_strategy(&self) -> Wait {
        self.wait
    }

    /// Changes the wait strategy; publishes whether the receiver may now sleep.
    pub fn set_wait_strategy(&mut self, wait: Wait) {
        let sleeps = u32::from(wait != Wait::Spin);
        if self.q.ctl.rx.may_sleep.swap(sleeps, Ordering::SeqCst) == 0 && sleeps == 1 {
            self.woke_up_at = Some(Instant::now());
        }
        self.wait = wait;
    }

    /// Messages lost: slots claimed by a producer that died before publishing them (and
    /// slots whose contents were corrupt), skipped.
    pub fn dropped(&self) -> u64 {
        self.lost
    }

    /// Producers attached at the last look at the table (the consumer looks while it waits).
    pub fn producers(&self) -> usize {
        self.watch.present
    }

    /// Receives one message into `buf`, waiting under the wait strategy.
    ///
    /// # Errors
    ///
    /// [`RecvError::PeerGone`] once producers have opened the queue, none is attached now
    /// (each was dropped, exited or was killed) and every message published has been read;
    /// before any producer opens it, `recv` waits. [`RecvError::BufferTooSmall`] (the message
    /// is left in place); `Io(InvalidData)` for a slot no correct producer wrote (skipped
    /// and counted in [`MpscReceiver::dropped`]).
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_deadline(buf, Deadline::Never)
    }

    /// Receives a message if one is ready now.
    ///
    /// # Errors
    ///
    /// [`RecvError::Empty`], or as [`MpscReceiver::recv`].
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_deadline(buf, Deadline::Now)
    }

    /// Receives a message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvError::Timeout`], or as [`MpscReceiver::recv`].
    pub fn recv_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, RecvError> {
        self.recv_deadline(buf, Deadline::after(timeout))
    }

    /// Receives a message, waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As [`MpscReceiver::recv`], [`MpscReceiver::try_recv`] and
    /// [`MpscReceiver::recv_timeout`].
    #[inline]
    pub fn recv_deadline(
        &mut self,
        buf: &mut [u8],
        deadline: Deadline,
    ) -> Result<usize, RecvError> {
        let len = match self.cons.peek(&self.q) {
            Head::Ready(len) => len,
            _ => self.next(deadline)?,
        };
        if len > buf.len() {
            return Err(RecvError::BufferTooSmall { needed: len });
        }
        self.cons.read(&self.q, &mut buf[..len]);
        self.cons.release(&self.q);
        wake_space(&self.q.ctl.tx);
        // A consumer that never waits still looks at the table now and then, so the
        // entries of dead producers are reused.
        self.watch.received = self.watch.received.wrapping_add(1);
        if self.watch.received.is_multiple_of(4096) && self.watch.due(&self.q) {
            self.lost += self.watch.scan(&self.q, &mut self.cons);
        }
        Ok(len)
    }

    #[cold]
    fn next(&mut self, deadline: Deadline) -> Result<usize, RecvError> {
        let q = self.q;
        let (cons, watch, lost) = (&mut self.cons, &mut self.watch, &mut self.lost);
        wait_on(
            self.wait,
            deadline,
            &q.ctl.rx,
            &mut self.woke_up_at,
            Some(SCAN),
            |slow| {
                let mut scanned = false;
                loop {
                    match cons.peek(&q) {
                        Head::Ready(len) => return Ok(Some(len)),
                        Head::Corrupt(w) => {
                            let pos = cons.head();
                            cons.skip(&q);
                            wake_space(&q.ctl.tx);
                            *lost += 1;
                            return Err(RecvError::Io(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!(
                                    "corrupt MPSC slot: word {w:#018x} at position {pos} (a \
                                     process wrote outside the protocol); skipped"
                                ),
                            )));
                        }
                        Head::Claimed(idx) => {
                            // A claim in progress, unless its producer is known dead (found
                            // so by an earlier scan, while the consumer was further back).
                            let dead =
                                q.entry(idx).state.load(Ordering::Acquire) & TAG_MASK == ENTRY_DEAD;
                            if scanned || !(dead || slow && watch.due(&q)) {
                                return Ok(None);
                            }
                        }
                        Head::Empty => {
                            if scanned || watch.still_gone(&q) {
                                // Whatever the producers published before leaving was
                                // delivered first: this look at the queue came after the
                                // look at the table.
                                return if watch.gone {
                                    Err(RecvError::PeerGone)
                                } else {
                                    Ok(None)
                                };
                            }
                            if !slow || !watch.due(&q) {
                                return Ok(None);
                            }
                        }
                    }
                    *lost += watch.scan(&q, cons);
                    scanned = true;
                }
            },
        )
    }
}

impl Drop for MpscReceiver {
    fn drop(&mut self) {
        // Producers see PeerGone from now on; wake those asleep on a full queue.
        self.q.ctl.rx.closed.store(1, Ordering::Release);
        self.q.ctl.tx.seq.fetch_add(1, Ordering::SeqCst);
        futex_wake(&self.q.ctl.tx.seq);
        // The segment (last field) unlinks the name and removes the registry record.
    }
}
