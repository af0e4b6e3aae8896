//! Per-user directories and output files: the candidates for a private directory such as the
//! registry's ([`private_dir_candidates`], [`private_dir`]), bypassing those another user owns
//! or can write, and [`create_output`], which never follows a symbolic link or writes over an
//! input.

use super::made::{open_parent, FileId};
use crate::sys;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where [`private_dir`] looks by default: `$IPCKIT_STATE_BASE` if set (tests plant state
/// directories there instead of in the shared `/tmp`), else `/tmp`.
pub(crate) fn state_base() -> PathBuf {
    match std::env::var_os("IPCKIT_STATE_BASE") {
        Some(b) if !b.is_empty() => PathBuf::from(b),
        _ => PathBuf::from("/tmp"),
    }
}

/// How many numbered alternatives [`private_dir`] tries after the plain name.
const ALTERNATIVES: u32 = 8;

/// The candidates [`private_dir`] tries, in order: `<base>/<stem>-<uid>`, then
/// `<base>/<stem>-<uid>.1` to `.8`, where `<base>` is `$IPCKIT_STATE_BASE` if set, else `/tmp`; and last, should
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
    use crate::fs::scratch;

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
