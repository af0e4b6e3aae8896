//! A registry record: the kind of object it names ([`ObjectKind`]), the [`Record`] and the
//! [`Identity`] it holds once the object exists, and the record file's line format
//! (`key=value`), written and parsed here ([`encode_record`], [`parse_record`]). Record files
//! are written by any process of the same user, so the parser takes any text.

use crate::fs::FileId;
use std::fmt;
use std::io;

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

pub(super) fn record_file(kind: ObjectKind, name: &str) -> String {
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

/// Refuses names that could break a record's line format (`\n`, `\r`, NUL and the other
/// control characters).
pub(super) fn check_name(name: &str) -> io::Result<()> {
    if name.chars().any(char::is_control) {
        return Err(crate::error::invalid(format!(
            "object name {name:?} contains a control character"
        )));
    }
    Ok(())
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
