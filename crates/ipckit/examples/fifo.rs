//! A named FIFO between two processes that are not parent and child by design: Process 2
//! finds the FIFO by its path, as any unrelated program could.
//!
//! Process 1 makes a private directory (0700) and the FIFO in it (`ipckit::fifo::FifoBuilder`,
//! 0600, exclusive), starts Process 2 with the path, and reads. Process 2 opens the write
//! end and writes three lines, each in one `PIPE_BUF`-atomic write, then closes it: the
//! reader sees end-of-file. Process 1 then removes the FIFO (its guard) and the directory.
//!
//! Run it: `cargo run -p ipckit --example fifo`

use ipckit::fifo::FifoBuilder;
use std::error::Error;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

/// Every wait is bounded: a peer that dies or hangs becomes an error, never a hang.
const LIMIT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let run = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("writer"), Some(path)) => writer(Path::new(path)),
        _ => reader(),
    };
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fifo (pid {}): {e}", std::process::id());
            ExitCode::FAILURE
        }
    }
}

fn reader() -> Result<(), Box<dyn Error>> {
    // Process 1: a FIFO in a directory nobody else can touch.
    let dir = PrivateDir::new()?;
    let path = dir.0.join("jobs.fifo");
    let fifo = FifoBuilder::new(&path).mode(0o600).create()?; // removed when `fifo` drops
    println!(
        "[process 1, pid {}] made FIFO {}",
        std::process::id(),
        path.display()
    );
    let mut child = Command::new(std::env::current_exe()?)
        .arg("writer")
        .arg(&path)
        .spawn()?;
    // Waits for the writer's first byte, at most LIMIT.
    let mut r = FifoBuilder::new(&path).timeout(LIMIT).open_reader()?;
    r.set_read_timeout(LIMIT);
    let mut text = String::new();
    r.read_to_string(&mut text)?; // returns when the last writer closes
    for line in text.lines() {
        println!("[process 1] read {line:?}");
    }
    let status = wait_child(&mut child)?;
    if !status.success() || text.lines().count() != 3 {
        return Err(
            format!("expected 3 lines from a clean writer, got {text:?} ({status})").into(),
        );
    }
    drop(fifo);
    println!("[process 1] removed the FIFO; the directory goes next");
    Ok(())
}

fn writer(path: &Path) -> Result<(), Box<dyn Error>> {
    // Process 2: open the write end by path (waiting at most LIMIT for a reader).
    let mut w = FifoBuilder::new(path).timeout(LIMIT).open_writer()?;
    for i in 1..=3 {
        let line = format!("line {i} from pid {}\n", std::process::id());
        // At most PIPE_BUF bytes in one write: never split, never mixed with another writer's.
        w.write_atomic(line.as_bytes())?;
        println!("[process 2, pid {}] wrote line {i}", std::process::id());
    }
    Ok(()) // dropping `w` closes the write end: the reader's end-of-file
}

/// A directory only we can use (0700), removed when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> std::io::Result<PrivateDir> {
        let name = format!("ipckit-example-fifo-{}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(PrivateDir(path))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        // remove_dir, not remove_dir_all: a leftover inside would be a bug to see.
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
