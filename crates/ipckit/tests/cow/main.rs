//! Fork copy-on-write snapshots: the file holds the data as it was at the fork whatever the
//! parent writes meanwhile; the parent's writes are copies the kernel makes (seen in its
//! minor faults and in the child's smaps); a failing or killed child is an error, never a
//! hang; nothing is left behind (no zombie, no descriptor, no file).

#[path = "../util/mod.rs"]
mod util;

use ipckit::shm::cow::{self, MemoryRollup, UsageOf};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use util::{init, peer_command, watchdog, ROLE};

/// A scratch file in the run's directory, named with the run's prefix (so a leftover shows
/// up in the leftover checks), removed on drop.
struct Scratch {
    path: PathBuf,
    file: File,
}

impl Scratch {
    fn new() -> Scratch {
        let path = init().join(format!("{}.snap", ipckit::registry::unique_name("cow")));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        Scratch { path, file }
    }

    /// The same file opened again with other options.
    fn reopen(&self, opts: &OpenOptions) -> File {
        opts.open(&self.path).unwrap()
    }

    fn words(&self) -> Vec<u64> {
        let len = self.file.metadata().unwrap().len() as usize;
        let mut bytes = vec![0u8; len];
        self.file.read_exact_at(&mut bytes, 0).unwrap();
        bytes
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The table's content before anyone writes to it.
fn pattern(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x00C0_FFEE
}

/// Index of the first word of `words` that is not `pattern(i)`, if any.
fn first_difference(words: &[u64]) -> Option<usize> {
    words.iter().enumerate().position(|(i, w)| *w != pattern(i))
}

/// True if `pid` is a child of this process (running or a zombie).
fn is_our_child(pid: u32) -> bool {
    parent_of(pid) == Some(std::process::id())
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the ")" that closes the command name: state, then the parent's pid.
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Every child of this process, from /proc.
fn our_children() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| is_our_child(pid))
        .collect()
}

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
        let page = cow::page_size();
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
    assert!(cow::page_size() >= 4096);
    let e = MemoryRollup::of(u32::MAX).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
}

// ---------------------------------------------------------------------------------------
// The separate processes.

/// Entry point for the re-executed test binary; does nothing in a normal test run.
#[test]
fn peer_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let result = match role.as_str() {
        "fsize" => fsize_role(),
        "leftovers" => leftovers_role(),
        other => Err(format!("unknown role {other}")),
    };
    if let Err(e) = result {
        eprintln!("{role}: {e}");
        std::process::exit(3);
    }
    std::process::exit(0);
}

fn set_limit(resource: libc::__rlimit_resource_t, soft: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a live rlimit, which getrlimit fills and setrlimit reads.
    unsafe {
        assert_eq!(libc::getrlimit(resource, &mut lim), 0);
        lim.rlim_cur = soft.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(resource, &lim), 0);
    }
}

fn fsize_role() -> Result<(), String> {
    const LIMIT: u64 = 64 << 10;
    // No core file from the SIGXFSZ below; both limits are inherited by the forked child.
    set_limit(libc::RLIMIT_CORE, 0);
    set_limit(libc::RLIMIT_FSIZE, LIMIT);
    let data = vec![3u8; 1 << 20];

    // Default disposition: the write past the limit kills the child with SIGXFSZ.
    let s = Scratch::new();
    let mut child = cow::snapshot_to(&s.file, &data).map_err(|e| e.to_string())?;
    let e = match child.wait_timeout(Duration::from_secs(30)) {
        Err(e) => e,
        Ok(r) => return Err(format!("expected SIGXFSZ, got {r:?}")),
    };
    let msg = e.to_string();
    if !msg.contains("killed by SIGXFSZ") || !msg.contains("RLIMIT_FSIZE") {
        return Err(format!("unexpected error: {msg}"));
    }
    // Every later wait says the same.
    if child.try_wait().map_err(|e| e.to_string()) != Err(msg.clone()) {
        return Err("a second try_wait said something else".into());
    }

    // SIGXFSZ ignored: the write fails with EFBIG, after the bytes below the limit.
    // SAFETY: setting a disposition to SIG_IGN involves no handler code; this process does
    // nothing else that depends on SIGXFSZ.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let s = Scratch::new();
    let mut child = cow::snapshot_to(&s.file, &data).map_err(|e| e.to_string())?;
    let e = match child.wait_timeout(Duration::from_secs(30)) {
        Err(e) => e,
        Ok(r) => return Err(format!("expected EFBIG, got {r:?}")),
    };
    let msg = e.to_string();
    let want = format!("pwrite failed after {LIMIT} of {} bytes", data.len());
    let os = format!("os error {}", libc::EFBIG);
    if !msg.contains(&want) || !msg.contains(&os) {
        return Err(format!("unexpected error: {msg}"));
    }
    if std::fs::metadata(&s.path).map_err(|e| e.to_string())?.len() != LIMIT {
        return Err("the file does not hold the bytes below the limit".into());
    }
    Ok(())
}

fn leftovers_role() -> Result<(), String> {
    let err = |e: io::Error| e.to_string();
    let data: Vec<u64> = (0..(2 << 20)).map(pattern).collect(); // 16 MiB
    let before = ipckit::count_open_fds().map_err(err)?;
    let mut pids = Vec::new();
    {
        // Waited for.
        let s = Scratch::new();
        let mut c = cow::snapshot_to(&s.file, &data).map_err(err)?;
        pids.push(c.pid());
        c.wait().map_err(err)?;
        // Polled until done, as an event loop would.
        let mut c = cow::snapshot_to(&s.file, &data).map_err(err)?;
        pids.push(c.pid());
        while c.try_wait().map_err(err)?.is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Killed, then waited for.
        let mut c = cow::snapshot_to(&s.file, &data).map_err(err)?;
        pids.push(c.pid());
        c.kill().map_err(err)?;
        let _ = c.wait();
        // Dropped while running, never waited for.
        let c = cow::snapshot_to(&s.file, &data).map_err(err)?;
        pids.push(c.pid());
        drop(c);
        // Timed out, then dropped.
        let mut c = cow::snapshot_to(&s.file, &data).map_err(err)?;
        pids.push(c.pid());
        let _ = c.wait_timeout(Duration::ZERO).map_err(err)?;
        drop(c);
        // Refused: no child at all.
        let ro = s.reopen(OpenOptions::new().read(true));
        if cow::snapshot_to(&ro, &data).is_ok() {
            return Err("a read-only file was accepted".into());
        }
    }
    let after = ipckit::count_open_fds().map_err(err)?;
    if before != after {
        return Err(format!("{before} descriptors open before, {after} after"));
    }
    let children = our_children();
    if !children.is_empty() {
        return Err(format!("children left (zombies?): {children:?}"));
    }
    if let Some(p) = pids.iter().find(|&&p| is_our_child(p)) {
        return Err(format!("snapshot child {p} is still our child"));
    }
    // Other tests of the run make files in the same directory; ours carry our pid.
    let mine = format!("-{}-", std::process::id());
    let left: Vec<String> = util::leftover_files()
        .into_iter()
        .filter(|n| n.contains(&mine))
        .collect();
    if !left.is_empty() {
        return Err(format!("files left: {left:?}"));
    }
    Ok(())
}
