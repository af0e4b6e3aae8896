//! A process's hello in shared memory: the six words in which a ring pair's and an MPSC
//! queue's segment record who made it and who attached (pid, start time, boot id, pid
//! namespace), for the other side to watch.

use super::sync::{AtomicU64, Ordering};
use crate::peer::{Hello, HELLO_LEN};

/// Writes a hello into six words of shared memory (`Relaxed`: the caller publishes them with
/// a `Release` store after, and readers load them after an `Acquire`).
pub(super) fn put_hello(dst: &[AtomicU64; 6], h: &Hello) {
    let mut b = [0u8; 48];
    b[..HELLO_LEN].copy_from_slice(&h.encode());
    for (i, w) in dst.iter().enumerate() {
        let v = u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        w.store(v, Ordering::Relaxed);
    }
}

/// Reads a hello written by [`put_hello`]; `None` if it is not one.
pub(super) fn get_hello(src: &[AtomicU64; 6]) -> Option<Hello> {
    let mut b = [0u8; 48];
    for (i, w) in src.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    Hello::decode(&b[..HELLO_LEN])
}
