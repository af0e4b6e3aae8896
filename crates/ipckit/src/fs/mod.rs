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
//!
//! By idea: `beneath.rs` (opening beneath a directory, regular files only), `made.rs` (files
//! made relative to a directory handle and removed exactly), `private.rs` (private
//! directories and output files).

mod beneath;
mod made;
mod private;

pub use beneath::{open_beneath, open_regular_beneath, read_regular};
pub use made::FileId;
pub(crate) use made::{dir_id, entry_id, open_parent, remove_if_same, Parent, Removal};
pub use private::{
    create_output, not_private, private_dir, private_dir_candidates, private_dirs_existing,
};

/// A fresh, empty scratch directory for one unit test.
#[cfg(test)]
fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ipckit-fs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
