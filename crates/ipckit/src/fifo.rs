//! Named FIFOs: a pipe with a name in the file system, for processes that are not parent
//! and child. Everything goes through a [`FifoBuilder`] on the FIFO's path: ipckit creates
//! FIFOs ([`FifoBuilder::create`]) owner-only (0600) and exclusively, records them in the
//! registry, and removes them when the creator drops its guard. Opening waits as the builder
//! says: a writer waits for a reader at most its [`timeout`](FifoBuilder::timeout) (as long as
//! it takes without one), then fails with a clear error, and a reader given a timeout waits
//! that long for a writer's first byte. Opening does not follow a symbolic link and, unless
//! the caller opts in with [`allow_other_users`](FifoBuilder::allow_other_users), accepts
//! only a FIFO of our own uid that others cannot open.
//!
//! # Byte streams: [`FifoReader`] and [`PipeWriter`]
//!
//! A FIFO carries one byte stream per *session*: from the first writer's open to the last
//! writer's close. [`FifoReader`] reads it, reports end-of-file (`Ok(0)`) when the last writer
//! closes and not before, and [`FifoReader::wait_writer`] then waits for the next session on
//! the same FIFO without losing a byte the next writer wrote early.
//! [`FifoBuilder::open_writer`] gives the write end as a [`PipeWriter`], which writes with an
//! optional timeout and counts the time it spent waiting for room. Either end gives up its
//! descriptor through `OwnedFd::from`.
//!
//! How the kernel shows a writer to a reader, and what this module builds on it (Linux):
//! - `read` returns 0 whenever the pipe is empty and *no writer has it open*, whether a
//!   writer never came or the last one left; the two differ only in `poll`: `POLLHUP` is
//!   reported once the writers that came (or were there) since the read end was opened
//!   have all gone, and then stays reported while no writer is there. A reader therefore
//!   marks a session as started at its first byte, and counts a 0 as the end only after that.
//! - A writer that opens and closes without writing a byte starts no session: the waits
//!   skip it. They reopen the read end (before closing the old one, so the pipe's buffer
//!   survives) because the sticky `POLLHUP` would otherwise make every later `poll` return
//!   at once, a busy loop.
//! - A writer that opened but has not written yet cannot be seen from the read end; a
//!   wait for a writer ends with its first byte (or times out).
//!
//! Why a reader does not simply open the FIFO `O_RDWR`, as some servers do to never see
//! end-of-file: holding a write end itself, it would count as a writer forever, so `read`
//! would never return 0 and the end of a session could not be told at all (POSIX also
//! leaves `O_RDWR` on a FIFO undefined).
//!
//! # Errors and errno
//!
//! | errno | when | returned as |
//! |---|---|---|
//! | `ENXIO` | non-blocking write open, no reader | `NotConnected` ([`FifoBuilder::try_open_writer`]); retried until the timeout ([`FifoBuilder::open_writer`]), then `TimedOut` |
//! | `ELOOP` | the path is a symbolic link | `InvalidInput` ("... is a symbolic link ...") |
//! | `ENOENT` | nothing at the path | `NotFound` (retried by [`FifoBuilder::open_writer`] until the timeout) |
//! | `EEXIST` | [`FifoBuilder::create`] over anything | `AlreadyExists` |
//! | `EISDIR`, `ENXIO`, — | not a FIFO (a file, directory or socket: `open` gives a socket `ENXIO` too, so the path is looked at) | `InvalidInput` ("... is not a FIFO but a socket") |
//! | — | another uid's FIFO, or writable by others | `PermissionDenied` |
//! | `EPIPE` | writing with no reader left | `BrokenPipe` |
//!
//! # References
//!
//! `fifo(7)`, `pipe(7)`, `mkfifo(3)`, `open(2)` (`ENXIO`, `O_NOFOLLOW`), `poll(2)`.

use crate::pipe::PipeWriter;
use crate::registry::{self, ObjectGuard, ObjectKind};
use crate::sys::fd as sysfd;
use crate::sys::pipe as syspipe;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Builds what is done with the FIFO at one path: `FifoBuilder::new(path)`, the setters, then
/// [`create`](FifoBuilder::create) (make it), [`open_reader`](FifoBuilder::open_reader),
/// [`open_writer`](FifoBuilder::open_writer) or
/// [`try_open_writer`](FifoBuilder::try_open_writer) (open an end of an existing one).
///
/// The terminal methods take `&self`, as [`std::fs::OpenOptions::open`] does.
///
/// # Examples
///
/// ```
/// use ipckit::fifo::FifoBuilder;
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// # fn main() -> std::io::Result<()> {
/// # // A private directory of this example's own, so that examples running at once never meet.
/// # use std::os::unix::fs::DirBuilderExt;
/// # let dir = std::env::temp_dir().join(format!("doc-fifo-{}", std::process::id()));
/// # std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
/// let path = dir.join("my.fifo"); // e.g. /tmp/my.fifo
/// // Process 1: make the FIFO (removed when `guard` drops).
/// let guard = FifoBuilder::new(&path).create()?;
///
/// // Process 2 (another process in real use; a thread here, so that the example runs):
/// // wait up to 5 s for the reader, then write.
/// let p = path.clone();
/// let process_2 = std::thread::spawn(move || -> std::io::Result<()> {
///     let mut w = FifoBuilder::new(&p).timeout(Duration::from_secs(5)).open_writer()?;
///     w.write_all(b"hi")
/// });
///
/// // Process 1: read a session.
/// let mut r = FifoBuilder::new(&path).timeout(Duration::from_secs(5)).open_reader()?;
/// let mut all = Vec::new();
/// r.read_to_end(&mut all)?; // ends when process 2 closes its end
/// assert_eq!(all, b"hi");
/// # process_2.join().unwrap()?;
/// # drop(guard);
/// # std::fs::remove_dir(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until create() or an open_*()"]
pub struct FifoBuilder {
    path: PathBuf,
    mode: u32,
    timeout: Option<Duration>,
    owner: Owner,
}

impl FifoBuilder {
    /// The FIFO at `path`. Defaults: mode 0600, no timeout, only FIFOs of our uid that
    /// others cannot write.
    pub fn new(path: impl AsRef<Path>) -> FifoBuilder {
        FifoBuilder {
            path: path.as_ref().to_path_buf(),
            mode: 0o600,
            timeout: None,
            owner: Owner::Us,
        }
    }

    /// Permission bits of a new FIFO (0600 by default), set exactly (the umask does not
    /// apply). Used by [`create`](FifoBuilder::create) only.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// How long an open waits for the other side: [`open_writer`](FifoBuilder::open_writer)
    /// for a reader to open the FIFO, [`open_reader`](FifoBuilder::open_reader) for a
    /// writer's first byte. Without it, `open_writer` waits as long as it takes and
    /// `open_reader` does not wait at all (the first read does). `Duration::MAX` waits
    /// without a deadline. Ignored by [`create`](FifoBuilder::create) and
    /// [`try_open_writer`](FifoBuilder::try_open_writer).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Accepts a FIFO of any owner and mode when opening, for callers that share FIFOs
    /// between users on purpose (off by default: only a FIFO owned by our effective uid and
    /// not writable by others). Symbolic links are never followed either way. Ignored by
    /// [`create`](FifoBuilder::create).
    pub fn allow_other_users(mut self, allow: bool) -> Self {
        self.owner = if allow { Owner::Anyone } else { Owner::Us };
        self
    }

    /// Creates the FIFO with [`mode`](FifoBuilder::mode), failing if anything exists at the
    /// path. The returned guard removes it (and its registry record) when dropped.
    ///
    /// The FIFO is made (`mkfifoat`) and later removed (`unlinkat`) relative to a handle on
    /// its directory opened now, and removed only while that name is still this FIFO
    /// (device, inode, type, owner): renaming a directory above it or replacing the FIFO
    /// cannot make the guard remove anything else (see [`crate::fs`]). The directory must be
    /// one nobody else can rename entries of, as for socket files: not a symbolic link, owned
    /// by us or root, and not writable by others unless sticky. The FIFO is recorded at its
    /// absolute path ([`ObjectGuard::name`]: the directory's real path and the name), so
    /// `ipckit clean` run elsewhere finds the same file.
    ///
    /// # Errors
    ///
    /// `AlreadyExists`, `PermissionDenied` for a directory that fails the check above,
    /// `InvalidInput` for a path that is not UTF-8 or holds a control character, or the OS
    /// error.
    #[doc(alias = "mkfifo")]
    #[doc(alias = "mkfifoat")]
    pub fn create(&self) -> io::Result<ObjectGuard> {
        let (path, mode) = (self.path.as_path(), self.mode);
        let parent = crate::fs::open_parent(path, "FIFO")?;
        let mut guard = registry::register_file(ObjectKind::Fifo, parent)?;
        let made = (|| {
            let (dir, entry) = guard.file().expect("a file guard has its directory");
            let entry = std::os::unix::ffi::OsStrExt::as_bytes(entry.as_os_str()).to_vec();
            crate::sys::fs::mkfifoat(dir.as_fd(), &entry, mode)?;
            Ok::<_, io::Error>((dir.try_clone()?, entry))
        })();
        let (dir, entry) = match made {
            Ok(v) => v,
            Err(e) => {
                guard.forget_object();
                return Err(if e.kind() == io::ErrorKind::AlreadyExists {
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} already exists", path.display()),
                    )
                } else {
                    named(e, path)
                });
            }
        };
        if let Err(e) = guard.identify_file(libc::S_IFIFO) {
            // Not the FIFO we made at that name: leave it, and drop our record.
            guard.forget_object();
            return Err(e);
        }
        // The umask may have taken bits away: set exactly `mode` (the entry is the FIFO just
        // identified, in a directory nobody else can rename entries of).
        crate::sys::fs::fchmodat(dir.as_fd(), &entry, mode & 0o7777).map_err(|e| named(e, path))?;
        Ok(guard)
    }

    /// Opens the read end as a [`FifoReader`]. Without a [`timeout`](FifoBuilder::timeout) it
    /// returns at once, writer or not (the first read waits for a writer's first byte); with
    /// one it waits at most that long for a writer to write its first byte, skipping a writer
    /// that opens and closes without writing (see the [module docs](self)), without
    /// busy-waiting.
    ///
    /// # Errors
    ///
    /// `TimedOut` ("no writer wrote to ... within ...") when no byte comes in time, `NotFound`,
    /// `InvalidInput` if the path is a symbolic link or not a FIFO, `PermissionDenied` if
    /// another user owns it or others may write it (unless
    /// [`allow_other_users`](FifoBuilder::allow_other_users)), or the OS error.
    ///
    /// # References
    ///
    /// `fifo(7)`, `poll(2)` (`POLLHUP` on a FIFO).
    pub fn open_reader(&self) -> io::Result<FifoReader> {
        let mut r = FifoReader::open(&self.path, self.owner)?;
        if let Some(timeout) = self.timeout {
            r.wait_data(Instant::now().checked_add(timeout), timeout)?;
        }
        Ok(r)
    }

    /// Opens the write end as a [`PipeWriter`] (a FIFO's write end is a pipe's: waits for
    /// room with a timeout, `WouldBlock` on demand, partial and `PIPE_BUF`-atomic writes, the
    /// time spent blocked), waiting for a reader to open the FIFO (and for the FIFO to be
    /// made) at most the [`timeout`](FifoBuilder::timeout), or as long as it takes without
    /// one.
    ///
    /// # Errors
    ///
    /// `TimedOut` ("no reader ... within ...") when none comes, `NotFound`, `InvalidInput` if
    /// the path is a symbolic link or not a FIFO, `PermissionDenied` if another user owns it
    /// or its mode lets others in (unless
    /// [`allow_other_users`](FifoBuilder::allow_other_users)), or the OS error.
    pub fn open_writer(&self) -> io::Result<PipeWriter> {
        PipeWriter::try_from_fd(self.open_write_fd()?)
    }

    /// Opens the write end if a reader has the FIFO open now, never waiting (the timeout is
    /// ignored). Same checks as [`open_writer`](FifoBuilder::open_writer).
    ///
    /// # Errors
    ///
    /// `NotConnected` ("no process has ... open for reading") for the `ENXIO` that `open(2)`
    /// returns for a non-blocking write open with no reader, `NotFound`, `InvalidInput` if
    /// the path is a symbolic link or not a FIFO, `PermissionDenied` if another user owns it
    /// or others may write it, or the OS error.
    ///
    /// # References
    ///
    /// `open(2)` (`ENXIO`), `fifo(7)`.
    pub fn try_open_writer(&self) -> io::Result<PipeWriter> {
        PipeWriter::try_from_fd(try_open_write_as(&self.path, self.owner)?)
    }

    /// The read end as a bare descriptor (non-blocking), for endpoints built on it.
    pub(crate) fn open_read_fd(&self) -> io::Result<OwnedFd> {
        open_read_as(&self.path, self.owner)
    }

    /// The write end as a bare descriptor (non-blocking), waiting as
    /// [`open_writer`](FifoBuilder::open_writer) does.
    pub(crate) fn open_write_fd(&self) -> io::Result<OwnedFd> {
        let timeout = self.timeout.unwrap_or(Duration::MAX);
        open_write_as(&self.path, timeout, self.owner)
    }
}

/// Whose FIFOs an open accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Only ours (owner = our euid) and not writable by others: nobody else can have made it
    /// or inject messages into it. (A FIFO made by `mkfifo` under the usual umask, 0644, is
    /// accepted: its owner chose to let others read it; the ones ipckit creates are 0600.)
    Us,
    /// Any user's.
    Anyone,
}

fn check_fifo(fd: &OwnedFd, path: &Path, owner: Owner) -> io::Result<()> {
    let st = sysfd::fstat(fd.as_fd())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFIFO {
        let what = match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => "a directory",
            libc::S_IFREG => "a regular file",
            libc::S_IFSOCK => "a socket",
            _ => "a device",
        };
        return Err(crate::error::invalid(format!(
            "{} is not a FIFO but {what}",
            path.display()
        )));
    }
    if owner == Owner::Us && (st.st_uid != registry::euid() || st.st_mode & 0o022 != 0) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is owned by uid {} with mode {:03o}; only a FIFO of our uid {} that others \
                 cannot write is used (the library's `allow_other_users` option lifts this)",
                path.display(),
                st.st_uid,
                st.st_mode & 0o7777,
                registry::euid()
            ),
        ));
    }
    Ok(())
}

/// `open` without following a symbolic link at `path` (and never taking a terminal). The
/// OS error is returned as is (callers look at the errno), but for a link.
fn open_fifo(path: &Path, access: i32) -> io::Result<OwnedFd> {
    syspipe::open(
        path,
        access | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => crate::error::invalid(format!(
            "{} is a symbolic link (or has too many levels of links); FIFOs are opened \
             without following links",
            path.display()
        )),
        // `open` says EISDIR for a directory opened to write, and ENXIO for a socket as well
        // as for a FIFO without a reader: name what is really there.
        Some(libc::EISDIR) | Some(libc::ENXIO) => match not_a_fifo(path) {
            Some(what) => {
                crate::error::invalid(format!("{} is not a FIFO but {what}", path.display()))
            }
            None => e,
        },
        _ => e,
    })
}

/// What is at `path` (not following a link), if it is something other than a FIFO.
fn not_a_fifo(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = std::fs::symlink_metadata(path).ok()?.file_type();
    Some(if t.is_fifo() {
        return None;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "a device"
    })
}

/// Opens the read end (non-blocking; returns at once even with no writer) and checks it.
fn open_read_as(path: &Path, owner: Owner) -> io::Result<OwnedFd> {
    let fd = open_fifo(path, libc::O_RDONLY).map_err(|e| named(e, path))?;
    check_fifo(&fd, path, owner)?;
    Ok(fd)
}

/// Opens the write end, waiting at most `timeout` (`Duration::MAX`: no deadline) for a reader
/// and for the FIFO to be made, and checks it.
fn open_write_as(path: &Path, timeout: Duration, owner: Owner) -> io::Result<OwnedFd> {
    // `None`: the timeout overflows the clock, so there is no deadline.
    let deadline = Instant::now().checked_add(timeout);
    let mut nap = Duration::from_micros(100);
    loop {
        match open_fifo(path, libc::O_WRONLY) {
            Ok(fd) => {
                check_fifo(&fd, path, owner)?;
                return Ok(fd);
            }
            // ENXIO: no reader yet. ENOENT: the creator has not made it yet.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENOENT)) => {
                let now = Instant::now();
                let left = match deadline {
                    None => Duration::MAX,
                    Some(d) if now >= d => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "no reader opened {} within {:.1} s{}",
                                path.display(),
                                timeout.as_secs_f64(),
                                if e.raw_os_error() == Some(libc::ENOENT) {
                                    " (it does not exist)"
                                } else {
                                    ""
                                }
                            ),
                        ));
                    }
                    Some(d) => d - now,
                };
                std::thread::sleep(nap.min(left));
                nap = (nap * 2).min(Duration::from_millis(10));
            }
            Err(e) => return Err(named(e, path)),
        }
    }
}

/// Puts the path in front of an OS error's text; ipckit's own errors name it already.
fn named(e: io::Error, path: &Path) -> io::Error {
    if e.raw_os_error().is_none() {
        return e;
    }
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Opens the write end if a reader has the FIFO open now, and checks it.
fn try_open_write_as(path: &Path, owner: Owner) -> io::Result<OwnedFd> {
    match open_fifo(path, libc::O_WRONLY) {
        Ok(fd) => {
            check_fifo(&fd, path, owner)?;
            Ok(fd)
        }
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Err(io::Error::new(
            io::ErrorKind::NotConnected,
            format!(
                "no process has FIFO {} open for reading (ENXIO)",
                path.display()
            ),
        )),
        Err(e) => Err(named(e, path)),
    }
}

/// The read end of a FIFO as a byte stream: [`Read`](io::Read) plus [`AsFd`].
///
/// Made by [`FifoBuilder::open_reader`]. Reads block (with an optional timeout,
/// [`FifoReader::set_read_timeout`]) or, after [`FifoReader::set_nonblocking`], return
/// `WouldBlock`. A read returns `Ok(0)`, the end of the session, once the session has started
/// (a byte was read) and the last writer has closed, and keeps returning `Ok(0)` until
/// [`FifoReader::wait_writer`] (or its `try_`/`_timeout` forms) starts waiting for the next
/// session. The descriptor underneath is always non-blocking; waiting is `poll`.
///
/// The read end may be reopened by the waits (see the [module docs](self)): it stays the same
/// FIFO (device and inode are checked), but [`AsFd::as_fd`] may then be another descriptor.
///
/// # Examples
///
/// ```
/// use ipckit::fifo::FifoBuilder;
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// # fn main() -> std::io::Result<()> {
/// # // A private directory of this example's own, so that examples running at once never meet.
/// # use std::os::unix::fs::DirBuilderExt;
/// # let dir = std::env::temp_dir().join(format!("doc-fifo-reader-{}", std::process::id()));
/// # std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
/// # let path = dir.join("my.fifo"); // e.g. /tmp/my.fifo
/// # let guard = FifoBuilder::new(&path).create()?;
/// # let p = path.clone();
/// // Process 2 (another process in real use; a thread here, so that the example runs).
/// let process_2 = std::thread::spawn(move || -> std::io::Result<()> {
///     let w = FifoBuilder::new(&p).timeout(Duration::from_secs(5));
///     w.open_writer()?.write_all(b"hi") // a session: open, write, close
/// });
///
/// // Process 1: one session after another.
/// let mut r = FifoBuilder::new(&path).timeout(Duration::from_secs(5)).open_reader()?;
/// let mut all = Vec::new();
/// r.read_to_end(&mut all)?; // ends when the last writer closes
/// # process_2.join().unwrap()?;
/// # // Process 2's next session, written before process 1 waits for it.
/// # FifoBuilder::new(&path).open_writer()?.write_all(b" again")?;
/// r.wait_writer_timeout(Duration::from_secs(5))?; // the next writer's bytes, none lost
/// r.read_to_end(&mut all)?;
/// assert_eq!(all, b"hi again");
/// # drop(guard);
/// # std::fs::remove_dir(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FifoReader {
    fd: OwnedFd,
    path: PathBuf,
    owner: Owner,
    /// Device and inode: a reopen must find the same FIFO.
    id: (u64, u64),
    timeout: Option<Duration>,
    nonblocking: bool,
    /// A byte of the current session was read: a read of 0 now means its end.
    started: bool,
    /// The session's end was reported; reads return 0 until `wait_writer`.
    eof: bool,
}

impl FifoReader {
    fn open(path: &Path, owner: Owner) -> io::Result<FifoReader> {
        let fd = open_read_as(path, owner)?;
        let st = sysfd::fstat(fd.as_fd())?;
        Ok(FifoReader {
            fd,
            path: path.to_path_buf(),
            owner,
            id: (st.st_dev, st.st_ino),
            timeout: None,
            nonblocking: false,
            started: false,
            eof: false,
        })
    }

    /// The path it was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long a read waits for data; then it fails with `TimedOut`. By default (and after
    /// [`FifoReader::clear_read_timeout`]) a read waits as long as it takes.
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.timeout = Some(timeout);
    }

    /// Makes reads wait as long as it takes again (the default).
    pub fn clear_read_timeout(&mut self) {
        self.timeout = None;
    }

    /// Makes reads return `WouldBlock` instead of waiting (the timeout is then unused).
    pub fn set_nonblocking(&mut self, on: bool) {
        self.nonblocking = on;
    }

    /// True once the end of the session was reported (the last writer closed).
    pub fn is_eof(&self) -> bool {
        self.eof
    }

    /// Bytes in the FIFO now ([`crate::pipe::queued`]).
    ///
    /// # Errors
    ///
    /// The `ioctl` error.
    #[doc(alias = "FIONREAD")]
    pub fn queued(&self) -> io::Result<usize> {
        sysfd::fionread(self.fd.as_fd())
    }

    /// After the end of a session, waits as long as it takes for the next writer's first
    /// byte; the reads that follow return the new session. Bytes the next writer wrote
    /// before this call are not lost: the pipe's buffer belongs to the FIFO, which stays open
    /// here throughout. Called mid-session, it waits until something can be read.
    ///
    /// # Errors
    ///
    /// `InvalidData` if the path now names another file than the FIFO opened, or the OS
    /// error.
    pub fn wait_writer(&mut self) -> io::Result<()> {
        self.wait_writer_until(None, Duration::MAX)
    }

    /// [`FifoReader::wait_writer`] without waiting: `Ok` if a byte of the next session (or,
    /// mid-session, something) can be read now.
    ///
    /// # Errors
    ///
    /// `WouldBlock` when no writer has written yet; otherwise as
    /// [`FifoReader::wait_writer`].
    pub fn try_wait_writer(&mut self) -> io::Result<()> {
        self.wait_writer_until(Some(Instant::now()), Duration::ZERO)
            .map_err(|e| match e.kind() {
                io::ErrorKind::TimedOut => io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("no writer has written to {} yet", self.path.display()),
                ),
                _ => e,
            })
    }

    /// [`FifoReader::wait_writer`], waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// `TimedOut` when no writer writes in time; otherwise as [`FifoReader::wait_writer`].
    pub fn wait_writer_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.wait_writer_until(Instant::now().checked_add(timeout), timeout)
    }

    /// The wait of [`FifoReader::wait_writer`] until `deadline` (`None`: none); `timeout`
    /// is what the error message reports.
    fn wait_writer_until(
        &mut self,
        deadline: Option<Instant>,
        timeout: Duration,
    ) -> io::Result<()> {
        if self.eof {
            // The end left `POLLHUP` set on this descriptor: poll would return at once.
            self.reopen()?;
            self.eof = false;
            self.started = false;
        } else if self.started {
            // Mid-session: data or the session's end both end the wait.
            return match poll_in(self.fd.as_fd(), deadline)? {
                true => Ok(()),
                false => Err(self.no_writer(timeout)),
            };
        }
        self.wait_data(deadline, timeout)
    }

    /// Waits, before the session has started, until a byte can be read; skips writers that
    /// come and go without writing.
    fn wait_data(&mut self, deadline: Option<Instant>, timeout: Duration) -> io::Result<()> {
        loop {
            if !poll_in(self.fd.as_fd(), deadline)? {
                return Err(self.no_writer(timeout));
            }
            let ev = sysfd::revents(self.fd.as_fd(), libc::POLLIN)?;
            if ev & libc::POLLIN != 0 {
                return Ok(());
            }
            if ev & libc::POLLHUP != 0 {
                // A writer came and went without a byte: not a session. Clear the hang-up.
                self.reopen()?;
            }
        }
    }

    fn no_writer(&self, timeout: Duration) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no writer wrote to {} within {:.1} s",
                self.path.display(),
                timeout.as_secs_f64()
            ),
        )
    }

    /// Opens the read end again, then closes the old one: the FIFO never has no reader, so
    /// its buffer and its writers are kept.
    fn reopen(&mut self) -> io::Result<()> {
        let fd = open_read_as(&self.path, self.owner)?;
        let st = sysfd::fstat(fd.as_fd())?;
        if (st.st_dev, st.st_ino) != self.id {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is no longer the FIFO that was opened (it was replaced)",
                    self.path.display()
                ),
            ));
        }
        self.fd = fd;
        Ok(())
    }
}

/// Polls `fd` for input until `deadline` (`None`: no deadline); false on timeout.
fn poll_in(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<bool> {
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    Ok(match sysfd::poll(&[(fd, libc::POLLIN)], left)? {
        sysfd::Ready::Fd(_) => true,
        sysfd::Ready::TimedOut => false,
    })
}

impl io::Read for FifoReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.eof {
            return Ok(0);
        }
        let deadline = self.timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            match sysfd::read(self.fd.as_fd(), buf) {
                Ok(0) if self.started => {
                    // Empty and no writer: the last one closed.
                    self.eof = true;
                    return Ok(0);
                }
                Ok(0) => {
                    // No writer yet (or only silent ones): wait for a first byte.
                    if self.nonblocking {
                        let ev = sysfd::revents(self.fd.as_fd(), libc::POLLIN)?;
                        if ev & libc::POLLHUP != 0 && ev & libc::POLLIN == 0 {
                            self.reopen()?;
                        }
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    let timeout = self.timeout.unwrap_or(Duration::MAX);
                    self.wait_data(deadline, timeout)?;
                }
                Ok(n) => {
                    self.started = true;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // A writer is there; the pipe is empty.
                    if self.nonblocking {
                        return Err(e);
                    }
                    if !poll_in(self.fd.as_fd(), deadline)? {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "no data from the writer of {} within {:.1} s",
                                self.path.display(),
                                self.timeout.unwrap_or_default().as_secs_f64()
                            ),
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl AsFd for FifoReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<FifoReader> for OwnedFd {
    /// The descriptor (the one open now: the waits may have reopened the FIFO), back in
    /// blocking mode, as [`PipeReader`](crate::pipe::PipeReader)'s is.
    fn from(r: FifoReader) -> OwnedFd {
        // Cannot fail on an open descriptor; if it did, the mode would stay as is.
        let _ = sysfd::set_nonblocking(r.fd.as_fd(), false);
        r.fd
    }
}

/// Largest write the kernel keeps whole on a FIFO (`PIPE_BUF`, 4096 bytes on Linux): it is
/// never split, never interleaved with another writer's bytes, and a writer killed during it
/// leaves all of it or nothing. A FIFO with several writers keeps messages apart only if each
/// (with its newline or frame header) goes out in one write of at most this many bytes;
/// `ipckit send --via fifo` refuses larger ones.
pub const ATOMIC_WRITE: usize = libc::PIPE_BUF;
