//! The robust shared mutex across real processes: a holder SIGKILLed with the lock held is
//! reported to the next locker (repairable, or unrecoverable if nobody repairs it), a
//! condition variable wakes another process, two processes exclude each other, and bad names
//! or foreign segments are clear errors. Peers are the peer binary (`peer.rs`).

#[path = "../util/mod.rs"]
mod util;

mod peer;

use ipckit::shm::{LockError, MutexBuilder, SegmentBuilder, ShmMutex, MUTEX_LAYOUT, NAME_MAX};
use peer::{State, ROUNDS};
use std::io::{BufRead, BufReader, ErrorKind};
use std::os::fd::{AsFd, AsRawFd};
use std::process::Stdio;
use std::time::Duration;
use util::{peer_command, watchdog, KillOnDrop};

fn shm_name(tag: &str) -> String {
    util::init();
    format!("/{}", ipckit::registry::unique_name(tag))
}

/// Spawns `role` on the segment `name` with its stdout piped, and waits for it to say
/// `line`.
fn spawn_until(role: &str, name: &str, line: &str) -> KillOnDrop {
    let mut cmd = peer_command(role, &[("NAME", name.to_owned())]);
    cmd.stdout(Stdio::piped());
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let out = BufReader::new(child.0.stdout.take().unwrap());
    // The harness's own chatter ("running 1 test") comes first.
    for l in out.lines() {
        if l.unwrap() == line {
            return child;
        }
    }
    panic!("{role} exited before saying {line:?}: {:?}", child.0.wait());
}

fn run(role: &str, name: &str) -> bool {
    let mut child = KillOnDrop(
        peer_command(role, &[("NAME", name.to_owned())])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    child.0.wait().unwrap().success()
}

fn kill(mut child: KillOnDrop) {
    child.0.kill().unwrap();
    let status = child.0.wait().unwrap();
    assert!(!status.success(), "SIGKILLed: {status:?}");
}

/// Nothing of the segment `name` is left: no object in /dev/shm, no registry record.
fn assert_gone(name: &str) {
    let bare = name.trim_start_matches('/');
    let p = format!("/dev/shm/{bare}");
    assert!(!std::path::Path::new(&p).exists(), "{p} left behind");
    let recs: Vec<_> = ipckit::registry::list()
        .unwrap()
        .into_iter()
        .filter(|e| e.record.name.trim_start_matches('/') == bare)
        .collect();
    assert!(recs.is_empty(), "registry records left behind: {recs:?}");
}

#[test]
fn killed_holder_is_owner_died_and_repairable() {
    watchdog(60, || {
        let name = shm_name("mutex-died");
        let m = MutexBuilder::new(&name).create(State::default()).unwrap();
        let child = spawn_until("holder", &name, "locked");
        assert!(matches!(m.try_lock(), Err(LockError::WouldBlock)));
        assert!(matches!(
            m.lock_timeout(Duration::from_millis(20)),
            Err(LockError::Timeout)
        ));
        // Kill the holder while this thread sleeps in lock(): a waiter notices the holder is
        // gone and takes the lock over.
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let at = std::time::Instant::now();
            kill(child);
            at
        });
        let mut g = match m.lock() {
            Err(LockError::OwnerDied(g)) => g,
            other => panic!("expected OwnerDied, got {other:?}"),
        };
        let got = std::time::Instant::now();
        let killed = killer.join().unwrap();
        // Speed belongs in benchmarks: printed, not asserted.
        eprintln!(
            "OwnerDied {:.1} ms after the holder's kill",
            got.saturating_duration_since(killed).as_secs_f64() * 1e3
        );
        // The value is as the dead holder left it, mid-update: repair it.
        assert_eq!((g.value, g.dirty), (42, 1));
        g.dirty = 0;
        g.make_consistent().unwrap();
        drop(g);
        let g = m.lock().expect("the next lock is normal");
        assert_eq!(
            *g,
            State {
                value: 42,
                ..State::default()
            }
        );
        drop(g);
        assert!(
            run("expect_repaired", &name),
            "another process sees it repaired"
        );
        drop(m);
        assert_gone(&name);
    });
}

#[test]
fn owner_died_left_unrepaired_is_not_recoverable() {
    watchdog(60, || {
        let name = shm_name("mutex-nr");
        let m = MutexBuilder::new(&name).create(State::default()).unwrap();
        kill(spawn_until("holder", &name, "locked"));
        let g = m.lock().unwrap_err().into_guard().expect("OwnerDied");
        assert_eq!(g.value, 42);
        drop(g); // without make_consistent
        assert!(matches!(m.lock(), Err(LockError::NotRecoverable)));
        assert!(matches!(m.try_lock(), Err(LockError::NotRecoverable)));
        let r = m.lock_timeout(Duration::from_millis(20));
        assert!(matches!(r, Err(LockError::NotRecoverable)), "{r:?}");
        drop(r);
        let e: std::io::Error = m.lock().unwrap_err().into();
        assert!(e.to_string().contains("not recoverable"), "{e}");
        assert!(
            run("expect_not_recoverable", &name),
            "unrecoverable for every process"
        );
        drop(m);
        assert_gone(&name);
    });
}

#[test]
fn condvar_wakes_another_process() {
    watchdog(60, || {
        let name = shm_name("mutex-cv");
        let m = MutexBuilder::new(&name).create(State::default()).unwrap();
        let cv = m.condvar();
        let mut child = KillOnDrop(
            peer_command("waiter", &[("NAME", name.clone())])
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // The waiter sets `waiting` under the lock and its wait releases the lock
        // atomically: once we see the flag under the lock, it is inside the wait.
        let mut g = loop {
            let g = m.lock().unwrap();
            if g.waiting == 1 {
                break g;
            }
            drop(g);
            std::thread::sleep(Duration::from_millis(5));
        };
        g.go = 1;
        drop(g);
        cv.notify_one();
        let (g, r) = cv
            .wait_timeout_while(m.lock().unwrap(), Duration::from_secs(20), |s| s.go != 2)
            .unwrap();
        assert!(!r.timed_out(), "the waiter never answered");
        assert_eq!(g.value, 1);
        drop(g);
        assert!(child.0.wait().unwrap().success());
        drop(m);
        assert_gone(&name);
    });
}

#[test]
fn wait_that_reacquires_a_dead_holders_lock_is_owner_died() {
    watchdog(60, || {
        let name = shm_name("mutex-cvdied");
        let m = MutexBuilder::new(&name).create(State::default()).unwrap();
        let g = m.lock().unwrap();
        let mut cmd = peer_command("notify_and_die", &[("NAME", name.clone())]);
        cmd.stdout(Stdio::piped());
        let mut child = KillOnDrop(cmd.spawn().unwrap());
        let out = BufReader::new(child.0.stdout.take().unwrap());
        // Kills the child once it holds the lock, while this thread is woken but blocked
        // reacquiring the mutex.
        let killer = std::thread::spawn(move || {
            let locked = out.lines().any(|l| l.is_ok_and(|l| l == "locked"));
            kill(child);
            locked
        });
        let g = match m.condvar().wait_while(g, |s| s.go == 0) {
            Err(LockError::OwnerDied(g)) => g,
            other => panic!("expected OwnerDied, got {other:?}"),
        };
        assert!(killer.join().unwrap(), "the child never locked");
        let mut g = g;
        assert_eq!((g.go, g.dirty), (1, 1));
        g.dirty = 0;
        g.make_consistent().unwrap();
        drop(g);
        assert_eq!(m.lock().unwrap().go, 1);
        drop(m);
        assert_gone(&name);
    });
}

#[test]
fn two_processes_exclude_each_other() {
    watchdog(120, || {
        util::init();
        let m = MutexBuilder::anonymous().create(0u64).unwrap();
        let fd = m.as_fd().as_raw_fd();
        let mut cmd = peer_command("counter", &[("FD", fd.to_string())]);
        cmd.stdout(Stdio::piped());
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the forked child before exec and calls only fcntl,
        // which is async-signal-safe; it clears FD_CLOEXEC on this one descriptor so that
        // this child, and no other, inherits it.
        unsafe {
            cmd.pre_exec(move || {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags == -1 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = KillOnDrop(cmd.spawn().unwrap());
        // Start together, so that the two loops overlap.
        let out = BufReader::new(child.0.stdout.take().unwrap());
        assert!(out.lines().any(|l| l.is_ok_and(|l| l == "ready")));
        for _ in 0..ROUNDS {
            *m.lock().unwrap() += 1;
        }
        assert!(child.0.wait().unwrap().success());
        assert_eq!(*m.lock().unwrap(), 2 * ROUNDS, "an increment was lost");
    });
}

#[test]
fn bad_names_and_foreign_segments_are_clear_errors() {
    watchdog(30, || {
        util::init();
        let long = "x".repeat(NAME_MAX + 1);
        for bad in ["a/b", "/a/b", "", "/", long.as_str()] {
            let e = MutexBuilder::new(bad).create(0u64).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "create {bad:?}: {e}");
            let e = ShmMutex::<u64>::builder(bad).open().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "open {bad:?}: {e}");
        }
        let e = ShmMutex::<u64>::builder(&shm_name("never-made"))
            .open()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

        // A segment of another layout.
        let raw_name = shm_name("mutex-raw");
        let raw = SegmentBuilder::new(&raw_name)
            .size(4096)
            .create()
            .unwrap()
            .ready();
        let e = ShmMutex::<u64>::builder(&raw_name).open().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
        assert!(e.to_string().contains("raw bytes"), "{e}");

        // The mutex layout, but not made by ShmMutex (nothing initialized), and too small.
        let bare_name = shm_name("mutex-bare");
        let bare = SegmentBuilder::new(&bare_name)
            .size(4096)
            .layout(MUTEX_LAYOUT)
            .create()
            .unwrap()
            .ready();
        let e = ShmMutex::<u64>::builder(&bare_name).open().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
        assert!(e.to_string().contains("never initialized"), "{e}");
        let tiny_name = shm_name("mutex-tiny");
        let tiny = SegmentBuilder::new(&tiny_name)
            .size(64)
            .layout(MUTEX_LAYOUT)
            .create()
            .unwrap()
            .ready();
        let e = ShmMutex::<u64>::builder(&tiny_name).open().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");

        // A mutex over another value type.
        let name = shm_name("mutex-type");
        let m = MutexBuilder::new(&name).create(7u64).unwrap();
        let e = MutexBuilder::new(&name).create(7u64).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        for e in [
            ShmMutex::<u32>::builder(&name).open().unwrap_err(),
            ShmMutex::<[u8; 8]>::builder(&name).open().unwrap_err(),
            ShmMutex::<State>::builder(&name).open().unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::InvalidData, "{e}");
            assert!(e.to_string().contains("value"), "{e}");
        }
        assert_eq!(
            *ShmMutex::<u64>::builder(&name)
                .open()
                .unwrap()
                .lock()
                .unwrap(),
            7
        );

        drop((raw, bare, tiny, m));
        for n in [raw_name, bare_name, tiny_name, name] {
            assert_gone(&n);
        }
    });
}
