//! The `fifo` demo: a named FIFO in a private directory, its open rules (no reader: ENXIO or
//! a timeout; no writer: a timeout), two writer processes and the end-of-file that comes
//! only when the last one closes, reopening for a next writer, a symbolic link refused, and
//! the FIFO removed at the end. It measures MB/s through the FIFO.

use super::{interrupt, spawn_child};
use crate::cli::DemoArgs;
use ipckit::fifo::{FifoBuilder, FifoReader};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long the demo waits for its own writer processes.
const PATIENCE: Duration = Duration::from_secs(10);

/// The private directory (0700) holding the FIFO; removed on drop, even on an early return.
struct PrivateDir(PathBuf);

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stopped() -> anyhow::Result<()> {
    anyhow::ensure!(!interrupt::interrupted(), "interrupted");
    Ok(())
}

/// Reads until `want` has arrived, printing each piece as it comes.
fn read_until(r: &mut FifoReader, got: &mut String, want: &str) -> anyhow::Result<()> {
    let me = std::process::id();
    let mut buf = [0u8; 256];
    while !got.contains(want) {
        let n = r.read(&mut buf)?;
        anyhow::ensure!(n > 0, "end-of-file before \"{want}\"");
        let text = String::from_utf8_lossy(&buf[..n]);
        for line in text.lines() {
            say!("[reader   {me}] read \"{line}\"");
        }
        got.push_str(&text);
        stopped()?;
    }
    Ok(())
}

/// The reader: the parent.
pub(super) fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let me = std::process::id();
    let size: usize = if args.short { 64 << 20 } else { 1 << 30 };
    let dir = std::env::temp_dir().join(ipckit::registry::unique_name("demo-fifo"));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    }
    let dir = PrivateDir(dir);
    let path = dir.0.join("demo.fifo");
    let guard = FifoBuilder::new(&path).mode(0o600).create()?;
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(&path)?.permissions().mode() & 0o7777
    };
    say!(
        "[reader   {me}] mkfifo {} (mode {mode:04o}, in a directory only we can enter)",
        path.display()
    );
    let e = FifoBuilder::new(&path).mode(0o600).create().unwrap_err();
    say!("[reader   {me}] creating it again is refused, never reused: {e}");

    say!("[reader   {me}] open rules, with nobody at the other end:");
    let e = FifoBuilder::new(&path).try_open_writer().unwrap_err();
    say!("    write end, without waiting -> {:?}: {e}", e.kind());
    let e = FifoBuilder::new(&path)
        .timeout(Duration::from_millis(300))
        .open_writer()
        .unwrap_err();
    say!("    write end, waiting 0.3 s   -> {:?}: {e}", e.kind());
    let e = FifoBuilder::new(&path)
        .timeout(Duration::from_millis(300))
        .open_reader()
        .unwrap_err();
    say!("    read end, waiting 0.3 s    -> {:?}: {e}", e.kind());

    let link = dir.0.join("link-to-demo.fifo");
    std::os::unix::fs::symlink(&path, &link)?;
    let e = FifoBuilder::new(&link).open_reader().unwrap_err();
    say!("[reader   {me}] a symbolic link to our own FIFO is not followed: {e}");
    std::fs::remove_file(&link)?;
    stopped()?;

    // Two writers: B holds the FIFO open until we close its stdin; A writes and leaves.
    let mut reader = FifoBuilder::new(&path).open_reader()?;
    reader.set_read_timeout(PATIENCE);
    let p = path.to_str().expect("a UTF-8 temporary directory");
    let mut b = spawn_child("fifo", &format!("b|{p}"), |c| {
        c.stdin(Stdio::piped());
    })?;
    let mut got = String::new();
    // B first: were A to open, write and close before B opened, A's close would be the last
    // writer's and end the session there.
    read_until(&mut reader, &mut got, "B: first")?;
    let mut a = spawn_child("fifo", &format!("a|{p}"), |_| {})?;
    say!("[reader   {me}] opened the read end; started writers B, then A (two processes)");
    read_until(&mut reader, &mut got, "A: hello")?;
    a.wait(PATIENCE)?;
    say!("[reader   {me}] writer A has exited, B still has the FIFO open:");
    reader.set_read_timeout(Duration::from_millis(300));
    match reader.read(&mut [0u8; 64]) {
        Err(e) if e.kind() == ErrorKind::TimedOut => {
            say!("    a read waits (timed out after 0.3 s), it does not return end-of-file")
        }
        other => anyhow::bail!("expected a timeout while B is open, got {other:?}"),
    }
    reader.set_read_timeout(PATIENCE);
    drop(b.0.stdin.take()); // B's cue to write its last line and exit
    read_until(&mut reader, &mut got, "B: last")?;
    let n = reader.read(&mut [0u8; 64])?;
    anyhow::ensure!(n == 0, "expected end-of-file, read {n} bytes");
    b.wait(PATIENCE)?;
    say!("[reader   {me}] read returned 0: end-of-file, because the LAST writer closed");

    // The next writer, on the same FIFO: it may start writing before we wait for it.
    let mut c = spawn_child("fifo", &format!("c|{size}|{p}"), |_| {})?;
    reader.wait_writer_timeout(PATIENCE)?;
    let start = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n;
        stopped()?;
    }
    let took = start.elapsed();
    c.wait(PATIENCE)?;
    anyhow::ensure!(total == size, "read {total} of {size} bytes");
    say!(
        "[reader   {me}] wait_writer: writer C's session read in full ({total} bytes), then \
         end-of-file again"
    );

    drop(reader);
    drop(guard);
    let gone = !path.exists();
    drop(dir);
    anyhow::ensure!(gone, "the FIFO was not removed");
    say!("[reader   {me}] removed the FIFO and its directory: nothing left behind");
    say!(
        "result: {:.0} MB/s through the FIFO ({} MiB from writer C, {:.3} s)",
        total as f64 / 1e6 / took.as_secs_f64(),
        size >> 20,
        took.as_secs_f64()
    );
    Ok(())
}

/// A writer: `a|PATH`, `b|PATH` or `c|BYTES|PATH`.
pub(super) fn child(role: &str) -> anyhow::Result<()> {
    let me = std::process::id();
    let (who, rest) = role
        .split_once('|')
        .ok_or_else(|| anyhow::anyhow!("bad role '{role}'"))?;
    let (size, path) = match who {
        "c" => {
            let (n, p) = rest
                .split_once('|')
                .ok_or_else(|| anyhow::anyhow!("bad role '{role}'"))?;
            (n.parse::<usize>()?, p)
        }
        _ => (0, rest),
    };
    let mut w = FifoBuilder::new(Path::new(path))
        .timeout(PATIENCE)
        .open_writer()?;
    match who {
        "a" => {
            w.write_all(b"A: hello from writer A\n")?;
            say!("[writer A {me}] wrote one line, closing and exiting");
        }
        "b" => {
            w.write_all(b"B: first line from writer B\n")?;
            say!("[writer B {me}] wrote a line; keeping the FIFO open until told");
            std::io::stdout().flush()?;
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            w.write_all(b"B: last line from writer B\n")?;
            say!("[writer B {me}] wrote my last line, closing and exiting");
        }
        "c" => {
            say!(
                "[writer C {me}] opened the FIFO; writing {} MiB",
                size >> 20
            );
            let chunk = vec![0xc5u8; 1 << 20];
            let mut left = size;
            while left > 0 {
                let n = left.min(chunk.len());
                w.write_all(&chunk[..n])?;
                left -= n;
            }
        }
        _ => anyhow::bail!("bad role '{role}'"),
    }
    Ok(())
}
