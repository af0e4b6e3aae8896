//! Shared memory: segments, a lock-free SPSC ring, an MPSC queue, a robust process-shared
//! mutex and condition variable, and fork copy-on-write snapshots.
