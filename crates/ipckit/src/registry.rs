//! The record of every kernel object ipckit creates.
//!
//! Each FIFO, socket file, POSIX queue and System V queue gets a small record file in the
//! registry directory *before* the object is created, naming the object and its creator's pid
//! and start time (the pair names one process for the whole uptime, so a reused pid is not
//! mistaken for the owner). The owner's [`ObjectGuard`] removes the object and its record on
//! drop; `ipckit list` reads the records and `ipckit clean` removes objects whose creator is
//! dead and that no live process uses.
//!
//! FIFO and socket paths are recorded absolute, so `clean` run from any directory finds the
//! right file. A record is written to a temporary file and hard-linked into place, so it
//! appears complete or not at all and never over another; only a record that parses and
//! whose owner is dead is replaced, under a lock on the directory that `clean` also takes.
//!
//! # Identities: removing exactly what was made
//!
//! Once the object exists, its record gains its [`Identity`]: device, inode, type and owner
//! of a FIFO, socket file or shared memory object, and of the directory it was made in; the
//! inode and owner of a POSIX queue; the `msqid`, change time and creator of a System V
//! queue. The guard removes its object only while the name still denotes that identity (a
//! file relative to a handle on its directory opened when it was made, see [`crate::fs`]),
//! and `clean` likewise: a name that now denotes something else, or an object of another
//! uid, is left alone and reported, never removed by name alone. A record without an
//! identity (written by an older ipckit, or by a creator that died while making its object)
//! is removed only once its object is gone; the object itself is left alone.
//!
//! # Where the registry is
//!
//! `$IPCKIT_REGISTRY` if set (used as is: tests point it at a private directory), else
//! `$XDG_RUNTIME_DIR/ipckit`, else the first of `/tmp/ipckit-registry-<uid>` and its numbered
//! alternatives (`.1` to `.8`, see [`crate::fs::private_dir`]) that is a directory of ours
//! closed to others, and if another user planted all nine, `~/.cache/ipckit/` (see
//! [`crate::fs::private_dir_candidates`]): one that another user planted is reported on
//! stderr and bypassed, and every ipckit process of the user walks the same list, so `list`
//! and `clean` find the records wherever they went. `$IPCKIT_STATE_BASE` replaces `/tmp` in those names (for
//! tests). The directory is created 0700.

use crate::fs::{FileId, Removal};
use crate::sys::proc;
pub(crate) use crate::sys::proc::euid;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// What kind of kernel object a record names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A named FIFO (path).
    Fifo,
    /// A Unix socket file (path).
    UnixSocket,
    /// A POSIX message queue (`/name`).
    MqPosix,
    /// A System V message queue (numeric key).
    MqSysv,
    /// A POSIX shared memory segment (`/name`).
    Shm,
}

impl ObjectKind {
    /// Name used in records and by `ipckit list`.
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Fifo => "fifo",
            ObjectKind::UnixSocket => "socket",
            ObjectKind::MqPosix => "mq-posix",
            ObjectKind::MqSysv => "mq-sysv",
            ObjectKind::Shm => "shm",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            ObjectKind::Fifo,
            ObjectKind::UnixSocket,
            ObjectKind::MqPosix,
            ObjectKind::MqSysv,
            ObjectKind::Shm,
        ]
        .into_iter()
        .find(|k| k.name() == s)
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One registry record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Kind of object.
    pub kind: ObjectKind,
    /// The object's name: a path, `/name` for POSIX queues, `0x...` key for System V.
    pub name: String,
    /// Creator's pid.
    pub pid: u32,
    /// Creator's start time (clock ticks since boot).
    pub start: u64,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// What the object is, recorded once it exists; `None` in records of older versions and
    /// before the object is made.
    pub identity: Option<Identity>,
}

/// What a recorded object was when it was made: the guard and `clean` remove it only while
/// it is still that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// A FIFO, socket file or shared memory object: the file, and the directory it was made
    /// in (device and inode).
    File {
        /// The file.
        file: FileId,
        /// Device of its directory.
        dir_dev: u64,
        /// Inode of its directory.
        dir_ino: u64,
    },
    /// A POSIX message queue: its inode on the mqueue file system and its owner (`fstat` of
    /// a queue descriptor; the times change with every message, so they are not kept).
    MqPosix {
        /// `st_ino`.
        ino: u64,
        /// `st_uid`.
        uid: u32,
    },
    /// A System V queue: its id, change time and creator (`IPC_STAT`).
    MqSysv {
        /// The `msqid`.
        msqid: i32,
        /// `msg_ctime`.
        ctime: i64,
        /// `msg_perm.cuid`.
        cuid: u32,
    },
}

impl Identity {
    /// The `id=` line's value.
    fn encode(&self) -> String {
        match self {
            Identity::File {
                file,
                dir_dev,
                dir_ino,
            } => format!(
                "file:{}:{}:{:o}:{}:{dir_dev}:{dir_ino}:{}",
                file.dev,
                file.ino,
                file.ftype,
                file.uid,
                file.btime
                    .map_or("-".to_owned(), |(s, ns)| format!("{s}.{ns:09}"))
            ),
            Identity::MqPosix { ino, uid } => format!("mq:{ino}:{uid}"),
            Identity::MqSysv { msqid, ctime, cuid } => format!("msq:{msqid}:{ctime}:{cuid}"),
        }
    }

    /// Parses an `id=` value; `None` for anything malformed.
    fn decode(v: &str) -> Option<Identity> {
        let f: Vec<&str> = v.split(':').collect();
        match f.as_slice() {
            ["file", dev, ino, ftype, uid, dir_dev, dir_ino, btime] => Some(Identity::File {
                file: FileId {
                    dev: dev.parse().ok()?,
                    ino: ino.parse().ok()?,
                    ftype: u32::from_str_radix(ftype, 8).ok()?,
                    uid: uid.parse().ok()?,
                    btime: match *btime {
                        "-" => None,
                        t => {
                            let (s, ns) = t.split_once('.')?;
                            let ns: u32 = ns.parse().ok().filter(|&ns| ns < 1_000_000_000)?;
                            Some((s.parse().ok()?, ns))
                        }
                    },
                },
                dir_dev: dir_dev.parse().ok()?,
                dir_ino: dir_ino.parse().ok()?,
            }),
            ["mq", ino, uid] => Some(Identity::MqPosix {
                ino: ino.parse().ok()?,
                uid: uid.parse().ok()?,
            }),
            ["msq", msqid, ctime, cuid] => Some(Identity::MqSysv {
                msqid: msqid.parse().ok()?,
                ctime: ctime.parse().ok()?,
                cuid: cuid.parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// A record with what is true of it now.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The record.
    pub record: Record,
    /// The creator (same pid and start time) is still running.
    pub owner_alive: bool,
    /// The object that was made still exists: its recorded identity (see the module docs) is
    /// what its name denotes now (for a record without one, something exists by that name).
    pub exists: bool,
    /// Something exists by the object's name: the object that was made, or another one.
    pub name_taken: bool,
    /// Some live process has the object open (or, for System V, last used it).
    pub in_use: bool,
    /// Where the record file is.
    pub record_path: PathBuf,
}

/// The prefix of every object name: `ipckit-<run id>-`.
pub fn prefix() -> String {
    format!("ipckit-{}-", run_id())
}

/// This process's run id: `$IPCKIT_RUN_ID` if set (tests use it to find what they left),
/// else derived from the pid and the time.
pub fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| match std::env::var("IPCKIT_RUN_ID") {
        Ok(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => s,
        _ => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            format!("{:x}{:05x}", std::process::id(), nanos & 0xfffff)
        }
    })
}

/// A fresh object name `ipckit-<run id>-<tag>-<pid>-<n>`.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}{}-{}-{}",
        prefix(),
        tag,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The registry directory (see the module docs), created if missing.
///
/// # Errors
///
/// If it cannot be created, or (`$IPCKIT_REGISTRY`, `$XDG_RUNTIME_DIR/ipckit`) exists owned
/// by another user or writable by others, or every candidate in `/tmp` is taken.
pub fn dir() -> io::Result<PathBuf> {
    // The walk through the /tmp candidates, done once per process (it reports what it
    // bypasses); the result is checked again at every use, as a directory can change hands.
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    let named = std::env::var_os("IPCKIT_REGISTRY")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_RUNTIME_DIR").map(|p| PathBuf::from(p).join("ipckit")));
    let d = match named {
        Some(d) => {
            match fs::DirBuilder::new().mode(0o700).recursive(true).create(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            if let Some(why) = crate::fs::not_private(&d) {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "registry {} is not a directory owned by us and closed to others: {why}",
                        d.display()
                    ),
                ));
            }
            d
        }
        None => match FOUND.get() {
            Some(d) if crate::fs::not_private(d).is_none() => d.clone(),
            _ => {
                let d = crate::fs::private_dir(
                    &crate::fs::private_dir_candidates("ipckit-registry"),
                    true,
                )?;
                let _ = FOUND.set(d.clone());
                d
            }
        },
    };
    Ok(d)
}

fn record_file(kind: ObjectKind, name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '%'
            }
        })
        .collect();
    // Keep distinct names distinct after sanitising.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    let tail: String = safe
        .chars()
        .rev()
        .take(80)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{}-{:016x}-{}.rec", kind.name(), h, tail)
}

/// What removing an object by its identity did.
enum Outcome {
    Removed,
    Gone,
    /// Something else is at the name: ours is gone from it.
    LeftAlone(String),
    /// The object could not be looked at where it was made (its directory is not the one it
    /// was made in now); it may still be there.
    Unverified(String),
}

impl From<Removal> for Outcome {
    fn from(r: Removal) -> Outcome {
        match r {
            Removal::Removed => Outcome::Removed,
            Removal::Gone => Outcome::Gone,
            Removal::LeftAlone(why) => Outcome::LeftAlone(why),
        }
    }
}

/// The directory a shared memory object `/name` lives in, and its entry there.
const SHM_DIR: &str = "/dev/shm";

/// Removes the object `name` of `kind` if it is still `id` and ours; `dir` is a handle on a
/// file's directory opened when it was made (the guard's), or `None` to open it now
/// (`clean`), in which case the directory must still be the one recorded.
fn remove_identified(
    kind: ObjectKind,
    name: &str,
    id: &Identity,
    dir: Option<(&OwnedFd, &OsString)>,
    dry_run: bool,
) -> io::Result<Outcome> {
    let me = euid();
    match (kind, id) {
        (
            ObjectKind::Fifo | ObjectKind::UnixSocket | ObjectKind::Shm,
            Identity::File {
                file,
                dir_dev,
                dir_ino,
            },
        ) => {
            if file.uid != me {
                return Ok(Outcome::LeftAlone(format!(
                    "it was recorded as belonging to uid {}, not ours ({me})",
                    file.uid
                )));
            }
            let opened;
            let (d, entry) = match dir {
                Some((d, e)) => (d, e.clone()),
                None => {
                    let path = match kind {
                        ObjectKind::Shm => PathBuf::from(shm_path(name)),
                        _ => PathBuf::from(name),
                    };
                    let (Some(parent), Some(entry)) = (path.parent(), path.file_name()) else {
                        return Ok(Outcome::LeftAlone("the recorded name is not a path".into()));
                    };
                    // /dev/shm may be a symbolic link (to /run/shm): followed, as it was
                    // when its identity was recorded.
                    let parent = if kind == ObjectKind::Shm {
                        parent.join(".")
                    } else {
                        parent.to_path_buf()
                    };
                    let parent = parent.as_path();
                    opened = match crate::sys::fs::open_dir_path(
                        None,
                        std::os::unix::ffi::OsStrExt::as_bytes(parent.as_os_str()),
                    ) {
                        Ok(fd) => fd,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Outcome::Gone),
                        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                            return Ok(Outcome::Unverified(format!(
                                "{} is no longer a directory (a symbolic link?)",
                                parent.display()
                            )))
                        }
                        Err(e) => return Err(e),
                    };
                    let now = crate::fs::dir_id(opened.as_fd())?;
                    if (now.dev, now.ino) != (*dir_dev, *dir_ino) {
                        return Ok(Outcome::Unverified(format!(
                            "{} is no longer the directory it was made in",
                            parent.display()
                        )));
                    }
                    (&opened, entry.to_os_string())
                }
            };
            crate::fs::remove_if_same(d.as_fd(), &entry, file, dry_run).map(Outcome::from)
        }
        (ObjectKind::MqPosix, Identity::MqPosix { ino, uid }) => {
            if *uid != me {
                return Ok(Outcome::LeftAlone(format!(
                    "it was recorded as belonging to uid {uid}, not ours ({me})"
                )));
            }
            let fd = match crate::sys::mq::open(name, None) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Outcome::Gone),
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    return Ok(Outcome::LeftAlone(
                        "the queue by that name now is another user's".into(),
                    ))
                }
                Err(e) => return Err(e),
            };
            let st = crate::sys::fs::fstat(fd.as_fd())?;
            if st.st_ino != *ino || st.st_uid != *uid {
                return Ok(Outcome::LeftAlone(format!(
                    "the queue by that name now is another one (inode {}, uid {}; recorded inode \
                     {ino}, uid {uid})",
                    st.st_ino, st.st_uid
                )));
            }
            if dry_run {
                return Ok(Outcome::Removed);
            }
            match crate::sys::mq::unlink(name) {
                Ok(()) => Ok(Outcome::Removed),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Outcome::Gone),
                Err(e) => Err(e),
            }
        }
        (ObjectKind::MqSysv, Identity::MqSysv { msqid, ctime, cuid }) => {
            let ds = match crate::sys::sysv::stat(*msqid) {
                Ok(ds) => ds,
                // EINVAL: no queue has that id any more (EIDRM: being removed).
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::EIDRM)) => {
                    return Ok(Outcome::Gone)
                }
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    return Ok(Outcome::LeftAlone(format!(
                        "queue id {msqid} now is another user's"
                    )))
                }
                Err(e) => return Err(e),
            };
            let key = parse_key(name).ok();
            if ds.msg_ctime != *ctime || ds.msg_perm.cuid != *cuid || Some(ds.msg_perm.__key) != key
            {
                return Ok(Outcome::LeftAlone(format!(
                    "queue id {msqid} now is another queue (created by uid {} at {}; recorded uid \
                     {cuid} at {ctime})",
                    ds.msg_perm.cuid, ds.msg_ctime
                )));
            }
            if ds.msg_perm.uid != me {
                return Ok(Outcome::LeftAlone(format!(
                    "it now belongs to uid {}, not ours ({me})",
                    ds.msg_perm.uid
                )));
            }
            if dry_run {
                return Ok(Outcome::Removed);
            }
            match crate::sys::sysv::remove(*msqid) {
                Ok(()) => Ok(Outcome::Removed),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::EIDRM)) => {
                    Ok(Outcome::Gone)
                }
                Err(e) => Err(e),
            }
        }
        _ => Ok(Outcome::LeftAlone(format!(
            "its recorded identity does not fit a {}",
            kind.name()
        ))),
    }
}

/// Parses a System V key as a record names it (`0x...` or decimal, any 32-bit pattern).
/// Public only for the fuzz target (`fuzz/fuzz_targets/registry.rs`).
#[doc(hidden)]
pub fn parse_key(name: &str) -> io::Result<i32> {
    let t = name.trim();
    let v = if let Some(h) = t.strip_prefix("0x") {
        i64::from_str_radix(h, 16)
    } else {
        t.parse::<i64>()
    };
    v.ok()
        .and_then(|v| {
            i32::try_from(v)
                .ok()
                .or_else(|| u32::try_from(v).ok().map(|u| u as i32))
        })
        .ok_or_else(|| crate::error::invalid(format!("'{name}' is not a System V key")))
}

/// Removes its object and record when dropped. Held by the endpoint that created the object.
///
/// The object is removed only while its name still denotes the object that was made (see
/// the module docs); if it denotes something else now, that is left alone and one line on
/// stderr says so.
#[derive(Debug)]
pub struct ObjectGuard {
    kind: ObjectKind,
    name: String,
    record: PathBuf,
    armed: bool,
    /// A file's directory (opened before the file was made) and its name there.
    file: Option<(OwnedFd, OsString)>,
    identity: Option<Identity>,
    /// The dead creator's record ours replaced, until our object exists.
    replaced: Option<String>,
}

impl ObjectGuard {
    /// The object's name, as recorded: for FIFOs and socket files, the absolute path.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the object was when it was made, once known.
    pub fn identity(&self) -> Option<Identity> {
        self.identity
    }

    /// Forgets the object: neither it nor its record will be removed on drop.
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    /// The object was never created by us (creation failed): drop only the record.
    pub(crate) fn forget_object(&mut self) {
        self.armed = false;
        // The name may still hold the object of the record ours replaced (creation failed
        // with "exists"): put that record back, so `clean` still knows of it.
        if let (Some(old), Some(d)) = (self.replaced.take(), self.record.parent()) {
            if let Ok(tmp) = write_temp(d, &old) {
                if fs::rename(&tmp, &self.record).is_ok() {
                    return;
                }
                let _ = fs::remove_file(&tmp);
            }
        }
        let _ = fs::remove_file(&self.record);
    }

    /// The directory handle and entry name of a file object.
    pub(crate) fn file(&self) -> Option<(&OwnedFd, &OsString)> {
        self.file.as_ref().map(|(d, e)| (d, e))
    }

    /// Records the identity of the file just made in the guard's directory (`fstatat`, not
    /// following a link): it must be of type `ftype` (`S_IFIFO`, `S_IFSOCK`) and ours.
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if the entry is not such a file (someone else is at work in the
    /// directory), or the error of `fstatat` or of rewriting the record.
    pub(crate) fn identify_file(&mut self, ftype: u32) -> io::Result<()> {
        let (dir, entry) = self
            .file
            .as_ref()
            .ok_or_else(|| io::Error::other("not a file object"))?;
        let file = crate::fs::entry_id(dir.as_fd(), entry)?;
        if file.ftype != ftype || file.uid != euid() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} is {} of uid {} just after it was made; someone else is at work in its \
                     directory",
                    self.name,
                    file.type_name(),
                    file.uid
                ),
            ));
        }
        let d = crate::fs::dir_id(dir.as_fd())?;
        self.set_identity(Identity::File {
            file,
            dir_dev: d.dev,
            dir_ino: d.ino,
        })
    }

    /// Records the identity of the shared memory object just made, from its descriptor.
    pub(crate) fn identify_shm(&mut self, fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
        let file = FileId::of_fd(fd)?;
        let d = fs::metadata(SHM_DIR)?;
        self.set_identity(Identity::File {
            file,
            dir_dev: d.dev(),
            dir_ino: d.ino(),
        })
    }

    /// Records the identity of the POSIX queue just made, from its descriptor.
    pub(crate) fn identify_mq(&mut self, fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
        let st = crate::sys::fs::fstat(fd)?;
        self.set_identity(Identity::MqPosix {
            ino: st.st_ino,
            uid: st.st_uid,
        })
    }

    /// Records the identity of the System V queue just made.
    pub(crate) fn identify_sysv(&mut self, msqid: i32) -> io::Result<()> {
        let ds = crate::sys::sysv::stat(msqid)?;
        self.set_identity(Identity::MqSysv {
            msqid,
            ctime: ds.msg_ctime,
            cuid: ds.msg_perm.cuid,
        })
    }

    /// Rewrites our record with `id` (a new complete file renamed over it: the record is
    /// ours, its owner alive, so nobody else replaces it meanwhile).
    fn set_identity(&mut self, id: Identity) -> io::Result<()> {
        self.identity = Some(id);
        // Our object exists, so the one of a replaced record is gone from the name.
        self.replaced = None;
        let d = self
            .record
            .parent()
            .ok_or_else(|| io::Error::other("record without a directory"))?;
        let text = fs::read_to_string(&self.record)?;
        let mut r = parse_record(&text).ok_or_else(|| {
            io::Error::other(format!("our record {} changed", self.record.display()))
        })?;
        r.identity = Some(id);
        let tmp = write_temp(d, &encode_record(&r))?;
        fs::rename(&tmp, &self.record).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    }

    /// Removes the object now (only if it is still the one made) and its record; the guard
    /// then does nothing on drop.
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if the name now denotes another object (left alone), or the OS error
    /// of the removal; the record is removed either way.
    pub(crate) fn remove_now(&mut self) -> io::Result<()> {
        let r = if self.armed {
            self.remove_object()
        } else {
            Ok(Outcome::Gone)
        };
        self.armed = false;
        let _ = fs::remove_file(&self.record);
        match r? {
            Outcome::Removed | Outcome::Gone => Ok(()),
            Outcome::LeftAlone(why) | Outcome::Unverified(why) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("left {} {} alone: {why}", self.kind.name(), self.name),
            )),
        }
    }

    /// Removes the object if it is still the one made.
    fn remove_object(&self) -> io::Result<Outcome> {
        match &self.identity {
            Some(id) => remove_identified(self.kind, &self.name, id, self.file(), false),
            None => Ok(Outcome::LeftAlone("its identity was never recorded".into())),
        }
    }
}

impl Drop for ObjectGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Ok(Outcome::LeftAlone(why) | Outcome::Unverified(why)) = self.remove_object() {
                // The one place the library speaks on its own: something else took our
                // object's name, which the user must hear about, and a destructor has no
                // caller to tell.
                eprintln!(
                    "ipckit: left {} {} alone: {why}",
                    self.kind.name(),
                    self.name
                );
            }
            let _ = fs::remove_file(&self.record);
        }
    }
}

/// `path` made absolute: joined to the current directory if relative, with its parent
/// directory canonicalized (symbolic links and `..` resolved) and its last component kept as
/// given. This is the form `/proc/PID/fd` links show, and it names the same file from any
/// current directory (records of path objects hold the same form, taken from the handle on
/// the directory: see `crate::fs::open_parent`).
///
/// # Errors
///
/// `InvalidInput` for an empty path or one that does not end in a file name (`/`, `..`);
/// the error of canonicalizing the parent (`NotFound` if it does not exist).
pub(crate) fn absolute_path(path: &Path) -> io::Result<PathBuf> {
    if path.as_os_str().is_empty() {
        return Err(crate::error::invalid("an object path cannot be empty"));
    }
    let full = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let (Some(parent), Some(file)) = (full.parent(), full.file_name()) else {
        return Err(crate::error::invalid(format!(
            "{} does not end in a file name",
            path.display()
        )));
    };
    let parent = fs::canonicalize(parent)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", parent.display())))?;
    Ok(parent.join(file))
}

/// Refuses names that could break a record's line format (`\n`, `\r`, NUL and the other
/// control characters).
fn check_name(name: &str) -> io::Result<()> {
    if name.chars().any(char::is_control) {
        return Err(crate::error::invalid(format!(
            "object name {name:?} contains a control character"
        )));
    }
    Ok(())
}

/// Locks the registry directory (`flock`, released when the returned file is dropped).
/// Held by whoever removes a record it does not own, so that the record it checked is the
/// one it removes: a record only appears through `hard_link` (never over an existing one) and
/// only its living owner removes it unlocked.
fn lock_dir(d: &Path) -> io::Result<fs::File> {
    let f = fs::File::open(d)?;
    f.lock()?;
    Ok(f)
}

/// Prefix of the temporary files records are written to before they are linked in place.
const TEMP_PREFIX: &str = ".tmp-";

/// Writes `content` to a fresh 0600 file in `d` (never one that exists) and returns its path.
fn write_temp(d: &Path, content: &str) -> io::Result<PathBuf> {
    static N: AtomicU64 = AtomicU64::new(0);
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.subsec_nanos())
            .unwrap_or(0);
        let tmp = d.join(format!(
            "{TEMP_PREFIX}{}-{}-{nanos:x}",
            proc::getpid(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut f = match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            // Left by a crashed process that had our pid: pick another name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            r => r?,
        };
        if let Err(e) = f.write_all(content.as_bytes()) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        return Ok(tmp);
    }
}

/// Puts the complete record `tmp` at `path`, replacing only a record whose owner is dead;
/// returns the text of the record it replaced (put back if our object cannot be made: then
/// the old object, which kept the name, is still there and still needs its record).
fn link_record(d: &Path, tmp: &Path, path: &Path, name: &str) -> io::Result<Option<String>> {
    let taken = |why: String| {
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{name} is registered already: {why}"),
        )
    };
    match fs::hard_link(tmp, path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        r => return r.map(|()| None),
    }
    let _lock = lock_dir(d)?;
    let mut replaced = None;
    match fs::read_to_string(path) {
        // Its owner dropped it meanwhile: the name is free.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
        Ok(text) => match parse_record(&text) {
            Some(r) if !proc::is_alive(r.pid, r.start) => {
                // A stale record from a creator that died: replace it.
                match fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                replaced = Some(text);
            }
            Some(r) => return Err(taken(format!("its owner, pid {}, is alive", r.pid))),
            None => {
                return Err(taken(format!(
                    "record {} cannot be parsed; remove it by hand if nothing uses {name}",
                    path.display()
                )))
            }
        },
    }
    fs::hard_link(tmp, path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            taken("another process registered it just now".into())
        } else {
            e
        }
    })?;
    Ok(replaced)
}

/// The text of a record file, as ipckit writes it. Public only for the fuzz target
/// (`fuzz/fuzz_targets/registry.rs`).
#[doc(hidden)]
pub fn encode_record(r: &Record) -> String {
    let mut t = format!(
        "kind={}\nname={}\npid={}\nstart={}\ncreated={}\n",
        r.kind.name(),
        r.name,
        r.pid,
        r.start,
        r.created
    );
    if let Some(id) = &r.identity {
        t.push_str(&format!("id={}\n", id.encode()));
    }
    t
}

/// Writes the record for an object about to be created by this process. Call before the
/// object exists, so a crash in between leaves a record (cleaned up) rather than an orphan;
/// once it exists, record its identity with the guard's `identify_*`.
///
/// For POSIX and System V queues and shared memory objects; a FIFO or socket file is
/// registered with [`register_file`].
/// The record appears complete or not at all, and never replaces another process's record
/// unless that one parses and its owner is dead.
///
/// # Errors
///
/// `InvalidInput` for a name with a control character, `AlreadyExists` if a record for this
/// name exists and its owner is alive or it cannot be parsed, or the error writing the
/// registry.
pub(crate) fn register(kind: ObjectKind, name: &str) -> io::Result<ObjectGuard> {
    register_as(kind, name.to_owned(), None)
}

/// [`register`] for a file about to be made in `parent` (see [`crate::fs::open_parent`]):
/// the record names its absolute path, and the guard keeps the directory handle to remove
/// it through.
///
/// # Errors
///
/// As [`register`]; `InvalidInput` for a path that is not UTF-8.
pub(crate) fn register_file(
    kind: ObjectKind,
    parent: crate::fs::Parent,
) -> io::Result<ObjectGuard> {
    let name = parent
        .path
        .to_str()
        .ok_or_else(|| crate::error::invalid(format!("{} is not UTF-8", parent.path.display())))?
        .to_owned();
    register_as(kind, name, Some((parent.dir, parent.entry)))
}

fn register_as(
    kind: ObjectKind,
    name: String,
    file: Option<(OwnedFd, OsString)>,
) -> io::Result<ObjectGuard> {
    check_name(&name)?;
    let pid = proc::getpid();
    let start = proc::start_time(pid).unwrap_or(0);
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let d = dir()?;
    let path = d.join(record_file(kind, &name));
    let content = encode_record(&Record {
        kind,
        name: name.clone(),
        pid,
        start,
        created,
        identity: None,
    });
    let tmp = write_temp(&d, &content)?;
    let linked = link_record(&d, &tmp, &path, &name);
    let _ = fs::remove_file(&tmp);
    let replaced = linked?;
    Ok(ObjectGuard {
        kind,
        name,
        record: path,
        armed: true,
        file,
        identity: None,
        replaced,
    })
}

/// Parses a record file's text (`key=value` lines); `None` if a line has no `=` or a field is
/// missing or bad. Public only for the fuzz target (`fuzz/fuzz_targets/registry.rs`): record
/// files are written by any process of the same user.
#[doc(hidden)]
pub fn parse_record(text: &str) -> Option<Record> {
    let mut kind = None;
    let (mut name, mut pid, mut start, mut created) = (None, None, None, 0);
    let mut identity = None;
    for line in text.lines() {
        let (k, v) = line.split_once('=')?;
        match k {
            "kind" => kind = ObjectKind::parse(v),
            "name" => name = Some(v.to_owned()),
            "pid" => pid = v.parse().ok(),
            "start" => start = v.parse().ok(),
            "created" => created = v.parse().unwrap_or(0),
            // Malformed: no identity, so the object is never removed by this record.
            "id" => identity = Identity::decode(v),
            _ => {}
        }
    }
    Some(Record {
        kind: kind?,
        name: name?,
        pid: pid?,
        start: start?,
        created,
        identity,
    })
}

/// True if the object exists.
fn exists(kind: ObjectKind, name: &str) -> bool {
    match kind {
        ObjectKind::Fifo | ObjectKind::UnixSocket => fs::symlink_metadata(name).is_ok(),
        ObjectKind::MqPosix => match crate::sys::mq::open(name, None) {
            Ok(_) => true,
            Err(e) => e.raw_os_error() != Some(libc::ENOENT),
        },
        ObjectKind::MqSysv => parse_key(name).is_ok_and(|k| crate::sys::sysv::get(k, None).is_ok()),
        ObjectKind::Shm => fs::symlink_metadata(shm_path(name)).is_ok(),
    }
}

/// True if some live process has the object open.
fn in_use(kind: ObjectKind, name: &str) -> bool {
    match kind {
        ObjectKind::Fifo => any_fd_links_to(|l| l == name),
        ObjectKind::UnixSocket => unix_socket_bound(name),
        // An mq descriptor reads back as the queue's name under the mqueue mount.
        ObjectKind::MqPosix => any_fd_links_to(|l| l == name || l.ends_with(name)),
        ObjectKind::MqSysv => sysv_users_alive(name),
        // Open, or mapped after its descriptor was closed.
        ObjectKind::Shm => {
            let path = shm_path(name);
            any_fd_links_to(|l| l == path) || any_maps(&path)
        }
    }
}

/// Where a POSIX shared memory object `/name` lives: `/dev/shm/name`.
fn shm_path(name: &str) -> String {
    format!("/dev/shm/{}", name.trim_start_matches('/'))
}

/// True if another live process maps the file at `path` (its `/proc/PID/maps` names it).
fn any_maps(path: &str) -> bool {
    other_processes().any(|p| {
        // A mapped file is the sixth field; an unlinked one gets " (deleted)" after it.
        fs::read_to_string(p.join("maps")).is_ok_and(|maps| {
            maps.lines()
                .any(|l| l.split_whitespace().nth(5).is_some_and(|f| f == path))
        })
    })
}

/// `/proc/PID` of every process but this one.
fn other_processes() -> impl Iterator<Item = PathBuf> {
    let me = std::process::id().to_string();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(move |p| {
            p.file_name()
                .to_str()
                .is_some_and(|s| s != me && s.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|p| p.path())
}

fn any_fd_links_to(pred: impl Fn(&str) -> bool) -> bool {
    other_processes().any(|p| {
        fs::read_dir(p.join("fd")).is_ok_and(|fds| {
            fds.flatten()
                .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t.to_str().is_some_and(&pred)))
        })
    })
}

/// A socket bound to `path` (absolute, as recorded) is still open somewhere: it is listed in
/// /proc/net/unix. That file shows the path as given to `bind`, which may be relative to the
/// binder's directory or pass through symbolic links; a relative one that could be `path`
/// counts as a match, since keeping an unused file is the safe mistake.
fn unix_socket_bound(path: &str) -> bool {
    let matches = |bound: &str| {
        bound == path
            || if bound.starts_with('/') {
                absolute_path(Path::new(bound)).is_ok_and(|p| p.as_os_str() == path)
            } else {
                let rel = bound.trim_start_matches("./");
                path.strip_suffix(rel)
                    .is_some_and(|head| head.ends_with('/'))
            }
    };
    fs::read_to_string("/proc/net/unix")
        .map(|t| {
            t.lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(7))
                .any(matches)
        })
        .unwrap_or(false)
}

/// Last sender or receiver of a System V queue is alive.
fn sysv_users_alive(name: &str) -> bool {
    let Ok(key) = parse_key(name) else {
        return false;
    };
    let Ok(text) = fs::read_to_string("/proc/sysvipc/msg") else {
        return false;
    };
    for l in text.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        // key msqid perms cbytes qnum lspid lrpid uid gid cuid cgid stime rtime ctime
        if f.len() > 6 && f[0].parse::<i64>().ok() == Some(key as i64) {
            for pid in [f[5], f[6]] {
                if let Ok(p) = pid.parse::<u32>() {
                    if p != 0
                        && p != std::process::id()
                        && Path::new(&format!("/proc/{p}")).exists()
                    {
                        return true;
                    }
                }
            }
        }
    }
    false
}

/// Every record in the registry, with what is true of it now.
///
/// # Errors
///
/// If the registry directory cannot be read.
pub fn list() -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for d in read_dirs()? {
        out.extend(list_in(&d)?);
    }
    out.sort_by(|a, b| a.record.name.cmp(&b.record.name));
    Ok(out)
}

/// The directories records are read from: [`dir`], and unless `$IPCKIT_REGISTRY` names the
/// one directory, every other candidate that is a private directory of ours
/// ([`crate::fs::private_dirs_existing`]): an earlier process that found a name taken wrote
/// its records further down the list, and they must not vanish from `list` and `clean` when
/// the name is freed.
fn read_dirs() -> io::Result<Vec<PathBuf>> {
    let mut dirs = vec![dir()?];
    if std::env::var_os("IPCKIT_REGISTRY").is_none() {
        let more =
            crate::fs::private_dirs_existing(&crate::fs::private_dir_candidates("ipckit-registry"));
        for d in more {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    Ok(dirs)
}

/// The records in one registry directory.
fn list_in(d: &Path) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for e in fs::read_dir(d)?.flatten() {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "rec") {
            continue;
        }
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let Some(record) = parse_record(&text) else {
            continue;
        };
        let owner_alive = proc::is_alive(record.pid, record.start);
        let name_taken = exists(record.kind, &record.name);
        // Checked as `clean` would (without removing): a name that now denotes another
        // object, or one no longer ours, is not the object that was made. What cannot be
        // checked (an error, a directory moved away) counts as the name says.
        let exists = name_taken
            && record.identity.as_ref().is_none_or(|id| {
                !matches!(
                    remove_identified(record.kind, &record.name, id, None, true),
                    Ok(Outcome::Gone | Outcome::LeftAlone(_))
                )
            });
        let in_use = exists && in_use(record.kind, &record.name);
        out.push(Entry {
            record,
            owner_alive,
            exists,
            name_taken,
            in_use,
            record_path: path,
        });
    }
    Ok(out)
}

/// What `clean` did with one entry.
#[derive(Debug)]
pub enum CleanAction {
    /// Object and record removed.
    Removed,
    /// The object that was made is gone already (whatever its name denotes now is another
    /// object, left alone); its record was removed.
    AlreadyGone,
    /// Kept: the owner is alive.
    OwnerAlive,
    /// Kept: a live process still uses it.
    InUse,
    /// The object was left alone: its name denotes something other than what was made (the
    /// record, whose object is gone from that name, is removed), or its directory is not the
    /// one it was made in now, or no identity was recorded to check it against (in those
    /// two cases the record is kept). The text says which.
    LeftAlone(String),
    /// Removal failed.
    Failed(io::Error),
}

/// Removes every object whose creator is dead and that no live process uses, with its
/// record. Returns what happened to each entry.
///
/// # Errors
///
/// If the registry cannot be read.
pub fn clean(dry_run: bool) -> io::Result<Vec<(Entry, CleanAction)>> {
    let mut out = Vec::new();
    for d in read_dirs()? {
        let entries = list_in(&d)?;
        // Removing records we do not own: hold the lock so none is replaced between our check
        // and the removal (see `lock_dir`).
        let _lock = if dry_run { None } else { Some(lock_dir(&d)?) };
        if !dry_run {
            remove_old_temps(&d);
        }
        for e in entries {
            let action = if e.owner_alive {
                CleanAction::OwnerAlive
            } else if e.in_use {
                CleanAction::InUse
            } else {
                clean_one(&e, dry_run)
            };
            out.push((e, action));
        }
    }
    out.sort_by(|a, b| a.0.record.name.cmp(&b.0.record.name));
    Ok(out)
}

/// Removes a dead owner's object and record, if the record is still the one `list` read and
/// the object still the one it names (`dry_run`: only says what it would do).
fn clean_one(e: &Entry, dry_run: bool) -> CleanAction {
    match fs::read_to_string(&e.record_path) {
        // Removed since `list` (by another clean): so was its object.
        Err(err) if err.kind() == io::ErrorKind::NotFound => return CleanAction::AlreadyGone,
        Err(err) => return CleanAction::Failed(err),
        Ok(text) if parse_record(&text).as_ref() != Some(&e.record) => {
            // Replaced since `list` by a new registrant of the same name: the object is theirs.
            return match parse_record(&text) {
                Some(r) if proc::is_alive(r.pid, r.start) => CleanAction::OwnerAlive,
                _ => CleanAction::Failed(io::Error::other(format!(
                    "record {} changed while cleaning; left alone",
                    e.record_path.display()
                ))),
            };
        }
        Ok(_) => {}
    }
    let remove_record = || match if dry_run {
        Ok(())
    } else {
        fs::remove_file(&e.record_path)
    } {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    };
    let Some(id) = &e.record.identity else {
        // Nothing to check the name against: the object is never removed by name alone.
        // Once it is gone, its record goes too.
        if e.exists {
            return CleanAction::LeftAlone(
                "no identity is recorded for it (a record of an older ipckit, or its creator \
                 died while making it), so it cannot be told from another object of that name; \
                 remove it by hand if it is yours"
                    .into(),
            );
        }
        return match remove_record() {
            Ok(()) => CleanAction::AlreadyGone,
            Err(err) => CleanAction::Failed(err),
        };
    };
    let outcome = match remove_identified(e.record.kind, &e.record.name, id, None, dry_run) {
        Ok(Outcome::Unverified(why)) => {
            // Its directory was moved or replaced: the object may be intact elsewhere, or
            // come back; keep the record.
            return CleanAction::LeftAlone(format!("{why}; its record is kept"));
        }
        Ok(o) => o,
        Err(err) => return CleanAction::Failed(err),
    };
    // Removed, gone, or something else holds the name: our object no longer exists either
    // way, so its record goes.
    if let Err(err) = remove_record() {
        return CleanAction::Failed(err);
    }
    match outcome {
        Outcome::Removed => CleanAction::Removed,
        Outcome::Gone => CleanAction::AlreadyGone,
        Outcome::Unverified(why) | Outcome::LeftAlone(why) => CleanAction::LeftAlone(format!(
            "{why}; the record of the object that was made {}",
            if dry_run {
                "would be removed"
            } else {
                "is removed"
            }
        )),
    }
}

/// Removes temporary record files a crashed registrant left (older than a minute; a live
/// one exists for microseconds).
fn remove_old_temps(d: &Path) {
    let Ok(rd) = fs::read_dir(d) else {
        return;
    };
    for e in rd.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(60));
        if old && e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let _ = fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_roundtrip() {
        let r = Record {
            kind: ObjectKind::MqPosix,
            name: "/ipckit-x-1".into(),
            pid: 7,
            start: 9,
            created: 3,
            identity: Some(Identity::MqSysv {
                msqid: 5,
                ctime: 11,
                cuid: 0,
            }),
        };
        assert_eq!(parse_record(&encode_record(&r)), Some(r.clone()));
        // An older record (no id line) still parses, without an identity.
        let old = "kind=mq-posix\nname=/ipckit-x-1\npid=7\nstart=9\ncreated=3\n";
        assert_eq!(parse_record(old).unwrap().identity, None);
        // A malformed identity is no identity.
        let bad = format!("{old}id=file:1:2\n");
        assert_eq!(parse_record(&bad).unwrap().identity, None);
        let file = Identity::File {
            file: FileId {
                dev: 1,
                ino: 2,
                ftype: libc::S_IFIFO,
                uid: 3,
                btime: Some((1_700_000_000, 5)),
            },
            dir_dev: 4,
            dir_ino: 5,
        };
        assert_eq!(Identity::decode(&file.encode()), Some(file));
        let Identity::File { mut file, .. } = file else {
            unreachable!()
        };
        file.btime = None;
        let no_btime = Identity::File {
            file,
            dir_dev: 4,
            dir_ino: 5,
        };
        assert_eq!(Identity::decode(&no_btime.encode()), Some(no_btime));
    }

    #[test]
    fn keys_parse() {
        assert_eq!(parse_key("0x1c000001").unwrap(), 0x1c00_0001);
        assert_eq!(parse_key("42").unwrap(), 42);
        assert!(parse_key("nope").is_err());
    }

    #[test]
    fn record_files_stay_distinct() {
        assert_ne!(
            record_file(ObjectKind::Fifo, "/a/b"),
            record_file(ObjectKind::Fifo, "/a%b")
        );
    }
}
