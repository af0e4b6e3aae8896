//! Whether a recorded object is there, and whether some live process uses it: read from
//! `/proc` (descriptor links, `maps`, `net/unix`, `sysvipc/msg`).

use super::identity::shm_path;
use super::location::absolute_path;
use super::record::{parse_key, ObjectKind};
use std::fs;
use std::path::{Path, PathBuf};

/// True if the object exists.
pub(super) fn exists(kind: ObjectKind, name: &str) -> bool {
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
pub(super) fn in_use(kind: ObjectKind, name: &str) -> bool {
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
