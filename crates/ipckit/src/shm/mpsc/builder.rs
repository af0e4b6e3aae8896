//! [`MpscBuilder`]: how to make an MPSC queue (the receiver) or join one (a sender).

use super::receiver::MpscReceiver;
use super::sender::MpscSender;
use crate::shm::segment::SegmentBuilder;
use crate::wait::Wait;
use std::io;

/// Slots unless asked otherwise: with [`DEFAULT_SLOT_SIZE`], 256 KiB, the ring's default.
pub const DEFAULT_SLOTS: usize = 1024;
/// Payload bytes per slot unless asked otherwise: a slot is then four cache lines.
pub const DEFAULT_SLOT_SIZE: usize = 240;

/// How to make an MPSC queue, or join one as a producer: the segment's name, then setters,
/// then [`create`](MpscBuilder::create) (the one consumer: an [`MpscReceiver`]) or
/// [`open`](MpscBuilder::open) (a producer: an [`MpscSender`]).
///
/// # Examples
///
/// ```
/// use ipckit::shm::MpscBuilder;
/// # fn main() -> std::io::Result<()> {
/// # let jobs = format!("/doc-jobs-{}", std::process::id()); // unique: examples run at once
/// let rx = MpscBuilder::new(&jobs).slots(64).slot_size(1024).create()?; // e.g. "/jobs"
/// assert_eq!(rx.max_msg_size(), 1024);
/// # Ok(()) }
/// ```
///
/// [`MpscReceiver`] has an example across processes.
#[derive(Debug, Clone)]
pub struct MpscBuilder {
    name: String,
    slots: usize,
    slot_size: usize,
    wait: Wait,
    mode: u32,
    populate: bool,
}

impl MpscBuilder {
    /// A builder for the queue segment `name` (`/name` or `name`), with the defaults:
    /// [`DEFAULT_SLOTS`] slots of [`DEFAULT_SLOT_SIZE`] bytes, wait [`Wait::Block`], mode
    /// 0600, pages faulted in at creation.
    pub fn new(name: &str) -> MpscBuilder {
        MpscBuilder {
            name: name.to_owned(),
            slots: DEFAULT_SLOTS,
            slot_size: DEFAULT_SLOT_SIZE,
            wait: Wait::Block,
            mode: 0o600,
            populate: true,
        }
    }

    /// Number of slots: a power of two, at most [`MAX_SLOTS`](super::MAX_SLOTS). Ignored by
    /// [`MpscBuilder::open`]: the queue's header says it.
    pub fn slots(mut self, slots: usize) -> Self {
        self.slots = slots;
        self
    }

    /// Payload bytes per slot, the largest message (1 to
    /// [`MAX_SLOT_SIZE`](super::MAX_SLOT_SIZE)). Ignored by [`MpscBuilder::open`]: the
    /// queue's header says it.
    pub fn slot_size(mut self, slot_size: usize) -> Self {
        self.slot_size = slot_size;
        self
    }

    /// The wait strategy of the handle made: the receiver's, or the sender's (default
    /// [`Wait::Block`]).
    pub fn wait(mut self, wait: Wait) -> Self {
        self.wait = wait;
        self
    }

    /// Permission bits of the segment (default 0600). Ignored by [`MpscBuilder::open`].
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Fault the pages in at creation (`MAP_POPULATE`; default on). Ignored by
    /// [`MpscBuilder::open`].
    pub fn populate(mut self, on: bool) -> Self {
        self.populate = on;
        self
    }

    /// Creates the queue segment, exclusively, owner-only unless
    /// [`mode`](MpscBuilder::mode) says otherwise, recorded in the registry; its name is
    /// removed when the receiver is dropped.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad name (empty, or with a '/' other than a leading one), a slot
    /// count that is not a power of two, a slot size of 0 or over
    /// [`MAX_SLOT_SIZE`](super::MAX_SLOT_SIZE); `AlreadyExists`; or the OS error.
    pub fn create(self) -> io::Result<MpscReceiver> {
        let seg = SegmentBuilder::new(&self.name)
            .mode(self.mode)
            .populate(self.populate);
        MpscReceiver::create(seg, self.slots, self.slot_size, self.wait)
    }

    /// Opens the queue made by [`MpscBuilder::create`] and registers as a producer. It
    /// never creates the queue.
    ///
    /// # Errors
    ///
    /// `NotFound`; `InvalidData` for a segment of another layout or version or with a bad
    /// geometry; `ConnectionRefused` if its receiver is gone or closed; `AddrInUse` if
    /// [`MAX_PRODUCERS`](super::MAX_PRODUCERS) producers are attached already; or the OS
    /// error.
    pub fn open(self) -> io::Result<MpscSender> {
        MpscSender::open(&self.name, self.wait)
    }
}
