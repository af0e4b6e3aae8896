//! Registering an object: its record written to a temporary file and hard-linked into place
//! (replacing only a record whose owner is dead), and the [`ObjectGuard`] that records the
//! object's identity once it exists and removes object and record on drop.

use super::identity::{remove_identified, Outcome, SHM_DIR};
use super::location::dir;
use super::record::{
    check_name, encode_record, parse_record, record_file, Identity, ObjectKind, Record,
};
use crate::fs::FileId;
use crate::sys::proc;
use crate::sys::proc::euid;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Locks the registry directory (`flock`, released when the returned file is dropped).
/// Held by whoever removes a record it does not own, so that the record it checked is the
/// one it removes: a record only appears through `hard_link` (never over an existing one) and
/// only its living owner removes it unlocked.
pub(super) fn lock_dir(d: &Path) -> io::Result<fs::File> {
    let f = fs::File::open(d)?;
    f.lock()?;
    Ok(f)
}

/// Prefix of the temporary files records are written to before they are linked in place.
pub(super) const TEMP_PREFIX: &str = ".tmp-";

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
