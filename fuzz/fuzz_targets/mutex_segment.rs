//! A robust-mutex segment written by a hostile or buggy peer: the mutex is created, the
//! fuzzer rewrites words of its segment (the segment header, ipckit's mutex header with the
//! value's size, alignment and offset, the lock word and the holder's identity, the
//! condition variable's sequence, the value), then it is opened and locked, waited on and
//! unlocked with timeouts, the fuzzer rewriting words between calls too. Errors are fine; a
//! panic, an out-of-bounds access, or a call that outlives its timeout by more than the
//! mutex's check interval (plus slack for a loaded machine) is not.
//!
//! Until the mutex was ipckit's own, its lock and condition variable were glibc's pthread
//! objects, which this target showed glibc trusts (garbage in the condition variable made a
//! timed wait block for ever, a bad kind word aborted the locker, and a held mutex's
//! robust-list links aimed the holder's unlock at a chosen address), so it had to leave them
//! alone. Now every byte of the segment is in scope.
#![no_main]

use ipckit::shm::{LockError, MutexBuilder, ShmMutex, CHECK_EVERY, SEGMENT_HEADER_LEN};
use ipckit_fuzz::{unique_name, Input, SegmentFile};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

/// The mutex's layout in the segment file (`shm/mutex/layout.rs`): ipckit's header, the lock words
/// at 64, the condition variable's sequence at 128, the value at 192.
const H: u64 = SEGMENT_HEADER_LEN as u64;

/// Fails the run if a call took much longer than its timeout.
fn bounded(started: Instant, timeout: Duration, what: &str) {
    let limit = timeout * 2 + CHECK_EVERY * 4 + Duration::from_millis(500);
    let took = started.elapsed();
    assert!(took < limit, "{what} took {took:?} (timeout {timeout:?})");
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let name = unique_name("mutex");
    let creator = MutexBuilder::<u64>::new(&name)
        .create(7)
        .expect("create the mutex");
    let file = SegmentFile::open(&name);
    let focus = [
        0..64,
        H..H + 64,
        H + 64..H + 80,
        H + 128..H + 132,
        H + 192..H + 200,
    ];
    for _ in 0..inp.byte() % 8 {
        file.patch(&mut inp, &focus);
    }
    let opened = ShmMutex::<u64>::builder(&name).open();
    let m = match (&opened, inp.byte() % 2) {
        (Ok(m), 0) => m,
        _ => &creator,
    };
    let short = Duration::from_millis(1);
    for _ in 0..16 {
        if inp.is_empty() {
            break;
        }
        let op = inp.byte();
        if op % 4 == 3 {
            file.patch(&mut inp, &focus);
            continue;
        }
        let t = Instant::now();
        let r = if op % 4 == 0 {
            m.try_lock()
        } else {
            m.lock_timeout(short)
        };
        bounded(t, short, "lock");
        let mut g = match r {
            Ok(g) => g,
            Err(LockError::OwnerDied(mut g)) => {
                let _ = g.make_consistent();
                g
            }
            Err(_) => continue,
        };
        *g = g.wrapping_add(1);
        if op & 0x40 != 0 {
            // A peer writes while this thread holds the lock.
            file.patch(&mut inp, &focus);
        }
        if op & 0x10 != 0 {
            let t = Instant::now();
            let r = m.condvar().wait_timeout(g, short);
            bounded(t, short * 2, "wait_timeout");
            match r {
                Ok((g2, _)) => g = g2,
                Err(_) => continue,
            }
        }
        if op & 0x20 != 0 {
            m.condvar().notify_all();
        }
        drop(g);
    }
});
