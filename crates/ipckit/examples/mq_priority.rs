//! A POSIX message queue with priorities: whatever order messages are sent in, the receiver
//! gets the highest priority first (and, within one priority, the oldest first).
//!
//! Process 1 creates the queue (0600, exclusive, removed when it is dropped) and starts
//! Process 2, which opens it as a one-way sender and queues five messages in a mixed order
//! of priorities, then exits. Process 1 then reads them: highest priority first.
//!
//! Run it: `cargo run -p ipckit --example mq_priority`

use ipckit::mq::posix::PosixMqBuilder;
use ipckit::Transport;
use std::error::Error;
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

/// Every wait is bounded: a peer that dies or hangs becomes an error, never a hang.
const LIMIT: Duration = Duration::from_secs(10);

/// What Process 2 sends, in this order, with these priorities.
const JOBS: [(&str, u32); 5] = [
    ("tidy the logs", 1),
    ("disk almost full!", 9),
    ("send the weekly report", 3),
    ("rotate the keys", 3),
    ("ship the hot fix", 7),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let run = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("sender"), Some(name)) => sender(name),
        _ => receiver(),
    };
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mq_priority (pid {}): {e}", std::process::id());
            ExitCode::FAILURE
        }
    }
}

fn receiver() -> Result<(), Box<dyn Error>> {
    // Process 1: make the queue; room for 8 messages of up to 128 bytes.
    let name = format!("/ipckit-example-mq-{}", std::process::id());
    let mut q = PosixMqBuilder::new(&name)
        .max_msgs(8)
        .max_msg_size(128)
        .create()?;
    println!(
        "[process 1, pid {}] created queue {name}",
        std::process::id()
    );
    let mut child = Command::new(std::env::current_exe()?)
        .args(["sender", &name])
        .spawn()?;
    // Let every message arrive first, so that the priorities, not the timing, decide.
    let status = wait_child(&mut child)?;
    if !status.success() {
        return Err(format!("process 2 failed ({status})").into());
    }
    let mut buf = vec![0; q.max_msg_size()];
    let mut last = u32::MAX;
    for _ in JOBS {
        let (n, prio) = q.recv_priority_timeout(&mut buf, LIMIT)?;
        println!(
            "[process 1] priority {prio}: {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        if prio > last {
            return Err(format!("priority {prio} came after {last}: not highest first").into());
        }
        last = prio;
    }
    println!("[process 1] highest priority first; the queue is removed as `q` drops");
    Ok(())
}

fn sender(name: &str) -> Result<(), Box<dyn Error>> {
    // Process 2: open the existing queue to send only.
    let mut q = PosixMqBuilder::new(name).open_sender()?;
    for (text, prio) in JOBS {
        q.set_priority(prio);
        q.send_timeout(text.as_bytes(), LIMIT)?;
        println!(
            "[process 2, pid {}] sent {text:?} at priority {prio}",
            std::process::id()
        );
    }
    Ok(())
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
