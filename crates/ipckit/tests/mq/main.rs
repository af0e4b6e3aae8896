//! POSIX priorities, System V receive-by-type rules, queues made by other programs, and the
//! errors for bad names and sizes.

#[path = "../util/mod.rs"]
mod util;

use ipckit::mq::posix::PosixMqBuilder;
use ipckit::mq::sysv::{self, SysvMq, SysvMqBuilder};
use ipckit::{RecvError, SendError, Transport};
use util::{init, scarce};

fn qname(tag: &str) -> String {
    init();
    format!("/{}", ipckit::registry::unique_name(tag))
}

#[test]
fn posix_highest_priority_first_fifo_within_priority() {
    let _s = scarce();
    let name = qname("prio");
    let mut q = PosixMqBuilder::new(&name).create().unwrap();
    for (m, p) in [("a1", 1), ("c5", 5), ("b9", 9), ("d5", 5), ("e3", 3)] {
        q.send_priority(m.as_bytes(), p).unwrap();
    }
    let mut buf = vec![0u8; q.max_msg_size()];
    let mut got = Vec::new();
    for _ in 0..5 {
        let (n, p) = q.recv_priority(&mut buf).unwrap();
        got.push((String::from_utf8(buf[..n].to_vec()).unwrap(), p));
    }
    let want: Vec<(String, u32)> = [("b9", 9), ("c5", 5), ("d5", 5), ("e3", 3), ("a1", 1)]
        .iter()
        .map(|(m, p)| (m.to_string(), *p))
        .collect();
    assert_eq!(got, want);
    drop(q);
    assert_eq!(
        PosixMqBuilder::new(&name).open().unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
}

#[test]
fn posix_small_buffer_keeps_the_message() {
    let _s = scarce();
    let name = qname("small");
    let mut q = PosixMqBuilder::new(&name).create().unwrap();
    q.send(b"0123456789").unwrap();
    let mut small = [0u8; 4];
    assert!(matches!(
        q.try_recv(&mut small),
        Err(RecvError::BufferTooSmall { needed: 10 })
    ));
    let mut buf = [0u8; 16];
    assert_eq!(q.try_recv(&mut buf).unwrap(), 10);
    assert!(matches!(q.try_recv(&mut buf), Err(RecvError::Empty)));
}

#[test]
fn posix_full_queue_try_send_and_timeout() {
    let _s = scarce();
    let name = qname("full");
    let mut q = PosixMqBuilder::new(&name)
        .max_msgs(2)
        .max_msg_size(64)
        .create()
        .unwrap();
    q.send(b"1").unwrap();
    q.send(b"2").unwrap();
    assert!(matches!(q.try_send(b"3"), Err(SendError::Full)));
    assert!(matches!(
        q.send_timeout(b"3", std::time::Duration::from_millis(20)),
        Err(SendError::Timeout)
    ));
    assert!(matches!(
        q.send(&[0u8; 65]),
        Err(SendError::TooLarge { len: 65, max: 64 })
    ));
}

#[test]
fn posix_bad_names_and_sizes_are_clear_errors() {
    let _s = scarce();
    init();
    for bad in ["noslash", "/", "/a/b"] {
        let e = PosixMqBuilder::new(bad).create().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{bad}: {e}");
    }
    let e = PosixMqBuilder::new(qname("huge"))
        .max_msg_size(1 << 30)
        .create();
    // Root may exceed msgsize_max up to the hard limit; others get a clear error.
    if let Err(e) = e {
        assert!(
            e.to_string().contains("limit") || e.to_string().contains("RLIMIT"),
            "{e}"
        );
    }
}

#[test]
fn posix_queue_made_elsewhere_is_read_as_is() {
    let _s = scarce();
    // "Another program": a second, independent creator that fills the queue and goes away
    // without unlinking (simulated by disarming nothing: we just open it separately).
    let name = qname("foreign");
    let mut owner = PosixMqBuilder::new(&name).create().unwrap();
    owner.send_priority(b"raw bytes, no hello", 4).unwrap();
    let mut reader = PosixMqBuilder::new(&name).open().unwrap();
    let mut buf = vec![0u8; reader.max_msg_size()];
    let (n, p) = reader.recv_priority(&mut buf).unwrap();
    assert_eq!((&buf[..n], p), (&b"raw bytes, no hello"[..], 4));
}

/// A key of ipckit's range no other test of this process uses: the pid, and a counter (the
/// nanoseconds of a just-made `Instant`'s `elapsed()` were used before, nearly always 0, so
/// two tests running at once collided: "registered already").
fn sysv_key() -> i32 {
    static NEXT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xf;
    0x1c80_0000 | (std::process::id() as i32 & 0xffff) << 4 | n
}

#[test]
fn sysv_receive_by_type_follows_msgrcv() {
    init();
    let key = sysv_key();
    let mut q = SysvMqBuilder::new(key).create().unwrap();
    for (m, t) in [("t3a", 3), ("t1", 1), ("t3b", 3), ("t2", 2), ("t5", 5)] {
        q.send_type(m.as_bytes(), t).unwrap();
    }
    let take = |q: &mut SysvMq, t: i64| {
        let mut buf = vec![0u8; q.max_msg_size()];
        let (n, ty) = q.try_recv_type(&mut buf, t).unwrap();
        (String::from_utf8(buf[..n].to_vec()).unwrap(), ty)
    };
    let mut buf = vec![0u8; q.max_msg_size()];
    // Positive: the first message of exactly that type.
    assert_eq!(take(&mut q, 3), ("t3a".into(), 3));
    // Negative: the first message of the lowest type <= |t|.
    assert_eq!(take(&mut q, -3), ("t1".into(), 1));
    assert_eq!(take(&mut q, -3), ("t2".into(), 2));
    // Zero: the first message in the queue, whatever its type.
    assert_eq!(take(&mut q, 0), ("t3b".into(), 3));
    assert!(matches!(
        q.try_recv_type(&mut buf, 4),
        Err(RecvError::Empty)
    ));
    assert_eq!(take(&mut q, 0), ("t5".into(), 5));
    assert!(
        q.try_send_type(b"x", 0).is_err(),
        "type 0 is invalid for msgsnd"
    );
    assert_eq!(q.last_sender().unwrap(), Some(std::process::id()));
    drop(q);
    assert_eq!(
        SysvMqBuilder::new(key).open().unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
}

#[test]
fn sysv_limits_and_timeouts() {
    init();
    let key = sysv_key() ^ 0x8;
    let mut q = SysvMqBuilder::new(key).create().unwrap();
    let max = q.max_msg_size();
    assert_eq!(max, sysv::system_max_msg_size().min(max));
    assert!(matches!(
        q.send(&vec![0u8; max + 1]),
        Err(SendError::TooLarge { .. })
    ));
    let mut buf = vec![0u8; max];
    let t = std::time::Instant::now();
    assert!(matches!(
        q.recv_timeout(&mut buf, std::time::Duration::from_millis(30)),
        Err(RecvError::Timeout)
    ));
    assert!(t.elapsed() >= std::time::Duration::from_millis(30));
    assert!(sysv::parse_key("0").is_err());
    assert!(sysv::parse_key("zz").is_err());
}

/// Opening an existing queue others may write (or another user's) is refused by default, as
/// a FIFO or a segment is: its owner could read what we send or inject what we receive.
/// `allow_other_users(true)` lifts it. (A queue of another uid takes a second user: the
/// CLI's `peers_attack` tests do that; here the mode stands for it.)
#[test]
fn queues_others_may_write_are_refused_unless_allowed() {
    let _s = scarce();
    // POSIX: mq_open applies the umask, so the mode is set on the queue's file afterwards.
    let name = qname("open-to-all");
    let _owner = PosixMqBuilder::new(&name).create().unwrap();
    let file = format!("/dev/mqueue{name}");
    if std::path::Path::new(&file).exists() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o622)).unwrap();
        for e in [
            PosixMqBuilder::new(&name).open().unwrap_err(),
            PosixMqBuilder::new(&name).open_sender().unwrap_err(),
        ] {
            assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
            assert!(e.to_string().contains("allow_other_users(true)"), "{e}");
        }
        PosixMqBuilder::new(&name)
            .allow_other_users(true)
            .open()
            .unwrap();
    } else {
        eprintln!("*** /dev/mqueue is not mounted: the POSIX half of this test did not run ***");
    }
    // System V: the mode is the queue's own.
    let key = sysv_key();
    let _owner = SysvMqBuilder::new(key).mode(0o666).create().unwrap();
    for e in [
        SysvMqBuilder::new(key).open().unwrap_err(),
        SysvMqBuilder::new(key).open_sender().unwrap_err(),
    ] {
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    }
    SysvMqBuilder::new(key)
        .allow_other_users(true)
        .open_sender()
        .unwrap();
    // Our own, owner-only queue opens as before.
    let key = sysv_key();
    let _mine = SysvMqBuilder::new(key).create().unwrap();
    SysvMqBuilder::new(key).open().unwrap();
}
