//! A robust-mutex segment written by a hostile or buggy peer: the mutex is created, the
//! fuzzer rewrites words of its segment (the segment header, ipckit's mutex header with the
//! pthread type sizes and the value's size, alignment and offset, the pthread objects, the
//! value), then it is opened and locked, waited on and unlocked with timeouts. Errors are
//! fine; a panic, an out-of-bounds access or a hang is not.
//!
//! The pthread objects are the C library's: the segment hands them to it as they are (ipckit
//! checks their sizes and that its creator initialized them, not their contents), and glibc
//! trusts them. This target found, with the objects in scope:
//! - garbage in the `pthread_cond_t`'s internal lock bits makes `pthread_cond_timedwait`
//!   (`ShmCondvar::wait_timeout`) block forever in `__condvar_acquire_lock`, a futex wait
//!   with no timeout, whatever timeout ipckit passes;
//! - a `pthread_mutex_t` kind word naming a priority-protected mutex with a bad ceiling makes
//!   `pthread_mutex_clocklock` (`ShmMutex::lock_timeout`) abort the process on an assertion
//!   in `__pthread_tpp_change_priority`;
//! - and by construction, a peer that rewrites a held robust mutex's list links makes the
//!   holder's unlock write where the peer chose.
//!
//! So the fuzzer leaves both objects as their creator made them (it restores them after
//! every write) and fuzzes what ipckit itself reads: the segment header, its mutex header and
//! the value. Only a trusted peer may share a lock; closing that would take a lock and a
//! condition variable of ipckit's own on futex words.
#![no_main]

use ipckit::shm::{LockError, ShmMutex, HEADER_LEN};
use ipckit_fuzz::{unique_name, Input, SegmentFile};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

/// The mutex's layout in the segment file (`shm/mutex.rs`): ipckit's header, the
/// `pthread_mutex_t` at 64, the `pthread_cond_t` at 128, the value at 192.
const H: u64 = HEADER_LEN as u64;

/// A write anywhere but the pthread objects (see above).
fn patch(file: &SegmentFile, inp: &mut Input<'_>, focus: &[std::ops::Range<u64>]) {
    let saved = file.read(H + 64, 128);
    file.patch(inp, focus);
    file.write(H + 64, &saved);
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let name = unique_name("mutex");
    let creator = ShmMutex::<u64>::create(&name, 7).expect("create the mutex");
    let file = SegmentFile::open(&name);
    let focus = [0..64, H..H + 64, H + 192..H + 200];
    for _ in 0..inp.byte() % 8 {
        patch(&file, &mut inp, &focus);
    }
    let opened = ShmMutex::<u64>::open(&name);
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
            patch(&file, &mut inp, &focus);
            continue;
        }
        let r = if op % 4 == 0 {
            m.try_lock()
        } else {
            m.lock_timeout(short)
        };
        let mut g = match r {
            Ok(g) => g,
            Err(LockError::OwnerDied(mut g)) => {
                let _ = g.make_consistent();
                g
            }
            Err(_) => continue,
        };
        *g = g.wrapping_add(1);
        if op & 0x10 != 0 {
            match m.condvar().wait_timeout(g, short) {
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
