//! Several producer processes sending into one shared-memory MPSC queue.
//!
//! Process 1 creates the queue (0600, exclusive; fixed-size slots) and starts three producer
//! processes (Processes 2, 3 and 4), each of which opens the queue by name and sends five
//! messages. Process 1 receives all fifteen: different producers' messages may interleave,
//! but each one's arrive in the order it sent them. Once every producer is gone and all is
//! read, `recv` says `PeerGone`. The queue's name is removed when Process 1 drops it.
//!
//! Run it: `cargo run -p ipckit --example shm_mpsc`

use ipckit::shm::{MpscOptions, MpscReceiver, MpscSender};
use ipckit::{RecvError, Wait};
use std::error::Error;
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

/// Every wait is bounded: a peer that dies or hangs becomes an error, never a hang.
const LIMIT: Duration = Duration::from_secs(10);
const PRODUCERS: usize = 3;
const MESSAGES: usize = 5;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let run = match (args.get(1).map(String::as_str), args.get(2), args.get(3)) {
        (Some("producer"), Some(name), Some(k)) => producer(name, k),
        _ => consumer(),
    };
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shm_mpsc (pid {}): {e}", std::process::id());
            ExitCode::FAILURE
        }
    }
}

fn consumer() -> Result<(), Box<dyn Error>> {
    // Process 1: the one consumer. 64 slots of up to 64 bytes each.
    let me = std::process::id();
    let name = format!("/ipckit-example-mpsc-{me}");
    let opts = MpscOptions {
        slots: 64,
        slot_size: 64,
        ..MpscOptions::default()
    };
    let mut rx = MpscReceiver::create(&name, &opts)?;
    println!("[process 1, pid {me}] created queue {name}");
    let (exe, mut children) = (std::env::current_exe()?, Vec::new());
    for k in 0..PRODUCERS {
        let k = k.to_string();
        children.push(Command::new(&exe).args(["producer", &name, &k]).spawn()?);
    }
    let mut buf = vec![0; rx.max_msg_size()];
    let mut next = [0; PRODUCERS]; // the message number expected next from each producer
    let until = Instant::now() + LIMIT;
    while next.iter().sum::<usize>() < PRODUCERS * MESSAGES {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(&mut buf, left) {
            Ok(n) => {
                let text = std::str::from_utf8(&buf[..n])?;
                let (k, i) = text.split_once(' ').ok_or("malformed message")?;
                let (k, i): (usize, usize) = (k.parse()?, i.parse()?);
                println!("[process 1] from producer {k}: message {i}");
                if next.get(k) != Some(&i) {
                    return Err(format!("producer {k}'s message {i} came out of order").into());
                }
                next[k] += 1;
            }
            // The producers that opened so far are done, the others have not opened yet.
            Err(RecvError::PeerGone) if !left.is_zero() => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
    for mut child in children {
        let status = wait_child(&mut child)?;
        if !status.success() {
            return Err(format!("a producer failed ({status})").into());
        }
    }
    match rx.recv_timeout(&mut buf, LIMIT) {
        Err(RecvError::PeerGone) => println!("[process 1] all producers gone, all read: PeerGone"),
        other => return Err(format!("expected PeerGone, got {other:?}").into()),
    }
    Ok(()) // dropping `rx` removes the queue's name
}

fn producer(name: &str, k: &str) -> Result<(), Box<dyn Error>> {
    // Processes 2, 3, 4: open the queue by name, as a producer.
    let mut tx = MpscSender::open(name, Wait::Block)?;
    for i in 0..MESSAGES {
        tx.send_timeout(format!("{k} {i}").as_bytes(), LIMIT)?;
    }
    println!(
        "[producer {k}, pid {}] sent {MESSAGES} messages",
        std::process::id()
    );
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
    Err("a producer did not exit in time; killed it".into())
}
