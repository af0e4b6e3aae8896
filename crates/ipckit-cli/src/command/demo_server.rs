//! The `server` demo: `ipckit serve` with two workers on a free port. A few requests (keep-alive,
//! pipelining), a worker killed with -9 and replaced in its slot, a reload (HUP) that brings a
//! new generation up before the old one retires, a graceful stop (QUIT), and a measured
//! keep-alive loop.

use super::interrupt;
use crate::cli::DemoArgs;
use ipckit::signal::{self, Signal};
use ipckit_server::master::{self, State};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long any wait of the demo may take before it gives up.
const LIMIT: Duration = Duration::from_secs(10);

/// The master, stopped (TERM, then KILL) if the demo ends early.
struct ServerGuard(Option<Child>);

impl ServerGuard {
    fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = signal::send(c.id(), Signal::SIGTERM);
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn state(port: u16) -> Option<State> {
    master::running(Some(port))
        .ok()?
        .into_iter()
        .next()
        .map(|(_, s)| s)
}

/// Waits until generation `g` alone runs with `n` workers.
fn wait_generation(port: u16, g: u64, n: usize) -> anyhow::Result<State> {
    let until = Instant::now() + LIMIT;
    loop {
        anyhow::ensure!(!interrupt::interrupted(), "interrupted");
        if let Some(s) = state(port) {
            if s.workers.len() == n && s.workers.iter().all(|w| w.generation == g && !w.retiring) {
                return Ok(s);
            }
        }
        anyhow::ensure!(
            Instant::now() < until,
            "generation {g} did not come up in {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Reads one response; true if it is 200 `Hello, World!`.
fn response(r: &mut BufReader<TcpStream>) -> anyhow::Result<bool> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let ok = line.starts_with("HTTP/1.1 200");
    let mut len = 0;
    loop {
        line.clear();
        anyhow::ensure!(
            r.read_line(&mut line)? > 0,
            "connection closed mid-response"
        );
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse()?;
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(ok && body == b"Hello, World!")
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: demo\r\n\r\n";

fn connect(port: u16) -> anyhow::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(LIMIT))?;
    s.set_nodelay(true)?;
    Ok(BufReader::new(s))
}

fn pids(s: &State) -> String {
    let v: Vec<String> = s
        .workers
        .iter()
        .map(|w| format!("{} (slot {})", w.pid, w.slot))
        .collect();
    v.join(", ")
}

/// Runs the demo.
pub(super) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let me = std::process::id();
    let measure = if args.short {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(2)
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let exe = std::env::current_exe()?;
    say!(
        "[demo {me}] starting 'ipckit serve --listen 127.0.0.1:{port} --workers 2': the master binds \
         the socket (SO_REUSEADDR, non-blocking), creates the status board in shared memory, \
         and starts each worker by re-executing itself with only the listening socket and the \
         board inherited"
    );
    let mut child = Command::new(&exe)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--workers",
            "2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let err = child.stderr.take();
    let mut server = ServerGuard(Some(child));
    let (tx, log) = mpsc::channel::<String>();
    if let Some(err) = err {
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
    }
    let show_log = |want: &str| -> std::io::Result<Option<String>> {
        let until = Instant::now() + LIMIT;
        let mut found = None;
        while let Ok(l) = log.recv_timeout(until.saturating_duration_since(Instant::now())) {
            let text = l.split("]: ").nth(1).unwrap_or(&l).to_owned();
            say!("    master log: {text}");
            if l.contains(want) {
                found = Some(l);
                break;
            }
        }
        Ok(found)
    };
    anyhow::ensure!(
        show_log("listening on")?.is_some(),
        "the master did not start (its log is above)"
    );
    let s1 = wait_generation(port, 1, 2)?;
    say!(
        "[demo {me}] master {} runs generation 1: workers {}",
        server.pid(),
        pids(&s1)
    );

    let mut c = connect(port)?;
    for _ in 0..3 {
        c.get_mut().write_all(GET)?;
        anyhow::ensure!(response(&mut c)?, "a bad response");
    }
    say!("[demo {me}] keep-alive: 3 requests, one after the other, on one connection: 3 x 200 Hello, World!");
    c.get_mut().write_all(&GET.repeat(3))?;
    for _ in 0..3 {
        anyhow::ensure!(response(&mut c)?, "a bad pipelined response");
    }
    say!("[demo {me}] pipelining: 3 requests in one write, 3 responses back in order");

    let victim = s1.workers[0].clone();
    let t0 = Instant::now();
    signal::send(victim.pid, Signal::SIGKILL)?;
    say!(
        "[demo {me}] kill -9 worker {} (slot {})",
        victim.pid,
        victim.slot
    );
    let until = Instant::now() + LIMIT;
    let replacement = loop {
        anyhow::ensure!(!interrupt::interrupted(), "interrupted");
        if let Some(w) = state(port).and_then(|s| {
            s.workers
                .into_iter()
                .find(|w| w.slot == victim.slot && w.pid != victim.pid)
        }) {
            break w;
        }
        anyhow::ensure!(Instant::now() < until, "no replacement in {LIMIT:?}");
        std::thread::sleep(Duration::from_micros(200));
    };
    let seen = t0.elapsed();
    let serving = show_log("is serving")?;
    let serving_ms = serving.as_deref().and_then(|l| {
        l.split(", ")
            .nth(1)?
            .split(" ms")
            .next()?
            .parse::<f64>()
            .ok()
    });
    say!(
        "[demo {me}] the master saw the death on the worker's pidfd and started worker {} in the same \
         slot; the demo saw it in the state file {:.1} ms after the kill",
        replacement.pid,
        seen.as_secs_f64() * 1e3
    );
    c.get_mut().write_all(GET)?;
    match response(&mut c) {
        Ok(true) => {
            say!("[demo {me}] the keep-alive connection still works (the other worker held it)")
        }
        _ => say!(
            "[demo {me}] the keep-alive connection was on the killed worker: it is gone with it"
        ),
    }
    // An idle keep-alive connection is closed by its worker when it retires; close it first.
    drop(c);

    signal::send(server.pid(), Signal::SIGHUP)?;
    say!("[demo {me}] kill -HUP {}: reload", server.pid());
    show_log("retiring generation")?;
    let s2 = wait_generation(port, 2, 2)?;
    say!(
        "[demo {me}] generation 2 came up first, then generation 1 got QUIT: workers now {}",
        pids(&s2)
    );

    say!(
        "[demo {me}] timing a keep-alive loop (request, response) on a new connection for {:.1} s ...",
        measure.as_secs_f64()
    );
    let mut c = connect(port)?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < measure && !interrupt::interrupted() {
        c.get_mut().write_all(GET)?;
        anyhow::ensure!(response(&mut c)?, "a bad response");
        n += 1;
    }
    let took = start.elapsed();
    anyhow::ensure!(!interrupt::interrupted(), "interrupted");
    drop(c);

    let mpid = server.pid();
    signal::send(mpid, Signal::SIGQUIT)?;
    say!("[demo {me}] kill -QUIT {mpid}: graceful stop (workers stop accepting, finish, exit)");
    show_log("exiting")?;
    let mut child = server.0.take().expect("the master");
    let until = Instant::now() + LIMIT;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() > until {
            server.0 = Some(child);
            anyhow::bail!("the master did not exit within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    anyhow::ensure!(status.success(), "the master exited with {status}");
    let left_state = master::state_path(port).exists();
    let left_shm = std::path::Path::new(&format!("/dev/shm/ipckit-serve-{mpid}")).exists();
    anyhow::ensure!(
        !left_state && !left_shm,
        "the master left its state file or status board"
    );
    say!("[demo {me}] master exited 0; its state file and status board are gone");
    let rate = n as f64 / took.as_secs_f64();
    let replaced = serving_ms.map_or_else(
        || format!("{:.1} ms (seen by the demo)", seen.as_secs_f64() * 1e3),
        |ms| format!("{ms:.1} ms (death to serving, master's log)"),
    );
    say!(
        "result: {rate:.0} requests/s on one keep-alive connection ({n} in {:.2} s); a killed worker replaced in {replaced}",
        took.as_secs_f64()
    );
    Ok(())
}
