//! `ipckit::sched` with real processes and the kernel's own view: a pinned thread and a
//! pinned process as `/proc/.../status` reports them, a real-time policy granted to root and
//! refused, with the reason, to an unprivileged user.

#[path = "../util/mod.rs"]
mod util;

use ipckit::sched::{self, SchedPolicy};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use util::KillOnDrop;

/// `Cpus_allowed_list` of a `/proc/.../status` file, as CPU numbers.
fn allowed_list(status_path: &str) -> Vec<usize> {
    let text = std::fs::read_to_string(status_path).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list");
    let mut out = Vec::new();
    for part in line.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap()),
            None => out.push(part.parse().unwrap()),
        }
    }
    out
}

#[test]
fn a_pinned_thread_is_what_the_kernel_reports() {
    let allowed = sched::affinity().unwrap();
    let last = *allowed.last().unwrap();
    std::thread::spawn(move || {
        sched::pin_thread(&[last]).unwrap();
        assert_eq!(allowed_list("/proc/thread-self/status"), vec![last]);
        assert_eq!(sched::affinity().unwrap(), vec![last]);
    })
    .join()
    .unwrap();
    // Only that thread was pinned.
    assert_eq!(allowed_list("/proc/thread-self/status"), allowed);
}

#[test]
fn a_pinned_process_is_what_the_kernel_reports_for_each_thread() {
    let allowed = sched::affinity().unwrap();
    let first = allowed[0];
    let child = KillOnDrop(
        Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    sched::pin_process(pid, &[first]).unwrap();
    assert_eq!(allowed_list(&format!("/proc/{pid}/status")), vec![first]);
    assert_eq!(sched::affinity_of(pid).unwrap(), vec![first]);
    drop(child);
    // Gone: a clear error, not a panic.
    let e = sched::pin_process(pid, &[first]).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
}

#[test]
fn bad_cpu_lists_are_refused() {
    assert_eq!(
        sched::pin_thread(&[]).unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
    assert_eq!(
        sched::pin_thread(&[1 << 20]).unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!(
            "\n*** SKIPPED: this test needs root (to run a peer as another uid, and to be \
             granted a real-time policy); run the tests as root to exercise it ***\n"
        );
    }
    root
}

/// The peer's one line, run as `uid` (with an `RLIMIT_RTPRIO` of 0) or as ourselves.
fn fifo_peer(as_nobody: bool) -> String {
    // The peer binary, copied where `nobody` may execute it (the checkout may sit under a
    // directory closed to others, like /root).
    let exe = util::init().join(ipckit::registry::unique_name("sched-exe"));
    std::fs::copy(util::peer_exe(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = util::peer_command_at(&exe, "fifo", &[]);
    cmd.stdout(Stdio::piped());
    if as_nobody {
        // SAFETY: between fork and exec, only async-signal-safe calls (setrlimit, setgroups,
        // setgid, setuid) on constants; nothing is allocated.
        unsafe {
            cmd.pre_exec(|| {
                let rl = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::setrlimit(libc::RLIMIT_RTPRIO, &rl) != 0
                    || libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(65534) != 0
                    || libc::setuid(65534) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = cmd.output().unwrap();
    let _ = std::fs::remove_file(&exe);
    assert!(out.status.success(), "peer failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn sched_fifo_is_refused_to_an_unprivileged_user_with_the_reason() {
    if !is_root() {
        return;
    }
    let line = fifo_peer(true);
    assert!(line.starts_with("err not-permitted "), "{line}");
    assert!(line.contains("RLIMIT_RTPRIO is 0"), "{line}");
    assert!(line.contains("CAP_SYS_NICE"), "{line}");
}

#[test]
fn sched_fifo_is_granted_to_root_while_throttling_is_on() {
    if !is_root() {
        return;
    }
    let line = fifo_peer(false);
    match sched::rt_throttling().unwrap() {
        Some(_) => assert_eq!(line.trim(), "ok SCHED_FIFO priority 1"),
        None => assert!(line.starts_with("err throttling-off "), "{line}"),
    }
    // This process was never changed.
    assert_eq!(sched::policy().unwrap(), SchedPolicy::Normal);
}

#[test]
fn locking_memory_and_the_numa_view() {
    sched::lock_memory().unwrap();
    let locked = std::fs::read_to_string("/proc/self/status").unwrap();
    let vmlck: u64 = locked
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    sched::unlock_memory().unwrap();
    assert!(vmlck > 0, "VmLck {vmlck} kB after mlockall");
    let nodes = sched::numa_nodes().unwrap();
    assert!(!nodes.is_empty());
    let cpu = sched::affinity().unwrap()[0];
    if let Some(n) = sched::cpu_node(cpu).unwrap() {
        assert!(nodes.contains(&n), "CPU {cpu} on node {n}, nodes {nodes:?}");
    }
    // A touched memfd segment: every page on an online node.
    let seg = ipckit::shm::SegmentBuilder::anonymous()
        .size(64 * 1024)
        .populate(true)
        .create()
        .unwrap();
    let at = sched::segment_nodes(&seg).unwrap();
    let pages: usize = at.values().sum();
    assert_eq!(pages, seg.len().div_ceil(4096));
    for node in at.keys().flatten() {
        assert!(nodes.contains(node), "page on node {node}, nodes {nodes:?}");
    }
}
