//! `ipckit serve` end to end, against the real binary on loopback: reload (HUP) under load
//! refuses nothing, a worker killed with -9 is replaced and other connections carry on, QUIT
//! under load cuts no response, `--status`, TERM, and user errors; and the HTTP itself:
//! keep-alive, pipelining, static files, 404, traversal, 400, 431, 10,000 malformed requests.

#[path = "../util/mod.rs"]
mod util;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::{free_port, Bg, TestEnv, WATCHDOG};

/// A running `ipckit serve`; on drop its workers and master are killed.
struct Server<'a> {
    env: &'a TestEnv,
    bg: Option<Bg>,
    port: u16,
    workers: usize,
}

impl<'a> Server<'a> {
    fn start(env: &'a TestEnv, workers: usize, extra: &[&str]) -> Server<'a> {
        let port = free_port(false);
        let addr = format!("127.0.0.1:{port}");
        let n = workers.to_string();
        let mut args = vec!["serve", "--listen", &addr, "--workers", &n];
        args.extend_from_slice(extra);
        let mut c = env.cmd(&args);
        c.env("XDG_RUNTIME_DIR", &env.dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let s = Server {
            env,
            bg: Some(Bg::start(c.spawn().unwrap())),
            port,
            workers,
        };
        s.wait_generation(1);
        s
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn state_path(&self) -> PathBuf {
        self.env
            .dir
            .join(format!("ipckit-serve-{}.json", self.port))
    }

    fn state(&self) -> Option<serde_json::Value> {
        let t = std::fs::read_to_string(self.state_path()).ok()?;
        serde_json::from_str(&t).ok()
    }

    /// (slot, pid, generation, retiring) of each worker in the state file.
    fn workers(&self) -> Vec<(u64, u32, u64, bool)> {
        let Some(s) = self.state() else {
            return Vec::new();
        };
        s["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["slot"].as_u64().unwrap(),
                    w["pid"].as_u64().unwrap() as u32,
                    w["generation"].as_u64().unwrap(),
                    w["retiring"].as_bool().unwrap(),
                )
            })
            .collect()
    }

    /// Waits until generation `g` alone runs, every worker serving (its row in `--status`
    /// shows an age, so it published its pid).
    fn wait_generation(&self, g: u64) {
        let until = Instant::now() + WATCHDOG;
        loop {
            let w = self.workers();
            if w.len() == self.workers && w.iter().all(|x| x.2 == g && !x.3) {
                let st = self.status();
                if st.status.success() && !st.stdout.contains("starting") {
                    return;
                }
            }
            assert!(
                Instant::now() < until,
                "generation {g} never came up alone: {w:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn status(&self) -> util::Out {
        let mut c = self
            .env
            .cmd(&["serve", "--status", "--listen", &self.addr()]);
        c.env("XDG_RUNTIME_DIR", &self.env.dir);
        util::output_within(&mut c, WATCHDOG, "serve --status").into()
    }

    fn signal(&self, sig: i32) {
        self.bg.as_ref().unwrap().signal(sig);
    }

    fn master_pid(&self) -> u32 {
        self.bg.as_ref().unwrap().pid()
    }

    /// Waits for the master to exit; its output.
    fn finish(mut self) -> util::Out {
        self.bg.take().unwrap().finish()
    }
}

impl Drop for Server<'_> {
    fn drop(&mut self) {
        if let Some(bg) = &self.bg {
            // A failed test: stop the master as an operator would, so it removes its state
            // file and status board; then make sure nothing of it survives.
            let workers = self.workers();
            let master = bg.pid();
            kill(master, libc::SIGTERM);
            let until = Instant::now() + Duration::from_secs(5);
            while alive(master) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            for (_, pid, _, _) in workers {
                // Only if the pid is still a worker (not reused since).
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmd).contains("--worker") {
                    kill(pid, libc::SIGKILL);
                }
            }
            // Bg's drop kills the master if it is still there.
        }
    }
}

impl From<std::process::Output> for util::Out {
    fn from(o: std::process::Output) -> util::Out {
        util::Out {
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

fn kill(pid: u32, sig: i32) {
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

fn alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks the pid.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z"))
            .unwrap_or(false)
}

/// A keep-alive HTTP client connection.
struct Client {
    r: BufReader<TcpStream>,
}

/// How a request went.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// 200 with `Hello, World!`.
    Ok,
    /// The connection ended before any byte of the response.
    Closed,
    /// Part of a response, then the end: a cut response.
    Cut(String),
}

impl Client {
    fn connect(addr: &str) -> io::Result<Client> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        Ok(Client {
            r: BufReader::new(s),
        })
    }

    fn send(&mut self, close: bool) -> io::Result<()> {
        let req: &[u8] = if close {
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        } else {
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
        };
        self.r.get_mut().write_all(req)
    }

    /// Reads one response. An error before its first byte is `Closed`.
    fn reply(&mut self) -> io::Result<Reply> {
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(0) => return Ok(Reply::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(Reply::Closed),
            Err(e) => return Err(e),
        }
        let mut got = line.clone();
        if !line.starts_with("HTTP/1.1 200") {
            return Ok(Reply::Cut(got));
        }
        let mut len = None;
        loop {
            line.clear();
            if self.r.read_line(&mut line).unwrap_or(0) == 0 {
                return Ok(Reply::Cut(got));
            }
            got.push_str(&line);
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse::<usize>().ok();
                }
            }
        }
        let Some(len) = len else {
            return Ok(Reply::Cut(got));
        };
        let mut body = vec![0; len];
        if self.r.read_exact(&mut body).is_err() || body != b"Hello, World!" {
            got.push_str(&String::from_utf8_lossy(&body));
            return Ok(Reply::Cut(got));
        }
        Ok(Reply::Ok)
    }

    fn get(&mut self) -> io::Result<Reply> {
        self.send(false)?;
        self.reply()
    }
}

/// One request on a new connection.
fn get_once(addr: &str) -> io::Result<Reply> {
    let mut c = Client::connect(addr)?;
    c.send(true)?;
    c.reply()
}

fn shm_exists(master: u32) -> bool {
    std::path::Path::new(&format!("/dev/shm/ipckit-serve-{master}")).exists()
}

fn assert_nothing_left(env: &TestEnv, master: u32, workers: &[u32]) {
    assert!(!shm_exists(master), "status segment left behind");
    for &w in workers {
        assert!(!alive(w), "worker {w} left running");
    }
    env.assert_clean();
}

fn hup_under_load(accept: &str) {
    let env = TestEnv::new(&format!("serve-hup-{accept}"));
    let s = Server::start(&env, 2, &["--accept", accept]);
    let first: Vec<u32> = s.workers().iter().map(|w| w.1).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let client = {
        let (stop, ok, addr) = (stop.clone(), ok.clone(), s.addr());
        std::thread::spawn(move || -> Vec<String> {
            let mut bad = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match get_once(&addr) {
                    Ok(Reply::Ok) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => bad.push(format!("{other:?}")),
                }
            }
            bad
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    s.signal(libc::SIGHUP);
    s.wait_generation(2);
    let second: Vec<u32> = s.workers().iter().map(|w| w.1).collect();
    std::thread::sleep(Duration::from_millis(100));
    s.signal(libc::SIGHUP);
    s.wait_generation(3);
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let bad = client.join().unwrap();
    let third: Vec<u32> = s.workers().iter().map(|w| w.1).collect();
    eprintln!(
        "{accept}: {} requests on new connections across two reloads",
        ok.load(Ordering::Relaxed)
    );
    assert!(bad.is_empty(), "refused or broken during reload: {bad:?}");
    assert!(ok.load(Ordering::Relaxed) > 0);
    for w in &first {
        assert!(!second.contains(w) && !third.contains(w));
    }
    for w in &second {
        assert!(!third.contains(w));
    }
    let master = s.master_pid();
    s.signal(libc::SIGQUIT);
    let out = s.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_nothing_left(&env, master, &third);
}

#[test]
fn hup_under_load_refuses_nothing_exclusive() {
    hup_under_load("exclusive");
}

#[test]
fn hup_under_load_refuses_nothing_reuseport() {
    hup_under_load("reuseport");
}

/// Which worker holds the one open connection: the row of `--status` with `active` 1.
fn worker_with_active(s: &Server<'_>) -> Option<u32> {
    let out = s.status();
    out.stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 10 && f[0].parse::<u64>().is_ok())
                .then(|| (f[1].to_owned(), f[5].to_owned()))
        })
        .find(|(_, active)| active == "1")
        .and_then(|(pid, _)| pid.parse().ok())
}

#[test]
fn kill_9_worker_is_replaced_and_others_carry_on() {
    let env = TestEnv::new("serve-kill9");
    let s = Server::start(&env, 2, &[]);
    let mut c = Client::connect(&s.addr()).unwrap();
    assert_eq!(c.get().unwrap(), Reply::Ok);
    let until = Instant::now() + WATCHDOG;
    let holder = loop {
        if let Some(p) = worker_with_active(&s) {
            break p;
        }
        assert!(Instant::now() < until, "no worker shows the connection");
        std::thread::sleep(Duration::from_millis(10));
    };
    let before = s.workers();
    let (slot, victim, _, _) = *before.iter().find(|w| w.1 != holder).unwrap();
    let t0 = Instant::now();
    kill(victim, libc::SIGKILL);
    let replacement = loop {
        let w = s.workers();
        if let Some(r) = w.iter().find(|w| w.0 == slot && w.1 != victim) {
            break r.1;
        }
        assert!(
            Instant::now() < until,
            "no replacement in slot {slot}: {w:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    eprintln!(
        "worker {victim} killed; replacement {replacement} in slot {slot} seen after {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    // The other worker's keep-alive connection is unaffected, and new ones are served.
    for _ in 0..5 {
        assert_eq!(c.get().unwrap(), Reply::Ok);
    }
    s.wait_generation(1);
    for _ in 0..5 {
        assert_eq!(get_once(&s.addr()).unwrap(), Reply::Ok);
    }
    drop(c);
    let master = s.master_pid();
    let pids: Vec<u32> = s.workers().iter().map(|w| w.1).collect();
    s.signal(libc::SIGQUIT);
    let out = s.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("replaced by worker"), "{}", out.stderr);
    assert_nothing_left(&env, master, &pids);
}

#[test]
fn quit_under_load_cuts_no_response() {
    let env = TestEnv::new("serve-quit");
    let s = Server::start(&env, 2, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, addr) = (stop.clone(), s.addr());
            std::thread::spawn(move || -> (u64, Vec<String>) {
                let mut c = Client::connect(&addr).unwrap();
                let mut done = 0;
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return (done, Vec::new());
                    }
                    match c.send(false).and_then(|()| c.reply()) {
                        Ok(Reply::Ok) => done += 1,
                        Ok(Reply::Closed) => return (done, Vec::new()),
                        // EPIPE/ECONNRESET while sending: the server closed first.
                        Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                            return (done, Vec::new())
                        }
                        Ok(Reply::Cut(r)) => return (done, vec![r]),
                        Err(e) => return (done, vec![e.to_string()]),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let master = s.master_pid();
    let pids: Vec<u32> = s.workers().iter().map(|w| w.1).collect();
    s.signal(libc::SIGQUIT);
    let out = s.finish();
    stop.store(true, Ordering::Relaxed);
    let mut complete = 0;
    for c in clients {
        let (n, cut) = c.join().unwrap();
        assert!(cut.is_empty(), "cut responses: {cut:?}");
        complete += n;
    }
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let served: u64 = out
        .stderr
        .lines()
        .find_map(|l| {
            l.split("the board counts ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no request count in: {}", out.stderr));
    eprintln!("QUIT under load: {complete} complete responses, the server read {served} requests");
    assert!(complete > 0);
    assert_eq!(
        served, complete,
        "every request the server read got a complete response"
    );
    assert_nothing_left(&env, master, &pids);
}

#[test]
fn status_prints_workers_and_totals() {
    let env = TestEnv::new("serve-status");
    let none = {
        let mut c = env.cmd(&["serve", "--status"]);
        c.env("XDG_RUNTIME_DIR", &env.dir);
        util::Out::from(util::output_within(&mut c, WATCHDOG, "serve --status"))
    };
    assert_eq!(none.code(), Some(1));
    assert!(
        none.stderr.contains("no ipckit serve is running"),
        "{}",
        none.stderr
    );
    let s = Server::start(&env, 2, &[]);
    for _ in 0..3 {
        assert_eq!(get_once(&s.addr()).unwrap(), Reply::Ok);
    }
    let out = s.status();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    for (_, pid, _, _) in s.workers() {
        assert!(out.stdout.contains(&pid.to_string()), "{}", out.stdout);
    }
    let total = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("all"))
        .unwrap_or_else(|| panic!("no totals line: {}", out.stdout));
    let f: Vec<&str> = total.split_whitespace().collect();
    assert_eq!(f[1], "2", "{total}");
    assert_eq!(f[2], "3", "{total}");
    assert!(out.stdout.contains("requests") && out.stdout.contains("5xx"));
    let master = s.master_pid();
    let pids: Vec<u32> = s.workers().iter().map(|w| w.1).collect();
    s.signal(libc::SIGTERM);
    assert_eq!(s.finish().code(), Some(0));
    assert_nothing_left(&env, master, &pids);
}

#[test]
fn term_stops_fast_and_leaves_nothing() {
    let env = TestEnv::new("serve-term");
    let s = Server::start(&env, 2, &[]);
    // An idle keep-alive connection must not hold a fast shutdown.
    let mut c = Client::connect(&s.addr()).unwrap();
    assert_eq!(c.get().unwrap(), Reply::Ok);
    let master = s.master_pid();
    let pids: Vec<u32> = s.workers().iter().map(|w| w.1).collect();
    let t0 = Instant::now();
    s.signal(libc::SIGTERM);
    let out = s.finish();
    eprintln!("TERM: master gone after {:?}", t0.elapsed());
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_nothing_left(&env, master, &pids);
}

#[test]
fn bad_config_and_flags_are_user_errors() {
    let env = TestEnv::new("serve-bad");
    let conf = env.path("bad.conf");
    std::fs::write(&conf, "workers = 2\nbogus = 1\n").unwrap();
    for (args, needle) in [
        (
            vec!["serve", "--config", &conf],
            "bad.conf:2: unknown key 'bogus'",
        ),
        (vec!["serve", "--config", "/nonexistent/x.conf"], "x.conf"),
        (vec!["serve", "--workers", "0"], "workers: 0"),
        (vec!["serve", "--accept", "sideways"], "accept mode"),
        (vec!["serve", "--listen", "nowhere"], "nowhere"),
    ] {
        let out = env.run(&args, b"");
        out.user_error(needle);
    }
    std::fs::remove_file(&conf).unwrap();
    env.assert_clean();
}

#[test]
fn hup_with_a_broken_config_keeps_serving() {
    let env = TestEnv::new("serve-badreload");
    let conf = env.path("serve.conf");
    std::fs::write(&conf, "workers = 2\n").unwrap();
    let s = Server::start(&env, 2, &["--config", &conf]);
    std::fs::write(&conf, "workers = 2\nworkers = 3\n").unwrap();
    s.signal(libc::SIGHUP);
    // The failed reload is logged (checked below) and the old generation keeps serving.
    for _ in 0..10 {
        assert_eq!(get_once(&s.addr()).unwrap(), Reply::Ok);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(s.state().unwrap()["generation"], 1);
    assert_eq!(get_once(&s.addr()).unwrap(), Reply::Ok);
    let master = s.master_pid();
    let pids: Vec<u32> = s.workers().iter().map(|w| w.1).collect();
    s.signal(libc::SIGQUIT);
    let out = s.finish();
    assert_eq!(out.code(), Some(0));
    assert!(
        out.stderr
            .contains("reload failed, keeping the running config")
            && out.stderr.contains("serve.conf:2: 'workers' is set twice"),
        "{}",
        out.stderr
    );
    std::fs::remove_file(&conf).unwrap();
    assert_nothing_left(&env, master, &pids);
}

#[test]
fn usr1_reopens_the_error_log() {
    let env = TestEnv::new("serve-usr1");
    let conf = env.path("serve.conf");
    let log = env.path("error.log");
    std::fs::write(&conf, format!("error_log = {log}\n")).unwrap();
    let s = Server::start(&env, 1, &["--config", &conf]);
    // As logrotate does: move the file away, then ask for a reopen.
    let old = env.path("error.log.1");
    std::fs::rename(&log, &old).unwrap();
    s.signal(libc::SIGUSR1);
    let until = Instant::now() + WATCHDOG;
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("logs reopened")) {
        assert!(Instant::now() < until, "no new error log after USR1");
        std::thread::sleep(Duration::from_millis(10));
    }
    let first = std::fs::read_to_string(&old).unwrap();
    assert!(first.contains("listening on"), "{first}");
    let master = s.master_pid();
    let pids: Vec<u32> = s.workers().iter().map(|w| w.1).collect();
    s.signal(libc::SIGQUIT);
    assert_eq!(s.finish().code(), Some(0));
    for f in [&conf, &log, &old] {
        std::fs::remove_file(f).unwrap();
    }
    assert_nothing_left(&env, master, &pids);
}

#[test]
fn after_kill_9_of_the_master_clean_removes_the_board_and_a_new_master_takes_the_port() {
    let env = TestEnv::new("serve-master9");
    let s = Server::start(&env, 1, &[]);
    let master = s.master_pid();
    let workers: Vec<u32> = s.workers().iter().map(|w| w.1).collect();
    kill(master, libc::SIGKILL);
    for &w in &workers {
        kill(w, libc::SIGKILL);
    }
    let until = Instant::now() + WATCHDOG;
    while alive(master) || workers.iter().any(|&w| alive(w)) {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(shm_exists(master), "kill -9 cannot clean up");
    let out = env.run(&["clean"], b"");
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        !shm_exists(master),
        "ipckit clean left the board: {}",
        out.stdout
    );
    // --status does not take the stale state file for a running server.
    let st = s.status();
    assert_eq!(st.status.code(), Some(1), "{}", st.stdout);
    // A new master on the same port reclaims the stale state file.
    let port = s.port;
    let mut s = s;
    // Reap the dead master; nothing else of it is left to stop.
    drop(s.bg.take());
    drop(s);
    let addr = format!("127.0.0.1:{port}");
    let mut c = env.cmd(&["serve", "--listen", &addr, "--workers", "1"]);
    c.env("XDG_RUNTIME_DIR", &env.dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let s2 = Server {
        env: &env,
        bg: Some(Bg::start(c.spawn().unwrap())),
        port,
        workers: 1,
    };
    s2.wait_generation(1);
    assert_eq!(get_once(&s2.addr()).unwrap(), Reply::Ok);
    let master2 = s2.master_pid();
    let pids: Vec<u32> = s2.workers().iter().map(|w| w.1).collect();
    s2.signal(libc::SIGTERM);
    assert_eq!(s2.finish().code(), Some(0));
    assert_nothing_left(&env, master2, &pids);
}

#[test]
fn hup_applies_new_addresses_and_worker_counts() {
    let env = TestEnv::new("serve-readdr");
    let (a, b) = (free_port(false), free_port(false));
    let conf = env.path("serve.conf");
    let write = |listen: &str, workers: usize| {
        std::fs::write(
            &conf,
            format!("listen = {listen}\nworkers = {workers}\naccept = reuseport\n"),
        )
        .unwrap();
    };
    write(&format!("127.0.0.1:{a}"), 2);
    let mut c = env.cmd(&["serve", "--config", &conf]);
    c.env("XDG_RUNTIME_DIR", &env.dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // The state file is named after the first port at start, whatever reloads do.
    let mut s = Server {
        env: &env,
        bg: Some(Bg::start(c.spawn().unwrap())),
        port: a,
        workers: 2,
    };
    s.wait_generation(1);
    let (at_a, at_b) = (format!("127.0.0.1:{a}"), format!("127.0.0.1:{b}"));
    assert_eq!(get_once(&at_a).unwrap(), Reply::Ok);
    assert!(get_once(&at_b).is_err(), "nothing listens on {b} yet");

    write(&format!("127.0.0.1:{a}, 127.0.0.1:{b}"), 3);
    s.workers = 3;
    s.signal(libc::SIGHUP);
    s.wait_generation(2);
    for _ in 0..20 {
        assert_eq!(get_once(&at_a).unwrap(), Reply::Ok);
        assert_eq!(get_once(&at_b).unwrap(), Reply::Ok);
    }

    write(&format!("127.0.0.1:{b}"), 1);
    s.workers = 1;
    s.signal(libc::SIGHUP);
    s.wait_generation(3);
    assert_eq!(get_once(&at_b).unwrap(), Reply::Ok);
    // The old generation is gone, and with it the last copy of the socket on `a`.
    let until = Instant::now() + WATCHDOG;
    while get_once(&at_a).is_ok() {
        assert!(Instant::now() < until, "{a} is still served");
        std::thread::sleep(Duration::from_millis(10));
    }
    let master = s.master_pid();
    let pids: Vec<u32> = s.workers().iter().map(|w| w.1).collect();
    s.signal(libc::SIGQUIT);
    let out = s.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    std::fs::remove_file(&conf).unwrap();
    assert_nothing_left(&env, master, &pids);
}

/// Sends `req` on a fresh connection and reads until the server closes it or `want` bytes of
/// answer have come (whichever first); returns what came.
fn exchange(addr: &str, req: &[u8], want: usize) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while got.len() < want {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "reading the answer to {:?}: {e}",
                String::from_utf8_lossy(req)
            ),
        }
    }
    got
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// The HTTP the issue lists, through the real binary: keep-alive and pipelining, static files
/// with their Content-Length, 404, traversal refused (`..`, percent-encoded, a symlink out of
/// the root), 400 and close for garbage, 431 for an oversized header, and a server that still
/// answers after 10,000 sequential malformed requests.
#[test]
fn http_through_the_real_binary() {
    let env = TestEnv::new("serve-http");
    let root = env.dir.join("www");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/page.txt"), vec![b'p'; 100_000]).unwrap();
    std::fs::write(env.dir.join("secret.txt"), b"SECRET").unwrap();
    std::os::unix::fs::symlink(env.dir.join("secret.txt"), root.join("out")).unwrap();
    let root_s = root.to_str().unwrap().to_owned();
    let s = Server::start(&env, 1, &["--root", &root_s]);
    let addr = s.addr();

    // Keep-alive: several requests, one connection.
    let mut c = Client::connect(&addr).unwrap();
    for _ in 0..5 {
        assert_eq!(c.get().unwrap(), Reply::Ok);
    }
    // Pipelining: ten requests in one write, ten answers in order.
    let ten = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(10);
    let got = exchange(&addr, &ten, 10 * 13);
    let text = String::from_utf8_lossy(&got);
    assert_eq!(count(&got, b"HTTP/1.1 200"), 10, "{text}");
    assert_eq!(count(&got, b"Hello, World!"), 10, "{text}");
    // A static file, its length, and 404.
    let got = exchange(
        &addr,
        b"GET /sub/page.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        usize::MAX,
    );
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text:.200}");
    assert!(text.contains("Content-Length: 100000"), "{text:.300}");
    let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&got[at..], vec![b'p'; 100_000].as_slice());
    let got = exchange(
        &addr,
        b"GET /nothing-here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        usize::MAX,
    );
    assert!(
        got.starts_with(b"HTTP/1.1 404"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // Traversal, every way: never the secret.
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/sub/../../secret.txt",
        "/out",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let got = exchange(&addr, req.as_bytes(), usize::MAX);
        let text = String::from_utf8_lossy(&got);
        assert!(!text.contains("SECRET"), "{path}: {text}");
        assert!(
            text.starts_with("HTTP/1.1 4"),
            "{path} must be refused: {text}"
        );
    }
    // Garbage: 400 and the connection closed; an oversized header: 431.
    let got = exchange(&addr, b"\x01\x02 nonsense\r\n\r\n", usize::MAX);
    assert!(
        got.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let mut big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(vec![b'a'; 9 * 1024]);
    big.extend_from_slice(b"\r\n\r\n");
    let got = exchange(&addr, &big, usize::MAX);
    assert!(
        got.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // 10,000 sequential malformed requests, then a good one.
    for i in 0..10_000 {
        let got = exchange(&addr, b"BAD\r\n\r\n", usize::MAX);
        assert!(got.starts_with(b"HTTP/1.1 400"), "request {i}: {:?}", got);
    }
    assert_eq!(get_once(&addr).unwrap(), Reply::Ok);
    assert!(alive(s.master_pid()));
    drop(c);
    let master = s.master_pid();
    let pids: Vec<u32> = s.workers().iter().map(|w| w.1).collect();
    s.signal(libc::SIGQUIT);
    let out = s.finish();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_file(env.dir.join("secret.txt")).unwrap();
    assert_nothing_left(&env, master, &pids);
}
