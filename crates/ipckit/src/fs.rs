//! Files opened so that a path cannot escape a directory.
//!
//! [`open_beneath`] is what a static file server needs: the request's path is resolved by
//! the kernel (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`), so `..` components,
//! absolute paths and symlinks (absolute, or relative ones climbing out) that would leave the
//! directory fail instead of opening something outside it; symlinks that stay inside work.
//!
//! # Removing exactly what was made
//!
//! Every file ipckit makes in a directory (a FIFO, a socket file) is made and later removed
//! relative to a handle on that directory (an `O_PATH` descriptor opened
//! once), never by looking its path up again: renaming a directory above it, or putting a
//! symbolic link where a directory was, cannot redirect the removal elsewhere. And the entry
//! is removed only while it is still the very file that was made ([`FileId`]: device, inode,
//! type and owner, checked with `fstatat(AT_SYMLINK_NOFOLLOW)` just before `unlinkat`); a
//! name that now denotes anything else is left alone.
//!
//! The directory a file is made in must be one nobody else can rename entries of (the same
//! rule for FIFOs and sockets): not a symbolic link, owned by us or root, and not writable by
//! others unless sticky.
//!
//! # Private directories and output files
//!
//! [`private_dir`] finds (or makes) a per-user directory such as the registry's, bypassing
//! candidates another user owns or can write; [`create_output`] creates an output file
//! without following a symbolic link and never over one of the inputs.
//!
//! # Reading only regular files
//!
//! [`open_regular_beneath`] and [`read_regular`] open only regular files, and never open
//! anything else for reading: the path is opened with `O_PATH` (no open of the object
//! itself happens: a FIFO does not block, a device driver's `open` does not run), checked
//! with `fstat`, and only a regular file is reopened for reading, through its
//! `/proc/self/fd/N` link, which names that very inode (a rename in between changes nothing).

use crate::sys;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Opens `path` (relative to `dir`; a leading `/` is refused by the kernel, so strip it)
/// with `flags` (`O_RDONLY`, ...; `O_CLOEXEC` is always added) such that resolution never
/// leaves `dir`.
///
/// # Errors
///
/// `EXDEV` (`CrossesDevices`) for a path that would escape `dir`, `ELOOP` for a magic link,
/// `NotFound`, `PermissionDenied`, `InvalidInput` for a path with a NUL byte, `ENOSYS`
/// (`Unsupported`) on kernels before 5.6, or another OS error of `openat2`.
///
/// # References
///
/// `openat2(2)`.
pub fn open_beneath(dir: impl AsFd, path: &[u8], flags: i32) -> io::Result<OwnedFd> {
    sys::fs::openat2(
        dir.as_fd(),
        path,
        flags,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// As [`open_beneath`] for reading, but only a regular file: `Ok(None)` if `path` names
/// anything else (a directory, FIFO, socket or device), which is never opened for reading.
///
/// # Errors
///
/// As [`open_beneath`]; `PermissionDenied` when the file may not be read.
///
/// # References
///
/// `openat2(2)` (`O_PATH`), `fstat(2)`, `proc(5)` (`/proc/self/fd`).
pub fn open_regular_beneath(dir: impl AsFd, path: &[u8]) -> io::Result<Option<File>> {
    let handle = File::from(sys::fs::openat2(
        dir.as_fd(),
        path,
        libc::O_PATH,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    )?);
    if !handle.metadata()?.is_file() {
        return Ok(None);
    }
    reopen_for_reading(&handle).map(Some)
}

/// Reads the whole of `path`, which must be a regular file of at most `limit` bytes: a
/// config file or a JSON input, safe to point at `/dev/zero`, a FIFO or `/dev/tty` (refused
/// before anything is opened for reading, so nothing blocks and nothing is read).
///
/// # Errors
///
/// `InvalidInput` naming the path and what it is when it is not a regular file,
/// `FileTooLarge` when it holds more than `limit` bytes, or the error opening or reading it
/// (`NotFound`, `PermissionDenied`, ...). Messages do not repeat the path: the caller names
/// it (`config {path}: a FIFO, not a regular file`).
///
/// # References
///
/// `open(2)` (`O_PATH`), `fstat(2)`, `proc(5)` (`/proc/self/fd`).
pub fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)?;
    let ftype = sys::fs::fstat(handle.as_fd())?.st_mode & libc::S_IFMT;
    if ftype != libc::S_IFREG {
        let what = type_name(ftype);
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what}, not a regular file"),
        ));
    }
    let file = reopen_for_reading(&handle)?;
    let mut buf = Vec::new();
    // One byte more than allowed tells a file that is too big (or grew) from one that fits.
    file.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(buf)
}

/// Opens the inode an `O_PATH` handle refers to, read-only, through `/proc/self/fd/N`.
fn reopen_for_reading(handle: &File) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
}

/// What a directory entry was when ipckit made it: removal checks it is still that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    /// Device (`st_dev`).
    pub dev: u64,
    /// Inode (`st_ino`).
    pub ino: u64,
    /// File type bits (`st_mode & S_IFMT`).
    pub ftype: u32,
    /// Owner (`st_uid`).
    pub uid: u32,
    /// Birth time (seconds, nanoseconds; `statx`), where the file system keeps one: an inode
    /// number is reused as soon as its file is removed, a birth time is not.
    pub btime: Option<(i64, u32)>,
}

impl FileId {
    /// From `stat` alone (no birth time).
    pub(crate) fn of(st: &libc::stat) -> FileId {
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
            ftype: st.st_mode & libc::S_IFMT,
            uid: st.st_uid,
            btime: None,
        }
    }

    /// Of the file `fd` is open on, with its birth time.
    pub(crate) fn of_fd(fd: BorrowedFd<'_>) -> io::Result<FileId> {
        Ok(FileId {
            btime: sys::fs::birth_time(fd, b"")?,
            ..FileId::of(&sys::fs::fstat(fd)?)
        })
    }

    /// The kind of file, for messages ("a FIFO", "a regular file", ...).
    pub fn type_name(&self) -> &'static str {
        type_name(self.ftype)
    }
}

/// "a FIFO", "a socket", ... for `st_mode & S_IFMT`.
pub(crate) fn type_name(ftype: u32) -> &'static str {
    match ftype {
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        _ => "a file of unknown type",
    }
}

/// A directory entry ipckit is about to make: the handle on its directory, its name there,
/// and its absolute path (the directory's real path, as the kernel names the handle, joined
/// with the name) for records and messages.
#[derive(Debug)]
pub(crate) struct Parent {
    pub(crate) dir: OwnedFd,
    pub(crate) entry: OsString,
    pub(crate) path: PathBuf,
}

/// Opens the directory `path` is to be made in and checks that nobody else can rename
/// entries of it or of any directory on the way to it ([`open_dir_checked`]); the directory
/// itself must not be given as a symbolic link. `what` names the object for messages
/// ("socket").
///
/// # Errors
///
/// `InvalidInput` for a path without a file name, `PermissionDenied` for a directory that
/// fails the check, `NotADirectory`, or the OS error (naming the directory).
pub(crate) fn open_parent(path: &Path, what: &str) -> io::Result<Parent> {
    let entry = match path.components().next_back() {
        Some(Component::Normal(f)) => f.to_os_string(),
        _ => {
            return Err(crate::error::invalid(format!(
                "{} does not end in a file name",
                path.display()
            )))
        }
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let fd = open_dir_checked(dir, what)?;
    let st = sys::fs::fstat(fd.as_fd())?;
    // The directory's real path, for the record: as the kernel names the handle, and only
    // once that name leads back to it (a directory being renamed meanwhile gives a name that
    // is stale at once; a few tries, then give up).
    let mut tries = 0;
    let real = loop {
        let real = std::fs::read_link(format!("/proc/self/fd/{}", raw(&fd)))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        let back = std::fs::metadata(&real).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        });
        // "/proc/self/fd/N" of a directory gone from every mount shows no absolute path.
        if real.is_absolute() && back == Some((st.st_dev, st.st_ino)) {
            break real;
        }
        tries += 1;
        if tries == 5 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is being moved or removed while a {what} is made in it",
                    dir.display()
                ),
            ));
        }
        std::thread::yield_now();
    };
    Ok(Parent {
        path: real.join(&entry),
        dir: fd,
        entry,
    })
}

/// How many symbolic links [`open_dir_checked`] follows in one path (the kernel's limit).
const MAX_LINKS: u32 = 40;

/// Opens the directory `dir` (an `O_PATH` handle) by walking it one component at a time from
/// `/` (from the working directory's path for a relative one), never letting the kernel
/// follow a symbolic link: every directory looked in must be one nobody else can rename
/// entries of (owned by us or root, and not writable by others unless sticky), and every
/// symbolic link followed must be owned by us or root. So a directory of another user, or a
/// link another user made, anywhere along the path cannot move the result elsewhere. The
/// last component must not be a symbolic link at all. `..` goes up from the directory
/// reached, as the kernel's own resolution does.
///
/// # Errors
///
/// `PermissionDenied` naming the directory or link that fails a check, `NotADirectory`,
/// `ELOOP`'s kind past [`MAX_LINKS`] links, or the OS error (naming the path).
fn open_dir_checked(dir: &Path, what: &str) -> io::Result<OwnedFd> {
    use std::collections::VecDeque;
    use std::os::unix::ffi::OsStrExt;
    let refuse = |why: String| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing to make a {what} in {}: {why}", dir.display()),
        )
    };
    let me = crate::sys::proc::euid();
    let check_dir = |fd: &OwnedFd, shown: &Path| -> io::Result<()> {
        let st = sys::fs::fstat(fd.as_fd())?;
        if st.st_uid != me && st.st_uid != 0 {
            return Err(refuse(format!(
                "{} belongs to uid {}, neither us (uid {me}) nor root",
                shown.display(),
                st.st_uid
            )));
        }
        if st.st_mode & 0o022 != 0 && st.st_mode & libc::S_ISVTX == 0 {
            return Err(refuse(format!(
                "{} (mode {:04o}) lets others write it, and it is not sticky",
                shown.display(),
                st.st_mode & 0o7777
            )));
        }
        Ok(())
    };
    let start = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()?.join(dir)
    };
    // Each component with whether it is the last one of `dir` as given.
    let mut pending: VecDeque<(Vec<u8>, bool)> = start
        .as_os_str()
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(|c| (c.to_vec(), false))
        .collect();
    if let Some(last) = pending.back_mut() {
        last.1 = true;
    }
    // The directories walked so far, `/` first, with their names for messages.
    let root = sys::fs::open_dir_path(None, b"/")?;
    check_dir(&root, Path::new("/"))?;
    let mut stack = vec![(root, PathBuf::from("/"))];
    let mut links = 0;
    while let Some((c, last_given)) = pending.pop_front() {
        if c.is_empty() || c == b"." {
            continue;
        }
        let (top, shown) = stack.last().expect("the root is never popped");
        if c == b".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let name = shown.join(OsStr::from_bytes(&c));
        let st = sys::fs::fstatat(top.as_fd(), &c)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", name.display())))?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFLNK => {
                let to = sys::fs::readlinkat(top.as_fd(), &c).unwrap_or_default();
                let to_shown = String::from_utf8_lossy(&to).into_owned();
                if last_given {
                    return Err(refuse(format!(
                        "it is a symbolic link (to {to_shown}); give the real directory"
                    )));
                }
                if st.st_uid != me && st.st_uid != 0 {
                    return Err(refuse(format!(
                        "{} is a symbolic link (to {to_shown}) of uid {}, neither us (uid \
                         {me}) nor root",
                        name.display(),
                        st.st_uid
                    )));
                }
                links += 1;
                if links > MAX_LINKS {
                    let eloop = io::Error::from_raw_os_error(libc::ELOOP).kind();
                    return Err(io::Error::new(
                        eloop,
                        format!("{}: too many symbolic links", dir.display()),
                    ));
                }
                if to.first() == Some(&b'/') {
                    stack.truncate(1);
                }
                for part in to.split(|&b| b == b'/').rev() {
                    pending.push_front((part.to_vec(), false));
                }
            }
            libc::S_IFDIR => {
                // O_NOFOLLOW: a link put here since the fstatat fails instead of being
                // followed (and the directory we are in is one nobody else can change).
                let fd = sys::fs::open_dir_path(Some(top.as_fd()), &c)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", name.display())))?;
                check_dir(&fd, &name)?;
                stack.push((fd, name));
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", name.display()),
                ))
            }
        }
    }
    Ok(stack.pop().expect("the root is never popped").0)
}

fn raw(fd: &OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}

/// The identity of the entry `name` in `dir` (not following a symbolic link).
///
/// # Errors
///
/// `NotFound`, or the OS error of `fstatat`.
pub(crate) fn entry_id(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<FileId> {
    Ok(FileId {
        btime: sys::fs::birth_time(dir, name.as_bytes())?,
        ..FileId::of(&sys::fs::fstatat(dir, name.as_bytes())?)
    })
}

/// The identity of the directory a handle is on.
pub(crate) fn dir_id(dir: BorrowedFd<'_>) -> io::Result<FileId> {
    Ok(FileId::of(&sys::fs::fstat(dir)?))
}

/// What `remove_if_same` did.
#[derive(Debug)]
pub(crate) enum Removal {
    /// The entry was the file that was made, and is removed.
    Removed,
    /// Nothing is at the name any more.
    Gone,
    /// Something else is at the name now; it is left alone. The text says what.
    LeftAlone(String),
}

/// Removes `name` from `dir` only if it is still the file `id` (device, inode, type, owner
/// and birth time): `fstatat(AT_SYMLINK_NOFOLLOW)` then `unlinkat`, both relative to `dir`
/// (`dry_run`: the check only). No other
/// process can put another file at the name in between unless it may rename entries of the
/// directory, which [`open_parent`] refuses for directories ipckit makes files in.
///
/// # Errors
///
/// The OS error of `fstatat` or `unlinkat` (but `ENOENT`, which is [`Removal::Gone`]).
pub(crate) fn remove_if_same(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    id: &FileId,
    dry_run: bool,
) -> io::Result<Removal> {
    let now = match entry_id(dir, name) {
        Ok(now) => now,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::Gone),
        Err(e) => return Err(e),
    };
    if now != *id {
        return Ok(Removal::LeftAlone(differs(&now, id)));
    }
    if dry_run {
        return Ok(Removal::Removed);
    }
    match sys::fs::unlinkat(dir, name.as_bytes()) {
        Ok(()) => Ok(Removal::Removed),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Removal::Gone),
        Err(e) => Err(e),
    }
}

/// Why `now` is not the file `was`, in words.
pub(crate) fn differs(now: &FileId, was: &FileId) -> String {
    if now.ftype != was.ftype {
        format!(
            "it is now {}, not the {} that was made",
            now.type_name(),
            &was.type_name()[2..]
        )
    } else if now.uid != was.uid {
        format!("it now belongs to uid {}, not {}", now.uid, was.uid)
    } else if (now.dev, now.ino) == (was.dev, was.ino) {
        format!(
            "it is another {} made since in the same inode (born {:?}, not {:?})",
            &now.type_name()[2..],
            now.btime,
            was.btime
        )
    } else {
        format!(
            "it is another {} (inode {} on device {:#x}, not inode {} on {:#x})",
            &now.type_name()[2..],
            now.ino,
            now.dev,
            was.ino,
            was.dev
        )
    }
}

/// Where [`private_dir`] looks by default: `$IPCKIT_STATE_BASE` if set (tests plant state
/// directories there instead of in the shared `/tmp`), else `/tmp`.
pub fn state_base() -> PathBuf {
    match std::env::var_os("IPCKIT_STATE_BASE") {
        Some(b) if !b.is_empty() => PathBuf::from(b),
        _ => PathBuf::from("/tmp"),
    }
}

/// How many numbered alternatives [`private_dir`] tries after the plain name.
const ALTERNATIVES: u32 = 8;

/// The candidates [`private_dir`] tries, in order: `<base>/<stem>-<uid>`, then
/// `<base>/<stem>-<uid>.1` to `.8`, where `<base>` is [`state_base`]; and last, should
/// another user have taken all nine names in the shared base, `<cache>/ipckit/<stem>-<uid>`
/// in the user's own cache directory (`$XDG_CACHE_HOME`, else `$HOME/.cache`, if either is
/// set to an absolute path), where no other user can plant anything.
pub fn private_dir_candidates(stem: &str) -> Vec<PathBuf> {
    let base = state_base();
    let uid = crate::sys::proc::euid();
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache"))
                .filter(|p| p.is_absolute())
        });
    std::iter::once(base.join(format!("{stem}-{uid}")))
        .chain((1..=ALTERNATIVES).map(|n| base.join(format!("{stem}-{uid}.{n}"))))
        .chain(cache.map(|c| c.join("ipckit").join(format!("{stem}-{uid}"))))
        .collect()
}

/// Why the directory at `d` cannot be ours and private, or `None` if it is (a directory, not
/// a symbolic link, owned by us, closed to writers of other users).
pub fn not_private(d: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(d) {
        Err(e) => Some(e.to_string()),
        Ok(m) if m.file_type().is_symlink() => Some("it is a symbolic link".into()),
        Ok(m) if !m.is_dir() => Some("it is not a directory".into()),
        Ok(m) if m.uid() != crate::sys::proc::euid() => {
            Some(format!("it belongs to uid {}", m.uid()))
        }
        Ok(m) if m.mode() & 0o022 != 0 => Some(format!(
            "its mode {:04o} lets others write it",
            m.mode() & 0o7777
        )),
        Ok(_) => None,
    }
}

/// A per-user private directory: the first of `candidates` that is (or, if missing, can be
/// made, 0700) a directory of ours closed to others. One another user planted, or a symbolic
/// link, is skipped with one line on stderr, so a planted name is bypassed rather than
/// stopping the program; everyone looking for the directory walks the same list and finds
/// the same one. With `create` false, a missing candidate is skipped silently.
///
/// # Errors
///
/// `PermissionDenied` if every candidate is taken (naming the first), or `NotFound` if
/// `create` is false and none exists.
pub fn private_dir(candidates: &[PathBuf], create: bool) -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let mut first_bad = None;
    for d in candidates {
        if create {
            match std::fs::DirBuilder::new().mode(0o700).create(d) {
                Ok(()) => return Ok(d.clone()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // A missing parent (say $XDG_RUNTIME_DIR gone): make it as the old code
                    // did, then look again.
                    if std::fs::DirBuilder::new()
                        .mode(0o700)
                        .recursive(true)
                        .create(d)
                        .is_ok()
                        && not_private(d).is_none()
                    {
                        return Ok(d.clone());
                    }
                }
                Err(_) => {}
            }
        }
        if !create && std::fs::symlink_metadata(d).is_err() {
            // Not made yet (or not reachable): nothing of ours can be there.
            continue;
        }
        match not_private(d) {
            None => return Ok(d.clone()),
            Some(why) => {
                eprintln!(
                    "ipckit: not using {}: {why}; trying the next candidate",
                    d.display()
                );
                first_bad.get_or_insert((d.clone(), why));
            }
        }
    }
    Err(match first_bad {
        Some((d, why)) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "no private directory: {} ({why}) and every alternative are taken",
                d.display()
            ),
        ),
        None => io::Error::new(io::ErrorKind::NotFound, "no private directory exists yet"),
    })
}

/// Every one of `candidates` that exists now and is a private directory of ours (see
/// [`not_private`]), in order, saying nothing on stderr: where an earlier process, which
/// found other names taken, may have put records or state. Readers that must see all of it
/// (`list`, `clean`, `serve --status`) read each, so a planted name that disappears later
/// hides nothing.
pub fn private_dirs_existing(candidates: &[PathBuf]) -> Vec<PathBuf> {
    candidates
        .iter()
        .filter(|d| std::fs::symlink_metadata(d).is_ok() && not_private(d).is_none())
        .cloned()
        .collect()
}

/// Creates the output file `path` (0644 less the umask, truncated if it is a regular file of
/// ours): never through a symbolic link at `path` (`O_NOFOLLOW`), never in a directory
/// reached through a directory or link another user could change (the rule FIFOs and sockets
/// follow), never anything but a regular file, and never one of `inputs`
/// (compared by device and inode, so a second name of an input is caught too). The CLI
/// writes every output file through this.
///
/// # Errors
///
/// `InvalidInput` naming what `path` is (a symbolic link, an input, not a regular file,
/// another user's file), `PermissionDenied` for a directory on the way that fails the check,
/// or the OS error.
pub fn create_output(path: &Path, inputs: &[&Path]) -> io::Result<std::fs::File> {
    let err =
        |why: String| crate::error::invalid(format!("refusing to write {}: {why}", path.display()));
    // The directory as FIFOs and sockets are made in (no directory or link another user
    // could change anywhere up the path), so that the file opened is where the user said.
    let parent = open_parent(path, "file")?;
    // Not O_TRUNC yet: what is there is checked first, through the descriptor.
    let fd = sys::fs::openat(
        Some(parent.dir.as_fd()),
        parent.entry.as_bytes(),
        libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
        0o644,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => err("it is a symbolic link".into()),
        _ => io::Error::new(e.kind(), format!("{}: {e}", path.display())),
    })?;
    let out = FileId::of(&sys::fs::fstat(fd.as_fd())?);
    if out.ftype != libc::S_IFREG {
        return Err(err(format!("it is {}", out.type_name())));
    }
    if out.uid != crate::sys::proc::euid() {
        return Err(err(format!("it belongs to uid {}", out.uid)));
    }
    for i in inputs {
        if let Ok(m) = std::fs::metadata(i) {
            use std::os::unix::fs::MetadataExt;
            if m.dev() == out.dev && m.ino() == out.ino {
                return Err(err(format!("it is the input {}", i.display())));
            }
        }
    }
    let f = std::fs::File::from(fd);
    f.set_len(0)?;
    sys::fd::set_nonblocking(f.as_fd(), false)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn stays_beneath() {
        let top = std::env::temp_dir().join(format!("ipckit-fs-test-{}", std::process::id()));
        let root = top.join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(top.join("out"), b"x").unwrap();
        std::fs::write(root.join("in"), b"y").unwrap();
        std::os::unix::fs::symlink("../out", root.join("rel")).unwrap();
        std::os::unix::fs::symlink(top.join("out"), root.join("abs")).unwrap();
        std::os::unix::fs::symlink("in", root.join("ok")).unwrap();
        let dir = std::fs::File::open(&root).unwrap();
        for p in ["in", "ok", "d/../in"] {
            assert!(
                open_beneath(&dir, p.as_bytes(), libc::O_RDONLY).is_ok(),
                "{p}"
            );
        }
        for p in ["../out", "rel", "abs", "/etc/passwd", "d/../../out"] {
            assert!(
                open_beneath(&dir, p.as_bytes(), libc::O_RDONLY).is_err(),
                "{p}"
            );
        }
        assert!(open_beneath(&dir, b"a\0b", libc::O_RDONLY).is_err());
        assert!(open_regular_beneath(&dir, b"ok").unwrap().is_some());
        assert!(open_regular_beneath(&dir, b"d").unwrap().is_none());
        assert!(open_regular_beneath(&dir, b"rel").is_err());
        std::fs::remove_dir_all(&top).unwrap();
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ipckit-fs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn removes_only_the_same_file() {
        let top = scratch("same");
        let p = open_parent(&top.join("f"), "file").unwrap();
        assert_eq!(p.path, std::fs::canonicalize(&top).unwrap().join("f"));
        std::fs::write(top.join("f"), "a").unwrap();
        let id = entry_id(p.dir.as_fd(), &p.entry).unwrap();
        // Replaced by another file of the same name and type: left alone.
        std::fs::remove_file(top.join("f")).unwrap();
        std::fs::write(top.join("f"), "b").unwrap();
        let r = remove_if_same(p.dir.as_fd(), &p.entry, &id, false).unwrap();
        // The new file may well have the old one's inode: only a birth time tells them apart.
        if id.btime.is_some() {
            assert!(matches!(r, Removal::LeftAlone(_)), "{r:?}");
            assert!(top.join("f").exists());
        } else {
            eprintln!("note: no birth times on this file system; inode reuse not checked");
            std::fs::write(top.join("f"), "b").unwrap();
        }
        // Its own file goes, through the handle even after the directory was renamed.
        let id = entry_id(p.dir.as_fd(), &p.entry).unwrap();
        std::fs::rename(&top, top.with_extension("moved")).unwrap();
        std::fs::create_dir(&top).unwrap();
        std::fs::write(top.join("f"), "decoy").unwrap();
        let r = remove_if_same(p.dir.as_fd(), &p.entry, &id, false).unwrap();
        assert!(matches!(r, Removal::Removed), "{r:?}");
        assert!(top.join("f").exists(), "the decoy at the old path stays");
        assert!(!top.with_extension("moved").join("f").exists());
        let r = remove_if_same(p.dir.as_fd(), &p.entry, &id, false).unwrap();
        assert!(matches!(r, Removal::Gone), "{r:?}");
        std::fs::remove_dir_all(&top).unwrap();
        std::fs::remove_dir_all(top.with_extension("moved")).unwrap();
    }

    #[test]
    fn parents_others_could_rename_entries_of_are_refused() {
        let top = scratch("parent");
        std::fs::create_dir(top.join("open")).unwrap();
        std::fs::set_permissions(top.join("open"), PermissionsExt::from_mode(0o777)).unwrap();
        let e = open_parent(&top.join("open/x"), "FIFO").unwrap_err();
        assert!(e.to_string().contains("not sticky"), "{e}");
        std::fs::set_permissions(top.join("open"), PermissionsExt::from_mode(0o1777)).unwrap();
        assert!(open_parent(&top.join("open/x"), "FIFO").is_ok());
        std::os::unix::fs::symlink(top.join("open"), top.join("link")).unwrap();
        let e = open_parent(&top.join("link/x"), "FIFO").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(open_parent(&top.join(".."), "FIFO").is_err());
        std::fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    fn outputs_are_never_links_or_inputs() {
        let top = scratch("out");
        let input = top.join("in");
        std::fs::write(&input, "input").unwrap();
        std::os::unix::fs::symlink(&input, top.join("link")).unwrap();
        std::fs::hard_link(&input, top.join("hard")).unwrap();
        for (out, why) in [
            ("link", "symbolic link"),
            ("in", "input"),
            ("hard", "input"),
        ] {
            let e = create_output(&top.join(out), &[&input]).unwrap_err();
            assert!(e.to_string().contains(why), "{out}: {e}");
        }
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "input");
        let e = create_output(&top, &[]).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        std::fs::write(top.join("old"), "old and long").unwrap();
        let mut f = create_output(&top.join("old"), &[&input]).unwrap();
        std::io::Write::write_all(&mut f, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(top.join("old")).unwrap(), "new");
        std::fs::remove_dir_all(&top).unwrap();
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit() {
        let top = std::env::temp_dir().join(format!("ipckit-fs-read-{}", std::process::id()));
        std::fs::create_dir_all(&top).unwrap();
        let f = top.join("f");
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(read_regular(&f, 5).unwrap(), b"12345");
        let e = read_regular(&f, 4).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        let e = read_regular(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("character device"), "{e}");
        let e = read_regular(&top, 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = read_regular(&top.join("missing"), 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&top).unwrap();
    }
}
