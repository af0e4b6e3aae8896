//! Removing exactly what was made: an object is removed only while its name still denotes
//! the [`Identity`] recorded for it, and only if it is ours (see the module docs of
//! [`crate::registry`]). The guard and `clean` both remove through here.

use super::record::{parse_key, Identity, ObjectKind};
use crate::fs::Removal;
use crate::sys::proc::euid;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

/// What removing an object by its identity did.
pub(super) enum Outcome {
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
pub(super) const SHM_DIR: &str = "/dev/shm";

/// Where a POSIX shared memory object `/name` lives: `/dev/shm/name`.
pub(super) fn shm_path(name: &str) -> String {
    format!("/dev/shm/{}", name.trim_start_matches('/'))
}

/// Removes the object `name` of `kind` if it is still `id` and ours; `dir` is a handle on a
/// file's directory opened when it was made (the guard's), or `None` to open it now
/// (`clean`), in which case the directory must still be the one recorded.
pub(super) fn remove_identified(
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
