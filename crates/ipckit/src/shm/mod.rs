//! Shared memory: segments, a lock-free SPSC ring, an MPSC queue, a robust process-shared
//! mutex and condition variable, and fork copy-on-write snapshots.
//!
//! - [`SegmentBuilder`] / [`Segment`]: `shm_open` and `memfd` segments with a checked header.
//! - [`PairBuilder`], [`ShmListener`], [`ShmEndpoint`]: a duplex pair of SPSC rings. The
//!   endpoint implements [`crate::Transport`] (copy API) and lends the ring's memory directly
//!   ([`ShmEndpoint::loan`], [`ShmEndpoint::recv_ref`]) for zero-copy use.
//! - [`MpscBuilder`], [`MpscReceiver`], [`MpscSender`]: a queue from many producer processes
//!   to one consumer, in fixed-size slots (Vyukov's sequence numbers); a producer killed
//!   mid-send costs one skipped slot, never a wedged queue.
//! - [`MutexBuilder`], [`ShmMutex`], [`ShmCondvar`]: a robust process-shared mutex over a
//!   [`Plain`] value, and its condition variable; a holder's death is reported to the next
//!   locker ([`LockError::OwnerDied`]), who repairs the value and calls
//!   [`MutexGuard::make_consistent`].
//! - [`cow`]: fork copy-on-write snapshots (the Redis `BGSAVE` pattern): a forked child writes
//!   memory as it was at the fork to a file while the parent keeps writing.
//!
//! # What a peer can do
//!
//! A ring pair, an MPSC queue or a mutex lives in memory that every process mapping its
//! segment can write: the peer you talk to, and any process that can open the object (the
//! same uid, or another uid where the mode allows it; ipckit creates objects 0600 and opens
//! none that another user can write unless told to, see
//! [`SegmentBuilder::allow_other_users`]). ipckit reads every word of a segment as untrusted
//! input. A process that can write the segment, buggy or hostile, **can**:
//!
//! - rewrite a message before it is read, forge a well-formed one (a receiver cannot tell it
//!   from one the sender wrote: whoever can write the segment can send), or make the receiver
//!   skip one;
//! - break the protocol: a length over the negotiated maximum, a record crossing the end of
//!   the ring, a pad where none belongs, a `head` beyond what was sent or going backwards, a
//!   `cap` or `max` in the pair header that the segment cannot hold. The side that reads it
//!   gets `InvalidData` ([`RecvError::Io`](crate::RecvError::Io),
//!   [`SendError::Io`](crate::SendError::Io), or from [`PairBuilder::open`]), and the pair is of no
//!   further use;
//! - raise the other side's `closed` flag: that side sees
//!   [`PeerGone`](crate::RecvError::PeerGone) once it has read what was published before;
//! - stall a side, as a peer that never sends or never reads does: clear the flag that says
//!   a side sleeps so it is not woken, or hold the ring full. A call with a deadline returns
//!   at the deadline (`Timeout`, `Full`, `Empty`); a ring pair sees its peer's death through
//!   a pidfd, not through the segment, so that still ends any wait;
//! - shrink the object with `ftruncate`, if it is an `shm_open` object, as ring pairs, MPSC
//!   queues and named segments are (the kernel seals memfds only). Every process mapping it
//!   then gets `SIGBUS` at its next touch of a page past the new end, which ipckit cannot turn
//!   into an error; growing it changes nothing. A memfd segment
//!   ([`SegmentBuilder::anonymous`]) is sealed against both ([`Segment::size_sealed`]);
//! - write anything into a [`ShmMutex`]'s value (a [`Plain`] type: every bit pattern is a
//!   value);
//! - write into a [`ShmMutex`]'s lock word a live thread's id, which then holds the lock as
//!   if it had locked it (a peer that locks and never unlocks does as much): lock with
//!   [`ShmMutex::lock_timeout`] where that matters. Any other value is a dead holder or an
//!   unrecoverable mutex, reported as such; the lock and condition variable are ipckit's own,
//!   on futex words, and no C library is handed their bytes.
//!
//! It **cannot** make ipckit read or write outside the mapping,
//! panic, or spin for ever:
//! every value read from a segment is checked, with checked arithmetic, before it is used as
//! a length, offset, capacity or count. It cannot make a receiver deliver a message longer
//! than the negotiated maximum, or one nobody wrote: a record is taken only if its header was
//! written for the receiver's position in this lap, never from stale bytes of an earlier one.
//!
//! Bytes lent in place ([`ShmEndpoint::recv_ref`], [`ShmEndpoint::loan`]) stay writable by
//! such a process while you hold them: copy them out before you validate them (a length, an
//! index, a UTF-8 check) and use the copy, or the bytes may change between the check and
//! the use.

pub mod cow;
mod endpoint;
mod hello;
mod listener;
mod mpsc;
mod mutex;
mod pair;
mod region;
mod ring;
mod segment;
mod sync;
mod wait;

pub use endpoint::{Loan, Msg, ShmEndpoint};
pub use listener::{PairBuilder, ShmListener};
pub use mpsc::{
    MpscBuilder, MpscReceiver, MpscSender, DEFAULT_SLOTS, DEFAULT_SLOT_SIZE, MAX_PRODUCERS,
    MAX_SLOTS, MAX_SLOT_SIZE, MPSC_LAYOUT,
};
pub use mutex::{
    LockError, LockResult, MutexBuilder, MutexGuard, Plain, ShmCondvar, ShmMutex,
    WaitTimeoutResult, CHECK_EVERY, MUTEX_LAYOUT,
};
pub use pair::{DEFAULT_CAPACITY, PAIR_LAYOUT};
pub(crate) use segment::check_name;
pub use segment::{
    HugePages, HugeStatus, Layout, Segment, SegmentBuilder, NAME_MAX, SEGMENT_HEADER_LEN,
};

/// For `fuzz/` and the integration tests only; not API: no stability, no semver, no docs.
///
/// The SPSC ring's protocol core (`shm/ring.rs`), which the `ring` fuzz target drives over
/// heap memory and the hostile-peer tests use to write well-formed records; and the test
/// hooks that leave an MPSC claim unpublished, as a producer killed mid-send does.
#[doc(hidden)]
pub mod __fuzz {
    pub use super::mpsc::{abandon_claim, abandon_claim_at};
    pub use super::ring::{
        header, max_payload, payload_gap, place, record_len, stamp, Consumer, Corrupt, Found,
        HeadLine, Producer, RingCtl, RingMem, WaitLine, MIN_CAPACITY, RECORD_ALIGN,
    };
}
