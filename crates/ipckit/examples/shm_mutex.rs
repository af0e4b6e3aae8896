//! A robust shared-memory mutex: a process killed while holding it does not leave it locked
//! for ever. The next locker gets `LockError::OwnerDied`, repairs the value, and goes on.
//!
//! Process 1 creates a mutex over two account balances, `[a, b]`, whose sum must stay 1000.
//! Process 2 locks it and starts a transfer of 100 from `a` to `b`; half way (`a` debited,
//! `b` not yet credited) Process 1 kills it with SIGKILL. Process 1 then locks: `OwnerDied`,
//! with the balances as the dead holder left them. It completes the transfer, calls
//! `make_consistent`, and the mutex works as before. The segment is unlinked on drop.
//!
//! Run it: `cargo run -p ipckit --example shm_mutex`

use ipckit::shm::{LockError, ShmMutex};
use std::error::Error;
use std::io::{self, BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

/// Every wait is bounded: a peer that dies or hangs becomes an error, never a hang.
const LIMIT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let run = match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("holder"), Some(name)) => holder(name),
        _ => parent(),
    };
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shm_mutex (pid {}): {e}", std::process::id());
            ExitCode::FAILURE
        }
    }
}

fn parent() -> Result<(), Box<dyn Error>> {
    // Process 1: the mutex and its value, in a segment only we can open (0600).
    let name = format!("/ipckit-example-mutex-{}", std::process::id());
    let m = ShmMutex::create(&name, [1000u64, 0])?;
    println!(
        "[process 1, pid {}] balances [a, b] = {:?}",
        std::process::id(),
        *m.lock().map_err(io::Error::from)?
    );
    let mut child = Command::new(std::env::current_exe()?)
        .args(["holder", &name])
        .stdout(Stdio::piped())
        .spawn()?;
    // Process 2 says when it is half way; if it dies first, we read end-of-file.
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no pipe")?).read_line(&mut line)?;
    print!("{line}");
    child.kill()?; // SIGKILL: no destructor runs, the lock is never released
    child.wait()?;
    if line.is_empty() {
        return Err("process 2 exited before it held the lock".into());
    }
    println!("[process 1] killed process 2 while it held the lock");
    let mut g = match m.lock_timeout(LIMIT) {
        Err(LockError::OwnerDied(g)) => g,
        Ok(_) => return Err("expected OwnerDied: the holder was killed".into()),
        Err(e) => return Err(io::Error::from(e).into()),
    };
    println!("[process 1] OwnerDied; the dead holder left {:?}", *g);
    // Repair: the sum must be 1000, so the credit to b is what is missing.
    g[1] = 1000 - g[0];
    g.make_consistent()?; // without this, the mutex would be unusable from now on
    drop(g);
    let g = m.lock_timeout(LIMIT).map_err(io::Error::from)?;
    println!(
        "[process 1] repaired: {:?}; the mutex locks normally again",
        *g
    );
    if g[0] + g[1] != 1000 {
        return Err(format!("balances {:?} do not add up", *g).into());
    }
    Ok(()) // `g` unlocks, then `m` unlinks the segment
}

fn holder(name: &str) -> Result<(), Box<dyn Error>> {
    // Process 2: open the mutex by name and start a transfer it will not finish.
    let m = ShmMutex::<[u64; 2]>::open(name)?;
    let mut g = m.lock_timeout(LIMIT).map_err(io::Error::from)?;
    g[0] -= 100;
    println!(
        "[process 2, pid {}] debited a: {:?}; about to credit b",
        std::process::id(),
        *g
    );
    // Wait to be killed, but not for ever if process 1 is gone.
    std::thread::sleep(LIMIT);
    Err("nobody killed me".into())
}
