//! The framed byte-stream endpoint shared by pipes, FIFOs, Unix stream sockets and TCP.
//!
//! Sending is one `writev`/`sendmsg` of header and payload. Receiving reads the header and
//! as much payload as the kernel has straight into the caller's buffer in one `readv`, so a
//! small message costs one syscall and a large one is not copied twice; bytes read past the
//! end of a message wait in a bounded [`FrameDecoder`].

use crate::error::{RecvError, SendError};
use crate::framing::{self, FrameDecoder, Framing, FRAME_HEADER_LEN};
use crate::registry::ObjectGuard;
use crate::sys::{fd as sysfd, socket};
use crate::transport::{Mechanism, PeerInfo, RawHandle, Transport};
use crate::wait::{drive, Deadline, Wait};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// Frames up to this size are sent with one contiguous write and received through the
/// decoder; larger ones use vectored I/O straight from and into the caller's buffers.
const SMALL_FRAME: usize = 4096;

/// Default largest message on a stream transport: 1 MiB.
pub const DEFAULT_STREAM_MAX: usize = 1 << 20;
/// Largest message a stream transport can be configured for (the header is 32 bits).
pub const STREAM_MAX_LIMIT: usize = 1 << 30;

/// A framed byte-stream endpoint.
pub struct StreamEndpoint {
    mech: Mechanism,
    framing: Framing,
    /// A FIFO reader that has not seen a writer yet: a read of 0 means "no writer yet", not
    /// the end, unless the FIFO reports a hang-up.
    wait_writer: bool,
    /// Read side (for sockets, the socket).
    r: Option<OwnedFd>,
    /// Write side when it differs from the read side (pipes and FIFOs).
    w: Option<OwnedFd>,
    socket: bool,
    wait: Wait,
    max: usize,
    dec: FrameDecoder,
    /// Bytes of a message accepted by a `try_`/timed send that did not all fit.
    wpend: Vec<u8>,
    wpos: usize,
    peer: Option<PeerInfo>,
    broken: bool,
    /// The descriptors are in blocking mode (see [`StreamEndpoint::mode_for`]).
    blocking: bool,
    /// A frame whose header was consumed when a deadline passed: (payload so far, length).
    partial: Option<(Vec<u8>, usize)>,
    /// Length of the last message received, to choose the next read's shape.
    last_len: usize,
    /// Fixed buffer for the small-frame fast path.
    sframe: Box<[u8; SMALL_FRAME]>,
    /// A FIFO receiver that outlives its writers (see [`StreamEndpoint::fifo_sessions`]).
    sessions: bool,
    /// Unfinished messages discarded at the end of a FIFO session.
    discarded: u64,
    _guards: Vec<ObjectGuard>,
}

impl fmt::Debug for StreamEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamEndpoint")
            .field("mech", &self.mech)
            .field("r", &self.r)
            .field("w", &self.w)
            .field("wait", &self.wait)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl StreamEndpoint {
    /// Builds an endpoint over non-blocking descriptors. `w == None` means `r` is a socket
    /// used both ways.
    pub(crate) fn new(
        mech: Mechanism,
        r: Option<OwnedFd>,
        w: Option<OwnedFd>,
        socket: bool,
        wait: Wait,
        max: usize,
    ) -> io::Result<Self> {
        if max > STREAM_MAX_LIMIT {
            return Err(crate::error::invalid(format!(
                "maximum message size {max} exceeds the stream limit of {STREAM_MAX_LIMIT}"
            )));
        }
        for fd in r.iter().chain(w.iter()) {
            sysfd::set_nonblocking(fd.as_fd(), true)?;
        }
        Ok(StreamEndpoint {
            mech,
            framing: Framing::Length,
            wait_writer: false,
            r,
            w,
            socket,
            wait,
            max,
            dec: FrameDecoder::new(max),
            wpend: Vec::new(),
            wpos: 0,
            peer: None,
            broken: false,
            blocking: false,
            partial: None,
            last_len: 0,
            sframe: Box::new([0; SMALL_FRAME]),
            sessions: false,
            discarded: 0,
            _guards: Vec::new(),
        })
    }

    pub(crate) fn waiting_for_writer(mut self) -> Self {
        self.wait_writer = true;
        self
    }

    /// Makes a FIFO's read end a receiver that outlives its writers, one *session* (first
    /// writer's open to last writer's close) after another: when the last writer closes, a
    /// message it left unfinished (a line without its newline, a frame shorter than its
    /// header says) is discarded and counted ([`Transport::dropped`]), never joined to the
    /// next writer's bytes, and the endpoint waits for the next writer instead of reporting
    /// [`RecvError::PeerGone`].
    ///
    /// The end of a session is the only moment a reader can tell writers apart: writers that
    /// overlap share one byte stream. ipckit's own FIFO senders therefore write each message
    /// whole in one `write` of at most `PIPE_BUF` bytes where several writers may share the
    /// FIFO (`ipckit send --via fifo`), which the kernel never splits or interleaves.
    pub(crate) fn fifo_sessions(mut self) -> Self {
        self.wait_writer = true;
        self.sessions = true;
        self
    }

    /// The end of a FIFO session: drops whatever is left of an unfinished message (counted),
    /// and reopens the read end, because the one the session ended on keeps reporting
    /// `POLLHUP` until a writer comes, which would make every wait return at once.
    ///
    /// The FIFO is reopened through `/proc/self/fd`, not by its path, so it is the same
    /// object whatever the path names now; the old descriptor is closed only after, so the
    /// FIFO never lacks a reader (a writer that opened meanwhile keeps its bytes).
    fn end_session(&mut self) -> io::Result<()> {
        let unfinished = !self.dec.is_empty() || self.partial.is_some() || self.broken;
        if unfinished {
            self.discarded += 1;
        }
        let len = self.dec.len();
        self.dec.consume(len);
        self.partial = None;
        self.broken = false;
        let old = self.rfd()?;
        let fresh = sysfd::reopen_fifo_read(old)?;
        sysfd::set_nonblocking(fresh.as_fd(), true)?;
        self.r = Some(fresh);
        self.blocking = false;
        self.wait_writer = true;
        Ok(())
    }

    pub(crate) fn with_peer(mut self, peer: Option<PeerInfo>) -> Self {
        self.peer = peer;
        self
    }

    pub(crate) fn with_guards(mut self, guards: Vec<ObjectGuard>) -> Self {
        self._guards = guards;
        self
    }

    /// A blocking wait with no deadline is one plain blocking syscall: the descriptors are
    /// switched to blocking mode (once, when the strategy or deadline kind changes), which
    /// saves the `EAGAIN` + `poll` pair a non-blocking design pays on every wait. The end of
    /// the stream still shows as EOF/EPIPE, so nothing can hang on a dead peer.
    fn mode_for(&mut self, deadline: Deadline) -> io::Result<()> {
        let want = self.wait == Wait::Block && deadline == Deadline::Never && !self.wait_writer;
        if want != self.blocking {
            for fd in self.r.iter().chain(self.w.iter()) {
                sysfd::set_nonblocking(fd.as_fd(), !want)?;
            }
            self.blocking = want;
        }
        Ok(())
    }

    fn rfd(&self) -> io::Result<BorrowedFd<'_>> {
        self.r
            .as_ref()
            .map(|f| f.as_fd())
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "this endpoint is send-only"))
    }

    fn wfd(&self) -> io::Result<BorrowedFd<'_>> {
        match (&self.w, &self.r, self.socket) {
            (Some(w), _, _) => Ok(w.as_fd()),
            (None, Some(r), true) => Ok(r.as_fd()),
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this endpoint is receive-only",
            )),
        }
    }

    fn write_bufs(fd: BorrowedFd<'_>, socket: bool, bufs: &[&[u8]]) -> io::Result<Option<usize>> {
        let r = if socket {
            socket::sendv(fd, bufs, 0)
        } else {
            sysfd::writev(fd, bufs)
        };
        match r {
            Ok(n) => Ok(Some(n)),
            Err(e) if would_block(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes out what a previous `try_send`/`send_timeout` left pending.
    fn flush_deadline(&mut self, deadline: Deadline) -> Result<(), SendError> {
        if self.wpos < self.wpend.len() {
            self.mode_for(deadline)?;
        }
        while self.wpos < self.wpend.len() {
            let fd = self.wfd()?;
            let (wait, socket) = (self.wait, self.socket);
            let pend = &self.wpend[self.wpos..];
            let n = drive(wait, deadline, fd, libc::POLLOUT, None, || {
                Self::write_bufs(fd, socket, &[pend]).map_err(SendError::from)
            })?;
            self.wpos += n;
        }
        self.wpend.clear();
        self.wpos = 0;
        Ok(())
    }

    /// Sends everything pending, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// `PeerGone` or `Io`.
    pub fn flush(&mut self) -> Result<(), SendError> {
        self.flush_deadline(Deadline::Never)
    }

    /// Reads the rest of a message whose first `got` bytes are already in `buf`.
    /// Reads the rest of a frame whose first `got` payload bytes are in `buf`. If the
    /// deadline passes first, the bytes so far are kept (bounded by the maximum message) and
    /// the next receive resumes the frame: a partial message is never handed out.
    fn read_rest(
        &mut self,
        buf: &mut [u8],
        mut got: usize,
        len: usize,
        deadline: Deadline,
    ) -> Result<(), RecvError> {
        let wait = self.wait;
        let r = self
            .r
            .as_ref()
            .map(|f| f.as_fd())
            .expect("checked by caller");
        while got < len {
            let dst = &mut buf[got..len];
            let dst_len = dst.len();
            // Read past a large message only as far as the next header: a large over-read
            // would land the next message in the decoder and cost it a copy. Small messages
            // are worth batching.
            let spare = self.dec.spare();
            let spare_len = if len >= 4096 {
                FRAME_HEADER_LEN.min(spare.len())
            } else {
                spare.len()
            };
            let spare = &mut spare[..spare_len];
            let n = drive(
                wait,
                deadline,
                r,
                libc::POLLIN,
                None,
                || match sysfd::readv(r, &mut [dst, spare]) {
                    Ok(0) => Err(RecvError::PeerGone),
                    Ok(n) => Ok(Some(n)),
                    Err(e) if would_block(&e) => Ok(None),
                    Err(e) => Err(e.into()),
                },
            );
            let n = match n {
                Ok(n) => n,
                Err(e @ (RecvError::Empty | RecvError::Timeout)) => {
                    self.partial = Some((buf[..got].to_vec(), len));
                    return Err(e);
                }
                Err(e) => {
                    // The peer went away mid-frame (or worse): the stream is done.
                    self.broken = true;
                    return Err(e);
                }
            };
            let into_buf = n.min(dst_len);
            got += into_buf;
            self.dec.commit(n - into_buf);
        }
        Ok(())
    }

    fn recv_inner(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize, RecvError> {
        if self.broken {
            return Err(RecvError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "stream is out of frame sync after an earlier error",
            )));
        }
        self.rfd()?;
        self.mode_for(deadline)?;
        if let Some((part, len)) = self.partial.take() {
            if buf.len() < len {
                self.partial = Some((part, len));
                return Err(RecvError::BufferTooSmall { needed: len });
            }
            buf[..part.len()].copy_from_slice(&part);
            self.read_rest(buf, part.len(), len, deadline)?;
            return Ok(len);
        }
        if self.framing == Framing::Line {
            return self.recv_line(buf, deadline);
        }
        loop {
            match self.dec.header() {
                Err(e) => {
                    self.broken = true;
                    return Err(RecvError::Io(e.into()));
                }
                Ok(Some(len)) => {
                    if buf.len() < len {
                        return Err(RecvError::BufferTooSmall { needed: len });
                    }
                    if self.dec.take_frame(len, buf) {
                        return Ok(len);
                    }
                    // Part of the message is buffered: move it out, read the rest directly.
                    let have = self.dec.len() - FRAME_HEADER_LEN;
                    buf[..have].copy_from_slice(&self.dec.buffered()[FRAME_HEADER_LEN..]);
                    self.dec.consume(FRAME_HEADER_LEN + have);
                    self.read_rest(buf, have, len, deadline)?;
                    return Ok(len);
                }
                Ok(None) => {}
            }
            let wait = self.wait;
            let r = self.r.as_ref().map(|f| f.as_fd()).expect("checked above");
            // Large messages read straight into the caller's buffer; small ones are batched
            // through the decoder with plain reads (a read costs ~90 ns less than a readv, and
            // one read may bring many small messages). The last message's size predicts the
            // next one's.
            if self.dec.is_empty()
                && buf.len() >= self.max
                && !self.wait_writer
                && self.last_len >= SMALL_FRAME
            {
                // Fast path: header into a local, payload straight into the caller's buffer.
                let mut hdr = [0u8; FRAME_HEADER_LEN];
                // Bytes read past this message must fit the (empty) decoder.
                let cap = buf.len().min(self.dec.capacity());
                let dst = &mut buf[..cap];
                let n = drive(
                    wait,
                    deadline,
                    r,
                    libc::POLLIN,
                    None,
                    || match sysfd::readv(r, &mut [&mut hdr, dst]) {
                        Ok(0) => Err(RecvError::PeerGone),
                        Ok(n) => Ok(Some(n)),
                        Err(e) if would_block(&e) => Ok(None),
                        Err(e) => Err(e.into()),
                    },
                )?;
                if n < FRAME_HEADER_LEN {
                    self.dec.push(&hdr[..n]);
                    continue;
                }
                let len = match framing::parse_header(&hdr, self.max) {
                    Ok(Some(len)) => len,
                    Ok(None) => unreachable!("four header bytes were read"),
                    Err(e) => {
                        self.broken = true;
                        return Err(RecvError::Io(e.into()));
                    }
                };
                let got = n - FRAME_HEADER_LEN;
                if got >= len {
                    // Bytes past this message belong to the next ones.
                    let pushed = self.dec.push(&buf[len..got]);
                    debug_assert_eq!(pushed, got - len);
                    return Ok(len);
                }
                self.read_rest(buf, got, len, deadline)?;
                return Ok(len);
            }
            // Slow path: accumulate in the decoder until a header is complete.
            let n = self.fill(deadline)?;
            if n == 0 {
                return Err(RecvError::PeerGone);
            }
            self.dec.commit(n);
        }
    }

    /// Reads into the decoder; `Ok(0)` is the end of the stream.
    fn fill(&mut self, deadline: Deadline) -> Result<usize, RecvError> {
        let wait = self.wait;
        let r = self
            .r
            .as_ref()
            .map(|f| f.as_fd())
            .expect("checked by caller");
        // A FIFO client waiting for the server's write end also watches its own write end:
        // it reports POLLERR once the server, the only reader of it, is gone.
        let watch = if self.wait_writer {
            self.w.as_ref().map(|w| w.as_fd())
        } else {
            None
        };
        let wait_writer = &mut self.wait_writer;
        let limit = self.dec.capacity() - 1;
        let spare = self.dec.spare();
        if spare.is_empty() {
            return Err(RecvError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("peer sent a line over the {limit}-byte line-framing limit"),
            )));
        }
        drive(
            wait,
            deadline,
            r,
            libc::POLLIN,
            watch,
            || match sysfd::read(r, spare) {
                Ok(0) if *wait_writer => {
                    // No writer yet, or one came and went without writing.
                    let ev = sysfd::revents(r, libc::POLLIN)?;
                    if ev & libc::POLLHUP != 0 {
                        Ok(Some(0))
                    } else {
                        Ok(None)
                    }
                }
                Ok(n) => {
                    *wait_writer = false;
                    Ok(Some(n))
                }
                Err(e) if would_block(&e) => Ok(None),
                Err(e) => Err(e.into()),
            },
        )
    }

    fn recv_line(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize, RecvError> {
        loop {
            let data = self.dec.buffered();
            if let Some(pos) = data.iter().position(|&b| b == b'\n') {
                if buf.len() < pos {
                    return Err(RecvError::BufferTooSmall { needed: pos });
                }
                buf[..pos].copy_from_slice(&data[..pos]);
                self.dec.consume(pos + 1);
                return Ok(pos);
            }
            let n = self.fill(deadline)?;
            if n == 0 {
                // The end: a last line without a newline is still a message.
                let rest = self.dec.len();
                if rest == 0 || self.sessions {
                    // A FIFO session's unterminated last line is an unfinished message:
                    // `end_session` drops and counts it.
                    return Err(RecvError::PeerGone);
                }
                if buf.len() < rest {
                    return Err(RecvError::BufferTooSmall { needed: rest });
                }
                buf[..rest].copy_from_slice(self.dec.buffered());
                self.dec.consume(rest);
                return Ok(rest);
            }
            self.dec.commit(n);
        }
    }

    /// Receives while the rest of a message accepted by `try_send`/`send_timeout` is still
    /// unsent: waiting only to receive could deadlock with a peer that waits for that rest,
    /// so this waits for either direction and makes progress on both.
    fn recv_while_flushing(
        &mut self,
        buf: &mut [u8],
        deadline: Deadline,
    ) -> Result<usize, RecvError> {
        loop {
            match self.flush_deadline(Deadline::Now) {
                Ok(()) | Err(SendError::Full) => {}
                // The peer is gone: what it sent before may still be read.
                Err(SendError::PeerGone) => {
                    self.wpend.clear();
                    self.wpos = 0;
                }
                Err(SendError::Io(e)) => return Err(RecvError::Io(e)),
                Err(e @ (SendError::Timeout | SendError::TooLarge { .. })) => {
                    return Err(RecvError::Io(e.into()))
                }
            }
            if self.wpos >= self.wpend.len() {
                return self.recv_inner(buf, deadline);
            }
            match self.recv_inner(buf, Deadline::Now) {
                Err(RecvError::Empty) => {}
                other => return other,
            }
            let timeout = match deadline {
                Deadline::Now => return Err(RecvError::Empty),
                Deadline::At(t) => {
                    let left = t.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(RecvError::Timeout);
                    }
                    Some(left)
                }
                Deadline::Never => None,
            };
            let (r, w) = (self.rfd()?, self.wfd()?);
            sysfd::poll(&[(r, libc::POLLIN), (w, libc::POLLOUT)], timeout)?;
        }
    }

    /// The common case, kept short: a small length-framed message with nothing pending is
    /// assembled in a fixed buffer and goes out in one plain write (cheaper than the kernel
    /// importing an iovec: ~250 ns a message, measured).
    fn send_small(&mut self, msg: &[u8], deadline: Deadline) -> Result<(), SendError> {
        self.mode_for(deadline)?;
        let n = FRAME_HEADER_LEN + msg.len();
        self.sframe[..FRAME_HEADER_LEN].copy_from_slice(&framing::encode_header(msg.len()));
        self.sframe[FRAME_HEADER_LEN..n].copy_from_slice(msg);
        let fd = self.wfd()?;
        let (wait, socket) = (self.wait, self.socket);
        let frame = &self.sframe[..n];
        let write = |part: &[u8]| {
            let r = if socket {
                socket::send(fd, part, 0)
            } else {
                sysfd::write(fd, part)
            };
            match r {
                Ok(k) => Ok(Some(k)),
                Err(e) if would_block(&e) => Ok(None),
                Err(e) => Err(SendError::from(e)),
            }
        };
        let mut off = drive(wait, deadline, fd, libc::POLLOUT, None, || write(frame))?;
        while off < n {
            if deadline != Deadline::Never {
                // Part of the frame is in the stream: keep the rest for the next call.
                self.wpend = frame[off..].to_vec();
                self.wpos = 0;
                return Ok(());
            }
            off += drive(wait, Deadline::Never, fd, libc::POLLOUT, None, || {
                write(&frame[off..])
            })?;
        }
        Ok(())
    }

    /// Pipe capacity of the write side (`F_GETPIPE_SZ`), for pipes and FIFOs.
    ///
    /// # Errors
    ///
    /// `Unsupported` on sockets, or the fcntl's error.
    #[doc(alias = "F_GETPIPE_SZ")]
    pub fn pipe_capacity(&self) -> io::Result<usize> {
        if self.socket {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "not a pipe"));
        }
        crate::sys::pipe::pipe_size(self.wfd().or_else(|_| self.rfd())?)
    }

    /// Sets the pipe capacity of both directions (`F_SETPIPE_SZ`); returns the size the kernel
    /// chose (a power-of-two number of pages, at least `size`).
    ///
    /// # Errors
    ///
    /// `InvalidInput` above `/proc/sys/fs/pipe-max-size` (the limit is in the message), or
    /// `Unsupported` on sockets.
    #[doc(alias = "F_SETPIPE_SZ")]
    pub fn set_pipe_capacity(&self, size: usize) -> io::Result<usize> {
        if self.socket {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "not a pipe"));
        }
        set_pipe_capacity_checked(
            [self.r.as_ref(), self.w.as_ref()]
                .into_iter()
                .flatten()
                .map(|fd| fd.as_fd()),
            size,
        )
    }
}

/// The parts of `bufs` after the first `off` bytes.
fn remaining<'a>(bufs: &[&'a [u8]; 3], mut off: usize) -> [&'a [u8]; 3] {
    let mut out: [&[u8]; 3] = [&[], &[], &[]];
    for (o, b) in out.iter_mut().zip(bufs) {
        let skip = off.min(b.len());
        *o = &b[skip..];
        off -= skip;
    }
    out
}

/// Grows a pipe so one framed message of the common large size (64 KiB, or the maximum if
/// smaller) fits whole: a 64 KiB payload plus its 16-byte header does not fit the default
/// 64 KiB pipe, and splitting it costs two extra wake-ups per message. Best effort: a user
/// over `pipe-user-pages-soft` keeps the default.
pub(crate) fn fit_pipe(fd: BorrowedFd<'_>, max: usize) {
    let want = (max.min(64 * 1024) + FRAME_HEADER_LEN).next_power_of_two();
    if crate::sys::pipe::pipe_size(fd).is_ok_and(|cur| cur < want) {
        let _ = crate::sys::pipe::set_pipe_size(fd, want);
    }
}

/// Sets the capacity of every given pipe descriptor, checking the system maximum first.
pub(crate) fn set_pipe_capacity_checked<'a>(
    fds: impl Iterator<Item = BorrowedFd<'a>>,
    size: usize,
) -> io::Result<usize> {
    let max = crate::sys::pipe::pipe_max_size()?;
    if size > max {
        return Err(crate::error::invalid(format!(
            "pipe capacity {size} exceeds the system maximum of {max} (/proc/sys/fs/pipe-max-size)"
        )));
    }
    let mut set = 0;
    for fd in fds {
        set = crate::sys::pipe::set_pipe_size(fd, size)?;
    }
    Ok(set)
}

impl Transport for StreamEndpoint {
    crate::transport::endpoint_accessors!(field mech);

    fn send_deadline(&mut self, msg: &[u8], deadline: Deadline) -> Result<(), SendError> {
        if msg.len() > self.max {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max: self.max,
            });
        }
        if self.framing == Framing::Length
            && self.wpos >= self.wpend.len()
            && FRAME_HEADER_LEN + msg.len() <= SMALL_FRAME
        {
            return self.send_small(msg, deadline);
        }
        self.flush_deadline(deadline)?;
        self.mode_for(deadline)?;
        let line = self.framing == Framing::Line;
        if line && msg.contains(&b'\n') {
            return Err(SendError::Io(crate::error::invalid(
                "a line-framed message cannot contain a newline",
            )));
        }
        let hdr = framing::encode_header(msg.len());
        let (hdr, msg, tail): (&[u8], &[u8], &[u8]) = if line {
            (&[], msg, b"\n")
        } else {
            (&hdr, msg, &[])
        };
        let total = hdr.len() + msg.len() + tail.len();
        let fd = self.wfd()?;
        let (wait, socket) = (self.wait, self.socket);
        let mut off = drive(wait, deadline, fd, libc::POLLOUT, None, || {
            Self::write_bufs(fd, socket, &[hdr, msg, tail]).map_err(SendError::from)
        })?;
        while off < total {
            let parts = remaining(&[hdr, msg, tail], off);
            if deadline != Deadline::Never {
                // Part of the message is in the stream; it cannot be taken back. Keep the
                // rest and send it before anything else.
                self.wpend = parts.concat();
                self.wpos = 0;
                return Ok(());
            }
            off += drive(wait, Deadline::Never, fd, libc::POLLOUT, None, || {
                Self::write_bufs(fd, socket, &parts).map_err(SendError::from)
            })?;
        }
        Ok(())
    }

    fn recv_deadline(&mut self, buf: &mut [u8], deadline: Deadline) -> Result<usize, RecvError> {
        let n = loop {
            let r = if self.wpos < self.wpend.len() {
                self.recv_while_flushing(buf, deadline)
            } else {
                self.recv_inner(buf, deadline)
            };
            match r {
                Err(RecvError::PeerGone) if self.sessions => self.end_session()?,
                r => break r?,
            }
        };
        self.last_len = n;
        Ok(n)
    }

    fn dropped(&self) -> u64 {
        self.discarded
    }

    fn peer(&self) -> Option<PeerInfo> {
        self.peer
    }

    fn try_flush(&mut self) -> Result<(), SendError> {
        self.flush_deadline(Deadline::Now)
    }

    fn raw(&self) -> RawHandle<'_> {
        RawHandle::Fds {
            read: self.r.as_ref().map(|f| f.as_fd()),
            write: self.wfd().ok(),
        }
    }

    /// With [`Framing::Line`] the maximum message shrinks to what the receive buffer holds,
    /// 64 KiB less the newline.
    fn set_framing(&mut self, framing: Framing) {
        self.framing = framing;
        if framing == Framing::Line {
            self.max = self.max.min(self.dec.capacity() - 1);
        }
    }
}

impl Drop for StreamEndpoint {
    fn drop(&mut self) {
        // Best effort: a message accepted by try_send should not vanish on drop.
        if self.wpos < self.wpend.len() {
            let _ = self.flush_deadline(Deadline::after(Duration::from_secs(1)));
        }
    }
}

impl StreamEndpoint {
    /// The descriptor messages arrive on (for a socket, the socket), to watch for
    /// readability. After it is readable, receive with `try_recv` until `Empty`: one read may
    /// bring several messages, and those wait in the endpoint, where epoll cannot see them.
    pub fn read_fd(&self) -> Option<BorrowedFd<'_>> {
        self.r.as_ref().map(|f| f.as_fd())
    }

    /// The descriptor messages leave by (for a socket, the same socket as
    /// [`read_fd`](Self::read_fd); for a pipe or FIFO pair, the other pipe), to watch for
    /// writability; then [`Transport::try_flush`] what a `try_send` left.
    pub fn write_fd(&self) -> Option<BorrowedFd<'_>> {
        self.wfd().ok()
    }
}

/// The read side: for a socket, the one descriptor (readable and writable); for a pipe or
/// FIFO pair, the read pipe, so register [`StreamEndpoint::write_fd`] too to learn when it is
/// writable; for a send-only endpoint, the write pipe.
impl AsFd for StreamEndpoint {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.r
            .as_ref()
            .or(self.w.as_ref())
            .expect("every stream endpoint has a descriptor")
            .as_fd()
    }
}
