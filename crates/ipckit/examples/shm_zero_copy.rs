//! A shared-memory ring pair used without copying: the sender writes each message straight
//! into the ring (`loan`, then `commit`), the receiver reads it where it lies (`recv_ref`).
//!
//! Process 1 creates the pair's segment (0600, exclusive) and starts Process 2, which
//! attaches; once attached, the name is unlinked, so nothing is left whoever dies. Process 1
//! fills three 16 KiB frames in place; Process 2 sums each frame's bytes in place and loans
//! 8 bytes of the other ring for the answer. When Process 1 drops its end, Process 2 gets
//! `PeerGone` and exits.
//!
//! Run it: `cargo run -p ipckit --example shm_zero_copy`

use ipckit::shm::{self, PairOptions, ShmListener};
use ipckit::{Deadline, RecvError};
use std::error::Error;
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

/// Every wait is bounded: a peer that dies or hangs becomes an error, never a hang.
const LIMIT: Duration = Duration::from_secs(10);
const FRAME: usize = 16 << 10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let run = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("child"), Some(name)) => child(name),
        _ => parent(),
    };
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shm_zero_copy (pid {}): {e}", std::process::id());
            ExitCode::FAILURE
        }
    }
}

fn options() -> PairOptions {
    // Two 64 KiB rings (one each way); waits for the peer at most LIMIT.
    PairOptions {
        capacity: Some(64 << 10),
        timeout: LIMIT,
        ..PairOptions::default()
    }
}

fn parent() -> Result<(), Box<dyn Error>> {
    // Process 1: create the segment, start process 2, wait for it to attach.
    let name = format!("/ipckit-example-shm-{}", std::process::id());
    let listener = ShmListener::create(&name, &options())?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["child", &name])
        .spawn()?;
    let mut ep = listener.accept()?; // the name is unlinked from here on
    println!(
        "[process 1, pid {}] process 2 attached to {name}",
        std::process::id()
    );
    for frame in 1..=3u8 {
        // Write the frame in the ring itself: no buffer of ours, no copy.
        let mut loan = ep.loan(FRAME, Deadline::after(LIMIT))?;
        loan.fill(frame);
        loan.commit();
        let answer = ep.recv_ref(Deadline::after(LIMIT))?;
        let sum = u64::from_le_bytes(answer[..].try_into()?);
        drop(answer); // releases its space in the ring to process 2
        println!("[process 1] frame {frame}: process 2 summed it in place to {sum}");
        if sum != FRAME as u64 * u64::from(frame) {
            return Err(format!("frame {frame}: wrong sum {sum}").into());
        }
    }
    drop(ep); // process 2 drains what is left, then sees PeerGone
    let status = wait_child(&mut child)?;
    if !status.success() {
        return Err(format!("process 2 failed ({status})").into());
    }
    Ok(())
}

fn child(name: &str) -> Result<(), Box<dyn Error>> {
    // Process 2: attach to the pair by name.
    let mut ep = shm::connect(name, &options())?;
    loop {
        let sum: u64 = match ep.recv_ref(Deadline::after(LIMIT)) {
            // The bytes are read where process 1 wrote them.
            Ok(frame) => frame.iter().map(|&b| u64::from(b)).sum(),
            Err(RecvError::PeerGone) => {
                println!("[process 2] process 1 closed the pair: exiting");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }; // the frame is released here, before we loan space for the answer
        let mut loan = ep.loan(8, Deadline::after(LIMIT))?;
        loan.copy_from_slice(&sum.to_le_bytes());
        loan.commit();
        println!(
            "[process 2, pid {}] summed a frame in place: {sum}",
            std::process::id()
        );
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
