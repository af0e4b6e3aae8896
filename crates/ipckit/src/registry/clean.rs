//! `ipckit list` and `ipckit clean`: every record with what is true of it now ([`Entry`]),
//! and the removal of objects whose creator is dead and that no live process uses
//! ([`CleanAction`]).

use super::guard::{lock_dir, TEMP_PREFIX};
use super::identity::{remove_identified, Outcome};
use super::location::read_dirs;
use super::record::{parse_record, Record};
use super::usage::{exists, in_use};
use crate::sys::proc;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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
