//! Runs N workers on one listener (as the master would, minus signals and reloads), for a
//! quick load test: `cargo run --release -p ipckit-server --example worker_bench -- PORT N
//! [exclusive|reuseport]`, then e.g. `wrk -t1 -c64 -d5s http://127.0.0.1:PORT/`. Stops on
//! Enter (or EOF on stdin) and prints the status board.

use ipckit_server::config::{AcceptMode, Config};
use ipckit_server::status::StatusBoard;
use ipckit_server::worker::{self, WorkerSpec};
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::process::Command;

fn main() {
    if std::env::var_os(WorkerSpec::ENV).is_some() {
        let spec = WorkerSpec::from_env().expect("worker spec");
        std::process::exit(worker::run(spec));
    }
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args.get(1).map_or(8080, |p| p.parse().expect("port"));
    let n: usize = args.get(2).map_or(1, |p| p.parse().expect("workers"));
    let mode = match args.get(3).map(String::as_str) {
        Some("reuseport") => AcceptMode::ReusePort,
        _ => AcceptMode::Exclusive,
    };
    let board = StatusBoard::create(n).expect("board");
    // Exclusive: one socket for all. ReusePort: one socket per worker, bound with
    // SO_REUSEPORT (std cannot set it before bind, so this example only does Exclusive
    // for real and says so).
    if mode == AcceptMode::ReusePort {
        eprintln!("worker_bench: reuseport needs the master's sockets; using exclusive");
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let config = Config {
        workers: n,
        accept: AcceptMode::Exclusive,
        ..Config::default()
    };
    let exe = std::env::current_exe().expect("exe");
    let mut children = Vec::new();
    for slot in 0..n {
        let spec = WorkerSpec {
            listeners: vec![listener.as_raw_fd()],
            status_fd: board.as_fd().as_raw_fd(),
            slot,
            generation: 1,
            config: config.clone(),
            master_pid: None,
        };
        let mut cmd = Command::new(&exe);
        cmd.env(WorkerSpec::ENV, spec.to_json());
        let fds: [BorrowedFd<'_>; 2] = [listener.as_fd(), board.as_fd()];
        ipckit::pipe::inherit_only(&mut cmd, &fds);
        children.push(cmd.spawn().expect("spawn worker"));
    }
    eprintln!("worker_bench: {n} workers on 127.0.0.1:{port}; Enter stops");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    for c in &mut children {
        let _ = ipckit::signal::send(c.id(), ipckit::signal::Signal::SIGQUIT);
    }
    for c in &mut children {
        let _ = c.wait();
    }
    for s in board.snapshot() {
        println!("{}", serde_json::to_string(&s).expect("json"));
    }
}
