//! Shared memory: segments, a lock-free SPSC ring, an MPSC queue, a robust process-shared
//! mutex and condition variable, and fork copy-on-write snapshots.
//!
//! - [`SegmentBuilder`] / [`Segment`]: `shm_open` and `memfd` segments with a checked header.
//! - [`ShmListener`], [`connect`], [`ShmEndpoint`]: a duplex pair of SPSC rings. The endpoint
//!   implements [`crate::Transport`] (copy API) and lends the ring's memory directly
//!   ([`ShmEndpoint::loan`], [`ShmEndpoint::recv_ref`]) for zero-copy use.
//! - [`MpscReceiver`], [`MpscSender`]: a queue from many producer processes to one consumer,
//!   in fixed-size slots (Vyukov's sequence numbers); a producer killed mid-send costs one
//!   skipped slot, never a wedged queue.
//! - [`ShmMutex`], [`ShmCondvar`]: a robust process-shared mutex over a [`Plain`] value, and
//!   its condition variable; a holder's death is reported to the next locker
//!   ([`LockError::OwnerDied`]), who repairs the value and calls
//!   [`MutexGuard::make_consistent`].
//! - [`cow`]: fork copy-on-write snapshots (the Redis `BGSAVE` pattern): a forked child writes
//!   memory as it was at the fork to a file while the parent keeps writing.

pub mod cow;
mod endpoint;
mod mpsc;
mod mutex;
mod region;
pub mod ring;
mod segment;
mod sync;
mod wait;

pub use endpoint::{
    connect, Loan, Msg, PairOptions, ShmEndpoint, ShmListener, DEFAULT_CAPACITY, PAIR_LAYOUT,
};
pub use mpsc::{
    MpscOptions, MpscReceiver, MpscSender, DEFAULT_SLOTS, DEFAULT_SLOT_SIZE, MAX_PRODUCERS,
    MAX_SLOTS, MAX_SLOT_SIZE, MPSC_LAYOUT,
};
pub use mutex::{
    LockError, LockResult, MutexGuard, Plain, ShmCondvar, ShmMutex, WaitTimeoutResult, MUTEX_LAYOUT,
};
pub use segment::{
    check_name, HugePages, HugeStatus, Layout, Segment, SegmentBuilder, HEADER_LEN, NAME_MAX,
};
