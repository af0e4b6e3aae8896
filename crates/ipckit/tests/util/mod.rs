//! Helpers shared by the integration tests and their peer binary (`tests/peers/bin.rs`): a
//! per-run environment, peer processes, a watchdog, and leftover checks.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, Once, OnceLock};
use std::time::Duration;

/// Environment variable naming the role a peer (`tests/peers/bin.rs`) plays.
pub const ROLE: &str = "IPCKIT_TEST_ROLE";

static INIT: Once = Once::new();

/// Per-run directory for paths and the registry; sets `IPCKIT_RUN_ID`, `IPCKIT_REGISTRY`
/// and `TMPDIR` before any ipckit call reads them.
pub fn init() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    INIT.call_once(|| {
        if std::env::var_os(ROLE).is_some() {
            return; // a peer inherits its parent's settings
        }
        let id = format!("t{}", std::process::id());
        let dir = std::env::temp_dir().join(format!("ipckit-test-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(dir.join("registry")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("registry"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        std::env::set_var("IPCKIT_RUN_ID", &id);
        std::env::set_var("IPCKIT_REGISTRY", dir.join("registry"));
        std::env::set_var("TMPDIR", &dir);
        let _ = DIR.set(dir);
        // At exit, remove the run's directory if (and only if) the tests left it empty, so
        // a leftover stays visible to CI's check.
        extern "C" fn tidy() {
            if let Some(d) = DIR.get() {
                let _ = std::fs::remove_dir(d.join("registry"));
                let _ = std::fs::remove_dir(d);
            }
        }
        // SAFETY: `tidy` is a plain extern "C" function with no arguments, as atexit wants; it
        // only removes directories.
        unsafe {
            libc::atexit(tidy);
        }
    });
    DIR.get_or_init(std::env::temp_dir)
}

/// Serialises tests that need a scarce resource: POSIX queues (RLIMIT_MSGQUEUE allows about
/// 800 KB per user) and spinning waits (two CPUs).
pub fn scarce() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Environment variable naming the test (the peer module of `tests/peers/bin.rs`) whose role
/// a peer plays.
pub const GROUP: &str = "IPCKIT_TEST_GROUP";

/// The peer binary, `tests/peers/bin.rs`: cargo builds it for the integration tests and names
/// it in `CARGO_BIN_EXE_*`. A peer that spawns a peer of its own is that binary already.
pub fn peer_exe() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_ipckit-test-peer") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe().unwrap(),
    }
}

/// Spawns the peer binary playing `role` of this test (its `peer.rs` module); `vars` are set
/// in its environment.
pub fn peer_command(role: &str, vars: &[(&str, String)]) -> Command {
    peer_command_at(&peer_exe(), role, vars)
}

/// `peer_command` running the peer binary at `exe` (a copy of it).
pub fn peer_command_at(exe: &std::path::Path, role: &str, vars: &[(&str, String)]) -> Command {
    // The test's own crate name, or inside a peer the group it was started for.
    let group = std::env::var(GROUP).unwrap_or_else(|_| env!("CARGO_CRATE_NAME").to_owned());
    let mut cmd = Command::new(exe);
    cmd.env(GROUP, group).env(ROLE, role).stdin(Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

/// Kills a child on drop, so a failing test leaves no process behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `f` on a thread; fails the test (instead of hanging) if it takes over `secs`.
pub fn watchdog<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => {
            let _ = h.join();
            v
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // The body panicked: re-raise its panic.
            match h.join() {
                Err(p) => std::panic::resume_unwind(p),
                Ok(()) => unreachable!(),
            }
        }
        Err(_) => panic!("watchdog: the test did not finish within {secs} s (a hang)"),
    }
}

/// Deterministic payload for message `i` of length `len`.
pub fn payload(i: u64, len: usize) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ len as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Small xorshift PRNG for sizes.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Files in the per-run directory whose names start with the run's object prefix.
pub fn leftover_files() -> Vec<String> {
    let dir = init();
    let prefix = ipckit::registry::prefix();
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Registry records naming an object of this run.
pub fn leftover_records() -> Vec<String> {
    let prefix = ipckit::registry::prefix();
    ipckit::registry::list()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.record.name.contains(&prefix) || e.record.pid == std::process::id())
        .map(|e| e.record.name)
        .collect()
}
