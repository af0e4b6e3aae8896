//! The MPSC queue: many producer processes, one consumer process, fixed-size slots.
//!
//! # Layout
//!
//! One segment ([`MPSC_LAYOUT`]): a header with the geometry and the receiver's hello, the
//! control lines (the enqueue position `tail`, the consumer's wait line, the producers' wait
//! line, each on its own 128-byte line), a table of [`MAX_PRODUCERS`] producer entries, then
//! `slots` slots of `stride` bytes each, `stride` a multiple of 64 so every slot starts a
//! cache line. A slot is a sequence word, a length word and `slot_size` payload bytes; a slot
//! of up to 48 payload bytes is one cache line.
//!
//! # Protocol
//!
//! Dmitry Vyukov's bounded queue, with the claim recorded in the sequence word. Positions are
//! absolute counts; position `p` lives in slot `p & (slots - 1)`. A slot's word is
//! `seq << 8 | tag`: `FREE` (the slot waits for position `seq`), `PUBLISHED` (it holds
//! position `seq`'s message) or `CLAIMED + i` (producer entry `i` is writing position `seq`).
//!
//! - A producer reads `tail` and compare-and-swaps the slot's word from `FREE(tail)` to
//!   `CLAIMED(tail, me)` (`Acquire`: the consumer's last read of that slot is done), then moves
//!   `tail` on with a CAS that may fail harmlessly. A producer that finds the slot claimed or
//!   published for `tail` moves `tail` on for the claimer; so a producer that dies between its
//!   claim and its move of `tail` stops nobody. A slot still holding the previous lap means the
//!   queue is full.
//! - It writes the length and payload, then stores `PUBLISHED(pos)` (`Release`).
//! - The single consumer needs no CAS: it loads the word of its own position (`Acquire`),
//!   copies the message out, and stores `FREE(pos + slots)` (`Release`).
//!
//! Because the claim names the claimer in the same word, a slot claimed by a producer that
//! then died is recognised: the consumer skips it and counts it in [`MpscReceiver::dropped`].
//!
//! # Who is there
//!
//! A producer registers in the table when it opens (its entry holds its hello: pid, start
//! time, boot id, pid namespace) and frees its entry when dropped. The consumer looks at the
//! table (a "scan") whenever it has waited [`SCAN`](watch::SCAN) for a message, and at once
//! when a producer leaves or registers (a producer wakes it after registering); it watches
//! each producer with a pidfd, and a thread per producer waiting on a copy of that pidfd
//! wakes the consumer for a look when the producer dies. A producer found dead has its entry
//! marked dead; the entry is reused only once the consumer has passed every position it could have
//! claimed, so a claim's entry index always names its own claimer.
//!
//! Producers watch the consumer with a pidfd in a small thread (as the ring pair does): when
//! the consumer dies the thread wakes every producer asleep on a full queue.
//!
//! # Sleeping
//!
//! As in the ring (see `ring.rs`): a side that may sleep says so, and the other side pays a
//! `SeqCst` fence and a look at the sleepers only then, so spinning sides cost no fence. The
//! consumer's line is a [`WaitLine`](super::ring::WaitLine); the producers share one line
//! whose `may_sleep` and `sleeping` words are bitmaps of producer entries, so a producer
//! killed in its sleep is cleared by the consumer instead of leaving a count that makes every
//! receive pay a wake-up. A freed slot wakes every sleeping producer; they race for it, and
//! the losers sleep again.
//!
//! # Files
//!
//! `queue.rs`: the protocol over any memory, with its loom models; `layout.rs`: the segment
//! and the checks of its header; `watch.rs`: the consumer's watch of the producers;
//! `builder.rs`: [`MpscBuilder`], which makes the two handles; `receiver.rs` and
//! `sender.rs`: the two handles.

mod builder;
mod layout;
mod queue;
mod receiver;
mod sender;
mod watch;

pub use builder::{MpscBuilder, DEFAULT_SLOTS, DEFAULT_SLOT_SIZE};
pub use layout::{MAX_SLOTS, MAX_SLOT_SIZE, MPSC_LAYOUT};
pub use queue::MAX_PRODUCERS;
pub use receiver::MpscReceiver;
pub use sender::{abandon_claim, abandon_claim_at, MpscSender};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_move_between_threads() {
        fn send<T: Send>() {}
        send::<MpscReceiver>();
        send::<MpscSender>();
    }
}
