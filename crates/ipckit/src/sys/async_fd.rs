//! Registering a descriptor with tokio's reactor.
//!
//! # Safety
//!
//! `AsyncFd::register_with_interest` is `unsafe`: the descriptor must stay open, and be the
//! same, for as long as the `AsyncFd` lives (tokio maps readiness events back to its own
//! bookkeeping by registration; a descriptor closed and reused under it would misdirect
//! them). Only `OwnedFd`s are registered here, moved into the `AsyncFd`, which then owns the
//! one copy: nothing else can close it, and its number never changes.

use std::io;
use std::os::fd::OwnedFd;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Registers `fd`, which the returned `AsyncFd` owns, for `interest`.
///
/// # Errors
///
/// Outside a tokio runtime (where tokio itself would panic): an error that says so; the
/// registration error.
pub(crate) fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    tokio::runtime::Handle::try_current().map_err(|_| {
        io::Error::other("ipckit::tokio needs a tokio runtime: call this from within one")
    })?;
    // SAFETY: see the file's contract: `fd` is owned by the AsyncFd from here on, so it stays
    // open and is the same descriptor until the AsyncFd is dropped or gives it back.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(|e| e.into_parts().1)
}
