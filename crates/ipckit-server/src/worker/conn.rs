//! One connection's state, and its socket I/O that needs nothing of the worker: sending
//! the output (a buffer, then a file with `sendfile`) and lingering after the last response.

use crate::http::Input;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;

/// A file body being sent.
#[derive(Debug)]
pub(super) struct FileSend {
    pub(super) file: File,
    pub(super) off: u64,
    pub(super) len: u64,
}

/// An accepted connection.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) input: Input,
    pub(super) out: Vec<u8>,
    pub(super) out_pos: usize,
    pub(super) file: Option<FileSend>,
    /// When the connection is closed by the sweep (ms since the worker started).
    pub(super) deadline: u64,
    /// The deadline was set for a header in progress (not refreshed by more bytes).
    pub(super) header_clock: bool,
    /// Close once the output is sent.
    pub(super) close_after: bool,
    /// The peer sent EOF.
    pub(super) eof: bool,
    /// The response that closes the connection is sent and our side shut down: input is
    /// read and discarded until EOF (or the deadline), so that unread bytes do not make the
    /// kernel reset the connection before the client reads that response.
    pub(super) lingering: bool,
    /// Requests answered on this connection: a draining worker closes an idle connection
    /// only once it was served, never one just accepted whose first request is on its way.
    pub(super) served: u64,
}

/// What driving a connection decided.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Keep,
    Close,
    /// Its budget is spent with input maybe left unread: drive it again after the others
    /// (edge-triggered, so no new event would come for what is already there).
    Again,
}

/// How long a closing connection's input is discarded at most.
pub(super) const LINGER_MS: u64 = 2000;

/// Reads and discards input after the final response until EOF or `EAGAIN`.
pub(super) fn linger(c: &mut Conn) -> Verdict {
    let mut sink = [0u8; 4096];
    loop {
        match c.stream.read(&mut sink) {
            Ok(0) => return Verdict::Close,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Verdict::Keep,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Verdict::Close,
        }
    }
}

/// Sends unsent output; `Ok(true)` when everything is sent, `Ok(false)` when the socket is
/// full.
pub(super) fn flush(c: &mut Conn) -> io::Result<bool> {
    while c.out_pos < c.out.len() {
        match c.stream.write(&c.out[c.out_pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => c.out_pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if c.out_pos > 0 {
        c.out.clear();
        c.out_pos = 0;
        if c.out.capacity() > 1 << 20 {
            c.out.shrink_to(1 << 16);
        }
    }
    if let Some(f) = &mut c.file {
        while f.off < f.len {
            let want = (f.len - f.off).min(1 << 30) as usize;
            match ipckit::zerocopy::sendfile(&c.stream, &f.file, Some(&mut f.off), want) {
                // The file shrank under us: the response cannot be completed.
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        c.file = None;
    }
    Ok(true)
}
