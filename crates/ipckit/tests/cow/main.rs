//! Fork copy-on-write snapshots: the file holds the data as it was at the fork whatever the
//! parent writes meanwhile; the parent's writes are copies the kernel makes (seen in its
//! minor faults and in the child's smaps); a failing or killed child is an error, never a
//! hang; nothing is left behind (no zombie, no descriptor, no file).

#[path = "../util/mod.rs"]
mod util;

mod peer;

use ipckit::shm::cow::{self, MemoryRollup, UsageOf};
use peer::{first_difference, is_our_child, pattern, Scratch};
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};
use util::{init, peer_command, watchdog};

/// The state letter of a process (`R`, `S`, `D`, `T`, `Z`), if it exists.
fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

fn send_signal(pid: u32, sig: i32) {
    // SAFETY: kill takes two integers; `pid` is our unreaped snapshot child.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig}): {}", io::Error::last_os_error());
}

/// Serialises the tests of this binary. A fork copies the whole address space, other tests'
/// tables included: a test forking while another measures which of its pages are shared
/// would make those pages shared with a stranger (seen: 13 MiB of a 16 MiB table still
/// "shared" after the parent rewrote every page).
fn one_fork_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn snapshot_is_the_data_at_fork_time() {
    let _one = one_fork_at_a_time();
    init();
    watchdog(120, || {
        let s = Scratch::new();
        // Old content longer than the snapshot: the file must end up exactly its length.
        s.file.write_all_at(&[0xEE; 1 << 20], 36 << 20).unwrap();
        let n = 4 << 20; // 32 MiB of words
        let mut table: Vec<u64> = (0..n).map(pattern).collect();
        let mut child = cow::snapshot_to(&s.file, &table).unwrap();
        assert_eq!(child.bytes(), 8 * n as u64);
        // The parent overwrites every word while the child writes: the child must not see it.
        for w in table.iter_mut() {
            *w = !*w;
        }
        let report = child
            .wait_timeout(Duration::from_secs(60))
            .unwrap()
            .expect("the snapshot child finished");
        assert_eq!(report.bytes, 8 * n as u64);
        assert_eq!(report.pid, child.pid());
        assert!(report.elapsed >= report.fork_time);
        assert_eq!(
            child.try_wait().unwrap(),
            Some(report),
            "the same report again"
        );
        assert!(!is_our_child(child.pid()), "the child is reaped");

        let words = s.words();
        assert_eq!(words.len(), n, "the file has exactly the snapshot's length");
        assert_eq!(
            first_difference(&words),
            None,
            "the file is the table at fork time"
        );
        assert!(table.iter().enumerate().all(|(i, w)| *w == !pattern(i)));
    });
}

/// With the child stopped right after the fork, every page the parent writes is a copy: at
/// least one minor fault in the parent per page, and the child's originals become private
/// to it (its `Private_Dirty`). Then the child resumes and still writes the old content.
#[test]
fn parent_writes_are_copies_the_child_does_not_see() {
    let _one = one_fork_at_a_time();
    init();
    watchdog(120, || {
        let s = Scratch::new();
        let page = ipckit::process::page_size();
        let n = (16 << 20) / 8; // 16 MiB
        let mut table: Vec<u64> = (0..n).map(pattern).collect();
        let mut child = cow::snapshot_to(&s.file, &table).unwrap();
        let pid = child.pid();
        send_signal(pid, libc::SIGSTOP);
        let until = Instant::now() + Duration::from_secs(10);
        let mut state = state_of(pid);
        while state != Some('T') && state != Some('Z') && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
            state = state_of(pid);
        }
        if state != Some('T') {
            // The child finished its 16 MiB before the signal arrived: nothing to observe.
            eprintln!("note: the snapshot child ended before it could be stopped ({state:?})");
            // If the stop is only late (a long uninterruptible write), undo it before waiting.
            if state.is_some() && state != Some('Z') {
                send_signal(pid, libc::SIGCONT);
            }
            child.wait().unwrap();
            return;
        }
        let words_per_page = page / 8;
        let faults_before = cow::usage(UsageOf::Thread).unwrap().minor_faults;
        for w in table.iter_mut().step_by(words_per_page) {
            *w = !*w; // one write per page: each one a fault and a copy
        }
        let faults = cow::usage(UsageOf::Thread).unwrap().minor_faults - faults_before;
        let pages = n.div_ceil(words_per_page) as u64;
        assert!(
            faults >= pages,
            "{faults} minor faults for {pages} pages first written after the fork"
        );
        let rollup = MemoryRollup::of(pid).unwrap();
        let bytes = (8 * n) as u64;
        assert!(
            rollup.private_dirty >= bytes / 10 * 9,
            "the child's originals should be private to it now: {rollup}"
        );
        send_signal(pid, libc::SIGCONT);
        let report = child.wait().unwrap();
        assert_eq!(report.bytes, bytes);
        assert_eq!(first_difference(&s.words()), None);
    });
}

#[test]
fn empty_data_makes_an_empty_file() {
    let _one = one_fork_at_a_time();
    init();
    watchdog(60, || {
        let s = Scratch::new();
        s.file.write_all_at(b"old content", 0).unwrap();
        let mut child = cow::snapshot_to(&s.file, &[] as &[u64]).unwrap();
        assert_eq!(child.wait().unwrap().bytes, 0);
        assert_eq!(s.file.metadata().unwrap().len(), 0);
    });
}

#[test]
fn unusable_files_are_refused_before_forking() {
    let _one = one_fork_at_a_time();
    init();
    let s = Scratch::new();
    let data = [1u32; 1024];
    let cases = [
        (
            s.reopen(OpenOptions::new().read(true)),
            "not open for writing",
        ),
        (s.reopen(OpenOptions::new().append(true)), "O_APPEND"),
        (
            OpenOptions::new().write(true).open("/dev/null").unwrap(),
            "regular file",
        ),
    ];
    for (file, why) in cases {
        let e = cow::snapshot_to(&file, &data).expect_err(why);
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains(why), "{e}");
    }
}

#[test]
fn killed_child_is_reported() {
    let _one = one_fork_at_a_time();
    init();
    watchdog(60, || {
        let s = Scratch::new();
        let data = vec![7u64; 8 << 20]; // 64 MiB: far longer to write than the kill takes
        let mut child = cow::snapshot_to(&s.file, &data).unwrap();
        child.kill().unwrap();
        match child.wait() {
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("killed by SIGKILL"), "{msg}");
                assert!(msg.contains("SnapshotChild::kill"), "{msg}");
            }
            Ok(r) => eprintln!("note: the child finished before the kill: {r:?}"),
        }
        child.kill().unwrap(); // after the wait: nothing to do, no error
        assert!(!is_our_child(child.pid()));
    });
}

/// A child that fails while writing (the file size limit) is reported with the step, the
/// errno and how far it got, or with the signal that killed it; the parent never hangs.
/// Run in a separate process: it changes process-wide limits and a signal disposition.
#[test]
fn child_failure_is_an_error_not_a_hang() {
    let _one = one_fork_at_a_time();
    init();
    let out = watchdog(60, || peer_command("fsize", &[]).output().unwrap());
    assert!(
        out.status.success(),
        "fsize peer failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// No zombie, no descriptor and no file left after snapshots that were waited for, polled,
/// killed, dropped while running and refused. Run in a separate process, where no other
/// test thread opens descriptors or starts children meanwhile.
#[test]
fn nothing_left_behind() {
    let _one = one_fork_at_a_time();
    init();
    let out = watchdog(60, || peer_command("leftovers", &[]).output().unwrap());
    assert!(
        out.status.success(),
        "leftovers peer failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn usage_and_rollup_of_this_process() {
    let _one = one_fork_at_a_time();
    let me = MemoryRollup::of(std::process::id()).unwrap();
    assert!(me.rss > 0 && me.anonymous > 0, "{me}");
    let u = cow::usage(UsageOf::Process).unwrap();
    assert!(u.minor_faults > 0 && u.max_rss_bytes > 0, "{u:?}");
    cow::usage(UsageOf::Children).unwrap();
    assert!(ipckit::process::page_size() >= 4096);
    let e = MemoryRollup::of(u32::MAX).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
}
