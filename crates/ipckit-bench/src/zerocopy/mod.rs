//! The zero-copy rows: each zero-copy path beside the plain copying path of the same
//! transport, measured the same way (throughput only, every payload word verified by the
//! receiving process), so a reader sees per size where zero-copy pays and where it does not.
//!
//! | row              | sender (bench process)                                   | baseline of       |
//! |------------------|----------------------------------------------------------|-------------------|
//! | `pipe-write`     | `write()` from one buffer into a 1 MiB pipe              |                   |
//! | `pipe-vmsplice`  | `vmsplice()` from ipckit's page ring into the same pipe  | `pipe-write`      |
//! | `uds-read-write` | `pread()` a file slot into a buffer, `write()` it to a Unix stream socket |  |
//! | `uds-splice`     | `splice()` file → 1 MiB pipe → socket                    | `uds-read-write`  |
//! | `uds-sendfile`   | `sendfile()` file → socket                               | `uds-read-write`  |
//! | `tcp-send`       | `send()` from one buffer on loopback TCP                 |                   |
//! | `tcp-zerocopy`   | `send(MSG_ZEROCOPY)` from ipckit's buffer pool, completions read | `tcp-send` |
//!
//! The receiver (the peer process) always `read()`s exactly one message into one reused
//! buffer and checks its header and every word: the cost a consumer of the data pays. The
//! generating paths (pipe, tcp) fill every message afresh; the file paths serve a file of
//! pre-filled messages (in the page cache, never rewritten while sent), message `i` being the
//! file's slot `i mod K`, so the receiver expects header `i mod K`. A group (a baseline and
//! its zero-copy rows) runs interleaved repeat by repeat, in alternating order, and a
//! zero-copy row's `ratio_to_raw_msgs` is the median of its per-repeat ratios to the
//! baseline's msgs/s. Rows are blocking only: every call here sleeps in the kernel.
//!
//! This file holds the catalogue of paths ([`Path`], the `--mech` selections); `session`
//! runs one row once (the sending side, in the bench process), `receive` is the peer's side,
//! and `report` runs the groups and turns them into report rows and summary notes.

mod receive;
mod report;
mod session;

pub(crate) use receive::{peer_fd, serve};
pub(crate) use report::{run_rows, summary};
pub use session::{measure_once, Run};

use crate::rows::Impl;
use std::fmt;
use std::str::FromStr;

/// One zero-copy row or copying baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Path {
    /// `write()` into a 1 MiB pipe (baseline of `pipe-vmsplice`).
    PipeWrite,
    /// `vmsplice()` into a 1 MiB pipe.
    PipeVmsplice,
    /// File → `pread()` → `write()` → Unix stream socket (baseline of the two below).
    UdsReadWrite,
    /// File → `splice()` → pipe → `splice()` → Unix stream socket.
    UdsSplice,
    /// File → `sendfile()` → Unix stream socket.
    UdsSendfile,
    /// `send()` on loopback TCP (baseline of `tcp-zerocopy`).
    TcpSend,
    /// `send(MSG_ZEROCOPY)` on loopback TCP, completions handled.
    TcpZerocopy,
}

/// The zero-copy paths `--mech` selects (each brings its baseline).
pub const ZERO_COPY: [Path; 4] = [
    Path::PipeVmsplice,
    Path::UdsSplice,
    Path::UdsSendfile,
    Path::TcpZerocopy,
];

const ALL_ROWS: [Path; 7] = [
    Path::PipeWrite,
    Path::PipeVmsplice,
    Path::UdsReadWrite,
    Path::UdsSplice,
    Path::UdsSendfile,
    Path::TcpSend,
    Path::TcpZerocopy,
];

/// The pipe size of the pipe rows and of `uds-splice`'s middle pipe.
pub const PIPE_SIZE: usize = 1 << 20;

/// Bytes of file the file rows serve (a whole number of messages, at least 2).
const FILE_BYTES: usize = 16 << 20;

impl Path {
    /// The row's name.
    pub fn name(self) -> &'static str {
        match self {
            Path::PipeWrite => "pipe-write",
            Path::PipeVmsplice => "pipe-vmsplice",
            Path::UdsReadWrite => "uds-read-write",
            Path::UdsSplice => "uds-splice",
            Path::UdsSendfile => "uds-sendfile",
            Path::TcpSend => "tcp-send",
            Path::TcpZerocopy => "tcp-zerocopy",
        }
    }

    /// The copying baseline of a zero-copy path (`None` for a baseline).
    pub fn baseline(self) -> Option<Path> {
        match self {
            Path::PipeVmsplice => Some(Path::PipeWrite),
            Path::UdsSplice | Path::UdsSendfile => Some(Path::UdsReadWrite),
            Path::TcpZerocopy => Some(Path::TcpSend),
            _ => None,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Path::PipeWrite => "write() into a 1 MiB pipe",
            Path::PipeVmsplice => {
                "vmsplice() from a page ring (2x the safe minimum) into a 1 MiB pipe"
            }
            Path::UdsReadWrite => "file -> pread() -> write() -> Unix stream socket",
            Path::UdsSplice => "file -> splice() -> 1 MiB pipe -> splice() -> Unix stream socket",
            Path::UdsSendfile => "file -> sendfile() -> Unix stream socket",
            Path::TcpSend => "send() on loopback TCP",
            Path::TcpZerocopy => "send(MSG_ZEROCOPY) on loopback TCP, completions read",
        }
    }

    /// True for the rows that can spin (non-blocking calls retried): the pipe rows.
    fn spins(self) -> bool {
        matches!(self, Path::PipeWrite | Path::PipeVmsplice)
    }

    fn serves_a_file(self) -> bool {
        matches!(
            self,
            Path::UdsReadWrite | Path::UdsSplice | Path::UdsSendfile
        )
    }

    fn imp(self) -> Impl {
        if self.baseline().is_some() {
            Impl::Ipckit
        } else {
            Impl::Raw
        }
    }

    /// A row name back to its path.
    pub fn from_row_name(s: &str) -> Option<Path> {
        ALL_ROWS.iter().copied().find(|p| p.name() == s)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The zero-copy paths a `--mech` name selects: a row name, `splice`, `sendfile`, or
/// `zero-copy` for all four; `None` if the name is not one of these.
pub fn parse_selection(s: &str) -> Option<Vec<Path>> {
    match s {
        "zero-copy" => Some(ZERO_COPY.to_vec()),
        "splice" => Some(vec![Path::UdsSplice]),
        "sendfile" => Some(vec![Path::UdsSendfile]),
        _ => Path::from_row_name(s)
            .filter(|p| p.baseline().is_some())
            .map(|p| vec![p]),
    }
}

/// The names [`parse_selection`] accepts.
pub const SELECTION_NAMES: &str =
    "zero-copy, pipe-vmsplice, uds-splice (splice), uds-sendfile (sendfile), tcp-zerocopy";

impl FromStr for Path {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Path::from_row_name(s).ok_or_else(|| format!("unknown zero-copy row '{s}'"))
    }
}

/// Messages in the served file for messages of `size` bytes.
fn file_slots(size: usize) -> usize {
    (FILE_BYTES / size).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_and_baselines() {
        assert_eq!(parse_selection("zero-copy").unwrap(), ZERO_COPY.to_vec());
        assert_eq!(parse_selection("splice").unwrap(), vec![Path::UdsSplice]);
        assert_eq!(
            parse_selection("tcp-zerocopy").unwrap(),
            vec![Path::TcpZerocopy]
        );
        assert_eq!(
            parse_selection("pipe-write"),
            None,
            "a baseline is not selected alone"
        );
        assert_eq!(parse_selection("pipe"), None);
        for p in ALL_ROWS {
            assert_eq!(Path::from_row_name(p.name()), Some(p));
            if let Some(b) = p.baseline() {
                assert_eq!(b.baseline(), None);
                assert_eq!(p.imp(), Impl::Ipckit);
                assert_eq!(b.imp(), Impl::Raw);
            }
        }
        assert!(file_slots(64 << 20) >= 2);
    }
}
