//! Tests of the lock and condition variable against hostile words, dead holders and
//! timeouts, on memfd segments.

use super::lock::{NOT_RECOVERABLE, TID_MASK, WAITERS};
use super::*;
use crate::sys::proc::this_thread;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn reopen<U: Plain>(m: &ShmMutex<impl Plain>) -> io::Result<ShmMutex<U>> {
    MutexBuilder::anonymous().open_fd(m.as_fd().try_clone_to_owned()?)
}

/// Whatever another process writes into the lock and condition words, every call
/// returns within its timeout (plus a check interval), never panics, and a word naming no
/// live thread is a dead holder taken over.
#[test]
fn hostile_words_never_hang_or_panic() {
    let m = MutexBuilder::anonymous().create(7u64).unwrap();
    let (me, _) = this_thread();
    let short = Duration::from_millis(5);
    let limit = short + CHECK_EVERY * 3 + Duration::from_millis(200);
    let values = [
        0,
        1, // init: alive, so a holder
        me,
        me | WAITERS,
        WAITERS,
        NOT_RECOVERABLE,
        NOT_RECOVERABLE | me,
        TID_MASK,
        TID_MASK | WAITERS,
        u32::MAX,
        (1 << 22) + 5, // above every Linux thread id: nobody, so a dead holder
    ];
    for v in values {
        for owner in [0, u64::MAX, u64::from(v) << 32 | 12345] {
            for seq in [0, u32::MAX] {
                m.words().state.store(v, Ordering::Relaxed);
                m.words().owner.store(owner, Ordering::Relaxed);
                m.cond_seq().store(seq, Ordering::Relaxed);
                let t = Instant::now();
                let r = m.lock_timeout(short);
                let took = t.elapsed();
                assert!(took < limit, "{v:#x}/{owner:#x}: {took:?}");
                let g = match r {
                    Ok(g) => Some(g),
                    Err(LockError::OwnerDied(g)) => Some(g),
                    Err(_) => None,
                };
                if let Some(g) = g {
                    let t = Instant::now();
                    let _ = m.condvar().wait_timeout(g, short);
                    assert!(t.elapsed() < limit * 2, "{v:#x}: wait {:?}", t.elapsed());
                }
                let t = Instant::now();
                drop(m.try_lock());
                assert!(t.elapsed() < limit, "{v:#x}: try_lock {:?}", t.elapsed());
            }
        }
    }
    // A word naming nobody is a dead holder: taken over, OwnerDied, repairable.
    m.words().state.store((1 << 22) + 5, Ordering::Relaxed);
    let mut g = m.lock().unwrap_err().into_guard().unwrap();
    g.make_consistent().unwrap();
    drop(g);
    assert!(m.try_lock().is_ok());
}

#[test]
fn another_value_type_is_refused() {
    let m = MutexBuilder::anonymous().create(7u64).unwrap();
    for e in [
        reopen::<u32>(&m).unwrap_err(),
        reopen::<[u64; 2]>(&m).unwrap_err(),
        reopen::<[u32; 2]>(&m).unwrap_err(), // same size, other alignment
    ] {
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        assert!(e.to_string().contains("value"), "{e}");
    }
}

#[test]
fn relocking_from_the_holder_is_deadlock_not_a_hang() {
    let m = MutexBuilder::anonymous().create(0u8).unwrap();
    let _g = m.lock().unwrap();
    match m.lock() {
        Err(LockError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::Deadlock),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        m.lock_timeout(Duration::from_millis(1)),
        Err(LockError::Io(_) | LockError::Timeout)
    ));
}

#[test]
fn a_thread_that_exits_holding_it_leaves_it_owner_died() {
    let m = MutexBuilder::anonymous().create(1u32).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut g = m.lock().unwrap();
            *g = 2;
            // The thread ends holding the lock, as if it had died.
            std::mem::forget(g);
        });
    });
    let mut g = m.lock().unwrap_err().into_guard().unwrap();
    assert_eq!(*g, 2);
    g.make_consistent().unwrap();
    drop(g);
    assert_eq!(*m.lock().unwrap(), 2);
}

#[test]
fn not_recoverable_stays_not_recoverable_whatever_tries_it() {
    let m = MutexBuilder::anonymous().create(0u8).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| std::mem::forget(m.lock().unwrap()));
    });
    // Not made consistent:
    drop(m.lock().unwrap_err().into_guard().unwrap());
    for _ in 0..2 {
        assert!(matches!(m.try_lock(), Err(LockError::NotRecoverable)));
    }
    assert!(matches!(m.lock(), Err(LockError::NotRecoverable)));
    std::thread::scope(|s| {
        s.spawn(|| {
            let r = m.lock_timeout(Duration::from_secs(5));
            assert!(matches!(r, Err(LockError::NotRecoverable)), "{r:?}");
        });
    });
}

#[test]
fn timed_waits_time_out() {
    let m = MutexBuilder::anonymous().create(0u64).unwrap();
    let cv = m.condvar();
    let (g, r) = cv
        .wait_timeout(m.lock().unwrap(), Duration::from_millis(20))
        .unwrap();
    assert!(r.timed_out());
    let (g, r) = cv
        .wait_timeout_while(g, Duration::from_millis(20), |v| *v == 0)
        .unwrap();
    assert!(r.timed_out());
    drop(g);
    let other = MutexBuilder::anonymous().create(0u64).unwrap();
    let g = other.lock().unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cv.wait(g)));
    assert!(caught.is_err(), "a guard of another mutex is refused");
    assert!(other.try_lock().is_ok(), "and unlocked on the way out");
}
