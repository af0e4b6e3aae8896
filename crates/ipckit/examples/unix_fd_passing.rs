//! Passing an open file descriptor to another process over a Unix socket (`SCM_RIGHTS`),
//! and learning who is at the other end (`SO_PEERCRED`, `SCM_CREDENTIALS`).
//!
//! Process 1 listens on a socket file in a private directory, starts Process 2, and checks
//! the connection's credentials. It passes Process 2 the write end of a pipe; Process 2
//! writes a line into a pipe it never opened, then says "finished", a message that carries
//! its credentials as the kernel checked them.
//!
//! Run it: `cargo run -p ipckit --example unix_fd_passing`

use ipckit::connect::ChannelBuilder;
use ipckit::pipe::PipeWriter;
use ipckit::unix::{self, ListenerBuilder};
use ipckit::Mechanism;
use std::error::Error;
use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

/// Every wait is bounded: a peer that dies or hangs becomes an error, never a hang.
const LIMIT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let run = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("child"), Some(path)) => child(path),
        _ => parent(),
    };
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unix_fd_passing (pid {}): {e}", std::process::id());
            ExitCode::FAILURE
        }
    }
}

fn parent() -> Result<(), Box<dyn Error>> {
    // Process 1: a listener (socket file 0600, removed on drop) in a private directory.
    let dir = PrivateDir::new()?;
    let path = dir.0.join("fd.sock").display().to_string();
    let listener = ListenerBuilder::new(path.as_str()).create()?;
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe).args(["child", &path]).spawn()?;
    let (sock, peer) = listener.accept_raw_timeout(LIMIT)?;
    let (me, pid, uid) = (std::process::id(), peer.pid, peer.uid);
    println!("[process 1, pid {me}] connection from pid {pid}, uid {uid} (SO_PEERCRED)");
    if pid != child.id() as i32 {
        return Err(format!("pid {pid} connected, not process 2 ({})", child.id()).into());
    }
    // From now on every message we receive says who sent it; the kernel fills that in.
    unix::set_pass_credentials(&sock, true)?;
    // A pipe: we keep the read end and pass the write end, then close our copy of it.
    let (mut r, w) = ipckit::pipe::raw_pipe()?;
    unix::send_fd(&sock, &w)?;
    drop(w);
    r.set_read_timeout(LIMIT);
    let mut text = String::new();
    r.read_to_string(&mut text)?; // end-of-file once process 2 closes the passed end
    println!("[process 1] read from the pipe: {:?}", text.trim_end());
    let mut buf = [0u8; 64];
    let got = unix::recv_with_fds_timeout(&sock, &mut buf, 0, LIMIT)?;
    let who = got.creds.ok_or("no credentials on the message")?;
    let msg = String::from_utf8_lossy(&buf[..got.len]);
    println!("[process 1] {msg:?} from pid {} (SCM_CREDENTIALS)", who.pid);
    let status = wait_child(&mut child)?;
    if !status.success() || text.is_empty() {
        return Err(format!("process 2 failed ({status})").into());
    }
    Ok(()) // the listener removes its socket file, then the directory goes
}

fn child(path: &str) -> Result<(), Box<dyn Error>> {
    // Process 2: connect, then receive a descriptor of a known kind (checked: a pipe).
    let ep = ChannelBuilder::new(Mechanism::Uds).open_stream(path)?;
    let sock = unix::endpoint_socket(&ep)?;
    let mut w: PipeWriter = unix::recv_fd(sock)?;
    let me = std::process::id();
    writeln!(w, "written by pid {me} into a pipe it was handed")?;
    drop(w); // the last write end: process 1 reads end-of-file
    println!("[process 2, pid {me}] wrote into the passed pipe");
    unix::send_with_fds(sock, b"finished", &[])?;
    Ok(())
}

/// A directory only we can use (0700), removed when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> std::io::Result<PrivateDir> {
        let name = format!("ipckit-example-uds-{}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(PrivateDir(path))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir(&self.0) {
            eprintln!("could not remove {}: {e}", self.0.display());
        }
    }
}

/// Waits at most `LIMIT` for the child to exit; one still running then is killed.
fn wait_child(child: &mut Child) -> Result<ExitStatus, Box<dyn Error>> {
    let until = Instant::now() + LIMIT;
    while Instant::now() < until {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill()?;
    child.wait()?;
    Err("process 2 did not exit in time; killed it".into())
}
