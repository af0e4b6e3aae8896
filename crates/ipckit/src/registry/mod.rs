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
//!
//! By idea: the record and its format (`record.rs`), where the registry is and what objects
//! are called (`location.rs`), registering and the guard (`guard.rs`), removal by identity
//! (`identity.rs`), whether an object is there and in use (`usage.rs`), and `list`/`clean`
//! (`clean.rs`).

mod clean;
mod guard;
mod identity;
mod location;
mod record;
mod usage;

pub(crate) use crate::sys::proc::euid;
pub use clean::{clean, list, CleanAction, Entry};
pub use guard::ObjectGuard;
pub(crate) use guard::{register, register_file};
pub use location::{dir, prefix, unique_name};
pub use record::{encode_record, parse_key, parse_record, Identity, ObjectKind, Record};
