//! Where the registry is ([`dir`], and every directory records are read from) and what
//! objects are called: the run's [`prefix`], [`unique_name`]s, and the absolute form of a
//! path object's name.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The prefix of every object name: `ipckit-<run id>-`.
pub fn prefix() -> String {
    format!("ipckit-{}-", run_id())
}

/// This process's run id: `$IPCKIT_RUN_ID` if set (tests use it to find what they left),
/// else derived from the pid and the time.
pub(crate) fn run_id() -> &'static str {
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

/// The directories records are read from: [`dir`], and unless `$IPCKIT_REGISTRY` names the
/// one directory, every other candidate that is a private directory of ours
/// ([`crate::fs::private_dirs_existing`]): an earlier process that found a name taken wrote
/// its records further down the list, and they must not vanish from `list` and `clean` when
/// the name is freed.
pub(super) fn read_dirs() -> io::Result<Vec<PathBuf>> {
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
pub(super) fn absolute_path(path: &Path) -> io::Result<PathBuf> {
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
