//! A duplex channel of two pipes between a parent and the child it spawns.
//!
//! Process 1 runs this same program again as Process 2 (with the argument `child`) through
//! `ipckit::pipe::ChildChannel`: the child inherits two pipes, one each way, and no other
//! descriptor. Process 1 sends three jobs and reads each answer; then it closes its end,
//! which Process 2 reads as end-of-file (`RecvError::PeerGone`), its cue to exit.
//!
//! Run it: `cargo run -p ipckit --example pipe_child`

use ipckit::pipe::{ChildChannel, Duplex};
use ipckit::{RecvError, Transport};
use std::error::Error;
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

/// Every wait is bounded: a peer that dies or hangs becomes an error, never a hang.
const LIMIT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let run = match std::env::args().nth(1).as_deref() {
        Some("child") => child(),
        _ => parent(),
    };
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipe_child (pid {}): {e}", std::process::id());
            ExitCode::FAILURE
        }
    }
}

fn parent() -> Result<(), Box<dyn Error>> {
    // Process 1: run this program again as Process 2, with a duplex channel to it.
    let mut cmd = Command::new(std::env::current_exe()?);
    let (mut child, mut ch) = ChildChannel::new()
        .duplex(Duplex::Pipes)
        .spawn(cmd.arg("child"))?;
    println!(
        "[process 1, pid {}] spawned process 2 (pid {})",
        std::process::id(),
        child.id()
    );
    let mut buf = vec![0; ch.max_msg_size()];
    for job in ["resize cat.png", "compress log.txt", "hash disk.img"] {
        ch.send_timeout(job.as_bytes(), LIMIT)?;
        let n = ch.recv_timeout(&mut buf, LIMIT)?;
        let answer = String::from_utf8_lossy(&buf[..n]);
        println!("[process 1] sent {job:?}, process 2 answered {answer:?}");
    }
    // Closing our end says "no more jobs": the child reads end-of-file.
    drop(ch);
    let status = wait_child(&mut child)?;
    if !status.success() {
        return Err(format!("process 2 failed ({status})").into());
    }
    println!("[process 1] process 2 exited cleanly; nothing to clean up (pipes have no name)");
    Ok(())
}

fn child() -> Result<(), Box<dyn Error>> {
    // Process 2: take the channel the parent set up, and answer until it closes.
    let mut ch = ChildChannel::new().open_from_env()?;
    let mut buf = vec![0; ch.max_msg_size()];
    loop {
        let n = match ch.recv_timeout(&mut buf, LIMIT) {
            Ok(n) => n,
            Err(RecvError::PeerGone) => return Ok(()), // Process 1 closed its end: no more jobs
            Err(e) => return Err(e.into()),
        };
        let answer = format!("done: {}", String::from_utf8_lossy(&buf[..n]));
        println!("[process 2, pid {}] {answer}", std::process::id());
        ch.send_timeout(answer.as_bytes(), LIMIT)?;
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
