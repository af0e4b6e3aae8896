//! One session of a zero-copy row, the sending side (the bench process): build the sender's
//! objects for the path, spawn the receiving peer, stream for the phase's duration, collect.

use super::{file_slots, Path, PIPE_SIZE};
use crate::libc_only;
use crate::options::BenchOptions;
use crate::pattern;
use crate::peer::{self, expect_ready, FromPeer, PeerSpec, Role, ToPeer};
use crate::scenario::RecvTotals;
use crate::sys;
use ipckit::zerocopy::{self as zc, VmspliceSender, ZeroCopySender};
use ipckit::Wait;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// What one session measured.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Messages per second received (and verified).
    pub msgs_per_s: f64,
    /// MB/s (10^6 B/s) received.
    pub mbps: f64,
    /// CPU time of both processes per message, ns.
    pub cpu_ns_per_msg: Option<f64>,
    /// Corrupted, missing or out-of-order messages.
    pub errors: u64,
    /// The first of those, described.
    pub first_error: Option<String>,
    /// `tcp-zerocopy`: the sender's counts (completions, copied, ...).
    pub zc: Option<zc::ZeroCopyStats>,
}

/// Measures one row once, outside a bench run (for `ipckit demo zero-copy`): the two
/// processes pinned as the bench pins them, every word verified; this thread's CPU affinity
/// is restored afterwards.
///
/// # Errors
///
/// If the CPUs cannot be chosen or the session fails.
pub fn measure_once(p: Path, size: usize, duration: Duration) -> io::Result<Run> {
    let allowed = sys::allowed_cpus()?;
    let cpus = crate::machine::choose_cpus(&allowed, None).map_err(io::Error::other)?;
    let opts = BenchOptions {
        duration,
        ..BenchOptions::default()
    };
    let r = session(p, size, Wait::Block, cpus, &opts);
    let _ = sys::set_affinity(&allowed);
    r
}

/// How a file row moves a file slot to the socket.
enum FileHow {
    ReadWrite,
    Sendfile,
    /// Through a pipe: its (read, write) ends.
    Splice {
        r: OwnedFd,
        w: OwnedFd,
    },
}

/// The sender's objects for one session, and the descriptor the peer reads from.
enum Sender {
    Pipe {
        w: OwnedFd,
        wait: Wait,
    },
    Vmsplice(VmspliceSender),
    File {
        sock: OwnedFd,
        file: File,
        how: FileHow,
    },
    Tcp {
        sock: OwnedFd,
    },
    TcpZc(ZeroCopySender),
}

fn pipe_pair(size: usize) -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = std::io::pipe()?;
    let (r, w): (OwnedFd, OwnedFd) = (r.into(), w.into());
    ipckit::pipe::set_capacity(&w, size)?;
    Ok((r, w))
}

fn tcp_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let a = std::net::TcpStream::connect(l.local_addr()?)?;
    let (b, _) = l.accept()?;
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    Ok((a.into(), b.into()))
}

/// The served file: `file_slots(size)` messages, message `j` with header `j`, unlinked at
/// once (created 0600 and exclusively in the temporary directory).
fn served_file(size: usize, touch: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = std::env::temp_dir().join(ipckit::registry::unique_name("bench-file"));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    let mut w = io::BufWriter::with_capacity(1 << 20, &f);
    let mut msg = vec![0u8; size];
    for j in 0..file_slots(size) as u64 {
        pattern::write_header(&mut msg, j);
        if touch {
            pattern::fill(&mut msg, j);
        }
        w.write_all(&msg)?;
    }
    w.flush()?;
    drop(w);
    Ok(f)
}

/// One session of row `p`: spawn the receiver, stream for the phase's duration, collect.
pub(super) fn session(
    p: Path,
    size: usize,
    wait: Wait,
    cpus: [usize; 2],
    opts: &BenchOptions,
) -> io::Result<Run> {
    let (peer_fd, mut sender): (OwnedFd, Sender) = match p {
        Path::PipeWrite => {
            let (r, w) = pipe_pair(PIPE_SIZE)?;
            sys::set_nonblocking(w.as_fd(), wait.spins())?;
            (r, Sender::Pipe { w, wait })
        }
        Path::PipeVmsplice => {
            let (r, w) = pipe_pair(PIPE_SIZE)?;
            // Twice the ring correctness needs: the sender then rewrites lines the reader
            // copied longer ago, which measured 10-30% faster at 64 KiB here (the C loop
            // the target comes from rotates about 2 MiB too).
            let min = zc::vmsplice_ring_pages(PIPE_SIZE, size);
            let mut v = VmspliceSender::with_ring_pages(w, size, 2 * min)?;
            v.set_wait_strategy(wait);
            (r, Sender::Vmsplice(v))
        }
        Path::UdsReadWrite | Path::UdsSplice | Path::UdsSendfile => {
            let (a, b) = std::os::unix::net::UnixStream::pair()?;
            let how = match p {
                Path::UdsSplice => {
                    let (r, w) = pipe_pair(PIPE_SIZE.max(size))?;
                    FileHow::Splice { r, w }
                }
                Path::UdsSendfile => FileHow::Sendfile,
                _ => FileHow::ReadWrite,
            };
            (
                b.into(),
                Sender::File {
                    sock: a.into(),
                    file: served_file(size, opts.touch)?,
                    how,
                },
            )
        }
        Path::TcpSend => {
            let (a, b) = tcp_pair()?;
            (b, Sender::Tcp { sock: a })
        }
        Path::TcpZerocopy => {
            let (a, b) = tcp_pair()?;
            // Enough buffers to keep a few MiB in flight; at least 4.
            let slots = ((8 << 20) / size).clamp(4, 1024);
            (b, Sender::TcpZc(ZeroCopySender::new(a, slots, size)?))
        }
    };
    let mut spec = PeerSpec {
        role: Role::Transport,
        mechanism: p.name().into(),
        wait: wait.name().into(),
        imp: p.imp(),
        address: format!("fd:{}", peer_fd.as_raw_fd()),
        address2: None,
        cpu: cpus[1],
        ctl_in: -1,
        ctl_out: -1,
        shm_fd: None,
        warmup: 0,
        touch: opts.touch,
        max_msg_size: Some(size),
        zero_copy: false,
        shm_capacity: None,
        producer: None,
        duration_ms: opts.duration.as_millis() as u64,
    };
    let limit = Duration::from_secs(60) + opts.duration * 4;
    let (guard, mut ctl) = peer::spawn(&mut spec, |_| {}, &[peer_fd.as_raw_fd()], limit)?;
    drop(peer_fd);
    expect_ready(&mut ctl)?;
    sys::pin_current_thread(cpus[0])?;
    ctl.send(&ToPeer::Go {
        lat_size: None,
        tput_size: size,
    })?;
    let (sent, first_send_ns, cpu_ns) = stream(&mut sender, size, opts)?;
    let zc = match &mut sender {
        Sender::TcpZc(z) => {
            z.flush_timeout(Duration::from_secs(10))?;
            Some(z.stats())
        }
        _ => None,
    };
    let r: RecvTotals = match ctl.recv::<FromPeer>(Duration::from_secs(30) + opts.duration)? {
        FromPeer::TputDone(t) => t,
        FromPeer::Error(e) => return Err(io::Error::other(format!("peer: {e}"))),
        other => return Err(io::Error::other(format!("peer sent {other:?}"))),
    };
    drop(sender);
    guard
        .finish(Duration::from_secs(5))
        .map_err(io::Error::other)?;
    let elapsed = r.last_recv_ns.saturating_sub(first_send_ns).max(1) as f64;
    let mut run = Run {
        msgs_per_s: r.received as f64 / elapsed * 1e9,
        mbps: r.bytes as f64 / elapsed * 1e3,
        cpu_ns_per_msg: (r.received > 0).then(|| (cpu_ns + r.cpu_ns) as f64 / r.received as f64),
        errors: r.errors,
        first_error: r.first_error,
        zc,
    };
    if r.received != sent {
        run.errors += sent.abs_diff(r.received);
        run.first_error.get_or_insert(format!(
            "sent {sent} messages, receiver counted {}",
            r.received
        ));
    }
    Ok(run)
}

fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = sys::write(fd, buf)?;
        buf = &buf[n..];
    }
    Ok(())
}

/// Waits as `wait` says after a call found the descriptor not ready (`since`: when the
/// wait began): spins, or (blocking, or adaptive past its spin) polls for `events`.
pub(super) fn wait_ready(
    fd: BorrowedFd<'_>,
    events: i16,
    wait: Wait,
    since: Instant,
) -> io::Result<()> {
    let spin_for = match wait {
        Wait::Block => Duration::ZERO,
        Wait::Spin => Duration::MAX,
        Wait::Adaptive { spin } => spin,
    };
    if spin_for == Duration::MAX || since.elapsed() < spin_for {
        std::hint::spin_loop();
    } else {
        libc_only::poll_one(fd, events, -1)?;
    }
    Ok(())
}

/// `write` until all of `buf` is written, on a descriptor that is non-blocking when `wait`
/// spins.
fn write_all_waiting(fd: BorrowedFd<'_>, mut buf: &[u8], wait: Wait) -> io::Result<()> {
    let mut since = None;
    while !buf.is_empty() {
        match sys::write(fd, buf) {
            Ok(n) => {
                buf = &buf[n..];
                since = None;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_ready(
                fd,
                libc_only::POLLOUT,
                wait,
                *since.get_or_insert_with(Instant::now),
            )?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The sender's loop: messages for the phase's duration, then the end marker. Returns
/// (messages sent, mono ns before the first, sender CPU ns).
fn stream(s: &mut Sender, size: usize, opts: &BenchOptions) -> io::Result<(u64, u64, u64)> {
    let mask = pattern::seq_mask(size);
    let slots = file_slots(size) as u64;
    let mut buf = vec![0u8; size];
    let cpu0 = libc_only::thread_cpu_ns();
    let first = sys::mono_ns();
    let start = Instant::now();
    let mut seq = 0u64;
    let fill = |m: &mut [u8], h: u64| {
        pattern::write_header(m, h);
        if opts.touch {
            pattern::fill(m, h);
        }
    };
    loop {
        let h = seq & mask;
        match s {
            Sender::Pipe { w, wait } => {
                fill(&mut buf, h);
                write_all_waiting(w.as_fd(), &buf, *wait)?;
            }
            Sender::Vmsplice(v) => v.send_with(size, |m| fill(m, h))?,
            Sender::Tcp { sock } => {
                fill(&mut buf, h);
                write_all(sock.as_fd(), &buf)?;
            }
            Sender::TcpZc(z) => z.send_with(size, |m| fill(m, h))?,
            Sender::File { sock, file, how } => {
                let mut off = (seq % slots) * size as u64;
                match how {
                    FileHow::ReadWrite => {
                        file.read_exact_at(&mut buf, off)?;
                        write_all(sock.as_fd(), &buf)?;
                    }
                    FileHow::Sendfile => {
                        if zc::sendfile_exact(&*sock, &*file, &mut off, size)? != size {
                            return Err(io::Error::other("served file ended early"));
                        }
                    }
                    FileHow::Splice { r, w } => {
                        let mut left = size;
                        while left > 0 {
                            let n = zc::splice(
                                &*file,
                                Some(&mut off),
                                &*w,
                                None,
                                left,
                                zc::SpliceFlags::MOVE | zc::SpliceFlags::MORE,
                            )?;
                            if n == 0 {
                                return Err(io::Error::other("served file ended early"));
                            }
                            zc::splice_exact(&*r, &*sock, n)?;
                            left -= n;
                        }
                    }
                }
            }
        }
        seq += 1;
        if seq.is_multiple_of(16) && start.elapsed() >= opts.duration {
            break;
        }
    }
    // The end marker: a plain write of one message with the end bit.
    let mut end = vec![0u8; size];
    pattern::write_header(&mut end, (seq & mask) | pattern::end_bit(size));
    match s {
        Sender::Pipe { w, wait } => write_all_waiting(w.as_fd(), &end, *wait)?,
        Sender::Vmsplice(v) => v.send(&end)?,
        Sender::Tcp { sock } | Sender::File { sock, .. } => write_all(sock.as_fd(), &end)?,
        Sender::TcpZc(z) => z.send(&end)?,
    }
    Ok((seq, first, libc_only::thread_cpu_ns().saturating_sub(cpu0)))
}
