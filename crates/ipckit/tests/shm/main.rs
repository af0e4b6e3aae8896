//! Shared memory across real processes: segments and their header checks, `ipckit clean`
//! after kill -9, the zero-copy API, and peer death while blocked on a ring.

mod integrity;
#[path = "../util/mod.rs"]
mod util;

use ipckit::registry::{self, CleanAction};
use ipckit::shm::{self, HugePages, Layout, PairBuilder, SegmentBuilder};
use ipckit::{Deadline, RecvError, SendError, Transport, Wait};
use std::io::{BufRead, ErrorKind};
use std::time::{Duration, Instant};
use util::{init, peer_command, watchdog, KillOnDrop};

fn spawn_reading(role: &str, name: &str) -> (KillOnDrop, Vec<String>) {
    let mut cmd = peer_command(role, &[("NAME", name.to_owned())]);
    cmd.stdout(std::process::Stdio::piped());
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let lines = std::io::BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut out = Vec::new();
    for l in lines {
        let l = l.unwrap();
        if l == "ready" {
            break;
        }
        if l.starts_with('/') || l == "mapped" {
            out.push(l);
        }
    }
    (child, out)
}

fn shm_exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm/{}", name.trim_start_matches('/'))).exists()
}

#[test]
fn clean_after_kill_removes_the_dead_creators_segments_not_live_ones() {
    watchdog(30, || {
        init();
        let live = SegmentBuilder::new(&format!("/{}", registry::unique_name("live")))
            .size(4096)
            .create()
            .unwrap()
            .ready();
        let (mut creator, names) = spawn_reading("creator", "");
        assert_eq!(names.len(), 2, "{names:?}");
        let (a, b) = (names[0].clone(), names[1].clone());
        // A live process keeps `b` mapped.
        let (mut mapper, said) = spawn_reading("mapper", &b);
        assert_eq!(said, ["mapped"]);
        let listed = registry::list().unwrap();
        for n in [&a, &b] {
            let e = listed.iter().find(|e| &e.record.name == n).unwrap();
            assert!(e.owner_alive && e.exists, "{n}: {e:?}");
        }
        // SIGKILL: no destructor runs in the creator.
        creator.0.kill().unwrap();
        creator.0.wait().unwrap();
        let report = registry::clean(false).unwrap();
        let action = |n: &str| {
            report
                .iter()
                .find(|(e, _)| e.record.name == n)
                .map(|(_, a)| format!("{a:?}"))
                .unwrap_or_default()
        };
        assert_eq!(action(&a), "Removed", "{report:?}");
        assert!(!shm_exists(&a), "{a} still exists");
        assert_eq!(
            action(&b),
            "InUse",
            "a mapped segment must stay: {report:?}"
        );
        assert!(shm_exists(&b));
        assert_eq!(action(live.name().unwrap()), "OwnerAlive");
        assert!(shm_exists(live.name().unwrap()));
        // Once its last user is gone too, it goes.
        mapper.0.kill().unwrap();
        mapper.0.wait().unwrap();
        let report = registry::clean(false).unwrap();
        assert!(report
            .iter()
            .any(|(e, a)| e.record.name == b && matches!(a, CleanAction::Removed)));
        assert!(!shm_exists(&b));
        let n = live.name().unwrap().to_owned();
        drop(live);
        assert!(!shm_exists(&n), "the owner's drop unlinks its segment");
    });
}

#[test]
fn bad_input_gets_clear_errors() {
    init();
    let err = |r: std::io::Result<shm::Segment>| r.map(|_| ()).unwrap_err();
    let e = err(SegmentBuilder::new("/a/b").size(4096).create());
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains('/'), "{e}");
    let e = err(SegmentBuilder::new(&"x".repeat(256)).size(4096).create());
    assert!(e.to_string().contains("NAME_MAX"), "{e}");
    let e = err(SegmentBuilder::new(&registry::unique_name("zero"))
        .size(0)
        .create());
    assert!(e.to_string().contains("size of 0"), "{e}");

    // Not an ipckit segment, and too small for the header.
    let tiny = format!("/dev/shm/{}", registry::unique_name("tiny"));
    {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tiny)
            .unwrap();
        f.set_len(100).unwrap();
    }
    let e = err(SegmentBuilder::new(tiny.trim_start_matches("/dev/shm")).open());
    std::fs::remove_file(&tiny).unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    assert!(e.to_string().contains("too small"), "{e}");

    // Another layout version: a ring pair from a future ipckit.
    let future = Layout {
        kind: shm::PAIR_LAYOUT.kind,
        version: 99,
    };
    let name = format!("/{}", registry::unique_name("future"));
    let seg = SegmentBuilder::new(&name)
        .size(1 << 20)
        .layout(future)
        .create()
        .unwrap()
        .ready();
    let e = PairBuilder::new(&name).open().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    assert!(e.to_string().contains("version 99"), "{e}");
    drop(seg);

    // Capacities and maxima.
    let name = format!("/{}", registry::unique_name("cap"));
    let bad = |b: PairBuilder| b.create().unwrap_err();
    let e = bad(PairBuilder::new(&name).capacity(5000));
    assert!(e.to_string().contains("power of two"), "{e}");
    let e = bad(PairBuilder::new(&name).capacity(4096).max_msg_size(1 << 20));
    assert!(e.to_string().contains("needs a ring"), "{e}");
    // Nothing was left by the refusals.
    assert!(!shm_exists(&name));
}

#[test]
fn segments_of_other_users_are_refused_and_modes_are_exact() {
    init();
    let name = format!("/{}", registry::unique_name("mode"));
    let seg = SegmentBuilder::new(&name)
        .size(4096)
        .create()
        .unwrap()
        .ready();
    use std::os::unix::fs::PermissionsExt;
    let path = format!("/dev/shm/{}", name.trim_start_matches('/'));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Made writable by others: refused unless allowed.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let e = SegmentBuilder::new(&name).open().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    SegmentBuilder::new(&name)
        .allow_other_users(true)
        .open()
        .unwrap();
    // Exclusive: a second create of the same name fails.
    let e = SegmentBuilder::new(&name).size(4096).create().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    drop(seg);
}

#[test]
fn memfd_segments_and_huge_page_fallback() {
    let seg = SegmentBuilder::anonymous()
        .size(4 << 20)
        .huge_pages(HugePages::Try)
        .populate(true)
        .create()
        .unwrap()
        .ready();
    // Whatever the machine has, it says what it did.
    eprintln!("huge pages: {:?}", seg.huge_pages());
    assert!(seg.len() >= 4 << 20);
    assert!(seg.name().is_none());
}

#[test]
fn zero_copy_round_trips_across_processes() {
    watchdog(30, || {
        init();
        let name = format!("/{}", registry::unique_name("zc"));
        // A small ring, so the largest messages (half of it) wrap it often.
        let mut l = PairBuilder::new(&name)
            .capacity(256 << 10)
            .create()
            .unwrap();
        let _child = KillOnDrop(
            peer_command("zc-echo", &[("NAME", name.clone())])
                .spawn()
                .unwrap(),
        );
        let mut ep = l.accept_timeout(Duration::from_secs(5)).unwrap();
        assert!(!shm_exists(&name), "accept unlinks the name");
        let max = ep.max_msg_size();
        for i in 0..5000u64 {
            let len = [0, 1, 56, 57, 4000, max][(i % 6) as usize];
            let want = util::payload(i, len);
            {
                let mut loan = ep.loan(len, Deadline::Never).unwrap();
                loan.copy_from_slice(&want);
                loan.commit();
            }
            let m = ep.recv_ref(Deadline::Never).unwrap();
            assert!(*m == want[..], "message {i} ({len} B) came back different");
        }
        // A loan dropped without commit sends nothing.
        {
            let mut abandoned = ep.loan(10, Deadline::Never).unwrap();
            abandoned.fill(7);
        }
        assert!(matches!(
            ep.recv_ref(Deadline::after(Duration::from_millis(20))),
            Err(RecvError::Timeout)
        ));
        // Over the maximum: refused, nothing sent.
        assert!(matches!(
            ep.loan(max + 1, Deadline::Never),
            Err(SendError::TooLarge { .. })
        ));
    });
}

/// A receiver blocked on the ring (each wait strategy) sees its peer's SIGKILL as
/// `PeerGone`. It prints the detection time but asserts no maximum: a loaded machine may be
/// slow, and speed is the benchmarks' business; a hang is the watchdog's.
#[test]
fn blocked_receiver_sees_peer_death() {
    for wait in [Wait::Block, Wait::ADAPTIVE, Wait::Spin] {
        watchdog(20, move || {
            let _s = util::scarce();
            init();
            let name = format!("/{}", registry::unique_name("death"));
            let mut l = PairBuilder::new(&name).wait(wait).create().unwrap();
            let mut child = KillOnDrop(
                peer_command("sleeper", &[("NAME", name.clone())])
                    .spawn()
                    .unwrap(),
            );
            let mut ep = l.accept_timeout(Duration::from_secs(5)).unwrap();
            let pid = child.0.id();
            let killer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                let t = Instant::now();
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
                t
            });
            let mut buf = [0u8; 64];
            let r = ep.recv(&mut buf);
            let seen = Instant::now();
            let killed = killer.join().unwrap();
            assert!(matches!(r, Err(RecvError::PeerGone)), "{:?}", r);
            let ms = seen.duration_since(killed).as_secs_f64() * 1e3;
            eprintln!("DETECTION shm {}: {ms:.2} ms after kill -9", wait.name());
            let _ = child.0.wait();
        });
    }
}
