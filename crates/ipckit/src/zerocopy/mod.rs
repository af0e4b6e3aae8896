//! Zero-copy paths: `vmsplice`, `splice`, `tee`, `sendfile`, and `MSG_ZEROCOPY` on TCP, with
//! the one rule each of them brings: **a page handed to the kernel by reference must not be
//! rewritten until the kernel is done with it.**
//!
//! - [`vmsplice`] puts references to your pages into a pipe; the reader copies from them
//!   when it reads. [`VmspliceSender`] owns a ring of page-aligned memory large enough that
//!   no page is rewritten before the reader has read it, whatever the message sizes (the
//!   proof, and the flaw of the usual per-message rule, are on [`vmsplice_ring_pages`]).
//! - [`splice`] moves data between a pipe and a file or socket (or two pipes) inside the
//!   kernel; [`tee`] duplicates a pipe's contents into another pipe without consuming them.
//! - [`sendfile`] sends a file's page-cache pages to a socket.
//! - [`ZeroCopySender`] sends from a pool of buffers with `MSG_ZEROCOPY`, reads the kernel's
//!   completions from the socket's error queue, and lends a buffer again only after the send
//!   that used it completed. It counts completions and those the kernel marks as copied
//!   (`SO_EE_CODE_ZEROCOPY_COPIED`): on loopback the kernel copies anyway, when it delivers
//!   the data to the receiving socket, and says so.
//!
//! The module splits by mechanism: `vmsplice.rs`, `splice.rs` (with `tee`), `sendfile.rs`,
//! `msg_zerocopy.rs`; this file holds what they share ([`SpliceFlags`]; the page size is
//! [`crate::process::page_size`]).
//!
//! # Examples
//!
//! ```
//! use ipckit::zerocopy::VmspliceSender;
//! use std::io::Read;
//! # fn main() -> std::io::Result<()> {
//! let (mut r, w) = ipckit::pipe::raw_pipe()?;
//! let mut tx = VmspliceSender::new(w, 4096)?; // 64 KiB pipe: a ring of 17 pages
//! tx.send_with(5, |buf| buf.copy_from_slice(b"hello"))?;
//! let mut got = [0u8; 5];
//! r.read_exact(&mut got)?; // the reader copies out of the sender's page
//! assert_eq!(&got, b"hello");
//! # Ok(()) }
//! ```
//!
//! # References
//!
//! `vmsplice(2)`, `splice(2)`, `tee(2)`, `sendfile(2)`, `pipe(7)`; the kernel's
//! `Documentation/networking/msg_zerocopy.rst`.

mod msg_zerocopy;
mod sendfile;
mod splice;
mod vmsplice;

pub use msg_zerocopy::{Completion, ZeroCopyEvent, ZeroCopySender, ZeroCopyStats};
pub use sendfile::{sendfile, sendfile_exact};
pub use splice::{splice, splice_exact, tee};
pub use vmsplice::{vmsplice, vmsplice_ring_pages, VmspliceSender, VmspliceStats};

use std::io;

/// Flags of [`splice`], [`tee`] and [`vmsplice`] (`SPLICE_F_*`). Combine with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpliceFlags(u32);

impl SpliceFlags {
    /// No flags: block as the descriptors do.
    pub const NONE: SpliceFlags = SpliceFlags(0);
    /// `SPLICE_F_MOVE`: a hint to move pages instead of copying (a no-op in current kernels).
    pub const MOVE: SpliceFlags = SpliceFlags(libc::SPLICE_F_MOVE);
    /// `SPLICE_F_NONBLOCK`: do not block on the pipe (the other descriptor's own mode still
    /// applies).
    pub const NONBLOCK: SpliceFlags = SpliceFlags(libc::SPLICE_F_NONBLOCK);
    /// `SPLICE_F_MORE`: more data follows (like `MSG_MORE` on a socket).
    pub const MORE: SpliceFlags = SpliceFlags(libc::SPLICE_F_MORE);

    /// The raw bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl std::ops::BitOr for SpliceFlags {
    type Output = SpliceFlags;
    fn bitor(self, rhs: SpliceFlags) -> SpliceFlags {
        SpliceFlags(self.0 | rhs.0)
    }
}

fn to_off(o: u64) -> io::Result<i64> {
    i64::try_from(o).map_err(|_| crate::error::invalid(format!("file offset {o} is too large")))
}
