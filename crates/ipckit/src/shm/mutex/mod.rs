//! A robust, process-shared mutex over a plain value in shared memory, and its condition
//! variable: [`ShmMutex`] (whose docs say how it behaves when a holder dies), [`ShmCondvar`],
//! the [`Plain`] trait for the value, and [`LockError`].
//!
//! One segment of [`MUTEX_LAYOUT`] holds, in its data: ipckit's `MutexHeader` (the value's
//! size, alignment and offset, checked by every opener), the lock's words at 64 (the futex
//! word and the holder's identity), the condition variable's sequence word at 128, and the
//! value from 192 (or its alignment).
//!
//! # The lock's protocol
//!
//! Both objects are ipckit's own, on futex words, so that nothing another process writes into
//! the segment is ever handed to code that trusts it (a C library's pthread objects carry
//! pointers and kinds that glibc follows). The lock word holds the holder's thread id (bits
//! 0-29; Linux ids stay below 2^22), bit 31 when someone may sleep on it, and
//! [`NOT_RECOVERABLE`](lock::NOT_RECOVERABLE) for a mutex nobody may lock again. Locking is a compare-and-swap from
//! a free word to our id; unlocking swaps in 0 and wakes one sleeper if the bit was set, a
//! sleeper that wakes taking the lock with the bit set again (it cannot know it was the
//! last). The holder then records its id and start time in the owner word. A waiter that
//! finds the lock held by the same id for a whole [`CHECK_EVERY`] asks the kernel whether
//! that thread still exists (not a zombie, and started when the owner word says if the word
//! names it): if not, it takes the lock over and is told [`LockError::OwnerDied`]. Every word
//! is checked, never trusted: a word naming a thread that does not exist is a dead holder, a
//! live one is a holder (a peer that writes a live thread's id holds the lock, as it could
//! by locking), and every wait has a deadline or rechecks, so no value makes a call hang
//! beyond its timeout.
//!
//! The condition variable is a sequence number: a waiter reads it under the lock, unlocks,
//! and sleeps while it is unchanged; a notifier increments it and wakes one or all.
//!
//! # Files
//!
//! `builder.rs`: [`MutexBuilder`] (making and opening one); `shm_mutex.rs`: [`ShmMutex`]
//! (checking and locking one) and its [`MutexGuard`];
//! `lock.rs`: the lock word's protocol and the holder's liveness; `condvar.rs`:
//! [`ShmCondvar`]; `layout.rs`: the segment's layout and the value's placement; `plain.rs`:
//! [`Plain`]; `error.rs`: [`LockError`].

mod builder;
mod condvar;
mod error;
mod layout;
mod lock;
mod plain;
mod shm_mutex;

pub use builder::MutexBuilder;
pub use condvar::{ShmCondvar, WaitTimeoutResult};
pub use error::{LockError, LockResult};
pub use layout::MUTEX_LAYOUT;
pub use lock::CHECK_EVERY;
pub use plain::Plain;
pub use shm_mutex::{MutexGuard, ShmMutex};

#[cfg(test)]
mod tests;
