//! The state file, by which others find a running master: where it lives, what it holds
//! (the master's pid and start time, its status board's name, its addresses and live
//! workers), how the master creates, rewrites and removes it, and how `serve --status`,
//! `clean` and the demos read it.
//!
//! It is `$XDG_RUNTIME_DIR` (or `/tmp/ipckit-serve-<euid>`)`/ipckit-serve-<first port>.json`,
//! 0600, created exclusively and removed on exit.

use crate::config::AcceptMode;
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the state file holds (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// The master's pid.
    pub master_pid: u32,
    /// The master's start time (clock ticks since boot), so a reused pid is not taken for it.
    pub master_start: u64,
    /// The status board's shared memory name.
    pub status: String,
    /// The addresses served.
    pub listen: Vec<SocketAddr>,
    /// How accepting is shared.
    pub accept: AcceptMode,
    /// The current generation (1 at start, one more per reload).
    pub generation: u64,
    /// The live workers.
    pub workers: Vec<StateWorker>,
}

/// One worker in the state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateWorker {
    /// Its slot in the status board.
    pub slot: usize,
    /// Its pid.
    pub pid: u32,
    /// Its generation.
    pub generation: u64,
    /// True once it was told to retire (QUIT).
    pub retiring: bool,
}

/// Where state files live: `$XDG_RUNTIME_DIR` if it is a directory of ours closed to others,
/// else the first of `/tmp/ipckit-serve-<euid>` and its numbered alternatives (`.1` to `.8`)
/// that is, or can be made (0700), a directory of ours closed to others, then
/// `~/.cache/ipckit/ipckit-serve-<euid>` ([`ipckit::fs::private_dir_candidates`],
/// [`ipckit::fs::private_dir`]): a name another user planted in the shared `/tmp` is
/// reported on stderr and bypassed, and `serve --status` and `clean` walk the same list and
/// find the same directory. `$IPCKIT_STATE_BASE` replaces `/tmp` (tests use it). If every
/// candidate is taken, the first is returned and creating state there fails with the reason.
pub fn state_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
            if d.is_dir() && ipckit::fs::not_private(&d).is_none() {
                return d;
            }
        }
        let candidates = ipckit::fs::private_dir_candidates("ipckit-serve");
        ipckit::fs::private_dir(&candidates, true).unwrap_or_else(|_| candidates[0].clone())
    })
    .clone()
}

/// This process's effective uid (the owner of `/proc/self`).
fn euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

/// [`state_dir`], created 0700 if missing, and checked to be ours and closed to others.
pub(super) fn ensure_state_dir() -> io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let d = state_dir();
    match std::fs::DirBuilder::new().mode(0o700).create(&d) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", d.display()))),
    }
    let md = std::fs::symlink_metadata(&d)?;
    if !md.is_dir() || md.uid() != euid() || md.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a directory of ours closed to others",
                d.display()
            ),
        ));
    }
    Ok(d)
}

/// The state file of a master whose first address has this port.
pub fn state_path(port: u16) -> PathBuf {
    state_dir().join(format!("ipckit-serve-{port}.json"))
}

/// This master's state file: created exclusively at start, rewritten on every change,
/// removed on exit.
#[derive(Debug)]
pub(super) struct StateFile {
    path: PathBuf,
    written: bool,
}

impl StateFile {
    /// The state file at `path`, not created yet.
    pub(super) fn new(path: PathBuf) -> StateFile {
        StateFile {
            path,
            written: false,
        }
    }

    /// Where it is.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// True from its creation until its removal.
    pub(super) fn is_written(&self) -> bool {
        self.written
    }

    /// Creates the state file exclusively; a stale one (its master is dead) is replaced.
    pub(super) fn create(&mut self, state: &State) -> io::Result<()> {
        let p = self.path.clone();
        for _ in 0..3 {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)
            {
                Ok(mut f) => {
                    self.written = true;
                    let text = serde_json::to_string_pretty(state).map_err(io::Error::other)?;
                    f.write_all(text.as_bytes())?;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if let Some(s) = read_state(&p).ok().filter(master_alive) {
                        return Err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            format!(
                                "{} belongs to a running ipckit serve (pid {})",
                                p.display(),
                                s.master_pid
                            ),
                        ));
                    }
                    // Unreadable and fresh: another master is writing it right now.
                    let fresh = std::fs::metadata(&p)
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t.elapsed().is_ok_and(|a| a < Duration::from_secs(2)));
                    if read_state(&p).is_err() && fresh {
                        return Err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            format!("{} is being created by another ipckit serve", p.display()),
                        ));
                    }
                    // Its master is gone: a leftover of a kill -9.
                    std::fs::remove_file(&p)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // The directory went with the last master that used it: make it again.
                    ensure_state_dir()?;
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("state file {}: {e}", p.display()),
                    ))
                }
            }
        }
        Err(io::Error::other(format!(
            "state file {}: cannot create it",
            p.display()
        )))
    }

    /// Rewrites the state file (write a temporary file, rename over); nothing before it is
    /// created or after it is removed.
    pub(super) fn write(&self, state: &State) -> io::Result<()> {
        if !self.written {
            return Ok(());
        }
        let tmp = self
            .path
            .with_extension(format!("json.{}.tmp", std::process::id()));
        let r = (|| -> io::Result<()> {
            let text = serde_json::to_string_pretty(state).map_err(io::Error::other)?;
            let _ = std::fs::remove_file(&tmp);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            std::fs::rename(&tmp, &self.path)
        })();
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }

    /// Removes the state file, and our directory in /tmp with it when it was the last.
    pub(super) fn remove(&mut self) {
        if self.written {
            let _ = std::fs::remove_file(&self.path);
            self.written = false;
            let dir = state_dir();
            if dir.starts_with("/tmp") {
                // Our own directory in /tmp: gone with its last state file (fails while
                // another master's is there).
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// The largest state file read (a real one is a few KB even with 512 workers).
const MAX_STATE_BYTES: u64 = 1 << 20;

fn read_state(p: &Path) -> io::Result<State> {
    read_state_id(p).map(|(s, _)| s)
}

/// The state in `p` and the file's (device, inode), if `p` is a regular file of ours (not a
/// symlink), read with a bound.
fn read_state_id(p: &Path) -> io::Result<(State, (u64, u64))> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(p)?;
    if md.uid() != euid() || !md.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a file of ours", p.display()),
        ));
    }
    let bytes = ipckit::fs::read_regular(p, MAX_STATE_BYTES)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
    let state = serde_json::from_slice(&bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display())))?;
    Ok((state, (md.dev(), md.ino())))
}

/// What [`clean_stale`] did with one state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleAction {
    /// Its master (this pid) is dead: the file was removed (or would be, in a dry run).
    Removed(u32),
    /// Its master (this pid) runs.
    MasterAlive(u32),
    /// Left alone: why (not ours, not a state file, replaced while we looked, ...).
    Kept(String),
    /// Removing it failed.
    Failed(String),
}

/// `ipckit clean`'s part for `serve`: the state files a master killed with `-9` left behind.
/// A file is removed only when its master is verified dead (pid *and* start time, so a reused
/// pid does not keep it, and a live master's is never touched), when it is a regular file of
/// ours, and when the name still denotes the very file read (device and inode compared just
/// before the unlink; the directory is ours and closed to others, so nobody can swap it in
/// between). The status board is in ipckit's registry and cleaned with it.
///
/// # Errors
///
/// Reading the state directory (a missing one is no state file, not an error).
pub fn clean_stale(dry_run: bool) -> io::Result<Vec<(PathBuf, StaleAction)>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for p in state_files()? {
        let action = match read_state_id(&p) {
            Err(e) => StaleAction::Kept(e.to_string()),
            Ok((s, _)) if master_alive(&s) => StaleAction::MasterAlive(s.master_pid),
            Ok((s, _)) if dry_run => StaleAction::Removed(s.master_pid),
            Ok((s, id)) => {
                let same = std::fs::symlink_metadata(&p)
                    .is_ok_and(|m| m.is_file() && (m.dev(), m.ino()) == id);
                if !same {
                    StaleAction::Kept("replaced while it was read".into())
                } else {
                    match std::fs::remove_file(&p) {
                        Ok(()) => StaleAction::Removed(s.master_pid),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            StaleAction::Removed(s.master_pid)
                        }
                        Err(e) => StaleAction::Failed(e.to_string()),
                    }
                }
            }
        };
        out.push((p, action));
    }
    Ok(out)
}

/// The directories state files are read from: [`state_dir`], then every other candidate that
/// is a private directory of ours ([`ipckit::fs::private_dirs_existing`]): a master that
/// found a name taken wrote its state further down the list, and `--status` and `clean` must
/// still find it when the name is freed.
fn state_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![state_dir()];
    let more =
        ipckit::fs::private_dirs_existing(&ipckit::fs::private_dir_candidates("ipckit-serve"));
    for d in more {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs
}

/// Every state file in the state directories, sorted (none where a directory does not exist).
fn state_files() -> io::Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for d in state_dirs() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        v.extend(
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("ipckit-serve-") && n.ends_with(".json"))
                }),
        );
    }
    v.sort();
    Ok(v)
}

fn master_alive(s: &State) -> bool {
    ipckit::process::is_alive(s.master_pid, s.master_start)
}

/// The state of every running master (optionally only the one whose first port is `port`).
///
/// # Errors
///
/// Reading the state directory.
pub fn running(port: Option<u16>) -> io::Result<Vec<(PathBuf, State)>> {
    let paths: Vec<PathBuf> = match port {
        Some(p) => {
            let name = format!("ipckit-serve-{p}.json");
            state_dirs().into_iter().map(|d| d.join(&name)).collect()
        }
        None => state_files()?,
    };
    Ok(paths
        .into_iter()
        .filter_map(|p| read_state(&p).ok().filter(master_alive).map(|s| (p, s)))
        .collect())
}
