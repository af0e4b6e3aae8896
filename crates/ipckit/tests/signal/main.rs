//! Signals across processes: real-time signals queue in order with their payloads while
//! standard ones coalesce, siginfo names the sender, and bad input is refused clearly.
//!
//! Signal masks are per thread and libtest runs tests on threads, so every test that reads a
//! signalfd does it in a listener peer (`peer.rs`, in the peer binary) that blocks its signals
//! at the top of `main`, where no thread can take them first. The two tests that change a
//! disposition in this process (SIGURG handlers) hold `util::scarce()`, as do the ones that
//! fill the per-user signal queue.

#[path = "../util/mod.rs"]
mod util;

use ipckit::signal::{self, Disposition, HandlerBuilder, Signal, Signals};
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use util::{peer_command, watchdog, KillOnDrop};

#[test]
fn bad_input_is_refused() {
    for sig in [Signal::SIGKILL, Signal::SIGSTOP] {
        let e = HandlerBuilder::new(sig).notify().install().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("cannot be caught"), "{e}");
        let e = signal::block_for_process(&[sig]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(Signals::new(&[sig]).is_err());
    }
    // 32 and 33 are glibc's own (thread cancellation, setxid): a signal, but not for us.
    let reserved = Signal::new(32).unwrap();
    assert!(reserved.is_reserved());
    let e = HandlerBuilder::new(reserved)
        .notify()
        .install()
        .unwrap_err();
    assert!(e.to_string().contains("reserved by the C library"), "{e}");
    assert!(signal::block_for_process(&[reserved]).is_err());
    for n in [0, -1, 65, 1000] {
        let e = Signal::new(n).unwrap_err();
        assert!(e.to_string().contains("not a signal number"), "{e}");
    }
    for name in ["SIGFOO", "RTMIN+100", "", "SIG"] {
        let e = name.parse::<Signal>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{name}");
    }
    // A signal not blocked in this thread would never reach the descriptor: refused.
    let e = Signals::new(&[Signal::SIGWINCH]).unwrap_err();
    assert!(e.to_string().contains("not blocked"), "{e}");
    assert!(
        signal::send(0, Signal::SIGUSR1).is_err(),
        "pid 0 is a process group"
    );
    assert!(signal::queue(u32::MAX, Signal::SIGUSR1, 1).is_err());
}

/// A listener peer, once it says it is ready.
struct Listener {
    child: KillOnDrop,
    out: BufReader<std::process::ChildStdout>,
}

impl Listener {
    fn start(vars: &[(&str, String)]) -> Listener {
        let mut cmd = peer_command("listener", vars);
        cmd.stdout(Stdio::piped());
        let mut child = KillOnDrop(cmd.spawn().unwrap());
        let mut out = BufReader::new(child.0.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "listener died");
            if line.trim() == "READY" {
                break;
            }
        }
        Listener { child, out }
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Sends the "done" signal and returns the listener's lines, in the order received.
    fn finish(mut self) -> Vec<String> {
        signal::send(self.pid(), Signal::SIGUSR2).unwrap();
        let mut s = String::new();
        self.out.read_to_string(&mut s).unwrap();
        assert!(self.child.0.wait().unwrap().success());
        s.lines()
            .filter(|l| l.starts_with("sig=") || l.starts_with("POLLIN="))
            .map(str::to_owned)
            .collect()
    }
}

#[test]
fn realtime_signals_queue_in_order_standard_ones_coalesce() {
    watchdog(30, || {
        let _serial = util::scarce(); // RLIMIT_SIGPENDING is counted per user
        let rt1 = Signal::rt(1).unwrap();
        let l = Listener::start(&[]);
        let me = std::process::id();
        let uid = signal::current_uid();
        const N: i32 = 100;
        for v in 0..N {
            signal::queue(l.pid(), rt1, v * 7 - 50).unwrap();
        }
        for _ in 0..100 {
            signal::send(l.pid(), Signal::SIGUSR1).unwrap();
        }
        let lines = l.finish();
        let mut want = vec![
            "POLLIN=true".to_owned(),
            format!("sig=SIGUSR2 pid={me} uid={uid} code=SI_USER value=None"),
            // A hundred kill(SIGUSR1) while it is blocked: one pending bit, received once.
            format!("sig=SIGUSR1 pid={me} uid={uid} code=SI_USER value=None"),
        ];
        // Every queued real-time signal, in the order sent, with its payload.
        for v in 0..N {
            want.push(format!(
                "sig=SIGRTMIN+1 pid={me} uid={uid} code=SI_QUEUE value=Some({})",
                v * 7 - 50
            ));
        }
        assert_eq!(lines, want);
    });
}

/// The payload of real-time signal `v` of the big run: distinct for every `v` (an odd
/// multiplier is a bijection mod 2^32), and not in order, so a reordering would show.
fn big_payload(v: u32) -> i32 {
    v.wrapping_mul(0x9E37_79B1) as i32
}

/// Queues `n` real-time signals with distinct payloads to a listener that drains while they
/// are sent; on `WouldBlock` (the receiver's RLIMIT_SIGPENDING is full) the sender waits and
/// retries. With `limit` the receiver lowers its RLIMIT_SIGPENDING to it and stalls now and
/// then, so the queue does fill. Checks every one arrived, in order, with its payload and sender; returns how
/// many sends had to be retried.
fn queue_many_while_draining(n: u32, limit: Option<u64>) -> u64 {
    let rt1 = Signal::rt(1).unwrap();
    let mut vars = vec![("DRAIN", n.to_string())];
    if let Some(l) = limit {
        vars.push(("SIGPENDING_LIMIT", l.to_string()));
        vars.push(("DRAIN_PAUSE", "20".into()));
    }
    let mut l = Listener::start(&vars);
    let me = std::process::id();
    let uid = signal::current_uid();
    let mut retries = 0u64;
    for v in 0..n {
        loop {
            match signal::queue(l.pid(), rt1, big_payload(v)) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    retries += 1;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => panic!("queueing signal {v}: {e}"),
            }
        }
    }
    let mut s = String::new();
    l.out.read_to_string(&mut s).unwrap();
    assert!(l.child.0.wait().unwrap().success());
    let lines: Vec<&str> = s.lines().filter(|l| l.starts_with("sig=")).collect();
    assert_eq!(lines.len(), n as usize, "signals lost or duplicated");
    for (v, line) in (0..n).zip(lines) {
        let want = format!(
            "sig=SIGRTMIN+1 pid={me} uid={uid} code=SI_QUEUE value=Some({})",
            big_payload(v)
        );
        assert_eq!(line, want, "signal {v} of {n}");
    }
    retries
}

#[test]
fn ten_thousand_realtime_signals_arrive_complete_and_in_order() {
    watchdog(120, || {
        let _serial = util::scarce(); // RLIMIT_SIGPENDING is counted per user
                                      // With the receiver's own limit, whatever it is here (the sender retries if it is
                                      // below 10,000)...
        let r = queue_many_while_draining(10_000, None);
        eprintln!("default RLIMIT_SIGPENDING: {r} send(s) retried on WouldBlock");
        // ...and with a limit far below the run, so the receiver must drain while the sender
        // sends and the sender must wait on WouldBlock.
        let r = queue_many_while_draining(10_000, Some(64));
        eprintln!("RLIMIT_SIGPENDING = 64: {r} send(s) retried on WouldBlock");
        assert!(r > 0, "a queue of 64 never filled during 10,000 sends");
    });
}

#[test]
fn a_full_queue_is_a_clear_error_and_nothing_queued_is_lost() {
    watchdog(30, || {
        let _serial = util::scarce();
        let rt1 = Signal::rt(1).unwrap();
        let l = Listener::start(&[("SIGPENDING_LIMIT", "8".into())]);
        let mut sent = Vec::new();
        let err = loop {
            let v = sent.len() as i32;
            match signal::queue(l.pid(), rt1, v) {
                Ok(()) => sent.push(v),
                Err(e) => break e,
            }
            assert!(sent.len() <= 8, "the limit of 8 was not enforced");
        };
        assert_eq!(err.kind(), ErrorKind::WouldBlock);
        assert!(
            err.to_string()
                .contains("signal queue full (RLIMIT_SIGPENDING = 8)"),
            "{err}"
        );
        // The user's other pending signals count too, so at most 8 went in; at least one did.
        assert!(!sent.is_empty());
        let got: Vec<String> = l
            .finish()
            .into_iter()
            .filter(|l| l.starts_with("sig=SIGRTMIN+1"))
            .map(|l| l.rsplit_once("value=").unwrap().1.to_owned())
            .collect();
        let want: Vec<String> = sent.iter().map(|v| format!("Some({v})")).collect();
        assert_eq!(got, want);
    });
}

#[test]
fn handlers_notify_set_flags_and_restore_the_previous_disposition() {
    static FLAG: AtomicBool = AtomicBool::new(false);
    watchdog(20, || {
        let _serial = util::scarce();
        let me = std::process::id();
        // SIGURG's default is to ignore it, so a stray delivery after the restore is harmless.
        let h = HandlerBuilder::new(Signal::new(libc::SIGURG).unwrap())
            .notify()
            .restart(true)
            .mask(&[Signal::SIGUSR1])
            .install()
            .unwrap();
        assert_eq!(h.previous(), Disposition::Default);
        let again = HandlerBuilder::new(h.signal()).notify().install();
        assert_eq!(again.unwrap_err().kind(), ErrorKind::AlreadyExists);
        signal::send(me, h.signal()).unwrap();
        assert!(h.wait_timeout(Duration::from_secs(10)).unwrap() >= 1);
        let sig = h.signal();
        drop(h);
        // Dropped: the slot is free and the disposition is the default again.
        let h = HandlerBuilder::new(sig).flag(&FLAG).install().unwrap();
        assert_eq!(h.previous(), Disposition::Default);
        signal::queue(me, sig, 5).unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while !FLAG.load(Ordering::SeqCst) {
            assert!(std::time::Instant::now() < until, "the flag was never set");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(h.try_wait().is_err(), "a flag handler has no counter");
    });
}

/// Blocks a thread in a raw `read(2)` on an empty pipe and sends the handler's signal to that
/// thread until the read returns; returns the read's result (bytes or errno) and the count of
/// arrivals the handler saw. With `restart` the kernel restarts the read, so it only returns
/// once `feed_after` has passed and a byte is written.
fn interrupt_a_read(restart: bool, feed_after: Duration) -> (Result<isize, i32>, u64) {
    let sig = Signal::new(libc::SIGURG).unwrap();
    let h = HandlerBuilder::new(sig)
        .notify()
        .restart(restart)
        .install()
        .unwrap();
    let mut fds = [0; 2];
    // SAFETY: `fds` is a live array of two ints for pipe(2) to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (rfd, wfd) = (fds[0], fds[1]);
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let (exit_tx, exit_rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        // SAFETY: pthread_self takes nothing.
        tid_tx.send(unsafe { libc::pthread_self() }).unwrap();
        let mut b = [0u8; 1];
        // SAFETY: `b` is a live one-byte buffer; `rfd` is open until this thread is joined.
        let n = unsafe { libc::read(rfd, b.as_mut_ptr().cast(), 1) };
        let r = if n < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap())
        } else {
            Ok(n)
        };
        done_tx.send(r).unwrap();
        // Stay alive until the sender has stopped signalling this thread.
        let _ = exit_rx.recv();
    });
    let tid = tid_rx.recv().unwrap();
    let start = std::time::Instant::now();
    let mut fed = false;
    let r = loop {
        if let Ok(r) = done_rx.try_recv() {
            break r;
        }
        if !fed && start.elapsed() > feed_after {
            // SAFETY: `wfd` is our open pipe write end; one live byte.
            assert_eq!(unsafe { libc::write(wfd, b"x".as_ptr().cast(), 1) }, 1);
            fed = true;
        }
        // SAFETY: `tid` names the reader thread, which cannot exit before `exit_tx` is used.
        assert_eq!(unsafe { libc::pthread_kill(tid, sig.number()) }, 0);
        std::thread::sleep(Duration::from_millis(5));
    };
    drop(exit_tx);
    reader.join().unwrap();
    // SAFETY: both ends are ours and closed once.
    unsafe {
        libc::close(rfd);
        libc::close(wfd);
    }
    let n = h.try_wait().unwrap_or(0);
    (r, n)
}

#[test]
fn sa_restart_is_a_choice() {
    watchdog(30, || {
        // The SIGURG handler is process-wide: serialised with the other in-process handler test.
        let _serial = util::scarce();
        // Without SA_RESTART the blocked read fails with EINTR (the byte is never written: the
        // feed comes far later than the first signal can land).
        let (r, _) = interrupt_a_read(false, Duration::from_secs(20));
        assert_eq!(r, Err(libc::EINTR));
        // With SA_RESTART the handler runs, the read is restarted and returns the byte.
        let (r, n) = interrupt_a_read(true, Duration::from_millis(100));
        assert_eq!(r, Ok(1));
        assert!(n >= 1, "the handler ran");
    });
}
