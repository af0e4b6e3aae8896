//! The shared mutex tests' peers (run by `tests/peers/bin.rs`) and the state they share.

// Half of this module is the test's, half the peer binary's; each build uses its own half.
#![allow(dead_code)]

use ipckit::shm::{LockError, MutexBuilder, Plain, ShmMutex};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

/// What the tests keep under the lock.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    pub value: u64,
    /// Set by a holder in the middle of an update: what a successor must repair.
    pub dirty: u64,
    /// Set by a waiter just before it waits.
    pub waiting: u64,
    /// 1: the waiter may go on; 2: it did.
    pub go: u64,
}

// SAFETY: repr(C), integers only (every bit pattern is a State), no pointers.
unsafe impl Plain for State {}

/// Increments each process makes in `mutual_exclusion`.
pub const ROUNDS: u64 = 100_000;

/// Runs peer `role` on the mutex named `$NAME` (or inherited as `$FD`); exits 0 if it
/// found what it expected.
pub fn run(role: &str) {
    let open = || {
        ShmMutex::<State>::builder(&std::env::var("NAME").unwrap())
            .open()
            .unwrap()
    };
    let ok = match role {
        // Locks, starts an update, says so, and waits to be killed with the lock held.
        "holder" => {
            let m = open();
            let mut g = m.lock().unwrap();
            g.value = 42;
            g.dirty = 1;
            say("locked");
            std::thread::sleep(Duration::from_secs(60));
            false
        }
        // Waits on the condition variable until the parent says go, then answers.
        "waiter" => {
            let m = open();
            let cv = m.condvar();
            let mut g = m.lock().unwrap();
            g.waiting = 1;
            let mut g = cv.wait_while(g, |s| s.go == 0).unwrap();
            g.value += 1;
            g.go = 2;
            drop(g);
            cv.notify_all();
            true
        }
        // Wakes the parent's wait, then dies holding the lock it has to reacquire.
        "notify_and_die" => {
            let m = open();
            let mut g = m.lock().unwrap();
            g.go = 1;
            g.dirty = 1;
            m.condvar().notify_all();
            say("locked");
            std::thread::sleep(Duration::from_secs(60));
            false
        }
        // A process that finds the mutex unrecoverable too.
        "expect_not_recoverable" => {
            let m = open();
            matches!(m.lock(), Err(LockError::NotRecoverable))
                && matches!(m.try_lock(), Err(LockError::NotRecoverable))
        }
        // A process that finds the mutex repaired.
        "expect_repaired" => {
            let m = open();
            let g = m.lock().unwrap();
            g.value == 42 && g.dirty == 0
        }
        // Increments an inherited memfd mutex's counter ROUNDS times.
        "counter" => {
            let n: i32 = std::env::var("FD").unwrap().parse().unwrap();
            // SAFETY: the parent made this descriptor inheritable for this process alone
            // (see `mutual_exclusion`); nothing else here owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(n) };
            let m = MutexBuilder::<u64>::anonymous().open_fd(fd).unwrap();
            say("ready");
            for _ in 0..ROUNDS {
                *m.lock().unwrap() += 1;
            }
            true
        }
        other => panic!("unknown role {other}"),
    };
    std::process::exit(if ok { 0 } else { 1 });
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
