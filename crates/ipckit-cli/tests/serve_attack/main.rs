//! `ipckit serve` under attack (issue 14, rows 5, 9 and 13), against the real binary:
//! - a FIFO, a character device and a socket file inside `--root` are 403, twice in a row,
//!   and never opened (a FIFO opened for reading would block the worker for good): the
//!   server goes on serving files and `GET /` afterwards, with both workers alive;
//! - differing duplicate `Content-Length` values are 400 in either order, also after a
//!   pipelined request, and nothing after them is taken for a request;
//! - a master killed with `-9` takes its workers with it, the port is free again, `clean`
//!   removes its state file (and not a live master's), and a new `serve` on the port works.

#[path = "../util/mod.rs"]
mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use util::{free_port, Bg, TestEnv, WATCHDOG};

/// A running `ipckit serve` with its state in the test's directory; on drop the master and
/// every worker it listed are killed (a failed test leaves nothing running).
struct Server<'a> {
    env: &'a TestEnv,
    bg: Option<Bg>,
    port: u16,
    workers: usize,
    seen_workers: Vec<u32>,
}

impl<'a> Server<'a> {
    fn start(env: &'a TestEnv, port: u16, workers: usize, extra: &[&str]) -> Server<'a> {
        let addr = format!("127.0.0.1:{port}");
        let n = workers.to_string();
        let mut args = vec!["serve", "--listen", &addr, "--workers", &n];
        args.extend_from_slice(extra);
        let mut c = env.cmd(&args);
        c.env("XDG_RUNTIME_DIR", &env.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut s = Server {
            env,
            bg: Some(Bg::start(c.spawn().unwrap())),
            port,
            workers,
            seen_workers: Vec::new(),
        };
        s.wait_up();
        s
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn state_path(&self) -> PathBuf {
        state_path(self.env, self.port)
    }

    /// The worker pids in the state file.
    fn worker_pids(&self) -> Vec<u32> {
        let Ok(t) = std::fs::read_to_string(self.state_path()) else {
            return Vec::new();
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) else {
            return Vec::new();
        };
        v["workers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|w| w["pid"].as_u64().map(|p| p as u32))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until the state file lists every worker and `GET /` is answered.
    fn wait_up(&mut self) {
        let until = Instant::now() + WATCHDOG;
        loop {
            let w = self.worker_pids();
            if w.len() == self.workers && get(&self.addr(), "/").is_some_and(|r| r.0 == 200) {
                self.seen_workers = w;
                return;
            }
            assert!(Instant::now() < until, "serve never came up: {w:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn master_pid(&self) -> u32 {
        self.bg.as_ref().unwrap().pid()
    }

    fn status(&self) -> util::Out {
        let mut c = self
            .env
            .cmd(&["serve", "--status", "--listen", &self.addr()]);
        c.env("XDG_RUNTIME_DIR", &self.env.dir);
        out(util::output_within(&mut c, WATCHDOG, "serve --status"))
    }

    /// TERM, as an operator stops it; its output.
    fn stop(mut self) -> util::Out {
        let bg = self.bg.take().unwrap();
        bg.signal(libc::SIGTERM);
        bg.finish()
    }
}

impl Drop for Server<'_> {
    fn drop(&mut self) {
        let mut pids = self.seen_workers.clone();
        pids.extend(self.worker_pids());
        if let Some(bg) = self.bg.take() {
            kill(bg.pid(), libc::SIGTERM);
            let until = Instant::now() + Duration::from_secs(5);
            while alive(bg.pid()) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        for pid in pids {
            if is_worker(pid) {
                kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Removes the status board of a master killed by the test if the test fails before `clean`
/// ran (the registry that records it goes with the test's directory).
struct BoardGuard(u32);

impl Drop for BoardGuard {
    fn drop(&mut self) {
        if std::thread::panicking() && !alive(self.0) {
            let _ = std::fs::remove_file(format!("/dev/shm/ipckit-serve-{}", self.0));
        }
    }
}

fn state_path(env: &TestEnv, port: u16) -> PathBuf {
    env.dir.join(format!("ipckit-serve-{port}.json"))
}

fn out(o: std::process::Output) -> util::Out {
    util::Out {
        status: o.status,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn kill(pid: u32, sig: i32) {
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
}

/// True while `pid` is a running `ipckit serve --worker` (a zombie has no command line, and
/// a reused pid another one).
fn is_worker(pid: u32) -> bool {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    alive(pid) && String::from_utf8_lossy(&cmd).contains("--worker")
}

/// Sends `raw` on a new connection and reads until the server closes it (or 10 s pass: a
/// hang is reported as `None`). Returns every status code answered, in order, and the text.
fn exchange(addr: &str, raw: &[u8]) -> Option<(Vec<u16>, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(_) => return None,
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let codes = text
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect();
    Some((codes, text))
}

/// `GET path` on a connection of its own: (status, whole response), `None` on a hang.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let (codes, text) = exchange(addr, req.as_bytes())?;
    Some((*codes.first()?, text))
}

/// Row 5: `GET /pipe` twice (a FIFO with no writer), a character device and a socket file
/// are 403 without blocking anything; afterwards files and `/` are served by both workers,
/// the master still has both, and the FIFO was never opened for reading (a writer opening
/// it non-blocking finds no reader).
#[test]
fn non_regular_files_under_root_are_403_and_never_opened() {
    let env = TestEnv::new("attack-fifo");
    let root = env.dir.join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("f.txt"), b"a file\n").unwrap();
    let fifo = root.join("pipe");
    assert!(util::run_tool("mkfifo", &[fifo.to_str().unwrap()])
        .status
        .success());
    let _sock = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    let mut forbidden = vec!["/pipe", "/pipe", "/sock", "/%70ipe"];
    // A character device of our own making (root only): /dev/null's numbers.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let dev = root.join("null");
        let made = util::run_tool("mknod", &[dev.to_str().unwrap(), "c", "1", "3"]);
        assert!(made.status.success(), "mknod: {made:?}");
        forbidden.push("/null");
    } else {
        eprintln!("note: not root, so no device node inside the root (mknod needs root)");
    }
    let root_s = root.to_str().unwrap();
    let s = Server::start(&env, free_port(false), 2, &["--root", root_s]);
    let before = s.seen_workers.clone();
    for p in &forbidden {
        let t0 = Instant::now();
        let r = get(&s.addr(), p);
        let (code, text) = r.unwrap_or_else(|| panic!("GET {p}: no answer within 10 s (a hang)"));
        eprintln!("GET {p}: {code} in {:?}", t0.elapsed());
        assert_eq!(code, 403, "GET {p}: {text}");
    }
    // The FIFO has no reader: nobody opened it (a non-blocking open for writing says ENXIO).
    let w = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo);
    assert_eq!(
        w.err().and_then(|e| e.raw_os_error()),
        Some(libc::ENXIO),
        "someone holds the FIFO open for reading"
    );
    // Every worker still answers: several connections, so both take some.
    for _ in 0..8 {
        let (code, text) = get(&s.addr(), "/f.txt").expect("GET /f.txt hung");
        assert_eq!(code, 200, "{text}");
        assert!(text.ends_with("a file\n"), "{text}");
        assert_eq!(get(&s.addr(), "/").expect("GET / hung").0, 200);
    }
    assert_eq!(s.worker_pids(), before, "a worker was replaced");
    for &w in &before {
        assert!(is_worker(w), "worker {w} is gone");
    }
    let st = s.status();
    assert!(st.status.success(), "{st:?}");
    let o = s.stop();
    assert_eq!(o.code(), Some(0), "{o:?}");
}

/// Row 9: `Content-Length: 0` then `5` (and `5` then `0`, and `3` then `4`) is 400 and closes,
/// with nothing after it taken as a request, also when it follows a pipelined request that is
/// answered; agreeing duplicates are accepted.
#[test]
fn differing_content_lengths_are_400_in_either_order() {
    let env = TestEnv::new("attack-cl");
    let s = Server::start(&env, free_port(false), 1, &[]);
    let next = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    for (a, b) in [("0", "5"), ("5", "0"), ("3", "4")] {
        let bad = format!(
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: {a}\r\nContent-Length: {b}\r\n\r\n"
        );
        let body = "x".repeat(a.parse::<usize>().unwrap().max(b.parse().unwrap()));
        // Alone, then after a request that is answered (pipelined in the same write).
        for prefix in ["", next] {
            let raw = format!("{prefix}{bad}{body}{next}");
            let (codes, text) = exchange(&s.addr(), raw.as_bytes())
                .unwrap_or_else(|| panic!("{a}/{b}: the connection hung"));
            let want: Vec<u16> = if prefix.is_empty() {
                vec![400]
            } else {
                vec![200, 400]
            };
            assert_eq!(
                codes, want,
                "Content-Length {a} then {b}, prefix {prefix:?}: {text}"
            );
        }
    }
    let agreed = "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab\
                  GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let (codes, text) = exchange(&s.addr(), agreed.as_bytes()).expect("hung");
    assert_eq!(codes, vec![200, 200], "{text}");
    let o = s.stop();
    assert_eq!(o.code(), Some(0), "{o:?}");
}

/// Row 13: `kill -9` of the master: its workers die too (no one serves on the port), the
/// state file stays and `--status` says nothing runs; `ipckit clean` removes that file and
/// the status board, but not the state file of a master that runs; then a new `serve` on the
/// same port starts and serves.
#[test]
fn a_master_killed_with_9_takes_its_workers_and_clean_removes_its_state() {
    let env = TestEnv::new("attack-kill9");
    let port = free_port(false);
    let mut s = Server::start(&env, port, 2, &[]);
    let workers = s.seen_workers.clone();
    let master = s.master_pid();
    let other = Server::start(&env, free_port(false), 1, &[]);
    let _board = BoardGuard(master);
    kill(master, libc::SIGKILL);
    // Reaped without reading its output to the end: surviving workers would hold the pipes.
    drop(s.bg.take());
    let t0 = Instant::now();
    while workers.iter().any(|&w| is_worker(w)) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "workers {workers:?} outlived their master by 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("workers gone {:?} after the master's kill -9", t0.elapsed());
    // A worker seen gone from /proc may still be closing its descriptors on its way out (a CI
    // run saw the port accept 52 µs after): give the exit a bounded moment to finish.
    let t1 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_ok() && t1.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something still accepts on the port"
    );
    assert!(
        state_path(&env, port).exists(),
        "the state file should be left"
    );
    let st = {
        let mut c = env.cmd(&[
            "serve",
            "--status",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ]);
        c.env("XDG_RUNTIME_DIR", &env.dir);
        out(util::output_within(&mut c, WATCHDOG, "serve --status"))
    };
    assert_eq!(st.code(), Some(1), "{st:?}");

    let mut c = env.cmd(&["clean"]);
    c.env("XDG_RUNTIME_DIR", &env.dir);
    let cleaned = out(util::output_within(&mut c, WATCHDOG, "clean"));
    assert_eq!(cleaned.code(), Some(0), "{cleaned:?}");
    assert!(
        cleaned.stdout.contains(&format!(
            "removed serve state file {}",
            state_path(&env, port).display()
        )),
        "{cleaned:?}"
    );
    assert!(
        !state_path(&env, port).exists(),
        "clean left the state file"
    );
    assert!(
        !std::path::Path::new(&format!("/dev/shm/ipckit-serve-{master}")).exists(),
        "the status board is left"
    );
    assert!(
        other.state_path().exists(),
        "clean removed a live master's state"
    );
    assert!(cleaned.stdout.contains("runs"), "{cleaned:?}");

    let again = Server::start(&env, port, 1, &[]);
    assert_eq!(get(&again.addr(), "/").expect("hung").0, 200);
    let o = again.stop();
    assert_eq!(o.code(), Some(0), "{o:?}");
    let o = other.stop();
    assert_eq!(o.code(), Some(0), "{o:?}");
    env.assert_clean();
}
