//! Files made in a directory and removed exactly: the [`FileId`] a file is known by, the
//! checked handle on the directory it is made in (`open_parent`: not a symbolic link, owned by
//! us or root, closed to others unless sticky), and removal through that handle only while the
//! entry is still the file that was made (`remove_if_same`).

use crate::sys;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::scratch;
    use std::os::unix::fs::PermissionsExt;

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
}
