//! The cow tests' peers (run by `tests/peers/bin.rs`), which change process-wide limits or
//! count every child and descriptor, and the scratch files and process lookups both sides use.

// Half of this module is the test's, half the peer binary's; each build uses its own half.
#![allow(dead_code)]

use crate::util::{self, init};
use ipckit::shm::cow;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::Duration;

/// A scratch file in the run's directory, named with the run's prefix (so a leftover shows
/// up in the leftover checks), removed on drop.
pub struct Scratch {
    pub path: PathBuf,
    pub file: File,
}

impl Scratch {
    pub fn new() -> Scratch {
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
    pub fn reopen(&self, opts: &OpenOptions) -> File {
        opts.open(&self.path).unwrap()
    }

    pub fn words(&self) -> Vec<u64> {
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
pub fn pattern(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x00C0_FFEE
}

/// Index of the first word of `words` that is not `pattern(i)`, if any.
pub fn first_difference(words: &[u64]) -> Option<usize> {
    words.iter().enumerate().position(|(i, w)| *w != pattern(i))
}

/// True if `pid` is a child of this process (running or a zombie).
pub fn is_our_child(pid: u32) -> bool {
    parent_of(pid) == Some(std::process::id())
}

pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the ")" that closes the command name: state, then the parent's pid.
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Every child of this process, from /proc.
pub fn our_children() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| is_our_child(pid))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The separate processes.

/// Runs peer `role`; exits 0 if it went as expected, 3 (with the reason) if not.
pub fn run(role: &str) {
    let result = match role {
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
    let before = ipckit::process::count_open_fds().map_err(err)?;
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
    let after = ipckit::process::count_open_fds().map_err(err)?;
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
