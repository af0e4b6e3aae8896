//! The worker, run for real: the test binds a listener and makes a status board (as the
//! master does), starts `worker::run` in a child process (this binary re-executed with a
//! role, the descriptors inherited), and talks HTTP to it over loopback.
//!
//! `harness = false`: the worker blocks its signals for the whole process, which needs a
//! `main` that has started no thread yet (libtest runs tests on threads).

use ipckit::signal::Signal;
use ipckit_server::config::{AcceptMode, Config};
use ipckit_server::status::StatusBoard;
use ipckit_server::worker::{self, WorkerSpec};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

const ROLE: &str = "IPCKIT_SERVER_TEST_ROLE";

fn main() {
    if std::env::var_os(ROLE).is_some() {
        // The worker: nothing else runs in this process.
        let spec = WorkerSpec::from_env().expect("worker spec");
        std::process::exit(worker::run(spec));
    }
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let tests: &[(&str, fn())] = &[
        ("keep_alive_and_counters", keep_alive_and_counters),
        ("pipelining_in_order", pipelining_in_order),
        ("static_files", static_files),
        ("traversal_refused", traversal_refused),
        ("garbage_is_400_and_closes", garbage_is_400_and_closes),
        ("oversized_header_is_431", oversized_header_is_431),
        ("slowloris_is_closed", slowloris_is_closed),
        ("idle_keepalive_times_out", idle_keepalive_times_out),
        ("survives_10000_malformed", survives_10000_malformed),
        ("quit_finishes_in_flight", quit_finishes_in_flight),
        ("term_exits_at_once", term_exits_at_once),
        ("fd_limit_refused_cleanly", fd_limit_refused_cleanly),
        ("http10_and_connection_close", http10_and_connection_close),
        ("usr1_reopens_the_error_log", usr1_reopens_the_error_log),
        ("named_status_board", named_status_board),
        ("reuseport_mode_serves", reuseport_mode_serves),
        (
            "endless_pipelining_starves_nobody",
            endless_pipelining_starves_nobody,
        ),
    ];
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, f) in tests {
        if filter.as_deref().is_some_and(|flt| !name.contains(flt)) {
            continue;
        }
        ran += 1;
        let f = *f;
        let r = std::panic::catch_unwind(|| watchdog(60, f));
        println!(
            "test {name} ... {}",
            if r.is_ok() { "ok" } else { "FAILED" }
        );
        if r.is_err() {
            failed.push(*name);
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        ran - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        println!("failed: {failed:?}");
        std::process::exit(101);
    }
}

/// Runs `f` on a thread; fails (instead of hanging) if it takes over `secs`.
fn watchdog(secs: u64, f: fn()) {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => {
            let _ = h.join();
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p)
            }
        }
        Err(_) => {
            kill_children();
            panic!("watchdog: the test did not finish within {secs} s (a hang)")
        }
    }
}

/// Pids of the workers this process started (killed if a test hangs).
static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn kill_children() {
    for pid in CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        let _ = ipckit::signal::send(pid, Signal::SIGKILL);
    }
}

/// A worker in a child process, with the listener and the board kept here (as the master
/// keeps them).
struct Server {
    child: Option<Child>,
    port: u16,
    board: StatusBoard,
    _listener: TcpListener,
    root: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
            CHILDREN
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|&p| p != c.id());
        }
        if let Some(r) = &self.root {
            let _ = std::fs::remove_dir_all(r.parent().expect("root has a parent"));
        }
    }
}

fn base_config() -> Config {
    Config {
        accept: AcceptMode::Exclusive,
        keepalive_timeout_ms: 10_000,
        header_timeout_ms: 5_000,
        graceful_timeout_ms: 10_000,
        ..Config::default()
    }
}

fn start(config: Config) -> Server {
    start_with(config, None, |_| {})
}

fn start_with(
    mut config: Config,
    root: Option<PathBuf>,
    tweak: impl FnOnce(&mut Command),
) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let board = StatusBoard::create(1).unwrap();
    config.root.clone_from(&root);
    config.listen = vec![listener.local_addr().unwrap()];
    let spec = WorkerSpec {
        listeners: vec![listener.as_raw_fd()],
        status_fd: board.as_fd().as_raw_fd(),
        slot: 0,
        generation: 1,
        config,
        master_pid: None,
    };
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(ROLE, "worker")
        .env(WorkerSpec::ENV, spec.to_json())
        .stdin(Stdio::null());
    tweak(&mut cmd);
    ipckit::pipe::inherit_only(&mut cmd, &[listener.as_fd(), board.as_fd()]);
    let child = cmd.spawn().unwrap();
    CHILDREN.lock().unwrap().push(child.id());
    let s = Server {
        child: Some(child),
        port,
        board,
        _listener: listener,
        root,
    };
    let t0 = Instant::now();
    while s.board.slot(0).pid.load(Relaxed) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "worker did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    s
}

impl Server {
    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn signal(&self, sig: Signal) {
        ipckit::signal::send(self.pid(), sig).unwrap();
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        let t0 = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = c.kill();
                let _ = c.wait();
                panic!("worker did not exit");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One parsed response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (`head`: a response to HEAD, no body). `None` at a clean EOF before
/// any byte of it.
fn read_resp(r: &mut BufReader<TcpStream>, head: bool) -> Option<Resp> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        assert!(r.read_line(&mut h).unwrap() > 0, "EOF in a response header");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':').expect("header line");
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = resp
        .header("content-length")
        .expect("content-length")
        .parse()
        .unwrap();
    if !head {
        resp.body = vec![0; len];
        r.read_exact(&mut resp.body).expect("a full body");
    }
    Some(resp)
}

fn get(r: &mut BufReader<TcpStream>, path: &str) -> Resp {
    write!(r.get_mut(), "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    read_resp(r, false).expect("a response")
}

/// True if the peer closed: EOF (or a reset) within the read timeout.
fn closed(r: &mut BufReader<TcpStream>) -> bool {
    let mut b = [0u8; 1];
    matches!(r.read(&mut b), Ok(0) | Err(_)) && r.buffer().is_empty()
}

fn keep_alive_and_counters() {
    let s = start(base_config());
    let mut r = BufReader::new(s.connect());
    for _ in 0..5 {
        let resp = get(&mut r, "/");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, b"Hello, World!");
        assert_eq!(resp.header("content-length"), Some("13"));
        assert_eq!(resp.header("content-type"), Some("text/plain"));
        assert!(resp.header("date").is_some_and(|d| d.ends_with("GMT")));
    }
    write!(r.get_mut(), "HEAD / HTTP/1.1\r\n\r\n").unwrap();
    let resp = read_resp(&mut r, true).unwrap();
    assert_eq!(
        (resp.status, resp.header("content-length")),
        (200, Some("13"))
    );
    let slot = s.board.slot(0);
    assert_eq!(slot.requests.load(Relaxed), 6);
    assert_eq!(slot.connections.load(Relaxed), 1);
    assert_eq!(slot.active.load(Relaxed), 1);
    assert_eq!(slot.errors.load(Relaxed), 0);
    assert_eq!(slot.pid.load(Relaxed), u64::from(s.pid()));
    assert_eq!(slot.generation.load(Relaxed), 1);
    drop(r);
    let t0 = Instant::now();
    while slot.active.load(Relaxed) != 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "active not back to 0"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let snap = s.board.snapshot();
    assert_eq!(snap[0].requests, 6);
}

fn make_root() -> PathBuf {
    let top = std::env::temp_dir().join(format!("ipckit-server-test-{}-{}", std::process::id(), {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        N.fetch_add(1, Relaxed)
    }));
    let root = top.join("root");
    std::fs::create_dir_all(root.join("dir")).unwrap();
    std::fs::write(top.join("secret.txt"), b"SECRET outside the root").unwrap();
    std::fs::write(root.join("small.txt"), b"small file\n").unwrap();
    std::fs::write(root.join("empty.txt"), b"").unwrap();
    std::fs::write(root.join("big.bin"), big()).unwrap();
    std::os::unix::fs::symlink(top.join("secret.txt"), root.join("abs_link")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", root.join("rel_link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("passwd_link")).unwrap();
    std::os::unix::fs::symlink("small.txt", root.join("inside_link")).unwrap();
    std::os::unix::fs::symlink("..", root.join("dir/up")).unwrap();
    root
}

fn big() -> Vec<u8> {
    (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn pipelining_in_order() {
    let root = make_root();
    let s = start_with(base_config(), Some(root), |_| {});
    let mut r = BufReader::new(s.connect());
    let paths = [
        "/",
        "/small.txt",
        "/nope",
        "/",
        "/empty.txt",
        "/",
        "/small.txt",
        "/x/y",
        "/",
        "/",
    ];
    let mut batch = String::new();
    for p in paths {
        batch += &format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    r.get_mut().write_all(batch.as_bytes()).unwrap();
    for p in paths {
        let resp = read_resp(&mut r, false).unwrap();
        match p {
            "/" => assert_eq!((resp.status, &resp.body[..]), (200, &b"Hello, World!"[..])),
            "/small.txt" => assert_eq!((resp.status, &resp.body[..]), (200, &b"small file\n"[..])),
            "/empty.txt" => assert_eq!((resp.status, resp.body.len()), (200, 0)),
            _ => assert_eq!(resp.status, 404, "{p}"),
        }
    }
    // Still open, still serving.
    assert_eq!(get(&mut r, "/").status, 200);
    assert_eq!(s.board.slot(0).requests.load(Relaxed), 11);
    assert_eq!(s.board.slot(0).status_4xx.load(Relaxed), 2);
}

fn static_files() {
    let root = make_root();
    let s = start_with(base_config(), Some(root), |_| {});
    let mut r = BufReader::new(s.connect());
    let resp = get(&mut r, "/big.bin");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("3000000"));
    assert_eq!(
        resp.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(resp.body == big(), "big.bin body differs");
    let resp = get(&mut r, "/small.txt?query=1");
    assert_eq!(
        (resp.status, resp.header("content-type")),
        (200, Some("text/plain"))
    );
    assert_eq!(resp.body, b"small file\n");
    assert_eq!(get(&mut r, "/inside_link").body, b"small file\n");
    assert_eq!(get(&mut r, "/missing.txt").status, 404);
    assert_eq!(get(&mut r, "/dir").status, 403);
    assert_eq!(get(&mut r, "/dir/../small.txt").status, 200);
    write!(r.get_mut(), "HEAD /big.bin HTTP/1.1\r\n\r\n").unwrap();
    let resp = read_resp(&mut r, true).unwrap();
    assert_eq!(
        (resp.status, resp.header("content-length")),
        (200, Some("3000000"))
    );
    // Two big files pipelined without reading: the worker must wait for EPOLLOUT.
    r.get_mut()
        .write_all(
            b"GET /big.bin HTTP/1.1\r\n\r\nGET /big.bin HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(read_resp(&mut r, false).unwrap().body == big());
    assert!(read_resp(&mut r, false).unwrap().body == big());
    assert_eq!(read_resp(&mut r, false).unwrap().body, b"Hello, World!");
    // Without a root, only / exists.
    let s2 = start(base_config());
    let mut r2 = BufReader::new(s2.connect());
    assert_eq!(get(&mut r2, "/small.txt").status, 404);
}

fn traversal_refused() {
    let root = make_root();
    let s = start_with(base_config(), Some(root), |_| {});
    let mut r = BufReader::new(s.connect());
    for p in [
        "/../secret.txt",
        "/../../../../etc/passwd",
        "/%2e%2e/secret.txt",
        "/%2E%2E/%2e%2e/etc/passwd",
        "/..%2fsecret.txt",
        "/dir/../../secret.txt",
        "/abs_link",
        "/rel_link",
        "/passwd_link",
        "/dir/up/../secret.txt",
        "//etc/passwd",
        "/%2fetc/passwd",
    ] {
        let resp = get(&mut r, p);
        assert!(
            resp.status == 403 || resp.status == 404,
            "{p}: status {}",
            resp.status
        );
        let body = String::from_utf8_lossy(&resp.body);
        assert!(
            !body.contains("SECRET") && !body.contains("root:"),
            "{p} leaked {body}"
        );
    }
    // A NUL byte is refused too.
    let resp = get(&mut r, "/small.txt%00.html");
    assert!(resp.status == 400 || resp.status == 404);
}

fn garbage_is_400_and_closes() {
    let s = start(base_config());
    let mut r = BufReader::new(s.connect());
    r.get_mut()
        .write_all(b"GARBAGE\x01 / HTTP/1.1\r\n\r\n")
        .unwrap();
    let resp = read_resp(&mut r, false).unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(closed(&mut r));
    // A request after a good one on the same connection, bad this time.
    let mut r = BufReader::new(s.connect());
    r.get_mut()
        .write_all(b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nbad header\r\n\r\n")
        .unwrap();
    assert_eq!(read_resp(&mut r, false).unwrap().status, 200);
    assert_eq!(read_resp(&mut r, false).unwrap().status, 400);
    assert!(closed(&mut r));
    let slot = s.board.slot(0);
    assert_eq!(slot.status_4xx.load(Relaxed), 2);
    assert_eq!(slot.errors.load(Relaxed), 2);
}

fn oversized_header_is_431() {
    let s = start(base_config());
    let mut r = BufReader::new(s.connect());
    let mut req = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 9 * 1024));
    req.extend_from_slice(b"\r\n\r\n");
    r.get_mut().write_all(&req).unwrap();
    let resp = read_resp(&mut r, false).unwrap();
    assert_eq!(resp.status, 431);
    assert!(closed(&mut r));
    // Just under the limit is fine.
    let mut r = BufReader::new(s.connect());
    let mut req = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 8000));
    req.extend_from_slice(b"\r\n\r\n");
    r.get_mut().write_all(&req).unwrap();
    assert_eq!(read_resp(&mut r, false).unwrap().status, 200);
}

fn slowloris_is_closed() {
    let s = start(Config {
        header_timeout_ms: 500,
        ..base_config()
    });
    let mut r = BufReader::new(s.connect());
    r.get_mut().write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let t0 = Instant::now();
    // One header byte every 100 ms: each is progress, none completes the header.
    let mut cut = false;
    while t0.elapsed() < Duration::from_secs(10) {
        if r.get_mut().write_all(b"X").is_err() {
            cut = true;
            break;
        }
        r.get_mut()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut b = [0u8; 64];
        match r.get_mut().read(&mut b) {
            Ok(0) => {
                cut = true;
                break;
            }
            Ok(n) => panic!("unexpected response {:?}", String::from_utf8_lossy(&b[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    assert!(cut, "a slow header held the connection for 10 s");
    eprintln!(
        "slowloris closed after {:?} (header timeout 500 ms)",
        t0.elapsed()
    );
    // A connection that sends nothing at all is closed too.
    let mut r = BufReader::new(s.connect());
    assert!(closed(&mut r));
    // And the worker still serves.
    let mut r = BufReader::new(s.connect());
    assert_eq!(get(&mut r, "/").status, 200);
}

fn idle_keepalive_times_out() {
    let s = start(Config {
        keepalive_timeout_ms: 300,
        ..base_config()
    });
    let mut r = BufReader::new(s.connect());
    assert_eq!(get(&mut r, "/").status, 200);
    let t0 = Instant::now();
    assert!(closed(&mut r));
    eprintln!(
        "idle keep-alive closed after {:?} (timeout 300 ms)",
        t0.elapsed()
    );
}

fn survives_10000_malformed() {
    let s = start(base_config());
    for i in 0..10_000 {
        let mut c = s.connect();
        c.write_all(b"\x00\x01 nonsense\r\n\r\n").unwrap();
        let mut b = Vec::new();
        let _ = c.read_to_end(&mut b);
        assert!(
            b.starts_with(b"HTTP/1.1 400"),
            "request {i}: {:?}",
            String::from_utf8_lossy(&b)
        );
    }
    let mut r = BufReader::new(s.connect());
    assert_eq!(get(&mut r, "/").status, 200);
    let slot = s.board.slot(0);
    assert_eq!(slot.status_4xx.load(Relaxed), 10_000);
    assert_eq!(slot.requests.load(Relaxed), 10_001);
    assert_eq!(slot.connections.load(Relaxed), 10_001);
}

fn quit_finishes_in_flight() {
    let root = make_root();
    let mut s = start_with(base_config(), Some(root), |_| {});
    // 20 connections, each with 5 pipelined requests (big files and hellos), unread.
    let mut conns: Vec<BufReader<TcpStream>> =
        (0..20).map(|_| BufReader::new(s.connect())).collect();
    let batch = b"GET /big.bin HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\nGET /big.bin HTTP/1.1\r\n\r\nGET /small.txt HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    for c in &mut conns {
        c.get_mut().write_all(batch).unwrap();
    }
    // An idle keep-alive connection: closed at once by QUIT.
    let mut idle = BufReader::new(s.connect());
    assert_eq!(get(&mut idle, "/").status, 200);
    let t0 = Instant::now();
    while s.board.slot(0).requests.load(Relaxed) < 5 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1));
    }
    s.signal(Signal::SIGQUIT);
    let mut full = 0u64;
    for (i, c) in conns.iter_mut().enumerate() {
        for k in 0..5 {
            let head = false;
            match read_resp(c, head) {
                Some(resp) => {
                    assert_eq!(resp.status, 200, "conn {i} response {k}");
                    full += 1;
                }
                None => break,
            }
        }
        assert!(closed(c), "conn {i} not closed after its responses");
    }
    assert!(closed(&mut idle), "idle connection not closed");
    let st = s.wait_exit();
    assert_eq!(st.code(), Some(0), "graceful exit status {st:?}");
    // Every request the worker read was answered in full.
    assert_eq!(full + 1, s.board.slot(0).requests.load(Relaxed));
    eprintln!("QUIT: {full} of 100 in-flight responses complete");
    // New connections still queue on the listener the parent keeps (no reset).
    let c = s.connect();
    drop(c);
}

fn term_exits_at_once() {
    let mut s = start(base_config());
    let mut r = BufReader::new(s.connect());
    assert_eq!(get(&mut r, "/").status, 200);
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(128 + 15));
}

fn http10_and_connection_close() {
    let s = start(base_config());
    let mut r = BufReader::new(s.connect());
    r.get_mut().write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let resp = read_resp(&mut r, false).unwrap();
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(closed(&mut r));
    let mut r = BufReader::new(s.connect());
    r.get_mut()
        .write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    assert_eq!(read_resp(&mut r, false).unwrap().status, 200);
    assert_eq!(get(&mut r, "/").status, 200);
    r.get_mut()
        .write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_resp(&mut r, false).unwrap().status, 200);
    assert!(closed(&mut r));
    // A body is skipped; unsupported methods get 405 on a kept connection.
    let mut r = BufReader::new(s.connect());
    r.get_mut()
        .write_all(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(read_resp(&mut r, false).unwrap().status, 405);
    assert_eq!(read_resp(&mut r, false).unwrap().body, b"Hello, World!");
}

fn fd_limit_refused_cleanly() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("SKIPPED fd_limit_refused_cleanly: prlimit (util-linux) not installed");
        return;
    }
    // The worker runs with at most 24 descriptors: the rest of 60 connections are refused.
    let s = start_with(base_config(), None, |cmd| {
        let exe = std::env::current_exe().unwrap();
        let mut p = Command::new("prlimit");
        p.arg("--nofile=24:24").arg(exe);
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                p.env(k, v);
            }
        }
        p.stdin(Stdio::null());
        *cmd = p;
    });
    let mut held = Vec::new();
    let mut served = 0;
    let mut refused = 0;
    for _ in 0..60 {
        let c = s.connect();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut r = BufReader::new(c);
        let _ = write!(r.get_mut(), "GET / HTTP/1.1\r\n\r\n");
        match read_resp(&mut r, false) {
            Some(resp) if resp.status == 200 => {
                served += 1;
                held.push(r);
            }
            _ => refused += 1,
        }
    }
    eprintln!("fd limit 24: {served} connections served, {refused} refused");
    assert!(served > 0 && refused > 0);
    drop(held);
    let t0 = Instant::now();
    while s.board.slot(0).active.load(Relaxed) != 0 {
        if t0.elapsed() > Duration::from_secs(5) {
            let pid = s.pid();
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count());
            let st = std::fs::read_to_string(format!("/proc/{pid}/stat"));
            let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan"));
            panic!(
                "connections not closed: fds {fds:?} stat {st:?} wchan {wchan:?} {:?}",
                s.board.snapshot()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut r = BufReader::new(s.connect());
    assert_eq!(get(&mut r, "/").status, 200, "the worker serves again");
    assert!(s.board.slot(0).errors.load(Relaxed) >= refused);
}

fn usr1_reopens_the_error_log() {
    let dir = make_root();
    let log = dir.parent().unwrap().join("error.log");
    let access = dir.parent().unwrap().join("access.log");
    let mut s = start_with(
        Config {
            error_log: Some(log.clone()),
            access_log: Some(access.clone()),
            graceful_timeout_ms: 200,
            ..base_config()
        },
        Some(dir),
        |_| {},
    );
    // The log is opened at start; rotate it away, then USR1.
    let t0 = Instant::now();
    while !log.exists() {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    s.signal(Signal::SIGUSR1);
    let t0 = Instant::now();
    while !log.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "USR1 did not reopen the log"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut r = BufReader::new(s.connect());
    assert_eq!(get(&mut r, "/").status, 200);
    r.get_mut()
        .write_all(b"GET /\x01 HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(read_resp(&mut r, false).unwrap().status, 400);
    drop(r);
    // A connection with half a header outlives the graceful deadline: that is logged.
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.signal(Signal::SIGQUIT);
    assert_eq!(s.wait_exit().code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("graceful shutdown"), "log: {text:?}");
    assert!(!std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("graceful"));
    let lines = std::fs::read_to_string(&access).unwrap();
    assert!(lines.contains("\"GET /\" 200\n"), "access log: {lines:?}");
    assert!(lines.contains("\"- -\" 400\n"), "access log: {lines:?}");
}

fn named_status_board() {
    let name = format!("/ipckit-serve-test-{}", std::process::id());
    let board = StatusBoard::create_named(&name, 3).unwrap();
    assert_eq!(board.name(), Some(name.as_str()));
    board.slot(2).requests.store(7, Relaxed);
    let seen = StatusBoard::open_named(&name).unwrap();
    assert_eq!(seen.slots(), 3);
    assert_eq!(seen.snapshot()[2].requests, 7);
    seen.slot(1).errors.fetch_add(1, Relaxed);
    assert_eq!(board.slot(1).errors.load(Relaxed), 1);
    drop(board);
    assert!(
        StatusBoard::open_named(&name).is_err(),
        "the name outlived its creator"
    );
    assert!(StatusBoard::create(0).is_err());
}

fn reuseport_mode_serves() {
    // The worker side of ReusePort is the same loop without EPOLLEXCLUSIVE (the master binds
    // one SO_REUSEPORT socket per worker).
    let s = start(Config {
        accept: AcceptMode::ReusePort,
        ..base_config()
    });
    let mut r = BufReader::new(s.connect());
    for _ in 0..3 {
        assert_eq!(get(&mut r, "/").body, b"Hello, World!");
    }
}

fn endless_pipelining_starves_nobody() {
    let s = start(base_config());
    const N: usize = 50_000;
    let a = s.connect();
    let mut writer = a.try_clone().unwrap();
    let w = std::thread::spawn(move || {
        let req = b"GET / HTTP/1.1\r\n\r\n".repeat(1000);
        for _ in 0..N / 1000 {
            writer.write_all(&req).unwrap();
        }
    });
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(a);
        for i in 0..N {
            let resp = read_resp(&mut r, false).unwrap_or_else(|| panic!("EOF at {i}"));
            assert_eq!(resp.body, b"Hello, World!");
        }
    });
    // Meanwhile another client is served.
    let mut b = BufReader::new(s.connect());
    for _ in 0..20 {
        assert_eq!(get(&mut b, "/").status, 200);
    }
    w.join().unwrap();
    reader.join().unwrap();
    // The worker adds a batch to its counter after writing the batch's answers, so the last
    // one may be counted a moment after the client read it.
    let want = N as u64 + 20;
    let until = Instant::now() + Duration::from_secs(10);
    while s.board.slot(0).requests.load(Relaxed) < want && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(s.board.slot(0).requests.load(Relaxed), want);
}
