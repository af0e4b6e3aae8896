//! Helpers for driving the `ipckit` binary: a private registry and scratch directory per test,
//! and child processes that are killed by a watchdog instead of hanging the suite.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long any child may run before the watchdog kills it.
pub const WATCHDOG: Duration = Duration::from_secs(20);

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ipckit")
}

/// A scratch directory and registry of one test; removed on drop.
pub struct TestEnv {
    pub dir: PathBuf,
    pub registry: PathBuf,
    pub tag: String,
}

impl TestEnv {
    pub fn new(name: &str) -> TestEnv {
        let tag = format!("{}-{name}", std::process::id());
        let dir = std::env::temp_dir().join(format!("ipckit-cli-test-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TestEnv {
            registry: dir.join("registry"),
            dir,
            tag,
        }
    }

    /// A path in the scratch directory.
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    /// `ipckit ARGS` with this test's registry.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args).env("IPCKIT_REGISTRY", &self.registry);
        c
    }

    /// Runs `ipckit ARGS` to completion (stdin from `input`), under the watchdog.
    pub fn run(&self, args: &[&str], input: &[u8]) -> Out {
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
        let out = Bg::collect(child, Vec::new());
        writer.join().unwrap();
        out
    }

    /// Starts `ipckit ARGS` in the background; its stderr lines are collected as they come.
    pub fn spawn(&self, args: &[&str]) -> Bg {
        let mut c = self.cmd(args);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Bg::start(c.spawn().unwrap())
    }

    /// Record files left in the registry.
    pub fn records(&self) -> Vec<String> {
        match std::fs::read_dir(&self.registry) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".rec"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Asserts the test left no record and nothing in its directory but the registry.
    pub fn assert_clean(&self) {
        assert_eq!(
            self.records(),
            Vec::<String>::new(),
            "registry records left"
        );
        let left: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p != &self.registry)
            .collect();
        assert!(left.is_empty(), "files left behind: {left:?}");
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a finished command did.
#[derive(Debug)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert!(self.status.success(), "failed: {self:?}");
        assert!(!self.stderr.contains("panicked"), "panic: {self:?}");
        &self.stdout
    }

    /// Asserts a user error: status 2, one line on stderr containing `needle`, no panic.
    pub fn user_error(&self, needle: &str) {
        assert_eq!(self.code(), Some(2), "{self:?}");
        assert!(!self.stderr.contains("panicked"), "panic: {self:?}");
        assert_eq!(self.stderr.trim_end().lines().count(), 1, "{self:?}");
        assert!(
            self.stderr.contains(needle),
            "expected '{needle}': {self:?}"
        );
    }
}

/// A background `ipckit`, killed on drop if still running.
pub struct Bg {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Bg {
    pub fn start(mut child: Child) -> Bg {
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Bg {
            child: Some(child),
            lines: rx,
            seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits for the "receiving on" line that `recv` prints once its endpoint exists, and
    /// returns it.
    pub fn wait_ready(&mut self) -> String {
        let until = Instant::now() + WATCHDOG;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let ready = l.contains("receiving on");
                    self.seen.push(l.clone());
                    if ready {
                        return l;
                    }
                }
                Err(_) => panic!("recv never became ready; stderr: {:?}", self.seen),
            }
        }
    }

    /// Closes the read end of its stdout, as `| head` does once it has enough.
    pub fn close_stdout(&mut self) {
        drop(self.child.as_mut().unwrap().stdout.take());
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: i32) {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: kill takes plain integers; the pid is our own unreaped child.
        let r = unsafe { libc::kill(pid, sig) };
        assert_eq!(r, 0);
    }

    /// Waits for the process to end (killing it after the watchdog) and collects its output.
    pub fn finish(mut self) -> Out {
        let child = self.child.take().unwrap();
        let mut out = Self::collect(child, std::mem::take(&mut self.seen));
        let rest: Vec<String> = self.lines.try_iter().collect();
        if !rest.is_empty() {
            out.stderr.push_str(&rest.join("\n"));
            out.stderr.push('\n');
        }
        out
    }

    fn collect(mut child: Child, seen: Vec<String>) -> Out {
        let so = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut so) = so {
                let _ = so.read_to_end(&mut s);
            }
            s
        });
        let err_reader = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut s = Vec::new();
                let _ = e.read_to_end(&mut s);
                s
            })
        });
        let until = Instant::now() + WATCHDOG;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                panic!("watchdog: killed a child that ran over {WATCHDOG:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stdout = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
        let mut stderr = seen.join("\n");
        if !stderr.is_empty() {
            stderr.push('\n');
        }
        if let Some(r) = err_reader {
            stderr.push_str(&String::from_utf8_lossy(&r.join().unwrap()));
        }
        Out {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a plain program (sh, cat, mkfifo) under the watchdog.
pub fn run_tool(prog: &str, args: &[&str]) -> Out {
    let mut c = Command::new(prog);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Bg::collect(c.spawn().unwrap(), Vec::new())
}

/// Starts a plain program in the background, stdout piped.
pub fn spawn_tool(prog: &str, args: &[&str]) -> Bg {
    let mut c = Command::new(prog);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Bg::start(c.spawn().unwrap())
}

/// A loopback port that was free a moment ago.
pub fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// True if `p` exists (without following a symlink).
pub fn exists(p: &str) -> bool {
    Path::new(p).symlink_metadata().is_ok()
}

/// POSIX queue tests run one at a time: RLIMIT_MSGQUEUE (bytes of queues per user) is small.
/// The lock is per test binary; `cargo test` runs the binaries one after another.
static MQ_POSIX: Mutex<()> = Mutex::new(());

/// Holds the POSIX queue lock until the guard drops (a test that panicked holding it does
/// not poison it for the others).
pub fn mq_lock() -> MutexGuard<'static, ()> {
    MQ_POSIX.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `cmd` (its stdout and stderr piped) to completion and returns its output; kills it and
/// fails the test if it takes longer than `limit` (a hang, not a slow run).
pub fn output_within(cmd: &mut Command, limit: Duration, what: &str) -> std::process::Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{what} did not finish within {limit:?}");
        }
    }
}
