//! Shared memory: segments, a lock-free SPSC ring, an MPSC queue, a robust process-shared
//! mutex and condition variable, and fork copy-on-write snapshots.
//!
//! - [`cow`]: fork copy-on-write snapshots (the Redis `BGSAVE` pattern): a forked child writes
//!   memory as it was at the fork to a file while the parent keeps writing.

pub mod cow;
